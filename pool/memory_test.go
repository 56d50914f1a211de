package pool

import (
	"runtime"
	"testing"
)

// TestMemory adds 2,000,000 unique 12-byte codes to a dedupe list: the list
// must account for under 28 bytes per code (MemoryBytes) and the Go heap must
// grow by under 32 bytes per code.
func TestMemory(t *testing.T) {
	if sizedDown {
		t.Skip("one goroutine's memory accounting: make test runs it without -race")
	}
	const n = 2_000_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	l := newList(true)
	var buf [12]byte
	for i := range n {
		putCode(buf[:], uint64(i))
		if _, added, err := l.Add(buf[:]); err != nil || !added {
			t.Fatalf("Add(%d): %v %v", i, added, err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)

	perCode := float64(l.MemoryBytes()) / n
	heap := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
	t.Logf("MemoryBytes %d = %.2f B/code; heap growth %.2f B/code; index %d slots",
		l.MemoryBytes(), perCode, heap, len(l.idx.Load().slots))
	if perCode >= 28 {
		t.Errorf("MemoryBytes/code = %.2f, want < 28", perCode)
	}
	if heap >= 32 {
		t.Errorf("heap growth/code = %.2f, want < 32", heap)
	}
	// The accounting is not a fiction: it is within 3% of the heap growth.
	if d := heap/perCode - 1; d > 0.03 || d < -0.03 {
		t.Errorf("MemoryBytes %.2f B/code vs heap %.2f B/code", perCode, heap)
	}
	runtime.KeepAlive(l)
}

// TestMemoryEmpty: an empty list and a small one stay small (many lists may
// exist).
func TestMemoryEmpty(t *testing.T) {
	l := newList(true)
	if m := l.MemoryBytes(); m > 1024 {
		t.Errorf("empty list holds %d bytes", m)
	}
	for i := range 10 {
		mustAdd(t, l, code12(uint64(i)))
	}
	if m := l.MemoryBytes(); m > 4096 {
		t.Errorf("10-code list holds %d bytes", m)
	}
}
