package main

// Damaged data folders: a node whose raft.db, snapshots
// or state/ were damaged, lost or copied from another node either refuses
// to start, non-zero and naming the file, or starts with the ledger it had.
// It never serves another one.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/coupond/coupond/cmd/internal/proctest"
)

// corruptFixture is a node's data folder after kill -9: a snapshot (the
// log compacted below it, state/ flushed at it), then a list, a message
// and a send written after it, which only the log holds.
type corruptFixture struct {
	id        string
	data      string
	digest    string // GET /v1/cluster/digest before the kill
	code      string // a code imported after the snapshot
	recipient string // who got it
}

// makeCorruptFixture runs node id until its first snapshot, writes past
// it and kills it; prefix keeps its codes apart from another fixture's.
func makeCorruptFixture(t *testing.T, id, prefix string) corruptFixture {
	t.Helper()
	// A 16 KiB byte trigger snapshots after the first import (26 KB of
	// codes), not after the small writes that follow; one trailing entry
	// lets Raft compact the log below the snapshot.
	p := newProc(t, "--id", id, "--raft-snapshot-bytes", "16KiB", "--raft-trailing-entries", "1")
	p.Start()
	admin := p.Token("admin.token")
	p.createList(admin, "before", codesCSV(prefix+"A", 0, 2000))
	snaps := filepath.Join(p.Data, "snapshots", "snapshots")
	deadline := time.Now().Add(30 * time.Second)
	for len(snapshotIDs(t, snaps)) == 0 || !strings.Contains(p.Logs.String(), "compacting logs") {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot 30s after an import past --raft-snapshot-bytes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f := corruptFixture{id: id, data: p.Data, code: code(prefix+"B", 3), recipient: "flip-" + strings.ToLower(prefix) + "@example.com"}
	list := p.createList(admin, "after", codesCSV(prefix+"B", 3, 1))
	p.messageOnList(admin, "welcome", "Welcome", list)
	p.must(200, nil, "POST", "/v1/sends/send-1/codes", admin, "application/json",
		[]byte(`{"message_id":"welcome","recipients":["`+f.recipient+`"]}`))
	if got := p.codeState(admin, list, f.code); got != "assigned" {
		t.Fatalf("code %s is %q after the send, want assigned", f.code, got)
	}
	f.digest = p.digest("")
	if n := len(snapshotIDs(t, snaps)); n != 1 {
		t.Fatalf("%d snapshots, want 1: the writes after the first must stay in the log alone", n)
	}
	p.Kill9()
	// The rows mean something only if a restart must replay the log.
	if stateDigest(t, f.data) == f.digest {
		t.Fatal("state/ holds the writes after the snapshot: nothing is replayed from raft.db")
	}
	return f
}

// digest is GET /v1/cluster/digest with the operator token (of this node
// when token is "").
func (p *proc) digest(token string) string {
	p.T.Helper()
	if token == "" {
		token = p.Token("operator.token")
	}
	var d struct {
		Digest string `json:"digest"`
	}
	p.must(200, &d, "GET", "/v1/cluster/digest", token, "", nil)
	return d.Digest
}

// snapshotIDs lists the finished snapshots in Raft's snapshot folder.
func snapshotIDs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "meta.json")); err == nil && !strings.HasSuffix(e.Name(), ".tmp") {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		copyFile(t, path, filepath.Join(to, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// replaceAll changes every copy of old in the file to new (same length):
// live pages and free pages alike, so the live entry is surely hit.
func replaceAll(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte(old)) == 0 {
		t.Fatalf("%s holds no %q", path, old)
	}
	if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(old), []byte(new)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipByte inverts the byte at the given fraction of the file's size.
func flipByte(t *testing.T, path string, at float64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[int(float64(len(b))*at)] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipAt inverts the byte at offset off of the file.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// truncateTo cuts the file to the given fraction of its size, on a page.
func truncateTo(t *testing.T, path string, at float64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(float64(fi.Size())*at)&^4095); err != nil {
		t.Fatal(err)
	}
}

func removeAll(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
}

// largestFile is the biggest file in dir whose name ends with suffix and
// starts with prefix.
func largestFile(t *testing.T, dir, suffix, prefix string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	best, size := "", int64(-1)
	for _, e := range entries {
		fi, err := e.Info()
		if err == nil && strings.HasSuffix(e.Name(), suffix) && strings.HasPrefix(e.Name(), prefix) && fi.Size() > size {
			best, size = filepath.Join(dir, e.Name()), fi.Size()
		}
	}
	if best == "" {
		t.Fatalf("no %s*%s in %s", prefix, suffix, dir)
	}
	return best
}

// startOrRefuse launches the node and waits until it either answers
// /readyz (it returns "") or exits (it returns the error it logged, and
// fails the test on a zero exit status).
func (p *proc) startOrRefuse() string {
	p.T.Helper()
	p.Launch()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.Done:
			if code := p.Cmd.ProcessState.ExitCode(); code == 0 {
				p.T.Fatalf("coupond exited with status 0 on a damaged data folder:\n%s", proctest.Tail(p.Logs.String(), 4000))
			}
			p.Cmd = nil
			return failureOf(p.Logs.String())
		default:
		}
		if resp, err := http.Get(p.URL("/readyz")); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return ""
			}
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("coupond neither ready nor stopped after 60s:\n%s", proctest.Tail(p.Logs.String(), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failureOf is the error of the "coupond failed" log line, else the
// message of a fatal line (Pebble's own on a corrupt table), else the
// output from a panic on.
func failureOf(logs string) string {
	fatal := ""
	for _, line := range strings.Split(logs, "\n") {
		var ev struct {
			Level   string `json:"level"`
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		if ev.Message == "coupond failed" {
			return ev.Error
		}
		if ev.Level == "fatal" && fatal == "" {
			fatal = ev.Message
		}
	}
	if fatal != "" {
		return fatal
	}
	if i := strings.Index(logs, "panic:"); i >= 0 {
		return proctest.Tail(logs[i:], 2000)
	}
	return "no error logged; the output ends with: " + proctest.Tail(logs, 2000)
}

// makeLegacy turns the folder into one written before checksums and
// stamps: raft.db rewritten with the entries as Raft gave them and Raft's
// own keys only, no stamp in state/ or the snapshots.
func makeLegacy(t *testing.T, data string) {
	t.Helper()
	path := filepath.Join(data, "raft.db")
	old, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := raftboltdb.New(raftboltdb.Options{Path: path + ".legacy"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm", "LastVoteCand"} {
		if v, err := old.Get([]byte(k)); err == nil {
			if err := fresh.Set([]byte(k), v); err != nil {
				t.Fatal(err)
			}
		}
	}
	first, _ := old.FirstIndex()
	last, _ := old.LastIndex()
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := old.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if len(l.Extensions) != 8 {
			t.Fatalf("entry %d has extensions %x, want a checksum trailer", i, l.Extensions)
		}
		l.Extensions = nil
		if err := fresh.StoreLog(&l); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	fresh.Close()
	if err := os.Rename(path+".legacy", path); err != nil {
		t.Fatal(err)
	}
	stamps, _ := filepath.Glob(filepath.Join(data, "snapshots", "snapshots", "*", "coupond.stamp"))
	removeAll(t, append(stamps, filepath.Join(data, "state", "coupond.stamp"))...)
}

// TestDamagedDataFolder: each row damages a copy of a node's data folder
// (kill -9ed with writes in the log past its snapshot and its state) and
// starts a real process on it. A row with refuse set must exit non-zero
// with an error naming that file; the others must start and show the
// digest the node had before the kill.
func TestDamagedDataFolder(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	f := makeCorruptFixture(t, "node1", "FLIP")
	// The same node id in another single-node cluster: its files must not
	// pass for node1's.
	other := makeCorruptFixture(t, "node1", "OTHR")
	// Another node's folder.
	node2 := makeCorruptFixture(t, "node2", "NODE")

	snapDir := func(data string) string {
		ids := snapshotIDs(t, filepath.Join(data, "snapshots", "snapshots"))
		return filepath.Join(data, "snapshots", "snapshots", ids[len(ids)-1])
	}
	// A renamed code or recipient keeps its length, as a flipped bit would.
	renamed := func(s string) string { return s[:len(s)-1] + string(s[len(s)-1]^1) }
	swap := func(from corruptFixture, rel string) func(t *testing.T, data string) {
		return func(t *testing.T, data string) {
			removeAll(t, filepath.Join(data, rel))
			copyTree(t, filepath.Join(from.data, rel), filepath.Join(data, rel))
		}
	}
	type row struct {
		name   string
		damage func(t *testing.T, data string)
		// refuse is the file (in the data folder; SNAP: the newest
		// snapshot) the error must name; "" when the node must start
		// with its ledger; with a trailing "?" either will do.
		refuse string
	}
	var rows []row
	for _, tc := range []row{
		{"untouched", func(*testing.T, string) {}, ""},
		{"written before checksums and stamps", makeLegacy, ""},
		{"raft.db: a code renamed", func(t *testing.T, data string) {
			replaceAll(t, filepath.Join(data, "raft.db"), f.code, renamed(f.code))
		}, "raft.db"},
		{"raft.db: a recipient renamed", func(t *testing.T, data string) {
			replaceAll(t, filepath.Join(data, "raft.db"), f.recipient, renamed(f.recipient))
		}, "raft.db"},
		{"raft.db: a header damaged", func(t *testing.T, data string) {
			flipAt(t, filepath.Join(data, "raft.db"), 16) // meta page 0's magic
		}, "raft.db"},
		{"raft.db: truncated", func(t *testing.T, data string) {
			truncateTo(t, filepath.Join(data, "raft.db"), 0.5)
		}, "raft.db"},
		{"raft.db: emptied", func(t *testing.T, data string) {
			truncateTo(t, filepath.Join(data, "raft.db"), 0)
		}, "raft.db"},
		{"raft.db: deleted", func(t *testing.T, data string) {
			removeAll(t, filepath.Join(data, "raft.db"))
		}, "raft.db"},
		{"raft.db and snapshots: deleted", func(t *testing.T, data string) {
			removeAll(t, filepath.Join(data, "raft.db"), snapDir(data))
		}, "raft.db"},
		{"raft.db: from the same node id of another cluster", swap(other, "raft.db"), "raft.db"},
		{"raft.db: from another node", swap(node2, "raft.db"), "raft.db"},
		{"snapshots: deleted", func(t *testing.T, data string) {
			removeAll(t, snapDir(data))
		}, "snapshots"},
		{"snapshots: state.bin flipped", func(t *testing.T, data string) {
			flipByte(t, filepath.Join(snapDir(data), "state.bin"), 0.5)
		}, "SNAP/state.bin"},
		{"snapshots: state.bin truncated", func(t *testing.T, data string) {
			truncateTo(t, filepath.Join(snapDir(data), "state.bin"), 0.5)
		}, "SNAP/state.bin"},
		{"snapshots: meta.json damaged", func(t *testing.T, data string) {
			flipByte(t, filepath.Join(snapDir(data), "meta.json"), 0)
		}, "SNAP/meta.json"},
		{"snapshots: from the same node id of another cluster", func(t *testing.T, data string) {
			removeAll(t, snapDir(data))
			copyTree(t, snapDir(other.data), filepath.Join(data, "snapshots", "snapshots", filepath.Base(snapDir(other.data))))
		}, "SNAP"},
		{"state: deleted (rebuilt from the snapshot and the log)", func(t *testing.T, data string) {
			removeAll(t, filepath.Join(data, "state"))
		}, ""},
		{"state: its stamp lost (a crash between the two stamps)", func(t *testing.T, data string) {
			removeAll(t, filepath.Join(data, "state", "coupond.stamp"))
		}, ""},
		{"state: MANIFEST truncated", func(t *testing.T, data string) {
			truncateTo(t, largestFile(t, filepath.Join(data, "state"), "", "MANIFEST-"), 0.5)
		}, "state"},
		{"state: an sstable flipped", func(t *testing.T, data string) {
			flipByte(t, largestFile(t, filepath.Join(data, "state"), ".sst", ""), 0.5)
		}, "state"},
		{"state: from the same node id of another cluster", swap(other, "state"), "state"},
		{"state: from another node", swap(node2, "state"), "state"},
	} {
		rows = append(rows, tc)
	}
	// bolt's pages carry no checksums: whatever a flipped byte in the
	// first pages (the headers, the free list, the roots of the buckets)
	// hits, the node refuses, or starts with its ledger.
	for page := int64(0); page < 6; page++ {
		for _, off := range []int64{8, 16, 40} {
			rows = append(rows, row{fmt.Sprintf("raft.db: page %d byte %d flipped", page, off), func(t *testing.T, data string) {
				flipAt(t, filepath.Join(data, "raft.db"), page*4096+off)
			}, "raft.db?"})
		}
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			p := newProc(t, "--id", f.id)
			copyTree(t, f.data, p.Data)
			tc.damage(t, p.Data)
			failure := p.startOrRefuse()
			if strings.HasSuffix(tc.refuse, "?") {
				tc.refuse = strings.TrimSuffix(tc.refuse, "?")
				if failure == "" {
					tc.refuse = ""
				}
			}
			switch {
			case tc.refuse == "" && failure != "":
				t.Fatalf("refused to start: %s", failure)
			case tc.refuse != "" && failure == "":
				if got := p.digest(""); got != f.digest {
					t.Fatalf("started and serves another ledger: digest %s, want %s (or a refusal naming %s)", got, f.digest, tc.refuse)
				}
				t.Fatalf("started with its ledger, want a refusal naming %s", tc.refuse)
			case tc.refuse != "":
				want := filepath.Join(p.Data, tc.refuse)
				if strings.Contains(want, "SNAP") {
					want = strings.ReplaceAll(want, filepath.Join(p.Data, "SNAP"), snapDir(p.Data))
				}
				if !strings.Contains(failure, want) {
					t.Fatalf("refused without naming %s: %s", want, failure)
				}
				t.Logf("refused: %s", failure)
			default:
				if got := p.digest(""); got != f.digest {
					t.Fatalf("digest %s after the restart, want %s", got, f.digest)
				}
				if _, err := os.Stat(filepath.Join(p.Data, "state", "coupond.stamp")); err != nil {
					t.Fatalf("the state has no stamp after a start: %v", err)
				}
			}
		})
	}
}

// TestReceivedSnapshotIsStamped: a node that joins after the leader
// compacted its log gets the leader's snapshot; it stores it under its own
// stamp, so after kill -9 it starts again, with the leader's digest.
func TestReceivedSnapshotIsStamped(t *testing.T) {
	tune := []string{"--raft-snapshot-bytes", "16KiB", "--raft-trailing-entries", "1"}
	n1 := newProc(t, append([]string{"--id", "n1"}, tune...)...)
	n1.Start()
	admin := n1.Token("admin.token")
	n1.createList(admin, "before", codesCSV("JOIN", 0, 2000))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(n1.Logs.String(), "compacting logs") {
		if time.Now().After(deadline) {
			t.Fatal("no compaction 30s after an import past --raft-snapshot-bytes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	n2 := newProc(t, append([]string{"--id", "n2", "--join", n1.HTTPAddr, "--token-file", filepath.Join(n1.Data, "operator.token")}, tune...)...)
	n2.Start() // ready once added and caught up: through the snapshot
	if !strings.Contains(n2.Logs.String(), "Installed remote snapshot") {
		t.Fatal("n2 caught up without the leader's snapshot")
	}
	want := n1.digest("")
	n2snaps := filepath.Join(n2.Data, "snapshots", "snapshots")
	ids := snapshotIDs(t, n2snaps)
	if len(ids) == 0 {
		t.Fatal("n2 keeps no snapshot")
	}
	stateStamp, err := os.ReadFile(filepath.Join(n2.Data, "state", "coupond.stamp"))
	if err != nil {
		t.Fatal(err)
	}
	snapStamp, err := os.ReadFile(filepath.Join(n2snaps, ids[len(ids)-1], "coupond.stamp"))
	if err != nil || !bytes.Equal(snapStamp, stateStamp) || !bytes.Contains(snapStamp, []byte(`"n2"`)) {
		t.Fatalf("received snapshot stamped %q (%v), want n2's own stamp %q", snapStamp, err, stateStamp)
	}
	n2.Kill9()
	n2.Start()
	// Ready means caught up with what n2 knew committed; poll for the rest.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := n2.digest(n1.Token("operator.token"))
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 digest %s 30s after its restart, want the leader's %s", got, want)
		}
	}
}
