//go:build race && !long

package raftfsm

// overlapCodes is the size of TestOverlapsMillion's lists: scaled down
// under the race detector, which makes each probe some ten times slower
// (full size with -tags long, and without the detector).
const overlapCodes = 200_000
