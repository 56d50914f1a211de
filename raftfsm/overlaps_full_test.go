//go:build !race || long

package raftfsm

// overlapCodes is the size of TestOverlapsMillion's lists.
const overlapCodes = 1_000_000
