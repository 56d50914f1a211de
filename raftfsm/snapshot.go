package raftfsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

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
// flush is here rather than in Snapshot: under load a memtable takes
// ~0.1 s to flush, and in Snapshot that stalled every apply for as long.
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

// RestoreFrom replaces the whole state with the rest of the stream.
func (f *FSM) RestoreFrom(sr *SnapshotReader) error {
	br := sr.br
	if err := f.db.DeleteRange([]byte{0}, []byte{0xff, 0xff}, pebble.NoSync); err != nil {
		return fmt.Errorf("cannot clear state before restore: %w", err)
	}
	b := f.db.NewBatch()
	for {
		kl, err := binary.ReadUvarint(br)
		if err != nil {
			b.Close()
			return fmt.Errorf("cannot restore snapshot: %w", err)
		}
		if kl == 0 {
			break
		}
		k, err := readN(br, kl)
		if err == nil {
			var vl uint64
			if vl, err = binary.ReadUvarint(br); err == nil {
				var v []byte
				if v, err = readN(br, vl); err == nil {
					err = b.Set(k, v, nil)
				}
			}
		}
		if err == nil && b.Len() > 16<<20 {
			err = b.Commit(pebble.NoSync)
			b.Close()
			b = f.db.NewBatch()
		}
		if err != nil {
			b.Close()
			return fmt.Errorf("cannot restore snapshot: %w", err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		b.Close()
		return fmt.Errorf("cannot restore snapshot: %w", err)
	}
	b.Close()
	// The restored state must be durable before Raft trusts it.
	if err := f.db.Flush(); err != nil {
		return fmt.Errorf("cannot flush restored state: %w", err)
	}
	return f.load()
}

func readN(r io.Reader, n uint64) ([]byte, error) {
	if n > maxSnapshotValue {
		return nil, errors.New("value too large")
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}
