package pool

import (
	"bytes"
	"fmt"
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
