//go:build !long

package main

// Sizes of the process tests in make test: the same faults and the same
// checks as with -tags long (make test-long, size_long_test.go), on less
// data.
const (
	firstCodes = 100_000   // TestKill9AfterImport's first import
	bigUpload  = 1_000_000 // each upload killed in flight
	// restoreCodes is the list of TestKill9DuringSnapshotRestore: a 42 MB
	// snapshot whose restore the test kills at eleven points.
	restoreCodes = 2_000_000
)
