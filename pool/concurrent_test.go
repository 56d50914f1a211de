package pool

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrent runs one writer (Add, Withdraw, Take on a dedupe list of
// unique codes and on a no-dedupe list of heavily repeated codes, plus
// Create/Delete of other lists) against readers that check what can be
// checked without locks:
//
//   - Len, Cursor, Used, Withdrawn never decrease;
//   - loaded in the order Used, Withdrawn, Available, Len: U+W+A <= Len;
//     Used <= Cursor <= Len;
//   - Code(p) for p < Len is the code the writer added at p, and a slice
//     returned by Code never changes;
//   - Lookup of an added code finds it (its position in the dedupe list;
//     in the no-dedupe list an occurrence that is Available or the last);
//     Lookup of a code being added finds nothing or a position below Len;
//   - the state of a position only moves Available -> Assigned or
//     Available -> Withdrawn, and is never 0 below Len.
//
// At the end the writer's own record of every position is compared.
var nReaders = 4

func TestConcurrent(t *testing.T) {
	n := 1_000_000
	if sizedDown {
		n = 200_000
	}
	if testing.Short() {
		n = 100_000
	}
	const distinctB = 997
	codeB := func(i int) []byte { return code12(uint64(1<<40 + i%distinctB)) }

	p := New()
	la := p.Create(1, true)
	lb := p.Create(2, false)
	var done atomic.Bool
	var readerIters atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	fail := func(format string, args ...any) {
		select {
		case errs <- fmt.Errorf(format, args...):
		default:
		}
		done.Store(true)
	}

	for rd := range nReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(rd), 99))
			type kept struct {
				b    []byte
				want []byte
			}
			var keep []kept
			last := map[*List][4]uint32{}
			seen := map[uint32]State{} // sampled states of la
			iter := 0
			defer func() { readerIters.Add(int64(iter)) }()
			for ; !done.Load(); iter++ {
				for _, l := range []*List{p.Get(1), p.Get(2)} {
					if l == nil {
						fail("Get returned nil")
						return
					}
					u := l.Used()
					w := l.Withdrawn()
					a := l.Available()
					ln := l.Len()
					if uint64(u)+uint64(w)+uint64(a) > uint64(ln) {
						fail("U%d+W%d+A%d > L%d", u, w, a, ln)
						return
					}
					c := l.Cursor()
					if c > l.Len() || l.Used() > l.Cursor() {
						fail("cursor %d out of range", c)
						return
					}
					now := [4]uint32{ln, c, u, w}
					if prev, ok := last[l]; ok {
						for i := range now {
							if now[i] < prev[i] {
								fail("counter %d went back: %d -> %d", i, prev[i], now[i])
								return
							}
						}
					}
					last[l] = now
					if ln == 0 {
						continue
					}
					pos := uint32(r.IntN(int(ln)))
					want := code12(uint64(pos))
					if l == lb {
						want = codeB(int(pos))
					}
					got := l.Code(pos)
					if !bytes.Equal(got, want) {
						fail("Code(%d) = %q, want %q", pos, got, want)
						return
					}
					if len(keep) < 64 {
						keep = append(keep, kept{got, want})
					} else {
						keep[r.IntN(64)] = kept{got, want}
					}
					st := l.StateOf(pos)
					if st < Available || st > Withdrawn {
						fail("StateOf(%d) = %v below Len", pos, st)
						return
					}
					if l == la {
						lp, ls, ok := l.Lookup(want)
						if !ok || lp != pos || ls < Available || ls > Withdrawn {
							fail("Lookup(la %d) = %d,%v,%v", pos, lp, ls, ok)
							return
						}
						// A code being added right now is either absent or
						// at a position already covered by Len.
						next := ln + uint32(r.IntN(3))
						if np, ns, ok := l.Lookup(code12(uint64(next))); ok &&
							(np != next || ns < Available || ns > Withdrawn || np >= l.Len()) {
							fail("Lookup(la %d) ahead of Len = %d,%v", next, np, ns)
							return
						}
						sample := pos % 4096
						if sample < ln {
							s := l.StateOf(sample)
							if old, ok := seen[sample]; ok && old != s && old != Available {
								fail("state of %d went %v -> %v", sample, old, s)
								return
							}
							seen[sample] = s
						}
					} else {
						// Not Available: the last occurrence when Lookup ran,
						// so the next one was not yet published then.
						k := int(pos) % distinctB
						lp, ls, ok := l.Lookup(want)
						if !ok || lp%distinctB != uint32(k) || lp >= l.Len() ||
							(ls != Available && lp+distinctB < ln && lp+distinctB < uint32(n/4)) {
							fail("Lookup(lb code %d) = %d,%v,%v", k, lp, ls, ok)
							return
						}
						if !bytes.Equal(l.Code(lp), want) {
							fail("Lookup(lb) position %d holds another code", lp)
							return
						}
					}
				}
				// Leave the writer a whole P: with more readers than Ps, a
				// preempted writer would otherwise queue behind them.
				runtime.Gosched()
				if iter%64 == 0 {
					for _, k := range keep {
						if !bytes.Equal(k.b, k.want) {
							fail("a slice returned by Code changed")
							return
						}
					}
					_ = p.IDs()
				}
			}
		}()
	}

	// The writer.
	defer done.Store(true) // stop the readers if the writer fails
	r := rand.New(rand.NewPCG(42, 42))
	states := map[*List][]State{la: nil, lb: nil}
	for i := 0; i < n && !done.Load(); i++ {
		if _, added, err := la.Add(code12(uint64(i))); err != nil || !added {
			t.Fatalf("la.Add(%d): %v %v", i, added, err)
		}
		if i < n/4 {
			if pos, added, err := lb.Add(codeB(i)); err != nil || !added || pos != uint32(i) {
				t.Fatalf("lb.Add(%d): %v %v", i, added, err)
			}
		}
		for _, l := range []*List{la, lb} {
			st := states[l]
			for len(st) < int(l.Len()) {
				st = append(st, Available)
			}
			if i%5 == 0 && l.Len() > l.Cursor() {
				pos := l.Cursor() + uint32(r.IntN(int(l.Len()-l.Cursor())))
				ok := l.Withdraw(pos)
				if ok != (st[pos] == Available) {
					t.Fatalf("Withdraw(%d) disagrees", pos)
				}
				if ok {
					st[pos] = Withdrawn
				}
			}
			if i%3 == 0 {
				k := min(int(l.Available()), r.IntN(5))
				l.Take(k, func(pos uint32, code []byte) {
					if st[pos] != Available {
						t.Errorf("Take handed out %d in state %v", pos, st[pos])
					}
					st[pos] = Assigned
				})
			}
			states[l] = st
		}
		if i%1000 == 0 {
			id := uint64(100 + i/1000%7)
			if p.Get(id) == nil {
				p.Create(id, true)
			} else {
				p.Delete(id)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d reader iterations against %d writer steps", readerIters.Load(), n)
	for l, st := range states {
		checkCounts(t, l)
		checkInvariants(t, l)
		for pos, s := range st {
			if got := l.StateOf(uint32(pos)); got != s {
				t.Fatalf("final StateOf(%d) = %v, want %v", pos, got, s)
			}
		}
	}
}

// TestConcurrentReadd runs one writer that grows a dedupe list and a list
// without dedupe by a fixed plan of Add and Readd (copies of any earlier
// position, many of a few hot codes), with Take and Withdraw-by-Lookup, against
// readers that check every Lookup against the plan:
//
//   - the position found holds the code and is below Len;
//   - every earlier occurrence of the code is not Available afterwards
//     (it was Assigned or Withdrawn when Lookup ran, and those are final);
//   - an answer that is not Available is final and was the last occurrence:
//     the next occurrence was not published when Lookup started.
//
// At the end every position's state and every code's Lookup are compared
// with the writer's record.
func TestConcurrentReadd(t *testing.T) {
	n := 400_000
	if sizedDown {
		n = 100_000
	}
	if testing.Short() {
		n = 50_000
	}
	const hot = 32
	type step struct {
		code uint32 // code index
		src  int32  // position copied by Readd; -1: Add
	}
	plan := make([]step, n)
	prev := make([]int32, n) // previous occurrence of the same code, -1
	next := make([]uint32, n)
	last := map[uint32]int32{}
	r := rand.New(rand.NewPCG(7, 7))
	var codes uint32
	for i := range plan {
		s := step{src: -1}
		if i > 0 && r.IntN(5) < 2 {
			s.src = int32(r.IntN(i))
			if r.IntN(2) == 0 {
				s.src = int32(r.IntN(min(i, hot)))
			}
			s.code = plan[s.src].code
		} else {
			s.code = codes
			codes++
		}
		plan[i] = s
		prev[i] = -1
		if p, ok := last[s.code]; ok {
			prev[i] = p
			next[p] = uint32(i)
		}
		next[i] = math.MaxUint32
		last[s.code] = int32(i)
	}
	codeC := func(k uint32) []byte { return code12(1<<41 + uint64(k)) }

	lc := New().Create(1, true)
	ld := New().Create(2, false)
	var done atomic.Bool
	var wg sync.WaitGroup
	var lookups, notAvail atomic.Int64
	errs := make(chan error, 16)
	fail := func(format string, args ...any) {
		select {
		case errs <- fmt.Errorf(format, args...):
		default:
		}
		done.Store(true)
	}
	for rd := range nReaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(rd), 17))
			var nl, nn int64
			defer func() { lookups.Add(nl); notAvail.Add(nn) }()
			for !done.Load() {
				for _, l := range []*List{lc, ld} {
					ln := l.Len()
					if ln == 0 {
						continue
					}
					pos := uint32(r.IntN(int(ln)))
					if r.IntN(2) == 0 {
						pos = uint32(r.IntN(min(int(ln), hot)))
					}
					k := plan[pos].code
					want := codeC(k)
					if got := l.Code(pos); !bytes.Equal(got, want) {
						fail("Code(%d) = %q, want %q", pos, got, want)
						return
					}
					lp, ls, ok := l.Lookup(want)
					nl++
					if !ok || lp >= l.Len() || plan[lp].code != k || ls < Available || ls > Withdrawn {
						fail("Lookup(code %d) = %d,%v,%v", k, lp, ls, ok)
						return
					}
					if ls != Available {
						nn++
						if next[lp] < ln || l.StateOf(lp) != ls {
							fail("Lookup(code %d) = %d,%v: not the last (next %d, Len %d) or not final (%v)",
								k, lp, ls, next[lp], ln, l.StateOf(lp))
							return
						}
					}
					for q, steps := prev[lp], 0; q >= 0 && steps < 16; q, steps = prev[q], steps+1 {
						if l.StateOf(uint32(q)) == Available {
							fail("Lookup(code %d) = %d,%v but %d before it is Available", k, lp, ls, q)
							return
						}
					}
				}
				runtime.Gosched()
			}
		}()
	}

	defer done.Store(true)
	w := rand.New(rand.NewPCG(8, 8))
	states := map[*List][]State{}
	for i := 0; i < n && !done.Load(); i++ {
		s := plan[i]
		for li, l := range []*List{lc, ld} {
			var pos uint32
			var err error
			switch {
			case s.src < 0 || (li == 1 && i%2 == 1):
				pos, _, err = l.Add(codeC(s.code))
			default:
				pos, err = l.Readd(uint32(s.src))
			}
			if err != nil || pos != uint32(i) {
				t.Fatalf("list %d step %d: position %d, %v", li, i, pos, err)
			}
			st := append(states[l], Available)
			if i%7 == 0 {
				// Withdraw by value, as the state machine does.
				p, ps, _ := l.Lookup(codeC(plan[w.IntN(i+1)].code))
				if ps == Available {
					if !l.Withdraw(p) {
						t.Fatalf("Withdraw(%d) of an Available occurrence failed", p)
					}
					st[p] = Withdrawn
				}
			}
			if i%2 == 0 {
				l.Take(min(int(l.Available()), w.IntN(4)), func(p uint32, _ []byte) {
					if st[p] != Available {
						t.Errorf("Take handed out %d in state %v", p, st[p])
					}
					st[p] = Assigned
				})
			}
			states[l] = st
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d reader lookups (%d not Available) against %d writer steps", lookups.Load(), notAvail.Load(), n)
	if notAvail.Load() == 0 {
		t.Fatal("no reader saw a code without an Available occurrence: the test checked too little")
	}
	for _, l := range []*List{lc, ld} {
		st := states[l]
		checkCounts(t, l)
		checkInvariants(t, l)
		for p, s := range st {
			if got := l.StateOf(uint32(p)); got != s {
				t.Fatalf("final StateOf(%d) = %v, want %v", p, got, s)
			}
		}
		for k := range codes {
			wp := uint32(last[k])
			for q := wp; ; q = uint32(prev[q]) {
				if st[q] == Available {
					wp = q
				}
				if prev[q] < 0 {
					break
				}
			}
			if p, s, _ := l.Lookup(codeC(k)); p != wp || s != st[wp] {
				t.Fatalf("final Lookup(code %d) = %d,%v, want %d,%v", k, p, s, wp, st[wp])
			}
		}
	}
}
