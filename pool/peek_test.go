package pool

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPeekIsNextTake: after random adds, withdrawals (runs across bitmap
// words and position blocks), takes and re-adds, Peek names the position
// and code the next Take hands out, and changes no count.
func TestPeekIsNextTake(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 2))
	l := NewList(true)
	if _, _, ok := l.Peek(); ok {
		t.Fatal("Peek found a code in an empty list")
	}
	next := uint64(0)
	for step := 0; step < 1500; step++ {
		switch k := r.IntN(10); {
		case k < 3:
			for range 1 + r.IntN(3000) {
				mustAdd(t, l, code12(next))
				next++
			}
		case k < 6 && l.Len() > 0:
			// A run of withdrawals from a random point at or after the cursor.
			from := l.Cursor() + uint32(r.IntN(200))
			for p := from; p < min(from+uint32(r.IntN(20000)), l.Len()); p++ {
				l.Withdraw(p)
			}
		case k < 8 && l.Used() > 0 && r.IntN(4) == 0:
			if _, err := l.Readd(uint32(r.IntN(int(l.Cursor())))); err != nil {
				t.Fatal(err)
			}
		default:
			pos, code, ok := l.Peek()
			if ok != (l.Available() > 0) {
				t.Fatalf("step %d: Peek ok=%v with %d available", step, ok, l.Available())
			}
			if !ok {
				continue
			}
			counts := [4]uint32{l.Len(), l.Available(), l.Used(), l.Withdrawn()}
			if again, _, _ := l.Peek(); again != pos {
				t.Fatalf("step %d: Peek moved from %d to %d", step, pos, again)
			}
			if now := [4]uint32{l.Len(), l.Available(), l.Used(), l.Withdrawn()}; now != counts {
				t.Fatalf("step %d: Peek changed the counts %v to %v", step, counts, now)
			}
			var took uint32
			var tookCode []byte
			l.Take(1, func(p uint32, c []byte) { took, tookCode = p, c })
			if took != pos || !bytes.Equal(tookCode, code) {
				t.Fatalf("step %d: Peek said %d %q, Take gave %d %q", step, pos, code, took, tookCode)
			}
		}
	}
}

// TestPeekConcurrent: readers Peek while the writer adds, withdraws and
// takes. Each answer is an Available-looking position with its own code,
// and one reader's answers never go backwards (the first Available position
// only moves forward).
func TestPeekConcurrent(t *testing.T) {
	l := NewList(true)
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint32(0)
			for !done.Load() {
				pos, code, ok := l.Peek()
				if !ok {
					continue
				}
				if pos < last || pos >= l.Len() || !bytes.Equal(code, l.Code(pos)) {
					errs <- "Peek answered a stale or wrong position"
					return
				}
				last = pos
			}
		}()
	}
	r := rand.New(rand.NewPCG(18, 3))
	n := 200000
	if raceEnabled {
		n = 40000
	}
	for i := 0; i < n; i++ {
		mustAdd(t, l, code12(uint64(i)))
		switch r.IntN(4) {
		case 0:
			l.Withdraw(l.Cursor() + uint32(r.IntN(3)))
		case 1:
			if a := l.Available(); a > 0 {
				l.Take(1+r.IntN(int(a)), func(uint32, []byte) {})
			}
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
