package httpapi_test

// Shared helpers of the HTTP-level tests: an in-process node (daemon.Start)
// driven by a plain net/http client, and assertions on the API's JSON shapes.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/coupond/coupond/daemon"
)

// testNode is one running node with its bootstrap tokens.
type testNode struct {
	node     *daemon.Node
	dir      string
	base     string // http://host:port
	operator string // bootstrap operator token (DATA/operator.token)
	admin    string // bootstrap admin token of the "default" tenant (DATA/admin.token)
	client   *http.Client
	// t started the node; it fails for answers of doRaw that
	// docs/openapi.yaml does not allow (doRaw has no test of its own).
	t testing.TB

	closeOnce sync.Once
	closeErr  error
}

type nodeOpts struct {
	maxBody int64
	log     *zerolog.Logger // nil: discard logs
}

// startNode starts a fresh single node in a temporary folder; it is closed
// when the test ends (or earlier by stop).
func startNode(t testing.TB, o nodeOpts) *testNode {
	t.Helper()
	dir := t.TempDir()
	log := zerolog.Nop()
	if o.log != nil {
		log = *o.log
	}
	cfg := daemon.Config{
		DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", NodeID: "node1",
		LogFormat: "json", LogLevel: "debug", MaxBody: o.maxBody,
	}
	n, err := daemon.Start(cfg, log)
	if err != nil {
		t.Fatalf("cannot start node: %v", err)
	}
	tn := &testNode{
		node: n, dir: dir, base: "http://" + n.HTTPAddr(), t: t,
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 16, DisableCompression: true,
		}},
	}
	t.Cleanup(func() {
		if err := tn.stop(); err != nil {
			t.Errorf("cannot close node: %v", err)
		}
	})
	tn.operator = tn.readToken(t, "operator.token")
	tn.admin = tn.readToken(t, "admin.token")
	tn.waitReady(t)
	return tn
}

// stop closes the node once; later calls answer the first result.
func (n *testNode) stop() error {
	n.closeOnce.Do(func() {
		n.client.CloseIdleConnections()
		n.closeErr = n.node.Close()
	})
	return n.closeErr
}

func (n *testNode) readToken(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.dir, name))
	if err != nil {
		t.Fatalf("cannot read %s: %v", name, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		t.Fatalf("%s is empty", name)
	}
	return s
}

// waitReady polls /readyz until it answers 200.
func (n *testNode) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := n.do(t, "GET", "/readyz", "", nil)
		if r.status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %d %s", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// response is one answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error (only with doRaw)
}

func (r response) String() string {
	b := r.body
	if len(b) > 400 {
		b = append(b[:400:400], "..."...)
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// req describes one request. path is sent as written (raw, percent-encoded).
type req struct {
	method  string
	path    string
	token   string // "" = no Authorization header
	authRaw string // a whole Authorization header value, overrides token
	body    io.Reader
	ctype   string
	chunked bool // force Transfer-Encoding: chunked (no Content-Length)
}

func (n *testNode) send(t testing.TB, q req) response {
	t.Helper()
	r := n.exchange(q)
	if r.err != nil {
		t.Fatalf("%s %s: %v", q.method, q.path, r.err)
	}
	checkOpenAPI(t, q.method, q.path, r)
	return r
}

// doRaw sends a request and reports transport errors instead of failing.
// An answer docs/openapi.yaml does not allow fails the node's test.
func (n *testNode) doRaw(q req) response {
	r := n.exchange(q)
	checkOpenAPI(n.t, q.method, q.path, r)
	return r
}

// exchange sends a request and answers what came back, unchecked.
func (n *testNode) exchange(q req) response {
	// The path goes on the request line exactly as written (Opaque), so
	// tests can send escapes that net/url would refuse or rewrite.
	u, err := url.Parse(n.base)
	if err != nil {
		return response{err: err}
	}
	u.Opaque, u.RawQuery, _ = strings.Cut(q.path, "?")
	hr, err := http.NewRequest(q.method, n.base, nil)
	if err != nil {
		return response{err: err}
	}
	hr.URL = u
	if q.body != nil {
		body := q.body
		if q.chunked {
			body = io.MultiReader(body) // hides the length from net/http
			hr.ContentLength = -1
		} else {
			switch b := q.body.(type) {
			case *bytes.Reader:
				hr.ContentLength = int64(b.Len())
			case *strings.Reader:
				hr.ContentLength = int64(b.Len())
			case *bytes.Buffer:
				hr.ContentLength = int64(b.Len())
			default:
				hr.ContentLength = -1
			}
		}
		hr.Body = io.NopCloser(body)
	}
	if q.ctype != "" {
		hr.Header.Set("Content-Type", q.ctype)
	}
	switch {
	case q.authRaw != "":
		hr.Header.Set("Authorization", q.authRaw)
	case q.token != "":
		hr.Header.Set("Authorization", "Bearer "+q.token)
	}
	resp, err := n.client.Do(hr)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{err: err}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// do sends a request with an optional body: a string or []byte is sent as
// CSV, anything else as JSON.
func (n *testNode) do(t testing.TB, method, path, token string, body any) response {
	t.Helper()
	q := req{method: method, path: path, token: token}
	switch b := body.(type) {
	case nil:
	case string:
		q.body, q.ctype = strings.NewReader(b), "text/csv"
	case []byte:
		q.body, q.ctype = bytes.NewReader(b), "text/csv"
	case rawJSON:
		q.body, q.ctype = strings.NewReader(string(b)), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("cannot encode body: %v", err)
		}
		q.body, q.ctype = bytes.NewReader(j), "application/json"
	}
	return n.send(t, q)
}

// rawJSON is a JSON body sent exactly as written.
type rawJSON string

// decode reads a JSON answer into v, failing on a wrong status or shape.
func decode(t testing.TB, r response, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json: %s", ct, r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("cannot decode %s: %v", r, err)
	}
}

// wantError checks an error answer: the status, and a body that is exactly
// {"error": {"code": code, "message": "...", ...details}}. It returns the
// inner object for detail checks.
func wantError(t testing.TB, r response, status int, code string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (%s): %s", r.status, status, code, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type %q, want application/json: %s", ct, r)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &outer); err != nil {
		t.Fatalf("error body is not a JSON object: %s", r)
	}
	if len(outer) != 1 || outer["error"] == nil {
		t.Fatalf(`error body must be exactly {"error": {...}}: %s`, r)
	}
	var e map[string]any
	if err := json.Unmarshal(outer["error"], &e); err != nil {
		t.Fatalf(`"error" is not an object: %s`, r)
	}
	if got, _ := e["code"].(string); got != code {
		t.Fatalf("error code %q, want %q: %s", e["code"], code, r)
	}
	if !regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`).MatchString(code) {
		t.Fatalf("error code %q is not snake_case", code)
	}
	if msg, ok := e["message"].(string); !ok || msg == "" {
		t.Fatalf("error message missing or empty: %s", r)
	}
	switch status {
	case http.StatusUnauthorized:
		if r.header.Get("WWW-Authenticate") == "" {
			t.Fatalf("401 without WWW-Authenticate: %s", r)
		}
	case http.StatusServiceUnavailable:
		if r.header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After: %s", r)
		}
	}
	return e
}

// wantStatus checks the status of any answer; for 4xx/5xx also that the
// body has the error shape.
func wantStatus(t testing.TB, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r)
	}
	if status >= 400 {
		var outer struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.body, &outer); err != nil || outer.Error.Code == "" || outer.Error.Message == "" {
			t.Fatalf("status %d without the error shape: %s", status, r)
		}
	}
}

// list is the list object of SPEC §2.
type list struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	Dedupe            bool    `json:"dedupe"`
	LowStockThreshold uint64  `json:"low_stock_threshold"`
	LowStock          bool    `json:"low_stock"`
	Added             uint64  `json:"added"`
	Available         uint64  `json:"available"`
	Reserved          uint64  `json:"reserved"`
	Used              uint64  `json:"used"`
	Withdrawn         uint64  `json:"withdrawn"`
	UsedOrDeleted     uint64  `json:"used_or_deleted"`
	CreatedAt         string  `json:"created_at"`
	FallbackCode      *string `json:"fallback_code"`
	ExpiresAt         *string `json:"expires_at"`
	ExpiryWarningDays uint32  `json:"expiry_warning_days"`
	Expired           bool    `json:"expired"`
	Released          uint64  `json:"released"`
	FallbackUsed      uint64  `json:"fallback_used"`
}

// counts is the part of a list that imports and withdrawals change.
type counts struct {
	Added, Available, Reserved, Used, Withdrawn, UsedOrDeleted uint64
	LowStock                                                   bool
}

func (l list) counts() counts {
	return counts{l.Added, l.Available, l.Reserved, l.Used, l.Withdrawn, l.UsedOrDeleted, l.LowStock}
}

// importResult is the answer of an import (SPEC §2).
type importResult struct {
	Imported   uint64 `json:"imported"`
	Duplicates uint64 `json:"duplicates"`
	Size       uint64 `json:"size"`
	// InOtherLists: imported codes another list of the tenant holds.
	InOtherLists uint64 `json:"in_other_lists"`
}

var listFields = []string{"id", "name", "dedupe", "low_stock_threshold", "low_stock", "added", "available",
	"reserved", "used", "withdrawn", "used_or_deleted", "created_at",
	"fallback_code", "expires_at", "expiry_warning_days", "expired", "released", "fallback_used"}

var listIDPattern = regexp.MustCompile(`^[0-9a-f]{16}$`)

// checkListShape checks that raw is a list object with exactly the fields of
// SPEC §2 (plus extra, e.g. assigned_messages) and consistent counts.
func checkListShape(t testing.TB, raw []byte, extra ...string) list {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("list is not an object: %s", raw)
	}
	want := append(append([]string{}, listFields...), extra...)
	sort.Strings(want)
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("list fields %v, want %v: %s", got, want, raw)
	}
	var l list
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("cannot decode list %s: %v", raw, err)
	}
	if !listIDPattern.MatchString(l.ID) {
		t.Fatalf("list id %q is not 16 lower-case hex characters", l.ID)
	}
	ts, err := time.Parse(time.RFC3339Nano, l.CreatedAt)
	if err != nil || !strings.HasSuffix(l.CreatedAt, "Z") {
		t.Fatalf("created_at %q is not RFC 3339 UTC: %v", l.CreatedAt, err)
	}
	if d := time.Since(ts); d < -time.Minute || d > time.Hour {
		t.Fatalf("created_at %q is not about now", l.CreatedAt)
	}
	if l.UsedOrDeleted != l.Added-l.Available-l.Reserved || l.UsedOrDeleted != l.Used+l.Withdrawn {
		t.Fatalf("used_or_deleted inconsistent: %+v", l)
	}
	if l.LowStock != (l.LowStockThreshold > 0 && l.Available < l.LowStockThreshold) {
		t.Fatalf("low_stock inconsistent: %+v", l)
	}
	return l
}

// getList reads one list (200) with its shape checked.
func (n *testNode) getList(t testing.TB, token, id string) list {
	t.Helper()
	r := n.do(t, "GET", "/v1/lists/"+id, token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET list %s: %s", id, r)
	}
	return checkListShape(t, r.body, "assigned_messages")
}

// getListRaw answers the body of GET /v1/lists/{id}, for before/after comparisons.
func (n *testNode) getListRaw(t testing.TB, token, id string) string {
	t.Helper()
	r := n.do(t, "GET", "/v1/lists/"+id, token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET list %s: %s", id, r)
	}
	return string(r.body)
}

// createList makes an empty list from JSON.
func (n *testNode) createList(t testing.TB, token string, body any) list {
	t.Helper()
	r := n.do(t, "POST", "/v1/lists", token, body)
	if r.status != http.StatusCreated {
		t.Fatalf("create list: %s", r)
	}
	return checkListShape(t, r.body)
}

// newList creates a list named name with dedupe on.
func (n *testNode) newList(t testing.TB, token, name string) string {
	t.Helper()
	return n.createList(t, token, map[string]any{"name": name}).ID
}

// topUp imports csv into a list and answers the import result (200).
func (n *testNode) topUp(t testing.TB, token, id, csv string) importResult {
	t.Helper()
	r := n.do(t, "POST", "/v1/lists/"+id+"/codes", token, csv)
	var res importResult
	decode(t, r, http.StatusOK, &res)
	return res
}

// codeState looks one code up by its path segment (already escaped) and
// answers its state, or "" for a 404.
func (n *testNode) codeState(t testing.TB, token, id, escaped string) string {
	t.Helper()
	r := n.do(t, "GET", "/v1/lists/"+id+"/codes/"+escaped, token, nil)
	if r.status == http.StatusNotFound {
		wantError(t, r, http.StatusNotFound, "not_found")
		return ""
	}
	var out map[string]any
	decode(t, r, http.StatusOK, &out)
	s, _ := out["state"].(string)
	return s
}

// listIDs answers the ids of GET /v1/lists.
func (n *testNode) listIDs(t testing.TB, token string) []string {
	t.Helper()
	var out struct {
		Lists []json.RawMessage `json:"lists"`
	}
	decode(t, n.do(t, "GET", "/v1/lists", token, nil), http.StatusOK, &out)
	ids := make([]string, len(out.Lists))
	for i, raw := range out.Lists {
		ids[i] = checkListShape(t, raw).ID
	}
	return ids
}

// createTenant makes a tenant (201).
func (n *testNode) createTenant(t testing.TB, id string) {
	t.Helper()
	r := n.do(t, "POST", "/v1/tenants", n.operator, map[string]string{"id": id, "name": "Tenant " + id})
	if r.status != http.StatusCreated {
		t.Fatalf("create tenant %s: %s", id, r)
	}
}

// createToken makes a token of a tenant and answers its id and secret.
func (n *testNode) createToken(t testing.TB, tenant, role string) (id, secret string) {
	t.Helper()
	r := n.do(t, "POST", "/v1/tenants/"+tenant+"/tokens", n.operator, map[string]string{"role": role, "name": role + " of " + tenant})
	var out map[string]string
	decode(t, r, http.StatusCreated, &out)
	if len(out) != 2 || out["id"] == "" || out["token"] == "" {
		t.Fatalf(`token answer must be exactly {"id","token"}: %s`, r)
	}
	return out["id"], out["token"]
}

// revokeToken revokes a token (204).
func (n *testNode) revokeToken(t testing.TB, id string) {
	t.Helper()
	r := n.do(t, "DELETE", "/v1/tokens/"+id, n.operator, nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("revoke %s: %s", id, r)
	}
}

// syncBuffer is a bytes.Buffer safe for the node's many logging goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// codeLines builds a CSV of n codes prefix-000000.. , one per line.
func codeLines(prefix string, from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		fmt.Fprintf(&b, "%s%06d\n", prefix, i)
	}
	return b.String()
}

// rawExchange writes one HTTP/1.1 request by hand — the request line, Host,
// an optional bearer token, extra header lines, then body as given (which
// may be only the start of what the headers announce) — and reads the
// answer with net/http's parser. It lets a test send part of a large body
// and read the server's early answer without racing its connection close.
func (n *testNode) rawExchange(t testing.TB, method, path, token string, headers []string, body []byte) response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, strings.TrimPrefix(n.base, "http://"))
	if token != "" {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", token)
	}
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatalf("cannot write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: cannot read the answer: %v", method, path, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: cannot read the answer body: %v", method, path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: rb}
	checkOpenAPI(t, method, path, r)
	return r
}

// chunked frames data as chunks of at most 64 KiB, without the final
// zero-length chunk (the body goes on as far as the server knows).
func chunked(data []byte) []byte {
	var b bytes.Buffer
	for len(data) > 0 {
		k := min(len(data), 64<<10)
		fmt.Fprintf(&b, "%x\r\n", k)
		b.Write(data[:k])
		b.WriteString("\r\n")
		data = data[k:]
	}
	return b.Bytes()
}
