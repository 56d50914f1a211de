package main

// Expiry with real processes (SPEC §4 "Expiry", acceptance point d of
// issue 17): a list stops handing out codes at expires_at by the time in
// the commands, across a kill -9 of the leader around that instant, on
// every node; its expiry_soon warning reaches the webhook at least once,
// always under one alert id, and exactly once when no leader changes.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// expiryCluster starts three nodes that POST alerts to a receiver of the
// test, which accepts them only once accept is set.
func expiryCluster(t *testing.T) (*ctCluster, *alertReceiver) {
	t.Helper()
	const secret = "expiry-test-secret"
	rcv := &alertReceiver{t: t, secret: []byte(secret), attempts: map[string]int{},
		accepted: map[string]int{}, bodies: map[string]map[string]any{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	secretFile := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startCtCluster(t, "--webhook-url", srv.URL+"/hook", "--webhook-secret-file", secretFile)
	return c, rcv
}

// expiringList creates a list (through n) with expires_at and
// expiry_warning_days, tops it up with codes codes and answers its id.
func (c *ctCluster) expiringList(n *ctNode, name string, expires time.Time, warnDays, codes int) string {
	c.t.Helper()
	var l struct {
		ID        string `json:"id"`
		ExpiresAt string `json:"expires_at"`
	}
	body, _ := json.Marshal(map[string]any{"name": name, "expires_at": expires.UTC().Format(time.RFC3339Nano),
		"expiry_warning_days": warnDays})
	c.must(n, 201, &l, "POST", "/v1/lists", c.admin, ctJSON, body)
	if got, err := time.Parse(time.RFC3339Nano, l.ExpiresAt); err != nil || !got.Equal(expires) {
		c.t.Fatalf("list %s: expires_at %q, want %s", name, l.ExpiresAt, expires.UTC().Format(time.RFC3339Nano))
	}
	if codes > 0 {
		c.must(n, 200, nil, "POST", "/v1/lists/"+l.ID+"/codes", c.admin, ctCSV, codesCSV(name, 0, codes))
	}
	return l.ID
}

// expiryAlerts answers the alert ids the receiver saw (attempted or not),
// with the last body of each; it checks that every one is the
// expiry_soon of one of lists (id -> expires_at).
func (r *alertReceiver) expiryAlerts(lists map[string]time.Time) map[string]map[string]any {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]any{}
	for id, b := range r.bodies {
		out[id] = b
		list, _ := b["list_id"].(string)
		exp, ok := lists[list]
		if b["type"] != "expiry_soon" || !ok || b["expires_at"] != exp.UTC().Format(time.RFC3339Nano) ||
			b["available"] == 0.0 || b["tenant"] != "default" {
			r.t.Fatalf("alert %s is not the expiry_soon of one of the lists %v: %v", id, lists, b)
		}
	}
	return out
}

// TestExpiryAcrossLeaderKill: a list expires a few seconds after its
// creation while clients allocate through all three nodes, and the leader
// is killed with kill -9 just before expires_at and started again.
// Every code handed out was assigned (assigned_at in the send's
// assignments) before expires_at, and every answer agrees with those
// assignments; from expires_at on, every node refuses a new recipient with
// 409 list_expired and still answers a known one with its code. The
// expiry_soon alert, refused by the receiver until the leader died, is
// delivered by the next leader: at least once, always under one id.
func TestExpiryAcrossLeaderKill(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	c, rcv := expiryCluster(t)
	L := c.node(c.waitMembers(c.nodes...))
	F := c.others(L.id)[0]

	// Whole seconds: the comparisons below hold at any precision.
	expires := time.Now().Add(8 * time.Second).Truncate(time.Second)
	list := c.expiringList(F, "exp", expires, 1, 20000) // its warning is due at once
	c.must(F, 201, nil, "PUT", "/v1/messages/m1", c.admin, ctJSON,
		[]byte(`{"name":"m1","campaign":"spring","campaign_type":"standard","channel":"email","doi":false}`))
	c.must(F, 200, nil, "PUT", "/v1/messages/m1/coupon-list", c.admin, ctJSON, []byte(`{"list_id":"`+list+`"}`))
	c.must(F, 201, nil, "PUT", "/v1/sends/s1", c.admin, ctJSON, []byte(`{"message_id":"m1"}`))

	// Clients: 4 workers, requests of 5 new recipients through the nodes in
	// turn, each retried (same recipients, next node) after a broken
	// connection or a 503, until it gets a final answer.
	type outcome struct {
		recips   []string
		status   int
		code     string   // error code of a refusal
		codes    []string // of a 200
		answered time.Time
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	stop := expires.Add(3 * time.Second)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, turn := 0, w; time.Now().Before(stop); i++ {
				recips := ctRecipients(fmt.Sprintf("w%d-%d-%%d@example.com", w, i), 0, 5)
				body := ctAllocBody("", recips)
				var o outcome
				for deadline := time.Now().Add(40 * time.Second); ; turn++ {
					n := c.nodes[turn%len(c.nodes)]
					st, b, err := c.call(n, "POST", "/v1/sends/s1/codes", c.admin, ctJSON, body)
					if err == nil && st != 503 {
						o = outcome{recips: recips, status: st, code: ctErrCode(b), answered: time.Now()}
						if st == 200 {
							var a ctAlloc
							if err := json.Unmarshal(b, &a); err != nil || len(a.Assignments) != len(recips) {
								t.Errorf("allocation on %s: %v %.300s", n.id, err, b)
								return
							}
							for k, as := range a.Assignments {
								if as.Recipient != recips[k] {
									t.Errorf("allocation on %s: assignment %d is %+v, want %s", n.id, k, as, recips[k])
									return
								}
								o.codes = append(o.codes, as.Code)
							}
						}
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("allocation of %v: no final answer within 40s (last %d %v %.200s)", recips, st, err, b)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}

	// The warning is recorded by the leader's first tick; the receiver
	// refuses it while that leader lives.
	rcv.waitFor("attempt of the expiry_soon alert", func() bool { return len(rcv.attempts) > 0 })
	// The kill lands from 600 ms before expires_at to 300 ms after it, a
	// new point each run: allocations in flight on the dying leader, and
	// refusals by it or only by its successor.
	killAt := expires.Add(time.Duration(rand.IntN(900)-600) * time.Millisecond)
	time.Sleep(time.Until(killAt))
	L.Kill9()
	killedAt := time.Now()
	rcv.accept.Store(true) // only a later leader can deliver now
	t.Logf("killed the leader %s %s after expires_at", L.id, killedAt.Sub(expires).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	L.Launch()
	L.WaitReady()
	wg.Wait()
	if t.Failed() {
		return
	}
	leader := c.node(c.waitMembers(c.nodes...))

	// Every node, from expires_at on: a new recipient is refused, a known
	// one keeps its code.
	var known string
	var knownCode string
	for _, o := range outcomes {
		if o.status == 200 {
			known, knownCode = o.recips[0], o.codes[0]
			break
		}
	}
	if known == "" {
		t.Fatal("no allocation succeeded before expires_at")
	}
	for _, n := range c.nodes {
		c.mustErr(n, 409, "list_expired", "POST", "/v1/sends/s1/codes", c.admin, ctJSON,
			ctAllocBody("", []string{"late-" + n.id + "@example.com"}))
		var a ctAlloc
		c.must(n, 200, &a, "POST", "/v1/sends/s1/codes", c.admin, ctJSON, ctAllocBody("", []string{known}))
		checkAlloc(t, "a known recipient on "+n.id, a, []string{known}, []string{knownCode})
	}

	// The send's assignments, alike on every node: each assigned before
	// expires_at, and each answer of the clients agrees with them.
	raw := c.sameReads(leader, c.nodes, []ctRead{{path: "/v1/sends/s1/assignments", token: c.admin}})[0]
	var export struct {
		Assignments []struct {
			Recipient  string `json:"recipient"`
			Code       string `json:"code"`
			AssignedAt string `json:"assigned_at"`
		} `json:"assignments"`
	}
	if err := json.Unmarshal(raw, &export); err != nil {
		t.Fatalf("assignments: %v: %.300s", err, raw)
	}
	assigned := map[string]string{}
	codeOwner := map[string]string{}
	var last time.Time
	for _, a := range export.Assignments {
		at, err := time.Parse(time.RFC3339Nano, a.AssignedAt)
		if err != nil {
			t.Fatalf("assignment %+v: %v", a, err)
		}
		if !at.Before(expires) {
			t.Fatalf("%s got code %s at %s, not before expires_at %s", a.Recipient, a.Code, a.AssignedAt, expires.Format(time.RFC3339))
		}
		if at.After(last) {
			last = at
		}
		if other, dup := codeOwner[a.Code]; dup {
			t.Fatalf("code %s assigned to %s and %s", a.Code, other, a.Recipient)
		}
		assigned[a.Recipient], codeOwner[a.Code] = a.Code, a.Recipient
	}
	granted, expired, afterExpiry := 0, 0, 0
	for _, o := range outcomes {
		switch {
		case o.status == 200:
			granted++
			if !o.answered.Before(expires) {
				afterExpiry++
			}
			for k, r := range o.recips {
				if assigned[r] != o.codes[k] {
					t.Fatalf("%s was answered %s, but its assignment is %q", r, o.codes[k], assigned[r])
				}
			}
		case o.status == 409 && o.code == "list_expired":
			expired++
			if o.answered.Before(expires) {
				t.Fatalf("%v refused as expired at %s, before expires_at %s", o.recips, o.answered, expires)
			}
			for _, r := range o.recips {
				if code, ok := assigned[r]; ok {
					t.Fatalf("%v refused as expired, yet %s has code %s", o.recips, r, code)
				}
			}
		default:
			t.Fatalf("allocation of %v answered %d %q", o.recips, o.status, o.code)
		}
	}
	if expired == 0 || granted == 0 {
		t.Fatalf("%d requests granted, %d refused as expired: the run did not cross expires_at under load", granted, expired)
	}
	var l struct {
		Used    uint64 `json:"used"`
		Expired bool   `json:"expired"`
	}
	c.must(leader, 200, &l, "GET", "/v1/lists/"+list, c.admin, nil, nil)
	if !l.Expired || l.Used != uint64(len(export.Assignments)) {
		t.Fatalf("the list after expires_at: %+v, want expired with %d used", l, len(export.Assignments))
	}

	// The warning: delivered by a later leader, always as the same alert.
	rcv.waitFor("delivery of the expiry_soon alert", func() bool { return len(rcv.accepted) > 0 })
	alerts := rcv.expiryAlerts(map[string]time.Time{list: expires})
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(alerts) != 1 || len(rcv.accepted) != 1 {
		t.Fatalf("alerts %v, accepted %v: want one alert id for the one warning", rcv.attempts, rcv.accepted)
	}
	t.Logf("%d requests granted (%d answered after expires_at, last assignment %s before it), %d refused as expired; leader %s killed, %s leads; alert attempts %v, accepted %v",
		granted, afterExpiry, expires.Sub(last).Round(time.Millisecond), expired, L.id, leader.id, rcv.attempts, rcv.accepted)
}

// TestExpiryWarningOnce: with no leader change, each due warning is
// delivered exactly once: one due at creation, one due two seconds after
// it (sent no earlier); a list with warnings off, and one with nothing
// available, send nothing; a few seconds more bring no repeat.
func TestExpiryWarningOnce(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	c, rcv := expiryCluster(t)
	rcv.accept.Store(true)
	leader := c.node(c.waitMembers(c.nodes...))
	F := c.others(leader.id)[0]
	before, err := c.view(leader)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	soon := now.Add(time.Hour).Truncate(time.Second)
	later := now.Add(24*time.Hour + 2*time.Second) // its warning: 2 s from now
	lists := map[string]time.Time{}
	lists[c.expiringList(F, "soon", soon, 1, 10)] = soon
	laterID := c.expiringList(F, "later", later, 1, 10)
	lists[laterID] = later
	c.expiringList(F, "off", soon, 0, 10)  // warnings off
	c.expiringList(F, "empty", soon, 1, 0) // nothing to hand out: nothing to warn about

	rcv.waitFor("both warnings accepted", func() bool { return len(rcv.accepted) == 2 })
	time.Sleep(4 * time.Second) // four more rounds of the leader: no repeat
	alerts := rcv.expiryAlerts(lists)
	after, err := c.view(leader)
	if err != nil {
		t.Fatal(err)
	}
	if after.Term != before.Term || after.Leader == nil || *after.Leader != leader.id {
		t.Skipf("the leader changed during the run (term %d -> %d): exactly once is not promised then", before.Term, after.Term)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(alerts) != 2 {
		t.Fatalf("alerts %v, want the warnings of soon and later", rcv.attempts)
	}
	for id := range alerts {
		if rcv.attempts[id] != 1 || rcv.accepted[id] != 1 {
			t.Fatalf("alert %s: %d attempts, %d accepted; want exactly one delivery", id, rcv.attempts[id], rcv.accepted[id])
		}
		if alerts[id]["list_id"] == laterID {
			at, err := time.Parse(time.RFC3339Nano, fmt.Sprint(alerts[id]["at"]))
			if err != nil || at.Before(later.Add(-24*time.Hour)) {
				t.Fatalf("the warning of list later at %v (%v), before its time %s", alerts[id]["at"], err, later.Add(-24*time.Hour))
			}
		}
	}
}
