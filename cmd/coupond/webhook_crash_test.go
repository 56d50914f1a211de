package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coupond/coupond/daemon"
)

// alertReceiver is a webhook endpoint that checks every signature and
// accepts alerts only while accept is set.
type alertReceiver struct {
	t      *testing.T
	secret []byte
	accept atomic.Bool

	mu       sync.Mutex
	attempts map[string]int            // alert id -> calls
	accepted map[string]int            // alert id -> 2xx answers
	bodies   map[string]map[string]any // alert id -> last body
}

func (r *alertReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id := req.Header.Get("X-Coupond-Alert-Id")
	ts := req.Header.Get("X-Coupond-Timestamp")
	if got, want := req.Header.Get("X-Coupond-Signature"), daemon.SignAlert(r.secret, ts, body); got != want {
		r.t.Errorf("alert %s: signature %q, want %q", id, got, want)
	}
	var b map[string]any
	if err := json.Unmarshal(body, &b); err != nil {
		r.t.Errorf("alert %s: body %q: %v", id, body, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[id]++
	r.bodies[id] = b
	if !r.accept.Load() {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.accepted[id]++
}

// waitFor polls cond (under the receiver's lock) until it holds.
func (r *alertReceiver) waitFor(what string, cond func() bool) {
	r.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("webhook receiver: no %s after 30s (attempts %v, accepted %v)", what, r.attempts, r.accepted)
		}
	}
}

// TestWebhookAlertSurvivesKill9: a crossing whose allocation was
// acknowledged is in the replicated outbox, so a node killed with kill -9
// before any delivery succeeded still delivers the alert after a restart,
// and alert ids go on from there (no id is reused after the crash).
func TestWebhookAlertSurvivesKill9(t *testing.T) {
	const secret = "crash-test-secret"
	rcv := &alertReceiver{t: t, secret: []byte(secret), attempts: map[string]int{},
		accepted: map[string]int{}, bodies: map[string]map[string]any{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}

	p := newProc(t, "--webhook-url", srv.URL+"/hook", "--webhook-secret-file", secretFile)
	p.Start()
	admin := p.Token("admin.token")
	list := p.createList(admin, "alerts", codesCSV("W", 0, 10))
	p.must(200, nil, "PATCH", "/v1/lists/"+list, admin, "application/json", []byte(`{"low_stock_threshold":5}`))
	p.messageOnList(admin, "m", "Spring", list)
	allocate := func(send string, n int) {
		t.Helper()
		recips := make([]string, n)
		for i := range recips {
			recips[i] = fmt.Sprintf("%s-r%d@example.com", send, i)
		}
		body, _ := json.Marshal(map[string]any{"message_id": "m", "recipients": recips})
		p.must(200, nil, "POST", "/v1/sends/"+send+"/codes", admin, "application/json", body)
	}

	// 10 -> 4 available: below the threshold of 5, alert 1. The receiver
	// refuses it, so it stays in the outbox when the node dies.
	allocate("s1", 6)
	rcv.waitFor("refused attempt of alert 1", func() bool { return rcv.attempts["1"] > 0 })
	p.Kill9()

	rcv.accept.Store(true)
	p.restart()
	rcv.waitFor("delivery of alert 1 after the restart", func() bool { return rcv.accepted["1"] > 0 })
	rcv.mu.Lock()
	b := rcv.bodies["1"]
	rcv.mu.Unlock()
	if b["type"] != "low_stock" || b["list_id"] != list || b["threshold"] != 5.0 || b["available"] != 4.0 {
		t.Fatalf("alert 1 after the restart: %v", b)
	}

	// A top-up re-arms the list; the next crossing is alert 2, not a reused 1.
	p.must(200, nil, "POST", "/v1/lists/"+list+"/codes", admin, "text/csv", codesCSV("X", 0, 10))
	allocate("s2", 10)
	rcv.waitFor("delivery of alert 2", func() bool { return rcv.accepted["2"] > 0 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for id, n := range rcv.accepted {
		if id != "1" && id != "2" {
			t.Errorf("unexpected alert %s delivered %d times", id, n)
		}
	}
	if rcv.accepted["1"] != 1 {
		t.Errorf("alert 1 accepted %d times, want 1 (it was never accepted before the crash)", rcv.accepted["1"])
	}
	if got := rcv.bodies["2"]; got["available"] != 4.0 || !strings.EqualFold(fmt.Sprint(got["list_id"]), list) {
		t.Errorf("alert 2: %v", got)
	}
}
