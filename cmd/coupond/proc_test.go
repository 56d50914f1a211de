package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the coupond binary built once for the tests of this package.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coupond-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "coupond")
	build := exec.Command("go", "build", "-race", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot build coupond:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fastBin is a coupond built without the race detector, for the tests whose
// subject is the disk, not concurrency, and that move millions of codes:
// under the race detector a restore of 5M codes takes ten times as long.
var fastBin struct {
	once sync.Once
	path string
	err  error
}

func fastBinary(t *testing.T) string {
	t.Helper()
	fastBin.once.Do(func() {
		fastBin.path = filepath.Join(filepath.Dir(binPath), "coupond-norace")
		out, err := exec.Command("go", "build", "-o", fastBin.path, ".").CombinedOutput()
		if err != nil {
			fastBin.err = fmt.Errorf("cannot build coupond without -race: %v: %s", err, out)
		}
	})
	if fastBin.err != nil {
		t.Fatal(fastBin.err)
	}
	return fastBin.path
}

// proc is a real coupond process on loopback ports.
type proc struct {
	t        *testing.T
	dir      string // working directory
	data     string
	httpAddr string
	raftAddr string
	extra    []string
	bin      string // the binary to run; binPath when empty
	nofile   int    // when set, the process's open-file limit (ulimit -n)
	cmd      *exec.Cmd
	logs     *syncBuffer
	done     chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// newProc prepares a node in a fresh folder; start runs it.
func newProc(t *testing.T, extra ...string) *proc {
	dir := t.TempDir()
	p := &proc{t: t, dir: dir, data: filepath.Join(dir, "data"), httpAddr: freePort(t), raftAddr: freePort(t), extra: extra, logs: &syncBuffer{}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("coupond logs:\n%s", tail(p.logs.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = p.command()
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("cannot start coupond: %v", err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	p.waitReady()
}

// command is the node's process on its folder and addresses, not started.
func (p *proc) command() *exec.Cmd {
	args := append([]string{"--data", p.data, "--http", p.httpAddr, "--raft", p.raftAddr, "--log-format", "json"}, p.extra...)
	bin := p.bin
	if bin == "" {
		bin = binPath
	}
	cmd := exec.Command(bin, args...)
	if p.nofile > 0 {
		// The shell lowers the limit and becomes coupond: same process.
		cmd = exec.Command("/bin/sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, p.nofile), bin}, args...)...)
	}
	cmd.Dir = p.dir
	return cmd
}

func (p *proc) url(path string) string { return "http://" + p.httpAddr + path }

func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.t.Fatalf("coupond exited before it was ready:\n%s", tail(p.logs.String(), 4000))
		default:
		}
		resp, err := http.Get(p.url("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("coupond not ready after 60s:\n%s", tail(p.logs.String(), 4000))
}

// kill9 ends the process with SIGKILL, as a crash would.
func (p *proc) kill9() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatal("coupond did not stop within 30s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("coupond exited with %d after SIGTERM", code)
	}
	p.cmd = nil
}

func (p *proc) kill() {
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.cmd = nil
	}
}

func (p *proc) token(name string) string {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.data, name))
	if err != nil {
		p.t.Fatalf("cannot read token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// do sends one request and returns the status and body.
func (p *proc) do(method, path, token, contentType string, body io.Reader) (int, []byte) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.url(path), body)
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
