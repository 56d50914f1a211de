package main

// The data folder from the outside: who may hold it, who may read it, and
// what a start makes of what a crash or an operator left in it.

import (
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coupond/coupond/cmd/internal/proctest"
)

// compactingFlags make a node snapshot and compact its log after a few small
// writes: a snapshot every 5 entries or 1 KiB of commands, one entry kept.
var compactingFlags = []string{"--raft-snapshot-entries", "5", "--raft-snapshot-bytes", "1KiB", "--raft-trailing-entries", "1"}

// waitSelfExit waits for a process started with Spawn to end by itself and
// answers its exit code.
func (p *proc) waitSelfExit(limit time.Duration) int {
	p.T.Helper()
	select {
	case <-p.Done:
	case <-time.After(limit):
		p.T.Fatalf("coupond still runs after %s:\n%s", limit, proctest.Tail(p.Logs.String(), 4000))
	}
	code := p.Cmd.ProcessState.ExitCode()
	p.Cmd = nil
	return code
}

// importNamedList creates a list called name with n codes.
func (p *proc) importNamedList(name string, n int) {
	p.T.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s-%06d\n", name, i)
	}
	st, body := p.do("POST", "/v1/lists?name="+name, p.Token("admin.token"), "text/csv", strings.NewReader(b.String()))
	if st != http.StatusCreated && st != http.StatusOK {
		p.T.Fatalf("import %s: %d %s", name, st, body)
	}
}

// snapshotFolders answers the finished and the unfinished snapshots where
// Raft writes them (DATA/snapshots/snapshots).
func snapshotFolders(t *testing.T, data string) (done, tmp []string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(data, "snapshots", "snapshots"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			tmp = append(tmp, e.Name())
		} else {
			done = append(done, e.Name())
		}
	}
	return done, tmp
}

// waitNewSnapshot polls until a finished snapshot other than those in
// old exists, and answers its name.
func waitNewSnapshot(t *testing.T, data string, old []string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		done, _ := snapshotFolders(t, data)
		for _, d := range done {
			if !slices.Contains(old, d) {
				if _, err := os.Stat(filepath.Join(data, "snapshots", "snapshots", d, "meta.json")); err == nil {
					return d
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no new snapshot in %s after 30s", data)
	return ""
}

// TestSecondProcessOnSameDataFolder: a second coupond on a
// data folder in use exits non-zero and says that another coupond holds
// that folder, instead of an errno text; the first node keeps serving.
func TestSecondProcessOnSameDataFolder(t *testing.T) {
	first := newProc(t)
	first.Start()
	second := newProc(t)
	second.Data = first.Data
	if err := second.Spawn(); err != nil {
		t.Fatal(err)
	}
	if code := second.waitSelfExit(60 * time.Second); code == 0 {
		t.Fatalf("the second coupond exited 0:\n%s", second.Logs)
	}
	logs := second.Logs.String()
	if !strings.Contains(logs, "another coupond process") || !strings.Contains(logs, first.Data) {
		t.Fatalf("the second coupond does not say that another coupond holds %s:\n%s", first.Data, logs)
	}
	if strings.Contains(logs, "resource temporarily unavailable") {
		t.Fatalf("the refusal is an errno text:\n%s", logs)
	}
	if st, body := first.do("GET", "/v1/lists", first.Token("admin.token"), "", nil); st != http.StatusOK {
		t.Fatalf("the first node after the refused start: %d %s", st, body)
	}
}

// TestTempSnapshotsRemovedAtStart: the folders of snapshots
// that a crash cut off are removed at start, where Raft writes them
// (DATA/snapshots/snapshots/*.tmp) and at the old place; finished
// snapshots stay.
func TestTempSnapshotsRemovedAtStart(t *testing.T) {
	p := newProc(t, compactingFlags...)
	p.Start()
	p.importNamedList("tmpsnap", 200)
	snap := waitNewSnapshot(t, p.Data, nil)
	p.Kill9()
	// What Raft leaves when it is killed while it writes a snapshot: a
	// folder named like a snapshot with ".tmp", holding a partial state.
	cut := []string{
		filepath.Join(p.Data, "snapshots", "snapshots", "3-999999-1796669169636.tmp"),
		filepath.Join(p.Data, "snapshots", "2-999998-1796669169635.tmp"),
	}
	for _, dir := range cut {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(`{"Version":1,"ID":"x","Index":999999}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "state.bin"), make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.Start()
	for _, dir := range cut {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("%s is still there after a start (stat: %v)", dir, err)
		}
	}
	done, tmp := snapshotFolders(t, p.Data)
	if len(tmp) != 0 || !slices.Contains(done, snap) {
		t.Fatalf("snapshots after the start: finished %v (want %s among them), unfinished %v", done, snap, tmp)
	}
	if st, body := p.do("GET", "/v1/lists", p.Token("admin.token"), "", nil); st != http.StatusOK || !strings.Contains(string(body), "tmpsnap") {
		t.Fatalf("the list after the restart: %d %s", st, body)
	}
}

// TestDataFolderModes: the data folder holds recipients,
// codes, token hashes and the cluster key. Whatever the umask and whatever
// mode a pre-made folder had, the node leaves nothing in it readable by
// others: the folder is 0700, every folder below 0700 and every file 0600;
// files an older version left readable are tightened at the next start,
// and the node says that it tightened them.
func TestDataFolderModes(t *testing.T) {
	old := syscall.Umask(0o022) // inherited by the child: the usual umask
	defer syscall.Umask(old)
	p := newProc(t, compactingFlags...)
	if err := os.Mkdir(p.Data, 0o755); err != nil {
		t.Fatal(err)
	}
	p.Start()
	p.importNamedList("modes", 200)
	waitNewSnapshot(t, p.Data, nil)
	p.Stop()
	checkModes := func(when string) {
		t.Helper()
		err := filepath.WalkDir(p.Data, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: %s has mode %v, want %v", when, path, fi.Mode().Perm(), want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"raft.db", "operator.token", "admin.token", "state", "snapshots"} {
			if _, err := os.Stat(filepath.Join(p.Data, name)); err != nil {
				t.Fatalf("%s: %v", when, err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	checkModes("after the first start")
	if !strings.Contains(p.Logs.String(), "tightened") {
		t.Fatalf("no log line says that the data folder was tightened:\n%s", proctest.Tail(p.Logs.String(), 4000))
	}

	// A folder an older version left readable: loosen what it would have.
	err := filepath.WalkDir(p.Data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	before := p.Logs.String()
	p.Start()
	p.Stop()
	checkModes("after a start on a readable folder")
	if !strings.Contains(strings.TrimPrefix(p.Logs.String(), before), "tightened to owner only") {
		t.Fatalf("no log line says that files were tightened:\n%s", proctest.Tail(p.Logs.String(), 4000))
	}
}

// TestDeletedSnapshotsFolder: a snapshots folder deleted by
// hand must not end in a Go panic. While the node runs, it notices and
// takes a snapshot at once (no write needs to come first), so a crash
// after that restarts as usual. While it is stopped, with the log
// compacted past what any snapshot left covers, the node cannot rebuild
// Raft's state: it refuses to start with a message that says what is
// missing, and harms nothing: with the snapshots put back it starts.
func TestDeletedSnapshotsFolder(t *testing.T) {
	p := newProc(t, compactingFlags...)
	p.Start()
	p.importNamedList("before", 200)
	first := waitNewSnapshot(t, p.Data, nil)

	// While running.
	if err := os.RemoveAll(filepath.Join(p.Data, "snapshots")); err != nil {
		t.Fatal(err)
	}
	waitNewSnapshot(t, p.Data, []string{first})
	p.importNamedList("while", 200)
	select {
	case <-p.Done:
		t.Fatalf("coupond exited after its snapshots folder was deleted:\n%s", proctest.Tail(p.Logs.String(), 4000))
	default:
	}
	p.Kill9()
	p.Start()
	for _, name := range []string{"before", "while"} {
		if st, body := p.do("GET", "/v1/lists", p.Token("admin.token"), "", nil); st != http.StatusOK || !strings.Contains(string(body), name) {
			t.Fatalf("list %s after the restart: %d %s", name, st, body)
		}
	}
	p.Stop()

	// While stopped. Moved away rather than deleted, to put back below.
	saved := filepath.Join(p.Dir, "snapshots.saved")
	if err := os.Rename(filepath.Join(p.Data, "snapshots"), saved); err != nil {
		t.Fatal(err)
	}
	before := p.Logs.String()
	if err := p.Spawn(); err != nil {
		t.Fatal(err)
	}
	code := p.waitSelfExit(60 * time.Second)
	logs := strings.TrimPrefix(p.Logs.String(), before)
	if code == 0 || strings.Contains(logs, "panic") || strings.Contains(logs, "goroutine ") {
		t.Fatalf("want a refusal with a message, got exit %d:\n%s", code, proctest.Tail(logs, 4000))
	}
	if !strings.Contains(logs, "no snapshot") || !strings.Contains(logs, filepath.Join(p.Data, "snapshots")) {
		t.Fatalf("the refusal does not say that the snapshots are missing:\n%s", proctest.Tail(logs, 4000))
	}
	// The refusal harmed nothing: with the snapshots back, the node starts
	// with every list.
	if err := os.RemoveAll(filepath.Join(p.Data, "snapshots")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, filepath.Join(p.Data, "snapshots")); err != nil {
		t.Fatal(err)
	}
	p.Start()
	for _, name := range []string{"before", "while"} {
		if st, body := p.do("GET", "/v1/lists", p.Token("admin.token"), "", nil); st != http.StatusOK || !strings.Contains(string(body), name) {
			t.Fatalf("list %s after the snapshots were put back: %d %s", name, st, body)
		}
	}
}
