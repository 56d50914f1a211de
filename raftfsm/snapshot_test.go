package raftfsm

import (
	"bytes"
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
