package httpapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// Forwarding: any node answers any call (SPEC §2). A follower passes writes
// and strong reads to the leader's HTTP API as they came, with the caller's
// Authorization header, so the leader checks the caller's token and role
// itself; the follower signs the call with the cluster key, so the leader
// knows another node sent it and never forwards it again.

// Headers of a forwarded call.
const (
	hdrForwardedBy = "X-Coupond-Forwarded-By"
	hdrForwardTime = "X-Coupond-Forward-Time"
	hdrForwardSig  = "X-Coupond-Forward-Signature"
	// hdrAppliedIndex on the leader's answer to a forwarded call is the
	// state machine's applied index after the call: a follower's local
	// reads wait for it, so a client sees its own writes on any one node.
	hdrAppliedIndex = "X-Coupond-Applied-Index"
)

// Bounds of forwarding.
const (
	// forwardClockSkew is how far a forwarded call's time may be from the
	// leader's clock; it bounds the replay of a captured signature.
	forwardClockSkew = 60 * time.Second
	// forwardWriteTimeout bounds sending a request to the leader: an import
	// of --max-body streams through it.
	forwardWriteTimeout = 10 * time.Minute
	// forwardReadTimeout bounds the leader's answer once the request is
	// sent: the leader answers within its own apply timeout, or a paused
	// leader would hold the caller for long.
	forwardReadTimeout = applyTimeout + 5*time.Second
	forwardDialTimeout = 3 * time.Second
	forwardMaxConns    = 1024
	// readFloorWait bounds how long a local read waits for the writes this
	// node forwarded; past it the read goes to the leader.
	readFloorWait = time.Second
)

var errNoLeader = newError(fasthttp.StatusServiceUnavailable, "no_leader", "the cluster has no leader right now; retry")

func newForwardClient(cfg Config) *fasthttp.Client {
	return &fasthttp.Client{
		Name:                     "coupond-forward",
		TLSConfig:                cfg.PeerTLS,
		ReadTimeout:              forwardReadTimeout,
		WriteTimeout:             forwardWriteTimeout,
		MaxConnsPerHost:          forwardMaxConns,
		DisablePathNormalizing:   true, // routing needs the raw path
		NoDefaultUserAgentHeader: true,
		Dial: func(addr string) (net.Conn, error) {
			return fasthttp.DialTimeout(addr, forwardDialTimeout)
		},
	}
}

// needsLeader reports whether a call must be answered by the leader: every
// write, and reads asked with ?consistency=strong. The node's own views
// (cluster state, digest, health) are always local.
func needsLeader(rt route, ctx *fasthttp.RequestCtx) bool {
	if rt.roles == nil || rt.local {
		return false // no token, or a view of this node itself
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		return true
	}
	return bytes.Equal(ctx.QueryArgs().Peek("consistency"), []byte("strong"))
}

// toLeader sends the call on to the leader when this node must not answer
// it, and holds a strong read on the leader until it may answer; it
// reports whether it answered the call itself, and whether another node
// forwarded the call.
func (s *Server) toLeader(ctx *fasthttp.RequestCtx, rt route) (handled, peer bool) {
	if rt.roles == nil {
		return false, false
	}
	fail := func(e *apiError) (bool, bool) {
		writeError(ctx, e)
		return true, peer
	}
	if e := checkConsistency(ctx); e != nil {
		return fail(e)
	}
	peer, e := s.fromPeer(ctx)
	if e != nil {
		return fail(e)
	}
	switch {
	case !needsLeader(rt, ctx):
		if peer || s.localReadCurrent() {
			return false, peer
		}
		// Still behind the writes this node forwarded: the leader answers.
	case s.prop.IsLeader():
		if ctx.IsGet() || ctx.IsHead() {
			if e := s.readBarrier(); e != nil {
				return fail(e)
			}
		}
		return false, peer
	case peer:
		// Forwarded once already: the leader moved on meanwhile.
		return fail(unavailable("this node is not the leader any more; retry"))
	}
	if e := s.forward(ctx); e != nil {
		return fail(e)
	}
	return true, false
}

// checkConsistency validates ?consistency= on a read.
func checkConsistency(ctx *fasthttp.RequestCtx) *apiError {
	switch string(ctx.QueryArgs().Peek("consistency")) {
	case "", "local", "strong":
		return nil
	}
	return badRequest(`consistency must be "local" (the default) or "strong"`)
}

// forwardSignature signs what identifies a forwarded call.
func forwardSignature(key [raftfsm.ClusterKeyLen]byte, node, at string, method, uri []byte) []byte {
	m := hmac.New(sha256.New, key[:])
	for _, p := range [][]byte{[]byte(node), []byte(at), method, uri} {
		m.Write(p)
		m.Write([]byte{0})
	}
	sum := m.Sum(nil)
	return hex.AppendEncode(nil, sum)
}

// fromPeer reports whether a call was forwarded by another node. A call
// that claims so with a bad signature is refused.
func (s *Server) fromPeer(ctx *fasthttp.RequestCtx) (bool, *apiError) {
	node := ctx.Request.Header.Peek(hdrForwardedBy)
	if node == nil {
		return false, nil
	}
	bad := newError(fasthttp.StatusUnauthorized, "unauthorized", "the forwarding signature is not valid")
	key, ok := s.state.ClusterKey()
	if !ok {
		return true, errNotReady
	}
	at := ctx.Request.Header.Peek(hdrForwardTime)
	sec, err := strconv.ParseInt(string(at), 10, 64)
	if err != nil {
		return true, bad
	}
	if d := s.now().Sub(time.Unix(sec, 0)); d > forwardClockSkew || d < -forwardClockSkew {
		return true, bad
	}
	want := forwardSignature(key, string(node), string(at), ctx.Method(), ctx.Request.Header.RequestURI())
	if !hmac.Equal(want, ctx.Request.Header.Peek(hdrForwardSig)) {
		return true, bad
	}
	return true, nil
}

// forward passes the call to the leader and its answer back. When the
// leader cannot be reached after the request may have reached it, the
// outcome is unknown: the caller retries, which every write allows.
func (s *Server) forward(ctx *fasthttp.RequestCtx) *apiError {
	leader := s.prop.Leader()
	if leader == "" || leader == s.cfg.NodeID {
		return errNoLeader
	}
	node, ok := s.state.Node(leader)
	key, hasKey := s.state.ClusterKey()
	if !ok || node.HTTPAddr == "" || !hasKey {
		return errNoLeader
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	ctx.Request.Header.CopyTo(&req.Header)
	uri := ctx.Request.Header.RequestURI()
	req.SetRequestURI(s.scheme() + "://" + node.HTTPAddr + string(uri))
	req.URI().DisablePathNormalizing = true
	req.Header.SetHost(node.HTTPAddr)
	at := strconv.FormatInt(s.now().Unix(), 10)
	req.Header.Set(hdrForwardedBy, s.cfg.NodeID)
	req.Header.Set(hdrForwardTime, at)
	req.Header.SetBytesV(hdrForwardSig, forwardSignature(key, s.cfg.NodeID, at, ctx.Method(), uri))
	req.Header.Set("X-Forwarded-For", ctx.RemoteIP().String())
	if !ctx.IsGet() && !ctx.IsHead() {
		req.SetBodyStream(bodyStream(ctx), ctx.Request.Header.ContentLength())
	}
	if err := s.fwd.Do(req, resp); err != nil {
		s.log.Warn().Str("leader", leader).Err(err).Msg("cannot forward to the leader")
		if errors.Is(err, fasthttp.ErrDialTimeout) || isDialError(err) {
			return errNoLeader // nothing reached the leader
		}
		return unavailable("the leader did not answer; the outcome is unknown: retry (retries are safe)")
	}
	if idx, err := strconv.ParseUint(string(resp.Header.Peek(hdrAppliedIndex)), 10, 64); err == nil {
		for cur := s.readFloor.Load(); idx > cur && !s.readFloor.CompareAndSwap(cur, idx); cur = s.readFloor.Load() {
		}
	}
	resp.Header.Del(hdrAppliedIndex)
	resp.Header.CopyTo(&ctx.Response.Header)
	ctx.Response.Header.ResetConnectionClose()
	ctx.SetStatusCode(resp.StatusCode())
	ctx.SetBody(resp.Body())
	return nil
}

// readBarrier makes a read on the leader linearizable
// (propose.Proposer.ReadBarrier).
func (s *Server) readBarrier() *apiError {
	if err := s.prop.ReadBarrier(); err != nil {
		return fromApply(err)
	}
	return nil
}

// localReadCurrent waits, briefly, until this node's state holds every
// write it forwarded so far; false means it is still behind.
func (s *Server) localReadCurrent() bool {
	floor := s.readFloor.Load()
	if s.state.AppliedIndex() >= floor {
		return true
	}
	deadline := time.Now().Add(readFloorWait)
	for s.state.AppliedIndex() < floor {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

// isDialError tells a connection that was never made (the request did not
// reach the leader) from one that broke later.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (s *Server) scheme() string {
	if s.cfg.PeerTLS != nil {
		return "https"
	}
	return "http"
}
