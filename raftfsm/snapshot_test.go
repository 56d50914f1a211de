package raftfsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// bufSink is a raft.SnapshotSink in memory.
type bufSink struct {
	bytes.Buffer
	closed, canceled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.canceled = true; return nil }
func (s *bufSink) Close() error  { s.closed = true; return nil }

// TestPersistMakesTheSnapshotDurable: Raft calls Snapshot on the apply
// goroutine, so it must not flush (that stalled every apply for a
// memtable's flush); Persist must, before it returns, since Raft then drops
// the log below the snapshot. A crash that keeps only synced data, taken
// right after Persist, still holds the state up to the snapshot.
func TestPersistMakesTheSnapshotDurable(t *testing.T) {
	fs := vfs.NewCrashableMem()
	open := func(fs vfs.FS) *testFSM {
		return openTestFSMWith(t, "state", &pebble.Options{DisableWAL: true, FS: fs, Logger: quietLogger{}})
	}
	tf := open(fs)
	stream := randomStream(7, 300)
	for i, data := range stream {
		tf.f.ApplyCommand(uint64(i+1), data)
	}
	want := tf.f.Digest()

	flushes := tf.db.Metrics().Flush.Count
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	if n := tf.db.Metrics().Flush.Count; n != flushes {
		t.Fatalf("Snapshot flushed Pebble (%d flushes, was %d): it runs on the apply goroutine", n, flushes)
	}
	if lost := open(fs.CrashClone(vfs.CrashCloneCfg{})); lost.f.AppliedIndex() == uint64(len(stream)) {
		t.Fatal("the state was durable before Persist: the test shows nothing")
	}
	// Applies go on while Persist runs; the snapshot holds the state it was
	// taken at, and what is durable reaches at least as far.
	for i, data := range randomStream(8, 50) {
		tf.f.ApplyCommand(uint64(len(stream)+i+1), data)
	}
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.canceled {
		t.Fatalf("sink closed %v, canceled %v", sink.closed, sink.canceled)
	}
	crashed := open(fs.CrashClone(vfs.CrashCloneCfg{}))
	if got := crashed.f.AppliedIndex(); got < uint64(len(stream)) {
		t.Fatalf("after a crash right after Persist the state reaches index %d, want at least %d", got, len(stream))
	}
	restored := newTestFSM(t)
	if err := restored.f.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if restored.f.Digest() != want || restored.f.AppliedIndex() != uint64(len(stream)) {
		t.Fatalf("the persisted snapshot is not the state it was taken at (applied %d)", restored.f.AppliedIndex())
	}
}

// crashingReader hands out a snapshot stream until cut bytes were read; then
// it lets Pebble flush what it holds (the background flushes of a long
// restore, at their worst moment), takes the crash clone of fs (what a
// kill -9 then leaves on disk) and fails, as a dying process's stream would.
type crashingReader struct {
	r       io.Reader
	left    int
	db      *pebble.DB
	fs      *vfs.MemFS
	crashed *vfs.MemFS
}

func (c *crashingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if c.crashed == nil {
			if err := c.db.Flush(); err != nil {
				return 0, err
			}
			c.crashed = c.fs.CrashClone(vfs.CrashCloneCfg{})
		}
		return 0, errors.New("killed")
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

// TestCrashDuringRestore: Raft calls Restore when a follower installs a
// snapshot, and the daemon when its state is behind the newest snapshot.
// Pebble runs without a WAL, so memtable flushes during a long restore make
// parts of it durable. A crash at any point must leave a state that says it
// is unfinished (and refuses entries) or the old state whole, never an
// applied index that vouches for a part of the snapshot; restoring again
// reaches the snapshot's state exactly.
func TestCrashDuringRestore(t *testing.T) {
	// The snapshot: random commands and one big import, whose staged codes
	// sort after the applied index and make up most of the stream.
	src := newTestFSM(t)
	for i, data := range randomStream(11, 400) {
		src.f.ApplyCommand(uint64(i+1), data)
	}
	src.index = src.f.AppliedIndex()
	src.mustApply(&CreateList{Tenant: "t1", ID: 99, Name: "big", Dedupe: true, At: 1})
	codes := make([]string, 60_000)
	for i := range codes {
		codes[i] = fmt.Sprintf("BIG-%012d", i)
	}
	src.importCodes("t1", 99, 200, 4096, codes...)
	var stream bytes.Buffer
	if err := WriteSnapshot(src.db, &stream); err != nil {
		t.Fatal(err)
	}
	want, wantIndex := src.f.Digest(), src.f.AppliedIndex()

	defer func(n int) { restoreBatchBytes = n }(restoreBatchBytes)
	restoreBatchBytes = 32 << 10
	opts := func(fs vfs.FS) *pebble.Options {
		// A small memtable: flushes happen all through the restore, as they
		// do with a 64 MiB memtable and a state of millions of codes.
		return &pebble.Options{DisableWAL: true, FS: fs, Logger: quietLogger{}, MemTableSize: 256 << 10}
	}
	const points = 12
	for i := 1; i <= points; i++ {
		cut := stream.Len() * i / (points + 1)
		t.Run(fmt.Sprintf("cut at %d of %d bytes", cut, stream.Len()), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			old := openTestFSMWith(t, "state", opts(fs))
			for j, data := range randomStream(12, 100) {
				old.f.ApplyCommand(uint64(j+1), data)
			}
			if err := old.db.Flush(); err != nil {
				t.Fatal(err)
			}
			oldDigest, oldIndex := old.f.Digest(), old.f.AppliedIndex()
			cr := &crashingReader{r: bytes.NewReader(stream.Bytes()), left: cut, db: old.db, fs: fs}
			if err := old.f.Restore(io.NopCloser(cr)); err == nil {
				t.Fatal("a restore whose stream broke off succeeded")
			}
			if !old.f.RestoreUnfinished() {
				t.Fatal("a failed restore does not say it is unfinished")
			}
			if !panics(func() { old.f.ApplyCommand(wantIndex+1, Encode(&CreateTenant{ID: "late"})) }) {
				t.Fatal("an FSM whose restore failed applied an entry on top of a partial state")
			}

			after := openTestFSMWith(t, "state", opts(cr.crashed))
			switch {
			case after.f.RestoreUnfinished():
				if after.f.AppliedIndex() != 0 || len(after.f.Tenants()) != 0 {
					t.Fatalf("an unfinished restore shows index %d and %d tenants", after.f.AppliedIndex(), len(after.f.Tenants()))
				}
			case after.f.AppliedIndex() == oldIndex && after.f.Digest() == oldDigest:
				// nothing of the restore reached the disk
			default:
				t.Fatalf("after a crash %d bytes into the restore the state says it is complete at index %d, with digest %s (old %s at %d, snapshot %s at %d)",
					cut, after.f.AppliedIndex(), after.f.Digest(), oldDigest, oldIndex, want, wantIndex)
			}
			if err := after.f.Restore(io.NopCloser(bytes.NewReader(stream.Bytes()))); err != nil {
				t.Fatal(err)
			}
			if after.f.RestoreUnfinished() || after.f.AppliedIndex() != wantIndex || after.f.Digest() != want {
				t.Fatalf("restoring again reached index %d (want %d), digest equal %v", after.f.AppliedIndex(), wantIndex, after.f.Digest() == want)
			}
			// The finished restore is durable: a crash right after it keeps it.
			again := openTestFSMWith(t, "state", opts(cr.crashed.CrashClone(vfs.CrashCloneCfg{})))
			if again.f.RestoreUnfinished() || again.f.AppliedIndex() != wantIndex || again.f.Digest() != want {
				t.Fatalf("a crash right after the restore lost it (index %d)", again.f.AppliedIndex())
			}
		})
	}
}

func panics(fn func()) (did bool) {
	defer func() { did = recover() != nil }()
	fn()
	return false
}
