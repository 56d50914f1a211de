package pool

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustReadd(t testing.TB, l *List, pos uint32) uint32 {
	t.Helper()
	n, err := l.Readd(pos)
	if err != nil {
		t.Fatalf("Readd(%d): %v", pos, err)
	}
	return n
}

func wantLookup(t testing.TB, l *List, code string, pos uint32, st State) {
	t.Helper()
	p, s, ok := l.Lookup([]byte(code))
	if !ok || p != pos || s != st {
		t.Fatalf("Lookup(%s) = %d,%v,%v, want %d,%v", code, p, s, ok, pos, st)
	}
}

func wantCounts(t testing.TB, l *List, ln, avail, used, wdn uint32) {
	t.Helper()
	if l.Len() != ln || l.Available() != avail || l.Used() != used || l.Withdrawn() != wdn {
		t.Fatalf("L%d A%d U%d W%d, want L%d A%d U%d W%d",
			l.Len(), l.Available(), l.Used(), l.Withdrawn(), ln, avail, used, wdn)
	}
	checkCounts(t, l)
	checkInvariants(t, l)
}

// TestReadd follows one code through the release cycle in both kinds of
// list: handed out, copied back to the end, found as Available at the copy,
// handed out again (FIFO: after the codes already waiting), then found at
// its newest assignment.
func TestReadd(t *testing.T) {
	for _, dedupe := range []bool{true, false} {
		t.Run(fmt.Sprintf("dedupe=%v", dedupe), func(t *testing.T) {
			l := New().Create(1, dedupe)
			for _, c := range []string{"A", "B", "C"} {
				mustAdd(t, l, []byte(c))
			}
			if got := takeAll(l, 2); !slices.Equal(got, []uint32{0, 1}) {
				t.Fatalf("Take = %v", got)
			}
			wantLookup(t, l, "A", 0, Assigned)

			// Readd of an Assigned position: a new Available position at
			// the end holding the same bytes; the original stays Assigned.
			if p := mustReadd(t, l, 0); p != 3 {
				t.Fatalf("Readd(0) = %d, want 3", p)
			}
			wantCounts(t, l, 4, 2, 2, 0)
			if string(l.Code(3)) != "A" || l.StateOf(3) != Available || l.StateOf(0) != Assigned {
				t.Fatalf("copy: %q %v, original %v", l.Code(3), l.StateOf(3), l.StateOf(0))
			}
			wantLookup(t, l, "A", 3, Available)

			// Add of the code again: a dedupe list still answers its first
			// occurrence and adds nothing; without dedupe it is one more.
			pos, added := mustAdd(t, l, []byte("A"))
			if dedupe {
				if added || pos != 0 {
					t.Fatalf("dedupe Add(A) = %d,%v, want 0,false", pos, added)
				}
				wantCounts(t, l, 4, 2, 2, 0)
			} else {
				if !added || pos != 4 {
					t.Fatalf("Add(A) = %d,%v, want 4,true", pos, added)
				}
				wantCounts(t, l, 5, 3, 2, 0)
			}
			wantLookup(t, l, "A", 3, Available) // the first Available one

			// C was waiting before the copy: FIFO hands C out first.
			if got := takeAll(l, 1); !slices.Equal(got, []uint32{2}) {
				t.Fatalf("Take = %v, want [2]", got)
			}
			wantLookup(t, l, "A", 3, Available)
			var code []byte
			l.Take(1, func(p uint32, c []byte) {
				if p != 3 {
					t.Fatalf("Take handed out %d, want the copy 3", p)
				}
				code = c
			})
			if string(code) != "A" {
				t.Fatalf("Take of the copy gave %q", code)
			}
			if dedupe {
				// No Available occurrence: the last one, the newest
				// assignment.
				wantLookup(t, l, "A", 3, Assigned)
			} else {
				wantLookup(t, l, "A", 4, Available)
				takeAll(l, 1)
				wantLookup(t, l, "A", 4, Assigned)
			}
			checkInvariants(t, l)
		})
	}
}

// TestReaddAnyState copies positions in each state, copies of copies and
// one code many times, and withdraws a copy found by Lookup.
func TestReaddAnyState(t *testing.T) {
	for _, dedupe := range []bool{true, false} {
		t.Run(fmt.Sprintf("dedupe=%v", dedupe), func(t *testing.T) {
			l := New().Create(1, dedupe)
			for _, c := range []string{"A", "B", "C", "D"} {
				mustAdd(t, l, []byte(c))
			}
			takeAll(l, 1) // A assigned
			if !l.Withdraw(1) {
				t.Fatal("Withdraw(1)")
			}
			// 0 Assigned, 1 Withdrawn, 2 and 3 Available.
			for i, src := range []uint32{0, 1, 2} {
				if p := mustReadd(t, l, src); p != uint32(4+i) {
					t.Fatalf("Readd(%d) = %d", src, p)
				}
			}
			wantCounts(t, l, 7, 5, 1, 1)
			wantLookup(t, l, "A", 4, Available)
			wantLookup(t, l, "B", 5, Available)
			wantLookup(t, l, "C", 2, Available) // the original is first
			// A copy of a copy joins the same chain.
			if p := mustReadd(t, l, 6); p != 7 || string(l.Code(7)) != "C" {
				t.Fatalf("Readd(6) = %d %q", p, l.Code(p))
			}
			wantCounts(t, l, 8, 6, 1, 1)

			// Withdraw the Available occurrences of C one by one, each found
			// by Lookup (as the state machine withdraws a code by value).
			for _, want := range []uint32{2, 6, 7} {
				p, s, _ := l.Lookup([]byte("C"))
				if p != want || s != Available || !l.Withdraw(p) {
					t.Fatalf("Lookup(C) = %d,%v, want %d Available, withdrawable", p, s, want)
				}
			}
			wantLookup(t, l, "C", 7, Withdrawn) // none Available: the last
			wantCounts(t, l, 8, 3, 1, 4)

			// A copy of a Withdrawn code is Available like any other.
			if p := mustReadd(t, l, 2); p != 8 {
				t.Fatalf("Readd(2) = %d", p)
			}
			wantLookup(t, l, "C", 8, Available)

			// One code copied many times: the chain stays exact.
			for range 3000 {
				mustReadd(t, l, 0)
			}
			wantCounts(t, l, 3009, 3004, 1, 4)
			wantLookup(t, l, "A", 4, Available)
			got := takeAll(l, 3004)
			if !slices.Equal(got[:4], []uint32{3, 4, 5, 8}) {
				t.Fatalf("Take order starts %v", got[:4])
			}
			wantLookup(t, l, "A", 3008, Assigned)
			wantLookup(t, l, "B", 5, Assigned)
			wantCounts(t, l, 3009, 0, 3005, 4)
		})
	}
}

func TestReaddErrors(t *testing.T) {
	for _, dedupe := range []bool{true, false} {
		l := New().Create(1, dedupe)
		if _, err := l.Readd(0); !errors.Is(err, ErrNoSuchPosition) {
			t.Fatalf("Readd on an empty list: %v", err)
		}
		l.w.max = 3
		for i := range 2 {
			mustAdd(t, l, code12(uint64(i)))
		}
		if _, err := l.Readd(2); !errors.Is(err, ErrNoSuchPosition) {
			t.Fatalf("Readd(Len): %v", err)
		}
		mustReadd(t, l, 1)
		mem := l.MemoryBytes()
		if _, err := l.Readd(0); !errors.Is(err, ErrListFull) {
			t.Fatalf("Readd on a full list: %v", err)
		}
		// Nothing changed: the copy of code 0 does not exist.
		if l.Len() != 3 || l.Available() != 3 || l.MemoryBytes() != mem {
			t.Fatalf("failed Readd changed the list: L%d A%d", l.Len(), l.Available())
		}
		takeAll(l, 1)
		if p, s, _ := l.Lookup(code12(0)); p != 0 || s != Assigned {
			t.Fatalf("Lookup(code 0) = %d,%v", p, s)
		}
		checkInvariants(t, l)
	}
}

// ledgerEntry is how a position came to be: added (src < 0) or copied from
// src by Readd.
type ledgerEntry struct {
	code []byte
	src  int
}

// TestReaddRebuild drives a list live (Add, Readd of assigned and other
// positions, Withdraw, Take), then rebuilds another from the ledger in the
// load order (Add/Readd per position in order, Withdraw, SetCursor) and
// requires the two to be indistinguishable, including on the calls that
// follow.
func TestReaddRebuild(t *testing.T) {
	for _, dedupe := range []bool{true, false} {
		t.Run(fmt.Sprintf("dedupe=%v", dedupe), func(t *testing.T) {
			r := rand.New(rand.NewPCG(17, 1))
			live := New().Create(1, dedupe)
			var ledger []ledgerEntry
			var codes [][]byte
			steps := 60_000
			if sizedDown {
				steps = 20_000
			}
			for range steps {
				switch op := r.IntN(20); {
				case op < 10:
					c := code12(uint64(r.IntN(20_000)))
					if _, ok := mustAdd(t, live, c); ok {
						ledger = append(ledger, ledgerEntry{c, -1})
						codes = append(codes, c)
					}
				case op < 14 && live.Len() > 0:
					src := uint32(r.IntN(int(live.Len())))
					if live.Cursor() > 0 && r.IntN(4) > 0 {
						src = uint32(r.IntN(int(live.Cursor()))) // a release
					}
					mustReadd(t, live, src)
					ledger = append(ledger, ledgerEntry{live.Code(src), int(src)})
				case op < 16 && live.Len() > live.Cursor():
					live.Withdraw(live.Cursor() + uint32(r.IntN(int(live.Len()-live.Cursor()))))
				default:
					live.Take(r.IntN(int(live.Available())/4+2)%(int(live.Available())+1), func(uint32, []byte) {})
				}
			}

			re := New().Create(2, dedupe)
			for i, e := range ledger {
				var p uint32
				if e.src < 0 {
					var ok bool
					if p, ok = mustAdd(t, re, e.code); !ok {
						t.Fatalf("rebuild Add at %d not added", i)
					}
				} else {
					p = mustReadd(t, re, uint32(e.src))
				}
				if p != uint32(i) {
					t.Fatalf("rebuild put position %d at %d", i, p)
				}
			}
			for p := range live.Len() {
				if live.StateOf(p) == Withdrawn && !re.Withdraw(p) {
					t.Fatalf("rebuild Withdraw(%d)", p)
				}
			}
			re.SetCursor(live.Cursor())
			compareLists(t, live, re, codes)
			if live.MemoryBytes() != re.MemoryBytes() {
				t.Fatalf("MemoryBytes live %d, rebuilt %d", live.MemoryBytes(), re.MemoryBytes())
			}
			checkInvariants(t, live)
			checkInvariants(t, re)

			// The same calls on both from here give the same answers.
			for i := range 2000 {
				c := codes[r.IntN(len(codes))]
				p1, s1, _ := live.Lookup(c)
				p2, s2, _ := re.Lookup(c)
				if p1 != p2 || s1 != s2 {
					t.Fatalf("step %d: Lookup differs", i)
				}
				if s1 == Available && i%3 == 0 && (live.Withdraw(p1) != re.Withdraw(p2)) {
					t.Fatalf("step %d: Withdraw differs", i)
				}
				if s1 != Available {
					a, _ := live.Readd(p1)
					b, _ := re.Readd(p2)
					if a != b {
						t.Fatalf("step %d: Readd differs", i)
					}
				}
				if i%5 == 0 {
					n := min(int(live.Available()), 3)
					if !slices.Equal(takeAll(live, n), takeAll(re, n)) {
						t.Fatalf("step %d: Take differs", i)
					}
				}
			}
			compareLists(t, live, re, codes)
			checkInvariants(t, live)
			checkInvariants(t, re)
		})
	}
}

// TestReaddAcrossSlabsAndBlocks: a copy is a real copy of the bytes, in
// whatever slab and position block the end of the list is in.
func TestReaddAcrossSlabsAndBlocks(t *testing.T) {
	l := New().Create(1, true)
	r := rand.New(rand.NewPCG(5, 5))
	const n = 3 * posBlockSize
	var codes [][]byte
	for len(codes) < n {
		c := randCode(r, 200, MaxCodeLen) // fills slabs quickly
		if _, ok := mustAdd(t, l, c); ok {
			codes = append(codes, c)
		}
	}
	takeAll(l, n/2)
	// Copy every assigned position; the copies span new slabs and blocks.
	for p := range uint32(n / 2) {
		if q := mustReadd(t, l, p); !bytes.Equal(l.Code(q), codes[p]) {
			t.Fatalf("copy of %d reads %x", p, l.Code(q))
		}
	}
	for p, c := range codes {
		want := uint32(p)
		if p < n/2 {
			want = uint32(n + p)
		}
		if q, s, ok := l.Lookup(c); !ok || q != want || s != Available {
			t.Fatalf("Lookup(code %d) = %d,%v,%v, want %d", p, q, s, ok, want)
		}
	}
	checkInvariants(t, l)
}

// TestLookupDuringReadd stops a Readd between its steps, as a reader may
// see it, and checks Lookup at each: until Len is published the copy does
// not exist for readers (the chain already links to it, and a new group's
// hint may point at it); once Len is published it is found even though the
// group's tail still names the previous occurrence. The steps are Readd's
// own, in its order.
func TestLookupDuringReadd(t *testing.T) {
	type answer struct {
		pos uint32
		st  State
	}
	for _, dedupe := range []bool{true, false} {
		for _, tc := range []struct {
			name  string
			setup func(l *List) (src uint32)
		}{
			// One occurrence, Assigned: the Readd creates the group.
			{"new group", func(l *List) uint32 { takeAll(l, 1); return 0 }},
			// A group whose occurrences are all Assigned.
			{"all assigned", func(l *List) uint32 {
				takeAll(l, 1)
				mustReadd(t, l, 0)
				takeAll(l, int(l.Available()))
				return 0
			}},
			// A group with an Available occurrence (the copy is second).
			{"one available", func(l *List) uint32 { takeAll(l, 1); mustReadd(t, l, 0); return 0 }},
			// The head itself Available: the new group's hint is the head.
			{"head available", func(l *List) uint32 { return 0 }},
		} {
			t.Run(fmt.Sprintf("dedupe=%v/%s", dedupe, tc.name), func(t *testing.T) {
				l := New().Create(1, dedupe)
				mustAdd(t, l, []byte("A"))
				mustAdd(t, l, []byte("B"))
				src := tc.setup(l)
				look := func() answer {
					p, s, ok := l.Lookup([]byte("A"))
					if !ok {
						t.Fatal("A not found")
					}
					return answer{p, s}
				}
				before := look()
				w := &l.w
				n := w.n
				code := codeAt(w.lay, src)
				_, head, _ := l.probe(w.idx, maphash.Bytes(l.seed, code), code, w.lay)

				l.appendCode(code)
				if got := look(); got != before {
					t.Fatalf("after appendCode: %v, want %v", got, before)
				}
				tail := l.addToGroup(head, n)
				if got := look(); got != before {
					t.Fatalf("after addToGroup: %v, want %v", got, before)
				}
				if got := l.lastOf(head); got >= n {
					t.Fatalf("lastOf before Len covers the copy = %d", got)
				}
				l.publishLen()
				if got := l.lastOf(head); got != n {
					t.Fatalf("lastOf with the tail not yet stored = %d, want %d", got, n)
				}
				after := look()
				if before.st == Available {
					if after != before {
						t.Fatalf("after publishLen: %v, want %v", after, before)
					}
				} else if after != (answer{n, Available}) {
					t.Fatalf("after publishLen, tail not yet stored: %v, want the copy %d", after, n)
				}
				tail.Store(n)
				if got := look(); got != after {
					t.Fatalf("after the tail: %v, want %v", got, after)
				}
				checkInvariants(t, l)
				takeAll(l, int(l.Available()))
				if got := look(); got != (answer{n, Assigned}) {
					t.Fatalf("all taken: %v, want %d Assigned", got, n)
				}
			})
		}
	}
}
