//go:build !long

package httpapi_test

// gzipSameCodes is the size of TestGzipImportMatchesPlain in make test;
// -tags long runs it at 10,000,000 codes (gzip_size_long_test.go).
const gzipSameCodes = 200_000
