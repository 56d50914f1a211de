package raftfsm

import (
	"errors"
	"fmt"
	"testing"
)

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

// collidingPairs finds pairs of distinct recipients of tenant acme whose
// index hashes are equal in f's index (its seed is random).
func collidingPairs(t *testing.T, f *FSM, want int) [][2][]byte {
	t.Helper()
	seen := map[uint32][]byte{}
	var pairs [][2][]byte
	for i := 0; len(pairs) < want; i++ {
		if i == 2_000_000 {
			t.Fatalf("found %d colliding pairs in %d recipients, want %d", len(pairs), i, want)
		}
		r := fmt.Appendf(nil, "user%d@example.com", i)
		h := f.hist.hash32("acme", r)
		if o, ok := seen[h]; ok {
			pairs = append(pairs, [2][]byte{o, r})
			delete(seen, h)
			continue
		}
		seen[h] = r
	}
	return pairs
}

// Recipients whose index hashes collide, in one request and across the
// requests of a send, each get their own code, keep it on retries (before
// and after a restart) and show it alone in their history; a refused
// request with colliding recipients indexes nothing.
func TestHistoryHashCollisions(t *testing.T) {
	tf := newTestFSM(t)
	alertSetup(tf) // list 7 with 10 codes, message m on it
	pairs := collidingPairs(t, tf.f, 3)
	a1, b1 := pairs[0][0], pairs[0][1]
	a2, b2 := pairs[1][0], pairs[1][1]
	a3, b3 := pairs[2][0], pairs[2][1]
	alloc := func(send string, rs ...[]byte) (*AllocResult, error) {
		var rb RecipientBlock
		for _, r := range rs {
			rb = rb.AppendRecipient(r)
		}
		res := tf.apply(&Allocate{Tenant: "acme", Send: send, Message: "m", Recipients: rb, At: 5})
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Value.(*AllocResult), nil
	}
	mustAlloc := func(send string, rs ...[]byte) [][]byte {
		t.Helper()
		res, err := alloc(send, rs...)
		if err != nil {
			t.Fatalf("allocate %q: %v", rs, err)
		}
		return res.Codes
	}
	got := map[string]string{} // recipient -> code in send s
	expect := func(rs [][]byte, codes [][]byte) {
		t.Helper()
		for i, r := range rs {
			if old, ok := got[string(r)]; ok && old != string(codes[i]) {
				t.Fatalf("%s got %s, had %s", r, codes[i], old)
			}
			got[string(r)] = string(codes[i])
		}
	}

	// A colliding pair in one request, one of them repeated.
	req1 := [][]byte{a1, b1, a1}
	c := mustAlloc("s", req1...)
	expect(req1, c)
	// One of a pair first, then both in a later request of the send.
	expect([][]byte{a2}, mustAlloc("s", a2))
	req3 := [][]byte{b2, a2}
	expect(req3, mustAlloc("s", req3...))
	// Retries answer the same codes.
	expect(req1, mustAlloc("s", req1...))
	expect(req3, mustAlloc("s", req3...))

	codes := map[string]bool{}
	for r, code := range got {
		if codes[code] {
			t.Fatalf("code %s given twice (%v)", code, got)
		}
		codes[code] = true
		h, err := tf.f.RecipientHistory("acme", []byte(r))
		if err != nil || len(h) != 1 || h[0].Code != code || h[0].Recipient != r {
			t.Fatalf("history of %s: %+v, %v; want its one code %s", r, h, err, code)
		}
	}
	if len(got) != 4 {
		t.Fatalf("%d recipients served, want 4", len(got))
	}

	// 6 codes are left: a request needing 7, with a colliding pair, is
	// refused whole and leaves no trace in the index.
	big := [][]byte{a3, b3, []byte("x1"), []byte("x2"), []byte("x3"), []byte("x4"), []byte("x5"), a1}
	var insufficient *InsufficientError
	if _, err := alloc("s", big...); !errors.As(err, &insufficient) || insufficient.Needed != 7 || insufficient.Available != 6 {
		t.Fatalf("allocating 7 new codes of 6: %v, want insufficient_codes 7/6", err)
	}
	for _, r := range [][]byte{a3, b3} {
		if h, err := tf.f.RecipientHistory("acme", r); err != nil || len(h) != 0 {
			t.Fatalf("history of %s after a refused request: %+v, %v", r, h, err)
		}
	}
	expect(big[:6], mustAlloc("s", big[:6]...))
	expect(req1, mustAlloc("s", req1...))

	tf = tf.reopen()
	for _, req := range [][][]byte{req1, req3, big[:6]} {
		var rb RecipientBlock
		for _, r := range req {
			rb = rb.AppendRecipient(r)
		}
		res := tf.mustApply(&Allocate{Tenant: "acme", Send: "s", Message: "m", Recipients: rb, At: 6}).(*AllocResult)
		if res.New != 0 {
			t.Fatalf("retry after restart assigned %d new codes", res.New)
		}
		expect(req, res.Codes)
	}
}
