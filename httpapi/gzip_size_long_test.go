//go:build long

package httpapi_test

// gzipSameCodes at full size: acceptance point e) of SPEC §4, an import of
// 10,000,000 codes sent gzip-compressed (about 130 MB decoded).
const gzipSameCodes = 10_000_000
