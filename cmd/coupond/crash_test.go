package main

// Durability tests with a real process (SPEC: "a 2xx reply means the change
// is durable; a single node survives kill -9"; DESIGN: "an import is staged
// in chunks under its upload id and made visible by one commit entry, so a
// crash mid-upload leaves nothing half-imported").

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/coupond/coupond/cmd/internal/proctest"
	"github.com/coupond/coupond/pool"
	"github.com/coupond/coupond/raftfsm"
)

// skipBug skips a test that shows a known bug, unless COUPOND_BUG_TESTS=1
// asks to see it fail.
func skipBug(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("COUPOND_BUG_TESTS") != "1" {
		t.Skip(msg)
	}
}

// restart runs the process on its data folder and waits until it leads and
// has applied its whole log. It does not wait for /readyz: see
// TestRestartBecomesReady.
func (p *proc) restart() {
	p.T.Helper()
	p.Launch()
	p.waitApplied()
}

// waitApplied sends a write that changes nothing (revoking a token that does
// not exist) until it is answered: the answer comes after every earlier log
// entry was applied. 401 and 503 are normal while the log replays (the
// operator token itself may still be in the log).
func (p *proc) waitApplied() {
	p.T.Helper()
	deadline := time.Now().Add(90 * time.Second)
	op := p.Token("operator.token")
	for {
		select {
		case <-p.Done:
			p.T.Fatalf("coupond exited during its restart:\n%s", proctest.Tail(p.Logs.String(), 4000))
		default:
		}
		st, body, err := p.try("DELETE", "/v1/tokens/tok_crash_test_barrier", op, "", nil)
		if err == nil && st == 404 {
			return
		}
		if err == nil && st != 503 && st != 401 {
			p.T.Fatalf("barrier: status %d: %s", st, body)
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("coupond has not applied its log 90s after a restart (last: %d %s %v)", st, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// try sends one request; unlike do, a broken connection is an error, not a failure.
func (p *proc) try(method, path, token, contentType string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequest(method, p.URL(path), body)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 120 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// must sends a request, checks its status and decodes the JSON answer into out.
func (p *proc) must(want int, out any, method, path, token, contentType string, body []byte) {
	p.T.Helper()
	st, b := p.do(method, path, token, contentType, bytes.NewReader(body))
	if st != want {
		p.T.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			p.T.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// appliedIndex is the state machine's applied index as /v1/cluster shows it.
func (p *proc) appliedIndex() uint64 {
	p.T.Helper()
	var c struct {
		Applied uint64 `json:"applied_index"`
	}
	p.must(200, &c, "GET", "/v1/cluster", p.Token("operator.token"), "", nil)
	return c.Applied
}

// loadedIndex is the applied index the last run found in Pebble at start
// ("state loaded"): what survived on disk before any replay.
func (p *proc) loadedIndex() uint64 {
	p.T.Helper()
	logs := p.Logs.String()
	i := strings.LastIndex(logs, `"message":"state loaded"`)
	if i < 0 {
		p.T.Fatal("no \"state loaded\" line in the logs")
	}
	line := logs[strings.LastIndex(logs[:i], "\n")+1:]
	line = line[:strings.Index(line, "\n")]
	var ev struct {
		Applied uint64 `json:"applied_index"`
	}
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		p.T.Fatalf("state loaded line %q: %v", line, err)
	}
	return ev.Applied
}

// appendCode appends prefix followed by i zero-padded to width digits.
func appendCode(b []byte, prefix string, i, width int) []byte {
	b = append(b, prefix...)
	var d [20]byte
	s := strconv.AppendInt(d[:0], int64(i), 10)
	for k := len(s); k < width; k++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// code is the i-th code of codesCSV(prefix, ...).
func code(prefix string, i int) string { return string(appendCode(nil, prefix, i, 12-len(prefix))) }

// codesCSV is one code a line, codes prefix+i for i in [from, from+n): every
// code is 12 bytes, 13 with its line end.
func codesCSV(prefix string, from, n int) []byte {
	b := make([]byte, 0, n*13)
	for i := from; i < from+n; i++ {
		b = appendCode(b, prefix, i, 12-len(prefix))
		b = append(b, '\n')
	}
	return b
}

func init() {
	if c := code("A", 7); c != "A00000000007" || len(codesCSV("P1", 5, 1)) != 13 {
		panic("test helper: code layout changed: " + c)
	}
}

type listJSON struct {
	ID            string `json:"id"`
	Name          string `json:"name"`
	Dedupe        bool   `json:"dedupe"`
	Added         uint64 `json:"added"`
	Available     uint64 `json:"available"`
	Reserved      uint64 `json:"reserved"`
	Used          uint64 `json:"used"`
	Withdrawn     uint64 `json:"withdrawn"`
	UsedOrDeleted uint64 `json:"used_or_deleted"`
	CreatedAt     string `json:"created_at"`
}

type importJSON struct {
	Imported   uint64 `json:"imported"`
	Duplicates uint64 `json:"duplicates"`
	Size       uint64 `json:"size"`
}

// createList imports codes (CSV) as a new list and returns its id.
func (p *proc) createList(admin, name string, csv []byte) string {
	p.T.Helper()
	var created struct {
		List listJSON `json:"list"`
	}
	p.must(201, &created, "POST", "/v1/lists?name="+name, admin, "text/csv", csv)
	return created.List.ID
}

// messageOnList creates an e-mail message (name, campaign "spring") that
// may have codes, and gives it the list.
func (p *proc) messageOnList(admin, message, name, list string) {
	p.T.Helper()
	p.must(201, nil, "PUT", "/v1/messages/"+message, admin, "application/json",
		[]byte(`{"name":"`+name+`","campaign":"spring","campaign_type":"standard","channel":"email","doi":false}`))
	p.must(200, nil, "PUT", "/v1/messages/"+message+"/coupon-list", admin, "application/json", []byte(`{"list_id":"`+list+`"}`))
}

func (p *proc) list(admin, id string) listJSON {
	p.T.Helper()
	var l listJSON
	p.must(200, &l, "GET", "/v1/lists/"+id, admin, "", nil)
	return l
}

// codeState answers "available", "withdrawn", ... or "" for a 404.
func (p *proc) codeState(admin, list, c string) string {
	p.T.Helper()
	st, b := p.do("GET", "/v1/lists/"+list+"/codes/"+c, admin, "", nil)
	switch st {
	case 404:
		return ""
	case 200:
		var out struct{ Code, State string }
		if err := json.Unmarshal(b, &out); err != nil || out.Code != c {
			p.T.Fatalf("code %s: %s (%v)", c, b, err)
		}
		return out.State
	}
	p.T.Fatalf("code %s: status %d: %s", c, st, b)
	return ""
}

// openState opens a stopped node's Pebble folder the way the daemon does.
func openState(t *testing.T, data string) (*raftfsm.FSM, func()) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(data, "state"), &pebble.Options{DisableWAL: true, Logger: quietPebble{t}})
	if err != nil {
		t.Fatalf("cannot open state: %v", err)
	}
	f, err := raftfsm.New(db)
	if err != nil {
		db.Close()
		t.Fatalf("cannot load state: %v", err)
	}
	return f, func() { db.Close() }
}

// quietPebble keeps Pebble's info lines out of the test output.
type quietPebble struct{ t *testing.T }

func (quietPebble) Infof(string, ...any)             {}
func (q quietPebble) Errorf(format string, a ...any) { q.t.Logf("pebble: "+format, a...) }
func (q quietPebble) Fatalf(format string, a ...any) { panic(fmt.Sprintf("pebble: "+format, a...)) }

func stateDigest(t *testing.T, data string) string {
	t.Helper()
	f, closeDB := openState(t, data)
	defer closeDB()
	return f.Digest()
}

func parseListID(t *testing.T, s string) uint64 {
	t.Helper()
	id, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("list id %q: %v", s, err)
	}
	return id
}

// TestRestartBecomesReady: a node that restarts with its state must report
// ready again without help.
func TestRestartBecomesReady(t *testing.T) {
	p := newProc(t)
	p.Start()
	p.Stop()
	p.Launch()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, b, err := p.try("GET", "/readyz", "", "", nil)
		if err == nil && st == 200 {
			return
		}
		if time.Now().After(deadline) {
			var c map[string]any
			_, cb, _ := p.try("GET", "/v1/cluster", p.Token("operator.token"), "", nil)
			json.Unmarshal(cb, &c)
			t.Fatalf("/readyz 15s after a restart: %d %s %v; cluster: applied_index %v commit_index %v leader %v",
				st, bytes.TrimSpace(b), err, c["applied_index"], c["commit_index"], c["leader"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKill9AfterImport: every 2xx of a create+import, a top-up and a
// withdrawal survives kill -9, when the state machine never flushed Pebble
// (the whole state comes back from the Raft log) and when it flushed at a
// clean stop in between (the log replay must skip what Pebble has).
func TestKill9AfterImport(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	t.Run("unflushed", func(t *testing.T) { kill9AfterImport(t, false) })
	t.Run("flushed", func(t *testing.T) { kill9AfterImport(t, true) })
}

// firstCodes (A00000000000 ...) is in size_test.go.
const topUpCodes = 50_000 // B00000000000 ...

func kill9AfterImport(t *testing.T, flushFirst bool) {
	start := time.Now()
	p := newProc(t)
	p.Start()
	admin := p.Token("admin.token")
	before := p.appliedIndex()

	var created struct {
		List   listJSON   `json:"list"`
		Import importJSON `json:"import"`
	}
	p.must(201, &created, "POST", "/v1/lists?name=crash", admin, "text/csv", codesCSV("A", 0, firstCodes))
	if created.Import != (importJSON{firstCodes, 0, firstCodes}) {
		t.Fatalf("create and import: %+v", created.Import)
	}
	id := created.List.ID
	var flushed uint64 // applied index Pebble holds on disk
	if flushFirst {
		p.Stop() // Close flushes Pebble
		p.restart()
		if flushed = p.loadedIndex(); flushed <= before {
			t.Fatalf("after a clean stop Pebble had applied index %d, want above %d", flushed, before)
		}
	}

	// Top-up: 1,000 known codes, 50,000 new ones, 5,000 of them twice.
	body := codesCSV("A", firstCodes-1000, 1000)
	body = append(body, codesCSV("B", 0, topUpCodes)...)
	body = append(body, codesCSV("B", 0, 5000)...)
	var res importJSON
	p.must(200, &res, "POST", "/v1/lists/"+id+"/codes", admin, "text/csv", body)
	if res != (importJSON{topUpCodes, 6000, firstCodes + topUpCodes}) {
		t.Fatalf("top-up: %+v", res)
	}
	// Withdraw 1,000 + 100 codes, 5 unknown.
	body = append(codesCSV("A", 1000, 1000), codesCSV("B", 0, 100)...)
	body = append(body, codesCSV("X", 0, 5)...)
	var wd map[string]uint64
	p.must(200, &wd, "POST", "/v1/lists/"+id+"/codes/withdraw", admin, "text/csv", body)
	if wd["withdrawn"] != 1100 || wd["not_found"] != 5 || wd["already_used"] != 0 {
		t.Fatalf("withdraw: %v", wd)
	}
	want := p.list(admin, id)
	lastApplied := p.appliedIndex()
	p.Kill9()

	p.restart()
	loaded := p.loadedIndex()
	t.Logf("Pebble held applied index %d after kill -9; the log replayed up to %d", loaded, lastApplied)
	if loaded >= lastApplied {
		t.Fatalf("Pebble held applied index %d after kill -9: the replay was not exercised (want below %d)", loaded, lastApplied)
	}
	if !flushFirst && loaded > before {
		t.Fatalf("Pebble held applied index %d: something flushed the import before the kill", loaded)
	}
	if flushFirst && loaded < flushed {
		t.Fatalf("Pebble held applied index %d, below the %d flushed at the clean stop", loaded, flushed)
	}

	if got := p.list(admin, id); got != want {
		t.Fatalf("list after kill -9:\n got %+v\nwant %+v", got, want)
	}
	if want.Added != firstCodes+topUpCodes || want.Withdrawn != 1100 || want.Available != firstCodes+topUpCodes-1100 {
		t.Fatalf("counts: %+v", want)
	}
	// A sample of code states, and a random one.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	sample := map[string]string{
		code("A", 0): "available", code("A", 999): "available", code("A", 1000): "withdrawn",
		code("A", 1999): "withdrawn", code("A", 2000): "available", code("A", firstCodes-1): "available",
		code("B", 0): "withdrawn", code("B", 99): "withdrawn", code("B", 100): "available",
		code("B", topUpCodes-1): "available", code("B", topUpCodes): "", code("A", firstCodes): "", code("X", 0): "",
	}
	for range 100 {
		i := rng.IntN(firstCodes)
		st := "available"
		if i >= 1000 && i < 2000 {
			st = "withdrawn"
		}
		sample[code("A", i)] = st
		j := rng.IntN(topUpCodes)
		st = "available"
		if j < 100 {
			st = "withdrawn"
		}
		sample[code("B", j)] = st
	}
	for c, st := range sample {
		if got := p.codeState(admin, id, c); got != st {
			t.Fatalf("code %s is %q after kill -9, want %q", c, got, st)
		}
	}
	p.Stop()

	// The Pebble state: the list's codes are exactly the imported ones, in import order.
	f, closeDB := openState(t, p.Data)
	lst := f.Pools().Get(parseListID(t, id))
	if lst == nil || lst.Len() != firstCodes+topUpCodes {
		closeDB()
		t.Fatalf("pool after restart: %v", lst)
	}
	buf := make([]byte, 0, 16)
	for pos := uint32(0); pos < lst.Len(); pos++ {
		var wantCode []byte
		wantState := pool.Available
		if pos < firstCodes {
			wantCode = appendCode(buf[:0], "A", int(pos), 11)
			if pos >= 1000 && pos < 2000 {
				wantState = pool.Withdrawn
			}
		} else {
			wantCode = appendCode(buf[:0], "B", int(pos-firstCodes), 11)
			if pos < firstCodes+100 {
				wantState = pool.Withdrawn
			}
		}
		if got := lst.Code(pos); !bytes.Equal(got, wantCode) {
			closeDB()
			t.Fatalf("code at position %d is %q, want %q", pos, got, wantCode)
		}
		if got := lst.StateOf(pos); got != wantState {
			closeDB()
			t.Fatalf("code at position %d is %v, want %v", pos, got, wantState)
		}
	}
	digest := f.Digest()
	closeDB()

	// Determinism: a second clean restart on the same folder, and a node that
	// rebuilds everything from a copy of the Raft log alone, reach the same state.
	p.restart()
	p.Stop()
	if got := stateDigest(t, p.Data); got != digest {
		t.Fatalf("digest after a second clean restart %s, want %s", got, digest)
	}
	q := newProc(t)
	for _, name := range []string{"raft.db", "operator.token", "admin.token"} {
		copyFile(t, filepath.Join(p.Data, name), filepath.Join(q.Data, name))
	}
	q.restart()
	q.Stop()
	if got := stateDigest(t, q.Data); got != digest {
		t.Fatalf("digest of a replay of the whole log %s, want %s", got, digest)
	}
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// bigUpload (size_test.go) is the size of the uploads killed in flight:
// 1,000,000 codes, 13 MB, about 13 staged Raft entries of 1 MiB; with
// -tags long 3,000,000 codes, 39 MB, about 38 entries.

type uploadResult struct {
	status int
	body   []byte
	err    error
}

// uploadAndKill streams bigUpload codes prefix+i to path through a pipe and
// kills the process with SIGKILL once killAt bytes were handed to the
// connection (killAt = the body size: right after the whole body was sent),
// after waiting delay more. It returns what the client saw.
func uploadAndKill(t *testing.T, p *proc, path, token, prefix string, killAt int64, delay time.Duration) uploadResult {
	t.Helper()
	total := int64(bigUpload * 13)
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", p.URL(path), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = total
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/csv")
	resc := make(chan uploadResult, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 120 * time.Second}).Do(req)
		if err != nil {
			resc <- uploadResult{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resc <- uploadResult{status: resp.StatusCode, body: b, err: err}
	}()
	reached := make(chan int64, 1)
	go func() {
		buf := make([]byte, 0, 64<<10)
		var written int64
		signaled := false
		for i := 0; i < bigUpload; i++ {
			buf = appendCode(buf, prefix, i, 12-len(prefix))
			buf = append(buf, '\n')
			if len(buf) < 64<<10-16 && i < bigUpload-1 {
				continue
			}
			n, err := pw.Write(buf)
			written += int64(n)
			buf = buf[:0]
			if err != nil {
				break
			}
			if !signaled && written >= killAt && killAt < total {
				reached <- written
				signaled = true
			}
		}
		pw.Close()
		if !signaled {
			reached <- written
		}
	}()
	var res uploadResult
	select {
	case n := <-reached:
		time.Sleep(delay)
		p.Kill9()
		t.Logf("kill -9 after %d of %d bytes (+%s)", n, total, delay)
		pr.CloseWithError(errors.New("killed"))
		res = <-resc
	case res = <-resc:
		// The server answered before the kill point: kill right away.
		p.Kill9()
		pr.CloseWithError(errors.New("killed"))
		t.Logf("the upload was answered before its kill point: %d %s %v", res.status, res.body, res.err)
	case <-time.After(90 * time.Second):
		pr.CloseWithError(errors.New("timed out"))
		t.Fatal("the upload did not reach its kill point within 90s")
	}
	return res
}

// killPoints are the bytes after which uploads are killed: one early, one
// late, one right after the whole body was sent.
func killPoints(t *testing.T) []int64 {
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill point seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	total := int64(bigUpload * 13)
	return []int64{
		total/20 + rng.Int64N(total*35/100), // 5%..40%
		total*45/100 + rng.Int64N(total/2),  // 45%..95%
		total,
	}
}

// TestKill9MidTopUp: a top-up killed in flight leaves the list with all of
// it or none of it; the counts never show a part, staged chunks left behind
// change nothing, and the retried upload gives the right result.
func TestKill9MidTopUp(t *testing.T) {
	start := time.Now()
	p := newProc(t)
	p.Start()
	admin := p.Token("admin.token")
	id := p.createList(admin, "known", codesCSV("K", 0, 1000))
	p.must(200, nil, "POST", "/v1/lists/"+id+"/codes/withdraw", admin, "text/csv", codesCSV("K", 0, 10))

	var lastPrefix string
	var lastWhole bool
	for i, at := range killPoints(t) {
		prefix := fmt.Sprintf("P%d", i)
		before := p.list(admin, id)
		res := uploadAndKill(t, p, "/v1/lists/"+id+"/codes", admin, prefix, at, 0)
		p.restart()
		after := p.list(admin, id)
		first, last := code(prefix, 0), code(prefix, bigUpload-1)
		whole := after.Added == before.Added+bigUpload
		switch {
		case whole:
			if after.Available != before.Available+bigUpload || after.Withdrawn != before.Withdrawn {
				t.Fatalf("kill point %d: counts %+v after %+v", i, after, before)
			}
			if p.codeState(admin, id, first) != "available" || p.codeState(admin, id, last) != "available" {
				t.Fatalf("kill point %d: the list grew by the upload but its first or last code is missing", i)
			}
		case after == before:
			if s := p.codeState(admin, id, first); s != "" {
				t.Fatalf("kill point %d: the counts did not change but the upload's first code is %q", i, s)
			}
		default:
			t.Fatalf("kill point %d: part of the upload is visible: before %+v, after %+v", i, before, after)
		}
		if res.err == nil && res.status/100 == 2 && !whole {
			t.Fatalf("kill point %d: the upload was answered %d but is gone after kill -9", i, res.status)
		}
		t.Logf("kill point %d: upload %s after restart (client saw status %d, %v)", i,
			map[bool]string{true: "whole", false: "absent"}[whole], res.status, res.err)
		lastPrefix, lastWhole = prefix, whole
	}

	// The retried upload (a new upload id) gives the right result.
	before := p.list(admin, id)
	var res importJSON
	p.must(200, &res, "POST", "/v1/lists/"+id+"/codes", admin, "text/csv", codesCSV(lastPrefix, 0, bigUpload))
	want := importJSON{bigUpload, 0, before.Available + bigUpload}
	if lastWhole {
		want = importJSON{0, bigUpload, before.Available}
	}
	if res != want {
		t.Fatalf("retried upload: %+v, want %+v", res, want)
	}
	after := p.list(admin, id)
	if after.Added != before.Added+res.Imported || after.Available != before.Available+res.Imported || after.Withdrawn != 10 {
		t.Fatalf("after the retry: %+v (before %+v)", after, before)
	}
	if p.codeState(admin, id, code(lastPrefix, bigUpload-1)) != "available" {
		t.Fatal("the retried upload's last code is missing")
	}
	p.Stop()
	reportStaged(t, p.Data)
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

// TestKill9MidCreateImport: a create+import killed in flight leaves the list
// whole or absent.
func TestKill9MidCreateImport(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	start := time.Now()
	// The subject is the disk across a kill: the plain binary.
	p := newProcOf(t, fastBinary(t))
	p.Start()
	admin := p.Token("admin.token")
	// Early, late, and a moment after the whole body was sent: often while
	// the commit entry is in the log but not yet applied or answered.
	points := killPoints(t)
	delays := []time.Duration{0, 0, 1500 * time.Millisecond}
	for i, at := range points {
		name := fmt.Sprintf("big-%d", i)
		prefix := fmt.Sprintf("C%d", i)
		res := uploadAndKill(t, p, "/v1/lists?name="+name, admin, prefix, at, delays[i])
		p.restart()
		var all struct{ Lists []listJSON }
		p.must(200, &all, "GET", "/v1/lists", admin, "", nil)
		var found []listJSON
		for _, l := range all.Lists {
			if l.Name == name {
				found = append(found, l)
			}
			if l.Added != bigUpload || l.Available != bigUpload {
				t.Fatalf("kill point %d: list %+v is not whole", i, l)
			}
		}
		switch len(found) {
		case 0:
			if res.err == nil && res.status/100 == 2 {
				t.Fatalf("kill point %d: the create+import was answered %d but is gone after kill -9", i, res.status)
			}
		case 1:
			l := found[0]
			if p.codeState(admin, l.ID, code(prefix, 0)) != "available" || p.codeState(admin, l.ID, code(prefix, bigUpload-1)) != "available" {
				t.Fatalf("kill point %d: list %s lacks its first or last code", i, l.ID)
			}
		default:
			t.Fatalf("kill point %d: %d lists named %s", i, len(found), name)
		}
		t.Logf("kill point %d: list %s after restart (client saw status %d, %v)", i,
			map[bool]string{true: "whole", false: "absent"}[len(found) == 1], res.status, res.err)
	}
	p.Stop()
	reportStaged(t, p.Data)
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

// reportStaged counts the staged import chunks that no committed batch names
// (uploads cut by a crash): they are invisible, but they stay in Pebble and
// in every snapshot.
func reportStaged(t *testing.T, data string) {
	t.Helper()
	db, err := pebble.Open(filepath.Join(data, "state"), &pebble.Options{DisableWAL: true, ReadOnly: true, Logger: quietPebble{t}})
	if err != nil {
		t.Fatalf("cannot open state: %v", err)
	}
	defer db.Close()
	committed := map[string]bool{}
	scanPrefix(t, db, []byte{'b'}, func(k, v []byte) { committed[string(v)] = true })
	var chunks, bytes, uploads int
	seen := map[string]bool{}
	scanPrefix(t, db, []byte{'u'}, func(k, v []byte) {
		up := string(k[1:17])
		if committed[up] {
			return
		}
		chunks++
		bytes += len(v)
		if !seen[up] {
			seen[up] = true
			uploads++
		}
	})
	t.Logf("staged chunks of uncommitted uploads left in Pebble: %d chunks of %d uploads, %d bytes", chunks, uploads, bytes)
}

func scanPrefix(t *testing.T, db *pebble.DB, prefix []byte, fn func(k, v []byte)) {
	t.Helper()
	upper := append([]byte(nil), prefix...)
	upper[len(upper)-1]++
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		fn(it.Key(), v)
	}
}
