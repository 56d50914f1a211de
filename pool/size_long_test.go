//go:build long

package pool

const testLong = true
