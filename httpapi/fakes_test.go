package httpapi_test

// Fakes of the two interfaces the API talks to (httpapi.Writer and
// httpapi.Reader), so handlers run without Raft or Pebble: the tests drive
// (*httpapi.Server).Handler with a fasthttp.RequestCtx built in memory, and
// check the answer from the outside (status, error code, JSON, OpenAPI)
// and what reached the Writer. The fakes are deliberately dumb: a few maps,
// and just enough default behaviour for a handler's read after its write.

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// fakeKey names a tenant's message or send.
type fakeKey struct{ tenant, id string }

// fakeReader is the node's state as plain maps. It is safe for concurrent
// use: a streamed answer (GET .../assignments) reads it from fasthttp's
// own goroutine.
type fakeReader struct {
	mu          sync.Mutex
	tokens      map[[32]byte]*raftfsm.Token // by sha256 of the secret
	tenants     map[string]*raftfsm.Tenant
	lists       map[uint64]*raftfsm.ListView
	messages    map[fakeKey]*raftfsm.Message
	sends       map[fakeKey]*raftfsm.Send
	assignments map[fakeKey][]raftfsm.Assignment // by tenant and send, in order
	nodes       map[string]raftfsm.NodeInfo
	nextCodes   map[uint64]string // NextCode's answer per list

	onForecast func(tenant string, list uint64, recipients uint64, send string, now int64) (raftfsm.Forecast, error)
	forecasts  []fakeForecastCall

	// overlaps answers Overlaps by tenant and list (unknown: ErrNotFound).
	overlaps map[fakeOverlapKey][]raftfsm.Overlap
}

func newFakeReader() *fakeReader {
	return &fakeReader{
		tokens: map[[32]byte]*raftfsm.Token{}, tenants: map[string]*raftfsm.Tenant{},
		lists: map[uint64]*raftfsm.ListView{}, messages: map[fakeKey]*raftfsm.Message{},
		sends: map[fakeKey]*raftfsm.Send{}, assignments: map[fakeKey][]raftfsm.Assignment{},
		nodes: map[string]raftfsm.NodeInfo{}, nextCodes: map[uint64]string{},
	}
}

var _ httpapi.Reader = (*fakeReader)(nil)

func (r *fakeReader) AppliedIndex() uint64 { return 0 }
func (r *fakeReader) SettledIndex() uint64 { return 0 }
func (r *fakeReader) Digest() string       { return "fake" }

func (r *fakeReader) TokenByHash(h [32]byte) (*raftfsm.Token, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tokens[h]
	return t, ok
}

func (r *fakeReader) Tenant(id string) (*raftfsm.Tenant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tenants[id]
	return t, ok
}

func (r *fakeReader) Tenants() []*raftfsm.Tenant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*raftfsm.Tenant, 0, len(r.tenants))
	for _, t := range r.tenants {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *raftfsm.Tenant) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (r *fakeReader) Node(id string) (raftfsm.NodeInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.nodes[id]
	return n, ok
}

// ClusterKey is unknown: only forwarding needs it, and the fake node leads.
func (r *fakeReader) ClusterKey() ([raftfsm.ClusterKeyLen]byte, bool) {
	return [raftfsm.ClusterKeyLen]byte{}, false
}

// List answers a copy, as the state machine does: the handler's view must
// not change under it.
func (r *fakeReader) List(tenant string, id uint64) (*raftfsm.ListView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.lists[id]
	if !ok || l.Tenant != tenant {
		return nil, false
	}
	c := *l
	return &c, true
}

func (r *fakeReader) Lists(tenant string) []*raftfsm.ListView {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*raftfsm.ListView
	for _, l := range r.lists {
		if l.Tenant == tenant {
			c := *l
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *raftfsm.ListView) int {
		if c := cmp.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

func (r *fakeReader) CodeState(tenant string, list uint64, code []byte) (raftfsm.CodeInfo, error) {
	return raftfsm.CodeInfo{}, raftfsm.ErrNotFound
}

func (r *fakeReader) Message(tenant, id string) (*raftfsm.Message, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.messages[fakeKey{tenant, id}]
	if !ok {
		return nil, false
	}
	c := *m
	return &c, true
}

func (r *fakeReader) MessagesOfList(tenant string, list uint64) []*raftfsm.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*raftfsm.Message
	for k, m := range r.messages {
		if k.tenant == tenant && m.List == list {
			c := *m
			out = append(out, &c)
		}
	}
	slices.SortFunc(out, func(a, b *raftfsm.Message) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (r *fakeReader) Send(tenant, id string) (*raftfsm.Send, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sends[fakeKey{tenant, id}]
	if !ok {
		return nil, false
	}
	c := *s
	return &c, true
}

func (r *fakeReader) EachAssignment(tenant, send string, fn func(a *raftfsm.Assignment) error) error {
	r.mu.Lock()
	as := slices.Clone(r.assignments[fakeKey{tenant, send}])
	r.mu.Unlock()
	for i := range as {
		if err := fn(&as[i]); err != nil {
			return err
		}
	}
	return nil
}

func (r *fakeReader) RecipientHistory(tenant string, recipient []byte) ([]raftfsm.Assignment, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []raftfsm.Assignment
	for k, as := range r.assignments {
		for _, a := range as {
			if k.tenant == tenant && a.Recipient == string(recipient) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// Forecast answers forecast when a test set it, else ErrNotFound as for
// a list the fake does not know; the call is recorded.
func (r *fakeReader) Forecast(tenant string, list uint64, recipients uint64, send string, now int64) (raftfsm.Forecast, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forecasts = append(r.forecasts, fakeForecastCall{tenant, list, recipients, send, now})
	if r.onForecast == nil {
		return raftfsm.Forecast{}, raftfsm.ErrNotFound
	}
	return r.onForecast(tenant, list, recipients, send, now)
}

// NextCode answers the list's entry in nextCodes ("" or none: nothing
// available), ErrNotFound for a list the fake does not know.
func (r *fakeReader) NextCode(tenant string, list uint64) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.lists[list]; !ok || l.Tenant != tenant {
		return "", false, raftfsm.ErrNotFound
	}
	code := r.nextCodes[list]
	return code, code != "", nil
}

// LiveAssignment answers the recipient's last unreleased assignment in
// the send.
func (r *fakeReader) LiveAssignment(tenant, send string, recipient []byte) (raftfsm.Assignment, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sends[fakeKey{tenant, send}]; !ok {
		return raftfsm.Assignment{}, false, raftfsm.ErrNotFound
	}
	for _, a := range r.assignments[fakeKey{tenant, send}] {
		if a.Recipient == string(recipient) && a.ReleasedAt == 0 {
			return a, true, nil
		}
	}
	return raftfsm.Assignment{}, false, nil
}

// fakeForecastCall is one Forecast the handler asked for.
type fakeForecastCall struct {
	tenant     string
	list       uint64
	recipients uint64
	send       string
	now        int64
}

// fakeOverlapKey names a tenant's list in fakeReader.overlaps.
type fakeOverlapKey struct {
	tenant string
	list   uint64
}

func (r *fakeReader) Overlaps(tenant string, list uint64) ([]raftfsm.Overlap, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.overlaps[fakeOverlapKey{tenant, list}]
	if !ok {
		return nil, raftfsm.ErrNotFound
	}
	return o, nil
}

func (r *fakeReader) CodesAllocated() uint64     { return 0 }
func (r *fakeReader) CodesImported() uint64      { return 0 }
func (r *fakeReader) FallbacksGiven() uint64     { return 0 }
func (r *fakeReader) CodesReleased() uint64      { return 0 }
func (r *fakeReader) AssignmentsErased() uint64  { return 0 }
func (r *fakeReader) ExpiredLists(now int64) int { return 0 }
func (r *fakeReader) ListsSummary(limit int) ([]raftfsm.ListAvailability, int, uint64) {
	return nil, 0, 0
}
func (r *fakeReader) StoreMetrics() *pebble.Metrics { return &pebble.Metrics{} }

func (r *fakeReader) putList(l raftfsm.ListView) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lists[l.ID] = &l
}

func (r *fakeReader) putMessage(m raftfsm.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages[fakeKey{m.Tenant, m.ID}] = &m
}

func (r *fakeReader) putSend(s raftfsm.Send) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends[fakeKey{s.Tenant, s.ID}] = &s
}

func (r *fakeReader) putToken(secret string, t raftfsm.Token) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens[sha256.Sum256([]byte(secret))] = &t
}

// fakeCall is one write that reached the fake Writer.
type fakeCall struct {
	method string // "Propose", "OpenSend", "CloseSend", "Allocate", "Release", "Import", "AddVoter", "RemoveMember"
	arg    any    // the command, propose.Allocation, propose.ReleaseRequest, propose.Import, raftfsm.NodeInfo or node id
	// Import only: the codes the body gave through ImportBody.Next, and
	// the request digest of a keyed upload.
	codes  []string
	digest [sha256.Size]byte
	// estimated is a propose.SizedBody's EstimatedLen once read, or -2
	// when the body is no SizedBody.
	estimated int
}

// fakeWriter records every write it gets and answers it with the on*
// function a test set, or a default that updates the fake state the way
// the state machine would, as far as the handler reads it back. Like the
// Proposer, it refuses every write while writable is set, without
// recording it.
type fakeWriter struct {
	st *fakeReader

	mu    sync.Mutex
	calls []fakeCall

	onPropose      func(c raftfsm.Command) (any, error)
	onOpenSend     func(c *raftfsm.OpenSend) (raftfsm.OpenResult, error)
	onCloseSend    func(c *raftfsm.CloseSend) (*raftfsm.Send, error)
	onAllocate     func(a propose.Allocation) (propose.Allocated, error)
	onRelease      func(r propose.ReleaseRequest) (raftfsm.ReleaseResult, error)
	onImport       func(imp propose.Import, codes [][]byte) (raftfsm.ImportResult, error) // after the body was read
	onAddVoter     func(n raftfsm.NodeInfo) error
	onRemoveMember func(id string) error

	writable error // Writable's answer
	leader   string
	isLeader bool
	members  []propose.Member
	barriers int // ReadBarrier calls
}

var _ httpapi.Writer = (*fakeWriter)(nil)

func (w *fakeWriter) record(c fakeCall) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, c)
}

// writes answers the calls so far.
func (w *fakeWriter) writes() []fakeCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// refuse answers the Proposer's error while the node cannot write.
func (w *fakeWriter) refuse() error {
	if w.writable == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", propose.ErrStateUnwritable, w.writable)
}

func (w *fakeWriter) Propose(c raftfsm.Command) (any, error) {
	if err := w.refuse(); err != nil {
		return nil, err
	}
	w.record(fakeCall{method: "Propose", arg: c})
	if w.onPropose != nil {
		return w.onPropose(c)
	}
	return w.applyDefault(c)
}

// applyDefault changes the fake state as the state machine would, for the
// commands whose result a handler reads back.
func (w *fakeWriter) applyDefault(c raftfsm.Command) (any, error) {
	st := w.st
	switch c := c.(type) {
	case *raftfsm.CreateList:
		warn := uint32(raftfsm.DefaultWarnDays)
		if c.SetWarnDays {
			warn = c.WarnDays
		}
		st.putList(raftfsm.ListView{ListMeta: raftfsm.ListMeta{ID: c.ID, Tenant: c.Tenant, Name: c.Name,
			Dedupe: c.Dedupe, Threshold: c.Threshold, CreatedAt: c.At, FallbackCode: c.FallbackCode,
			HasExpiry: c.HasExpiry, ExpiresAt: c.ExpiresAt, WarnDays: warn}})
	case *raftfsm.UpdateList:
		l, ok := st.List(c.Tenant, c.ID)
		if !ok {
			return nil, raftfsm.ErrNotFound
		}
		if c.SetName {
			l.Name = c.Name
		}
		if c.SetThreshold {
			l.Threshold = c.Threshold
		}
		if c.SetFallback {
			l.FallbackCode = c.FallbackCode
		}
		if c.SetExpiry {
			l.HasExpiry, l.ExpiresAt = c.HasExpiry, c.ExpiresAt
		}
		if c.SetWarnDays {
			l.WarnDays = c.WarnDays
		}
		st.putList(*l)
	case *raftfsm.DeleteList:
		st.mu.Lock()
		delete(st.lists, c.ID)
		st.mu.Unlock()
	case *raftfsm.UpsertMessage:
		old, exists := st.Message(c.Tenant, c.ID)
		m := raftfsm.Message{Tenant: c.Tenant, ID: c.ID, Name: c.Name, Campaign: c.Campaign,
			CampaignType: c.CampaignType, Channel: c.Channel, DOI: c.DOI, Status: "draft"}
		if exists {
			m.Status, m.List = old.Status, old.List
		}
		if c.Status != "" {
			m.Status = c.Status
		}
		st.putMessage(m)
		return raftfsm.UpsertResult{Created: !exists}, nil
	case *raftfsm.AssignList:
		m, ok := st.Message(c.Tenant, c.Message)
		if !ok {
			return nil, raftfsm.ErrNotFound
		}
		if _, ok := st.List(c.Tenant, c.List); c.List != 0 && !ok {
			return nil, raftfsm.ErrNotFound
		}
		m.List = c.List
		st.putMessage(*m)
	case *raftfsm.CreateTenant:
		st.mu.Lock()
		defer st.mu.Unlock()
		if _, ok := st.tenants[c.ID]; ok {
			return nil, raftfsm.ErrExists
		}
		t := &raftfsm.Tenant{ID: c.ID, Name: c.Name, CreatedAt: c.At}
		st.tenants[c.ID] = t
		return t, nil
	case *raftfsm.CreateToken:
		st.mu.Lock()
		defer st.mu.Unlock()
		st.tokens[c.Hash] = &raftfsm.Token{ID: c.ID, Tenant: c.Tenant, Role: c.Role, Name: c.Name, CreatedAt: c.At}
	case *raftfsm.RevokeToken:
		st.mu.Lock()
		defer st.mu.Unlock()
		for h, t := range st.tokens {
			if t.ID == c.ID {
				delete(st.tokens, h)
				return nil, nil
			}
		}
		return nil, raftfsm.ErrNotFound
	}
	return nil, nil
}

func (w *fakeWriter) OpenSend(c *raftfsm.OpenSend) (raftfsm.OpenResult, error) {
	if err := w.refuse(); err != nil {
		return raftfsm.OpenResult{}, err
	}
	w.record(fakeCall{method: "OpenSend", arg: c})
	if w.onOpenSend != nil {
		return w.onOpenSend(c)
	}
	if s, ok := w.st.Send(c.Tenant, c.Send); ok {
		if c.SetOnShortage {
			s.OnShortage = c.OnShortage
			w.st.putSend(*s)
		}
		return raftfsm.OpenResult{Send: s}, nil
	}
	m, ok := w.st.Message(c.Tenant, c.Message)
	switch {
	case !ok:
		return raftfsm.OpenResult{}, raftfsm.ErrNotFound
	case m.List == 0:
		return raftfsm.OpenResult{}, raftfsm.ErrNoCouponList
	}
	s := raftfsm.Send{Tenant: c.Tenant, ID: c.Send, Message: c.Message, List: m.List, CreatedAt: c.At, OnShortage: c.OnShortage}
	w.st.putSend(s)
	return raftfsm.OpenResult{Send: &s, Created: true}, nil
}

func (w *fakeWriter) CloseSend(c *raftfsm.CloseSend) (*raftfsm.Send, error) {
	if err := w.refuse(); err != nil {
		return nil, err
	}
	w.record(fakeCall{method: "CloseSend", arg: c})
	if w.onCloseSend != nil {
		return w.onCloseSend(c)
	}
	s, ok := w.st.Send(c.Tenant, c.Send)
	if !ok {
		return nil, raftfsm.ErrNotFound
	}
	s.Closed = true
	w.st.putSend(*s)
	return s, nil
}

// Allocate records a copy of the recipients: the handler's slices point
// into the request body.
func (w *fakeWriter) Allocate(a propose.Allocation) (propose.Allocated, error) {
	if err := w.refuse(); err != nil {
		return propose.Allocated{}, err
	}
	rec := a
	rec.Recipients = make([][]byte, len(a.Recipients))
	for i, r := range a.Recipients {
		rec.Recipients[i] = bytes.Clone(r)
	}
	w.record(fakeCall{method: "Allocate", arg: rec})
	if w.onAllocate != nil {
		return w.onAllocate(a)
	}
	out := propose.Allocated{Codes: make([][]byte, len(a.Recipients))}
	for i, r := range a.Recipients {
		out.Codes[i] = append([]byte("code-"), r...)
	}
	return out, nil
}

// Release records a copy of the recipients, as Allocate does, and answers
// onRelease, else every recipient not assigned.
func (w *fakeWriter) Release(r propose.ReleaseRequest) (raftfsm.ReleaseResult, error) {
	if err := w.refuse(); err != nil {
		return raftfsm.ReleaseResult{}, err
	}
	rec := r
	rec.Recipients = make([][]byte, len(r.Recipients))
	for i, x := range r.Recipients {
		rec.Recipients[i] = bytes.Clone(x)
	}
	w.record(fakeCall{method: "Release", arg: rec})
	if w.onRelease != nil {
		return w.onRelease(r)
	}
	if _, ok := w.st.Send(r.Tenant, r.Send); !ok {
		return raftfsm.ReleaseResult{}, raftfsm.ErrNotFound
	}
	return raftfsm.ReleaseResult{NotAssigned: uint64(len(r.Recipients))}, nil
}

// Import reads the body whole, as the Proposer does (a read error comes
// back as a *propose.BodyError), then answers.
func (w *fakeWriter) Import(imp propose.Import, body propose.ImportBody) (raftfsm.ImportResult, error) {
	if err := w.refuse(); err != nil {
		return raftfsm.ImportResult{}, err
	}
	c := fakeCall{method: "Import", arg: imp}
	var codes [][]byte
	var readErr error
	for {
		code, err := body.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		codes = append(codes, bytes.Clone(code))
		c.codes = append(c.codes, string(code))
	}
	if readErr == nil && imp.Keyed {
		c.digest, readErr = body.Digest()
	}
	c.estimated = -2
	if sb, ok := body.(propose.SizedBody); ok {
		c.estimated = sb.EstimatedLen()
	}
	w.record(c)
	if readErr != nil {
		return raftfsm.ImportResult{}, &propose.BodyError{Err: readErr}
	}
	if w.onImport != nil {
		return w.onImport(imp, codes)
	}
	if imp.Create != nil {
		w.applyDefault(imp.Create)
	}
	l, ok := w.st.List(imp.Tenant, imp.List)
	if !ok {
		return raftfsm.ImportResult{}, raftfsm.ErrNotFound
	}
	n := uint64(len(codes))
	l.Added += n
	l.Available += n
	w.st.putList(*l)
	return raftfsm.ImportResult{List: l.ID, Imported: n, Size: l.Available}, nil
}

func (w *fakeWriter) AddVoter(n raftfsm.NodeInfo) error {
	if err := w.refuse(); err != nil {
		return err
	}
	w.record(fakeCall{method: "AddVoter", arg: n})
	if w.onAddVoter != nil {
		return w.onAddVoter(n)
	}
	return nil
}

func (w *fakeWriter) RemoveMember(id string) error {
	if err := w.refuse(); err != nil {
		return err
	}
	w.record(fakeCall{method: "RemoveMember", arg: id})
	if w.onRemoveMember != nil {
		return w.onRemoveMember(id)
	}
	return nil
}

func (w *fakeWriter) Writable() error { return w.writable }
func (w *fakeWriter) IsLeader() bool  { return w.isLeader }
func (w *fakeWriter) Leader() string  { return w.leader }

func (w *fakeWriter) ReadBarrier() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.barriers++
	return nil
}

func (w *fakeWriter) Members() ([]propose.Member, error) { return slices.Clone(w.members), nil }

func (w *fakeWriter) Status() propose.Status {
	return propose.Status{State: "leader", Term: 1, CommitIndex: 1, AppliedIndex: 1}
}

// fakeNode is an API server on the fakes: node n1, leader of a one-node
// cluster, with tenants "acme" and "other" and a token of each role.
type fakeNode struct {
	t   *testing.T
	w   *fakeWriter
	st  *fakeReader
	srv *httpapi.Server

	operator, admin, sender, otherAdmin string // bearer secrets
}

func newFakeNode(t *testing.T) *fakeNode {
	st := newFakeReader()
	now := time.Now().UnixNano()
	st.tenants["acme"] = &raftfsm.Tenant{ID: "acme", Name: "Acme", CreatedAt: now}
	st.tenants["other"] = &raftfsm.Tenant{ID: "other", Name: "Other", CreatedAt: now}
	n := &fakeNode{t: t, st: st, operator: "op-secret", admin: "acme-admin-secret", sender: "acme-sender-secret",
		otherAdmin: "other-admin-secret"}
	st.putToken(n.operator, raftfsm.Token{ID: "tok_op", Role: raftfsm.RoleOperator, CreatedAt: now})
	st.putToken(n.admin, raftfsm.Token{ID: "tok_admin", Tenant: "acme", Role: raftfsm.RoleAdmin, CreatedAt: now})
	st.putToken(n.sender, raftfsm.Token{ID: "tok_sender", Tenant: "acme", Role: raftfsm.RoleSender, CreatedAt: now})
	st.putToken(n.otherAdmin, raftfsm.Token{ID: "tok_other", Tenant: "other", Role: raftfsm.RoleAdmin, CreatedAt: now})
	st.nodes["n1"] = raftfsm.NodeInfo{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001"}
	n.w = &fakeWriter{st: st, leader: "n1", isLeader: true,
		members: []propose.Member{{ID: "n1", RaftAddr: "127.0.0.1:7001", Voter: true, Suffrage: "voter"}}}
	n.srv = n.newServer()
	n.srv.MarkCaughtUp()
	return n
}

// newServer answers a server on n's fakes that has not caught up yet.
func (n *fakeNode) newServer() *httpapi.Server {
	return httpapi.New(httpapi.Config{NodeID: "n1", HTTPAddr: "127.0.0.1:8001", MaxBody: 64 << 20, Log: zerolog.Nop()}, n.w, n.st)
}

// fakeReq is one request to a fakeNode; path is sent as written.
type fakeReq struct {
	method, path, token string
	ctype               string
	body                string
	headers             []string // "Name: value"
}

// do serves one request in memory and answers what a client would read;
// the answer is checked against docs/openapi.yaml like every answer of the
// HTTP tests.
func (n *fakeNode) do(q fakeReq) response {
	n.t.Helper()
	var req fasthttp.Request
	req.Header.SetMethod(q.method)
	req.Header.SetRequestURI(q.path)
	req.Header.SetHost("127.0.0.1:8001")
	if q.token != "" {
		req.Header.Set("Authorization", "Bearer "+q.token)
	}
	if q.ctype != "" {
		req.Header.SetContentType(q.ctype)
	}
	for _, h := range q.headers {
		k, v, _ := bytes.Cut([]byte(h), []byte(": "))
		req.Header.SetBytesKV(k, v)
	}
	if q.body != "" || (q.method != "GET" && q.method != "HEAD" && q.method != "DELETE") {
		req.SetBodyString(q.body)
		req.Header.SetContentLength(len(q.body))
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	n.srv.Handler(&ctx)

	r := response{status: ctx.Response.StatusCode(), header: http.Header{}}
	for k, v := range ctx.Response.Header.All() {
		r.header.Add(string(k), string(v))
	}
	r.body = bytes.Clone(ctx.Response.Body()) // reads a streamed answer to its end
	checkOpenAPI(n.t, q.method, q.path, r)
	return r
}

// json sends body (a JSON text) with its Content-Type.
func (n *fakeNode) json(method, path, token, body string) response {
	n.t.Helper()
	return n.do(fakeReq{method: method, path: path, token: token, ctype: "application/json", body: body})
}

// noWrites fails when any write reached the Writer.
func (n *fakeNode) noWrites() {
	n.t.Helper()
	if c := n.w.writes(); len(c) != 0 {
		n.t.Fatalf("the Writer got %d writes, want none: first %s %+v", len(c), c[0].method, c[0].arg)
	}
}

// takeWrite answers the one write that reached the Writer since the last
// take, failing unless there was exactly one and it went through method.
func (n *fakeNode) takeWrite(method string) fakeCall {
	n.t.Helper()
	c := n.w.writes()
	if len(c) != 1 || c[0].method != method {
		var got []string
		for _, x := range c {
			got = append(got, fmt.Sprintf("%s %T", x.method, x.arg))
		}
		n.t.Fatalf("the Writer got %v, want one %s", got, method)
	}
	n.w.mu.Lock()
	n.w.calls = nil
	n.w.mu.Unlock()
	return c[0]
}

// addList puts a list of a tenant into the fake state and answers its id
// as the API spells it.
func (n *fakeNode) addList(tenant string, id uint64, available uint64) string {
	n.st.putList(raftfsm.ListView{ListMeta: raftfsm.ListMeta{ID: id, Tenant: tenant, Name: fmt.Sprintf("list %d", id),
		Dedupe: true, CreatedAt: time.Now().UnixNano()}, Added: available, Available: available})
	return fmt.Sprintf("%016x", id)
}
