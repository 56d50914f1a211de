package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// errCorrupt marks an integrity error: the node refuses to start (or
// stops) rather than serve a ledger it cannot trust.
var errCorrupt = errors.New("data folder is inconsistent")

// logChecksumMagic ends the trailer that checkedLogStore appends to each
// entry's Extensions: the CRC32C (4 bytes, big endian), then this.
// Entries stored before checksums existed have no Extensions at all.
const logChecksumMagic = "cpd\x01"

// logTrailerLen is the size of the trailer: the CRC and the magic.
const logTrailerLen = 4 + len(logChecksumMagic)

// keyChecksumsFrom, in raft.db's stable store, is the first log index
// whose entry must carry a checksum: entries below it may come from a
// version that wrote none. Recorded once, on the first start that checks.
var keyChecksumsFrom = []byte("coupond_checksums_from")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkedLogStore keeps a CRC32C of every Raft entry beside it in raft.db,
// which bolt stores without any checksum of its own: a flipped bit in a
// code or a recipient would otherwise replay silently. The checksum rides
// in Extensions (Raft's field for such middleware) and is stripped on
// read, so Raft, the state machine and the followers see the entry as it
// was given.
type checkedLogStore struct {
	bolt *raftDB
	path string // raft.db, named in every error
	from uint64 // see keyChecksumsFrom; 0 until known (set before Raft runs)
}

// newCheckedLogStore wraps raft.db's store; from is read from its stable
// store and stays 0 (every entry without a trailer accepted) when absent,
// until markChecksums records it.
func newCheckedLogStore(bolt *raftboltdb.BoltStore, path string) (*checkedLogStore, error) {
	s := &checkedLogStore{bolt: &raftDB{bolt: bolt, path: path}, path: path}
	from, err := bolt.GetUint64(keyChecksumsFrom)
	switch {
	case err == nil:
		s.from = from
	case !errors.Is(err, raftboltdb.ErrKeyNotFound):
		return nil, fmt.Errorf("cannot read %s: %w", path, err)
	}
	return s, nil
}

// markChecksums records, if it is not yet, that every entry after the
// current last one carries a checksum. It is called once the start-up
// checks passed, so a refused start writes nothing.
func (s *checkedLogStore) markChecksums() error {
	if s.from != 0 {
		return nil
	}
	last, err := s.bolt.LastIndex()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", s.path, err)
	}
	if err := s.bolt.SetUint64(keyChecksumsFrom, last+1); err != nil {
		return fmt.Errorf("cannot write %s: %w", s.path, err)
	}
	s.from = last + 1
	return nil
}

// logChecksum covers everything of an entry that the state machine and the
// cluster rely on: index, term, type, data and the caller's extensions.
func logChecksum(l *raft.Log, ext []byte) uint32 {
	var hdr [17]byte
	binary.BigEndian.PutUint64(hdr[0:], l.Index)
	binary.BigEndian.PutUint64(hdr[8:], l.Term)
	hdr[16] = byte(l.Type)
	c := crc32.Update(0, castagnoli, hdr[:])
	c = crc32.Update(c, castagnoli, l.Data)
	return crc32.Update(c, castagnoli, ext)
}

func (s *checkedLogStore) FirstIndex() (uint64, error) { return s.bolt.FirstIndex() }
func (s *checkedLogStore) LastIndex() (uint64, error)  { return s.bolt.LastIndex() }

func (s *checkedLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores copies of the entries with their trailers; the callers'
// entries stay untouched (the leader applies and sends them). One slice of
// copies and one buffer of trailers per call keep it allocation-light.
func (s *checkedLogStore) StoreLogs(logs []*raft.Log) error {
	size := 0
	for _, l := range logs {
		size += len(l.Extensions) + logTrailerLen
	}
	buf := make([]byte, 0, size)
	copies := make([]raft.Log, len(logs))
	ptrs := make([]*raft.Log, len(logs))
	for i, l := range logs {
		start := len(buf)
		buf = append(buf, l.Extensions...)
		buf = binary.BigEndian.AppendUint32(buf, logChecksum(l, l.Extensions))
		buf = append(buf, logChecksumMagic...)
		copies[i] = *l
		copies[i].Extensions = buf[start:len(buf):len(buf)]
		ptrs[i] = &copies[i]
	}
	return s.bolt.StoreLogs(ptrs)
}

// GetLog reads an entry, checks it and strips the trailer. A mismatch is
// an error naming raft.db: Raft then refuses to start, or stops the node,
// rather than apply or send a damaged entry.
func (s *checkedLogStore) GetLog(idx uint64, l *raft.Log) error {
	if err := s.bolt.GetLog(idx, l); err != nil {
		if errors.Is(err, raft.ErrLogNotFound) {
			return err // Raft tells compacted entries by this very value
		}
		return fmt.Errorf("%w: %s: cannot decode Raft log entry %d: %v", errCorrupt, s.path, idx, err)
	}
	if l.Index != idx {
		return fmt.Errorf("%w: %s: Raft log entry %d says it is entry %d", errCorrupt, s.path, idx, l.Index)
	}
	ext := l.Extensions
	if len(ext) < logTrailerLen || string(ext[len(ext)-len(logChecksumMagic):]) != logChecksumMagic {
		// Only entries older than the checksums may lack them, and those
		// had no extensions.
		if (s.from != 0 && idx >= s.from) || len(ext) > 0 {
			return fmt.Errorf("%w: %s: Raft log entry %d has no checksum", errCorrupt, s.path, idx)
		}
		return nil
	}
	orig := ext[:len(ext)-logTrailerLen]
	want := binary.BigEndian.Uint32(ext[len(orig):])
	if got := logChecksum(l, orig); got != want {
		return fmt.Errorf("%w: %s: Raft log entry %d fails its checksum (stored %08x, computed %08x)",
			errCorrupt, s.path, idx, want, got)
	}
	if len(orig) == 0 {
		orig = nil // as the entry was given
	}
	l.Extensions = orig
	return nil
}

func (s *checkedLogStore) DeleteRange(min, max uint64) error { return s.bolt.DeleteRange(min, max) }

// raftDB is raft.db's store behind a lock, so that a purge after an
// erasure can replace the file with a rewritten copy while Raft runs
// (purge.go): Raft uses it as its stable store, checkedLogStore as its log.
// Every call holds the read lock; the swap holds the write lock, so Raft
// waits for it rather than write to a closed file.
type raftDB struct {
	mu   sync.RWMutex
	bolt *raftboltdb.BoltStore // nil once closed, or after a swap that failed to reopen
	path string
}

// errRaftDBClosed answers calls after Close, or after a swap that could
// not reopen the file (the node then stops with that error in its log).
var errRaftDBClosed = errors.New("raft.db is closed")

func (d *raftDB) with(fn func(b *raftboltdb.BoltStore) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.bolt == nil {
		return fmt.Errorf("%s: %w", d.path, errRaftDBClosed)
	}
	return fn(d.bolt)
}

func (d *raftDB) FirstIndex() (i uint64, err error) {
	err = d.with(func(b *raftboltdb.BoltStore) (err error) { i, err = b.FirstIndex(); return })
	return i, err
}

func (d *raftDB) LastIndex() (i uint64, err error) {
	err = d.with(func(b *raftboltdb.BoltStore) (err error) { i, err = b.LastIndex(); return })
	return i, err
}

func (d *raftDB) GetLog(idx uint64, l *raft.Log) error {
	return d.with(func(b *raftboltdb.BoltStore) error { return b.GetLog(idx, l) })
}

func (d *raftDB) StoreLogs(logs []*raft.Log) error {
	return d.with(func(b *raftboltdb.BoltStore) error { return b.StoreLogs(logs) })
}

func (d *raftDB) DeleteRange(min, max uint64) error {
	return d.with(func(b *raftboltdb.BoltStore) error { return b.DeleteRange(min, max) })
}

func (d *raftDB) Set(k, v []byte) error {
	return d.with(func(b *raftboltdb.BoltStore) error { return b.Set(k, v) })
}

func (d *raftDB) Get(k []byte) (v []byte, err error) {
	err = d.with(func(b *raftboltdb.BoltStore) (err error) { v, err = b.Get(k); return })
	return v, err
}

func (d *raftDB) SetUint64(k []byte, v uint64) error {
	return d.with(func(b *raftboltdb.BoltStore) error { return b.SetUint64(k, v) })
}

func (d *raftDB) GetUint64(k []byte) (v uint64, err error) {
	err = d.with(func(b *raftboltdb.BoltStore) (err error) { v, err = b.GetUint64(k); return })
	return v, err
}

// Close closes the file; later calls answer errRaftDBClosed.
func (d *raftDB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.bolt == nil {
		return nil
	}
	err := d.bolt.Close()
	d.bolt = nil
	return err
}
