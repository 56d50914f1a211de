package main

// Acceptance (a): couponctl drives a real coupond process end to end. Both
// binaries are built into a temporary folder; the node runs on loopback
// ports with a fresh data folder, and couponctl runs in the folder that
// holds data/, so it finds data/admin.token as a user's shell would.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/cmd/internal/proctest"
)

const e2eCodes = 1_000_000

// e2e is a running node and the couponctl binary that drives it.
type e2e struct {
	t    *testing.T
	dir  string // holds data/; couponctl runs here
	ctl  string
	addr string
}

// The binaries, built once without -race even under go test -race: a
// race-built node takes several times longer over a million codes.
var (
	coupondBin = &proctest.Binary{Pkg: "../coupond"}
	ctlBin     = &proctest.Binary{Pkg: "."}
)

func loopbackAddr(t *testing.T) string { return proctest.FreeAddr(t) }

// startE2E starts coupond and waits, with couponctl, until it is ready.
func startE2E(t *testing.T) *e2e {
	t.Helper()
	node := proctest.New(t, coupondBin.Path(t), "--log-level", "warn")
	e := &e2e{t: t, dir: node.Dir, ctl: ctlBin.Path(t), addr: node.HTTPAddr}
	node.Launch()
	// A fresh-cache make test compiles beside this test: the node may be slow to start.
	e.mustRun(exitOK, "cluster", "ready", "--wait", "120s")
	return e
}

// run runs couponctl with args in e.dir and answers its stdout, stderr
// and exit code.
func (e *e2e) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.ctl, args...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "COUPOND_ADDR="+e.addr)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		e.t.Fatalf("couponctl %q: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

func (e *e2e) mustRun(want int, args ...string) (stdout, stderr string) {
	e.t.Helper()
	stdout, stderr, code := e.run(args...)
	if code != want {
		e.t.Fatalf("couponctl %q: exit %d, want %d\nstdout: %.2000s\nstderr: %.2000s", args, code, want, stdout, stderr)
	}
	return stdout, stderr
}

// mustJSON runs a command with --json, wants exit 0 and decodes stdout.
func (e *e2e) mustJSON(out any, args ...string) (stderr string) {
	e.t.Helper()
	stdout, stderr := e.mustRun(exitOK, append(args, "--json")...)
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		e.t.Fatalf("couponctl %q: %v: %.2000s", args, err, stdout)
	}
	return stderr
}

func writeLines(t *testing.T, path string, n int, format string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		fmt.Fprintf(w, format+"\n", i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func TestCouponctlEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs coupond")
	}
	e := startE2E(t)
	work := t.TempDir()

	// A list of a million codes, imported with the progress bar forced on
	// (stderr is a pipe here).
	codesPath := filepath.Join(work, "codes.csv")
	writeLines(t, codesPath, e2eCodes, "CODE-%07d")
	var created struct {
		List struct {
			ID        string `json:"id"`
			Available uint64 `json:"available"`
		} `json:"list"`
		Import struct {
			Imported   uint64 `json:"imported"`
			Duplicates uint64 `json:"duplicates"`
		} `json:"import"`
	}
	progress := e.mustJSON(&created, "lists", "import", "spring", codesPath, "--progress")
	if created.Import.Imported != e2eCodes || created.Import.Duplicates != 0 || created.List.Available != e2eCodes {
		t.Fatalf("import: %+v", created)
	}
	list := created.List.ID
	for _, want := range []string{"import", "100%", "codes/s", "MB"} {
		if !strings.Contains(progress, want) {
			t.Fatalf("the import's progress on stderr lacks %q: %q", want, progress)
		}
	}
	// Without --progress and without a terminal, stderr stays quiet; a
	// code already in the list is a duplicate.
	smallPath := filepath.Join(work, "small.csv")
	if err := os.WriteFile(smallPath, []byte("CODE-0000000\nEXTRA-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, stderr := e.mustRun(exitOK, "lists", "top-up", list, smallPath); stderr != "" || !strings.Contains(out, "imported 1, duplicates 1") {
		t.Fatalf("top-up without --progress: stdout %q, stderr %q", out, stderr)
	}
	// A second list sharing two codes: the import counts them, and the
	// report on the million-code list finds them (walking the small list).
	sharePath := filepath.Join(work, "share.csv")
	if err := os.WriteFile(sharePath, []byte("CODE-0000006\nNEW-1\nCODE-0000005\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _ := e.mustRun(exitOK, "lists", "import", "autumn", sharePath); !strings.Contains(out, "in other lists 2") {
		t.Fatalf("import of shared codes: %q", out)
	}
	var overlaps []struct {
		Name     string   `json:"name"`
		Codes    uint64   `json:"codes"`
		Examples []string `json:"examples"`
	}
	e.mustJSON(&overlaps, "lists", "overlaps", list)
	if len(overlaps) != 1 || overlaps[0].Name != "autumn" || overlaps[0].Codes != 2 ||
		strings.Join(overlaps[0].Examples, " ") != "CODE-0000005 CODE-0000006" {
		t.Fatalf("overlaps of the big list: %+v", overlaps)
	}

	e.mustRun(exitOK, "messages", "put", "welcome", "--name", "Welcome", "--campaign", "spring")
	e.mustRun(exitOK, "messages", "assign", "welcome", list)
	var opened struct {
		SendID   string `json:"send_id"`
		ListID   string `json:"list_id"`
		Reserved uint64 `json:"reserved"`
	}
	const recipients = 20_000 // two requests of the default chunk
	e.mustJSON(&opened, "sends", "open", "s1", "--message", "welcome", "--expect", fmt.Sprint(recipients))
	if opened.ListID != list || opened.Reserved != recipients {
		t.Fatalf("open: %+v", opened)
	}
	recipPath := filepath.Join(work, "recipients.txt")
	writeLines(t, recipPath, recipients, "user-%05d@example.com")
	allocPath := filepath.Join(work, "alloc.csv")
	var alloc struct {
		Recipients int    `json:"recipients"`
		Available  uint64 `json:"available"`
	}
	e.mustJSON(&alloc, "sends", "allocate", "s1", "--file", recipPath, "--out", allocPath)
	if alloc.Recipients != recipients || alloc.Available != e2eCodes+1-recipients {
		t.Fatalf("allocate: %+v", alloc)
	}
	got := map[string]string{} // recipient -> code
	for _, r := range readCSV(t, allocPath) {
		got[r[0]] = r[1]
	}
	if len(got) != recipients {
		t.Fatalf("%d recipients with codes, want %d", len(got), recipients)
	}
	// Allocation is idempotent: the same recipients again get the same codes.
	out, _ := e.mustRun(exitOK, "sends", "allocate", "s1", "user-00042@example.com", "user-00007@example.com")
	for _, r := range []string{"user-00042@example.com", "user-00007@example.com"} {
		if !strings.Contains(out, r) || !strings.Contains(out, got[r]) {
			t.Fatalf("a repeated allocation of %s does not show its code %s:\n%s", r, got[r], out)
		}
	}

	const who = "user-00042@example.com"
	var hist struct {
		Assignments []struct {
			Code, ListID, SendID, MessageID string
		} `json:"assignments"`
	}
	e.mustJSON(&hist, "history", "recipient", who)
	h := hist.Assignments
	if len(h) != 1 || h[0].Code != got[who] {
		t.Fatalf("history of %s: %+v, want code %s", who, h, got[who])
	}
	var code struct {
		State      string `json:"state"`
		Assignment struct {
			Recipient string `json:"recipient"`
			SendID    string `json:"send_id"`
		} `json:"assignment"`
	}
	e.mustJSON(&code, "history", "code", list, got[who])
	if code.State != "assigned" || code.Assignment.Recipient != who || code.Assignment.SendID != "s1" {
		t.Fatalf("code %s: %+v", got[who], code)
	}

	exportPath := filepath.Join(work, "export.csv")
	_, stderr := e.mustRun(exitOK, "sends", "export", "s1", "--out", exportPath, "--progress")
	if !strings.Contains(stderr, "export") || !strings.Contains(stderr, "codes/s") {
		t.Fatalf("the export's progress on stderr: %q", stderr)
	}
	rows := readCSV(t, exportPath)
	distinct := map[string]bool{}
	for _, r := range rows {
		if got[r[0]] != r[1] {
			t.Fatalf("export: %s has %s, allocation gave %s", r[0], r[1], got[r[0]])
		}
		distinct[r[1]] = true
	}
	if len(rows) != recipients || len(distinct) != recipients {
		t.Fatalf("export: %d rows, %d distinct codes, want %d", len(rows), len(distinct), recipients)
	}

	// Human output: tables with the counts.
	out, _ = e.mustRun(exitOK, "lists", "show", list)
	for _, want := range []string{"available:", fmt.Sprint(e2eCodes + 1 - recipients), "used:", fmt.Sprint(recipients), "welcome"} {
		if !strings.Contains(out, want) {
			t.Fatalf("lists show lacks %q:\n%s", want, out)
		}
	}
	// The operator's commands take data/operator.token by themselves.
	if out, _ = e.mustRun(exitOK, "tenants", "ls"); !strings.Contains(out, "default") {
		t.Fatalf("tenants ls:\n%s", out)
	}

	// Exit codes.
	e.mustRun(exitNotFound, "lists", "show", "0000000000000000")
	e.mustRun(exitNotFound, "history", "code", list, "NO-SUCH-CODE")
	e.mustRun(exitAuth, "lists", "ls", "--token", "cpd_wrong")
	e.mustRun(exitAuth, "cluster", "status", "--token-file", filepath.Join(e.dir, "data", "admin.token")) // 403
	e.mustRun(exitUsage, "lists")
	e.mustRun(exitUsage, "sends", "allocate", "s1")
	e.mustRun(exitConflict, "lists", "delete", list) // list_in_use
	e.mustRun(exitConflict, "messages", "put", "welcome", "--channel", "sms")
	e.mustRun(exitOther, "lists", "top-up", list, filepath.Join(work, "missing.csv"))
	if _, stderr := e.mustRun(exitOther, "lists", "withdraw", list, recipPath+"x"); !strings.Contains(stderr, "cannot read") {
		t.Fatalf("a missing file: %q", stderr)
	}
	e.mustRun(exitServer, "lists", "ls", "--addr", loopbackAddr(t), "--retries", "1")
}

// TestCouponctlLifecycleEndToEnd: fallback, release, forecast and expiry
// through couponctl and a real coupond process.
func TestCouponctlLifecycleEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs coupond")
	}
	e := startE2E(t)
	work := t.TempDir()

	var l struct {
		ID           string  `json:"id"`
		FallbackCode *string `json:"fallback_code"`
		ExpiresAt    *string `json:"expires_at"`
		Expired      bool    `json:"expired"`
		Available    uint64  `json:"available"`
		Used         uint64  `json:"used"`
		Released     uint64  `json:"released"`
		FallbackUsed uint64  `json:"fallback_used"`
	}
	e.mustJSON(&l, "lists", "create", "summer", "--fallback-code", "SUMMER-ALL")
	if l.FallbackCode == nil || *l.FallbackCode != "SUMMER-ALL" {
		t.Fatalf("create: %+v", l)
	}
	codesPath := filepath.Join(work, "codes.csv")
	writeLines(t, codesPath, 3, "SUMMER-%d")
	e.mustRun(exitOK, "lists", "top-up", l.ID, codesPath)
	e.mustRun(exitOK, "messages", "put", "promo")
	e.mustRun(exitOK, "messages", "assign", "promo", l.ID)

	// Five recipients, three codes: the last two get the fallback code.
	out, _ := e.mustRun(exitOK, "sends", "allocate", "s1", "a", "b", "c", "d", "e", "--message", "promo", "--on-shortage", "fallback")
	if !strings.Contains(out, "2 of them the fallback code") || strings.Count(out, "SUMMER-ALL") != 2 {
		t.Fatalf("allocate under fallback:\n%s", out)
	}
	if out, _ := e.mustRun(exitOK, "sends", "show", "s1"); !strings.Contains(out, "fallback") {
		t.Fatalf("sends show lacks the policy:\n%s", out)
	}
	e.mustRun(exitConflict, "sends", "allocate", "s2", "x", "--message", "promo") // reject: insufficient_codes

	// Bounces: a got a code, d the fallback, z nothing.
	bounces := filepath.Join(work, "bounces.txt")
	if err := os.WriteFile(bounces, []byte("a\nd\nz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rel map[string]uint64
	e.mustJSON(&rel, "sends", "release", "s1", bounces)
	if rel["released"] != 2 || rel["not_assigned"] != 1 || rel["already_released"] != 0 {
		t.Fatalf("release: %v", rel)
	}
	if out, _ := e.mustRun(exitOK, "sends", "release", "s1", bounces); !strings.Contains(out, "released 0, not assigned 1, already released 2") {
		t.Fatalf("release again: %s", out)
	}
	e.mustJSON(&l, "lists", "show", l.ID)
	if l.Available != 1 || l.Used != 2 || l.Released != 1 || l.FallbackUsed != 1 {
		t.Fatalf("after the release: %+v", l)
	}
	if out, _ := e.mustRun(exitOK, "history", "recipient", "a"); !strings.Contains(out, "released ") {
		t.Fatalf("history of a released recipient:\n%s", out)
	}
	// Erasure: a's one (released) assignment shows an erased form.
	var erased map[string]int
	e.mustJSON(&erased, "history", "erase", "a")
	if len(erased) != 1 || erased["erased"] != 1 {
		t.Fatalf("erase: %v", erased)
	}
	if out, _ := e.mustRun(exitOK, "history", "recipient", "a"); !strings.Contains(out, "a got no code") {
		t.Fatalf("history of an erased recipient:\n%s", out)
	}
	if out, _ := e.mustRun(exitOK, "history", "erase", "a"); !strings.Contains(out, "erased 0 assignments of a") {
		t.Fatalf("second erasure: %s", out)
	}

	var f map[string]any
	e.mustJSON(&f, "lists", "forecast", l.ID, "--recipients", "4")
	if f["needed"] != 4.0 || f["shortfall"] != 3.0 || f["used_last_7_days"] != 3.0 || f["enough"] != false || f["runs_out_at"] == nil {
		t.Fatalf("forecast: %v", f)
	}
	e.mustRun(exitNotFound, "lists", "forecast", l.ID, "--recipients", "4", "--send", "nope")

	// Expiry in the past: no new code; the fallback gone too (a send under
	// fallback without a fallback code answers like reject).
	e.mustJSON(&l, "lists", "update", l.ID, "--expires-at", "2020-01-01", "--clear-fallback")
	if !l.Expired || l.FallbackCode != nil || l.ExpiresAt == nil || *l.ExpiresAt != "2020-01-01T00:00:00Z" {
		t.Fatalf("update: %+v", l)
	}
	if _, stderr := e.mustRun(exitConflict, "sends", "allocate", "s1", "new"); !strings.Contains(stderr, "list_expired") {
		t.Fatalf("allocation on an expired list: %s", stderr)
	}
	e.mustRun(exitOK, "sends", "allocate", "s1", "b") // b keeps its code
	e.mustJSON(&l, "lists", "update", l.ID, "--no-expiry")
	if l.Expired || l.ExpiresAt != nil {
		t.Fatalf("update --no-expiry: %+v", l)
	}
}
