package daemon

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Connection limits of the HTTP server: no client, with or without a
// token, may hold the node's descriptors or goroutines for long, and a
// full descriptor table must never end the server.
const (
	DefaultHTTPIdleTimeout   = 2 * time.Minute
	DefaultHTTPHeaderTimeout = 30 * time.Second
	DefaultHTTPBodyTimeout   = time.Minute
	// maxAutoHTTPConns caps --http-max-conns 0 (auto); forwarding alone
	// may open up to 1,024 connections per follower to the leader.
	maxAutoHTTPConns = 4096
	// noRequestDeadline lifts the header deadline once the header is in:
	// a body may take as long as it keeps moving (an import of --max-body
	// over a slow link takes minutes); httpConn bounds each wait instead.
	noRequestDeadline = 100 * 365 * 24 * time.Hour
	// acceptBackoffMin and acceptBackoffMax bound the pause after a failed
	// accept (EMFILE and the like), as net/http does: the server retries
	// until the descriptors are back, it never stops.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// autoHTTPConns is the connection cap of --http-max-conns 0: half of the
// open-file limit, leaving the rest to the state, the Raft log, snapshots,
// Raft's connections and forwarding; at most maxAutoHTTPConns.
func autoHTTPConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur/2 >= maxAutoHTTPConns {
		return maxAutoHTTPConns
	}
	return max(int(rl.Cur/2), 1)
}

// httpListener keeps accepting through errors: fasthttp's Serve returns
// on any accept error that is not a timeout (EMFILE when the descriptors
// run out), which stopped the API for good. Only closing ends it.
type httpListener struct {
	net.Listener
	body time.Duration // the longest wait for a byte of a request
	log  *limitedLog
}

func (l *httpListener) Accept() (net.Conn, error) {
	pause := acceptBackoffMin
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return &httpConn{Conn: c, body: l.body}, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		// The error names a system call and an errno, never client bytes.
		l.log.warn("accept", func(ev *zerolog.Event) {
			ev.Str("error", err.Error()).Dur("retry_in", pause).Msg("cannot accept HTTP connections; retrying")
		})
		time.Sleep(pause)
		pause = min(2*pause, acceptBackoffMax)
	}
}

// httpConn bounds every wait for request bytes by the body timeout, as
// well as by the deadline fasthttp sets (the header timeout, then none
// for the body, the idle timeout between requests): a body that stalls
// fails its read, a body that keeps moving may take any time.
//
// Moving a socket's deadline costs a lock and a timer update in the
// runtime, and fasthttp moves it several times a request; so the deadline
// on the socket is set when a Read needs it, and only moved when it is off
// by more than 1/deadlineSlack of the body timeout.
type httpConn struct {
	net.Conn
	body     time.Duration
	deadline atomic.Int64 // UnixNano of the deadline fasthttp set; 0: none
	applied  atomic.Int64 // UnixNano of the deadline on the socket; 0: none
	idle     atomic.Bool  // between requests: only the idle timeout applies
}

// deadlineSlack divides the body timeout into how far the socket's
// deadline may be from the one wanted.
const deadlineSlack = 16

// SetReadDeadline keeps the deadline for the next Read, which puts it on
// the socket: fasthttp sets deadlines only from the goroutine that reads
// the connection, between reads, never to interrupt one.
func (c *httpConn) SetReadDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	c.deadline.Store(ns)
	return nil
}

func (c *httpConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *httpConn) Read(p []byte) (int, error) {
	d := c.deadline.Load()
	if !c.idle.Load() && c.body > 0 {
		if stall := time.Now().Add(c.body).UnixNano(); d == 0 || stall < d {
			d = stall
		}
	}
	if err := c.apply(d); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// apply puts the deadline want (UnixNano, 0: none) on the socket, unless
// the one there is within the slack of it.
func (c *httpConn) apply(want int64) error {
	have := c.applied.Load()
	if have == want {
		return nil
	}
	if have != 0 && want != 0 {
		if diff := want - have; diff >= -int64(c.body)/deadlineSlack && diff <= int64(c.body)/deadlineSlack {
			return nil
		}
	}
	c.applied.Store(want)
	t := time.Time{}
	if want != 0 {
		t = time.Unix(0, want)
	}
	return c.Conn.SetReadDeadline(t)
}

// trackIdle is fasthttp's ConnState hook: it tells httpConn when a
// keep-alive connection waits for its next request.
func trackIdle(nc net.Conn, st fasthttp.ConnState) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*httpConn)
	if !ok {
		return
	}
	switch st {
	case fasthttp.StateIdle:
		c.idle.Store(true)
	case fasthttp.StateActive:
		c.idle.Store(false)
	}
}
