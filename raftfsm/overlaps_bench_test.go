package raftfsm

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"
)

// envInt is the integer in the environment variable name, else def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// overlapBenchCode is code i of the overlap benchmarks' code space.
func overlapBenchCode(b []byte, i int) []byte { return fmt.Appendf(b[:0], "SUMMER-%09d", i) }

// fillList creates list id of acme and adds codes [from, from+n) to its
// pool directly (the report reads pools only; going through Pebble would
// only make the set-up slower).
func fillList(tf *testFSM, id uint64, from, n int) {
	tf.mustApply(&CreateList{Tenant: "acme", ID: id, Name: fmt.Sprint("list-", id), Dedupe: true})
	p := tf.f.pools.Get(id)
	p.GrowIndex(n)
	batch := make([][]byte, 0, 4096)
	for i := from; i < from+n; i += 4096 {
		batch = batch[:0]
		for k := i; k < min(i+4096, from+n); k++ {
			batch = append(batch, overlapBenchCode(nil, k))
		}
		p.AddMany(batch, func(int, uint32, bool, error) {})
	}
}

// otherSizes are the 10 other lists of BenchmarkOverlaps, as fractions
// of the list reported on: a few as big, most much smaller, since an
// overlap report mostly compares a big list with smaller ones.
var otherSizes = []float64{1, 1, 0.5, 0.2, 0.1, 0.1, 0.05, 0.01, 0.001, 0.0001}

// BenchmarkOverlaps is acceptance d)'s measurement: the report on a list
// of 10,000,000 codes (COUPOND_OVERLAP_CODES) against 10 other lists of
// otherSizes, each holding half of its codes in common with it. It
// reports the time of one report, the heap growth across it (HeapAlloc
// after a GC, before and after, with the report's answer still held), and
// the bytes it allocated in all. cores=1 and cores=2 set GOMAXPROCS.
func BenchmarkOverlaps(b *testing.B) {
	n := envInt("COUPOND_OVERLAP_CODES", 10_000_000)
	tf := openTestFSM(b, b.TempDir())
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme"})
	fillList(tf, 1, 0, n)
	var want []uint64
	for k, f := range otherSizes {
		size := max(int(f*float64(n)), 2)
		// Its first half is A's last codes, its second half new ones.
		fillList(tf, uint64(k+2), n-size/2, size)
		want = append(want, uint64(size/2))
	}
	for _, cores := range []int{1, 2} {
		b.Run(fmt.Sprintf("cores=%d", cores), func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cores))
			var ms runtime.MemStats
			runtime.GC()
			debug.FreeOSMemory()
			runtime.ReadMemStats(&ms)
			heap0, total0 := ms.HeapAlloc, ms.TotalAlloc
			b.ResetTimer()
			start := time.Now()
			cpu0 := cpuTime()
			var got []Overlap
			for range b.N {
				var err error
				if got, err = tf.f.Overlaps("acme", 1); err != nil {
					b.Fatal(err)
				}
			}
			took := time.Since(start) / time.Duration(b.N)
			cpu := (cpuTime() - cpu0) / time.Duration(b.N)
			b.StopTimer()
			runtime.ReadMemStats(&ms)
			total := (ms.TotalAlloc - total0) / uint64(b.N)
			runtime.GC()
			runtime.ReadMemStats(&ms)
			heap := int64(ms.HeapAlloc) - int64(heap0)
			if len(got) != len(want) {
				b.Fatalf("%d overlaps, want %d", len(got), len(want))
			}
			for k, o := range got {
				// Sorted by count, then id: the order of otherSizes.
				if o.List != uint64(k+2) || o.Codes != want[k] || len(o.Examples) != min(MaxOverlapExamples, int(want[k])) {
					b.Fatalf("overlap %d: %+v, want list %d with %d codes", k, o, k+2, want[k])
				}
			}
			runtime.KeepAlive(got)
			b.ReportMetric(float64(took.Microseconds())/1000, "report-ms")
			b.ReportMetric(float64(cpu.Microseconds())/1000, "report-cpu-ms")
			b.ReportMetric(float64(heap), "heap-growth-B")
			b.ReportMetric(float64(total), "alloc-B/op")
		})
	}
}

// BenchmarkImportInOtherLists measures what in_other_lists costs an
// import commit: a top-up of COUPOND_IMPORT_CODES (1,000,000) codes
// with the tenant holding no other list, and holding 10 of otherSizes
// (of the import's size; half their codes among the imported ones). The
// commit is the apply every other write waits behind.
func BenchmarkImportInOtherLists(b *testing.B) {
	for _, others := range []int{0, 10} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) {
			n := envInt("COUPOND_IMPORT_CODES", 1_000_000)
			tf := openTestFSM(b, b.TempDir())
			tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme"})
			var want uint64
			for k, f := range otherSizes[:others] {
				size := max(int(f*float64(n)), 2)
				fillList(tf, uint64(k+2), n-size/2, size)
				want = max(want, uint64(size/2))
			}
			tf.mustApply(&CreateList{Tenant: "acme", ID: 1, Name: "big", Dedupe: true})
			commit := &ImportCommit{Tenant: "acme", Upload: UploadID{1}, List: 1}
			const chunk = 70_000
			var code []byte
			for i := 0; i < n; i += chunk {
				var blk CodeBlock
				for k := i; k < min(i+chunk, n); k++ {
					code = overlapBenchCode(code, k)
					blk = blk.AppendCode(code)
				}
				tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{1}, Chunk: commit.Chunks, Codes: blk})
				commit.Chunks++
			}
			runtime.GC()
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			tf.index++
			r := tf.f.ApplyCommand(tf.index, Encode(commit))
			took := time.Since(start)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			// The others all share the import's last codes: the biggest share is the union.
			if res := r.Value.(ImportResult); res.Imported != uint64(n) || res.InOtherLists != want {
				b.Fatalf("result %+v, want in_other_lists %d", res, want)
			}
			b.ReportMetric(float64(took.Microseconds())/1000, "commit-ms")
			b.ReportMetric(float64(cpu.Microseconds())/1000, "commit-cpu-ms")
		})
	}
}
