package raftfsm

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// benchLedger builds a state with one list of `codes` codes, a message on
// it, and `sends` sends of `perSend` recipients each, allocated in requests
// of 10,000 as the mailing engine does. Recipients recur across sends, as
// real mailing lists do: send k mails users k*perSend/2 ... on.
func benchLedger(b *testing.B, codes, sends, perSend int) *testFSM {
	// The daemon's memtable size: a bigger skiplist costs more per insert.
	tf := openTestFSMWith(b, b.TempDir(), &pebble.Options{DisableWAL: true, MemTableSize: 64 << 20, Logger: quietLogger{}})
	tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme"})
	tf.mustApply(&CreateList{Tenant: "acme", ID: 1, Name: "big", Dedupe: true})
	total := max(codes, sends*perSend)
	const chunk = 50_000
	for i, n := 0, uint32(0); i < total; i += chunk {
		var blk CodeBlock
		for k := i; k < min(i+chunk, total); k++ {
			blk = blk.AppendCode(fmt.Appendf(nil, "CODE%010d", k))
		}
		tf.mustApply(&ImportChunk{Tenant: "acme", Upload: UploadID{1}, Chunk: n, Codes: blk})
		n++
		if i+chunk >= total {
			tf.mustApply(&ImportCommit{Tenant: "acme", Upload: UploadID{1}, Chunks: n, List: 1})
		}
	}
	tf.mustApply(&UpsertMessage{Tenant: "acme", ID: "m", Name: "M", CampaignType: "standard", Channel: "email"})
	tf.mustApply(&AssignList{Tenant: "acme", Message: "m", List: 1})
	for s := 0; s < sends; s++ {
		for i := 0; i < perSend; i += 10_000 {
			var rb RecipientBlock
			for k := i; k < min(i+10_000, perSend); k++ {
				rb = rb.AppendRecipient(fmt.Appendf(nil, "user%d@example.com", s*perSend/2+k))
			}
			tf.mustApply(&Allocate{Tenant: "acme", Send: fmt.Sprintf("send-%d", s), Message: "m", Recipients: rb, At: int64(s)})
		}
	}
	return tf
}

// applyTimed applies the encoded entries with the benchmark's timer on
// (and its allocations counted), and stops the timer after them.
func (tf *testFSM) applyTimed(b *testing.B, entries [][]byte) {
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for _, e := range entries {
		tf.index++
		if r := tf.f.ApplyCommand(tf.index, e); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.StopTimer()
}

// BenchmarkAllocate measures the state machine alone: ns per recipient of
// 10,000-recipient Allocate entries into one send, as a big send makes them.
func BenchmarkAllocate(b *testing.B) {
	tf := benchLedger(b, 3_000_000, 0, 0)
	if b.N > 300 {
		b.N = 300 // the list holds 3,000,000 codes
	}
	cmds := make([][]byte, b.N)
	for i := range cmds {
		var rb RecipientBlock
		for k := 0; k < 10_000; k++ {
			rb = rb.AppendRecipient(fmt.Appendf(nil, "user%d@example.com", i*10_000+k))
		}
		cmds[i] = Encode(&Allocate{Tenant: "acme", Send: "s", Message: "m", Recipients: rb})
	}
	tf.applyTimed(b, cmds)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*10_000), "ns/recipient")
}

// BenchmarkLedger10M builds 10,000,000 assignments (20 sends of 500,000)
// and reports the disk bytes per assignment after a full compaction and the
// p50/p99 latency of a recipient-history lookup. It runs once whatever b.N
// (set COUPOND_LEDGER_SENDS to change the size).
func BenchmarkLedger10M(b *testing.B) {
	sends := 20
	if v := os.Getenv("COUPOND_LEDGER_SENDS"); v != "" {
		fmt.Sscan(v, &sends)
	}
	const perSend = 500_000
	start := time.Now()
	tf := benchLedger(b, 0, sends, perSend)
	b.Logf("built %d assignments in %s", sends*perSend, time.Since(start))
	if err := tf.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	total := int64(0)
	filepath.Walk(tf.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Ext(p) == ".sst" {
			total += fi.Size()
		}
		return nil
	})
	// Assignment batches only: the codes' own storage is the import's.
	var assignBytes int64
	tf.f.scan([]byte{prefixAssign}, func(k, v []byte) error { assignBytes += int64(len(k) + len(v)); return nil })
	n := float64(sends * perSend)
	b.ReportMetric(float64(total)/n, "disk-B/assignment(all)")
	b.ReportMetric(float64(assignBytes)/n, "raw-B/assignment(batches)")

	rng := rand.New(rand.NewSource(1))
	lat := make([]time.Duration, 20_000)
	users := (sends-1)*perSend/2 + perSend
	for i := range lat {
		r := fmt.Appendf(nil, "user%d@example.com", rng.Intn(users))
		t := time.Now()
		h, err := tf.f.RecipientHistory("acme", r)
		lat[i] = time.Since(t)
		if err != nil || len(h) == 0 {
			b.Fatalf("history of %s: %v %v", r, h, err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "history-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "history-p99-ms")
}

// BenchmarkSmallAllocations measures the state machine alone on what group
// commit makes of many one-recipient requests: entries of 32 Allocate
// commands, each opening a send of its own, named as couponbench
// small-sends names them (one prefix per connection). It reports ns per
// command.
func BenchmarkSmallAllocations(b *testing.B) {
	const perEntry = 32
	tf := benchLedger(b, 2_000_000, 0, 0)
	if b.N > 2_000_000/perEntry {
		b.N = 2_000_000 / perEntry // the list holds 2,000,000 codes
	}
	entries := make([][]byte, b.N)
	for i := range entries {
		batch := &Batch{Commands: make([][]byte, perEntry)}
		for k := range batch.Commands {
			n := i*perEntry + k
			var rb RecipientBlock
			rb = rb.AppendRecipient(fmt.Appendf(nil, "u%02d.%07d@example.com", n%32, n))
			batch.Commands[k] = Encode(&Allocate{Tenant: "acme", Send: fmt.Sprintf("c%02d-%d", k, i), Message: "m", Recipients: rb, At: int64(n)})
		}
		entries[i] = Encode(batch)
	}
	tf.applyTimed(b, entries)
	if l, _ := tf.f.List("acme", 1); l.Used != uint64(b.N*perEntry) {
		b.Fatalf("%d codes used, want %d: some allocations failed", l.Used, b.N*perEntry)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perEntry), "ns/command")
}
