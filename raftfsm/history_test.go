package raftfsm

import "testing"

// A reserved index takes its reserve without growing; an unreserved one
// starts at 1024 slots.
func TestHistoryReserve(t *testing.T) {
	if n := len(newHistory(0).tab.Load().slots); n != 1024 {
		t.Fatalf("unreserved index has %d slots, want 1024", n)
	}
	const reserve = 100_000
	h := newHistory(reserve)
	start := h.tab.Load()
	for i := range reserve {
		h.add(uint32(i)*2654435761, uint64(i))
	}
	if h.tab.Load() != start {
		t.Fatalf("index grew within its reserve of %d (from %d slots)", reserve, len(start.slots))
	}
	if len(start.slots) > 4*reserve {
		t.Fatalf("reserve of %d took %d slots, over 4 per reserved assignment", reserve, len(start.slots))
	}
}
