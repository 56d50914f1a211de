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
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

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
}

// Limits of the API. Each is tested at the boundary and one past it.
const (
	// maxJSONBody bounds JSON requests, which are small by nature.
	maxJSONBody = 1 << 20
	// maxIdempotencyKey bounds the Idempotency-Key header of imports.
	maxIdempotencyKey = 256
	// maxNameLen bounds list and tenant names, in bytes.
	maxNameLen = 256
	// applyTimeout is how long the leader takes at most to answer a
	// write (the proposer's); a forwarding node waits a little longer.
	applyTimeout = propose.DefaultApplyTimeout
)

// Server answers the API for one node.
type Server struct {
	cfg   Config
	prop  Writer
	state Reader
	log   zerolog.Logger
	now   func() time.Time
	prom  *Metrics

	fwd       *fasthttp.Client
	ready     atomic.Bool   // see caughtUp
	readFloor atomic.Uint64 // applied index the leader reported after the last write this node forwarded
}

// New returns the API of one node: it writes through prop and reads state.
func New(cfg Config, prop Writer, state Reader) *Server {
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics()
	}
	m.registerNode(prop, state)
	return &Server{cfg: cfg, prop: prop, state: state, log: cfg.Log, now: time.Now, prom: m, fwd: newForwardClient(cfg)}
}

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
	// local routes answer this node's own view (its cluster state, its
	// digest): never forwarded to the leader.
	local bool
}

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
			ctx.Response.Header.Set(hdrAppliedIndex, strconv.FormatUint(s.state.SettledIndex(), 10))
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
	return s.state.TokenByHash(sha256.Sum256(h[len(prefix):]))
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

// apply proposes one command and waits for its outcome.
func (s *Server) apply(c raftfsm.Command) (any, *apiError) {
	v, err := s.prop.Propose(c)
	if err != nil {
		return nil, fromApply(err)
	}
	return v, nil
}

// writable refuses a write at once while the node cannot write its state.
func (s *Server) writable() *apiError {
	if err := s.prop.Writable(); err != nil {
		return errStateUnwritable
	}
	return nil
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
