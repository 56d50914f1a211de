package daemon

import (
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// If the HTTP server stops by itself, the node reports an error, so the
// process exits non-zero and a supervisor restarts it; it once exited 0.
// The server is fasthttp's on httpListener, as the node runs it, without
// Raft.
func TestHTTPServerStoppingIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{log: zerolog.Nop(), served: make(chan error, 1)}
	logs := newLimitedLog(zerolog.Nop())
	srv := &fasthttp.Server{Handler: func(*fasthttp.RequestCtx) {}, Logger: fasthttpLogger{logs}}
	go func() { n.served <- srv.Serve(&httpListener{Listener: ln, body: time.Second, log: logs}) }()
	ln.Close() // the server's listener fails for good
	err = n.wait(make(chan os.Signal))
	if err == nil || !strings.Contains(err.Error(), "cannot serve HTTP") {
		t.Fatalf("wait = %v, want an error that the HTTP server stopped", err)
	}

	// A signal is a clean stop.
	sigs := make(chan os.Signal, 1)
	sigs <- os.Interrupt
	if err := (&Node{log: zerolog.Nop(), served: make(chan error, 1)}).wait(sigs); err != nil {
		t.Fatalf("wait after a signal = %v, want nil", err)
	}
}

// The HTTP connection flags: defaults, environment, and a clear error for
// a bad value.
func TestHTTPConnectionFlags(t *testing.T) {
	base := []string{"--data", t.TempDir()}
	f := func(args []string, env map[string]string, wantErr string, want func(Config) bool) {
		t.Helper()
		var stderr strings.Builder
		c, err := ParseConfig(append(append([]string(nil), base...), args...), func(k string) string { return env[k] }, &stderr)
		switch {
		case wantErr == "" && err != nil:
			t.Fatalf("%v: %v", args, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("%v: error %v, want one with %q", args, err, wantErr)
		case wantErr == "" && !want(c):
			t.Fatalf("%v %v: got %+v", args, env, c)
		}
	}
	f(nil, nil, "", func(c Config) bool {
		return c.HTTPIdleTimeout == DefaultHTTPIdleTimeout && c.HTTPHeaderTimeout == DefaultHTTPHeaderTimeout &&
			c.HTTPBodyTimeout == DefaultHTTPBodyTimeout && c.HTTPMaxConns == 0
	})
	f([]string{"--http-body-timeout", "5s", "--http-max-conns", "100"}, nil, "", func(c Config) bool {
		return c.HTTPBodyTimeout == 5*time.Second && c.HTTPMaxConns == 100
	})
	f(nil, map[string]string{"COUPOND_HTTP_HEADER_TIMEOUT": "2s", "COUPOND_HTTP_IDLE_TIMEOUT": "3s"}, "", func(c Config) bool {
		return c.HTTPHeaderTimeout == 2*time.Second && c.HTTPIdleTimeout == 3*time.Second
	})
	f([]string{"--http-header-timeout", "0s"}, nil, "--http-header-timeout", nil)
	f([]string{"--http-body-timeout", "soon"}, nil, "--http-body-timeout", nil)
	f([]string{"--http-idle-timeout", "-1s"}, nil, "--http-idle-timeout", nil)
	f([]string{"--http-max-conns", "-1"}, nil, "--http-max-conns", nil)
	f([]string{"--http-max-conns", "many"}, nil, "--http-max-conns", nil)
}

// trackIdle finds the httpConn under TLS too, so an idle HTTPS connection
// waits --http-idle-timeout, not the body timeout.
func TestTrackIdleUnderTLS(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	hc := &httpConn{Conn: a, body: time.Second}
	for _, c := range []net.Conn{hc, tls.Server(hc, &tls.Config{})} {
		trackIdle(c, fasthttp.StateIdle)
		if !hc.idle.Load() {
			t.Fatalf("%T: not idle after StateIdle", c)
		}
		trackIdle(c, fasthttp.StateActive)
		if hc.idle.Load() {
			t.Fatalf("%T: idle after StateActive", c)
		}
	}
}
