package pool

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// oracle is the obviously-correct model of a List.
type oracle struct {
	dedupe bool
	codes  [][]byte
	state  []State
	occ    map[string][]uint32 // positions of each code, ascending
	counts [4]uint32           // by State
	cursor uint32
}

func (o *oracle) add(c []byte) {
	o.occ[string(c)] = append(o.occ[string(c)], uint32(len(o.codes)))
	o.codes = append(o.codes, c)
	o.state = append(o.state, Available)
	o.counts[Available]++
}

func (o *oracle) set(p uint32, s State) {
	o.counts[o.state[p]]--
	o.state[p] = s
	o.counts[s]++
}

func (o *oracle) count(s State) uint32 { return o.counts[s] }

// lookup: the first Available occurrence, else the last occurrence.
func (o *oracle) lookup(c []byte) (uint32, State, bool) {
	ps := o.occ[string(c)]
	if len(ps) == 0 {
		return 0, 0, false
	}
	for _, p := range ps {
		if o.state[p] == Available {
			return p, Available, true
		}
	}
	last := ps[len(ps)-1]
	return last, o.state[last], true
}

// TestModel runs random sequences of Add (with repeats), Readd, Withdraw,
// Take and SetCursor against the oracle and compares every output and every
// observable after each step.
func TestModel(t *testing.T) {
	type cfg struct {
		dedupe   bool
		alphabet int // distinct codes to draw from (small = many repeats)
		steps    int
		checkAll bool // check every position and every code after each step
	}
	cfgs := []cfg{
		{true, 30, 1500, true},
		{false, 30, 1500, true},
		{true, 400, 1500, true},
		{false, 400, 1500, true},
		{false, 3, 800, true},
		{true, 1 << 30, 40_000, false},
		{false, 2000, 40_000, false},
	}
	seeds := 4
	if testing.Short() {
		seeds = 1
	}
	for ci, c := range cfgs {
		n := seeds
		if raceEnabled && (!c.checkAll || sizedDown) {
			n = 1
		}
		for seed := range n {
			t.Run(fmt.Sprintf("cfg%d/seed%d", ci, seed), func(t *testing.T) {
				runModel(t, uint64(seed), c.dedupe, c.alphabet, c.steps, c.checkAll)
			})
		}
	}
}

func runModel(t *testing.T, seed uint64, dedupe bool, alphabet, steps int, checkAll bool) {
	r := rand.New(rand.NewPCG(seed, uint64(alphabet)))
	l := New().Create(1, dedupe)
	o := &oracle{dedupe: dedupe, occ: map[string][]uint32{}}
	// Codes of varied length; a code is derived from its alphabet index.
	mk := func(k int) []byte {
		n := 1 + (k*7919)%40
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(k >> (8 * (i % 4)))
		}
		b[0] ^= byte(n)
		return b
	}
	var touched []uint32
	for step := range steps {
		var opName string // for messages
		var opArg any
		what := func() string { return fmt.Sprintf("%s(%v)", opName, opArg) }
		touched = touched[:0]
		switch op := r.IntN(100); {
		case op < 58:
			k := r.IntN(alphabet)
			c := mk(k)
			opName, opArg = "Add", c
			pos, added, err := l.Add(c)
			if err != nil {
				t.Fatalf("step %d %s: %v", step, what(), err)
			}
			wantPos, wantAdded := uint32(len(o.codes)), true
			if dedupe {
				if ps := o.occ[string(c)]; len(ps) > 0 {
					wantPos, wantAdded = ps[0], false
				}
			}
			if pos != wantPos || added != wantAdded {
				t.Fatalf("step %d %s = %d,%v, want %d,%v", step, what(), pos, added, wantPos, wantAdded)
			}
			if added {
				o.add(c)
			}
			touched = append(touched, pos)
		case op < 68:
			// Readd, mostly of a handed-out position (a release), but of
			// any position in any state, and sometimes past the end.
			p := uint32(r.IntN(len(o.codes) + 2))
			if r.IntN(3) > 0 && o.cursor > 0 {
				p = uint32(r.IntN(int(o.cursor)))
			}
			opName, opArg = "Readd", p
			pos, err := l.Readd(p)
			if int(p) >= len(o.codes) {
				if !errors.Is(err, ErrNoSuchPosition) {
					t.Fatalf("step %d %s = %d,%v, want ErrNoSuchPosition", step, what(), pos, err)
				}
				break
			}
			if err != nil || pos != uint32(len(o.codes)) {
				t.Fatalf("step %d %s = %d,%v, want %d", step, what(), pos, err, len(o.codes))
			}
			o.add(o.codes[p])
			touched = append(touched, p, pos)
		case op < 78:
			p := uint32(r.IntN(len(o.codes) + 3))
			if r.IntN(2) == 0 && len(o.codes) > int(o.cursor) {
				p = o.cursor + uint32(r.IntN(len(o.codes)-int(o.cursor)))
			}
			opName, opArg = "Withdraw", p
			want := int(p) < len(o.codes) && o.state[p] == Available
			if got := l.Withdraw(p); got != want {
				t.Fatalf("step %d %s = %v, want %v", step, what(), got, want)
			}
			if want {
				o.set(p, Withdrawn)
			}
			touched = append(touched, p)
		case op < 97:
			avail := int(o.count(Available))
			n := r.IntN(avail + 1)
			if r.IntN(4) == 0 {
				n = min(avail, r.IntN(3))
			}
			opName, opArg = "Take", n
			var want []uint32
			p := o.cursor
			for len(want) < n {
				if o.state[p] == Available {
					want = append(want, p)
					o.set(p, Assigned)
				}
				p++
			}
			if n > 0 {
				o.cursor = p
			}
			var got []uint32
			l.Take(n, func(pos uint32, code []byte) {
				got = append(got, pos)
				if !bytes.Equal(code, o.codes[pos]) {
					t.Fatalf("step %d %s: code for %d = %x, want %x", step, what(), pos, code, o.codes[pos])
				}
			})
			if !slices.Equal(got, want) {
				t.Fatalf("step %d %s = %v, want %v", step, what(), got, want)
			}
			touched = append(touched, got...)
		default:
			c := o.cursor + uint32(r.IntN(len(o.codes)-int(o.cursor)+1))
			opName, opArg = "SetCursor", c
			l.SetCursor(c)
			for p := o.cursor; p < c; p++ {
				if o.state[p] == Available {
					o.set(p, Assigned)
				}
			}
			o.cursor = c
			touched = append(touched, c-1, c)
		}
		// Every observable is compared every few steps (every step while the
		// list is small); in between, a sample plus the positions touched.
		full := checkAll && (step%8 == 0 || len(o.codes) <= 64)
		checkModel(t, l, o, r, full, touched, func() string { return fmt.Sprintf("step %d after %s", step, what()) })
		if full || step%1000 == 0 {
			checkInvariants(t, l)
		}
	}
	checkModel(t, l, o, r, true, nil, func() string { return "final" })
	checkInvariants(t, l)
}

func checkModel(t *testing.T, l *List, o *oracle, r *rand.Rand, all bool, touched []uint32, where func() string) {
	t.Helper()
	n := uint32(len(o.codes))
	if l.Len() != n || l.Cursor() != o.cursor || l.Available() != o.count(Available) ||
		l.Used() != o.count(Assigned) || l.Withdrawn() != o.count(Withdrawn) {
		t.Fatalf("%s: counters L%d C%d A%d U%d W%d, want L%d C%d A%d U%d W%d", where(),
			l.Len(), l.Cursor(), l.Available(), l.Used(), l.Withdrawn(),
			n, o.cursor, o.count(Available), o.count(Assigned), o.count(Withdrawn))
	}
	checkPos := func(p uint32) {
		if st := l.StateOf(p); st != o.state[p] {
			t.Fatalf("%s: StateOf(%d) = %v, want %v", where(), p, st, o.state[p])
		}
		if c := l.Code(p); !bytes.Equal(c, o.codes[p]) {
			t.Fatalf("%s: Code(%d) = %x, want %x", where(), p, c, o.codes[p])
		}
		c := o.codes[p]
		wp, ws, wok := o.lookup(c)
		if gp, gs, gok := l.Lookup(c); gp != wp || gs != ws || gok != wok {
			t.Fatalf("%s: Lookup(%x) = %d,%v,%v, want %d,%v,%v", where(), c, gp, gs, gok, wp, ws, wok)
		}
	}
	if all {
		for p := range n {
			checkPos(p)
		}
	} else if n > 0 {
		for range 8 {
			checkPos(uint32(r.IntN(int(n))))
		}
		for _, p := range touched {
			if p < n {
				checkPos(p)
			}
		}
		checkPos(n - 1)
	}
	if l.StateOf(n) != 0 || l.Code(n) != nil {
		t.Fatalf("%s: position Len has a state or code", where())
	}
	if _, _, ok := l.Lookup([]byte("\x00absent\x00")); ok {
		t.Fatalf("%s: absent code found", where())
	}
}
