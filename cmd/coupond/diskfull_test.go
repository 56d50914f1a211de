package main

// A full disk (README, API notes, "A full disk"): the node refuses writes
// with 503 and Retry-After instead of hanging them, reports not ready, logs
// its trouble a few times instead of hundreds of times a second, loses
// nothing it acknowledged, and takes writes again by itself once space is
// back.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coupond/coupond/cmd/internal/proctest"
)

// Bounds of TestDiskFull.
const (
	// diskFullAnswer bounds one write's answer: the API's apply timeout
	// (10 s) with room for a busy machine. No answer by then is a hang.
	diskFullAnswer = 15 * time.Second
	// diskFullPeriod is how long writes keep coming once the node
	// refused one, so that its logging is measured over a stretch of time.
	diskFullPeriod = 3 * time.Second
	// diskFullMaxLogLines bounds the node's own and Pebble's warnings and
	// errors over the whole full period; unbounded, Pebble logged hundreds
	// a second.
	diskFullMaxLogLines = 10
	// diskFullRaftLinesPerSecond bounds Raft's lines: a leader that cannot
	// write raft.db steps down and wins the next election, about one a
	// second, with half a dozen lines each; a storm would be far more.
	diskFullRaftLinesPerSecond = 20
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh folder for the test,
// unmounted when it ends; it skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root, or a mount permission): %v: %s", err, bytes.TrimSpace(out))
	}
	// Registered after t.TempDir's removal and before newProc's kill, so it
	// runs after the process is gone and before the folder is removed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("cannot unmount the test's tmpfs %s: %v: %s", dir, err, bytes.TrimSpace(out))
		}
	})
	return dir
}

// fillDisk writes a file on dir's file system until no byte more fits.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("cannot fill the disk: %v", err)
				}
				break
			}
		}
	}
	return path
}

// diskWrite is one write of TestDiskFull and what it needs to be found
// again once acknowledged.
type diskWrite struct {
	name   string // for messages
	method string
	path   string
	ctype  string
	body   []byte
	// check reports whether the acknowledged write is in the state, given
	// its answer's body.
	check func(p *proc, answer []byte) bool
}

type ackedWrite struct {
	w      diskWrite
	answer []byte
}

// TestDiskFull fills the disk of a node in two ways. "state" as in the
// incident: raft.db has free pages and keeps taking entries, Pebble cannot
// flush. "log": the leader cannot write raft.db and steps down, and must
// lead again by itself once space is back.
func TestDiskFull(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	t.Run("state", func(t *testing.T) { testDiskFull(t, true) })
	t.Run("log", func(t *testing.T) { testDiskFull(t, false) })
}

func testDiskFull(t *testing.T, stateStuck bool) {
	mnt := mountTmpfs(t, 64<<20)
	// With the default 64 MiB memtable Pebble writes nothing to disk
	// within the test: only raft.db meets the full disk.
	var flags []string
	if stateStuck {
		// A small memtable makes Pebble flush (and fail to) after a few
		// writes. The snapshot after 1 MiB of commands lets Raft drop the
		// log of the first import: raft.db has free pages on the full disk.
		flags = []string{"--state-memtable-size", "1MiB", "--raft-snapshot-bytes", "1MiB", "--raft-trailing-entries", "4"}
	}
	p := newProc(t, flags...)
	p.Data = filepath.Join(mnt, "data")
	p.Start()
	admin := p.Token("admin.token")
	list := p.createList(admin, "full", codesCSV("F", 0, 300_000))
	p.messageOnList(admin, "m", "M", list)
	if stateStuck {
		waitSnapshot(t, p.Data)
	}

	client := &http.Client{Timeout: diskFullAnswer}
	var acked []ackedWrite
	var codes = map[string]string{} // code -> recipient: no code twice
	refused := 0
	var slowest time.Duration
	// try sends w once: a 2xx is acknowledged, a 503 must carry
	// Retry-After, anything else (or no answer in time) fails the test.
	try := func(w diskWrite) (ok bool) {
		t.Helper()
		req, err := http.NewRequest(w.method, p.URL(w.path), bytes.NewReader(w.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		if w.ctype != "" {
			req.Header.Set("Content-Type", w.ctype)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: no answer within %s (%v): a write hangs", w.name, time.Since(start).Round(time.Millisecond), err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		slowest = max(slowest, time.Since(start))
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		switch {
		case resp.StatusCode/100 == 2:
			acked = append(acked, ackedWrite{w, b})
			return true
		case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "":
			refused++
			return false
		}
		t.Fatalf("%s: status %d (Retry-After %q): %s", w.name, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		return false
	}
	round := func(i int) []diskWrite {
		msg := fmt.Sprintf("msg-%d", i)
		send := fmt.Sprintf("send-%d", i)
		rcpt := fmt.Sprintf("r%d@example.com", i)
		prefix := fmt.Sprintf("T%d-", i)
		return []diskWrite{
			{name: "PUT message " + msg, method: "PUT", path: "/v1/messages/" + msg, ctype: "application/json",
				body: []byte(`{"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`),
				check: func(p *proc, _ []byte) bool {
					st, _ := p.do("GET", "/v1/messages/"+msg, admin, "", nil)
					return st == 200
				}},
			{name: "create list " + msg, method: "POST", path: "/v1/lists", ctype: "application/json",
				body: []byte(`{"name":"` + msg + `"}`),
				check: func(p *proc, answer []byte) bool {
					var l listJSON
					if err := json.Unmarshal(answer, &l); err != nil || l.ID == "" {
						t.Fatalf("list create answered %s", answer)
					}
					st, _ := p.do("GET", "/v1/lists/"+l.ID, admin, "", nil)
					return st == 200
				}},
			// 50,000 codes make one entry of more than half a memtable,
			// which Pebble flushes at once.
			{name: "import " + prefix, method: "POST", path: "/v1/lists/" + list + "/codes", ctype: "text/csv",
				body: codesCSV(prefix, 0, 50_000),
				check: func(p *proc, _ []byte) bool {
					return p.codeState(admin, list, code(prefix, 0)) != "" && p.codeState(admin, list, code(prefix, 49_999)) != ""
				}},
			{name: "allocate " + send, method: "POST", path: "/v1/sends/" + send + "/codes", ctype: "application/json",
				body: []byte(`{"message_id":"m","recipients":["` + rcpt + `"]}`),
				check: func(p *proc, answer []byte) bool {
					var a struct {
						Assignments []struct{ Recipient, Code string }
					}
					if err := json.Unmarshal(answer, &a); err != nil || len(a.Assignments) != 1 {
						t.Fatalf("allocation answered %s", answer)
					}
					c := a.Assignments[0].Code
					if other, ok := codes[c]; ok && other != rcpt {
						t.Fatalf("code %s handed out to %s and %s", c, other, rcpt)
					}
					codes[c] = rcpt
					_, b := p.do("GET", "/v1/recipients/"+rcpt+"/assignments", admin, "", nil)
					return bytes.Contains(b, []byte(`"code":"`+c+`"`))
				}},
		}
	}
	metrics := func() string {
		t.Helper()
		resp, err := client.Get(p.URL("/metrics"))
		if err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	readyz := func() int {
		t.Helper()
		resp, err := client.Get(p.URL("/readyz"))
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	filler := fillDisk(t, mnt)
	logsAtFull := len(p.Logs.String())
	fullAt := time.Now()
	var notReadyAt time.Time
	deadline := time.Now().Add(30 * time.Second)
	i := 0
	for ; notReadyAt.IsZero() || time.Since(notReadyAt) < diskFullPeriod; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("the full disk went unnoticed: /readyz %d after %d rounds of writes (%d refused)", readyz(), i, refused)
		}
		for _, w := range round(i) {
			try(w)
		}
		if readyz() == 503 && refused > 0 && notReadyAt.IsZero() {
			notReadyAt = time.Now()
		}
	}
	if readyz() != 503 {
		t.Fatal("/readyz answers ready while the disk is still full")
	}
	if stateStuck && !strings.Contains(metrics(), "\ncoupond_state_writable 0\n") {
		t.Error("coupond_state_writable is not 0 while Pebble cannot flush")
	}
	fullFor := time.Since(fullAt)
	var logLines, raftLines int
	for _, line := range strings.Split(strings.TrimSpace(p.Logs.String()[logsAtFull:]), "\n") {
		switch {
		case strings.Contains(line, `"component":"raft"`):
			raftLines++
		case strings.Contains(line, `"level":"warn"`), strings.Contains(line, `"level":"error"`):
			logLines++ // not the info lines of the writes that succeeded
		}
	}
	t.Logf("disk full for %s: %d rounds of writes, %d acknowledged, %d refused, slowest answer %s; %d warnings and errors logged, and %d lines of Raft",
		fullFor.Round(time.Millisecond), i, len(acked), refused, slowest.Round(time.Millisecond), logLines, raftLines)
	if logLines > diskFullMaxLogLines {
		t.Errorf("%d warnings and errors logged while the disk was full, want at most %d:\n%s", logLines, diskFullMaxLogLines, proctest.Tail(p.Logs.String(), 3000))
	}
	if max := int(fullFor.Seconds()+1) * diskFullRaftLinesPerSecond; raftLines > max {
		t.Errorf("%d log lines of Raft in %s while the disk was full, want at most %d:\n%s", raftLines, fullFor, max, proctest.Tail(p.Logs.String(), 3000))
	}

	// Space is back: writes resume by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for ; ; i++ {
		ok := true
		for _, w := range round(i) {
			ok = try(w) && ok
		}
		if ok && readyz() == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes have not resumed 30 s after space was back (/readyz %d)", readyz())
		}
	}

	if !strings.Contains(metrics(), "\ncoupond_state_writable 1\n") {
		t.Error("coupond_state_writable is not 1 once writes resumed")
	}

	verify := func(when string) {
		t.Helper()
		for _, a := range acked {
			if !a.w.check(p, a.answer) {
				t.Errorf("%s: acknowledged write %q is not in the state", when, a.w.name)
			}
		}
	}
	verify("space back")
	codes = map[string]string{}
	p.Kill9()
	p.Start()
	verify("after kill -9 and restart")
}

// waitSnapshot polls until the node has finished a snapshot.
func waitSnapshot(t *testing.T, data string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		metas, _ := filepath.Glob(filepath.Join(data, "snapshots", "snapshots", "*", "meta.json"))
		for _, m := range metas {
			if !strings.HasSuffix(filepath.Dir(m), ".tmp") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot 30 s after 1 MiB of commands")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
