package main

// A restore of a big snapshot, cut by kill -9 (issue: a kill during the
// restore left a partial state whose applied index the next start trusted).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/cmd/internal/proctest"
)

// restoreCodes, the codes of a node's own restore, is in size_test.go.
const followerCodes = 2_000_000 // a follower's install

// restoreCSV is n codes of 20 bytes: 5M of them make a 105 MB snapshot.
func restoreCSV(n int) []byte {
	b := make([]byte, 0, n*21)
	for i := range n {
		b = appendCode(b, "RESTORE-", i, 12)
		b = append(b, '\n')
	}
	return b
}

// logsSince is what the node logged after mark (a length of p.Logs).
func (p *proc) logsSince(mark int) string { return p.Logs.String()[mark:] }

// waitLog polls the node's logs after mark until one contains msg.
func (p *proc) waitLog(mark int, msg string, limit time.Duration) string {
	p.T.Helper()
	deadline := time.Now().Add(limit)
	for {
		if line := firstLine(p.logsSince(mark), msg); line != "" {
			return line
		}
		select {
		case <-p.Done:
			p.T.Fatalf("coupond exited before it logged %q:\n%s", msg, proctest.Tail(p.logsSince(mark), 4000))
		default:
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("no %q in the logs after %s:\n%s", msg, limit, proctest.Tail(p.logsSince(mark), 4000))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var snapshotDone = regexp.MustCompile(`snapshot complete up to: index=(\d+)`)

// waitSnapshot waits until Raft has a snapshot at index or later.
func (p *proc) waitSnapshot(index uint64, limit time.Duration) {
	p.T.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, m := range snapshotDone.FindAllStringSubmatch(p.Logs.String(), -1) {
			if i, _ := strconv.ParseUint(m[1], 10, 64); i >= index {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.T.Fatalf("no snapshot at index %d or later within %s", index, limit)
}

// firstLine is the first line of s that contains sub, or "".
func firstLine(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}

// restoreTook reads the duration of the "snapshot restored" line.
func restoreTook(t *testing.T, line string) time.Duration {
	t.Helper()
	var ev struct {
		Took float64 `json:"took"` // milliseconds
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Took <= 0 {
		t.Fatalf("snapshot restored line %q: %v", line, err)
	}
	return time.Duration(ev.Took * float64(time.Millisecond))
}

// dirBytes is the size of the files below dir (0 if it does not exist),
// leaving out the files named in old.
func dirBytes(dir string, old map[string]bool) int64 {
	var n int64
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !old[path] {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// dirFiles names the files below dir.
func dirFiles(dir string) map[string]bool {
	files := map[string]bool{}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files[path] = true
		}
		return nil
	})
	return files
}

// killDuringRestore starts the node and kills it with kill -9 once its
// restore (announced by a log line holding started) has written atBytes to
// files of its state not named in old, or has finished. It answers what
// the next start will find: a restore that says it did not finish, or the
// index and digest of the state on disk.
func (p *proc) killDuringRestore(started string, old map[string]bool, atBytes int64) (unfinished bool, index uint64, digest string) {
	p.T.Helper()
	stateDir := filepath.Join(p.Data, "state")
	mark := len(p.Logs.String())
	p.Launch()
	p.waitLog(mark, started, 90*time.Second)
	for dirBytes(stateDir, old) < atBytes && firstLine(p.logsSince(mark), `"snapshot restored"`) == "" {
		time.Sleep(time.Millisecond)
	}
	p.Kill9()
	f, closeDB := openState(p.T, p.Data)
	defer closeDB()
	if f.RestoreUnfinished() {
		return true, 0, ""
	}
	return false, f.AppliedIndex(), f.Digest()
}

// TestKill9DuringSnapshotRestore: a node whose state is behind its newest
// snapshot (here: state/ removed) restores it at start. The node is killed
// with kill -9 at eleven points of that restore: as it begins, then each
// time the restored state on disk has grown by another tenth; each run
// restores again what the one before left. After every kill the state on
// disk must say that its restore did not finish, or be untouched, or be the
// whole snapshot: never claim an index it does not hold. Starts after kills
// must end with the digest of an uninterrupted restore.
func TestKill9DuringSnapshotRestore(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	p := newProcOf(t, fastBinary(t), "--raft-snapshot-entries", "64", "--raft-snapshot-bytes", "1GiB")
	p.Start()
	admin, op := p.Token("admin.token"), p.Token("operator.token")

	// The ledger: restoreCodes codes, some withdrawn, some handed out, and a second
	// list; then enough empty writes for Raft to snapshot all of it.
	big := p.createList(admin, "big", restoreCSV(restoreCodes))
	var withdrawn bytes.Buffer
	for i := 0; i < restoreCodes; i += restoreCodes / 50 {
		withdrawn.Write(appendCode(nil, "RESTORE-", i+7, 12))
		withdrawn.WriteByte('\n')
	}
	p.must(200, nil, "POST", "/v1/lists/"+big+"/codes/withdraw", admin, "text/csv", withdrawn.Bytes())
	p.messageOnList(admin, "restore-msg", "Restore", big)
	recips := make([]string, 300)
	for i := range recips {
		recips[i] = fmt.Sprintf("r%03d@restore.example", i)
	}
	body, _ := json.Marshal(map[string]any{"message_id": "restore-msg", "recipients": recips})
	p.must(200, nil, "POST", "/v1/sends/restore-send/codes", admin, "application/json", body)
	p.createList(admin, "small", codesCSV("S", 0, 1000))
	target := p.appliedIndex()
	for range 80 {
		p.must(404, nil, "DELETE", "/v1/tokens/tok_restore_test", op, "", nil)
	}
	p.waitSnapshot(target, 60*time.Second)
	want := p.digest("")
	p.Stop()

	stateDir := filepath.Join(p.Data, "state")
	dropState := func() {
		if err := os.RemoveAll(stateDir); err != nil {
			t.Fatal(err)
		}
	}
	// restart starts the node, waits until it applied its log, and stops it;
	// it answers the digest and whether the start restored the snapshot.
	restart := func() (string, bool) {
		t.Helper()
		mark := len(p.Logs.String())
		p.Launch()
		p.waitApplied()
		got := p.digest("")
		p.Stop()
		return got, firstLine(p.logsSince(mark), `"snapshot restored"`) != ""
	}

	// An uninterrupted restore, for its digest and the size it leaves.
	dropState()
	if got, restored := restart(); got != want || !restored {
		t.Fatalf("an uninterrupted restore gives digest %s (restored: %v), the node had %s", got, restored, want)
	}
	full := dirBytes(stateDir, nil)

	dropState()
	const points = 11
	inside := 0
	for i := range points {
		// 0: as the restore begins; then at 5%, 15%, ... 95% of the bytes.
		var atBytes int64
		if i > 0 {
			atBytes = full * int64(2*i-1) / 20
		}
		// What the next start will find: a restore that says it did not
		// finish, a state never touched (the first run, before its marker
		// reached the disk), or the snapshot's state, restored whole.
		unfinished, index, digest := p.killDuringRestore("restoring", nil, atBytes)
		t.Logf("kill %d at %d of %d bytes: unfinished %v, index %d", i+1, atBytes, full, unfinished, index)
		switch {
		case unfinished:
			inside++
		case index == 0:
		case digest != want:
			t.Fatalf("kill %d, at %d of %d bytes of the restore, left a state that claims index %d with another ledger (digest %s, want %s)",
				i+1, atBytes, full, index, digest, want)
		default:
			dropState() // restored whole: the next run must restore again
		}
		if i%3 == 2 || i == points-1 { // the whole start, from what the kill left
			if got, _ := restart(); got != want {
				t.Fatalf("the start after kill %d ends with digest %s, want %s", i+1, got, want)
			}
			dropState()
		}
	}
	if inside < points/2 {
		t.Fatalf("only %d of %d kills left an unfinished restore: the test shows little", inside, points)
	}
}

// TestKill9DuringFollowerSnapshotInstall: a follower that was down while
// the cluster took 2M codes and compacted its log catches up by installing
// the leader's snapshot; it is killed with kill -9 while it restores it, at
// a fifth and at seven tenths of the state (the single node's test above
// takes the kills through a whole restore; this one the follower's path). What it leaves on disk must
// say the restore did not finish (or be its old state untouched, or the
// whole snapshot), and its next start must end with the leader's digest.
// Between the kills the follower is stopped and the leader compacts its log
// again, so that each time it installs a snapshot anew.
func TestKill9DuringFollowerSnapshotInstall(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	c := startCtClusterOf(t, fastBinary(t), "--raft-snapshot-entries", "64", "--raft-trailing-entries", "32", "--raft-snapshot-bytes", "1GiB")
	L := c.node(c.waitMembers(c.nodes...))
	F := c.others(L.id)[0]
	F.Kill9()
	var created struct {
		List listJSON `json:"list"`
	}
	c.mustIdem(L, []int{201}, &created, "POST", "/v1/lists?name=big", c.admin,
		map[string]string{"Content-Type": "text/csv", "Idempotency-Key": "follower-restore"}, restoreCSV(followerCodes))
	var withdrawn bytes.Buffer
	for i := 0; i < followerCodes; i += followerCodes / 50 {
		withdrawn.Write(appendCode(nil, "RESTORE-", i+3, 12))
		withdrawn.WriteByte('\n')
	}
	c.mustIdem(L, []int{200}, nil, "POST", "/v1/lists/"+created.List.ID+"/codes/withdraw", c.admin, ctCSV, withdrawn.Bytes())
	var full int64 // the leader's state, once a snapshot flushed it
	// The writes compactPast sends change nothing: the ledger stays this.
	var want ctDigest
	c.must(L, 200, &want, "GET", "/v1/cluster/digest", c.operator, nil, nil)

	// compactPast makes the leader snapshot and compact its log past
	// everything the stopped follower has.
	compactPast := func() {
		t.Helper()
		v, err := c.view(L)
		if err != nil {
			t.Fatal(err)
		}
		for range 80 {
			c.must(L, 404, nil, "DELETE", "/v1/tokens/tok_follower_restore", c.operator, nil, nil)
		}
		L.waitSnapshot(v.CommitIndex+40, 60*time.Second)
	}
	for i, frac := range []int64{2, 7} {
		compactPast()
		if full == 0 {
			full = dirBytes(filepath.Join(L.Data, "state"), nil)
		}
		stateDir := filepath.Join(F.Data, "state")
		f, closeDB := openState(t, F.Data)
		oldIndex, oldDigest := f.AppliedIndex(), f.Digest()
		closeDB()

		// What the restore writes is counted in files the old state has not.
		atBytes := full * frac / 10
		old := dirFiles(stateDir)
		unfinished, index, digest := F.killDuringRestore("restoring a snapshot from the leader", old, atBytes)
		t.Logf("install %d: kill at %d of %d bytes: unfinished %v, index %d (before the install %d)", i+1, atBytes, full, unfinished, index, oldIndex)
		if !unfinished && !(index == oldIndex && digest == oldDigest) && digest != want.Digest {
			t.Fatalf("install %d: the kill, at %d of %d bytes of the restore, left a state that claims index %d with another ledger (digest %s, want %s)",
				i+1, atBytes, full, index, digest, want.Digest)
		}
		mark := len(F.Logs.String())
		F.Launch()
		F.WaitReady()
		d := c.sameDigest(c.nodes...)
		if d.Digest != want.Digest {
			t.Fatalf("install %d: the cluster's digest changed to %s, want %s", i+1, d.Digest, want.Digest)
		}
		if unfinished && firstLine(F.logsSince(mark), "did not finish; restoring the snapshot again") == "" {
			t.Fatalf("install %d: the start after the kill did not restore the snapshot again:\n%s", i+1, proctest.Tail(F.logsSince(mark), 4000))
		}
		t.Logf("install %d: after its restart %s has the leader's digest at index %d", i+1, F.id, d.Applied)
		F.Kill9()
	}
}
