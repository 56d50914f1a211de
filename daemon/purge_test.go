package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// secretEntry is a log entry holding a distinctive recipient, as an
// assignment entry would.
func secretEntry(i uint64) *raft.Log {
	return &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte(secretOf(i))}
}

func secretOf(i uint64) string { return fmt.Sprintf("recipient-%08d-9c41e2d07b3a", i) }

func openTestRaftDB(t *testing.T, path string) *checkedLogStore {
	t.Helper()
	if err := removeRaftDBCopy(path); err != nil {
		t.Fatal(err)
	}
	b, err := openRaftLog(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newCheckedLogStore(b, path)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	return s
}

// TestRaftDBRewriteDropsFreedBytes: entries deleted from raft.db keep
// their bytes in bolt's free pages; the rewrite leaves them in no byte of
// the file and keeps every live entry and stable-store key.
func TestRaftDBRewriteDropsFreedBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openTestRaftDB(t, path)
	defer s.bolt.Close()
	if err := s.markChecksums(); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 200; i++ {
		if err := s.StoreLogs([]*raft.Log{secretEntry(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.bolt.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 190); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// What the rewrite is for: bolt did not clear what it freed.
	if !bytes.Contains(data, []byte(secretOf(5))) {
		t.Fatal("a deleted entry's bytes are not in raft.db before the rewrite: the test proves nothing")
	}
	before, after, err := s.bolt.rewrite()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("raft.db: %d bytes before, %d after", before, after)
	if data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 190; i++ {
		if bytes.Contains(data, []byte(secretOf(i))) {
			t.Fatalf("deleted entry %d is still in raft.db after the rewrite", i)
		}
	}
	if _, err := os.Stat(path + raftDBCopySuffix); !os.IsNotExist(err) {
		t.Fatalf("the copy is left behind: %v", err)
	}
	for i := uint64(191); i <= 200; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after the rewrite: %v", i, err)
		}
		if string(l.Data) != secretOf(i) {
			t.Fatalf("entry %d reads %q", i, l.Data)
		}
	}
	if first, _ := s.FirstIndex(); first != 191 {
		t.Fatalf("first index %d after the rewrite, want 191", first)
	}
	if v, err := s.bolt.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("stable store after the rewrite: %d, %v", v, err)
	}
	if v, err := s.bolt.GetUint64(keyChecksumsFrom); err != nil || v != 1 {
		t.Fatalf("checksums-from after the rewrite: %d, %v", v, err)
	}
	// Writes go to the new file.
	if err := s.StoreLogs([]*raft.Log{secretEntry(201)}); err != nil {
		t.Fatal(err)
	}
	if last, _ := s.LastIndex(); last != 201 {
		t.Fatalf("last index %d", last)
	}
}

const rewriteChildEnv = "COUPOND_TEST_REWRITE_CHILD"

// TestRaftDBRewriteSurvivesKill kills (SIGKILL) a process that stores,
// truncates and rewrites raft.db in a loop, at random moments, then opens
// the file as a start would: it must open, hold every entry the child
// reported stored, and, once the child reported a rewrite, none of the
// entries deleted before it.
func TestRaftDBRewriteSurvivesKill(t *testing.T) {
	if path := os.Getenv(rewriteChildEnv); path != "" {
		rewriteChild(path)
		return
	}
	if testing.Short() {
		t.Skip("kills a child process repeatedly")
	}
	path := filepath.Join(t.TempDir(), "raft.db")
	copiesLeft := 0
	const rounds = 20
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRaftDBRewriteSurvivesKill$", "-test.timeout=120s")
		cmd.Env = append(os.Environ(), rewriteChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		storedOnce := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			first := true
			for sc.Scan() {
				if first && strings.HasPrefix(sc.Text(), "stored ") {
					first = false
					close(storedOnce)
				}
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Once it stored something (a loaded machine may take long to start
		// the child), let it run a few loops, then kill it anywhere in one.
		select {
		case <-storedOnce:
		case <-time.After(60 * time.Second):
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		cmd.Process.Kill()
		var stored, rewritten uint64
		for line := range lines {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			n, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "stored":
				stored = n
			case "rewritten":
				rewritten = n
			}
		}
		cmd.Wait()
		if _, err := os.Stat(path + raftDBCopySuffix); err == nil {
			copiesLeft++
		}
		if stored == 0 {
			t.Fatalf("round %d: the child stored nothing before it was killed", round)
		}
		// As a start does: drop the copy, open with every check.
		s := openTestRaftDB(t, path)
		var l raft.Log
		if err := s.GetLog(stored, &l); err != nil || string(l.Data) != secretOf(stored) {
			t.Fatalf("round %d: entry %d reported stored reads %q, %v", round, stored, l.Data, err)
		}
		s.bolt.Close()
		if rewritten > 0 {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Entries below rewritten were deleted before that rewrite.
			for i := rewritten - 1; i > 0 && i+50 > rewritten; i-- {
				if bytes.Contains(data, []byte(secretOf(i))) {
					t.Fatalf("round %d: entry %d, deleted before rewrite %d, is in raft.db", round, i, rewritten)
				}
			}
		}
	}
	t.Logf("%d of %d kills left an unfinished copy", copiesLeft, rounds)
	if copiesLeft == 0 {
		t.Fatal("no kill landed during a rewrite: the test did not test it")
	}
}

// rewriteChild stores an entry, reports it, deletes the ones before it,
// rewrites raft.db and reports that, until it is killed.
func rewriteChild(path string) {
	b, err := openRaftLog(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s, err := newCheckedLogStore(b, path)
	if err == nil {
		err = s.markChecksums()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	next, _ := s.LastIndex()
	for {
		next++
		if err := s.StoreLogs([]*raft.Log{secretEntry(next)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("stored %d\n", next)
		if next > 1 {
			first, _ := s.FirstIndex()
			if err := s.DeleteRange(first, next-1); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
		if _, _, err := s.bolt.rewrite(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("rewritten %d\n", next)
	}
}

// BenchmarkFreedBytesLinger measures what the rewrite is for: how many
// further entries a node must write, under a steady load compacted as Raft
// does, before bolt has overwritten the free pages that still hold deleted
// entries. It reports entries-until-gone (the file is checked every 64
// entries; -1 when 100,000 entries did not do it). Each entry is 2 KiB,
// as a group-committed batch of allocations is; the log keeps 2,048
// entries after each compaction, every 16,384, as a node does by default.
func BenchmarkFreedBytesLinger(b *testing.B) {
	const trailing, every, limit = 2048, 16384, 100000
	pad := bytes.Repeat([]byte{'.'}, 2048)
	for i := 0; i < b.N; i++ {
		path := filepath.Join(b.TempDir(), "raft.db")
		bolt, err := openRaftLog(path)
		if err != nil {
			b.Fatal(err)
		}
		s, err := newCheckedLogStore(bolt, path)
		if err != nil {
			b.Fatal(err)
		}
		idx := uint64(0)
		store := func(data []byte) {
			idx++
			if err := s.StoreLogs([]*raft.Log{{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}}); err != nil {
				b.Fatal(err)
			}
		}
		// The secret in one entry among a log's worth of others.
		for j := 0; j < every; j++ {
			if j == every/2 {
				store(append([]byte(secretOf(1)), pad...))
				continue
			}
			store(pad)
		}
		// The truncation a purge would make, but no rewrite.
		if err := s.DeleteRange(1, idx); err != nil {
			b.Fatal(err)
		}
		gone := -1
		for n := 1; n <= limit; n++ {
			store(pad)
			if n%every == 0 {
				if err := s.DeleteRange(idx-every+1, idx-trailing); err != nil {
					b.Fatal(err)
				}
			}
			if n%64 == 0 {
				data, err := os.ReadFile(path)
				if err != nil {
					b.Fatal(err)
				}
				if !bytes.Contains(data, []byte(secretOf(1))) {
					gone = n
					break
				}
			}
		}
		s.bolt.Close()
		b.ReportMetric(float64(gone), "entries-until-gone")
	}
}

func TestHoldsErasure(t *testing.T) {
	erase := raftfsm.Encode(&raftfsm.EraseRecipient{Tenant: "t", Recipient: []byte("ann@example.com")})
	other := raftfsm.Encode(&raftfsm.CreateTenant{ID: "t", Name: "T"})
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"an erase", erase, true},
		{"another command", other, false},
		{"a batch with an erase", raftfsm.Encode(&raftfsm.Batch{Commands: [][]byte{other, erase}}), true},
		{"a batch without", raftfsm.Encode(&raftfsm.Batch{Commands: [][]byte{other, other}}), false},
		{"empty", nil, false},
	} {
		if got := holdsErasure(tc.data); got != tc.want {
			t.Errorf("%s: holdsErasure = %v, want %v", tc.name, got, tc.want)
		}
	}
}
