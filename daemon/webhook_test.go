package daemon_test

// The low-stock webhook, delivered to a
// local receiver. The crossing rules themselves are tested in raftfsm
// (alerts_test.go); these tests show delivery: once per crossing, signed,
// retried until accepted, and not lost when the leader changes.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coupond/coupond/daemon"
	"github.com/coupond/coupond/raftfsm"
)

// delivery is the JSON body of one webhook call.
type delivery struct {
	ID        uint64 `json:"id"`
	Type      string `json:"type"`
	Tenant    string `json:"tenant"`
	ListID    string `json:"list_id"`
	ListName  string `json:"list_name"`
	Threshold uint64 `json:"threshold"`
	Available uint64 `json:"available"`
	At        string `json:"at"`
	ExpiresAt string `json:"expires_at"` // expiry_soon only
}

// receiver is a webhook endpoint that checks every call's signature with
// its own HMAC and answers what answer(n) says for the n-th call (1-based):
// a status, or 0 to hang until the caller gives up.
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	gone   chan struct{} // closed at cleanup: hanging calls return

	mu       sync.Mutex
	answer   func(n int) int
	calls    int
	attempts map[uint64]int // alert id -> calls
	accepted map[uint64]int // alert id -> calls answered 2xx
	first    map[uint64]delivery
	problems []string // what a check found wrong
}

func newReceiver(t *testing.T, secret string, ln net.Listener, answer func(n int) int) *receiver {
	rc := &receiver{t: t, secret: secret, gone: make(chan struct{}), answer: answer,
		attempts: map[uint64]int{}, accepted: map[uint64]int{}, first: map[uint64]delivery{}}
	rc.srv = httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	if ln != nil {
		rc.srv.Listener.Close()
		rc.srv.Listener = ln
	}
	rc.srv.Start()
	t.Cleanup(func() {
		close(rc.gone)
		rc.srv.Close()
	})
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/coupond" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var d delivery
	problem := ""
	switch {
	case err != nil:
		problem = "cannot read body: " + err.Error()
	case r.Method != http.MethodPost || r.URL.Path != "/hooks/coupond":
		problem = "call " + r.Method + " " + r.URL.Path
	case r.Header.Get("Content-Type") != "application/json":
		problem = "content type " + r.Header.Get("Content-Type")
	case json.Unmarshal(body, &d) != nil:
		problem = "body is not JSON: " + string(body)
	case r.Header.Get("X-Coupond-Alert-Id") != strconv.FormatUint(d.ID, 10):
		problem = fmt.Sprintf("alert id header %q, body id %d", r.Header.Get("X-Coupond-Alert-Id"), d.ID)
	}
	// The signature, computed here from the secret alone.
	ts := r.Header.Get("X-Coupond-Timestamp")
	mac := hmac.New(sha256.New, []byte(rc.secret))
	mac.Write([]byte(ts + "." + string(body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if problem == "" && !hmac.Equal([]byte(r.Header.Get("X-Coupond-Signature")), []byte(want)) {
		problem = fmt.Sprintf("alert %d: signature %q does not verify", d.ID, r.Header.Get("X-Coupond-Signature"))
	}
	if sec, err := strconv.ParseInt(ts, 10, 64); problem == "" && (err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute) {
		problem = "timestamp " + ts
	}

	rc.mu.Lock()
	rc.calls++
	status := rc.answer(rc.calls)
	if problem != "" {
		rc.problems = append(rc.problems, problem)
		status = http.StatusBadRequest
	} else {
		rc.attempts[d.ID]++
		if _, ok := rc.first[d.ID]; !ok {
			rc.first[d.ID] = d
		}
		if status >= 200 && status < 300 {
			rc.accepted[d.ID]++
		}
	}
	rc.mu.Unlock()
	if status == 0 {
		select { // hang: the caller's timeout ends the call
		case <-r.Context().Done():
		case <-rc.gone:
		}
		return
	}
	w.WriteHeader(status)
}

// seen answers (calls, accepted per alert id, attempts per alert id, problems), copied.
func (rc *receiver) seen() (int, map[uint64]int, map[uint64]int, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	acc, att := map[uint64]int{}, map[uint64]int{}
	for k, v := range rc.accepted {
		acc[k] = v
	}
	for k, v := range rc.attempts {
		att[k] = v
	}
	return rc.calls, acc, att, append([]string(nil), rc.problems...)
}

func (rc *receiver) firstOf(id uint64) delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.first[id]
}

func (rc *receiver) noProblems() {
	rc.t.Helper()
	if _, _, _, p := rc.seen(); len(p) > 0 {
		rc.t.Fatalf("the receiver found bad calls: %v", p)
	}
}

func randomSecret(t *testing.T) string {
	var b [16]byte
	rand.Read(b[:])
	return "whsec-" + hex.EncodeToString(b[:])
}

// webhookConfig is a node configuration with the webhook on and short retries.
func webhookConfig(t *testing.T, id, url, secret string) daemon.Config {
	return daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: freeAddr(t), NodeID: id,
		LogFormat: "json", LogLevel: "debug", WebhookURL: url, WebhookSecret: secret,
		WebhookTimeout: 300 * time.Millisecond, WebhookRetryMin: 20 * time.Millisecond, WebhookRetryMax: 150 * time.Millisecond}
}

// lowStockList makes a list with threshold and codes, a message m1 with it,
// and answers the list's id.
func lowStockList(cn *clusterNode, admin string, threshold, codes int) string {
	cn.t.Helper()
	var l fullList
	cn.mustJSON(201, &l, "POST", "/v1/lists", admin, map[string]any{"name": "spring", "low_stock_threshold": threshold})
	cn.must(200, nil, "POST", "/v1/lists/"+l.ID+"/codes", admin, "text/csv", csvCodes("WH", 0, codes))
	cn.mustJSON(201, nil, "PUT", "/v1/messages/m1", admin, emailMessage("m1"))
	cn.mustJSON(200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, map[string]string{"list_id": l.ID})
	return l.ID
}

// allocateN gives n new recipients a code on send s1 and answers the list's
// available count after it.
func allocateN(cn *clusterNode, admin string, from, n int) uint64 {
	cn.t.Helper()
	rs := make([]string, n)
	for i := range rs {
		rs[i] = fmt.Sprintf("rcpt-%d", from+i)
	}
	var out struct {
		Available uint64 `json:"available"`
	}
	cn.mustJSON(200, &out, "POST", "/v1/sends/s1/codes", admin, map[string]any{"message_id": "m1", "recipients": rs})
	return out.Available
}

// TestWebhookOncePerCrossing: a list driven across its threshold three
// times, with top-ups in between and allocations below it, makes exactly
// three deliveries, one per crossing, each signed; the secret never
// appears in the node's logs (at debug level).
func TestWebhookOncePerCrossing(t *testing.T) {
	secret := randomSecret(t)
	rc := newReceiver(t, secret, nil, func(int) int { return http.StatusNoContent })
	cn := startClusterNode(t, webhookConfig(t, "node1", rc.url(), secret), nil)
	admin := cn.readToken("admin.token")
	start := time.Now()

	list := lowStockList(cn, admin, 10, 30)
	next, topUp := 0, 30
	for crossing := 1; crossing <= 3; crossing++ {
		// Down to the threshold: no alert yet.
		avail := allocateN(cn, admin, next, 5)
		next += 5
		k := int(avail - 10)
		if avail = allocateN(cn, admin, next, k); avail != 10 {
			t.Fatalf("crossing %d: available %d, want the threshold", crossing, avail)
		}
		next += k
		if got := cn.n.FSM().LastAlertID(); got != uint64(crossing-1) {
			t.Fatalf("crossing %d: %d alerts at the threshold", crossing, got)
		}
		// One below: the crossing.
		if avail = allocateN(cn, admin, next, 1); avail != 9 {
			t.Fatalf("crossing %d: available %d", crossing, avail)
		}
		next++
		waitFor(t, 10*time.Second, fmt.Sprintf("delivery of crossing %d", crossing), func() (bool, string) {
			_, acc, att, _ := rc.seen()
			return acc[uint64(crossing)] == 1, fmt.Sprintf("accepted %v, attempts %v", acc, att)
		})
		// Further down, still low: no new alert (the allocation is applied
		// when its answer arrives).
		allocateN(cn, admin, next, 2)
		next += 2
		if got := cn.n.FSM().LastAlertID(); got != uint64(crossing) {
			t.Fatalf("crossing %d: allocations below the threshold made alert %d", crossing, got)
		}
		// A top-up re-arms the list: 7 + 20 = 27.
		cn.must(200, nil, "POST", "/v1/lists/"+list+"/codes", admin, "text/csv", csvCodes("WH", topUp, 20))
		topUp += 20
	}
	waitFor(t, 10*time.Second, "an empty outbox", func() (bool, string) {
		p := cn.n.FSM().PendingAlerts()
		return len(p) == 0, fmt.Sprintf("%d pending", len(p))
	})
	rc.noProblems()
	calls, acc, att, _ := rc.seen()
	if calls != 3 || len(acc) != 3 || len(att) != 3 {
		t.Fatalf("%d calls, accepted %v, attempts %v; want one call per crossing", calls, acc, att)
	}
	for id := uint64(1); id <= 3; id++ {
		d := rc.firstOf(id)
		at, err := time.Parse(time.RFC3339Nano, d.At)
		if acc[id] != 1 || d.Type != "low_stock" || d.ExpiresAt != "" || d.Tenant != "default" || d.ListID != list || d.ListName != "spring" ||
			d.Threshold != 10 || d.Available != 9 || err != nil || at.Before(start.Add(-time.Second)) || at.After(time.Now()) {
			t.Fatalf("alert %d: accepted %d times, payload %+v", id, acc[id], d)
		}
	}
	logs := cn.logs.String()
	if !strings.Contains(logs, "delivering alerts") {
		t.Fatalf("the node's logs were not captured:\n%s", tailString(logs, 2000))
	}
	if strings.Contains(logs, secret) {
		t.Fatal("the webhook secret appears in the node's logs")
	}
}

// applyCommand applies c through the leader cn's Raft log, as the API
// would, for the lifecycle fields the HTTP layer may not offer.
func applyCommand(cn *clusterNode, c raftfsm.Command) {
	cn.t.Helper()
	f := cn.n.Raft().Apply(raftfsm.Encode(c), 10*time.Second)
	if err := f.Error(); err != nil {
		cn.t.Fatalf("apply %T: %v", c, err)
	}
	if r, ok := f.Response().(*raftfsm.Response); !ok || r.Err != nil {
		cn.t.Fatalf("apply %T: answered %#v", c, f.Response())
	}
}

// TestWebhookExpirySoon: the leader's ticker records an expiry_soon alert
// for each list whose warning time its clock passes while it has codes
// available, and the webhook delivers each once, with expires_at; a list
// whose warning is not due, or that has nothing available, sends nothing;
// once every due list is warned the idle node writes no more log entries;
// a new expires_at re-arms the warning.
func TestWebhookExpirySoon(t *testing.T) {
	secret := randomSecret(t)
	rc := newReceiver(t, secret, nil, func(int) int { return http.StatusOK })
	cn := startClusterNode(t, webhookConfig(t, "node1", rc.url(), secret), nil)
	admin := cn.readToken("admin.token")
	start := time.Now()
	day := 24 * time.Hour
	lists := []struct {
		id      uint64
		name    string
		expires time.Time
		codes   int
	}{
		{0xa1, "soon", start.Add(time.Hour), 5},            // warning due at once
		{0xa2, "later", start.Add(day + 2*time.Second), 4}, // warning due 2 s from now
		{0xa3, "far", start.Add(day + time.Hour), 3},       // not due during the test
		{0xa4, "empty", start.Add(time.Hour), 0},           // due, but nothing to warn about
	}
	for _, l := range lists {
		applyCommand(cn, &raftfsm.CreateList{Tenant: "default", ID: l.id, Name: l.name, Dedupe: true, Threshold: 2,
			At: time.Now().UnixNano(), HasExpiry: true, ExpiresAt: l.expires.UnixNano(), SetWarnDays: true, WarnDays: 1})
		if l.codes > 0 {
			cn.must(200, nil, "POST", fmt.Sprintf("/v1/lists/%016x/codes", l.id), admin, "text/csv", csvCodes(l.name, 0, l.codes))
		}
	}
	check := func(id uint64, l int) {
		t.Helper()
		d := rc.firstOf(id)
		at, err := time.Parse(time.RFC3339Nano, d.At)
		want := lists[l]
		if d.Type != "expiry_soon" || d.ListID != fmt.Sprintf("%016x", want.id) || d.ListName != want.name ||
			d.ExpiresAt != want.expires.UTC().Format(time.RFC3339Nano) || d.Available != uint64(want.codes) ||
			d.Threshold != 2 || d.Tenant != "default" || err != nil || at.Before(start) || at.After(time.Now()) {
			t.Fatalf("alert %d: payload %+v, want the expiry_soon of %+v", id, d, want)
		}
	}
	waitFor(t, 10*time.Second, "the warning of list soon", func() (bool, string) {
		_, acc, att, _ := rc.seen()
		return acc[1] == 1, fmt.Sprintf("accepted %v, attempts %v", acc, att)
	})
	check(1, 0)
	waitFor(t, 10*time.Second, "the warning of list later", func() (bool, string) {
		_, acc, att, _ := rc.seen()
		return acc[2] == 1, fmt.Sprintf("accepted %v, attempts %v", acc, att)
	})
	check(2, 1)
	if at, _ := time.Parse(time.RFC3339Nano, rc.firstOf(2).At); at.Before(lists[1].expires.Add(-day)) {
		t.Fatalf("list later warned at %s, before its warning time %s", at, lists[1].expires.Add(-day))
	}
	waitFor(t, 10*time.Second, "an empty outbox", func() (bool, string) {
		p := cn.n.FSM().PendingAlerts()
		return len(p) == 0, fmt.Sprintf("%d pending", len(p))
	})

	// Idle: rounds go on, but nothing is due, so nothing is proposed.
	idx := cn.n.Raft().LastIndex()
	time.Sleep(3 * time.Second)
	if got := cn.n.Raft().LastIndex(); got != idx {
		t.Fatalf("the idle node's log grew from %d to %d: ticks proposed with nothing due", idx, got)
	}
	if calls, acc, _, _ := rc.seen(); calls != 2 || len(acc) != 2 {
		t.Fatalf("%d calls, accepted %v; want the two warnings once each", calls, acc)
	}

	// A new expires_at re-arms the warning of list soon.
	lists[0].expires = start.Add(2 * time.Hour)
	applyCommand(cn, &raftfsm.UpdateList{Tenant: "default", ID: 0xa1, SetExpiry: true, HasExpiry: true,
		ExpiresAt: lists[0].expires.UnixNano()})
	waitFor(t, 10*time.Second, "the re-armed warning of list soon", func() (bool, string) {
		_, acc, att, _ := rc.seen()
		return acc[3] == 1, fmt.Sprintf("accepted %v, attempts %v", acc, att)
	})
	check(3, 0)
	rc.noProblems()
	if calls, _, _, _ := rc.seen(); calls != 3 {
		t.Fatalf("%d calls, want 3", calls)
	}
}

// TestWebhookRetriesUntilAccepted: a refused connection, a 500, a 503 and a
// call that times out are retried; the alert is then delivered and
// accepted once.
func TestWebhookRetriesUntilAccepted(t *testing.T) {
	secret := randomSecret(t)
	// The receiver's address, with nothing listening on it yet.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := webhookConfig(t, "node1", "http://"+addr+"/hooks/coupond", secret)
	cn := startClusterNode(t, cfg, nil)
	admin := cn.readToken("admin.token")
	lowStockList(cn, admin, 5, 10)
	if avail := allocateN(cn, admin, 0, 6); avail != 4 {
		t.Fatalf("available %d", avail)
	}
	waitFor(t, 10*time.Second, "a refused delivery", func() (bool, string) {
		logs := cn.logs.String()
		return strings.Contains(logs, "alert not delivered") && strings.Contains(logs, "connection refused"),
			tailString(logs, 500)
	})

	// Now a receiver on that address: 500, 503, a hang past the 300 ms
	// limit of an attempt, then 200.
	waitFor(t, 5*time.Second, "the receiver listening on "+addr, func() (bool, string) {
		ln, err = net.Listen("tcp", addr)
		return err == nil, fmt.Sprint(err)
	})
	rc := newReceiver(t, secret, ln, func(n int) int {
		switch n {
		case 1:
			return http.StatusInternalServerError
		case 2:
			return http.StatusServiceUnavailable
		case 3:
			return 0 // hang
		}
		return http.StatusOK
	})
	waitFor(t, 10*time.Second, "the alert accepted", func() (bool, string) {
		_, acc, att, _ := rc.seen()
		return acc[1] == 1 && len(cn.n.FSM().PendingAlerts()) == 0, fmt.Sprintf("accepted %v, attempts %v", acc, att)
	})
	rc.noProblems()
	calls, acc, att, _ := rc.seen()
	if calls != 4 || att[1] != 4 || len(att) != 1 || acc[1] != 1 {
		t.Fatalf("%d calls, attempts %v, accepted %v; want 4 calls of alert 1, the last accepted", calls, att, acc)
	}
	logs := cn.logs.String()
	for _, want := range []string{"status 500", "status 503", "Client.Timeout"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no failed attempt with %q in the logs", want)
		}
	}
	if strings.Contains(logs, secret) {
		t.Fatal("the webhook secret appears in the node's logs")
	}
}

// TestWebhookAcrossLeaderChange: the receiver fails while a crossing
// happens; the leader stops; a new leader finds the alert in the
// replicated outbox and delivers it once the receiver accepts: the alert,
// with the same id, arrives at least once.
func TestWebhookAcrossLeaderChange(t *testing.T) {
	secret := randomSecret(t)
	accepting := false // read by answer, which runs under rc.mu
	rc := newReceiver(t, secret, nil, func(int) int {
		if accepting {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	setAccepting := func() { rc.mu.Lock(); accepting = true; rc.mu.Unlock() }

	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		cfg := webhookConfig(t, fmt.Sprintf("n%d", i+1), rc.url(), secret)
		cfg.LogLevel = "info"
		if i > 0 {
			cfg.Join = nodes[0].n.HTTPAddr()
			cfg.TokenFile = filepath.Join(nodes[0].cfg.DataDir, "operator.token")
		}
		nodes[i] = startClusterNode(t, cfg, nil)
		if i > 0 {
			waitJoined(t, nodes[0], nodes[i])
		}
	}
	op, admin := nodes[0].readToken("operator.token"), nodes[0].readToken("admin.token")
	waitConverged(t, op, nodes...)
	old := leaderAmong(nodes...)
	if old == nil {
		t.Fatal("no single leader")
	}
	var via *clusterNode // a follower: its writes are forwarded
	for _, cn := range nodes {
		if cn != old {
			via = cn
			break
		}
	}
	lowStockList(via, admin, 5, 10)
	if avail := allocateN(via, admin, 0, 6); avail != 4 {
		t.Fatalf("available %d", avail)
	}
	waitFor(t, 10*time.Second, "the old leader's failed attempts", func() (bool, string) {
		_, acc, att, _ := rc.seen()
		return att[1] >= 2, fmt.Sprintf("attempts %v, accepted %v", att, acc)
	})
	if _, acc, _, _ := rc.seen(); len(acc) != 0 {
		t.Fatalf("accepted %v while the receiver refused", acc)
	}

	old.close()
	var rest []*clusterNode
	for _, cn := range nodes {
		if cn != old {
			rest = append(rest, cn)
		}
	}
	var leader *clusterNode
	waitFor(t, 15*time.Second, "a new leader", func() (bool, string) {
		leader = leaderAmong(rest...)
		return leader != nil, "none yet"
	})
	if got := leader.n.FSM().PendingAlerts(); len(got) != 1 || got[0].ID != 1 {
		t.Fatalf("the new leader's outbox: %+v", got)
	}
	setAccepting()
	waitFor(t, 15*time.Second, "the alert delivered by the new leader", func() (bool, string) {
		_, acc, att, _ := rc.seen()
		return acc[1] >= 1 && len(leader.n.FSM().PendingAlerts()) == 0, fmt.Sprintf("attempts %v, accepted %v", att, acc)
	})
	rc.noProblems()
	_, acc, att, _ := rc.seen()
	if len(att) != 1 || len(acc) != 1 {
		t.Fatalf("attempts %v, accepted %v: only alert 1 exists", att, acc)
	}
	if d := rc.firstOf(1); d.Available != 4 || d.Threshold != 5 || d.Type != "low_stock" {
		t.Fatalf("payload %+v", d)
	}
	waitConverged(t, op, rest...)
	for _, cn := range rest {
		if got := cn.n.FSM().PendingAlerts(); len(got) != 0 || cn.n.FSM().LastAlertID() != 1 {
			t.Fatalf("%s: outbox %+v, last alert %d", cn.id, got, cn.n.FSM().LastAlertID())
		}
	}
	t.Logf("%s led, %s took over; alert 1: %d attempts, accepted %d time(s)", old.id, leader.id, att[1], acc[1])
}

// TestWebhookConfig: flags, environment and file of the webhook, and the
// checks of Validate; no error and no usage text shows the secret.
func TestWebhookConfig(t *testing.T) {
	secret := randomSecret(t)
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--data", t.TempDir()}
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	noEnv := env(nil)
	f := func(args []string, getenv func(string) string, wantErr string, wantSecret string) {
		t.Helper()
		var stderr strings.Builder
		c, err := daemon.ParseConfig(append(append([]string(nil), base...), args...), getenv, &stderr)
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%v: %v", args, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("%v: error %v, want one with %q", args, err, wantErr)
		case wantErr == "" && c.WebhookSecret != wantSecret:
			t.Fatalf("%v: secret %q, want %q", args, c.WebhookSecret, wantSecret)
		}
		if err != nil && strings.Contains(err.Error(), secret) || strings.Contains(stderr.String(), secret) {
			t.Fatalf("%v: the secret shows in %v / %s", args, err, stderr.String())
		}
	}
	url := "https://hooks.example.com/coupond"
	f(nil, noEnv, "", "")
	f([]string{"--webhook-url", url, "--webhook-secret", secret}, noEnv, "", secret)
	f([]string{"--webhook-url", url}, env(map[string]string{"COUPOND_WEBHOOK_SECRET": secret}), "", secret)
	f(nil, env(map[string]string{"COUPOND_WEBHOOK_URL": url, "COUPOND_WEBHOOK_SECRET_FILE": file}), "", secret)
	f([]string{"--webhook-url", url, "--webhook-secret-file", file}, noEnv, "", secret)
	f([]string{"--webhook-url", url}, noEnv, "needs a secret", "")
	f([]string{"--webhook-url", "ftp://example.com/x", "--webhook-secret", secret}, noEnv, "http:// or https://", "")
	f([]string{"--webhook-url", "/relative", "--webhook-secret", secret}, noEnv, "http:// or https://", "")
	f([]string{"--webhook-secret", secret}, noEnv, "--webhook-url is not", "")
	f([]string{"--webhook-url", url, "--webhook-secret", secret, "--webhook-secret-file", file}, noEnv, "exclude each other", "")
	f([]string{"--webhook-url", url, "--webhook-secret-file", filepath.Join(t.TempDir(), "none")}, noEnv, "cannot read --webhook-secret-file", "")
	f([]string{"--webhook-url", url, "--webhook-secret", secret, "--webhook-timeout", "0s"}, noEnv, "--webhook-timeout", "")
	// A bad flag prints the usage text, defaults included: the secret of
	// the environment is not among them.
	f([]string{"--no-such-flag"}, env(map[string]string{"COUPOND_WEBHOOK_SECRET": secret, "COUPOND_WEBHOOK_URL": url}), "no-such-flag", "")
	f([]string{"--help"}, env(map[string]string{"COUPOND_WEBHOOK_SECRET": secret}), "help", "")
}
