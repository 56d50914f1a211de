package pool

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestFindManyAndEachFirst checks the comparison readers against the
// writer's own record on a list without dedupe that holds repeats and
// Readd copies: EachFirst yields exactly the first occurrences in order,
// FindMany the first occurrence of every code and nothing for others.
func TestFindManyAndEachFirst(t *testing.T) {
	l := newList(false)
	first := map[string]uint32{}
	var codes [][]byte
	for i := range 5000 {
		c := code12(uint64(i % 1700)) // repeats
		pos, _, err := l.Add(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := first[string(c)]; !ok {
			first[string(c)] = pos
			codes = append(codes, c)
		}
	}
	for p := uint32(0); p < 200; p += 7 {
		if _, err := l.Readd(p); err != nil {
			t.Fatal(err)
		}
	}
	var walked []uint32
	l.EachFirst(0, l.Len()+10, func(pos []uint32, cs [][]byte) bool {
		for i, p := range pos {
			if string(cs[i]) != string(l.Code(p)) || first[string(cs[i])] != p {
				t.Fatalf("EachFirst gave %d %q, first occurrence is %d", p, cs[i], first[string(cs[i])])
			}
			walked = append(walked, p)
		}
		return true
	})
	if len(walked) != len(first) {
		t.Fatalf("EachFirst walked %d positions, %d codes", len(walked), len(first))
	}
	for i := 1; i < len(walked); i++ {
		if walked[i] <= walked[i-1] {
			t.Fatal("EachFirst out of order")
		}
	}
	// EachFirst of a middle range, and a stop.
	calls := 0
	l.EachFirst(100, 300, func(pos []uint32, _ [][]byte) bool {
		calls++
		if pos[0] < 100 || pos[len(pos)-1] >= 300 {
			t.Fatalf("EachFirst(100, 300) gave %v", pos)
		}
		return false
	})
	if calls != 1 {
		t.Fatalf("EachFirst went on after false: %d calls", calls)
	}
	probe := append([][]byte{}, codes...)
	probe = append(probe, code12(1<<50), []byte{}, make([]byte, MaxCodeLen+1))
	seen := 0
	l.FindMany(probe, func(i int, pos uint32, ok bool) {
		seen++
		if i >= len(codes) {
			if ok {
				t.Fatalf("FindMany found %q", probe[i])
			}
			return
		}
		if !ok || pos != first[string(probe[i])] {
			t.Fatalf("FindMany(%q) = %d, %v; first occurrence %d", probe[i], pos, ok, first[string(probe[i])])
		}
	})
	if seen != len(probe) {
		t.Fatalf("FindMany answered %d of %d", seen, len(probe))
	}
	if l.IsFirst(l.Len()) {
		t.Fatal("IsFirst past Len")
	}
}

// TestFindManyConcurrent runs FindMany and EachFirst against a writer that
// grows two lists (index rebuilds, block 0 growth, new slabs, duplicates,
// Readd copies): every code published before a reader's call is found at
// its first occurrence, every code found is the code at its position, and
// EachFirst yields only first occurrences. Run with -race.
func TestFindManyConcurrent(t *testing.T) {
	n := 300_000
	if sizedDown {
		n = 60_000
	}
	lists := []*List{newList(true), newList(false)}
	codeOf := func(i int) []byte { return code12(uint64(i % (n / 3))) } // every code thrice
	var published [2]atomic.Int64                                       // codes 0..published-1 were added
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
		done.Store(true)
	}
	for k := range lists {
		wg.Go(func() {
			l := lists[k]
			for !done.Load() {
				upto := int(published[k].Load())
				var batch [][]byte
				for i := max(0, upto-64); i < upto; i++ {
					batch = append(batch, codeOf(i))
				}
				l.FindMany(batch, func(i int, pos uint32, ok bool) {
					if !ok {
						fail(fmt.Errorf("list %d: published code %q not found", k, batch[i]))
						return
					}
					if string(l.Code(pos)) != string(batch[i]) || !l.IsFirst(pos) {
						fail(fmt.Errorf("list %d: %q found at %d, which holds %q", k, batch[i], pos, l.Code(pos)))
					}
				})
				from := uint32(max(0, upto-5000))
				l.EachFirst(from, from+5000, func(pos []uint32, cs [][]byte) bool {
					// Each is the first occurrence of its code: the index says so.
					l.FindMany(cs, func(i int, first uint32, ok bool) {
						if !ok || first != pos[i] || string(l.Code(first)) != string(cs[i]) {
							fail(fmt.Errorf("list %d: EachFirst gave %d %q, its first occurrence is %d (%v)", k, pos[i], cs[i], first, ok))
						}
					})
					return !done.Load()
				})
			}
		})
	}
	for i := range n {
		for k, l := range lists {
			if _, _, err := l.Add(codeOf(i)); err != nil {
				t.Fatal(err)
			}
			if i%1000 == 999 && !l.dedupe {
				if _, err := l.Readd(uint32(i / 2)); err != nil {
					t.Fatal(err)
				}
			}
			published[k].Store(int64(i + 1))
		}
		if done.Load() {
			break
		}
	}
	done.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}
