//go:build !long

package pool

// testLong is set by -tags long (make test-long): the size-bound tests run
// at full size under the race detector too.
const testLong = false
