package pool

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestStateString(t *testing.T) {
	for _, tc := range []struct {
		s    State
		want string
	}{
		{Available, "available"},
		{Assigned, "assigned"},
		{Withdrawn, "withdrawn"},
		{0, "State(0)"},
		{9, "State(9)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("State(%d).String() = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestAddDedupe(t *testing.T) {
	for _, dedupe := range []bool{true, false} {
		l := New().Create(1, dedupe)
		if l.Dedupe() != dedupe {
			t.Fatalf("Dedupe() = %v", l.Dedupe())
		}
		in := []string{"A", "B", "A", "C", "B", "A"}
		for i, c := range in {
			pos, added := mustAdd(t, l, []byte(c))
			switch {
			case !dedupe:
				if !added || pos != uint32(i) {
					t.Fatalf("nodedupe Add(%s) = %d,%v", c, pos, added)
				}
			case i < 2 || i == 3:
				if !added {
					t.Fatalf("dedupe Add(%s) not added", c)
				}
			default:
				first := uint32(slices.Index(in, c))
				if added || pos != first {
					t.Fatalf("dedupe Add(%s) = %d,%v, want %d,false", c, pos, added, first)
				}
			}
		}
		wantLen := uint32(3)
		if !dedupe {
			wantLen = 6
		}
		if l.Len() != wantLen || l.Available() != wantLen {
			t.Fatalf("dedupe=%v Len %d Available %d", dedupe, l.Len(), l.Available())
		}
		for _, c := range []string{"A", "B", "C"} {
			pos, st, ok := l.Lookup([]byte(c))
			if !ok || st != Available || string(l.Code(pos)) != c {
				t.Fatalf("Lookup(%s) = %d,%v,%v", c, pos, st, ok)
			}
			if want := uint32(slices.Index(in, c)); pos != want && !dedupe {
				t.Fatalf("nodedupe Lookup(%s) = %d, want first %d", c, pos, want)
			}
		}
		if _, _, ok := l.Lookup([]byte("D")); ok {
			t.Fatal("Lookup(D) found")
		}
		checkCounts(t, l)
	}
}

func TestLookupNoDedupeFirstAvailableElseLast(t *testing.T) {
	l := New().Create(1, false)
	for _, c := range []string{"X", "Y", "X", "X", "Y", "X"} { // X at 0,2,3,5
		mustAdd(t, l, []byte(c))
	}
	want := func(pos uint32, st State) {
		t.Helper()
		p, s, ok := l.Lookup([]byte("X"))
		if !ok || p != pos || s != st {
			t.Fatalf("Lookup(X) = %d,%v,%v, want %d,%v", p, s, ok, pos, st)
		}
	}
	want(0, Available)
	if got := takeAll(l, 1); !slices.Equal(got, []uint32{0}) {
		t.Fatalf("Take = %v", got)
	}
	want(2, Available)
	if !l.Withdraw(3) {
		t.Fatal("Withdraw(3)")
	}
	want(2, Available)
	if !l.Withdraw(2) {
		t.Fatal("Withdraw(2)")
	}
	want(5, Available)
	mustAdd(t, l, []byte("X")) // 6
	want(5, Available)
	if got := takeAll(l, 2); !slices.Equal(got, []uint32{1, 4}) {
		t.Fatalf("Take = %v", got)
	}
	want(5, Available)
	if got := takeAll(l, 2); !slices.Equal(got, []uint32{5, 6}) {
		t.Fatalf("Take = %v", got)
	}
	want(6, Assigned)          // none available: the last occurrence
	mustAdd(t, l, []byte("X")) // 7
	want(7, Available)
	if !l.Withdraw(7) {
		t.Fatal("Withdraw(7)")
	}
	want(7, Withdrawn)
	checkInvariants(t, l)
	// Y at 1 and 4, both taken: the last.
	p, s, ok := l.Lookup([]byte("Y"))
	if !ok || p != 4 || s != Assigned {
		t.Fatalf("Lookup(Y) = %d,%v,%v", p, s, ok)
	}
	checkCounts(t, l)
}

func TestCodeLength(t *testing.T) {
	l := New().Create(1, true)
	for _, n := range []int{0, MaxCodeLen + 1, 1000} {
		if _, _, err := l.Add(make([]byte, n)); !errors.Is(err, ErrCodeLength) {
			t.Fatalf("Add(len %d) err = %v", n, err)
		}
		if _, _, ok := l.Lookup(make([]byte, n)); ok {
			t.Fatalf("Lookup(len %d) found", n)
		}
	}
	long := bytes.Repeat([]byte{0xff}, MaxCodeLen)
	pos, _ := mustAdd(t, l, long)
	if !bytes.Equal(l.Code(pos), long) {
		t.Fatal("max-length code corrupted")
	}
	if l.Len() != 1 {
		t.Fatalf("Len = %d", l.Len())
	}
}

// TestCodesAcrossSlabs adds random codes of 1..128 bytes (many slabs, many
// position blocks, many index resizes) and reads all of them back.
func TestCodesAcrossSlabs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dedupe := range []bool{true, false} {
		l := New().Create(7, dedupe)
		var codes [][]byte
		seen := map[string]uint32{}
		for len(codes) < 100_000 {
			c := randCode(r, 1, 128)
			if len(codes) > 0 && r.IntN(50) == 0 {
				c = codes[r.IntN(len(codes))] // repeats
			}
			pos, added := mustAdd(t, l, c)
			if first, dup := seen[string(c)]; dup && dedupe {
				if added || pos != first {
					t.Fatalf("dup Add = %d,%v want %d,false", pos, added, first)
				}
				continue
			}
			if !added || pos != uint32(len(codes)) {
				t.Fatalf("Add = %d,%v want %d,true", pos, added, len(codes))
			}
			if _, ok := seen[string(c)]; !ok {
				seen[string(c)] = pos
			}
			codes = append(codes, c)
		}
		if got := len(l.lay.Load().slabs); got < 10 {
			t.Fatalf("only %d slabs", got)
		}
		if got := len(l.lay.Load().blocks); got < 6 {
			t.Fatalf("only %d position blocks", got)
		}
		for i, c := range codes {
			got := l.Code(uint32(i))
			if !bytes.Equal(got, c) {
				t.Fatalf("Code(%d) = %x, want %x", i, got, c)
			}
			if cap(got) != len(got) {
				t.Fatalf("Code(%d) capacity not clipped", i)
			}
			pos, st, ok := l.Lookup(c)
			if !ok || st != Available || pos != seen[string(c)] {
				t.Fatalf("Lookup(code %d) = %d,%v,%v want %d", i, pos, st, ok, seen[string(c)])
			}
		}
		checkInvariants(t, l)
		if l.Code(uint32(len(codes))) != nil || l.StateOf(uint32(len(codes))) != 0 {
			t.Fatal("position past Len has a code or a state")
		}
		for range 1000 {
			c := randCode(r, 1, 128)
			if _, dup := seen[string(c)]; dup {
				continue
			}
			if _, _, ok := l.Lookup(c); ok {
				t.Fatalf("Lookup of absent %x found", c)
			}
		}
	}
}

func TestWithdrawTake(t *testing.T) {
	l := New().Create(1, true)
	for i := range 20 {
		mustAdd(t, l, code12(uint64(i)))
	}
	for _, p := range []uint32{0, 1, 5, 6, 7, 19} {
		if !l.Withdraw(p) {
			t.Fatalf("Withdraw(%d) = false", p)
		}
	}
	if l.Withdraw(5) || l.Withdraw(20) || l.Withdraw(1<<31) {
		t.Fatal("Withdraw of withdrawn or absent position succeeded")
	}
	if l.Withdrawn() != 6 || l.Available() != 14 || l.Used() != 0 {
		t.Fatalf("counts W%d A%d U%d", l.Withdrawn(), l.Available(), l.Used())
	}
	var codes [][]byte
	var got []uint32
	l.Take(5, func(pos uint32, code []byte) {
		got = append(got, pos)
		codes = append(codes, code)
	})
	if !slices.Equal(got, []uint32{2, 3, 4, 8, 9}) {
		t.Fatalf("Take(5) = %v", got)
	}
	for i, p := range got {
		if !bytes.Equal(codes[i], code12(uint64(p))) {
			t.Fatalf("Take code for %d wrong", p)
		}
	}
	if l.Cursor() != 10 || l.Used() != 5 || l.Available() != 9 {
		t.Fatalf("after Take cursor %d used %d avail %d", l.Cursor(), l.Used(), l.Available())
	}
	if l.Withdraw(3) || l.Withdraw(9) {
		t.Fatal("Withdraw of an assigned position succeeded")
	}
	for p, want := range map[uint32]State{0: Withdrawn, 2: Assigned, 7: Withdrawn, 9: Assigned, 10: Available, 19: Withdrawn, 20: 0} {
		if st := l.StateOf(p); st != want {
			t.Fatalf("StateOf(%d) = %v, want %v", p, st, want)
		}
	}
	pos, st, ok := l.Lookup(code12(7))
	if !ok || pos != 7 || st != Withdrawn {
		t.Fatalf("Lookup(withdrawn) = %d,%v,%v", pos, st, ok)
	}
	mustPanic(t, "Take too many", func() { l.Take(10, func(uint32, []byte) {}) })
	mustPanic(t, "Take negative", func() { l.Take(-1, func(uint32, []byte) {}) })
	l.Take(0, func(uint32, []byte) { t.Fatal("fn called for Take(0)") })
	if got := takeAll(l, 9); !slices.Equal(got, []uint32{10, 11, 12, 13, 14, 15, 16, 17, 18}) {
		t.Fatalf("Take(9) = %v", got)
	}
	if l.Available() != 0 || l.Cursor() != 19 {
		t.Fatalf("avail %d cursor %d", l.Available(), l.Cursor())
	}
	checkCounts(t, l)
	checkInvariants(t, l)
	// A dedupe list re-adding a withdrawn or assigned code skips it.
	if pos, added := mustAdd(t, l, code12(7)); added || pos != 7 {
		t.Fatalf("re-Add withdrawn = %d,%v", pos, added)
	}
}

// TestTakeWithdrawnAcrossBlocks withdraws whole bitmap words and blocks.
func TestTakeWithdrawnAcrossBlocks(t *testing.T) {
	l := New().Create(1, true)
	n := uint32(3*posBlockSize + 100)
	for i := range n {
		mustAdd(t, l, code12(uint64(i)))
	}
	// Withdraw everything in [10, 2*posBlockSize+70) except every 1000th.
	for p := uint32(10); p < 2*posBlockSize+70; p++ {
		if p%1000 != 0 && !l.Withdraw(p) {
			t.Fatalf("Withdraw(%d)", p)
		}
	}
	var want []uint32
	for p := uint32(0); p < n; p++ {
		if p < 10 || p >= 2*posBlockSize+70 || p%1000 == 0 {
			want = append(want, p)
		}
	}
	got := takeAll(l, len(want)-5)
	if !slices.Equal(got, want[:len(want)-5]) {
		t.Fatalf("Take skipped wrongly")
	}
	if l.Cursor() != want[len(want)-6]+1 {
		t.Fatalf("cursor %d", l.Cursor())
	}
	checkCounts(t, l)
	checkInvariants(t, l)
}

// TestSetCursor rebuilds a list from its ledger (re-add, withdraw,
// SetCursor) and compares every output with the original.
func TestSetCursor(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, dedupe := range []bool{true, false} {
		orig := New().Create(1, dedupe)
		var added [][]byte
		for range 50_000 {
			c := code12(uint64(r.IntN(40_000)))
			if _, ok := mustAdd(t, orig, c); ok {
				added = append(added, c)
			}
			switch r.IntN(10) {
			case 0:
				orig.Withdraw(orig.Cursor() + uint32(r.IntN(int(orig.Len()-orig.Cursor()+1))))
			case 1:
				orig.Take(r.IntN(int(orig.Available())+1), func(uint32, []byte) {})
			}
		}
		re := New().Create(2, dedupe)
		for _, c := range added {
			mustAdd(t, re, c)
		}
		for p := range orig.Len() {
			if orig.StateOf(p) == Withdrawn && !re.Withdraw(p) {
				t.Fatalf("rebuild Withdraw(%d)", p)
			}
		}
		mustPanic(t, "SetCursor past Len", func() { re.SetCursor(re.Len() + 1) })
		mid := orig.Cursor() / 2
		re.SetCursor(mid)
		re.SetCursor(orig.Cursor())
		mustPanic(t, "SetCursor backwards", func() { re.SetCursor(mid) })
		compareLists(t, orig, re, added)
		checkInvariants(t, orig)
		checkInvariants(t, re)
	}
}

func compareLists(t *testing.T, a, b *List, codes [][]byte) {
	t.Helper()
	if a.Len() != b.Len() || a.Cursor() != b.Cursor() || a.Available() != b.Available() ||
		a.Used() != b.Used() || a.Withdrawn() != b.Withdrawn() {
		t.Fatalf("counters differ: %d/%d/%d/%d/%d vs %d/%d/%d/%d/%d",
			a.Len(), a.Cursor(), a.Available(), a.Used(), a.Withdrawn(),
			b.Len(), b.Cursor(), b.Available(), b.Used(), b.Withdrawn())
	}
	checkCounts(t, b)
	for p := range a.Len() {
		if a.StateOf(p) != b.StateOf(p) || !bytes.Equal(a.Code(p), b.Code(p)) {
			t.Fatalf("position %d differs", p)
		}
	}
	for _, c := range codes {
		p1, s1, ok1 := a.Lookup(c)
		p2, s2, ok2 := b.Lookup(c)
		if p1 != p2 || s1 != s2 || ok1 != ok2 {
			t.Fatalf("Lookup(%s) differs: %d,%v,%v vs %d,%v,%v", c, p1, s1, ok1, p2, s2, ok2)
		}
	}
}

func TestListFull(t *testing.T) {
	for _, dedupe := range []bool{true, false} {
		l := New().Create(1, dedupe)
		l.w.max = 10
		for i := range 10 {
			mustAdd(t, l, code12(uint64(i)))
		}
		if _, _, err := l.Add(code12(10)); !errors.Is(err, ErrListFull) {
			t.Fatalf("Add past max: %v", err)
		}
		_, added, err := l.Add(code12(3))
		switch {
		case dedupe && (err != nil || added):
			t.Fatalf("dedupe Add of existing code in full list = %v,%v", added, err)
		case !dedupe && !errors.Is(err, ErrListFull):
			t.Fatalf("nodedupe Add of existing code in full list: %v", err)
		}
		if l.Len() != 10 || l.Available() != 10 {
			t.Fatalf("Len %d Available %d", l.Len(), l.Available())
		}
		if _, _, ok := l.Lookup(code12(10)); ok {
			t.Fatal("rejected code is findable")
		}
		checkInvariants(t, l)
	}
}

func TestDeterministic(t *testing.T) {
	// Two lists fed the same calls (with different random hash seeds) give
	// the same outputs.
	run := func() (*List, [][]byte, []uint32) {
		r := rand.New(rand.NewPCG(9, 9))
		l := New().Create(1, false)
		var codes [][]byte
		var taken []uint32
		for range 20_000 {
			c := code12(uint64(r.IntN(3000)))
			codes = append(codes, c)
			mustAdd(t, l, c)
			if r.IntN(7) == 0 {
				l.Withdraw(l.Cursor() + uint32(r.IntN(20)))
			}
			if r.IntN(5) == 0 {
				l.Take(min(int(l.Available()), r.IntN(4)), func(p uint32, _ []byte) { taken = append(taken, p) })
			}
		}
		return l, codes, taken
	}
	a, codes, ta := run()
	b, _, tb := run()
	if !slices.Equal(ta, tb) {
		t.Fatal("Take outputs differ")
	}
	compareLists(t, a, b, codes)
}

func TestPools(t *testing.T) {
	p := New()
	if p.Get(5) != nil || len(p.IDs()) != 0 {
		t.Fatal("empty registry not empty")
	}
	ids := []uint64{900, 3, 1 << 63, 0, 77, 78, 79}
	for _, id := range ids {
		l := p.Create(id, id%2 == 0)
		if p.Get(id) != l || l.Dedupe() != (id%2 == 0) {
			t.Fatalf("Get(%d) after Create", id)
		}
	}
	mustPanic(t, "Create existing", func() { p.Create(77, true) })
	want := slices.Clone(ids)
	slices.Sort(want)
	if got := p.IDs(); !slices.Equal(got, want) {
		t.Fatalf("IDs = %v, want %v", got, want)
	}
	held := p.Get(78)
	mustAdd(t, held, []byte("kept"))
	p.Delete(78)
	p.Delete(12345) // absent: no-op
	if p.Get(78) != nil {
		t.Fatal("Get after Delete")
	}
	if string(held.Code(0)) != "kept" {
		t.Fatal("held list changed by Delete")
	}
	want = slices.DeleteFunc(want, func(id uint64) bool { return id == 78 })
	if got := p.IDs(); !slices.Equal(got, want) {
		t.Fatalf("IDs = %v, want %v", got, want)
	}
	if p.Create(78, true) == held {
		t.Fatal("re-Create returned the old list")
	}
}
