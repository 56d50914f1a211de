package raftfsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

var errCorruptSnapshot = errors.New("corrupt snapshot")

// snapshotMagic starts every snapshot stream; the last byte is its version.
var snapshotMagic = []byte("coupond-snap\x00\x01")

// Snapshot implements raft.FSM. Raft calls it on the apply goroutine, so it
// only takes a Pebble snapshot of the applied state; Persist does the rest
// while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{db: f.db, snap: f.db.NewSnapshot()}, nil
}

type fsmSnapshot struct {
	db   *pebble.DB
	snap *pebble.Snapshot
}

// Persist makes Pebble durable at least up to the snapshot, since Raft drops
// the log below it once Persist returns, then writes every key and value as
// (uvarint len, key, uvarint len, value), ended by a zero key length. The
// flush is here rather than in Snapshot, which runs on the apply goroutine:
// there it would stall every apply for as long as a memtable takes to flush.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.db.Flush(); err != nil {
		sink.Cancel()
		return fmt.Errorf("cannot flush state before snapshot: %w", err)
	}
	if err := WriteSnapshot(s.snap, sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.snap.Close() }

// WriteSnapshot streams everything r holds to w: the magic, the applied
// index of the state (so a reader can tell how far it reaches without
// reading it all), then every key and value.
func WriteSnapshot(r reader, w io.Writer) error {
	var applied uint64
	if err := scanReader(r, keyApplied, func(k, v []byte) error {
		if string(k) == string(keyApplied) && len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("cannot write snapshot: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	hdr := binary.BigEndian.AppendUint64(append([]byte(nil), snapshotMagic...), applied)
	if _, err := bw.Write(hdr); err != nil {
		return fmt.Errorf("cannot write snapshot: %w", err)
	}
	err := scanReader(r, nil, func(k, v []byte) error {
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(k)))
		hdr = append(hdr, k...)
		hdr = binary.AppendUvarint(hdr, uint64(len(v)))
		if _, err := bw.Write(hdr); err != nil {
			return err
		}
		_, err := bw.Write(v)
		return err
	})
	if err == nil {
		_, err = bw.Write([]byte{0})
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fmt.Errorf("cannot write snapshot: %w", err)
	}
	return nil
}

// maxSnapshotValue bounds one value read from a snapshot stream.
const maxSnapshotValue = 64 << 20

// SnapshotReader reads a snapshot stream made by WriteSnapshot.
type SnapshotReader struct {
	br      *bufio.Reader
	Applied uint64 // the applied index of the state in the stream
}

// NewSnapshotReader reads the header of a snapshot stream.
func NewSnapshotReader(r io.Reader) (*SnapshotReader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	hdr := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(br, hdr); err != nil || string(hdr[:len(snapshotMagic)]) != string(snapshotMagic) {
		return nil, fmt.Errorf("cannot read snapshot: bad header")
	}
	return &SnapshotReader{br: br, Applied: binary.BigEndian.Uint64(hdr[len(snapshotMagic):])}, nil
}

// Restore implements raft.FSM: it replaces the whole state with the stream's
// and rebuilds the pools; readers switch to the new state at once.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	sr, err := NewSnapshotReader(rc)
	if err != nil {
		return err
	}
	return f.RestoreFrom(sr)
}

// keyRestoring is present while a restore rewrites the state. It reaches
// disk before anything of the old state is dropped and leaves it in the
// batch that stores the restored applied index, so a crash in between
// leaves a state that says it is unfinished rather than an applied index
// that vouches for a part of the snapshot (load). Changing this key breaks
// existing data folders.
var keyRestoring = []byte{prefixMeta, 'r'}

// RestoreFrom replaces the whole state with the rest of the stream.
//
// Pebble runs without a WAL, so whatever a memtable flush writes is durable
// and the rest is not; a flush may come at any point of a long restore. The
// order below keeps every crash point recoverable: (1) the marker with the
// old state's removal, flushed; (2) the stream's keys, its applied index
// held back; (3) the applied index with the marker's removal, flushed. A
// restore that fails half-way leaves the marker, and the FSM refuses to
// apply on top of a partial state (Apply panics; the next start restores
// again from the snapshot store).
func (f *FSM) RestoreFrom(sr *SnapshotReader) error {
	f.restoring.Store(true)
	var snapIndex [8]byte
	binary.BigEndian.PutUint64(snapIndex[:], sr.Applied)
	err := f.writeFlushed(func(b *pebble.Batch) error {
		if err := b.DeleteRange([]byte{0}, []byte{0xff, 0xff}, nil); err != nil {
			return err
		}
		return b.Set(keyRestoring, snapIndex[:], nil)
	})
	if err != nil {
		return fmt.Errorf("cannot clear state before restore: %w", err)
	}
	applied, err := f.restoreKeys(sr)
	if err != nil {
		return fmt.Errorf("cannot restore snapshot: %w", err)
	}
	if applied != nil && binary.BigEndian.Uint64(applied) != sr.Applied {
		return fmt.Errorf("cannot restore snapshot: its header says index %d, its state %d: %w",
			sr.Applied, binary.BigEndian.Uint64(applied), errCorruptSnapshot)
	}
	// The restored state must be durable before Raft trusts it.
	err = f.writeFlushed(func(b *pebble.Batch) error {
		if applied != nil {
			if err := b.Set(keyApplied, applied, nil); err != nil {
				return err
			}
		}
		return b.Delete(keyRestoring, nil)
	})
	if err != nil {
		return fmt.Errorf("cannot finish restore: %w", err)
	}
	if err := f.load(); err != nil {
		return err
	}
	f.restoring.Store(false)
	f.mu.RLock()
	erasing := len(f.erasureKeys) > 0
	f.mu.RUnlock()
	if erasing {
		// The state replaced may have held a recipient erased since.
		f.notifyErasures()
	}
	return nil
}

// writeFlushed commits what fill puts in one batch, then flushes Pebble:
// without a WAL only a flush makes a write durable.
func (f *FSM) writeFlushed(fill func(b *pebble.Batch) error) error {
	b := f.db.NewBatch()
	err := fill(b)
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	b.Close()
	if err == nil {
		err = f.db.Flush()
	}
	return err
}

// restoreBatchBytes is the size of the batches a restore commits: bounded
// memory for a stream of any size. A variable so tests can make a small
// stream span many batches and memtables.
var restoreBatchBytes = 16 << 20

// restoreKeys writes the stream's keys in batches of restoreBatchBytes and
// returns the stream's applied index (nil if it has none), unwritten.
func (f *FSM) restoreKeys(sr *SnapshotReader) (applied []byte, err error) {
	br := sr.br
	b := f.db.NewBatch()
	defer func() { b.Close() }()
	for {
		kl, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if kl == 0 {
			break
		}
		k, err := readN(br, kl)
		if err != nil {
			return nil, err
		}
		vl, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		v, err := readN(br, vl)
		if err != nil {
			return nil, err
		}
		switch {
		case bytes.Equal(k, keyApplied):
			if len(v) != 8 {
				return nil, fmt.Errorf("applied index of %d bytes: %w", len(v), errCorruptSnapshot)
			}
			applied = v
			continue
		case bytes.Equal(k, keyRestoring):
			return nil, fmt.Errorf("it holds an unfinished restore: %w", errCorruptSnapshot)
		}
		if err := b.Set(k, v, nil); err != nil {
			return nil, err
		}
		if b.Len() > restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return nil, err
			}
			b.Close()
			b = f.db.NewBatch()
		}
	}
	return applied, b.Commit(pebble.NoSync)
}

func readN(r io.Reader, n uint64) ([]byte, error) {
	if n > maxSnapshotValue {
		return nil, errors.New("value too large")
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}
