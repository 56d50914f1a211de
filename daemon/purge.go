package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/coupond/coupond/raftfsm"
)

// An erasure (SPEC "Erasure of a recipient") rewrites the state, but the
// plain recipient stays on this node's disk in four places: the Raft log
// (the assignments and the erase entry itself), the snapshots taken
// before, Pebble's tables that held the old values, and the pages bolt
// freed when it deleted log entries (bolt reuses them without clearing
// them). The purge, run on every node after an erasure applied there,
// removes it from each.

const (
	// purgeSettle lets a burst of erasures (a script erasing many
	// recipients) share one purge: each costs a snapshot and a rewrite
	// of the whole state.
	purgeSettle = time.Second
	// purgeRetry: a purge that failed (a full disk, Raft busy installing
	// a snapshot) is tried again after it, until one succeeds.
	purgeRetry = 10 * time.Second
	// raftDBCopySuffix names the rewritten copy of raft.db until it is
	// renamed into place; a start removes one a crash left behind.
	raftDBCopySuffix = ".purge"
	// purgeMarker, in the data folder, says a purge is due: written
	// (synced) as soon as an erasure is seen, removed once a purge
	// succeeded, so a crash in between (or during the purge, after the
	// log lost the erase entry) still leads to a purge at the next start.
	purgeMarker = "purge.pending"
)

// purgeLoop runs one purge after each burst of erasures applied on this
// node, leader or follower, for the node's whole life.
func (n *Node) purgeLoop() {
	marker := filepath.Join(n.cfg.DataDir, purgeMarker)
	if _, err := os.Stat(marker); err == nil {
		n.log.Info().Msg("a purge after an erasure did not finish before the node stopped: purging again")
		n.requestPurge()
	}
	var retry <-chan time.Time
	for {
		select {
		case <-n.done:
			return
		case <-n.fsm.ErasuresApplied():
		case <-n.purgeReq:
		case <-retry:
		}
		retry = nil
		if err := writeFileSynced(marker, nil); err != nil {
			n.log.Error().Err(err).Msg("cannot mark a purge as due; a crash before it ends would leave it undone")
		}
		select {
		case <-n.done:
			return
		case <-time.After(purgeSettle):
		}
		// Erasures during the wait are covered by this purge: it starts
		// from the state applied now.
		select {
		case <-n.fsm.ErasuresApplied():
		default:
		}
		select {
		case <-n.purgeReq:
		default:
		}
		if err := n.purge(); err != nil {
			if errors.Is(err, raft.ErrRaftShutdown) {
				return
			}
			n.log.Error().Err(err).Dur("retry_in", purgeRetry).
				Msg("an erased recipient may still be on this node's disk: cannot purge it")
			retry = time.After(purgeRetry)
			continue
		}
		if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
			n.log.Warn().Err(err).Msg("cannot remove the purge marker: the next start purges again")
		}
	}
}

// requestPurge asks purgeLoop for a purge without waiting.
func (n *Node) requestPurge() {
	select {
	case n.purgeReq <- struct{}{}:
	default:
	}
}

// notePendingErasure sees every log entry at start (scanLog): an erase
// entry still in the log may have been applied, and its Pebble write
// flushed, just before a crash that came before the purge; replaying the
// log then skips it and no erasure would be signalled.
func (n *Node) notePendingErasure(l *raft.Log) {
	if l.Type == raft.LogCommand && holdsErasure(l.Data) {
		n.requestPurge()
	}
}

// holdsErasure reports whether a log entry is an erase command or a batch
// holding one. Only the type byte is read of other entries.
func holdsErasure(data []byte) bool {
	if len(data) == 0 {
		return false
	}
	switch raftfsm.CmdType(data[0]) {
	case raftfsm.CmdEraseRecipient:
		return true
	case raftfsm.CmdBatch:
		c, err := raftfsm.Decode(data)
		if err != nil {
			return false // the apply refuses it, and so erases nothing
		}
		for _, sub := range c.(*raftfsm.Batch).Commands {
			if holdsErasure(sub) {
				return true
			}
		}
	}
	return false
}

// purge removes from this node's disk every byte the state no longer
// holds as of the index applied when it starts: a snapshot of that state
// with no log kept behind it, the older snapshots deleted, Pebble
// compacted, raft.db rewritten. It logs what it did; never a recipient.
func (n *Node) purge() error {
	start := time.Now()
	target := n.fsm.AppliedIndex()
	snap, err := n.snapshotWithoutLog(target)
	if err != nil {
		return err
	}
	removed, err := n.removeOlderSnapshots(snap)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.done: // Close need not wait for a compaction of the whole state
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := n.fsm.CompactAll(ctx); err != nil {
		select {
		case <-n.done:
			return raft.ErrRaftShutdown
		default:
		}
		return err
	}
	select {
	case <-n.done:
		return raft.ErrRaftShutdown // Close is taking raft.db away
	default:
	}
	before, after, err := n.raftDB.rewrite()
	if err != nil {
		return err
	}
	n.metrics.ObservePurge(time.Since(start))
	n.log.Info().Uint64("applied_index", target).Str("snapshot", snap.ID).Uint64("snapshot_index", snap.Index).
		Int("older_snapshots_removed", removed).Int64("raft_db_bytes_before", before).Int64("raft_db_bytes_after", after).
		Dur("took", time.Since(start)).Msg("purged the disk after an erasure: log truncated, state compacted, raft.db rewritten")
	return nil
}

// snapshotWithoutLog takes a snapshot at or past target and deletes every
// log entry it covers. Raft keeps --raft-trailing-entries behind a
// snapshot for slow followers; those entries hold the recipients, so it
// keeps none for this one (a follower that needed them gets the snapshot).
// When Raft has nothing new to snapshot (its own snapshot came after the
// erasure, with trailing entries) the entries it kept are deleted here, as
// Raft itself would with no trailing entries.
func (n *Node) snapshotWithoutLog(target uint64) (*raft.SnapshotMeta, error) {
	rc := n.raft.ReloadableConfig()
	noTrail := rc
	noTrail.TrailingLogs = 0
	if err := n.raft.ReloadConfig(noTrail); err != nil {
		return nil, fmt.Errorf("cannot set trailing log entries to 0: %w", err)
	}
	err := n.await(n.raft.Snapshot())
	if rerr := n.raft.ReloadConfig(rc); rerr != nil {
		// Left at 0, followers a second behind would need snapshots.
		n.log.Error().Err(rerr).Msg("cannot restore the trailing log entries after a purge")
	}
	if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil, fmt.Errorf("cannot take a snapshot: %w", err)
	}
	metas, err := n.snaps.List()
	if err != nil {
		return nil, fmt.Errorf("cannot list snapshots: %w", err)
	}
	if len(metas) == 0 || metas[0].Index < target {
		return nil, fmt.Errorf("no snapshot reaches index %d yet", target)
	}
	snap := metas[0]
	first, err := n.raftDB.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("cannot read the Raft log: %w", err)
	}
	if first != 0 && first <= snap.Index {
		if err := n.raftDB.DeleteRange(first, snap.Index); err != nil {
			return nil, fmt.Errorf("cannot truncate the Raft log: %w", err)
		}
	}
	return snap, nil
}

// removeOlderSnapshots deletes every snapshot older than keep (Raft
// retains two). A snapshot being sent to a follower stays readable: the
// open file outlives its name.
func (n *Node) removeOlderSnapshots(keep *raft.SnapshotMeta) (int, error) {
	metas, err := n.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("cannot list snapshots: %w", err)
	}
	removed := 0
	for _, m := range metas {
		if m.Index > keep.Index || m.ID == keep.ID {
			continue // ours, or one Raft took since
		}
		if err := os.RemoveAll(filepath.Join(n.snaps.dir, m.ID)); err != nil {
			return removed, fmt.Errorf("cannot remove snapshot %s: %w", m.ID, err)
		}
		removed++
	}
	return removed, nil
}

// removeRaftDBCopy removes the copy of raft.db that a purge was writing
// when the process died: raft.db itself was not touched before the copy
// was complete and renamed over it.
func removeRaftDBCopy(path string) error {
	if err := os.Remove(path + raftDBCopySuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove the unfinished copy of %s: %w", path, err)
	}
	return nil
}

// rewrite replaces raft.db with a copy of what it holds: bolt keeps the
// bytes of deleted log entries in its free pages until a later write
// reuses them, which an idle cluster never does. The copy is written and
// synced beside the file, then renamed over it: a crash before the rename
// leaves the old file whole (and the copy, removed at the next start),
// after it the new one. Raft waits for it on the lock; after a log
// truncation the copy is small and takes milliseconds. It answers the
// file's size before and after.
func (d *raftDB) rewrite() (before, after int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bolt == nil {
		return 0, 0, fmt.Errorf("%s: %w", d.path, errRaftDBClosed)
	}
	if fi, err := os.Stat(d.path); err == nil {
		before = fi.Size()
	}
	tmp := d.path + raftDBCopySuffix
	// bolt locks the file, so the copy reads it through a handle of its own.
	if err := d.bolt.Close(); err != nil {
		return before, 0, fmt.Errorf("cannot close %s: %w", d.path, err)
	}
	d.bolt = nil
	copyErr := copyBoltFile(d.path, tmp)
	if copyErr == nil {
		copyErr = os.Rename(tmp, d.path)
	}
	if copyErr == nil {
		copyErr = syncPath(filepath.Dir(d.path))
	}
	if copyErr != nil {
		os.Remove(tmp)
		copyErr = fmt.Errorf("cannot rewrite %s: %w", d.path, copyErr)
	}
	// Whichever file is in place now, old or new, is whole.
	b, err := openRaftLog(d.path)
	if err != nil {
		// d.bolt stays nil: Raft's next read or write fails and the
		// node stops, rather than run on without its log.
		return before, 0, errors.Join(copyErr, err)
	}
	d.bolt = b
	if fi, err := os.Stat(d.path); err == nil {
		after = fi.Size()
	}
	return before, after, copyErr
}

// copyBoltFile copies every bucket and key of the bolt file src into a new
// file dst, synced, in one transaction: the copy holds live data only.
func copyBoltFile(src, dst string) error {
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	from, err := bbolt.Open(src, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltLockWait})
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := bbolt.Open(dst, 0o600, &bbolt.Options{Timeout: boltLockWait})
	if err != nil {
		return err
	}
	err = from.View(func(rtx *bbolt.Tx) error {
		return to.Update(func(wtx *bbolt.Tx) error {
			return rtx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				nb, err := wtx.CreateBucket(name)
				if err != nil {
					return err
				}
				return copyBucket(b, nb)
			})
		})
	})
	if cerr := to.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// bolt syncs its pages with fdatasync; the new file's size and
		// inode need a full sync before the rename makes it raft.db.
		err = syncPath(dst)
	}
	return err
}

func copyBucket(from, to *bbolt.Bucket) error {
	if err := to.SetSequence(from.Sequence()); err != nil {
		return err
	}
	return from.ForEach(func(k, v []byte) error {
		if v != nil {
			return to.Put(k, v)
		}
		nb, err := to.CreateBucket(k)
		if err != nil {
			return err
		}
		return copyBucket(from.Bucket(k), nb)
	})
}

// syncPath fsyncs a file or a folder (a read-only descriptor is enough
// for fsync on Linux).
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
