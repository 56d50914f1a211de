package pool

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestAddManyIsAdd: AddMany, with or without GrowIndex first, gives every
// code the outcome that Add one by one gives it, and leaves the same list:
// duplicates within a batch and across batches, empty and too long codes,
// a list that fills up, with and without dedupe.
func TestAddManyIsAdd(t *testing.T) {
	f := func(dedupe bool, max uint32, grow bool, seed uint64) {
		t.Helper()
		name := fmt.Sprintf("dedupe=%v max=%d grow=%v seed=%d", dedupe, max, grow, seed)
		r := rand.New(rand.NewPCG(seed, 1))
		codes := make([][]byte, 20_000)
		for i := range codes {
			switch k := r.IntN(100); {
			case k == 0:
				codes[i] = nil
			case k == 1:
				codes[i] = make([]byte, MaxCodeLen+1)
			default:
				codes[i] = code12(uint64(r.IntN(12_000))) // about 40 % repeats
			}
		}
		one, many := newList(dedupe), newList(dedupe)
		one.w.max, many.w.max = max, max
		// Some codes before, so that the batches meet an index with entries.
		for _, c := range codes[:500] {
			one.Add(c)
			many.Add(c)
		}
		rest := codes[500:]
		if grow {
			many.GrowIndex(len(rest))
		}
		type outcome struct {
			pos   uint32
			added bool
			err   error
		}
		var want, got []outcome
		for _, c := range rest {
			pos, added, err := one.Add(c)
			want = append(want, outcome{pos, added, err})
		}
		for from := 0; from < len(rest); {
			n := 1 + r.IntN(3*addBatch) // batches of any size, across AddMany's own
			to := min(from+n, len(rest))
			many.AddMany(rest[from:to], func(i int, pos uint32, added bool, err error) {
				if i != len(got)-from {
					t.Fatalf("%s: AddMany reported code %d after %d outcomes", name, i, len(got)-from)
				}
				got = append(got, outcome{pos, added, err})
			})
			from = to
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d outcomes, want %d", name, len(got), len(want))
		}
		for i := range want {
			w, g := want[i], got[i]
			if w.pos != g.pos || w.added != g.added || !errors.Is(g.err, w.err) || (w.err == nil) != (g.err == nil) {
				t.Fatalf("%s: code %d (%q): AddMany %+v, Add %+v", name, i, rest[i], g, w)
			}
		}
		if one.Len() != many.Len() || one.Available() != many.Available() {
			t.Fatalf("%s: Len %d/%d, Available %d/%d", name, many.Len(), one.Len(), many.Available(), one.Available())
		}
		for p := uint32(0); p < one.Len(); p++ {
			if string(one.Code(p)) != string(many.Code(p)) {
				t.Fatalf("%s: position %d holds %q, want %q", name, p, many.Code(p), one.Code(p))
			}
		}
		for _, c := range codes {
			p1, s1, ok1 := one.Lookup(c)
			p2, s2, ok2 := many.Lookup(c)
			if p1 != p2 || s1 != s2 || ok1 != ok2 {
				t.Fatalf("%s: Lookup(%q) = %d %v %v, want %d %v %v", name, c, p2, s2, ok2, p1, s1, ok1)
			}
		}
		checkCounts(t, many)
	}
	for _, dedupe := range []bool{true, false} {
		for _, grow := range []bool{false, true} {
			f(dedupe, MaxCodes, grow, 1)
			f(dedupe, 9_000, grow, 2) // fills up half-way
		}
	}
}

// TestGrowIndexSizes: GrowIndex sizes the index as the Adds it makes room
// for would have, so it costs no memory they would not have cost, and it
// never shrinks it.
func TestGrowIndexSizes(t *testing.T) {
	f := func(before, n int) {
		t.Helper()
		stepwise, grown := newList(true), newList(true)
		for i := range before {
			stepwise.Add(code12(uint64(i)))
			grown.Add(code12(uint64(i)))
		}
		was := len(grown.w.idx.slots)
		grown.GrowIndex(n)
		for i := before; i < before+n; i++ {
			stepwise.Add(code12(uint64(i)))
		}
		if got, want := len(grown.w.idx.slots), max(was, len(stepwise.w.idx.slots)); got != want {
			t.Fatalf("GrowIndex(%d) after %d codes: %d slots, want %d", n, before, got, want)
		}
		for i := before; i < before+n; i++ {
			grown.Add(code12(uint64(i)))
		}
		if len(grown.w.idx.slots) != len(stepwise.w.idx.slots) {
			t.Fatalf("after the Adds: %d slots, stepwise %d", len(grown.w.idx.slots), len(stepwise.w.idx.slots))
		}
	}
	f(0, 0)
	f(0, 1)
	f(0, 12)
	f(0, 13)
	f(10, 100_000)
	f(100_000, 10)
	f(3_000, 1)
}

// BenchmarkAddManyScale is BenchmarkAddScale through what an import commit
// does: GrowIndex for the whole import, then AddMany in chunks of 70,000
// codes (about 1 MiB staged).
func BenchmarkAddManyScale(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			buf := codes12(n)
			codes := make([][]byte, n)
			for i := range codes {
				codes[i] = buf[12*i : 12*i+12]
			}
			b.ReportAllocs()
			b.ResetTimer()
			var mem int
			for range b.N {
				l := newList(true)
				l.GrowIndex(n)
				for from := 0; from < n; from += 70_000 {
					l.AddMany(codes[from:min(from+70_000, n)], func(int, uint32, bool, error) {})
				}
				mem = l.MemoryBytes()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/code")
			b.ReportMetric(float64(mem)/float64(n), "B/code")
		})
	}
}

// TestPutReplacesAList: a list filled before it is registered (raftfsm's
// staged pool of a new list) takes the place of the empty one under its id.
func TestPutReplacesAList(t *testing.T) {
	ps := New()
	ps.Create(3, true)
	l := NewList(true)
	for _, c := range []string{"A", "B", "A"} {
		l.Add([]byte(c))
	}
	ps.Put(3, l)
	if got := ps.Get(3); got != l || got.Len() != 2 {
		t.Fatalf("Get(3) after Put: %p with %d codes, want %p with 2", got, got.Len(), l)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Put of an unknown id did not panic")
		}
	}()
	ps.Put(4, NewList(true))
}
