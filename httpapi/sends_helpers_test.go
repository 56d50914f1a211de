package httpapi_test

// Helpers of the Messages and Sends tests: message, send and allocation
// shapes of SPEC §2, and a fixture that makes a list with codes and an
// e-mail message assigned to it.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// message is the message object of SPEC §2.
type message struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Campaign     string  `json:"campaign"`
	CampaignType string  `json:"campaign_type"`
	Channel      string  `json:"channel"`
	DOI          bool    `json:"doi"`
	Status       string  `json:"status"`
	CouponListID *string `json:"coupon_list_id"`
}

var messageFields = []string{"id", "name", "campaign", "campaign_type", "channel", "doi", "status", "coupon_list_id"}

// sendObj is GET /v1/sends/{id}.
type sendObj struct {
	SendID     string `json:"send_id"`
	MessageID  string `json:"message_id"`
	ListID     string `json:"list_id"`
	Status     string `json:"status"`
	Reserved   uint64 `json:"reserved"`
	Assigned   uint64 `json:"assigned"`
	OnShortage string `json:"on_shortage"`
	CreatedAt  string `json:"created_at"`
}

var sendFields = []string{"send_id", "message_id", "list_id", "status", "reserved", "assigned", "on_shortage", "created_at"}

// openResult is the answer of PUT /v1/sends/{id}.
type openResult struct {
	SendID     string `json:"send_id"`
	ListID     string `json:"list_id"`
	Reserved   uint64 `json:"reserved"`
	OnShortage string `json:"on_shortage"`
}

// pair is one {"recipient","code"} of an allocation.
type pair struct {
	Recipient string `json:"recipient"`
	Code      string `json:"code"`
}

// allocResult is the answer of POST /v1/sends/{id}/codes.
type allocResult struct {
	Assignments []pair `json:"assignments"`
	Available   uint64 `json:"available"`
}

// codes answers the codes of an allocation in request order.
func (a allocResult) codes() []string {
	out := make([]string, len(a.Assignments))
	for i, p := range a.Assignments {
		out[i] = p.Code
	}
	return out
}

// fieldsOf checks that raw is an object with exactly the given keys.
func fieldsOf(t testing.TB, raw []byte, want ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not a JSON object: %s", raw)
	}
	w := append([]string{}, want...)
	sort.Strings(w)
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(w, ",") {
		t.Fatalf("fields %v, want %v: %s", got, w, raw)
	}
	return m
}

// checkTime checks an RFC 3339 UTC time about now.
func checkTime(t testing.TB, field, s string) {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strings.HasSuffix(s, "Z") {
		t.Fatalf("%s %q is not RFC 3339 UTC: %v", field, s, err)
	}
	if d := time.Since(ts); d < -time.Minute || d > time.Hour {
		t.Fatalf("%s %q is not about now", field, s)
	}
}

// emailMsg is an eligible message body.
func emailMsg(name string) map[string]any {
	return map[string]any{"name": name, "campaign": "Campaign " + name, "campaign_type": "standard", "channel": "email", "doi": false}
}

// decodeMessage checks a message answer's status and exact shape.
func decodeMessage(t testing.TB, r response, status int) message {
	t.Helper()
	var m message
	decode(t, r, status, &m)
	fieldsOf(t, r.body, messageFields...)
	return m
}

// putMessage upserts a message and answers it (200 or 201).
func (n *testNode) putMessage(t testing.TB, token, id string, body any) message {
	t.Helper()
	r := n.do(t, "PUT", "/v1/messages/"+id, token, body)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		t.Fatalf("PUT message %s: %s", id, r)
	}
	return decodeMessage(t, r, r.status)
}

// getMessage reads a message (200).
func (n *testNode) getMessage(t testing.TB, token, id string) message {
	t.Helper()
	return decodeMessage(t, n.do(t, "GET", "/v1/messages/"+id, token, nil), http.StatusOK)
}

// assignList assigns a list to a message (200).
func (n *testNode) assignList(t testing.TB, token, msg, list string) message {
	t.Helper()
	m := decodeMessage(t, n.do(t, "PUT", "/v1/messages/"+msg+"/coupon-list", token, map[string]string{"list_id": list}), http.StatusOK)
	if m.CouponListID == nil || *m.CouponListID != list {
		t.Fatalf("assign answered coupon_list_id %v, want %s", m.CouponListID, list)
	}
	return m
}

// openSend opens or updates a send and answers the reply (want is 200 or 201).
func (n *testNode) openSend(t testing.TB, token, send string, body any, want int) openResult {
	t.Helper()
	r := n.do(t, "PUT", "/v1/sends/"+send, token, body)
	var out openResult
	decode(t, r, want, &out)
	fieldsOf(t, r.body, "send_id", "list_id", "reserved", "on_shortage")
	return out
}

// getSend reads a send (200) with its shape checked.
func (n *testNode) getSend(t testing.TB, token, send string) sendObj {
	t.Helper()
	r := n.do(t, "GET", "/v1/sends/"+send, token, nil)
	var s sendObj
	decode(t, r, http.StatusOK, &s)
	fieldsOf(t, r.body, sendFields...)
	checkTime(t, "created_at", s.CreatedAt)
	if s.Status != "open" && s.Status != "closed" {
		t.Fatalf("send status %q", s.Status)
	}
	return s
}

// alloc posts {"message_id"?, "recipients"} and answers the 200 reply.
func (n *testNode) alloc(t testing.TB, token, send, msg string, recips ...string) allocResult {
	t.Helper()
	body := map[string]any{"recipients": recips}
	if msg != "" {
		body["message_id"] = msg
	}
	r := n.do(t, "POST", "/v1/sends/"+send+"/codes", token, body)
	return decodeAlloc(t, r, recips)
}

// decodeAlloc checks a 200 allocation answer: exact shape, one pair per
// request recipient, in request order.
func decodeAlloc(t testing.TB, r response, recips []string) allocResult {
	t.Helper()
	var a allocResult
	decode(t, r, http.StatusOK, &a)
	if len(recips) > 1000 {
		// Big answers: one parse only (encoding/json is slow under -race);
		// small ones check the exact shape.
		if len(a.Assignments) != len(recips) {
			t.Fatalf("%d assignments for %d recipients", len(a.Assignments), len(recips))
		}
		for i, p := range a.Assignments {
			if p.Recipient != recips[i] || p.Code == "" {
				t.Fatalf("assignment %d is %+v, want recipient %q with a code", i, p, recips[i])
			}
		}
		return a
	}
	fieldsOf(t, r.body, "assignments", "available")
	if len(a.Assignments) != len(recips) {
		t.Fatalf("%d assignments for %d recipients", len(a.Assignments), len(recips))
	}
	for i, p := range a.Assignments {
		if p.Recipient != recips[i] || p.Code == "" {
			t.Fatalf("assignment %d is %+v, want recipient %q with a code", i, p, recips[i])
		}
	}
	if len(recips) > 0 {
		var raw struct {
			Assignments []json.RawMessage `json:"assignments"`
		}
		json.Unmarshal(r.body, &raw)
		fieldsOf(t, raw.Assignments[0], "recipient", "code")
	}
	return a
}

// postRecipients sends an allocation body as given.
func (n *testNode) postRecipients(t testing.TB, token, path string, body []byte, ctype, accept string) response {
	t.Helper()
	q := req{method: "POST", path: path, token: token, body: bytes.NewReader(body), ctype: ctype}
	if accept == "" {
		return n.send(t, q)
	}
	return n.sendAccept(t, q, accept)
}

// sendAccept is send with an Accept header (and no Content-Type when
// q.ctype is empty).
func (n *testNode) sendAccept(t testing.TB, q req, accept string) response {
	t.Helper()
	u, err := url.Parse(n.base)
	if err != nil {
		t.Fatal(err)
	}
	u.Opaque, u.RawQuery, _ = strings.Cut(q.path, "?")
	hr, err := http.NewRequest(q.method, n.base, q.body)
	if err != nil {
		t.Fatal(err)
	}
	hr.URL = u
	if q.ctype != "" {
		hr.Header.Set("Content-Type", q.ctype)
	}
	if q.token != "" {
		hr.Header.Set("Authorization", "Bearer "+q.token)
	}
	hr.Header.Set("Accept", accept)
	resp, err := n.client.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	checkOpenAPI(t, q.method, q.path, r)
	return r
}

// parseCSVPairs reads "recipient,code" lines.
func parseCSVPairs(t testing.TB, r response) []pair {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("CSV answer: %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q, want text/csv", ct)
	}
	rd := csv.NewReader(bytes.NewReader(r.body))
	rd.FieldsPerRecord = 2
	recs, err := rd.ReadAll()
	if err != nil {
		t.Fatalf("CSV answer does not parse: %v: %s", err, r)
	}
	out := make([]pair, len(recs))
	for i, rec := range recs {
		out[i] = pair{rec[0], rec[1]}
	}
	return out
}

// fixture is a list of codes and an eligible e-mail message assigned to it.
type fixture struct {
	list, msg string
	codes     []string // in import order
}

var fixtureSeq atomic.Int64

// newFixture makes a list with n codes PREFIX-000000.. and a message
// assigned to it, with fresh names.
func (n *testNode) newFixture(t testing.TB, token string, codes int) fixture {
	t.Helper()
	k := fixtureSeq.Add(1)
	prefix := fmt.Sprintf("F%d-", k)
	f := fixture{list: n.newList(t, token, fmt.Sprintf("fixture-%d", k)), msg: fmt.Sprintf("msg-%d", k)}
	if codes > 0 {
		csvText := codeLines(prefix, 0, codes)
		n.topUp(t, token, f.list, csvText)
		f.codes = strings.Fields(csvText)
	}
	n.putMessage(t, token, f.msg, emailMsg(f.msg))
	n.assignList(t, token, f.msg, f.list)
	return f
}

// sendAssignments answers GET /v1/sends/{id}/assignments as JSON.
func (n *testNode) sendAssignments(t testing.TB, token, send string) []pair {
	t.Helper()
	r := n.do(t, "GET", "/v1/sends/"+send+"/assignments", token, nil)
	var typed struct {
		Assignments []pair `json:"assignments"`
	}
	decode(t, r, http.StatusOK, &typed)
	if len(typed.Assignments) > 1000 {
		// Big answers: one parse, no per-entry shape checks (slow under -race).
		return typed.Assignments
	}
	var out struct {
		Assignments []json.RawMessage `json:"assignments"`
	}
	json.Unmarshal(r.body, &out)
	fieldsOf(t, r.body, "assignments")
	ps := make([]pair, len(out.Assignments))
	for i, raw := range out.Assignments {
		m := fieldsOf(t, raw, "recipient", "code", "assigned_at")
		var at string
		json.Unmarshal(m["assigned_at"], &at)
		checkTime(t, "assigned_at", at)
		json.Unmarshal(raw, &ps[i])
	}
	return ps
}

// recipientPath escapes a recipient as one path segment: every byte
// outside [A-Za-z0-9_~-] is percent-encoded, "." included.
func recipientPath(r string) string {
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		c := r[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '~' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// historyItem is one entry of a recipient's history.
type historyItem struct {
	Code       string `json:"code"`
	ListID     string `json:"list_id"`
	MessageID  string `json:"message_id"`
	SendID     string `json:"send_id"`
	AssignedAt string `json:"assigned_at"`
}

// history answers GET /v1/recipients/{r}/assignments with shapes checked.
func (n *testNode) history(t testing.TB, token, recipient string) []historyItem {
	t.Helper()
	r := n.do(t, "GET", "/v1/recipients/"+recipientPath(recipient)+"/assignments", token, nil)
	var out struct {
		Assignments []json.RawMessage `json:"assignments"`
	}
	decode(t, r, http.StatusOK, &out)
	fieldsOf(t, r.body, "assignments")
	if out.Assignments == nil {
		t.Fatalf(`"assignments" must be a list, not null: %s`, r)
	}
	items := make([]historyItem, len(out.Assignments))
	for i, raw := range out.Assignments {
		fieldsOf(t, raw, "code", "list_id", "message_id", "send_id", "assigned_at")
		json.Unmarshal(raw, &items[i])
		checkTime(t, "assigned_at", items[i].AssignedAt)
	}
	return items
}

// wantCounts checks a list's available, reserved and used counts.
func (n *testNode) wantCounts(t testing.TB, token, list string, available, reserved, used uint64) list {
	t.Helper()
	l := n.getList(t, token, list)
	if l.Available != available || l.Reserved != reserved || l.Used != used {
		t.Fatalf("list counts available=%d reserved=%d used=%d, want %d/%d/%d",
			l.Available, l.Reserved, l.Used, available, reserved, used)
	}
	return l
}

// wantInsufficient checks a 409 insufficient_codes with its details.
func wantInsufficient(t testing.TB, r response, needed, available uint64) {
	t.Helper()
	e := wantError(t, r, http.StatusConflict, "insufficient_codes")
	gn, _ := e["needed"].(float64)
	ga, _ := e["available"].(float64)
	if _, ok := e["needed"]; !ok || uint64(gn) != needed {
		t.Fatalf("needed %v, want %d: %s", e["needed"], needed, r)
	}
	if _, ok := e["available"]; !ok || uint64(ga) != available {
		t.Fatalf("available %v, want %d: %s", e["available"], available, r)
	}
}
