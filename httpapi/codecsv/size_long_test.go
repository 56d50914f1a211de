//go:build long

package codecsv

const testLong = true
