package bench

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeAPI is a minimal stand-in for coupond's list endpoints: just enough of
// SPEC §2 for the import scenario. It checks what the harness sends and
// records problems in errs.
type fakeAPI struct {
	token   string
	codeLen int // expected length of every code (0: do not check)

	// failStatus, when set, is the answer to the import (after reading the body).
	failStatus int
	failBody   string
	// lie, when set, makes the import report one code less.
	lie bool

	mu      sync.Mutex
	lists   map[string]*List
	nextID  int
	errs    []string
	uploads int
	state   string // file to persist lists to (fake node), "" for none

	gzipUploads int // uploads sent with Content-Encoding: gzip

	fakeSendState // messages, sends and the codes of each list (fake_sends_test.go)
}

func newFakeAPI(token string, codeLen int) *fakeAPI {
	return &fakeAPI{token: token, codeLen: codeLen, lists: map[string]*List{}}
}

func (f *fakeAPI) problem(format string, a ...any) {
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Sprintf(format, a...))
	f.mu.Unlock()
}

func (f *fakeAPI) problems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.errs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/readyz" || r.URL.Path == "/healthz":
		w.WriteHeader(http.StatusOK)
		return
	case !strings.HasPrefix(r.URL.Path, "/v1/"):
		writeErr(w, http.StatusNotFound, "not_found", "no such path")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.problem("%s %s: Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
		writeErr(w, http.StatusUnauthorized, "unauthorized", "bad token")
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/lists":
		f.mu.Lock()
		out := []List{}
		for _, l := range f.lists {
			out = append(out, *l)
		}
		f.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"lists": out})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/lists/"):
		id := strings.TrimPrefix(r.URL.Path, "/v1/lists/")
		f.mu.Lock()
		l, ok := f.lists[id]
		var cp List
		if ok {
			cp = *l
		}
		f.mu.Unlock()
		if !ok {
			writeErr(w, http.StatusNotFound, "not_found", "no such list")
			return
		}
		writeJSON(w, http.StatusOK, cp)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/lists":
		f.importCSV(w, r)
	default:
		if f.serveSends(w, r) {
			return
		}
		f.problem("unexpected call %s %s", r.Method, r.URL.Path)
		writeErr(w, http.StatusNotFound, "not_found", "no such call")
	}
}

func (f *fakeAPI) importCSV(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	if !strings.HasPrefix(name, "bench-") {
		f.problem("list name %q does not start with bench-", name)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/csv" {
		f.problem("Content-Type %q, want text/csv", ct)
	}
	var body io.Reader = r.Body
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "":
		if r.ContentLength < 0 {
			f.problem("no Content-Length (chunked upload)")
		}
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			f.problem("gzip upload: %v", err)
			writeErr(w, http.StatusBadRequest, "invalid_gzip", err.Error())
			return
		}
		body = zr
		f.mu.Lock()
		f.gzipUploads++
		f.mu.Unlock()
	default:
		f.problem("Content-Encoding %q", enc)
	}
	seen := map[string]struct{}{}
	var order []string
	var lines, bytesRead int64
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		bytesRead += int64(len(line)) + 1
		lines++
		if f.codeLen > 0 && len(line) != f.codeLen {
			f.problem("line %d: %q has length %d, want %d", lines, line, len(line), f.codeLen)
		}
		if strings.Trim(line, CodeAlphabet) != "" {
			f.problem("line %d: %q is not over [0-9A-Z]", lines, line)
		}
		if _, dup := seen[line]; dup {
			f.problem("line %d: %q repeated", lines, line)
		} else {
			order = append(order, line)
		}
		seen[line] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		f.problem("reading the body: %v", err)
	}
	if r.ContentLength >= 0 && body == io.Reader(r.Body) && bytesRead != r.ContentLength {
		f.problem("read %d bytes, Content-Length said %d", bytesRead, r.ContentLength)
	}
	if f.failStatus != 0 {
		writeErr(w, f.failStatus, "invalid_csv", f.failBody)
		return
	}
	f.mu.Lock()
	f.uploads++
	f.nextID++
	n := int64(len(seen))
	l := &List{
		ID: fmt.Sprintf("L%d", f.nextID), Name: name, Dedupe: true,
		Added: n, Available: n, CreatedAt: time.Now().UTC().Format(time.RFC3339),
	}
	f.lists[l.ID] = l
	f.keepCodesLocked(l.ID, order, seen)
	f.saveLocked()
	f.mu.Unlock()
	imported := n
	if f.lie {
		imported--
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"list":   l,
		"import": ImportResult{Imported: imported, Duplicates: lines - n, Size: n},
	})
}

func (f *fakeAPI) saveLocked() {
	if f.state == "" {
		return
	}
	b, _ := json.Marshal(f.lists)
	_ = os.WriteFile(f.state, b, 0o600)
}

// The test binary doubles as a fake coupond for the --spawn tests: with
// COUPONBENCH_FAKE_NODE=1 it serves fakeAPI with coupond's command line.
func TestMain(m *testing.M) {
	if os.Getenv("COUPONBENCH_FAKE_NODE") == "1" {
		os.Exit(fakeNodeMain(os.Args[1:]))
	}
	// The RSS of the harness's own process or of the fake node needs no
	// time to settle: keep the tests fast.
	settleDelay, settleWindow = 50*time.Millisecond, 200*time.Millisecond
	retrySampleSize = 200
	os.Exit(m.Run())
}

func fakeNodeMain(args []string) int {
	fs := flag.NewFlagSet("fake-coupond", flag.ContinueOnError)
	data := fs.String("data", "./data", "")
	httpAddr := fs.String("http", "127.0.0.1:8080", "")
	raftAddr := fs.String("raft", "127.0.0.1:8081", "")
	id := fs.String("id", "node1", "")
	join := fs.String("join", "", "")
	joinToken := fs.String("token-file", "", "")
	fs.String("log-format", "json", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *join != "" {
		return fakeJoinerMain(*id, *httpAddr, *raftAddr, *join, *joinToken)
	}
	if err := os.MkdirAll(*data, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tokPath := filepath.Join(*data, "admin.token")
	tok, err := os.ReadFile(tokPath)
	if err != nil {
		tok = []byte("fake-admin-token")
		if err := os.WriteFile(tokPath, append(tok, '\n'), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := os.WriteFile(filepath.Join(*data, "operator.token"), []byte(fakeOperatorToken+"\n"), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	api := newFakeAPI(strings.TrimSpace(string(tok)), 0)
	api.state = filepath.Join(*data, "lists.json")
	if b, err := os.ReadFile(api.state); err == nil {
		_ = json.Unmarshal(b, &api.lists)
		api.nextID = len(api.lists)
	}
	// Not ready for the first 100 ms, so the harness has to poll.
	start := time.Now()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && time.Since(start) < 100*time.Millisecond {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		api.ServeHTTP(w, r)
	})
	return serveFake(*httpAddr, newFakeLeader(*id, *raftAddr, *httpAddr, h))
}

// serveFake serves h on addr until SIGTERM or SIGINT.
func serveFake(addr string, h http.Handler) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: h}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Fprintf(os.Stderr, `{"level":"info","message":"fake coupond on %s"}`+"\n", addr)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-stopped
	return 0
}
