package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Connections from clients that hold no token must not stop the node, hold
// its descriptors for long, or put secrets and floods into its log.

// dialRaw opens a plain TCP connection to the node's API.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("cannot connect to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads until the server closes c (what it answered first is
// returned) or fails the test if c is still open after limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s (got %q)", limit, b)
	}
	return b
}

// waitAuthorized polls until an authenticated call succeeds.
func waitAuthorized(t *testing.T, p *proc, token string, limit time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", p.URL("/v1/lists"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no authenticated call succeeded within %s; last: %s", limit, last)
}

func mustRunning(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.Done:
		t.Fatalf("coupond exited with status %d", p.Cmd.ProcessState.ExitCode())
	default:
	}
}

// With the descriptor limit lowered, twice that many idle connections
// neither stop the node nor keep it from serving once they are gone: with
// the automatic connection cap the extra ones are refused, with a cap
// above the limit accept fails with EMFILE and is retried. The idle
// connections are closed by the server after the header timeout.
func TestIdleConnectionFloodUnderDescriptorLimit(t *testing.T) {
	const nofile = 256
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"automatic cap", nil},
		{"cap above the descriptor limit", []string{"--http-max-conns", "100000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProc(t, append([]string{"--http-header-timeout", "1s"}, tc.extra...)...)
			p.NoFile = nofile
			p.Start()
			admin := p.Token("admin.token")

			conns := make([]net.Conn, 0, 2*nofile)
			for range 2 * nofile {
				c, err := net.DialTimeout("tcp", p.HTTPAddr, 5*time.Second)
				if err != nil {
					select { // a refused connection: has the node died?
					case <-p.Done:
						t.Fatalf("coupond exited with status %d after %d connections", p.Cmd.ProcessState.ExitCode(), len(conns))
					case <-time.After(30 * time.Second): // a stopping node waits for its open connections
					}
					t.Fatalf("cannot connect after %d connections: %v", len(conns), err)
				}
				conns = append(conns, c)
			}
			var wg sync.WaitGroup
			errs := make(chan error, len(conns))
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					// Accepted ones time out after 1s, refused ones get a 503
					// at once; those left in the backlog are accepted as the
					// first ones close.
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					if _, err := io.ReadAll(c); err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							errs <- errors.New("an idle connection stayed open for 30s")
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			mustRunning(t, p)
			waitAuthorized(t, p, admin, 20*time.Second)
			mustRunning(t, p)
			p.Stop()
		})
	}
}

// Each kind of connection that sends nothing useful is closed after its
// timeout: never any request, a header that trickles in, a body that
// stalls, a keep-alive connection left idle.
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	p := newProc(t, "--http-header-timeout", "1s", "--http-body-timeout", "1s", "--http-idle-timeout", "1s")
	p.Start()
	admin := p.Token("admin.token")
	const limit = 10 * time.Second // well past each 1s timeout, well before the test's end

	t.Run("no request", func(t *testing.T) {
		waitClosed(t, dialRaw(t, p.HTTPAddr), limit)
	})
	t.Run("header trickles", func(t *testing.T) {
		c := dialRaw(t, p.HTTPAddr)
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			c.SetReadDeadline(time.Now().Add(limit))
			io.Copy(io.Discard, c) // until the server closes it or the limit
		}()
		// One byte every 100ms: each read waits less than the body timeout,
		// the whole header takes far longer than the header timeout.
		hdr := "GET /v1/lists HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)
		start := time.Now()
		for i := 0; i < len(hdr); i++ {
			select {
			case <-closed:
				if took := time.Since(start); took >= limit {
					t.Fatalf("still open after %s", took)
				}
				return
			case <-time.After(100 * time.Millisecond): // the client's pace, not a wait for a state
			}
			c.Write([]byte{hdr[i]}) // an error means the server closed it: seen above next
		}
		t.Fatalf("a header sent over %s was still read", time.Since(start))
	})
	t.Run("chunked body stalls", func(t *testing.T) {
		c := dialRaw(t, p.HTTPAddr)
		fmt.Fprintf(c, "POST /v1/lists?name=stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", admin, 13, "A00000000001\n")
		waitClosed(t, c, limit)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dialRaw(t, p.HTTPAddr)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("cannot read the answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("healthz: %d, close %v", resp.StatusCode, resp.Close)
		}
		waitClosed(t, c, limit)
	})
	mustRunning(t, p)
}

// A body that keeps moving is not cut, however long it takes: the header
// and body timeouts bound waits, not the upload.
func TestSlowMovingImportSucceeds(t *testing.T) {
	p := newProc(t, "--http-header-timeout", "1s", "--http-body-timeout", "1s")
	p.Start()
	admin := p.Token("admin.token")
	body := codesCSV("S", 0, 30)
	c := dialRaw(t, p.HTTPAddr)
	fmt.Fprintf(c, "POST /v1/lists?name=slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: text/csv\r\nContent-Length: %d\r\n\r\n", admin, len(body))
	// 30 codes, one every 100ms: 3s in all, three times each timeout.
	for i := 0; i < len(body); i += 13 {
		time.Sleep(100 * time.Millisecond) // the client's pace, not a wait for a state
		if _, err := c.Write(body[i : i+13]); err != nil {
			t.Fatalf("the server stopped reading a moving body: %v", err)
		}
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("cannot read the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		t.Fatalf("slow import: %d %s", resp.StatusCode, b)
	}
}

// An import whose body stalls gives its Idempotency-Key back once the
// body timeout closes it: a retry then imports instead of getting 409
// upload_in_progress for as long as the stalled connection lives.
func TestStalledImportFreesIdempotencyKey(t *testing.T) {
	p := newProc(t, "--http-body-timeout", "1s")
	p.Start()
	admin := p.Token("admin.token")

	// More than the streaming cutoff is announced, so the import runs
	// (and holds its key) while the body is still coming; a part comes.
	stalled := dialRaw(t, p.HTTPAddr)
	part := codesCSV("P", 0, 1000)
	fmt.Fprintf(stalled, "POST /v1/lists?name=stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: text/csv\r\nIdempotency-Key: stall-1\r\nContent-Length: %d\r\n\r\n", admin, 1<<20)
	if _, err := stalled.Write(part); err != nil {
		t.Fatal(err)
	}

	full := codesCSV("F", 0, 10)
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the retry never got through within 20s; last answer: %s", last)
		}
		req, _ := http.NewRequest("POST", p.URL("/v1/lists?name=stalled"), bytes.NewReader(full))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Idempotency-Key", "stall-1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		if resp.StatusCode == 201 {
			var out struct {
				Import struct {
					Imported int `json:"imported"`
				} `json:"import"`
			}
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatalf("cannot decode %s: %v", b, err)
			}
			if out.Import.Imported != len(full)/13 {
				t.Fatalf("the retry imported %d codes, want %d (nothing of the stalled body): %s", out.Import.Imported, len(full)/13, b)
			}
			break
		}
		if resp.StatusCode != 409 || !strings.Contains(string(b), "upload_in_progress") {
			t.Fatalf("retry: %s", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitClosed(t, stalled, 10*time.Second)
}

// secretParts are the 8-byte pieces of a secret; a log holding any of
// them holds a part of the secret.
func secretParts(secret string) []string {
	var parts []string
	for i := 0; i+8 <= len(secret); i++ {
		parts = append(parts, secret[i:i+8])
	}
	return parts
}

func randomSecret(t *testing.T) string {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// No malformed Authorization header brings any part of its token into
// the log, at debug level, and each gets a clean 400/401 (or 431) or a
// closed connection. Go's client refuses such headers: raw bytes go out.
func TestMalformedAuthorizationNeverLogged(t *testing.T) {
	p := newProc(t, "--log-level", "debug")
	p.Start()
	admin := p.Token("admin.token")
	realSecret := strings.TrimPrefix(admin, "cpd_")
	if realSecret == admin {
		t.Fatalf("the admin token %q has no cpd_ prefix", admin[:4])
	}

	var secrets []string
	for _, tc := range []struct {
		name  string
		value func(secret string) string
	}{
		{"CR at the end (Windows line ending)", func(s string) string { return "Bearer cpd_" + s + "\r" }},
		{"SOH", func(s string) string { return "Bearer cpd_" + s + "\x01" }},
		{"NUL", func(s string) string { return "Bearer cpd_" + s[:20] + "\x00" + s[20:] }},
		{"CR inside", func(s string) string { return "Bearer cpd_" + s[:20] + "\r" + s[20:] }},
		{"LF inside", func(s string) string { return "Bearer cpd_" + s[:20] + "\n" + s[20:] }},
		{"DEL", func(s string) string { return "Bearer cpd_" + s + "\x7f" }},
		{"ESC", func(s string) string { return "Bearer \x1bcpd_" + s }},
		{"non-UTF-8", func(s string) string { return "Bearer cpd_" + s + "\xff\xfe\xc3" }},
		{"8 KB value", func(s string) string { return "Bearer cpd_" + s + strings.Repeat("A", 8<<10) }},
		{"20 KB value, past the read buffer", func(s string) string { return "Bearer cpd_" + s + strings.Repeat("A", 20<<10) }},
		{"no scheme, control byte", func(s string) string { return "cpd_" + s + "\x02" }},
		{"unknown token, well formed", func(s string) string { return "Bearer cpd_" + s }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := randomSecret(t)
			if tc.name == "CR at the end (Windows line ending)" {
				secret = realSecret // the real case: a token file with CRLF
			}
			secrets = append(secrets, secret)
			c := dialRaw(t, p.HTTPAddr)
			fmt.Fprintf(c, "GET /v1/lists HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n", tc.value(secret))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("no answer and the connection is still open")
				}
				return // closed without an answer: clean enough
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case 400, 401, 431:
			default:
				t.Fatalf("answered %d", resp.StatusCode)
			}
		})
	}
	p.Stop() // every line is written once the process has exited
	logs := p.Logs.String()
	if !strings.Contains(logs, `"level":"debug"`) {
		t.Fatal("no debug line: the check would prove nothing")
	}
	for _, s := range secrets {
		for _, part := range secretParts(s) {
			if i := strings.Index(logs, part); i >= 0 {
				t.Fatalf("the log holds a part of a secret (%q): ...%s...", part, logs[max(0, i-200):min(len(logs), i+100)])
			}
		}
	}
}

// Broken connections from anyone do not flood the log: a bounded number
// of warnings, and the count of the rest when the node stops.
func TestBrokenConnectionWarningsAreRateLimited(t *testing.T) {
	p := newProc(t)
	p.Start()
	const broken = 40
	for i := range broken {
		c := dialRaw(t, p.HTTPAddr)
		fmt.Fprintf(c, "NOT HTTP %d\r\n\r\n", i)
		waitClosed(t, c, 10*time.Second)
		c.Close()
	}
	p.Stop()
	var lines, suppressed int
	for _, line := range strings.Split(p.Logs.String(), "\n") {
		var e struct {
			Level      string `json:"level"`
			Component  string `json:"component"`
			Message    string `json:"message"`
			Suppressed int    `json:"suppressed"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Component != "fasthttp" {
			continue
		}
		if e.Level != "warn" {
			t.Fatalf("fasthttp line at %s: %s", e.Level, line)
		}
		if strings.HasPrefix(e.Message, "error when serving connection") {
			lines++
		}
		suppressed += e.Suppressed
	}
	// logBurst in daemon/httplog.go.
	const logBurst = 5
	if lines < 1 || lines > logBurst {
		t.Fatalf("%d warnings for %d broken connections, want 1 to %d", lines, broken, logBurst)
	}
	if lines+suppressed != broken {
		t.Fatalf("%d lines + %d suppressed, want %d in all", lines, suppressed, broken)
	}
}
