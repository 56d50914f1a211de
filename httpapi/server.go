// Package httpapi serves coupond's HTTP API (SPEC §2) over fasthttp: routing
// on the raw path, bearer auth and roles, JSON and streaming CSV codecs, and
// the one mapping from state-machine outcomes to HTTP errors.
package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// Consensus is the part of Raft the API uses; *raft.Raft implements it.
type Consensus interface {
	Apply(cmd []byte, timeout time.Duration) raft.ApplyFuture
	State() raft.RaftState
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	CurrentTerm() uint64
	CommitIndex() uint64
	AppliedIndex() uint64
	LastContact() time.Time
	GetConfiguration() raft.ConfigurationFuture
	Barrier(timeout time.Duration) raft.Future
	AddVoter(id raft.ServerID, addr raft.ServerAddress, prevIndex uint64, timeout time.Duration) raft.IndexFuture
	RemoveServer(id raft.ServerID, prevIndex uint64, timeout time.Duration) raft.IndexFuture
}

// Config holds what the API needs from the daemon's configuration.
type Config struct {
	NodeID   string
	HTTPAddr string
	MaxBody  int64 // request body limit in bytes
	Log      zerolog.Logger
	// PeerTLS, when set, is how this node calls the other nodes' HTTPS
	// API (forwarding, probes); nil means plain HTTP.
	PeerTLS *tls.Config
	// Metrics is the node's registry (metrics.go); nil makes a fresh one.
	Metrics *Metrics
	// StateErr, when set, reports why this node cannot write its state
	// right now (a full disk), nil when it can: writes are then refused at
	// once and /readyz answers not ready, instead of waiting on a state
	// machine that cannot apply.
	StateErr func() error
}

// Limits of the API. Each is tested at the boundary and one past it.
const (
	// maxJSONBody bounds JSON requests, which are small by nature.
	maxJSONBody = 1 << 20
	// maxIdempotencyKey bounds the Idempotency-Key header of imports.
	maxIdempotencyKey = 256
	// maxNameLen bounds list and tenant names, in bytes.
	maxNameLen = 256
	// applyTimeout bounds the wait for one command's outcome, from the
	// Raft queue to the state machine's answer; past it the outcome is
	// unknown (503 unavailable).
	applyTimeout = 10 * time.Second
	// importChunkBytes is the payload of one staged import entry, kept
	// under raftfsm.MaxEntryBytes with room for the header.
	importChunkBytes = raftfsm.MaxEntryBytes - 1024
	// importPipeline is how many import chunks may wait in Raft at once,
	// so parsing overlaps with the log writes.
	importPipeline = 8
)

// Server answers the API for one node.
type Server struct {
	cfg  Config
	raft Consensus
	fsm  *raftfsm.FSM
	log  zerolog.Logger
	now  func() time.Time
	prom *Metrics

	batch     *batcher
	sends     *sendLocks
	fwd       *fasthttp.Client
	ready     atomic.Bool   // see caughtUp
	readFloor atomic.Uint64 // applied index the leader reported after the last write this node forwarded
	uploads   sync.Map      // UploadID -> struct{}: imports this node is streaming now
}

// New returns the API of one node.
func New(cfg Config, r Consensus, fsm *raftfsm.FSM) *Server {
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics()
	}
	m.registerNode(r, fsm, cfg.StateErr)
	b := newBatcher(r)
	if fsm != nil {
		fsm.SetEarlyAnswers(b.answerEarly)
	}
	return &Server{cfg: cfg, raft: r, fsm: fsm, log: cfg.Log, now: time.Now, prom: m, batch: b,
		sends: newSendLocks(), fwd: newForwardClient(cfg)}
}

// Close stops the API's background work; call it after the HTTP server stopped.
func (s *Server) Close() { s.batch.close() }

// Handler is the fasthttp entry point.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	route := s.serve(ctx)
	took := time.Since(start)
	s.prom.observeRequest(route, ctx.Response.StatusCode(), took)
	if ev := s.log.Debug(); ev.Enabled() { // skip the arguments' cost when off
		ev.Str("method", string(ctx.Method())).Str("route", route).
			Int("status", ctx.Response.StatusCode()).Dur("took", took).Msg("request")
	}
}

// request is one call after routing and authentication.
type request struct {
	ctx   *fasthttp.RequestCtx
	seg   []string  // decoded path segments
	segs  [8]string // seg's storage: no route is deeper
	token *raftfsm.Token
}

type handlerFunc func(s *Server, r *request) *apiError

type route struct {
	name    string
	roles   []raftfsm.Role // nil: no token needed
	handler handlerFunc
}

var all = []raftfsm.Role{raftfsm.RoleOperator, raftfsm.RoleAdmin, raftfsm.RoleSender}
var operatorOnly = []raftfsm.Role{raftfsm.RoleOperator}
var adminOnly = []raftfsm.Role{raftfsm.RoleAdmin}
var adminOrSender = []raftfsm.Role{raftfsm.RoleAdmin, raftfsm.RoleSender}

// match, the routing table, lives in routes.go.

func (s *Server) serve(ctx *fasthttp.RequestCtx) string {
	r := &request{ctx: ctx}
	seg, err := splitPath(r.segs[:0], ctx.Request.Header.RequestURI())
	if err != nil {
		writeError(ctx, badRequest(err.Error()))
		return "unknown"
	}
	rt, aerr := match(string(ctx.Method()), seg)
	if aerr != nil {
		if allow, ok := aerr.details["allow"].(string); ok {
			ctx.Response.Header.Set("Allow", allow)
		}
		writeError(ctx, aerr)
		drainBody(ctx)
		return rt.name
	}
	handled, peer := s.toLeader(ctx, rt)
	if handled {
		drainBody(ctx)
		return rt.name
	}
	if peer {
		defer func() {
			// Settled: the write may have been answered before its entry was
			// committed to the state (early answers, batcher.go).
			ctx.Response.Header.Set(hdrAppliedIndex, strconv.FormatUint(s.fsm.SettledIndex(), 10))
		}()
	}
	r.seg = seg
	if rt.roles != nil {
		var e *apiError
		r.token, e = s.admit(ctx, rt)
		if e != nil {
			writeError(ctx, e)
			drainBody(ctx)
			return rt.name
		}
	}
	if e := rt.handler(s, r); e != nil {
		if e.status >= 500 && e.status != fasthttp.StatusServiceUnavailable {
			s.log.Error().Str("route", rt.name).Str("error", e.message).Msg("request failed")
		}
		writeError(ctx, e)
	}
	drainBody(ctx)
	return rt.name
}

// admit checks that the node serves API calls yet, then the token and its role.
func (s *Server) admit(ctx *fasthttp.RequestCtx, rt route) (*raftfsm.Token, *apiError) {
	// A node that knows no leader (partitioned, removed, electing) may
	// hold state of any age: it answers nothing until it hears from one.
	if !s.Ready() {
		return nil, errNotReady
	}
	tok, ok := s.authenticate(ctx)
	if !ok {
		return nil, errUnauthorized
	}
	if !hasRole(rt.roles, tok.Role) {
		return nil, errForbidden
	}
	return tok, nil
}

// CaughtUp reports whether the node has caught up with its log once since
// it started: until then a restarted node may still be replaying, and an
// answer (even a 401 for a token not replayed yet) could be wrong.
func (s *Server) CaughtUp() bool { return s.ready.Load() }

// MarkCaughtUp is called by the daemon once a barrier of this node's term
// has been applied: everything committed before it is in the state.
func (s *Server) MarkCaughtUp() { s.ready.Store(true) }

func hasRole(roles []raftfsm.Role, r raftfsm.Role) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// authenticate looks up the bearer token by its hash; the secret is never
// kept or logged.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (*raftfsm.Token, bool) {
	h := ctx.Request.Header.Peek("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !equalFoldASCII(h[:len(prefix)], prefix) {
		return nil, false
	}
	return s.fsm.TokenByHash(sha256.Sum256(h[len(prefix):]))
}

// containsFoldASCII reports whether b holds s, ignoring ASCII case; s is
// lower case.
func containsFoldASCII(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if equalFoldASCII(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i]|0x20, s[i]|0x20
		if c != d {
			return false
		}
	}
	return true
}

// apply runs one command through Raft and waits for its outcome, for at
// most applyTimeout. Small commands share log entries with concurrent ones
// (batcher.go).
func (s *Server) apply(c raftfsm.Command) (any, *apiError) {
	if e := s.writable(); e != nil {
		return nil, e
	}
	cmd := raftfsm.Encode(c)
	if len(cmd) > smallCmdBytes {
		return s.wait(s.applyRaw(cmd))
	}
	resp, err := s.batch.submit(cmd)
	return outcome(resp, err)
}

// writable refuses a write at once while the node cannot write its state:
// it would wait out the apply timeout and add to the entries stuck in Raft.
func (s *Server) writable() *apiError {
	if s.cfg.StateErr == nil {
		return nil
	}
	if err := s.cfg.StateErr(); err != nil {
		return errStateUnwritable
	}
	return nil
}

// pendingApply is a command handed to Raft and the time its outcome is due.
type pendingApply struct {
	f        raft.ApplyFuture
	deadline time.Time
}

// applyRaw hands cmd to Raft on its own, without waiting for its outcome;
// the caller checks s.writable first. The wait for a place in Raft's
// queue counts against the same applyTimeout as the outcome.
func (s *Server) applyRaw(cmd []byte) pendingApply {
	deadline := time.Now().Add(applyTimeout)
	return pendingApply{f: s.raft.Apply(cmd, applyTimeout), deadline: deadline}
}

func outcome(resp *raftfsm.Response, err error) (any, *apiError) {
	if err != nil {
		return nil, fromRaft(err)
	}
	if resp.Err != nil {
		return nil, fromApply(resp.Err)
	}
	return resp.Value, nil
}

func (s *Server) wait(p pendingApply) (any, *apiError) {
	if err := await(p.f, p.deadline); err != nil {
		return outcome(nil, err)
	}
	resp, ok := p.f.Response().(*raftfsm.Response)
	if !ok {
		return nil, fromApply(nil)
	}
	return outcome(resp, nil)
}

// await waits for f until deadline. Raft's own timeout bounds only the wait
// for a place in its queue: a state machine that cannot write (Pebble
// stalls on a full disk) holds the future until space returns, and the
// client must have an answer before that. The goroutine ends when f does.
func await(f raft.Future, deadline time.Time) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return errApplyTimeout
	}
}

// newID returns a random 64-bit id that is never zero.
func newID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

func formatListID(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return hex.EncodeToString(b[:])
}

// parseListID reads an id made by formatListID; anything else names no list.
func parseListID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return 0, false
	}
	for _, c := range s {
		if c >= 'A' && c <= 'F' {
			return 0, false // one spelling per id
		}
	}
	return binary.BigEndian.Uint64(b[:]), true
}

func rfc3339(unixNano int64) string {
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339Nano)
}
