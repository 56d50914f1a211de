package pool

import (
	"math/rand/v2"
	"testing"
)

// sizedDown reports whether the size-bound tests run smaller: under the race
// detector, unless -tags long (make test-long). make test runs this package
// a second time without -race, where they run at full size.
const sizedDown = raceEnabled && !testLong

const codeAlphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ" // 34 chars, first 32 used

// putCode writes a 12-byte code unique for every i < 2^60 into dst.
func putCode(dst []byte, i uint64) {
	x := (i * 0x9E3779B97F4A7C15) & (1<<60 - 1) // bijection on 60 bits
	for k := 11; k >= 0; k-- {
		dst[k] = codeAlphabet[x&31]
		x >>= 5
	}
}

func code12(i uint64) []byte {
	b := make([]byte, 12)
	putCode(b, i)
	return b
}

// codes12 returns n codes packed 12 bytes apart.
func codes12(n int) []byte {
	buf := make([]byte, 12*n)
	for i := 0; i < n; i++ {
		putCode(buf[12*i:12*i+12], uint64(i))
	}
	return buf
}

func randCode(r *rand.Rand, minLen, maxLen int) []byte {
	n := minLen + r.IntN(maxLen-minLen+1)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return b
}

func mustAdd(t testing.TB, l *List, code []byte) (uint32, bool) {
	t.Helper()
	pos, added, err := l.Add(code)
	if err != nil {
		t.Fatalf("Add(%q): %v", code, err)
	}
	return pos, added
}

func takeAll(l *List, n int) []uint32 {
	var got []uint32
	l.Take(n, func(pos uint32, code []byte) { got = append(got, pos) })
	return got
}

// checkCounts checks the counters against each other (no concurrent writer).
func checkCounts(t testing.TB, l *List) {
	t.Helper()
	if l.Len() != l.Available()+l.Used()+l.Withdrawn() {
		t.Fatalf("Len %d != Available %d + Used %d + Withdrawn %d",
			l.Len(), l.Available(), l.Used(), l.Withdrawn())
	}
	if l.Used() > l.Cursor() || l.Cursor() > l.Len() {
		t.Fatalf("Used %d Cursor %d Len %d out of order", l.Used(), l.Cursor(), l.Len())
	}
}

func mustPanic(t testing.TB, what string, f func()) {
	t.Helper()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatalf("%s: no panic", what)
		}
		if s, ok := r.(string); !ok || len(s) < 4 || s[:4] != "BUG:" {
			t.Fatalf("%s: panic %v, want a BUG: string", what, r)
		}
	}()
	f()
}
