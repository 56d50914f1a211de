package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRawConn(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tk" || r.Header.Get("Content-Type") != "application/json" ||
			r.ContentLength != int64(len(body)) || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		switch r.URL.Path {
		case "/small":
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Write(body)
		case "/big": // more than net/http buffers: sent chunked
			w.WriteHeader(http.StatusOK)
			for range 1000 {
				w.Write(body)
			}
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":{"code":"insufficient_codes"}}`))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	rc := newRawConn(srv.URL, "tk")
	if rc == nil || newRawConn("https://x", "") != nil {
		t.Fatal("newRawConn")
	}
	defer rc.close()
	ctx := context.Background()
	var buf []byte
	check := func(path string, body string, wantStatus int, want string) {
		t.Helper()
		st, b, err := rc.post(ctx, path, []byte(body), buf)
		if err != nil || st != wantStatus || string(b) != want {
			t.Fatalf("%s: %d %.60q %v", path, st, b, err)
		}
		buf = b
	}
	check("/small", "hello", 200, "hello")
	check("/big", "0123456789", 200, strings.Repeat("0123456789", 1000))
	check("/small", "again", 200, "again") // same connection
	check("/close", "x", 409, `{"error":{"code":"insufficient_codes"}}`)
	if rc.conn != nil {
		t.Fatal("kept a connection the server closed")
	}
	check("/empty", "x", 204, "")
	// The server drops the idle connection: the request goes again on a new one.
	srv.CloseClientConnections()
	time.Sleep(20 * time.Millisecond)
	n := calls.Load()
	check("/small", "retried", 200, "retried")
	if calls.Load() != n+1 {
		t.Fatalf("%d calls for one request", calls.Load()-n)
	}
	// A cancelled context stops at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := rc.post(cctx, "/small", []byte("x"), nil); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}

func TestRawConnHungServer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	rc := newRawConn(srv.URL, "")
	defer rc.close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, _, err := rc.post(ctx, "/", []byte("x"), nil); err == nil || time.Since(t0) > 5*time.Second {
		t.Fatalf("err %v after %s", err, time.Since(t0))
	}
}

func TestBigSendNetHTTP(t *testing.T) {
	api, srv := fakeServer(t)
	cfg, out, errOut := sendConfig(t, "big-send", srv, "tok")
	cfg.NetHTTP = true
	cfg.Recipients = 5_000
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	noProblems(t, api)
	if !strings.Contains(out.String(), `"codes":5000`) {
		t.Fatalf("%s", out)
	}
}
