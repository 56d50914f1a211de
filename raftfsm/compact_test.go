package raftfsm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// filesHolding names the files under dir whose bytes contain b.
func filesHolding(t *testing.T, dir string, b []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // Pebble deleted it while we walked
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Contains(data, b) {
			found = append(found, filepath.Base(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestCompactAllLeavesNoOverwrittenValue: a value overwritten in Pebble
// stays in its old table until a compaction merges it away; CompactAll
// must leave it in no file of the folder.
func TestCompactAllLeavesNoOverwrittenValue(t *testing.T) {
	// Pebble's own compactions would merge the few tables of this test
	// after a while; only CompactAll may do it here.
	tf := openTestFSMWith(t, t.TempDir(), &pebble.Options{DisableWAL: true, Logger: quietLogger{},
		L0CompactionThreshold: 1000, L0CompactionFileThreshold: 1000, L0StopWritesThreshold: 2000})
	secret := []byte("4f1c2a9be07d4e3fa51c8d2b6e9f0a17") // what an erasure replaces
	key := []byte{prefixMeta, 'z', 't', 'e', 's', 't'}
	if err := tf.db.Set(key, secret, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	// Push the old value into a table, then more tables above it, as a
	// long-running node would have.
	for i := 0; i < 3; i++ {
		if err := tf.db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := tf.db.Set(append(key, byte(i)), bytes.Repeat([]byte{'x'}, 1000), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := tf.db.Set(key, []byte("erased:0123456789abcdef0123456789abcdef"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := tf.db.Flush(); err != nil {
		t.Fatal(err)
	}
	// The search can fail: after a flush alone the old value is on disk.
	if got := filesHolding(t, tf.dir, secret); len(got) == 0 {
		t.Fatal("the overwritten value is in no file before CompactAll: the search proves nothing")
	}
	if err := tf.f.CompactAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Pebble deletes the replaced tables in the background.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := filesHolding(t, tf.dir, secret)
		if len(got) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after CompactAll the overwritten value is still in %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	v, closer, err := tf.db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if bytes.Contains(v, secret) {
		t.Fatal("the new value was lost")
	}
}
