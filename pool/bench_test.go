package pool

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkAdd adds b.N unique 12-byte codes to one dedupe list (ns/op is
// per code, at a list size of b.N).
func BenchmarkAdd(b *testing.B) {
	codes := codes12(b.N)
	l := newList(true)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := l.Add(codes[12*i : 12*i+12]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddScale fills one list with n unique 12-byte codes per
// iteration and reports ns/code and the list's bytes/code at that size.
func BenchmarkAddScale(b *testing.B) {
	for _, n := range []int{1_000_000, 10_000_000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			codes := codes12(n)
			b.ReportAllocs()
			b.ResetTimer()
			var mem int
			for range b.N {
				l := newList(true)
				for i := range n {
					l.Add(codes[12*i : 12*i+12])
				}
				mem = l.MemoryBytes()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/code")
			b.ReportMetric(float64(mem)/float64(n), "B/code")
		})
	}
}

// BenchmarkAddNoDedupe: unique codes into a list without dedupe (same work:
// the index records every code).
func BenchmarkAddNoDedupe(b *testing.B) {
	codes := codes12(b.N)
	l := newList(false)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.Add(codes[12*i : 12*i+12])
	}
}

// BenchmarkAddDuplicate adds codes already in a 1M-code dedupe list.
func BenchmarkAddDuplicate(b *testing.B) {
	const n = 1 << 20
	codes := codes12(n)
	l := newList(true)
	for i := range n {
		l.Add(codes[12*i : 12*i+12])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := (i * 7919) & (n - 1)
		if _, added, _ := l.Add(codes[12*j : 12*j+12]); added {
			b.Fatal("duplicate added")
		}
	}
}

// BenchmarkLookup looks up present and absent codes in a 1M-code list.
func BenchmarkLookup(b *testing.B) {
	const n = 1 << 20
	codes := codes12(n)
	l := newList(true)
	for i := range n {
		l.Add(codes[12*i : 12*i+12])
	}
	absent := code12(1 << 50)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			j := (i * 7919) & (n - 1)
			if _, _, ok := l.Lookup(codes[12*j : 12*j+12]); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			absent[0] = byte(i)
			l.Lookup(absent)
		}
	})
}

// BenchmarkLookupDuplicates looks up a code held 100k times in a list
// without dedupe, after most occurrences were taken.
func BenchmarkLookupDuplicates(b *testing.B) {
	l := newList(false)
	c := []byte("SUMMER-SALE")
	for i := range 200_000 {
		l.Add(c)
		l.Add(code12(uint64(i)))
	}
	l.Take(300_000, func(uint32, []byte) {})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, st, _ := l.Lookup(c); st != Available {
			b.Fatal("not available")
		}
	}
}

// BenchmarkReadd copies handed-out positions of a 1M-code dedupe list back
// to its end (a release each): "spread" copies positions all over the list,
// "samecode" one code over and over (one long chain). It reports the bytes
// each copy adds to MemoryBytes.
func BenchmarkReadd(b *testing.B) {
	const n = 1 << 20
	codes := codes12(n)
	for _, tc := range []struct {
		name string
		pos  func(i int) uint32
	}{
		{"spread", func(i int) uint32 { return uint32(i*7919) & (n - 1) }},
		{"samecode", func(int) uint32 { return 0 }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l := newList(true)
			for i := range n {
				l.Add(codes[12*i : 12*i+12])
			}
			l.Take(n, func(uint32, []byte) {})
			mem := l.MemoryBytes()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := l.Readd(tc.pos(i)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(l.MemoryBytes()-mem)/float64(b.N), "B/copy")
		})
	}
}

// BenchmarkLookupReadd looks up codes of a 1M-code dedupe list that were
// all handed out, copied back by Readd and handed out again: Lookup finds
// no Available occurrence and answers the last one.
func BenchmarkLookupReadd(b *testing.B) {
	const n = 1 << 20
	codes := codes12(n)
	l := newList(true)
	for i := range n {
		l.Add(codes[12*i : 12*i+12])
	}
	l.Take(n, func(uint32, []byte) {})
	for p := range uint32(n) {
		l.Readd(p)
	}
	l.Take(n, func(uint32, []byte) {})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := (i * 7919) & (n - 1)
		if p, st, _ := l.Lookup(codes[12*j : 12*j+12]); st != Assigned || p != uint32(n+j) {
			b.Fatalf("Lookup = %d,%v", p, st)
		}
	}
}

// BenchmarkTake hands out b.N codes, 64 per call (ns/op is per code).
func BenchmarkTake(b *testing.B) {
	codes := codes12(b.N + 64)
	l := newList(true)
	for i := range b.N + 64 {
		l.Add(codes[12*i : 12*i+12])
	}
	var sink int
	fn := func(pos uint32, code []byte) { sink += len(code) }
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += 64 {
		l.Take(64, fn)
	}
	_ = sink
}

// BenchmarkStateOf reads the state of random positions.
func BenchmarkStateOf(b *testing.B) {
	const n = 1 << 20
	codes := codes12(n)
	l := newList(true)
	for i := range n {
		l.Add(codes[12*i : 12*i+12])
	}
	l.Take(n/2, func(uint32, []byte) {})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.StateOf(uint32(i*7919) & (n - 1))
	}
}

// BenchmarkPoolsGet reads lists from a registry of 10,000.
func BenchmarkPoolsGet(b *testing.B) {
	p := New()
	const n = 10_000
	for i := range n {
		p.Create(uint64(i)*1_000_003, true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if p.Get(uint64(i%n)*1_000_003) == nil {
			b.Fatal("nil")
		}
	}
}

// BenchmarkPoolsGetParallel: Get from all Ps while the writer creates lists.
func BenchmarkPoolsGetParallel(b *testing.B) {
	p := New()
	const n = 10_000
	for i := range n {
		p.Create(uint64(i), true)
	}
	stop := make(chan struct{})
	go func() {
		for id := uint64(n); ; id++ {
			select {
			case <-stop:
				return
			default:
			}
			p.Create(id, true)
			time.Sleep(100 * time.Microsecond)
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if p.Get(uint64(i%n)) == nil {
				b.Error("nil")
				return
			}
			i++
		}
	})
	b.StopTimer()
	close(stop)
}
