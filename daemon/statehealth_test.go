package daemon

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// fullFS is an in-memory file system on which, while full is set, no
// table file can be created: Pebble's flushes fail as on a full disk.
type fullFS struct {
	vfs.FS
	full     atomic.Bool
	refusals atomic.Int64
}

func (fs *fullFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if fs.full.Load() && strings.HasSuffix(name, ".sst") {
		fs.refusals.Add(1)
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	return fs.FS.Create(name, c)
}

// lockedBuffer collects log lines written from Pebble's goroutines.
type lockedBuffer struct {
	mu   sync.Mutex
	text strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.text.String()
}

func (b *lockedBuffer) lines() int { return strings.Count(b.String(), "\n") }

// TestStateHealthFollowsFlushes: an empty flush is a success; a failed
// flush makes the state unwritable, retried flushes are slowed and logged
// once; the first flush that succeeds makes it writable again.
func TestStateHealthFollowsFlushes(t *testing.T) {
	fs := &fullFS{FS: vfs.NewMem()}
	logs := &lockedBuffer{}
	log := zerolog.New(logs)
	h := newStateHealth(log)
	db, err := pebble.Open("state", &pebble.Options{FS: fs, DisableWAL: true, EventListener: h.listener(), Logger: newPebbleLogger(log)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Pebble reports a flush with nothing to write with an error of its
	// own (emptyFlushMsg): it is no failure.
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := h.Err(); err != nil {
		t.Fatalf("unwritable after an empty flush: %v", err)
	}

	if err := db.Set([]byte("k"), []byte("v"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	before := logs.lines()
	fs.full.Store(true)
	flushed, err := db.AsyncFlush()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Err() == nil || fs.refusals.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d failed flushes, the state's error is %v; want it unwritable", fs.refusals.Load(), h.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// One line says the state cannot be flushed, one reports the
	// background error; the retries add none.
	if n := logs.lines() - before; n > 2 {
		t.Fatalf("%d log lines for %d failed flushes:\n%s", n, fs.refusals.Load(), logs)
	}

	fs.full.Store(false)
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		t.Fatal("the flush did not succeed once space was back")
	}
	if err := h.Err(); err != nil {
		t.Fatalf("unwritable after a flush succeeded: %v", err)
	}
}

// TestLogLimiter: one line per period, the others counted in the next.
func TestLogLimiter(t *testing.T) {
	l := logLimiter{window: time.Hour}
	if ok, n := l.allow(); !ok || n != 0 {
		t.Fatalf("first line: %v, %d", ok, n)
	}
	for range 3 {
		if ok, _ := l.allow(); ok {
			t.Fatal("a second line within the period")
		}
	}
	l.start = l.start.Add(-time.Hour)
	if ok, n := l.allow(); !ok || n != 3 {
		t.Fatalf("line after the period: %v, %d suppressed; want true, 3", ok, n)
	}
}
