package daemon_test

// Snapshot and restart tests of one in-process node (DESIGN.md, "Decisions
// that carry the promise"): the state a node reaches after a restart, from
// Pebble, from the newest snapshot alone, or from the snapshot plus the Raft
// log after it, must be the state it had before (FSM.Digest).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/coupond/coupond/daemon"
	"github.com/coupond/coupond/raftfsm"
)

// logBuffer collects a node's log lines; tests read them to see which
// start-up path a node took.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// restoredMsg is what catchUpWithSnapshot logs when it rebuilds the state.
const restoredMsg = "state is behind the newest snapshot; restoring it"

// testNode is one in-process node on a data folder that survives restarts.
type testNode struct {
	t        *testing.T
	dir      string
	raftAddr string
	n        *daemon.Node
	logs     *logBuffer // logs of the current run only
	all      *logBuffer // logs of every run
}

// freeAddr picks a loopback address that is free now: a restarted node keeps
// its Raft address, as a real node does.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newTestNode(t *testing.T) *testNode {
	tn := &testNode{t: t, dir: t.TempDir(), raftAddr: freeAddr(t), all: &logBuffer{}}
	t.Cleanup(func() {
		tn.close()
		if t.Failed() {
			t.Logf("node logs:\n%s", tailString(tn.all.String(), 6000))
		}
	})
	return tn
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (tn *testNode) config() daemon.Config {
	// 512 trailing entries: the tests write a few hundred entries and want
	// snapshots to compact the log past them.
	return daemon.Config{DataDir: tn.dir, HTTPAddr: "127.0.0.1:0", RaftAddr: tn.raftAddr,
		NodeID: "node1", LogFormat: "json", LogLevel: "warn", TrailingEntries: 512}
}

// start runs the node and waits until it leads and has applied every entry
// of its log.
func (tn *testNode) start() {
	tn.t.Helper()
	if err := tn.tryStart(); err != nil {
		tn.t.Fatalf("cannot start node: %v", err)
	}
	tn.barrier()
}

func (tn *testNode) tryStart() error {
	tn.logs = &logBuffer{}
	cfg := tn.config()
	n, err := daemon.Start(cfg, daemon.NewLogger(cfg, io.MultiWriter(tn.logs, tn.all)))
	if err != nil {
		return err
	}
	tn.n = n
	return nil
}

func (tn *testNode) close() {
	tn.t.Helper()
	if tn.n == nil {
		return
	}
	n := tn.n
	tn.n = nil
	if err := n.Close(); err != nil {
		tn.t.Errorf("close: %v", err)
	}
}

// barrier applies a command that changes nothing (revoking a token that does
// not exist): when it returns, every earlier entry has been applied. It waits
// for a leader first. Unlike raft.Barrier it moves the state machine's
// applied index, so a snapshot taken next ends on an entry the FSM has seen.
func (tn *testNode) barrier() {
	tn.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := tn.n.Raft().Apply(raftfsm.Encode(&raftfsm.RevokeToken{ID: "tok_test_barrier"}), 5*time.Second)
		err := f.Error()
		if err == nil {
			resp, ok := f.Response().(*raftfsm.Response)
			if !ok || !errors.Is(resp.Err, raftfsm.ErrNotFound) {
				tn.t.Fatalf("barrier: unexpected response %#v", f.Response())
			}
			return
		}
		if time.Now().After(deadline) {
			tn.t.Fatalf("no leader within 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tn *testNode) snapshot() raft.SnapshotFuture {
	tn.t.Helper()
	f := tn.n.Raft().Snapshot()
	if err := f.Error(); err != nil {
		tn.t.Fatalf("snapshot: %v", err)
	}
	return f
}

func (tn *testNode) snapshotIndex() uint64 {
	tn.t.Helper()
	idx, err := strconv.ParseUint(tn.n.Raft().Stats()["last_snapshot_index"], 10, 64)
	if err != nil {
		tn.t.Fatal(err)
	}
	return idx
}

func (tn *testNode) digest() string { return tn.n.FSM().Digest() }

func (tn *testNode) token(name string) string {
	tn.t.Helper()
	b, err := os.ReadFile(filepath.Join(tn.dir, name))
	if err != nil {
		tn.t.Fatalf("cannot read token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func (tn *testNode) stateDir() string { return filepath.Join(tn.dir, "state") }

// dropState deletes the Pebble folder: the node must rebuild its state from
// the newest snapshot and the Raft log after it.
func (tn *testNode) dropState() {
	tn.t.Helper()
	if err := os.RemoveAll(tn.stateDir()); err != nil {
		tn.t.Fatal(err)
	}
}

// call sends one HTTP request to the node and returns the status and body.
func (tn *testNode) call(method, path, token, contentType string, body []byte) (int, []byte) {
	tn.t.Helper()
	req, err := http.NewRequest(method, "http://"+tn.n.HTTPAddr()+path, bytes.NewReader(body))
	if err != nil {
		tn.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		tn.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// must sends a request, checks the status and decodes the JSON answer into out.
func (tn *testNode) must(want int, out any, method, path, token, contentType string, body []byte) {
	tn.t.Helper()
	st, b := tn.call(method, path, token, contentType, body)
	if st != want {
		tn.t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			tn.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

type listCounts struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Added     uint64 `json:"added"`
	Available uint64 `json:"available"`
	Withdrawn uint64 `json:"withdrawn"`
}

type importResult struct {
	Imported   uint64 `json:"imported"`
	Duplicates uint64 `json:"duplicates"`
	Size       uint64 `json:"size"`
}

// csvCodes returns n codes prefix + zero-padded i, one a line, from i = from.
func csvCodes(prefix string, from, n int) []byte {
	var b bytes.Buffer
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s%09d\n", prefix, i)
	}
	return b.Bytes()
}

func listID(t *testing.T, hexID string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(hexID, 16, 64)
	if err != nil {
		t.Fatalf("list id %q: %v", hexID, err)
	}
	return id
}

// ledger is what the writes of a test made, for checks over HTTP.
type ledger struct {
	admin, acmeAdmin string
	big, small, acme string // list ids
}

// writesBefore makes tenants, tokens, lists, a multi-chunk import (about
// 2.6 MB, three staged Raft entries), a top-up with duplicates, a withdrawal,
// a rename, a list without de-duplication and a deleted list.
func writesBefore(tn *testNode) *ledger {
	t := tn.t
	t.Helper()
	op := tn.token("operator.token")
	lg := &ledger{admin: tn.token("admin.token")}
	tn.must(201, nil, "POST", "/v1/tenants", op, "application/json", []byte(`{"id":"acme","name":"Acme"}`))
	var tok struct{ Token string }
	tn.must(201, &tok, "POST", "/v1/tenants/acme/tokens", op, "application/json", []byte(`{"role":"admin","name":"acme admin"}`))
	lg.acmeAdmin = tok.Token
	tn.must(201, nil, "POST", "/v1/tenants/acme/tokens", op, "application/json", []byte(`{"role":"sender","name":"acme sender"}`))

	var created struct {
		List   listCounts   `json:"list"`
		Import importResult `json:"import"`
	}
	tn.must(201, &created, "POST", "/v1/lists?name=big", lg.admin, "text/csv", csvCodes("BIG", 0, 200_000))
	if created.Import.Imported != 200_000 {
		t.Fatalf("create and import: %+v", created.Import)
	}
	lg.big = created.List.ID
	// 1,000 known codes, 1,000 new ones, each new one twice.
	body := append(csvCodes("BIG", 199_000, 2_000), csvCodes("BIG", 200_000, 1_000)...)
	var res importResult
	tn.must(200, &res, "POST", "/v1/lists/"+lg.big+"/codes", lg.admin, "text/csv", body)
	if res.Imported != 1_000 || res.Duplicates != 2_000 {
		t.Fatalf("top-up: %+v", res)
	}
	var wd map[string]uint64
	tn.must(200, &wd, "POST", "/v1/lists/"+lg.big+"/codes/withdraw", lg.admin, "text/csv",
		append(csvCodes("BIG", 100, 500), []byte("NOT-A-CODE\n")...))
	if wd["withdrawn"] != 500 || wd["not_found"] != 1 {
		t.Fatalf("withdraw: %v", wd)
	}

	var small listCounts
	tn.must(201, &small, "POST", "/v1/lists", lg.admin, "application/json", []byte(`{"name":"small","low_stock_threshold":10}`))
	lg.small = small.ID
	tn.must(200, nil, "POST", "/v1/lists/"+lg.small+"/codes", lg.admin, "text/csv", csvCodes("SMALL", 0, 50))
	tn.must(200, nil, "PATCH", "/v1/lists/"+lg.small, lg.admin, "application/json", []byte(`{"name":"small renamed"}`))

	var gone listCounts
	tn.must(201, &gone, "POST", "/v1/lists", lg.admin, "application/json", []byte(`{"name":"gone"}`))
	tn.must(200, nil, "POST", "/v1/lists/"+gone.ID+"/codes", lg.admin, "text/csv", csvCodes("GONE", 0, 10))
	tn.must(204, nil, "DELETE", "/v1/lists/"+gone.ID, lg.admin, "", nil)

	tn.must(201, &created, "POST", "/v1/lists?name=generic&dedupe=false", lg.acmeAdmin, "text/csv",
		[]byte("WELCOME10\nWELCOME10\nWELCOME10\nSPRING\n"))
	lg.acme = created.List.ID
	return lg
}

// writesAfter changes every kind of state again: a top-up, a withdrawal, a
// deleted list, a new list and a revoked token.
func writesAfter(tn *testNode, lg *ledger) {
	t := tn.t
	t.Helper()
	var res importResult
	tn.must(200, &res, "POST", "/v1/lists/"+lg.big+"/codes", lg.admin, "text/csv", csvCodes("BIG", 201_000, 100_000))
	if res.Imported != 100_000 {
		t.Fatalf("top-up after snapshot: %+v", res)
	}
	tn.must(200, nil, "POST", "/v1/lists/"+lg.big+"/codes/withdraw", lg.admin, "text/csv", csvCodes("BIG", 250_000, 10))
	tn.must(204, nil, "DELETE", "/v1/lists/"+lg.small, lg.admin, "", nil)
	tn.must(201, nil, "POST", "/v1/lists?name=after", lg.acmeAdmin, "text/csv", csvCodes("AFTER", 0, 1000))
	op := tn.token("operator.token")
	var tok struct{ ID string }
	tn.must(201, &tok, "POST", "/v1/tenants/acme/tokens", op, "application/json", []byte(`{"role":"sender","name":"short-lived"}`))
	tn.must(204, nil, "DELETE", "/v1/tokens/"+tok.ID, op, "", nil)
}

// checkCounts reads the big list back over HTTP.
func checkBig(tn *testNode, lg *ledger, added, withdrawn uint64) {
	tn.t.Helper()
	var l listCounts
	tn.must(200, &l, "GET", "/v1/lists/"+lg.big, lg.admin, "", nil)
	if l.Added != added || l.Withdrawn != withdrawn || l.Available != added-withdrawn {
		tn.t.Fatalf("big list: %+v, want added %d withdrawn %d", l, added, withdrawn)
	}
	var c struct{ State string }
	tn.must(200, &c, "GET", "/v1/lists/"+lg.big+"/codes/BIG000000100", lg.admin, "", nil)
	if c.State != "withdrawn" {
		tn.t.Fatalf("BIG000000100 is %q, want withdrawn", c.State)
	}
	tn.must(200, &c, "GET", "/v1/lists/"+lg.big+"/codes/BIG000000099", lg.admin, "", nil)
	if c.State != "available" {
		tn.t.Fatalf("BIG000000099 is %q, want available", c.State)
	}
}

// TestSnapshotRestoreAlone: with the Pebble folder gone, a node rebuilds
// exactly the state of its newest snapshot.
func TestSnapshotRestoreAlone(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	lg := writesBefore(tn)
	tn.barrier()
	tn.snapshot()
	snapIdx := tn.snapshotIndex()
	want := tn.digest()
	if got := tn.n.FSM().AppliedIndex(); got != snapIdx {
		t.Fatalf("snapshot index %d, FSM applied index %d", snapIdx, got)
	}
	tn.close()
	tn.dropState()

	tn.start()
	if !strings.Contains(tn.logs.String(), restoredMsg) {
		t.Fatalf("the node did not restore its snapshot at start; logs:\n%s", tn.logs)
	}
	if got := tn.digest(); got != want {
		t.Fatalf("digest after a restore from the snapshot alone: %s, want %s", got, want)
	}
	checkBig(tn, lg, 201_000, 500)
	// The restored node keeps working, and a plain restart keeps its state.
	writesAfter(tn, lg)
	want = tn.digest()
	tn.close()
	tn.start()
	if strings.Contains(tn.logs.String(), restoredMsg) {
		t.Fatalf("a plain restart restored a snapshot; logs:\n%s", tn.logs)
	}
	if got := tn.digest(); got != want {
		t.Fatalf("digest after a plain restart: %s, want %s", got, want)
	}
	checkBig(tn, lg, 301_000, 510)
}

// TestSnapshotPlusLogRestore: the newest snapshot plus the Raft entries
// after it rebuild the state (catchUpWithSnapshot, then Raft's replay).
func TestSnapshotPlusLogRestore(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	lg := writesBefore(tn)
	tn.snapshot()
	snapDigest := tn.digest()
	writesAfter(tn, lg)
	want := tn.digest()
	if want == snapDigest {
		t.Fatal("the writes after the snapshot did not change the digest")
	}
	applied := tn.n.FSM().AppliedIndex()
	if snap := tn.snapshotIndex(); snap >= applied {
		t.Fatalf("no log entries after the snapshot: snapshot %d, applied %d", snap, applied)
	}
	tn.close()
	tn.dropState()

	tn.start()
	if !strings.Contains(tn.logs.String(), restoredMsg) {
		t.Fatalf("the node did not restore its snapshot at start; logs:\n%s", tn.logs)
	}
	if got := tn.n.FSM().AppliedIndex(); got <= applied {
		t.Fatalf("applied index %d after replay, want above %d", got, applied)
	}
	if got := tn.digest(); got != want {
		t.Fatalf("digest after snapshot + log: %s, want %s", got, want)
	}
	checkBig(tn, lg, 301_000, 510)
	if st, _ := tn.call("GET", "/v1/lists/"+lg.small, lg.admin, "", nil); st != 404 {
		t.Fatalf("list deleted after the snapshot: status %d, want 404", st)
	}
}

// TestPlainRestart: with Pebble kept (flushed by Close) a restart replays
// nothing and reaches the same state, with and without a snapshot.
func TestPlainRestart(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	lg := writesBefore(tn)
	want := tn.digest()
	tn.close()
	tn.start()
	if got := tn.digest(); got != want {
		t.Fatalf("digest after a restart without snapshot: %s, want %s", got, want)
	}
	checkBig(tn, lg, 201_000, 500)

	writesAfter(tn, lg) // the first entry after the restart is a command, see TestSnapshotRightAfterRestart
	tn.snapshot()
	tn.must(200, nil, "POST", "/v1/lists/"+lg.big+"/codes", lg.admin, "text/csv", csvCodes("BIG", 301_000, 10))
	want = tn.digest()
	tn.close()
	tn.start()
	if strings.Contains(tn.logs.String(), restoredMsg) {
		t.Fatalf("a plain restart restored a snapshot; logs:\n%s", tn.logs)
	}
	if got := tn.digest(); got != want {
		t.Fatalf("digest after a restart with a snapshot: %s, want %s", got, want)
	}
	checkBig(tn, lg, 301_010, 510)
}

// TestStateBehindSnapshotIsRebuilt is the trap of DESIGN.md: Pebble is not
// synced, so after a crash its applied index can be below the newest
// snapshot while Raft has already dropped the log entries in between. The
// start must notice and rebuild from the snapshot. An old copy of the Pebble
// folder stands in for the writes a crash lost.
func TestStateBehindSnapshotIsRebuilt(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	lg := writesBefore(tn)
	tn.close() // flushed: the copy is a consistent, older state
	stale := filepath.Join(t.TempDir(), "stale-state")
	copyDir(t, tn.stateDir(), stale)

	tn.start()
	staleApplied := tn.n.FSM().AppliedIndex()
	// More entries than TrailingLogs (512), so the snapshot lets Raft drop
	// the log right after the stale state: only the snapshot has them.
	id := listID(t, lg.big)
	var futures []raft.ApplyFuture
	for i := 1; i <= 700; i++ {
		futures = append(futures, tn.n.Raft().Apply(raftfsm.Encode(&raftfsm.UpdateList{
			Tenant: "default", ID: id, SetThreshold: true, Threshold: uint64(i)}), 10*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		if r := f.Response().(*raftfsm.Response); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	writesAfter(tn, lg)
	tn.snapshot()
	snapIdx := tn.snapshotIndex()
	// A few entries after the snapshot that Raft must replay on top of it.
	tn.must(200, nil, "POST", "/v1/lists/"+lg.big+"/codes", lg.admin, "text/csv", csvCodes("BIG", 301_000, 10))
	tn.must(200, nil, "PATCH", "/v1/lists/"+lg.big, lg.admin, "application/json", []byte(`{"low_stock_threshold":5}`))
	want := tn.digest()
	tn.close()

	// The log really has lost the entries between the stale state and the snapshot.
	ls, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(tn.dir, "raft.db")})
	if err != nil {
		t.Fatal(err)
	}
	first, err := ls.FirstIndex()
	ls.Close()
	if err != nil {
		t.Fatal(err)
	}
	if first <= staleApplied+1 || first > snapIdx {
		t.Fatalf("log starts at %d: want it compacted past the stale state (%d) up to the snapshot (%d)", first, staleApplied, snapIdx)
	}
	t.Logf("stale state at %d, Raft log from %d, snapshot at %d", staleApplied, first, snapIdx)

	if err := os.RemoveAll(tn.stateDir()); err != nil {
		t.Fatal(err)
	}
	copyDir(t, stale, tn.stateDir())
	tn.start()
	if !strings.Contains(tn.logs.String(), restoredMsg) {
		t.Fatalf("the stale state was not detected at start; logs:\n%s", tn.logs)
	}
	if got := tn.digest(); got != want {
		t.Fatalf("digest after rebuilding a stale state: %s, want %s", got, want)
	}
	checkBig(tn, lg, 301_010, 510)
	var l struct {
		Threshold uint64 `json:"low_stock_threshold"`
	}
	tn.must(200, &l, "GET", "/v1/lists/"+lg.big, lg.admin, "", nil)
	if l.Threshold != 5 {
		t.Fatalf("threshold %d, want 5", l.Threshold)
	}
}

// TestSnapshotRightAfterRestart: after a restart the new leader's first
// entry is a no-op that Raft hands neither to the state machine nor to its
// snapshot bookkeeping, so a snapshot taken before any write (by hand, or by
// Raft's timer on an idle node) still ends on the FSM's applied index and
// the next start accepts it.
func TestSnapshotRightAfterRestart(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	lg := writesBefore(tn)
	tn.close()
	if err := tn.tryStart(); err != nil {
		t.Fatal(err)
	}
	waitIdleLeader(t, tn)
	tn.snapshot()
	// Entries that never reach the state machine (the no-op, the barrier
	// of the upload clean-up) may put the snapshot index above the FSM's.
	if snap, applied := tn.snapshotIndex(), tn.n.FSM().AppliedIndex(); snap < applied {
		t.Fatalf("snapshot index %d below FSM applied index %d", snap, applied)
	}
	want := tn.digest()
	tn.close()
	tn.start()
	if got := tn.digest(); got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	tn.close()
	tn.dropState()
	tn.start()
	if got := tn.digest(); got != want {
		t.Fatalf("digest from the snapshot alone %s, want %s", got, want)
	}
	checkBig(tn, lg, 201_000, 500)
}

// waitIdleLeader waits, without writing, until the node leads and Raft has
// applied its whole log (the leader's no-op included).
func waitIdleLeader(t *testing.T, tn *testNode) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for tn.n.Raft().State() != raft.Leader || tn.n.Raft().AppliedIndex() < tn.n.Raft().LastIndex() {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSnapshotAfterRaftBarrier: a raft.Barrier entry reaches Raft's FSM
// goroutine (so it counts for the snapshot index) but not FSM.ApplyBatch (so
// the FSM's applied index stays one below). Node.Raft() is exported "for
// tests and tools": a tool that calls Barrier before Snapshot, or Raft's own
// snapshot timer after a Barrier on an idle node, leaves a snapshot the next
// start refuses.
func TestSnapshotAfterRaftBarrier(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	lg := writesBefore(tn)
	if err := tn.n.Raft().Barrier(10 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	tn.snapshot()
	t.Logf("snapshot index %d, FSM applied index %d", tn.snapshotIndex(), tn.n.FSM().AppliedIndex())
	want := tn.digest()
	tn.close()
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Start panicked: %v", r)
			}
		}()
		if err := tn.tryStart(); err != nil {
			t.Fatalf("restart after a snapshot that follows a Barrier: %v", err)
		}
	}()
	tn.barrier()
	if got := tn.digest(); got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	checkBig(tn, lg, 201_000, 500)
}

// TestStartFailureIsAnError: a Start that fails (here: the HTTP address is
// taken) must return its error, not panic.
func TestStartFailureIsAnError(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tn := newTestNode(t)
	cfg := tn.config()
	cfg.HTTPAddr = busy.Addr().String()
	var n *daemon.Node
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Start with a busy HTTP address panicked: %v", r)
			}
		}()
		n, err = daemon.Start(cfg, daemon.NewLogger(cfg, tn.all))
	}()
	if err == nil {
		n.Close()
		t.Fatal("Start with a busy HTTP address succeeded")
	}
	if !strings.Contains(err.Error(), "HTTP") {
		t.Fatalf("error %q does not name the HTTP address", err)
	}
}

// TestRestartWithNewRaftAddress: with --raft on port 0 a restart listens on
// another port than the one in the stored configuration; a single node must
// still elect itself and take writes.
func TestRestartWithNewRaftAddress(t *testing.T) {
	tn := newTestNode(t)
	tn.raftAddr = "127.0.0.1:0"
	tn.start()
	lg := writesBefore(tn)
	want := tn.digest()
	first := string(tn.n.Raft().Leader())
	tn.close()
	tn.start() // waits for leadership (barrier) or fails after 30s
	if now := string(tn.n.Raft().Leader()); now == first {
		t.Logf("the restart got the same Raft port %s", now)
	}
	if got := tn.digest(); got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	writesAfter(tn, lg)
	checkBig(tn, lg, 301_000, 510)
	var c struct {
		Leader any `json:"leader"`
		Nodes  []struct {
			RaftAddr string `json:"raft_addr"`
		} `json:"nodes"`
	}
	tn.must(200, &c, "GET", "/v1/cluster", tn.token("operator.token"), "", nil)
	if c.Leader != "node1" || len(c.Nodes) != 1 {
		t.Fatalf("cluster after restart: %+v", c)
	}
	if got, now := c.Nodes[0].RaftAddr, string(tn.n.Raft().Leader()); got != now {
		t.Logf("note: /v1/cluster reports raft_addr %s (the stored configuration) while the node listens on %s", got, now)
	}
}

// skipBug skips a test that shows a known bug, unless COUPOND_BUG_TESTS=1
// asks to see it fail.
func skipBug(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("COUPOND_BUG_TESTS") != "1" {
		t.Skip(msg)
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}
}

// TestUnfinishedSnapshotsAreRemovedAtStart: a crash while a snapshot is
// written leaves a *.tmp folder that Raft skips but never deletes; the
// next start removes it and keeps the finished snapshots.
func TestUnfinishedSnapshotsAreRemovedAtStart(t *testing.T) {
	tn := newTestNode(t)
	tn.start()
	writesBefore(tn)
	tn.snapshot()
	tn.close()
	snaps := filepath.Join(tn.dir, "snapshots")
	tmp := filepath.Join(snaps, "2-99-1700000000000.tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "state.bin"), []byte("cut off"), 0o600); err != nil {
		t.Fatal(err)
	}
	tn.start()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("unfinished snapshot still there: %v", err)
	}
	if tn.snapshotIndex() == 0 {
		t.Fatal("the finished snapshot went too")
	}
}
