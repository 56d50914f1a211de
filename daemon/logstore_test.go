package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openTestBolt(t testing.TB, noSync bool) (*raftboltdb.BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	b, err := raftboltdb.New(raftboltdb.Options{Path: path, NoSync: noSync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

func testEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 3, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d: CODE-%04d for ann@example.com", i, i))}
}

// TestCheckedLogStore: entries read back as they were given (what Raft
// applies and sends to followers), with a checksum kept beside them in
// raft.db; a damaged entry, or one that lost its checksum, is an error
// naming raft.db; entries from before the checksums still read.
func TestCheckedLogStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage rewrites entry 2 in raft.db behind the checked store's back.
		damage func(l *raft.Log)
		want   string // "" when entry 2 must read back unchanged
	}{
		{"intact", func(*raft.Log) {}, ""},
		{"a data byte flipped", func(l *raft.Log) { l.Data[10] ^= 1 }, "fails its checksum"},
		{"the term changed", func(l *raft.Log) { l.Term++ }, "fails its checksum"},
		{"the type changed", func(l *raft.Log) { l.Type = raft.LogNoop }, "fails its checksum"},
		{"the checksum flipped", func(l *raft.Log) { l.Extensions[0] ^= 1 }, "fails its checksum"},
		{"the checksum lost", func(l *raft.Log) { l.Extensions = nil }, "has no checksum"},
		{"the magic damaged", func(l *raft.Log) { l.Extensions[len(l.Extensions)-1] ^= 1 }, "has no checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bolt, path := openTestBolt(t, true)
			s, err := newCheckedLogStore(bolt, path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.markChecksums(); err != nil {
				t.Fatal(err)
			}
			given := []*raft.Log{testEntry(1), testEntry(2), testEntry(3)}
			given[2].Extensions = []byte("middleware")
			if err := s.StoreLogs(given); err != nil {
				t.Fatal(err)
			}
			if given[1].Extensions != nil || given[2].Extensions == nil || string(given[2].Extensions) != "middleware" {
				t.Fatal("StoreLogs changed the entries it was given")
			}
			var raw raft.Log
			if err := bolt.GetLog(2, &raw); err != nil {
				t.Fatal(err)
			}
			if len(raw.Extensions) != logTrailerLen {
				t.Fatalf("raft.db holds extensions %x, want a %d-byte checksum trailer", raw.Extensions, logTrailerLen)
			}
			tc.damage(&raw)
			if err := bolt.StoreLog(&raw); err != nil {
				t.Fatal(err)
			}
			for i, want := range given {
				var got raft.Log
				err := s.GetLog(uint64(i+1), &got)
				if i == 1 && tc.want != "" {
					if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
						t.Fatalf("entry 2: error %v, want one naming %s that says %q", err, path, tc.want)
					}
					continue
				}
				if err != nil {
					t.Fatalf("entry %d: %v", i+1, err)
				}
				if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
					!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || (want.Extensions == nil) != (got.Extensions == nil) {
					t.Fatalf("entry %d read back as %+v, want %+v", i+1, got, *want)
				}
			}
			var none raft.Log
			if err := s.GetLog(9, &none); err != raft.ErrLogNotFound {
				t.Fatalf("a missing entry: %v, want raft.ErrLogNotFound itself (Raft compares it)", err)
			}
		})
	}
}

// TestCheckedLogStoreLegacy: a raft.db written before the checksums reads
// as it is; once marked, the entries written after the mark must carry a
// checksum, the old ones need not.
func TestCheckedLogStoreLegacy(t *testing.T) {
	bolt, path := openTestBolt(t, true)
	if err := bolt.StoreLogs([]*raft.Log{testEntry(1), testEntry(2)}); err != nil {
		t.Fatal(err)
	}
	s, err := newCheckedLogStore(bolt, path)
	if err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := s.GetLog(2, &l); err != nil {
		t.Fatalf("an entry from before the checksums: %v", err)
	}
	if err := s.markChecksums(); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(testEntry(3)); err != nil {
		t.Fatal(err)
	}
	// Reopened, as at the next start.
	s, err = newCheckedLogStore(bolt, path)
	if err != nil {
		t.Fatal(err)
	}
	if s.from != 3 {
		t.Fatalf("checksums from entry %d, want 3", s.from)
	}
	for i := uint64(1); i <= 3; i++ {
		if err := s.GetLog(i, &l); err != nil || string(l.Data) != string(testEntry(i).Data) {
			t.Fatalf("entry %d: %v %q", i, err, l.Data)
		}
	}
	// An entry past the mark that lost its checksum.
	if err := bolt.StoreLog(testEntry(4)); err != nil {
		t.Fatal(err)
	}
	if err := s.GetLog(4, &l); !errors.Is(err, errCorrupt) {
		t.Fatalf("entry 4 without a checksum after the mark: %v, want a corruption error", err)
	}
}

// BenchmarkStoreLogs compares a batch of small entries (group-committed
// allocations are a few hundred bytes) stored raw and with checksums;
// NoSync keeps the fsync, which dominates either, out of the comparison.
func BenchmarkStoreLogs(b *testing.B) {
	for _, checked := range []bool{false, true} {
		b.Run(fmt.Sprintf("checked=%v", checked), func(b *testing.B) {
			bolt, path := openTestBolt(b, true)
			var store raft.LogStore = bolt
			if checked {
				s, err := newCheckedLogStore(bolt, path)
				if err != nil {
					b.Fatal(err)
				}
				store = s
			}
			batch := make([]*raft.Log, 16)
			data := bytes.Repeat([]byte("x"), 300)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for j := range batch {
					batch[j] = &raft.Log{Index: uint64(i*len(batch) + j + 1), Term: 1, Type: raft.LogCommand, Data: data}
				}
				if err := store.StoreLogs(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
