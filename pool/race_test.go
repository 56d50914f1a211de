//go:build race

package pool

// raceEnabled scales down the heaviest tests under the race detector, which
// makes every memory access an order of magnitude slower.
const raceEnabled = true
