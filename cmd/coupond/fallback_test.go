package main

// A send under the fallback policy, drawn dry by concurrent clients (SPEC §4
// "Shortage policy and fallback code"; §2 "Idempotent": the same (send,
// recipient) always gets the same code). Acceptance test (c) of issue 17.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	fbCodes      = 3_000          // K: codes of the list
	fbRecipients = 2 * fbCodes    // 2K recipients, so K of them get the fallback
	fbClients    = 32             // concurrent clients
	fbMaxReq     = 12             // recipients per request: 1..fbMaxReq
	fbCode       = "FALLBACK-10%" // the list's fallback code
	fbSend       = "fb"
	fbMessage    = "m-fb"
)

func fbRecipient(i int) string { return fmt.Sprintf("c%05d@fallback.example", i) }

// allocJSON is the JSON answer of an allocation.
type allocJSON struct {
	Assignments []struct {
		Recipient string `json:"recipient"`
		Code      string `json:"code"`
		Fallback  bool   `json:"fallback"`
	} `json:"assignments"`
	Available *uint64 `json:"available"`
}

// lifecycleList is a list view with the counts of SPEC §4.
type lifecycleList struct {
	listJSON
	FallbackCode *string `json:"fallback_code"`
	FallbackUsed uint64  `json:"fallback_used"`
	Released     uint64  `json:"released"`
	Expired      bool    `json:"expired"`
}

func (p *proc) lifecycleList(admin, id string) lifecycleList {
	p.T.Helper()
	var l lifecycleList
	p.must(200, &l, "GET", "/v1/lists/"+id, admin, "", nil)
	return l
}

// countsAddUp is the identity of SPEC §1 that fallback assignments must
// not break.
func (l lifecycleList) countsAddUp() bool {
	return l.Added == l.Available+l.Reserved+l.Used+l.Withdrawn && l.UsedOrDeleted == l.Used+l.Withdrawn
}

// fbAnswer is what one recipient was answered.
type fbAnswer struct {
	code     string
	fallback bool
}

// TestFallbackUnderConcurrentAllocation: 32 clients allocate 2K recipients
// of one send with on_shortage fallback from a list of K codes, in small
// requests, some of them sent twice (one after the other, or two copies at
// once as a client that timed out would). Every recipient gets exactly one
// answer, whatever request answered it; the K codes are handed out once
// each; the other K recipients get the fallback code flagged as such, after
// the drawn codes of their request; and the list's counts add up with
// fallback_used == K.
func TestFallbackUnderConcurrentAllocation(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	start := time.Now()
	p := newProc(t)
	p.Start()
	admin := p.Token("admin.token")

	var l lifecycleList
	p.must(201, &l, "POST", "/v1/lists", admin, "application/json",
		[]byte(`{"name":"fallback","fallback_code":"`+fbCode+`"}`))
	if l.FallbackCode == nil || *l.FallbackCode != fbCode {
		t.Fatalf("created list %+v: fallback_code %v, want %q", l, l.FallbackCode, fbCode)
	}
	var imp importJSON
	p.must(200, &imp, "POST", "/v1/lists/"+l.ID+"/codes", admin, "text/csv", codesCSV("F", 0, fbCodes))
	if imp.Imported != fbCodes {
		t.Fatalf("import: %+v", imp)
	}
	p.messageOnList(admin, fbMessage, "Fallback", l.ID)
	var opened struct {
		SendID string `json:"send_id"`
		ListID string `json:"list_id"`
	}
	p.must(201, &opened, "PUT", "/v1/sends/"+fbSend, admin, "application/json",
		[]byte(`{"message_id":"`+fbMessage+`","on_shortage":"fallback"}`))
	if opened.ListID != l.ID {
		t.Fatalf("send opened on list %q, want %q", opened.ListID, l.ID)
	}

	// Each client sends its own recipients in requests of random size;
	// about one request in five is repeated afterwards, and one in ten is
	// sent twice at once.
	var mu sync.Mutex
	answers := map[string]fbAnswer{} // recipient -> its first answer
	var failures []string
	fail := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, a...))
		}
	}
	var requests, retries, twins int
	var wg sync.WaitGroup
	for c := range fbClients {
		rng := rand.New(rand.NewPCG(seed, uint64(c)))
		var mine []string
		for i := c; i < fbRecipients; i += fbClients {
			mine = append(mine, fbRecipient(i))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(mine) > 0 {
				n := min(len(mine), 1+rng.IntN(fbMaxReq))
				recips := mine[:n]
				mine = mine[n:]
				body, _ := json.Marshal(map[string]any{"message_id": fbMessage, "recipients": recips})
				sends := 1
				switch r := rng.IntN(10); {
				case r == 0:
					sends = 2 // two copies at once
				case r <= 2:
					sends = -2 // a retry after the answer
				}
				var got [][]fbAnswer
				if sends == 2 {
					var twin sync.WaitGroup
					got = make([][]fbAnswer, 2)
					for k := range got {
						twin.Add(1)
						go func() { defer twin.Done(); got[k] = fbAllocate(p, admin, recips, body, fail) }()
					}
					twin.Wait()
				} else {
					got = append(got, fbAllocate(p, admin, recips, body, fail))
					if sends == -2 {
						got = append(got, fbAllocate(p, admin, recips, body, fail))
					}
				}
				mu.Lock()
				requests++
				switch sends {
				case 2:
					twins++
				case -2:
					retries++
				}
				for k, ans := range got {
					if ans == nil {
						continue
					}
					for i, a := range ans {
						rc := recips[i]
						if old, ok := answers[rc]; ok && old != a {
							failures = append(failures, fmt.Sprintf("%q answered %+v, then %+v (copy %d)", rc, old, a, k))
						}
						answers[rc] = a
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d failures, first ones:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	allocated := time.Since(start)

	// One answer per recipient: K distinct codes of the import, K fallbacks.
	if len(answers) != fbRecipients {
		t.Fatalf("%d recipients answered, want %d", len(answers), fbRecipients)
	}
	codes := map[string]string{}
	var fallbacks int
	for rc, a := range answers {
		switch {
		case a.fallback && a.code == fbCode:
			fallbacks++
		case a.fallback || a.code == fbCode:
			t.Fatalf("%q answered %+v: the fallback code and the fallback flag go together", rc, a)
		default:
			codes[rc] = a.code
		}
	}
	seen := map[string]string{}
	for rc, c := range codes {
		if len(c) != 12 || !strings.HasPrefix(c, "F") {
			t.Fatalf("%q got %q, not a code of the import", rc, c)
		}
		if other, dup := seen[c]; dup {
			t.Fatalf("code %s handed out to %q and %q", c, other, rc)
		}
		seen[c] = rc
	}
	if len(codes) != fbCodes || fallbacks != fbRecipients-fbCodes {
		t.Fatalf("%d codes drawn and %d fallbacks, want %d and %d", len(codes), fallbacks, fbCodes, fbRecipients-fbCodes)
	}

	// The node agrees: the export lists exactly the answers, the counts
	// add up, fallback_used counts the fallbacks and used does not.
	exp := p.exportAssignments(admin, fbSend)
	if len(exp) != fbRecipients {
		t.Fatalf("the send exports %d assignments, want %d", len(exp), fbRecipients)
	}
	for _, a := range exp {
		want := answers[a.Recipient]
		if a.Code != want.code || a.Fallback != want.fallback || a.ReleasedAt != nil {
			t.Fatalf("export: %+v, the answer was %+v", a, want)
		}
	}
	got := p.lifecycleList(admin, l.ID)
	if !got.countsAddUp() || got.Added != fbCodes || got.Used != fbCodes || got.Available != 0 ||
		got.Reserved != 0 || got.FallbackUsed != uint64(fbRecipients-fbCodes) {
		t.Fatalf("list after the send: %+v", got)
	}
	s, _, err := p.sendStateOf(admin, fbSend)
	if err != nil || s.Assigned != fbRecipients || s.Reserved != 0 || s.Status != "open" {
		t.Fatalf("send after the allocations: %+v %v", s, err)
	}
	if st := p.codeState(admin, l.ID, code("F", fbCodes-1)); st != "assigned" {
		t.Fatalf("the last code of the list is %q, want assigned", st)
	}

	// A fallback assignment is permanent: after a top-up its recipient
	// still gets the fallback, and a new recipient gets a code.
	p.must(200, &imp, "POST", "/v1/lists/"+l.ID+"/codes", admin, "text/csv", codesCSV("G", 0, 10))
	var fbRc string
	for rc, a := range answers {
		if a.fallback {
			fbRc = rc
			break
		}
	}
	again := fbAllocateOK(t, p, admin, fbRc, "new@fallback.example")
	if again[0] != (fbAnswer{fbCode, true}) || again[1] != (fbAnswer{code("G", 0), false}) {
		t.Fatalf("after a top-up: %q and a new recipient got %+v, want the fallback and %s", fbRc, again, code("G", 0))
	}
	got = p.lifecycleList(admin, l.ID)
	if !got.countsAddUp() || got.Used != fbCodes+1 || got.Available != 9 || got.FallbackUsed != uint64(fbRecipients-fbCodes) {
		t.Fatalf("list after the top-up: %+v", got)
	}
	p.Stop()
	if logs := p.Logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
		logs = logs[strings.Index(logs, "WARNING: DATA RACE"):]
		t.Errorf("the race detector reported a data race in coupond:\n%s", logs[:min(len(logs), 6000)])
	}
	t.Logf("%d requests (%d retried after their answer, %d sent twice at once) by %d clients in %s; total %s",
		requests, retries, twins, fbClients, allocated.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// fbAllocate sends one allocation request and checks its answer: one
// assignment per recipient in request order, and the fallbacks after every
// drawn code (recipients in request order get the codes that can be drawn).
// It answers nil after reporting a failure.
func fbAllocate(p *proc, admin string, recips []string, body []byte, fail func(string, ...any)) []fbAnswer {
	st, b, err := p.try("POST", "/v1/sends/"+fbSend+"/codes", admin, "application/json", bytes.NewReader(body))
	if err != nil || st != 200 {
		fail("allocation of %v: %d %v: %.300s", recips, st, err, b)
		return nil
	}
	var r allocJSON
	if err := json.Unmarshal(b, &r); err != nil || len(r.Assignments) != len(recips) || r.Available == nil {
		fail("allocation of %v: %v: %.300s", recips, err, b)
		return nil
	}
	out := make([]fbAnswer, len(recips))
	for i, a := range r.Assignments {
		if a.Recipient != recips[i] {
			fail("allocation of %v: assignment %d is for %q", recips, i, a.Recipient)
			return nil
		}
		if i > 0 && out[i-1].fallback && !a.Fallback {
			fail("allocation of %v: %q got a code after %q got the fallback: %s", recips, a.Recipient, recips[i-1], b)
			return nil
		}
		out[i] = fbAnswer{a.Code, a.Fallback}
	}
	return out
}

// fbAllocateOK allocates each recipient in a request of its own (the
// order check of fbAllocate holds for new recipients only).
func fbAllocateOK(t *testing.T, p *proc, admin string, recips ...string) []fbAnswer {
	t.Helper()
	var out []fbAnswer
	for _, rc := range recips {
		body, _ := json.Marshal(map[string]any{"recipients": []string{rc}})
		var msg string
		got := fbAllocate(p, admin, []string{rc}, body, func(f string, a ...any) { msg = fmt.Sprintf(f, a...) })
		if got == nil {
			t.Fatal(msg)
		}
		out = append(out, got...)
	}
	return out
}

// exportedAssignment is one assignment of GET /v1/sends/{id}/assignments
// (JSON): released ones carry released_at, fallback ones "fallback": true.
type exportedAssignment struct {
	Recipient  string  `json:"recipient"`
	Code       string  `json:"code"`
	AssignedAt string  `json:"assigned_at"`
	ReleasedAt *string `json:"released_at"`
	Fallback   bool    `json:"fallback"`
}

// exportAssignments reads every assignment of a send, released ones too.
func (p *proc) exportAssignments(token, send string) []exportedAssignment {
	p.T.Helper()
	st, b, err := p.try("GET", "/v1/sends/"+send+"/assignments", token, "", nil)
	if err != nil || st != 200 {
		p.T.Fatalf("assignments of %s: %d %v: %.300s", send, st, err, b)
	}
	var out struct {
		Assignments []exportedAssignment `json:"assignments"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		p.T.Fatalf("assignments of %s: %v: %.300s", send, err, b)
	}
	return out.Assignments
}

// sendStateOf is GET /v1/sends/{send}; ok is false for a 404.
func (p *proc) sendStateOf(token, send string) (s sendState, ok bool, err error) {
	st, b, err := p.try("GET", "/v1/sends/"+send, token, "", nil)
	if err != nil {
		return sendState{}, false, err
	}
	switch st {
	case 404:
		return sendState{}, false, nil
	case 200:
		if err := json.Unmarshal(b, &s); err != nil {
			return sendState{}, false, fmt.Errorf("send %s: %v: %s", send, err, b)
		}
		return s, true, nil
	}
	return sendState{}, false, fmt.Errorf("send %s: status %d: %s", send, st, b)
}
