package daemon

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// The start-up checks of the data folder: raft.db (the log), the
// snapshots and state/ (Pebble) must tell one story, or the node refuses
// to start, naming the file, rather than serve another ledger. Each check
// reads; the stamps and the checksum mark are written only once all passed.

// What an operator can do about a refused start.
const integrityAdvice = "restore the data folder from a backup, or remove it and re-join this node to the cluster"

// Files of the checks: the stamp beside Pebble's files, the folder Raft's
// snapshot store keeps its snapshots in.
const (
	stampFile         = "coupond.stamp"
	raftSnapshotsPath = "snapshots" // FileSnapshotStore's own sub-folder
	raftSnapMeta      = "meta.json"
	raftSnapState     = "state.bin"
)

// keyStamp, in raft.db's stable store, holds the same stamp as state/.
var keyStamp = []byte("coupond_stamp")

// raftCurrentTerm is the stable-store key Raft keeps its term under: a
// raft.db that ever took part in a cluster has it.
var raftCurrentTerm = []byte("CurrentTerm")

// stamp ties raft.db and state/ to one data folder of one node: both get
// the same random folder id on the first start, so either file copied from
// another node's folder (or another cluster's) is told apart.
type stamp struct {
	Folder string `json:"folder"`
	Node   string `json:"node"`
}

// bolt's file header: meta pages 0 and 1 after a 16-byte page header.
const (
	boltPageHeader = 16
	boltMetaLen    = 64 // magic, version, page size, flags, root (16), freelist, pgid, txid, checksum
	boltMagic      = 0xED0CDAED
	boltMaxPage    = 64 << 10
	boltLockWait   = 5 * time.Second // another process holding raft.db: a clear error, not a hang
)

// openRaftLog opens raft.db once its header shows the file is whole: bolt
// maps the file and would die of SIGBUS on a page past a truncated end.
// A panic of bolt on a damaged file becomes an error naming it.
func openRaftLog(path string) (store *raftboltdb.BoltStore, err error) {
	if err := checkBoltFile(path); err != nil {
		return nil, err
	}
	if err := checkBoltPages(path); err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			store, err = nil, fmt.Errorf("%w: %s is damaged (%v); %s", errCorrupt, path, p, integrityAdvice)
		}
	}()
	store, err = raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		return nil, fmt.Errorf("cannot open Raft log %s: %w", path, err)
	}
	return store, nil
}

// checkBoltFile compares raft.db's size with the page count its newest
// valid meta page records. A missing or empty file is left to bolt (it
// makes a new one), and to checkIntegrity (which refuses it beside state).
func checkBoltFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot open Raft log %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot open Raft log %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil
	}
	page := make([]byte, boltPageHeader+boltMetaLen)
	var best *boltMeta
	damaged := -1
	offset := int64(0)
	for i := 0; i < 2; i++ {
		if _, err := f.ReadAt(page, offset); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("cannot read Raft log %s: %w", path, err)
		}
		m, ok := parseBoltMeta(page[boltPageHeader:])
		if ok && (best == nil || m.txid > best.txid) {
			best = &m
		}
		if !ok {
			damaged = i
		}
		// Meta page 1 follows page 0 at the page size page 0 gives, or
		// at the usual size when page 0 is the damaged one.
		if offset == 0 {
			offset = 4096
			if ok {
				offset = int64(m.pageSize)
			}
		}
	}
	if best == nil {
		return fmt.Errorf("%w: %s has no valid header (%d bytes): it is damaged or not a Raft log; %s",
			errCorrupt, path, fi.Size(), integrityAdvice)
	}
	// bolt would fall back to the other header, the transaction before:
	// the entries of the last one, synced and acknowledged, would be lost.
	// (A write cut by a crash leaves the header's first sector, where the
	// checked bytes lie, whole or untouched.)
	if damaged >= 0 {
		return fmt.Errorf("%w: %s has a damaged header (meta page %d): bolt would fall back to the transaction before it and lose the entries written last; %s",
			errCorrupt, path, damaged, integrityAdvice)
	}
	if need := int64(best.pgid) * int64(best.pageSize); fi.Size() < need {
		return fmt.Errorf("%w: %s is truncated: %d bytes, its header says %d; %s",
			errCorrupt, path, fi.Size(), need, integrityAdvice)
	}
	return nil
}

// checkBoltPages walks every bucket of raft.db, then runs bolt's own
// consistency check: every page below the high-water mark reachable once
// or free, never both. bolt keeps no page checksums, so a damaged page
// pointer could otherwise bring back a freed page of stale entries, each
// of which passes its checksum, and lose the entries written since. The
// open (which loads the free list) and the walk run here, where a panic
// of bolt on a damaged page is recovered; bolt's check runs in a goroutine
// of its own, so it comes last, on pages the walk has read already.
func checkBoltPages(path string) (err error) {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil // none yet: bolt makes it
	}
	// A page pointer past the end of the file faults in bolt's mapping;
	// here that is a panic, recovered below, rather than a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s is damaged (%v); %s", errCorrupt, path, p, integrityAdvice)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: boltLockWait})
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return fmt.Errorf("cannot open Raft log %s: another process holds it (a second coupond on this data folder?)", path)
	case errors.Is(err, bbolt.ErrInvalid) || errors.Is(err, bbolt.ErrChecksum) || errors.Is(err, bbolt.ErrVersionMismatch):
		return fmt.Errorf("%w: cannot open Raft log %s: %v; %s", errCorrupt, path, err, integrityAdvice)
	case err != nil:
		return fmt.Errorf("cannot open Raft log %s: %w", path, err)
	}
	defer db.Close()
	var problems []string
	err = db.View(func(tx *bbolt.Tx) error {
		if err := tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { walkBucket(b); return nil }); err != nil {
			return err
		}
		for e := range tx.Check() {
			if len(problems) < 3 {
				problems = append(problems, e.Error())
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot check Raft log %s: %w", path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s is damaged (%s); %s", errCorrupt, path, strings.Join(problems, "; "), integrityAdvice)
	}
	return nil
}

// walkBucket reads every key of a bucket and of the buckets nested in it.
func walkBucket(b *bbolt.Bucket) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if nested := b.Bucket(k); nested != nil {
				walkBucket(nested)
			}
		}
	}
}

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// parseBoltMeta reads a bolt meta page (native byte order, as bolt writes
// it) and checks its magic, version and FNV-64a checksum.
func parseBoltMeta(b []byte) (boltMeta, bool) {
	e := binary.NativeEndian
	if e.Uint32(b[0:]) != boltMagic || e.Uint32(b[4:]) != 2 {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(b[:56])
	if sum := e.Uint64(b[56:]); sum != 0 && sum != h.Sum64() {
		return boltMeta{}, false
	}
	m := boltMeta{pageSize: e.Uint32(b[8:]), pgid: e.Uint64(b[40:]), txid: e.Uint64(b[48:])}
	if m.pageSize < 512 || m.pageSize > boltMaxPage || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, false
	}
	return m, true
}

// checkedStores are the stores Raft must use once the checks passed: the
// log with its checksums, the snapshots with their stamps.
type checkedStores struct {
	logs  *checkedLogStore
	snaps *stampedSnapshots
}

// checkIntegrity runs before the state may be restored from a snapshot and
// before Raft reads the log: it returns the stores Raft must use, or an
// error naming what disagrees.
func (n *Node) checkIntegrity(bolt *raftboltdb.BoltStore, snaps *raft.FileSnapshotStore) (*checkedStores, error) {
	logPath := filepath.Join(n.cfg.DataDir, raftLogFile)
	statePath := filepath.Join(n.cfg.DataDir, stateDir)
	snapsPath := filepath.Join(n.cfg.DataDir, snapshotsDir, raftSnapshotsPath)
	logs, err := newCheckedLogStore(bolt, logPath)
	if err != nil {
		return nil, err
	}
	first, err := bolt.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", logPath, err)
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", logPath, err)
	}
	term, err := getUint64(bolt, raftCurrentTerm)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", logPath, err)
	}
	metas, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("cannot list snapshots in %s: %w", snapsPath, err)
	}
	var snapIndex uint64
	if len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	applied := n.fsm.AppliedIndex()

	// A raft.db that never took part in a cluster beside a state or
	// snapshots that did: it was deleted, emptied or replaced.
	if last == 0 && term == 0 && (applied > 0 || len(metas) > 0) {
		what := fmt.Sprintf("the state in %s has applied entry %d", statePath, applied)
		if len(metas) > 0 {
			what += fmt.Sprintf(" and %s holds a snapshot up to entry %d", snapsPath, snapIndex)
		} else {
			what += fmt.Sprintf(" and there is no snapshot in %s either", snapsPath)
		}
		return nil, fmt.Errorf("%w: the Raft log %s is missing or empty, but %s: starting would make a new log behind them; %s",
			errCorrupt, logPath, what, integrityAdvice)
	}

	rs, err := readLogStamp(bolt, logPath)
	if err != nil {
		return nil, err
	}
	ss, err := readStamp(filepath.Join(statePath, stampFile))
	if err != nil {
		return nil, err
	}
	for _, s := range []struct {
		st   *stamp
		path string
	}{{rs, logPath}, {ss, statePath}} {
		if s.st != nil && s.st.Node != n.cfg.NodeID {
			return nil, fmt.Errorf("%w: %s belongs to node %q, but this node is %q (--id): it was copied from another node's data folder, or --id changed; %s",
				errCorrupt, s.path, s.st.Node, n.cfg.NodeID, integrityAdvice)
		}
	}
	if rs != nil && ss != nil && rs.Folder != ss.Folder {
		return nil, fmt.Errorf("%w: %s (folder %s) and %s (folder %s) come from different data folders: one was copied from another node or another cluster; %s",
			errCorrupt, logPath, rs.Folder, statePath, ss.Folder, integrityAdvice)
	}

	// Pebble is only ever behind the log (it has no WAL; the log is synced
	// first), never ahead of both the log and the snapshots.
	if applied > last && applied > snapIndex {
		return nil, fmt.Errorf("%w: the state in %s has applied entry %d, but the Raft log %s ends at entry %d and the newest snapshot in %s at %d: the log is older than the state; %s",
			errCorrupt, statePath, applied, logPath, last, snapsPath, snapIndex, integrityAdvice)
	}
	folder := rs
	if folder == nil {
		folder = ss
	}
	if err := checkSnapshotFolders(snapsPath, folder, n.cfg.NodeID); err != nil {
		return nil, err
	}
	// Raft drops log entries only below a snapshot it keeps.
	if first > 1 && snapIndex+1 < first {
		return nil, fmt.Errorf("%w: the Raft log %s starts at entry %d, but no snapshot in %s reaches entry %d: the snapshots are missing; %s",
			errCorrupt, logPath, first, snapsPath, first-1, integrityAdvice)
	}
	if err := checkNewestSnapshot(snaps, snapsPath, metas, logs, first, last); err != nil {
		return nil, err
	}
	if err := scanLog(logs, first, last, snapIndex, n.notePendingErasure); err != nil {
		return nil, fmt.Errorf("%w; %s", err, integrityAdvice)
	}

	// Every check passed: record what a later start checks against.
	if err := logs.markChecksums(); err != nil {
		return nil, err
	}
	st, err := n.writeStamps(bolt, rs, ss, logPath, statePath)
	if err != nil {
		return nil, err
	}
	return &checkedStores{logs: logs, snaps: &stampedSnapshots{FileSnapshotStore: snaps, dir: snapsPath, stamp: st}}, nil
}

// stampedSnapshots puts the folder's stamp into every snapshot Raft makes
// or receives, before Raft renames its folder into place, so a snapshot
// copied from another data folder is told apart at start.
type stampedSnapshots struct {
	*raft.FileSnapshotStore
	dir   string
	stamp []byte
}

func (s *stampedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	// FileSnapshotStore writes a snapshot into ID.tmp and renames it on Close.
	if err := writeFileSynced(filepath.Join(s.dir, sink.ID()+".tmp", stampFile), s.stamp); err != nil {
		sink.Cancel()
		return nil, fmt.Errorf("cannot stamp snapshot %s: %w", sink.ID(), err)
	}
	return sink, nil
}

// checkSnapshotFolders refuses a snapshot whose meta.json Raft cannot read
// (Raft would skip it silently) or whose stamp is another data folder's.
// Snapshots from before stamps have none and pass.
func checkSnapshotFolders(dir string, folder *stamp, node string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot list snapshots in %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		path := filepath.Join(dir, e.Name(), raftSnapMeta)
		b, err := os.ReadFile(path)
		var m struct {
			raft.SnapshotMeta
			CRC []byte
		}
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err == nil && (m.ID != e.Name() || len(m.CRC) == 0) {
			err = errors.New("its fields do not match its folder")
		}
		if err != nil {
			return fmt.Errorf("%w: snapshot %s cannot be read (%v); %s", errCorrupt, path, err, integrityAdvice)
		}
		st, err := readStamp(filepath.Join(dir, e.Name(), stampFile))
		if err != nil {
			return err
		}
		if st != nil && (folder == nil || st.Folder != folder.Folder || st.Node != node) {
			return fmt.Errorf("%w: snapshot %s was taken by node %q of another data folder (%s): it was copied from another node or another cluster; %s",
				errCorrupt, filepath.Join(dir, e.Name()), st.Node, st.Folder, integrityAdvice)
		}
	}
	return nil
}

// checkNewestSnapshot refuses a newest snapshot whose state.bin fails its
// CRC (Raft checks it only when it opens the snapshot: to restore it or to
// send it to a follower), or whose term disagrees with the log's entry at
// its index.
func checkNewestSnapshot(snaps *raft.FileSnapshotStore, dir string, metas []*raft.SnapshotMeta, logs *checkedLogStore, first, last uint64) error {
	if len(metas) == 0 {
		return nil
	}
	newest := metas[0]
	statePath := filepath.Join(dir, newest.ID, raftSnapState)
	_, rc, err := snaps.Open(newest.ID) // reads the whole file and checks its CRC
	if err != nil {
		return fmt.Errorf("%w: snapshot %s cannot be used (%v); %s", errCorrupt, statePath, err, integrityAdvice)
	}
	rc.Close()
	if newest.Index >= first && newest.Index <= last && first > 0 {
		var l raft.Log
		if err := logs.GetLog(newest.Index, &l); err == nil && l.Term != newest.Term {
			return fmt.Errorf("%w: snapshot %s is of term %d at entry %d, but the Raft log %s has term %d there: the snapshot comes from another cluster; %s",
				errCorrupt, filepath.Join(dir, newest.ID), newest.Term, newest.Index, logs.path, l.Term, integrityAdvice)
		}
	}
	return nil
}

// scanLog reads every entry of the log through its checksums. Entries may
// be missing only below the newest snapshot: a follower that installed one
// keeps its older entries with a hole up to it.
func scanLog(logs *checkedLogStore, first, last, snapIndex uint64, seen func(*raft.Log)) (err error) {
	if last == 0 {
		return nil
	}
	var idx uint64
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s is damaged near Raft log entry %d (%v)", errCorrupt, logs.path, idx, p)
		}
	}()
	var l raft.Log
	for idx = first; idx <= last; idx++ {
		l = raft.Log{}
		err := logs.GetLog(idx, &l)
		if errors.Is(err, raft.ErrLogNotFound) && idx <= snapIndex {
			idx = snapIndex // the rest of the hole, if it is one
			continue
		}
		if errors.Is(err, raft.ErrLogNotFound) {
			return fmt.Errorf("%w: the Raft log %s lacks entry %d (it holds %d to %d)", errCorrupt, logs.path, idx, first, last)
		}
		if err != nil {
			return err
		}
		if seen != nil {
			seen(&l)
		}
	}
	return nil
}

// getUint64 reads a stable-store number; a missing key reads as 0.
func getUint64(bolt *raftboltdb.BoltStore, key []byte) (uint64, error) {
	v, err := bolt.GetUint64(key)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, nil
	}
	return v, err
}

func readLogStamp(bolt *raftboltdb.BoltStore, path string) (*stamp, error) {
	b, err := bolt.Get(keyStamp)
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	return parseStamp(b, path)
}

func readStamp(path string) (*stamp, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	return parseStamp(b, path)
}

func parseStamp(b []byte, path string) (*stamp, error) {
	var s stamp
	if err := json.Unmarshal(b, &s); err != nil || s.Folder == "" || s.Node == "" {
		return nil, fmt.Errorf("%w: the stamp of %s is damaged (%q); %s", errCorrupt, path, b, integrityAdvice)
	}
	return &s, nil
}

// writeStamps gives raft.db and state/ the stamp they lack: a new folder id
// when neither has one (a new folder, or one from before stamps), else the
// other's, since a state rebuilt from a snapshot and the log, or a log
// rebuilt by the cluster, still belong to this folder.
func (n *Node) writeStamps(bolt *raftboltdb.BoltStore, rs, ss *stamp, logPath, statePath string) ([]byte, error) {
	st := rs
	if st == nil {
		st = ss
	}
	if st == nil {
		var id [16]byte
		rand.Read(id[:])
		st = &stamp{Folder: hex.EncodeToString(id[:]), Node: n.cfg.NodeID}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	if rs == nil {
		if err := bolt.Set(keyStamp, b); err != nil {
			return nil, fmt.Errorf("cannot stamp %s: %w", logPath, err)
		}
	}
	if ss == nil {
		if err := writeFileSynced(filepath.Join(statePath, stampFile), b); err != nil {
			return nil, fmt.Errorf("cannot stamp %s: %w", statePath, err)
		}
	}
	return b, nil
}

// writeFileSynced writes a small file whole or not at all: a temporary
// file, synced, renamed over, and the folder synced.
func writeFileSynced(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncPath(filepath.Dir(path))
}
