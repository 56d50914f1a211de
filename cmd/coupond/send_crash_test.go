package main

// A big send killed in flight (SPEC §2 allocation rules: "the same (send,
// recipient) always gets the same code, across retries, chunks, nodes and
// leader changes"; "a 2xx reply means the change is durable"; codes are
// handed out in import order). A request too big for one Raft entry becomes
// a Reserve entry and then several Allocate chunks (httpapi/sends.go), so a
// crash can land between them.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	sendCodes     = 300_000 // the list: S00000000000 ... in import order
	sendWorkers   = 2       // goroutines sending small requests, each its own recipients
	sendSmallReqs = 10      // small requests per worker, one after the other
	sendSmallSize = 10_000  // recipients per small request
	sendBigSize   = 60_000  // recipients of the big request
	bigRecipLen   = 200     // bytes per big recipient: about 5,000 per Raft entry, 12 entries
	// sendTotal is K, the number of recipients of the whole send.
	sendTotal = sendWorkers*sendSmallReqs*sendSmallSize + sendBigSize

	sendID    = "s"
	messageID = "m"
)

func smallRecipient(i int) string { return fmt.Sprintf("r%07d@small.example", i) }

// bigRecipient is bigRecipLen bytes long, so the big request needs a Reserve
// entry and a dozen Allocate chunks.
func bigRecipient(i int) string {
	s := fmt.Sprintf("big-%07d@", i)
	s += strings.Repeat("mailbox.", bigRecipLen/8)[:bigRecipLen-len(s)-len("example")] + "example"
	return s
}

func init() {
	if len(bigRecipient(0)) != bigRecipLen || len(bigRecipient(sendBigSize-1)) != bigRecipLen {
		panic("test helper: big recipients have the wrong length")
	}
}

// sendRequest is one allocation request of the send; it is sent again,
// unchanged, after the crash.
type sendRequest struct {
	name   string
	recips []string
	body   []byte
}

func newSendRequest(name string, recips []string) sendRequest {
	body, err := json.Marshal(map[string]any{"message_id": messageID, "recipients": recips})
	if err != nil {
		panic(err)
	}
	return sendRequest{name: name, recips: recips, body: body}
}

// sendPlan is every request of the send: per worker its small requests in
// order, and the big one.
type sendPlan struct {
	small [][]sendRequest
	big   sendRequest
}

func newSendPlan() *sendPlan {
	pl := &sendPlan{small: make([][]sendRequest, sendWorkers)}
	for w := range sendWorkers {
		for j := range sendSmallReqs {
			from := (w*sendSmallReqs + j) * sendSmallSize
			recips := make([]string, sendSmallSize)
			for i := range recips {
				recips[i] = smallRecipient(from + i)
			}
			pl.small[w] = append(pl.small[w], newSendRequest(fmt.Sprintf("small w%d #%d", w, j), recips))
		}
	}
	recips := make([]string, sendBigSize)
	for i := range recips {
		recips[i] = bigRecipient(i)
	}
	pl.big = newSendRequest("big", recips)
	if len(pl.big.body) < 4<<20 {
		panic("test plan: the big request must span several Raft entries")
	}
	return pl
}

// sendOutcome is what the client saw of one request.
type sendOutcome struct {
	req    *sendRequest
	sent   bool
	status int
	body   []byte
	err    error
	took   time.Duration
}

// sendRun is one pass over every request of the plan.
type sendRun struct {
	outs    []*sendOutcome // the small requests, then the big one
	big     *sendOutcome
	bigSent chan struct{} // closed once the big body was handed to the connection
	bigDone chan struct{} // closed once the big request returned
	done    chan struct{} // closed once every request returned or was given up
}

// progressReader closes sent once its whole body was read.
type progressReader struct {
	r    *bytes.Reader
	once sync.Once
	sent chan struct{}
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if pr.r.Len() == 0 {
		pr.once.Do(func() { close(pr.sent) })
	}
	return n, err
}

// startSend sends every request of the plan: each worker its small requests
// in order, stopping at the first broken connection (the server is gone),
// and the big request once worker 0 has had bigAfter answers. Answers are
// asked for as CSV (recipient,code lines in request order).
func startSend(p *proc, token string, pl *sendPlan, bigAfter int) *sendRun {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	client := &http.Client{Transport: tr, Timeout: 150 * time.Second}
	run := &sendRun{bigSent: make(chan struct{}), bigDone: make(chan struct{}), done: make(chan struct{})}
	post := func(o *sendOutcome, body io.Reader, size int) {
		o.sent = true
		start := time.Now()
		defer func() { o.took = time.Since(start) }()
		req, err := http.NewRequest("POST", p.URL("/v1/sends/"+sendID+"/codes"), body)
		if err != nil {
			o.err = err
			return
		}
		req.ContentLength = int64(size)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/csv")
		resp, err := client.Do(req)
		if err != nil {
			o.err = err
			return
		}
		o.status = resp.StatusCode
		o.body, o.err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	startBig := make(chan struct{})
	var startOnce sync.Once
	var wg sync.WaitGroup
	for w := range pl.small {
		var outs []*sendOutcome
		for j := range pl.small[w] {
			o := &sendOutcome{req: &pl.small[w][j]}
			outs = append(outs, o)
			run.outs = append(run.outs, o)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w == 0 {
				defer startOnce.Do(func() { close(startBig) })
			}
			for j, o := range outs {
				if w == 0 && j == bigAfter {
					startOnce.Do(func() { close(startBig) })
				}
				post(o, bytes.NewReader(o.req.body), len(o.req.body))
				if o.err != nil {
					return
				}
			}
		}()
	}
	run.big = &sendOutcome{req: &pl.big}
	run.outs = append(run.outs, run.big)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(run.bigDone)
		<-startBig
		post(run.big, &progressReader{r: bytes.NewReader(pl.big.body), sent: run.bigSent}, len(pl.big.body))
	}()
	go func() {
		wg.Wait()
		tr.CloseIdleConnections()
		close(run.done)
	}()
	return run
}

// wait waits for every request of the run. If the run hangs, the process's
// goroutines are dumped (SIGQUIT) into the failure.
func (run *sendRun) wait(t *testing.T, p *proc, limit time.Duration) {
	t.Helper()
	select {
	case <-run.done:
		return
	case <-time.After(limit):
	}
	var pending []string
	for _, o := range run.outs {
		if o.sent && o.status == 0 && o.err == nil {
			pending = append(pending, o.req.name)
		}
	}
	if p.Cmd != nil {
		p.Cmd.Process.Signal(syscall.SIGQUIT)
		<-p.Done
		p.Cmd = nil
	}
	logs := p.Logs.String()
	if i := strings.Index(logs, "SIGQUIT"); i >= 0 {
		logs = logs[i:]
	}
	t.Fatalf("the send's requests did not return within %s (waiting: %v); coupond's goroutines:\n%s",
		limit, pending, logs[:min(len(logs), 100_000)])
}

// codes decodes a 200 CSV answer: the code of each recipient of the
// request, in request order.
func (o *sendOutcome) codes(t *testing.T) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(o.body), "\n"), "\n")
	if len(lines) != len(o.req.recips) {
		t.Fatalf("%s: %d answer lines for %d recipients: %.200s", o.req.name, len(lines), len(o.req.recips), o.body)
	}
	out := make([]string, len(lines))
	for i, line := range lines {
		rc, c, ok := strings.Cut(line, ",")
		if !ok || rc != o.req.recips[i] || c == "" || strings.Contains(c, ",") {
			t.Fatalf("%s: answer line %d is %q, want recipient %q and its code", o.req.name, i, line, o.req.recips[i])
		}
		out[i] = c
	}
	return out
}

// sendState is GET /v1/sends/s.
type sendState struct {
	Status   string `json:"status"`
	ListID   string `json:"list_id"`
	Reserved uint64 `json:"reserved"`
	Assigned uint64 `json:"assigned"`
}

// sendState answers the send's state; ok is false for a 404.
func (p *proc) sendState(token string) (s sendState, ok bool, err error) {
	st, b, err := p.try("GET", "/v1/sends/"+sendID, token, "", nil)
	if err != nil {
		return sendState{}, false, err
	}
	switch st {
	case 404:
		return sendState{}, false, nil
	case 200:
		if err := json.Unmarshal(b, &s); err != nil {
			return sendState{}, false, fmt.Errorf("send: %v: %s", err, b)
		}
		return s, true, nil
	}
	return sendState{}, false, fmt.Errorf("send: status %d: %s", st, b)
}

// recipientCodes answers the codes of a recipient's mailing history.
func (p *proc) recipientCodes(token, recipient string) ([]string, error) {
	st, b, err := p.try("GET", "/v1/recipients/"+url.PathEscape(recipient)+"/assignments", token, "", nil)
	if err != nil {
		return nil, err
	}
	if st != 200 {
		return nil, fmt.Errorf("history of %s: status %d: %s", recipient, st, b)
	}
	var h struct {
		Assignments []struct {
			Code   string `json:"code"`
			SendID string `json:"send_id"`
		} `json:"assignments"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("history of %s: %v: %s", recipient, err, b)
	}
	var out []string
	for _, a := range h.Assignments {
		if a.SendID != sendID {
			return nil, fmt.Errorf("history of %s: send %q", recipient, a.SendID)
		}
		out = append(out, a.Code)
	}
	return out, nil
}

// sendAssignments reads GET /v1/sends/s/assignments as CSV: recipient ->
// code, failing on a recipient listed twice. A send that does not exist has none.
func (p *proc) sendAssignments(token string) map[string]string {
	p.T.Helper()
	req, err := http.NewRequest("GET", p.URL("/v1/sends/"+sendID+"/assignments"), nil)
	if err != nil {
		p.T.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/csv")
	resp, err := (&http.Client{Timeout: 120 * time.Second}).Do(req)
	if err != nil {
		p.T.Fatalf("assignments: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.T.Fatalf("assignments: %v", err)
	}
	out := map[string]string{}
	if resp.StatusCode == 404 {
		return out
	}
	if resp.StatusCode != 200 {
		p.T.Fatalf("assignments: status %d: %.300s", resp.StatusCode, b)
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		rc, c, ok := strings.Cut(line, ",")
		if !ok || strings.Contains(c, ",") {
			p.T.Fatalf("assignments: bad line %q", line)
		}
		if old, dup := out[rc]; dup {
			p.T.Fatalf("assignments: recipient %q listed twice (codes %q and %q)", rc, old, c)
		}
		out[rc] = c
	}
	return out
}

// checkCodes checks that the codes are distinct codes of the import and,
// with head, that they are exactly its first len(codes) codes: none
// skipped, none foreign.
func checkCodes(t *testing.T, what string, codes map[string]string, head bool) {
	t.Helper()
	seen := make([]bool, sendCodes)
	for rc, c := range codes {
		i, err := strconv.Atoi(strings.TrimPrefix(c, "S"))
		if !strings.HasPrefix(c, "S") || err != nil || i < 0 || i >= sendCodes || c != code("S", i) {
			t.Fatalf("%s: recipient %q has %q, not a code of the import", what, rc, c)
		}
		if head && i >= len(codes) {
			t.Fatalf("%s: recipient %q has code #%d of the import, but only %d codes were handed out: codes were skipped", what, rc, i, len(codes))
		}
		if seen[i] {
			t.Fatalf("%s: code %s handed out twice", what, c)
		}
		seen[i] = true
	}
}

// killMoment waits during run for the moment to kill the process and
// describes it. Each lands while the big request is in flight, at a random
// point of it. With again, the node is killed a second time, at a random
// point of the retries.
type killMoment struct {
	name  string
	again bool
	wait  func(t *testing.T, p *proc, token string, run *sendRun, rng *rand.Rand) string
}

var killMoments = []killMoment{
	// Soon after the big body was sent: the server reads it, counts its new
	// recipients and applies its Reserve entry.
	{"big-body-sent", false, func(t *testing.T, p *proc, token string, run *sendRun, rng *rand.Rand) string {
		select {
		case <-run.bigSent:
		case <-run.done:
			return "every request returned before the big body was sent"
		}
		d := time.Duration(rng.IntN(30_000)) * time.Microsecond
		time.Sleep(d)
		return fmt.Sprintf("%s after the big body was sent", d)
	}},
	// The send holds codes: the big request's Reserve entry was applied and
	// its chunks have not drawn them yet. The hold must survive two crashes.
	{"big-reserved", true, func(t *testing.T, p *proc, token string, run *sendRun, rng *rand.Rand) string {
		for {
			select {
			case <-run.bigDone:
				return "too late: the big request returned before a hold was seen"
			default:
			}
			s, ok, err := p.sendState(token)
			if err != nil {
				t.Logf("poll: %v", err)
			}
			if ok && s.Reserved > 0 {
				d := time.Duration(rng.IntN(10_000)) * time.Microsecond
				time.Sleep(d)
				return fmt.Sprintf("%s after the send held %d codes (assigned %d)", d, s.Reserved, s.Assigned)
			}
			time.Sleep(time.Millisecond)
		}
	}},
	// The big request's first chunk was applied (its recipient #j has a
	// code); Raft may have applied more of them in the same batch.
	{"big-chunks", false, func(t *testing.T, p *proc, token string, run *sendRun, rng *rand.Rand) string {
		j := rng.IntN(5_000)
		for {
			select {
			case <-run.bigDone:
				return "too late: the big request returned before its recipient #" + strconv.Itoa(j) + " was seen"
			default:
			}
			codes, err := p.recipientCodes(token, bigRecipient(j))
			if err != nil {
				t.Logf("poll: %v", err)
			}
			if len(codes) > 0 {
				return fmt.Sprintf("once recipient #%d of the big request had a code", j)
			}
			time.Sleep(time.Millisecond)
		}
	}},
}

// TestKill9MidBigSend: kill -9 in the middle of a big send (two workers of
// small requests and one request of several Raft entries), at three kinds of
// moments, each on a fresh node (one of them is killed again while it is
// retried). After each restart every 2xx reply is still there, and retrying
// every request of the send gives the recipients already served the same
// codes and serves the rest from the pool in import order: no duplicate,
// nothing lost, nothing skipped.
func TestKill9MidBigSend(t *testing.T) {
	start := time.Now()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	pl := newSendPlan()
	var bigCut atomic.Int32
	// The nodes run side by side: each moment waits for an event of its own
	// node, not for a time.
	t.Run("kill", func(t *testing.T) {
		for i, m := range killMoments {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			t.Run(m.name, func(t *testing.T) {
				t.Parallel()
				if killMidBigSend(t, pl, m, rng) {
					bigCut.Add(1)
				}
			})
		}
	})
	if !t.Failed() && bigCut.Load() == 0 {
		t.Errorf("no kill landed while the big request was in flight: its Reserve and chunks were not cut")
	}
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}

// newSendNode starts a fresh node with a list of sendCodes codes S... and
// message m of that list; it returns the admin token and the list id.
func newSendNode(t *testing.T) (p *proc, admin, listID string) {
	p = newProc(t)
	p.Start()
	admin = p.Token("admin.token")
	listID = p.createList(admin, "big-send", codesCSV("S", 0, sendCodes))
	p.messageOnList(admin, messageID, "Spring sale", listID)
	return p, admin, listID
}

// killMidBigSend runs one crash (two with m.again) and the recovery; it
// reports whether the first kill cut the big request.
func killMidBigSend(t *testing.T, pl *sendPlan, m killMoment, rng *rand.Rand) bool {
	start := time.Now()
	p, admin, listID := newSendNode(t)
	setup := time.Since(start)
	served := map[string]string{} // recipient -> code, of every 200 so far

	// The send, killed in flight. The big request starts once worker 0 had
	// 1 to 3 answers, so some recipients were served before the kill.
	run := startSend(p, admin, pl, 1+rng.IntN(3))
	at := m.wait(t, p, admin, run, rng)
	bigCut, listed := killAndRestart(t, p, admin, listID, run, at, served)
	if m.again && len(listed) < sendTotal {
		// Kill again while every request is retried, once the send has a
		// random number of codes more.
		target := uint64(len(listed) + 1 + rng.IntN(sendTotal-len(listed)))
		run := startSend(p, admin, pl, 0)
		at := "during the retries " + randomProgress(t, p, admin, run, target)
		_, again := killAndRestart(t, p, admin, listID, run, at, served)
		for rc, c := range listed {
			if again[rc] != c {
				t.Fatalf("second kill -9: %q had %q, now %q", rc, c, again[rc])
			}
		}
		listed = again
	}
	restarted := time.Since(start)

	// Retry every request, as the engine would: the same answer to those
	// served (and to those the node had assigned without an answer), the
	// rest served now.
	retryAt := time.Now()
	retry := startSend(p, admin, pl, 0)
	retry.wait(t, p, 120*time.Second)
	retryTook := time.Since(retryAt)
	final := map[string]string{}
	for _, o := range retry.outs {
		if o.err != nil || o.status != 200 {
			t.Fatalf("%s retried after the restart: %d %v: %.300s", o.req.name, o.status, o.err, o.body)
		}
		for i, c := range o.codes(t) {
			rc := o.req.recips[i]
			if old, ok := served[rc]; ok && old != c {
				t.Fatalf("%s retried: %q got %q; it was answered %q before", o.req.name, rc, c, old)
			}
			if old, ok := listed[rc]; ok && old != c {
				t.Fatalf("%s retried: %q got %q; the send listed %q for it after the restart", o.req.name, rc, c, old)
			}
			final[rc] = c
		}
	}
	if len(final) != sendTotal {
		t.Fatalf("after the retries %d recipients have a code, want %d", len(final), sendTotal)
	}
	checkCodes(t, "replies to the retries", final, true)

	// The node agrees: one code per recipient, K used, K assigned.
	after := p.sendAssignments(admin)
	if len(after) != sendTotal {
		t.Fatalf("the send lists %d assignments, want %d", len(after), sendTotal)
	}
	for rc, c := range final {
		if after[rc] != c {
			t.Fatalf("the send lists %q for %q; the reply said %q", after[rc], rc, c)
		}
	}
	for _, rc := range []string{smallRecipient(0), smallRecipient(sendTotal - sendBigSize - 1), bigRecipient(0), bigRecipient(sendBigSize - 1)} {
		if codes, err := p.recipientCodes(admin, rc); err != nil || len(codes) != 1 || codes[0] != final[rc] {
			t.Fatalf("history of %q: %v %v, want one assignment of %q", rc, codes, err, final[rc])
		}
	}
	s, _, err := p.sendState(admin)
	if err != nil {
		t.Fatal(err)
	}
	l := p.list(admin, listID)
	if s.Assigned != sendTotal || l.Used != sendTotal || l.Added != sendCodes || l.Withdrawn != 0 ||
		l.Available+l.Reserved+l.Used+l.Withdrawn != l.Added || l.Reserved != s.Reserved {
		t.Fatalf("after the retries: send %+v, list %+v", s, l)
	}
	if s.Reserved != 0 {
		t.Logf("after the retries the send still holds %d codes", s.Reserved)
	}

	// Closing the send gives back whatever it still holds.
	var closed sendState
	p.must(200, &closed, "POST", "/v1/sends/"+sendID+"/close", admin, "", nil)
	l = p.list(admin, listID)
	if closed.Status != "closed" || closed.Reserved != 0 || closed.Assigned != sendTotal ||
		l.Reserved != 0 || l.Used != sendTotal || l.Available != l.Added-l.Used {
		t.Fatalf("after close: send %+v, list %+v", closed, l)
	}
	p.Stop()
	if logs := p.Logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
		logs = logs[strings.Index(logs, "WARNING: DATA RACE"):]
		t.Errorf("the race detector reported a data race in coupond:\n%s", logs[:min(len(logs), 6000)])
	}
	t.Logf("setup %s, crash and restart done at %s, retries %s (big %s), total %s", setup.Round(time.Millisecond),
		restarted.Round(time.Millisecond), retryTook.Round(time.Millisecond), retry.big.took.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond))
	return bigCut
}

// randomProgress waits until the send has target codes assigned, or every
// request of run returned, and describes the moment.
func randomProgress(t *testing.T, p *proc, token string, run *sendRun, target uint64) string {
	for {
		select {
		case <-run.done:
			return "after every request returned"
		default:
		}
		s, ok, err := p.sendState(token)
		if err != nil {
			t.Logf("poll: %v", err)
		}
		if ok && s.Assigned >= target {
			return fmt.Sprintf("when the send had %d codes assigned (target %d), %d held", s.Assigned, target, s.Reserved)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// killAndRestart kills the node during run (at describes when), restarts
// it, and checks that every 200 of run survived with the code it gave (and
// the code any earlier 200 gave), adding them to served; that what the send
// lists is the head of the import; and that the counts agree. It reports
// whether the kill cut the big request, and what the send lists.
func killAndRestart(t *testing.T, p *proc, admin, listID string, run *sendRun, at string, served map[string]string) (bigCut bool, listed map[string]string) {
	t.Helper()
	p.Kill9()
	run.wait(t, p, 60*time.Second)
	var answered, cut, unsent, newly int
	for _, o := range run.outs {
		switch {
		case !o.sent:
			unsent++
		case o.err != nil:
			cut++
		case o.status == 200:
			answered++
			for i, c := range o.codes(t) {
				rc := o.req.recips[i]
				old, seen := served[rc]
				if seen && old != c {
					t.Fatalf("%s: %q got %q; it was answered %q before", o.req.name, rc, c, old)
				}
				if !seen {
					newly++
				}
				served[rc] = c
			}
		default:
			t.Fatalf("%s before the kill: status %d: %.300s", o.req.name, o.status, o.body)
		}
	}
	bigCut = run.big.sent && run.big.err != nil
	t.Logf("kill -9 %s: %d requests answered 200 (%d recipients served by them first), %d cut, %d not sent; big request cut: %v",
		at, answered, newly, cut, unsent, bigCut)
	checkCodes(t, "replies before the kill", served, false)

	// Every 2xx survived: the send lists each served recipient with its
	// code, and what it lists is the head of the import.
	p.restart()
	listed = p.sendAssignments(admin)
	for rc, c := range served {
		if got, ok := listed[rc]; !ok || got != c {
			t.Fatalf("after kill -9: %q was answered %q with a 200; the send lists %q (listed: %v)", rc, c, got, ok)
		}
	}
	checkCodes(t, "assignments after the restart", listed, true)
	s, exists, err := p.sendState(admin)
	if err != nil {
		t.Fatal(err)
	}
	l := p.list(admin, listID)
	if exists && s.Assigned != uint64(len(listed)) || !exists && len(listed) != 0 || l.Used != uint64(len(listed)) ||
		l.Reserved != s.Reserved || l.Added != sendCodes || l.Available+l.Reserved+l.Used+l.Withdrawn != l.Added {
		t.Fatalf("after kill -9: send %+v (exists %v), list %+v, %d assignments listed", s, exists, l, len(listed))
	}
	big := 0
	for i := range sendBigSize {
		if _, ok := listed[bigRecipient(i)]; ok {
			big++
		}
	}
	t.Logf("after the restart: %d assigned (%d of the big request), %d held", len(listed), big, s.Reserved)
	return bigCut, listed
}

// TestRetryOfServedBigSend: retrying a big allocation whose recipients all
// have codes (what an engine does after a crash, for the requests it got no
// answer to) answers the same codes.
func TestRetryOfServedBigSend(t *testing.T) {
	pl := newSendPlan()
	p, admin, _ := newSendNode(t)
	var first []string
	var took []time.Duration
	for pass := range 2 {
		start := time.Now()
		st, b, err := p.try("POST", "/v1/sends/"+sendID+"/codes", admin, "application/json", bytes.NewReader(pl.big.body))
		took = append(took, time.Since(start))
		if err != nil || st != 200 {
			t.Fatalf("pass %d: %d %v: %.300s", pass, st, err, b)
		}
		var r struct {
			Assignments []struct{ Recipient, Code string }
		}
		if err := json.Unmarshal(b, &r); err != nil || len(r.Assignments) != sendBigSize {
			t.Fatalf("pass %d: %v, %d assignments", pass, err, len(r.Assignments))
		}
		for i, a := range r.Assignments {
			if pass == 0 {
				first = append(first, a.Code)
			} else if a.Code != first[i] {
				t.Fatalf("retry: %s got %s, then %s", a.Recipient, first[i], a.Code)
			}
		}
	}
	// Timings are logged, not asserted: performance belongs to bench/.
	t.Logf("serving %d recipients took %s, the retry %s", sendBigSize, took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
}
