//go:build long

package main

// Sizes of the process tests in make test-long (see size_test.go).
const (
	firstCodes   = 300_000
	bigUpload    = 3_000_000 // 39 MB
	restoreCodes = 5_000_000 // 105 MB
)
