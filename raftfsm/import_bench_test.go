package raftfsm

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// BenchmarkImportCommit5M measures the one entry that makes a big import
// visible: an ImportCommit of 5,000,000 staged codes (set
// COUPOND_IMPORT_CODES to change it) into a de-duplicating list. Its apply
// time is how long every other write of the node waits behind it (small
// sends included), so it is reported as commit-ms, with the CPU time the
// process spent meanwhile as commit-cpu-ms. It runs once whatever b.N.
// top-up adds the codes at the commit; new-list is a create-and-import,
// whose chunks built the list's pool as they came (staged.go): the most
// a chunk's apply took is reported as max-chunk-ms.
func BenchmarkImportCommit5M(b *testing.B) {
	b.Run("top-up", func(b *testing.B) { benchImportCommit(b, false) })
	b.Run("new-list", func(b *testing.B) { benchImportCommit(b, true) })
}

func benchImportCommit(b *testing.B, newList bool) {
	codes := 5_000_000
	if v := os.Getenv("COUPOND_IMPORT_CODES"); v != "" {
		fmt.Sscan(v, &codes)
	}
	tf := openTestFSMWith(b, b.TempDir(), &pebble.Options{DisableWAL: true, MemTableSize: 64 << 20, Logger: quietLogger{}})
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme"})
	commit := &ImportCommit{Tenant: "acme", Upload: UploadID{1}, List: 1}
	if newList {
		commit.Create = &CreateList{Tenant: "acme", ID: 1, Name: "big", Dedupe: true}
	} else {
		tf.mustApply(&CreateList{Tenant: "acme", ID: 1, Name: "big", Dedupe: true})
	}
	// Chunks of about 1 MiB, as httpapi stages them.
	const chunk = 70_000
	var maxChunk time.Duration
	for i := 0; i < codes; i += chunk {
		var blk CodeBlock
		for k := i; k < min(i+chunk, codes); k++ {
			blk = blk.AppendCode(fmt.Appendf(nil, "SPRING-%08d", k))
		}
		start := time.Now()
		c := &ImportChunk{Tenant: "acme", Upload: UploadID{1}, Chunk: commit.Chunks, Codes: blk, NewList: newList}
		if newList && c.Chunk == 0 {
			c.Expect = uint32(codes) // as the leader estimates it from Content-Length
		}
		tf.mustApply(c)
		maxChunk = max(maxChunk, time.Since(start))
		commit.Chunks++
	}
	runtime.GC()
	b.ReportAllocs()
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
	if got := r.Value.(ImportResult).Imported; got != uint64(codes) {
		b.Fatalf("imported %d, want %d", got, codes)
	}
	b.ReportMetric(float64(took.Microseconds())/1000, "commit-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000, "commit-cpu-ms")
	b.ReportMetric(float64(maxChunk.Microseconds())/1000, "max-chunk-ms")
}

// cpuTime is the CPU time of the process so far (user and system, every
// thread): on a shared machine it varies less than the wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
