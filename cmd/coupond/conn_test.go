package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Connections from clients that hold no token must not put secrets or
// floods into the node's log.

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
	p.start()
	admin := p.token("admin.token")
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
			c := dialRaw(t, p.httpAddr)
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
	p.stop() // every line is written once the process has exited
	logs := p.logs.String()
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
	p.start()
	const broken = 40
	for i := range broken {
		c := dialRaw(t, p.httpAddr)
		fmt.Fprintf(c, "NOT HTTP %d\r\n\r\n", i)
		waitClosed(t, c, 10*time.Second)
		c.Close()
	}
	p.stop()
	var lines, suppressed int
	for _, line := range strings.Split(p.logs.String(), "\n") {
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
