package main

// The commands of the send lifecycle (fallback, expiry, release, forecast)
// against a scripted server: what each sends on the wire and how it reads
// the answer. The end-to-end test runs them against a real node.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// recorded is one request the scripted server got.
type recorded struct {
	method, uri string
	body        map[string]any // nil for an empty body
}

// scripted answers every request with reply(request) and records it.
type scripted struct {
	mu   sync.Mutex
	seen []recorded
	srv  *httptest.Server
}

func newScripted(t *testing.T, reply func(r *http.Request, body map[string]any) (int, string)) *scripted {
	s := &scripted{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("%s %s: the body is not a JSON object: %v: %s", r.Method, r.RequestURI, err, b)
			}
		}
		s.mu.Lock()
		s.seen = append(s.seen, recorded{r.Method, r.RequestURI, body})
		s.mu.Unlock()
		status, out := reply(r, body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, out)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *scripted) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.seen...)
}

// ctl runs couponctl in-process against s and answers stdout, stderr and the exit code.
func (s *scripted) ctl(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &ioEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
	args = append(args, "--addr", s.srv.URL, "--token", "t", "--retries", "1")
	code := run(context.Background(), args, env)
	return out.String(), errOut.String(), code
}

const listAnswer = `{"id":"00000000000000aa","name":"l","dedupe":true,"low_stock_threshold":0,"low_stock":false,
 "added":10,"available":4,"reserved":1,"used":5,"withdrawn":0,"used_or_deleted":5,"created_at":"2026-01-01T00:00:00Z",
 "fallback_code":"GENERIC-10","expires_at":"2026-12-31T00:00:00Z","expiry_warning_days":3,"expired":false,
 "released":2,"fallback_used":7}`

func TestListsUpdateLifecycleFlags(t *testing.T) {
	s := newScripted(t, func(*http.Request, map[string]any) (int, string) { return 200, listAnswer })
	f := func(want map[string]any, args ...string) {
		t.Helper()
		before := len(s.requests())
		if _, errOut, code := s.ctl(t, "", append([]string{"lists", "update", "00000000000000aa"}, args...)...); code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, errOut)
		}
		got := s.requests()[before:]
		if len(got) != 1 || got[0].method != "PATCH" || got[0].uri != "/v1/lists/00000000000000aa" {
			t.Fatalf("%q sent %+v, want one PATCH of the list", args, got)
		}
		if fmt.Sprint(got[0].body) != fmt.Sprint(want) {
			t.Fatalf("%q sent %v, want %v", args, got[0].body, want)
		}
	}
	f(map[string]any{"fallback_code": "GENERIC-10"}, "--fallback-code", "GENERIC-10")
	// Clearing sends null, which the server tells apart from an absent field.
	f(map[string]any{"fallback_code": nil}, "--clear-fallback")
	f(map[string]any{"expires_at": nil}, "--no-expiry")
	f(map[string]any{"expires_at": "2026-12-31T00:00:00Z", "expiry_warning_days": 3.0},
		"--expires-at", "2026-12-31", "--expiry-warning-days", "3")
	f(map[string]any{"expires_at": "2026-12-31T10:00:00Z"}, "--expires-at", "2026-12-31T12:00:00+02:00")
	f(map[string]any{"name": "x", "low_stock_threshold": 5.0}, "--name", "x", "--low-stock", "5")

	// The answer shows the new fields.
	out, _, code := s.ctl(t, "", "lists", "show", "00000000000000aa")
	for _, want := range []string{"GENERIC-10", "fallback used:", "7", "released:", "2026-12-31T00:00:00Z (warning 3 days before)"} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Fatalf("lists show (exit %d) lacks %q:\n%s", code, want, out)
		}
	}

	// Refused before any call.
	before := len(s.requests())
	for _, args := range [][]string{
		{},
		{"--fallback-code", "X", "--clear-fallback"},
		{"--expires-at", "2026-12-31", "--no-expiry"},
		{"--expires-at", "next week"},
		{"--expiry-warning-days", "3651"},
	} {
		if _, errOut, code := s.ctl(t, "", append([]string{"lists", "update", "00000000000000aa"}, args...)...); code != exitUsage {
			t.Fatalf("%q: exit %d, want %d: %s", args, code, exitUsage, errOut)
		}
	}
	if n := len(s.requests()) - before; n != 0 {
		t.Fatalf("refused command lines made %d calls", n)
	}
}

func TestListsCreateLifecycleFlags(t *testing.T) {
	s := newScripted(t, func(*http.Request, map[string]any) (int, string) { return 201, listAnswer })
	if _, errOut, code := s.ctl(t, "", "lists", "create", "l", "--fallback-code", "GENERIC-10",
		"--expires-at", "2026-12-31T00:00:00Z", "--expiry-warning-days", "0"); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := s.requests()
	want := map[string]any{"name": "l", "fallback_code": "GENERIC-10", "expires_at": "2026-12-31T00:00:00Z", "expiry_warning_days": 0.0}
	if len(got) != 1 || got[0].method != "POST" || fmt.Sprint(got[0].body) != fmt.Sprint(want) {
		t.Fatalf("sent %+v, want a POST of %v", got, want)
	}
}

func TestListsForecast(t *testing.T) {
	s := newScripted(t, func(r *http.Request, _ map[string]any) (int, string) {
		if r.URL.Query().Get("send_id") == "gone" {
			return 404, `{"error":{"code":"not_found","message":"no such resource"}}`
		}
		return 200, `{"recipients":1000,"needed":900,"available":600,"reserved":100,"shortfall":300,"enough":false,
		 "used_last_7_days":70,"used_per_day":10,"runs_out_at":"2026-03-02T00:00:00Z","expires_at":null,"expired":false}`
	})
	out, errOut, code := s.ctl(t, "", "lists", "forecast", "00000000000000aa", "--recipients", "1000", "--send", "s/1")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := s.requests()
	if len(got) != 1 || got[0].method != "GET" || got[0].uri != "/v1/lists/00000000000000aa/forecast?recipients=1000&send_id=s%2F1" {
		t.Fatalf("sent %+v", got)
	}
	for _, want := range []string{"no: 300 codes short", "70 (10.0 a day)", "2026-03-02T00:00:00Z", "expires:", "never"} {
		if !strings.Contains(out, want) {
			t.Fatalf("forecast lacks %q:\n%s", want, out)
		}
	}
	if _, _, code := s.ctl(t, "", "lists", "forecast", "00000000000000aa", "--recipients", "5", "--send", "gone"); code != exitNotFound {
		t.Fatalf("an unknown send: exit %d, want %d", code, exitNotFound)
	}
	if _, _, code := s.ctl(t, "", "lists", "forecast", "00000000000000aa"); code != exitUsage {
		t.Fatalf("no --recipients: exit %d, want %d", code, exitUsage)
	}
}

func TestSendsRelease(t *testing.T) {
	s := newScripted(t, func(_ *http.Request, body map[string]any) (int, string) {
		n := len(body["recipients"].([]any))
		return 200, fmt.Sprintf(`{"released":%d,"not_assigned":1,"already_released":0}`, n-1)
	})
	path := filepath.Join(t.TempDir(), "bounces.txt")
	if err := os.WriteFile(path, []byte("a@x\r\nb@x\n\nc@x\nd@x\ne@x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := s.ctl(t, "", "sends", "release", "s1", path, "--chunk", "2", "--json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := s.requests()
	var sent []string
	for _, r := range got {
		if r.method != "POST" || r.uri != "/v1/sends/s1/release" {
			t.Fatalf("sent %s %s", r.method, r.uri)
		}
		sent = append(sent, fmt.Sprint(r.body["recipients"]))
	}
	if want := "[[a@x b@x] [c@x d@x] [e@x]]"; fmt.Sprint(sent) != want {
		t.Fatalf("chunks %v, want %s", sent, want)
	}
	var sum map[string]int
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum["released"] != 2 || sum["not_assigned"] != 3 || sum["already_released"] != 0 {
		t.Fatalf("summary %s (%v), want the sums of the chunks", out, err)
	}

	// From stdin, with the human summary.
	out, _, code = s.ctl(t, "x@y\n", "sends", "release", "s1", "-")
	if code != exitOK || !strings.Contains(out, "released 0, not assigned 1, already released 0") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if _, _, code := s.ctl(t, "\n\n", "sends", "release", "s1", "-"); code != exitUsage {
		t.Fatalf("no recipients: exit %d, want %d", code, exitUsage)
	}
}

func TestSendsOnShortage(t *testing.T) {
	s := newScripted(t, func(r *http.Request, _ map[string]any) (int, string) {
		if r.Method == "PUT" {
			return 201, `{"send_id":"s1","list_id":"00000000000000aa","reserved":0,"on_shortage":"fallback"}`
		}
		return 200, `{"assignments":[{"recipient":"a","code":"C1"},{"recipient":"b","code":"GENERIC","fallback":true}],"available":0}`
	})
	out, errOut, code := s.ctl(t, "", "sends", "open", "s1", "--message", "m1", "--on-shortage", "fallback")
	if code != exitOK || !strings.Contains(out, "on shortage: fallback") {
		t.Fatalf("open: exit %d: %s%s", code, out, errOut)
	}
	out, errOut, code = s.ctl(t, "", "sends", "allocate", "s2", "a", "b", "--message", "m1", "--on-shortage", "fallback")
	if code != exitOK || !strings.Contains(out, "1 of them the fallback code") {
		t.Fatalf("allocate: exit %d: %s%s", code, out, errOut)
	}
	got := s.requests()
	if len(got) != 2 || got[0].body["on_shortage"] != "fallback" || got[1].body["on_shortage"] != "fallback" {
		t.Fatalf("sent %+v, want on_shortage fallback in both", got)
	}
	// Without the flag nothing is sent: an open send keeps its policy.
	s.ctl(t, "", "sends", "open", "s1", "--message", "m1")
	if got := s.requests(); len(got) != 3 || got[2].body["on_shortage"] != nil {
		t.Fatalf("sent %+v, want no on_shortage", got[len(got)-1])
	}
	if _, _, code := s.ctl(t, "", "sends", "open", "s1", "--message", "m1", "--on-shortage", "maybe"); code != exitUsage {
		t.Fatalf("a bad policy: exit %d, want %d", code, exitUsage)
	}
}
