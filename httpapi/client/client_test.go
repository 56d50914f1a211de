package client_test

// The client against a real in-process node (every call of SPEC §2 and the
// server's error shape), and against small fake servers for what a healthy
// node never does on cue: 503s, broken connections, a lost answer.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/coupond/coupond/daemon"
	"github.com/coupond/coupond/httpapi/client"
)

// node is a running single node and clients with its bootstrap tokens.
type node struct {
	addr     string
	admin    *client.Client
	operator *client.Client
}

func startNode(t *testing.T) *node {
	t.Helper()
	dir := t.TempDir()
	n, err := daemon.Start(daemon.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		NodeID: "node1", LogFormat: "json", LogLevel: "error"}, zerolog.Nop())
	if err != nil {
		t.Fatalf("cannot start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("cannot close node: %v", err)
		}
	})
	nd := &node{addr: n.HTTPAddr()}
	nd.admin = mustClient(t, nd.addr, readToken(t, filepath.Join(dir, "admin.token")))
	nd.operator = mustClient(t, nd.addr, readToken(t, filepath.Join(dir, "operator.token")))
	waitReady(t, nd.admin)
	return nd
}

func mustClient(t *testing.T, addr, token string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addr, token, opts...)
	if err != nil {
		t.Fatalf("cannot make a client: %v", err)
	}
	return c
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func waitReady(t *testing.T, c *client.Client) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.Readyz(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("node not ready after 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func must[T any](t *testing.T, what string) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func codes(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s-%05d\n", prefix, i)
	}
	return b.String()
}

// wantStatus checks that err is a *client.Error with status and code.
func wantStatus(t *testing.T, err error, status int, code string) *client.Error {
	t.Helper()
	var ce *client.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is no *client.Error", err, err)
	}
	if ce.Status != status || ce.Code != code {
		t.Fatalf("error %d %q, want %d %q: %v", ce.Status, ce.Code, status, code, err)
	}
	return ce
}

func TestListsAndCodes(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin

	thr := uint64(5)
	l := must[*client.List](t, "create list")(c.CreateList(ctx, client.NewList{Name: "spring", LowStockThreshold: &thr}))
	if l.Name != "spring" || !l.Dedupe || l.LowStockThreshold != 5 || !l.LowStock || l.CreatedAt.IsZero() {
		t.Fatalf("created list %+v", l)
	}
	res := must[*client.ImportResult](t, "top up")(c.TopUp(ctx, l.ID, client.Upload{Body: strings.NewReader("code\n" + codes("S", 10)), Header: true}))
	if *res != (client.ImportResult{Imported: 10, Size: 10}) {
		t.Fatalf("top-up %+v", res)
	}
	// The same key answers the first result and imports nothing again.
	up := func() client.Upload {
		return client.Upload{Body: strings.NewReader(codes("T", 3) + "S-00000\n"), IdempotencyKey: "k1"}
	}
	first := must[*client.ImportResult](t, "keyed top-up")(c.TopUp(ctx, l.ID, up()))
	again := must[*client.ImportResult](t, "repeated keyed top-up")(c.TopUp(ctx, l.ID, up()))
	if *first != (client.ImportResult{Imported: 3, Duplicates: 1, Size: 13}) || *again != *first {
		t.Fatalf("keyed top-up %+v, repeated %+v", first, again)
	}

	// Uploads stream from any reader, of unknown length too.
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeCodes(pw, "P", 50_000)) }()
	cl := must[*client.CreatedList](t, "create and import")(c.CreateAndImport(ctx, "piped", nil, client.Upload{Body: pr}))
	if cl.List.Name != "piped" || cl.Import.Imported != 50_000 || cl.List.Available != 50_000 {
		t.Fatalf("create and import %+v", cl)
	}

	wd := must[*client.WithdrawResult](t, "withdraw")(c.Withdraw(ctx, l.ID, client.Upload{Body: strings.NewReader("S-00001\nS-00001\nnope\n")}))
	if *wd != (client.WithdrawResult{Withdrawn: 2, NotFound: 1}) {
		t.Fatalf("withdraw %+v", wd)
	}
	name := "spring-2"
	l = must[*client.List](t, "update")(c.UpdateList(ctx, l.ID, client.ListUpdate{Name: &name}))
	if l.Name != name || l.LowStockThreshold != 5 {
		t.Fatalf("updated list %+v", l)
	}
	got := must[*client.ListDetail](t, "get list")(c.GetList(ctx, l.ID))
	if got.Added != 13 || got.Available != 12 || got.Withdrawn != 1 || got.UsedOrDeleted != 1 || got.AssignedMessages == nil {
		t.Fatalf("list %+v", got)
	}
	all := must[[]client.List](t, "lists")(c.Lists(ctx))
	if len(all) != 2 {
		t.Fatalf("%d lists, want 2", len(all))
	}
	info := must[*client.CodeInfo](t, "lookup")(c.LookupCode(ctx, l.ID, "S-00001"))
	if info.State != "withdrawn" || info.Assignment != nil {
		t.Fatalf("code %+v", info)
	}

	// Errors carry the server's code and details.
	_, err := c.TopUp(ctx, l.ID, client.Upload{Body: strings.NewReader("ok\nbad,two\n")})
	ce := wantStatus(t, err, 400, "invalid_csv")
	if !client.IsBadRequest(err) || ce.Details["line"] != float64(2) || ce.Details["reason"] != "second column" {
		t.Fatalf("invalid_csv details %v", ce.Details)
	}
	if _, err := c.GetList(ctx, "0000000000000000"); !client.IsNotFound(err) {
		t.Fatalf("unknown list: %v", err)
	}
	if _, err := c.GetMessage(ctx, "none"); !client.IsNotFound(err) {
		t.Fatalf("unknown message: %v", err)
	}
}

func writeCodes(w io.Writer, prefix string, n int) error {
	_, err := io.WriteString(w, codes(prefix, n))
	return err
}

func TestMessagesSendsAndHistory(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin
	l := must[*client.CreatedList](t, "import")(c.CreateAndImport(ctx, "l", nil, client.Upload{Body: strings.NewReader(codes("C", 100))}))

	in := client.MessageInput{Name: "Welcome", Campaign: "spring", CampaignType: "standard", Channel: "email"}
	m, created, err := c.PutMessage(ctx, "welcome", in)
	if err != nil || !created || m.Status != "draft" || m.CouponListID != nil {
		t.Fatalf("put message: %+v %v %v", m, created, err)
	}
	if _, created, err := c.PutMessage(ctx, "welcome", in); err != nil || created {
		t.Fatalf("replace message: created %v, %v", created, err)
	}
	m = must[*client.Message](t, "assign")(c.AssignList(ctx, "welcome", l.List.ID))
	if m.CouponListID == nil || *m.CouponListID != l.List.ID {
		t.Fatalf("assigned message %+v", m)
	}
	sms := in
	sms.Channel = "sms"
	if _, _, err := c.PutMessage(ctx, "sms", sms); err != nil {
		t.Fatal(err)
	}
	_, err = c.AssignList(ctx, "sms", l.List.ID)
	if ce := wantStatus(t, err, 422, "not_eligible"); !client.IsRefused(err) || ce.Details["reason"] == nil {
		t.Fatalf("not_eligible details %v", ce.Details)
	}

	exp := uint64(10)
	op, created, err := c.OpenSend(ctx, "s1", "welcome", &exp)
	if err != nil || !created || op.Reserved != 10 || op.ListID != l.List.ID {
		t.Fatalf("open send: %+v %v %v", op, created, err)
	}
	// Recipients that need escaping in a path come back as they went.
	recips := []string{"ann@example.com", "a/b", "..", ".", "x y%2F", "ü"}
	a := must[*client.Allocation](t, "allocate")(c.Allocate(ctx, "s1", "", recips))
	if len(a.Assignments) != len(recips) || a.Available != 90 {
		t.Fatalf("allocation %+v", a)
	}
	again := must[*client.Allocation](t, "allocate again")(c.Allocate(ctx, "s1", "", recips))
	if !slices.Equal(a.Assignments, again.Assignments) {
		t.Fatalf("a repeat got other codes: %v, then %v", a.Assignments, again.Assignments)
	}
	for _, as := range a.Assignments {
		h := must[[]client.HistoryEntry](t, "history")(c.RecipientHistory(ctx, as.Recipient))
		if len(h) != 1 || h[0].Code != as.Code || h[0].SendID != "s1" || h[0].MessageID != "welcome" || h[0].ListID != l.List.ID {
			t.Fatalf("history of %q: %+v, want code %s", as.Recipient, h, as.Code)
		}
		ci := must[*client.CodeInfo](t, "lookup")(c.LookupCode(ctx, l.List.ID, as.Code))
		if ci.State != "assigned" || ci.Assignment == nil || ci.Assignment.Recipient != as.Recipient {
			t.Fatalf("code %s: %+v", as.Code, ci)
		}
	}
	if h := must[[]client.HistoryEntry](t, "history")(c.RecipientHistory(ctx, "nobody")); len(h) != 0 {
		t.Fatalf("history of nobody: %+v", h)
	}

	var csvOut bytes.Buffer
	nb := must[int64](t, "export csv")(c.ExportAssignments(ctx, "s1", &csvOut, client.CSV))
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil || nb == 0 || len(rows) != len(recips) {
		t.Fatalf("csv export: %d bytes, %v, %v", nb, rows, err)
	}
	for i, r := range rows {
		if r[0] != a.Assignments[i].Recipient || r[1] != a.Assignments[i].Code {
			t.Fatalf("csv row %d %v, want %+v", i, r, a.Assignments[i])
		}
	}
	var jsonOut bytes.Buffer
	must[int64](t, "export json")(c.ExportAssignments(ctx, "s1", &jsonOut, client.JSON))
	var exp2 struct {
		Assignments []client.Assignment `json:"assignments"`
	}
	if err := json.Unmarshal(jsonOut.Bytes(), &exp2); err != nil || !slices.Equal(exp2.Assignments, a.Assignments) {
		t.Fatalf("json export %v: %s", err, jsonOut.Bytes())
	}

	_, err = c.Allocate(ctx, "s2", "welcome", make([]string, 0))
	wantStatus(t, err, 400, "invalid_request")
	many := make([]string, 200) // more than the 4 held and 90 free
	for i := range many {
		many[i] = fmt.Sprintf("r%d", i)
	}
	_, err = c.Allocate(ctx, "s1", "", many)
	if ce := wantStatus(t, err, 409, "insufficient_codes"); ce.Details["needed"] != float64(200) || ce.Details["available"] != float64(94) || !client.IsConflict(err) {
		t.Fatalf("insufficient_codes details %v", ce.Details)
	}

	if err := c.DeleteList(ctx, l.List.ID); !client.HasCode(err, "list_in_use") {
		t.Fatalf("delete a list in use: %v", err)
	}
	s := must[*client.Send](t, "close")(c.CloseSend(ctx, "s1"))
	s2 := must[*client.Send](t, "close again")(c.CloseSend(ctx, "s1"))
	if s.Status != "closed" || s.Assigned != uint64(len(recips)) || s.Reserved != 0 || *s2 != *s {
		t.Fatalf("closed send %+v, closed again %+v", s, s2)
	}
	if g := must[*client.Send](t, "get send")(c.GetSend(ctx, "s1")); *g != *s {
		t.Fatalf("send %+v, want %+v", g, s)
	}
	if _, err := c.ExportAssignments(ctx, "nope", io.Discard, client.CSV); !client.IsNotFound(err) {
		t.Fatalf("export of an unknown send: %v", err)
	}
	if err := c.UnassignList(ctx, "welcome"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteList(ctx, l.List.ID); err != nil {
		t.Fatalf("delete a list no message has: %v", err)
	}
	if _, err := c.GetList(ctx, l.List.ID); !client.IsNotFound(err) {
		t.Fatalf("deleted list: %v", err)
	}
}

func TestOperatorsAndCluster(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	op := n.operator

	tn := must[*client.Tenant](t, "create tenant")(op.CreateTenant(ctx, "acme", "Acme"))
	if tn.ID != "acme" || tn.Name != "Acme" || tn.CreatedAt.IsZero() {
		t.Fatalf("tenant %+v", tn)
	}
	if _, err := op.CreateTenant(ctx, "acme", "Acme"); !client.HasCode(err, "tenant_exists") {
		t.Fatalf("second tenant acme: %v", err)
	}
	ts := must[[]client.Tenant](t, "tenants")(op.Tenants(ctx))
	if len(ts) != 2 {
		t.Fatalf("tenants %+v", ts)
	}
	tok := must[*client.NewToken](t, "create token")(op.CreateToken(ctx, "acme", "sender", "engine"))
	sender := mustClient(t, n.addr, tok.Token)
	if _, err := sender.Lists(ctx); !client.IsForbidden(err) {
		t.Fatalf("a sender reads lists: %v", err)
	}
	if _, err := op.Lists(ctx); !client.IsForbidden(err) {
		t.Fatalf("an operator reads lists: %v", err)
	}
	if err := op.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err := sender.GetSend(ctx, "s")
	wantStatus(t, err, 401, "unauthorized")
	if !client.IsUnauthorized(err) {
		t.Fatal("IsUnauthorized is false for a 401")
	}

	st := must[*client.ClusterStatus](t, "cluster")(op.Cluster(ctx))
	if st.Leader == nil || *st.Leader != "node1" || len(st.Nodes) != 1 || st.Nodes[0].State != "leader" || st.Nodes[0].HTTPAddr != n.addr {
		t.Fatalf("cluster %+v", st)
	}
	// Nothing answers there: the server refuses to add a voter that
	// would cost the cluster its quorum.
	dead := freeAddr(t)
	_, err = op.AddNode(ctx, client.Node{ID: "n2", RaftAddr: freeAddr(t), HTTPAddr: dead})
	wantStatus(t, err, 422, "node_unreachable")
	if err := op.RemoveNode(ctx, "n9"); !client.IsNotFound(err) {
		t.Fatalf("remove an unknown node: %v", err)
	}
	anon := mustClient(t, n.addr, "")
	if err := anon.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	if err := anon.Readyz(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Lists(ctx); !client.IsUnauthorized(err) {
		t.Fatalf("no token: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fake is a scripted server: answer decides each try's answer and sees
// what came in.
type fake struct {
	mu    sync.Mutex
	tries []seen
	srv   *httptest.Server
}

type seen struct {
	method, path, key string
	body              []byte
}

func newFake(t *testing.T, answer func(try int, w http.ResponseWriter, r *http.Request)) *fake {
	f := &fake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.tries = append(f.tries, seen{r.Method, r.URL.EscapedPath(), r.Header.Get("Idempotency-Key"), b})
		try := len(f.tries)
		f.mu.Unlock()
		answer(try, w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) seen() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tries)
}

func (f *fake) client(t *testing.T, opts ...client.Option) *client.Client {
	fast := client.Retry{Attempts: 4, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	return mustClient(t, f.srv.URL, "tok", append([]client.Option{client.WithRetry(fast)}, opts...)...)
}

func apiError(w http.ResponseWriter, status int, code string, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":"m"}}`, code)
}

// hangUp closes the connection without an answer: the outcome is unknown.
func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	f := newFake(t, func(try int, w http.ResponseWriter, r *http.Request) {
		if try == 1 {
			apiError(w, 503, "unavailable", "1")
			return
		}
		fmt.Fprint(w, `{"lists":[]}`)
	})
	start := time.Now()
	if _, err := f.client(t).Lists(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("retried after %v, before the Retry-After of 1s", took)
	}
	if got := f.seen(); len(got) != 2 || got[0].method != "GET" || got[1].path != "/v1/lists" {
		t.Fatalf("tries %+v", got)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	f := newFake(t, func(_ int, w http.ResponseWriter, _ *http.Request) { apiError(w, 503, "unavailable", "0") })
	_, err := f.client(t).GetSend(context.Background(), "s")
	if !client.IsUnavailable(err) || len(f.seen()) != 4 {
		t.Fatalf("after %d tries: %v", len(f.seen()), err)
	}
}

// A call that is not idempotent is repeated only when the server surely
// did nothing.
func TestNonIdempotentRetries(t *testing.T) {
	f := func(code string, wantTries int) {
		t.Helper()
		fk := newFake(t, func(try int, w http.ResponseWriter, _ *http.Request) {
			if try == 1 {
				apiError(w, 503, code, "0")
				return
			}
			w.WriteHeader(201)
			fmt.Fprint(w, `{"id":"0000000000000001","name":"x"}`)
		})
		_, err := fk.client(t).CreateList(context.Background(), client.NewList{Name: "x"})
		if got := len(fk.seen()); got != wantTries {
			t.Fatalf("503 %s: %d tries, want %d (%v)", code, got, wantTries, err)
		}
	}
	f("unavailable", 1) // the outcome is unknown: a repeat could make a second list
	f("no_leader", 2)
	f("not_ready", 2)

	fk := newFake(t, func(try int, w http.ResponseWriter, _ *http.Request) {
		if try == 1 {
			hangUp(w)
			return
		}
		w.WriteHeader(201)
		fmt.Fprint(w, `{"id":"0000000000000001"}`)
	})
	var ue interface{ Timeout() bool }
	if _, err := fk.client(t).CreateList(context.Background(), client.NewList{Name: "x"}); !errors.As(err, &ue) || len(fk.seen()) != 1 {
		t.Fatalf("a lost answer to a create: %d tries, %v", len(fk.seen()), err)
	}
	if _, err := fk.client(t).GetList(context.Background(), "0000000000000001"); err != nil || len(fk.seen()) != 2 {
		t.Fatalf("a read after a lost answer: %d tries, %v", len(fk.seen()), err)
	}
}

// A connection that could not be opened sent nothing: any call is repeated.
func TestDialErrorsAreRetried(t *testing.T) {
	fk := newFake(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(201)
		fmt.Fprint(w, `{"id":"acme","name":"Acme"}`)
	})
	var dials int
	var mu sync.Mutex
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dials++
		first := dials == 1
		mu.Unlock()
		if first {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	c := fk.client(t, client.WithHTTPClient(&http.Client{Transport: tr}))
	if _, err := c.CreateTenant(context.Background(), "acme", "Acme"); err != nil || len(fk.seen()) != 1 || dials != 2 {
		t.Fatalf("%d dials, %d requests: %v", dials, len(fk.seen()), err)
	}
}

func TestUploadRetries(t *testing.T) {
	const body = "A\nB\nC\n"
	f := func(up client.Upload, first func(w http.ResponseWriter), wantTries int) []seen {
		t.Helper()
		fk := newFake(t, func(try int, w http.ResponseWriter, _ *http.Request) {
			if try == 1 {
				first(w)
				return
			}
			fmt.Fprint(w, `{"imported":3,"duplicates":0,"size":3}`)
		})
		_, err := fk.client(t).TopUp(context.Background(), "0000000000000001", up)
		got := fk.seen()
		if len(got) != wantTries || (wantTries > 1) != (err == nil) {
			t.Fatalf("%d tries, want %d: %v", len(got), wantTries, err)
		}
		for _, s := range got {
			if string(s.body) != body {
				t.Fatalf("try sent %q, want %q", s.body, body)
			}
		}
		return got
	}
	unavailable := func(w http.ResponseWriter) { apiError(w, 503, "unavailable", "0") }

	// A rewindable body gets a key of the client's making, the same on
	// every try, so a repeat cannot import twice.
	got := f(client.Upload{Body: strings.NewReader(body)}, unavailable, 2)
	if got[0].key == "" || got[0].key != got[1].key {
		t.Fatalf("keys %q, %q", got[0].key, got[1].key)
	}
	got = f(client.Upload{Body: strings.NewReader(body), IdempotencyKey: "mine"}, func(w http.ResponseWriter) {
		apiError(w, 409, "upload_in_progress", "")
	}, 2)
	if got[1].key != "mine" {
		t.Fatalf("key %q, want the caller's", got[1].key)
	}
	// A body that cannot be read again is sent once, without a key.
	got = f(client.Upload{Body: io.MultiReader(strings.NewReader(body))}, unavailable, 1)
	if got[0].key != "" {
		t.Fatalf("a body sent once carries key %q", got[0].key)
	}
	// The client leaves the caller's file open and rewinds it.
	path := filepath.Join(t.TempDir(), "codes.csv")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	f(client.Upload{Body: file, Size: int64(len(body))}, unavailable, 2)
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		t.Fatalf("the client closed the caller's file: %v", err)
	}
}

// A server may answer before it read the body; the transport may then
// still be sending it. The retry must wait for that before it rewinds, and
// send the whole body again.
func TestUploadRetryAfterEarlyAnswer(t *testing.T) {
	body := bytes.Repeat([]byte("CODE-0123456789\n"), 1<<19) // 8 MiB: more than any socket buffer
	var mu sync.Mutex
	var tries int
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tries++
		try := tries
		mu.Unlock()
		if try == 1 {
			w.Header().Set("Connection", "close")
			apiError(w, 503, "unavailable", "0") // unread body
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		fmt.Fprint(w, `{"imported":1,"duplicates":0,"size":1}`)
	}))
	defer srv.Close()
	c := mustClient(t, srv.URL, "tok", client.WithRetry(client.Retry{Attempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if _, err := c.TopUp(context.Background(), "0000000000000001", client.Upload{Body: bytes.NewReader(body), Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tries != 2 || !bytes.Equal(got, body) {
		t.Fatalf("%d tries; the retry sent %d bytes, want %d", tries, len(got), len(body))
	}
}

// A DELETE whose first answer was lost and whose repeat finds nothing has
// done its work; a 404 without a lost try is an error.
func TestDeleteAfterLostAnswer(t *testing.T) {
	fk := newFake(t, func(try int, w http.ResponseWriter, _ *http.Request) {
		if try == 1 {
			hangUp(w)
			return
		}
		apiError(w, 404, "not_found", "")
	})
	c := fk.client(t)
	if err := c.DeleteList(context.Background(), "0000000000000001"); err != nil || len(fk.seen()) != 2 {
		t.Fatalf("%d tries: %v", len(fk.seen()), err)
	}
	if err := c.DeleteList(context.Background(), "0000000000000001"); !client.IsNotFound(err) {
		t.Fatalf("a plain 404: %v", err)
	}
}

func TestContextEndsRetries(t *testing.T) {
	fk := newFake(t, func(_ int, w http.ResponseWriter, _ *http.Request) { apiError(w, 503, "no_leader", "30") })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := fk.client(t).Lists(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
}

func TestErrorOfAnotherShape(t *testing.T) {
	fk := newFake(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(502)
		fmt.Fprint(w, "bad gateway from a proxy")
	})
	_, err := fk.client(t).Tenants(context.Background())
	ce := wantStatus(t, err, 502, "")
	if !strings.Contains(ce.Message, "proxy") {
		t.Fatalf("message %q", ce.Message)
	}
}

func TestNewRefusesBadAddresses(t *testing.T) {
	for _, a := range []string{"ftp://h:1", "http://h:1/v1", "http://", "h:1?x=1"} {
		if _, err := client.New(a, "t"); err == nil {
			t.Errorf("New(%q) took it", a)
		}
	}
	for _, a := range []string{"127.0.0.1:8080", "http://h:1", "https://h:1/", "[::1]:80"} {
		if _, err := client.New(a, "t"); err != nil {
			t.Errorf("New(%q): %v", a, err)
		}
	}
}

// TestLifecycle drives SPEC §4 through the client against a real node:
// fallback codes, release, forecast and expiry.
func TestLifecycle(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin
	fb := "GENERIC-10"
	l := must[*client.List](t, "create")(c.CreateList(ctx, client.NewList{Name: "l", FallbackCode: &fb}))
	if l.FallbackCode == nil || *l.FallbackCode != fb || l.ExpiresAt != nil || l.ExpiryWarningDays != 7 || l.Expired {
		t.Fatalf("created %+v", l)
	}
	must[*client.ImportResult](t, "top up")(c.TopUp(ctx, l.ID, client.Upload{Body: strings.NewReader(codes("C", 3))}))
	in := client.MessageInput{Name: "Welcome", CampaignType: "standard", Channel: "email"}
	if _, _, err := c.PutMessage(ctx, "welcome", in); err != nil {
		t.Fatal(err)
	}
	must[*client.Message](t, "assign")(c.AssignList(ctx, "welcome", l.ID))

	// A send opened by its allocation under fallback: 3 codes, then the fallback.
	a := must[*client.Allocation](t, "allocate")(c.Allocate(ctx, "s1", "welcome", []string{"a", "b", "c", "d", "e"},
		client.OnShortage(client.ShortageFallback)))
	var fallbacks []string
	for _, as := range a.Assignments {
		if as.Fallback {
			if as.Code != fb {
				t.Fatalf("a fallback assignment with code %q", as.Code)
			}
			fallbacks = append(fallbacks, as.Recipient)
		}
	}
	if fmt.Sprint(fallbacks) != "[d e]" || a.Available != 0 {
		t.Fatalf("allocation %+v, want d and e on the fallback code", a)
	}
	if s := must[*client.Send](t, "send")(c.GetSend(ctx, "s1")); s.OnShortage != client.ShortageFallback || s.Assigned != 5 {
		t.Fatalf("send %+v", s)
	}
	if g := must[*client.ListDetail](t, "list")(c.GetList(ctx, l.ID)); g.FallbackUsed != 2 || g.Used != 3 {
		t.Fatalf("list %+v, want 2 fallbacks and 3 used", g.List)
	}
	// A reject send gets 409 when it runs short.
	if _, _, err := c.OpenSend(ctx, "s2", "welcome", nil, client.OnShortage(client.ShortageReject)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Allocate(ctx, "s2", "", []string{"z"})
	wantStatus(t, err, 409, "insufficient_codes")

	// Release a's code and d's fallback: a's code is available again.
	rel := must[*client.ReleaseResult](t, "release")(c.Release(ctx, "s1", []string{"a", "d", "nobody"}))
	if *rel != (client.ReleaseResult{Released: 2, NotAssigned: 1}) {
		t.Fatalf("release %+v", rel)
	}
	again := must[*client.ReleaseResult](t, "release again")(c.Release(ctx, "s1", []string{"a"}))
	if *again != (client.ReleaseResult{AlreadyReleased: 1}) {
		t.Fatalf("release again %+v", again)
	}
	g := must[*client.ListDetail](t, "list")(c.GetList(ctx, l.ID))
	if g.Released != 1 || g.Available != 1 || g.Used != 2 || g.FallbackUsed != 1 {
		t.Fatalf("after the release %+v", g.List)
	}
	if ci := must[*client.CodeInfo](t, "lookup")(c.LookupCode(ctx, l.ID, a.Assignments[0].Code)); ci.State != "available" {
		t.Fatalf("a released code reads %+v", ci)
	}
	h := must[[]client.HistoryEntry](t, "history")(c.RecipientHistory(ctx, "a"))
	if len(h) != 1 || h[0].ReleasedAt == nil || h[0].Fallback {
		t.Fatalf("history of a %+v, want one released assignment", h)
	}
	if h := must[[]client.HistoryEntry](t, "history")(c.RecipientHistory(ctx, "e")); len(h) != 1 || !h[0].Fallback || h[0].ReleasedAt != nil {
		t.Fatalf("history of e %+v, want one live fallback", h)
	}

	// The forecast of a send of 10 on a list that drew 3 codes today.
	f := must[*client.Forecast](t, "forecast")(c.Forecast(ctx, l.ID, 10, ""))
	if f.Needed != 10 || f.Available != 1 || f.Shortfall != 9 || f.Enough || f.UsedLast7Days != 3 ||
		f.UsedPerDay != 3.0/7 || f.RunsOutAt == nil || f.ExpiresAt != nil {
		t.Fatalf("forecast %+v", f)
	}
	if _, err := c.Forecast(ctx, l.ID, 10, "no-such-send"); !client.IsNotFound(err) {
		t.Fatalf("forecast with an unknown send: %v", err)
	}

	// Expiry: past expires_at nothing new is handed out; codes given stay.
	past := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	u := must[*client.List](t, "expire")(c.UpdateList(ctx, l.ID, client.ListUpdate{ExpiresAt: &past, ClearFallback: true}))
	if !u.Expired || u.ExpiresAt == nil || !u.ExpiresAt.Equal(past) || u.FallbackCode != nil {
		t.Fatalf("expired list %+v", u)
	}
	_, err = c.Allocate(ctx, "s1", "", []string{"new"})
	wantStatus(t, err, 409, "list_expired")
	if a2 := must[*client.Allocation](t, "allocate again")(c.Allocate(ctx, "s1", "", []string{"b"})); a2.Assignments[0].Code != a.Assignments[1].Code {
		t.Fatalf("b's code after the expiry: %+v", a2)
	}
	if f := must[*client.Forecast](t, "forecast")(c.Forecast(ctx, l.ID, 1, "")); !f.Expired || f.Enough {
		t.Fatalf("forecast of an expired list %+v", f)
	}
	u = must[*client.List](t, "no expiry")(c.UpdateList(ctx, l.ID, client.ListUpdate{NoExpiry: true}))
	if u.Expired || u.ExpiresAt != nil {
		t.Fatalf("list without expiry %+v", u)
	}
	if _, err := c.UpdateList(ctx, l.ID, client.ListUpdate{}); err == nil {
		t.Fatal("an empty update was sent")
	}
}
