// Package pool holds coupon code lists in memory.
//
// A List is an append-only ledger of codes: every added code gets the next
// position (0-based, import order), and positions are handed out strictly in
// FIFO order by Take, so a position is never handed out twice. A position is
// Available, Assigned (handed out by Take) or Withdrawn (removed before it was
// handed out); Assigned and Withdrawn are final. A code handed out and then
// given back is not reopened in place: Readd appends a copy of it as a new
// Available position at the end.
//
// Concurrency contract: exactly one goroutine, the replicated state machine,
// calls the writer methods (Pools.Create, Pools.Delete, List.Add,
// List.AddMany, List.GrowIndex, List.Readd, List.Withdraw, List.Take,
// List.SetCursor). Any number of goroutines may call the reader methods at
// the same time; readers never take a lock and never wait for the writer.
// Writers publish with atomic stores after the data they publish has been
// written, so a reader that observes a count or an index entry also observes
// everything it refers to. Each reader method returns a value that was true
// at some instant during the call; two reader calls are not a consistent
// snapshot of each other.
//
// The pool is not persistent. The state machine rebuilds it at start by
// replaying Add and Readd in the original order, then Withdraw and
// SetCursor; every output of the package is a deterministic function of that
// call sequence (hash seeds are random, but hashing only ever decides
// equal/not-equal).
//
// See DESIGN.md for the memory layout and invariants.
package pool

import (
	"errors"
	"strconv"
)

// Sentinel errors returned by List.Add and List.Readd.
var (
	// ErrNoSuchPosition is returned by Readd for a position at or past Len.
	ErrNoSuchPosition = errors.New("no such position")
	// ErrListFull is returned when the list already holds MaxCodes positions
	// and the code would need a new one.
	ErrListFull = errors.New("list is full")
	// ErrCodeLength is returned for an empty code or a code longer than
	// MaxCodeLen bytes.
	ErrCodeLength = errors.New("code length out of range")
)

const (
	// MaxCodes is the maximum number of positions in one List.
	MaxCodes = 1<<32 - 2
	// MaxCodeLen is the maximum length of one code in bytes (codes are
	// stored with a one-byte length prefix).
	MaxCodeLen = 255
)

// State is the state of one position in a List. The zero State means "no
// such position".
type State uint8

const (
	// Available: not yet handed out and not withdrawn.
	Available State = iota + 1
	// Assigned: handed out by Take (final).
	Assigned
	// Withdrawn: removed before it was handed out (final).
	Withdrawn
)

// String returns "available", "assigned" or "withdrawn" ("State(N)" for
// other values).
func (s State) String() string {
	switch s {
	case Available:
		return "available"
	case Assigned:
		return "assigned"
	case Withdrawn:
		return "withdrawn"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}
