// Package proctest runs coupond processes for the tests of the commands:
// a binary built once per test binary, a node on free loopback ports with
// its own data folder, its output kept in memory, and the tail of that
// output in the test's log when the test fails.
package proctest

import (
	"bytes"
	"fmt"
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

// Timeouts of a node's start and stop. A node under the race detector on
// a loaded 2-core machine can take tens of seconds to replay its log.
const (
	ReadyTimeout = 60 * time.Second
	StopTimeout  = 30 * time.Second
	readyPoll    = 20 * time.Millisecond
	logTail      = 4000 // bytes of output shown when a test fails
)

// builds is the folder of every binary built by this test binary; Main
// removes it.
var builds struct {
	once sync.Once
	dir  string
	err  error
}

// Main runs the tests and removes the binaries they built.
func Main(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// PrebuiltEnv names a folder of binaries built beforehand (make test):
// coupond, couponctl and coupond-race. Binary uses them instead of
// building its own.
const PrebuiltEnv = "PROCTEST_BIN_DIR"

// Binary is a command built on first use and shared by every test of the
// test binary.
type Binary struct {
	Pkg  string // the package, as go build takes it ("." or "../coupond")
	Race bool   // built with the race detector

	once sync.Once
	path string
	err  error
}

// Path builds the binary on the first call and answers its path; a build
// that fails fails every test that asks for it.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	if err := b.build(); err != nil {
		t.Fatal(err)
	}
	return b.path
}

func (b *Binary) build() error {
	b.once.Do(func() {
		builds.once.Do(func() { builds.dir, builds.err = os.MkdirTemp("", "proctest-bin") })
		if builds.err != nil {
			b.err = builds.err
			return
		}
		args := []string{"build"}
		name := filepath.Base(b.Pkg)
		if b.Pkg == "." {
			wd, _ := os.Getwd()
			name = filepath.Base(wd)
		}
		if b.Race {
			args = append(args, "-race")
			name += "-race"
		}
		// make test builds the binaries once, before the test binaries
		// that use them run at the same time, each of which would build
		// them again.
		if dir := os.Getenv(PrebuiltEnv); dir != "" {
			b.path = filepath.Join(dir, name)
			if _, err := os.Stat(b.path); err != nil {
				b.err = fmt.Errorf("%s=%s: %v", PrebuiltEnv, dir, err)
			}
			return
		}
		b.path = filepath.Join(builds.dir, name)
		out, err := exec.Command("go", append(args, "-o", b.path, b.Pkg)...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("cannot build %s (race %v): %v\n%s", b.Pkg, b.Race, err, out)
		}
	})
	return b.err
}

// FreeAddr is a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Buffer is an output sink safe for the process's writes and the test's
// reads at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Node is one coupond process on loopback ports. Its fields may be changed
// between New and Launch; Cmd and Done are set while a process runs.
type Node struct {
	T        *testing.T
	Dir      string // working folder, a fresh t.TempDir
	Data     string // --data, Dir/data unless changed
	HTTPAddr string
	RaftAddr string
	Args     []string // flags after --data, --http, --raft and --log-format json
	Bin      string
	NoFile   int     // when set, the process's open-file limit (ulimit -n)
	Logs     *Buffer // stdout and stderr of every run

	Cmd  *exec.Cmd     // the running process; nil once it was waited for by Kill9, Stop or Kill
	Done chan struct{} // closed when Cmd has exited
}

// New prepares a node of bin in a fresh folder; Start runs it. The test's
// cleanup kills the process and, if the test failed, logs its output's
// tail.
func New(t *testing.T, bin string, args ...string) *Node {
	t.Helper()
	dir := t.TempDir()
	n := &Node{T: t, Dir: dir, Data: filepath.Join(dir, "data"), HTTPAddr: FreeAddr(t), RaftAddr: FreeAddr(t),
		Args: args, Bin: bin, Logs: &Buffer{}}
	t.Cleanup(func() {
		n.Kill9()
		if t.Failed() {
			t.Logf("coupond logs:\n%s", Tail(n.Logs.String(), logTail))
		}
	})
	return n
}

// Command is the node's process on its folder and addresses, not started.
func (n *Node) Command() *exec.Cmd {
	args := append([]string{"--data", n.Data, "--http", n.HTTPAddr, "--raft", n.RaftAddr, "--log-format", "json"}, n.Args...)
	cmd := exec.Command(n.Bin, args...)
	if n.NoFile > 0 {
		// The shell lowers the limit and becomes coupond: same process.
		cmd = exec.Command("/bin/sh", append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, n.NoFile), n.Bin}, args...)...)
	}
	cmd.Dir = n.Dir
	return cmd
}

// Spawn starts the process and returns as soon as it runs.
func (n *Node) Spawn() error {
	cmd := n.Command()
	cmd.Stdout, cmd.Stderr = n.Logs, n.Logs
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	n.Cmd, n.Done = cmd, done
	return nil
}

// Launch is Spawn that fails the test when the process cannot start.
func (n *Node) Launch() {
	n.T.Helper()
	if err := n.Spawn(); err != nil {
		n.T.Fatalf("cannot start coupond: %v", err)
	}
}

// Start launches the process and waits until it is ready.
func (n *Node) Start() {
	n.T.Helper()
	n.Launch()
	n.WaitReady()
}

// URL is the node's HTTP URL of path.
func (n *Node) URL(path string) string { return "http://" + n.HTTPAddr + path }

// WaitReady waits until GET /readyz answers 200; the test fails when the
// process exits first or ReadyTimeout passes.
func (n *Node) WaitReady() {
	n.T.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-n.Done:
			n.T.Fatalf("coupond exited before it was ready:\n%s", Tail(n.Logs.String(), logTail))
		default:
		}
		resp, err := http.Get(n.URL("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(readyPoll)
	}
	n.T.Fatalf("coupond not ready after %s:\n%s", ReadyTimeout, Tail(n.Logs.String(), logTail))
}

// Kill9 ends the process with SIGKILL, as a crash would, and waits for it;
// it does nothing when no process runs.
func (n *Node) Kill9() {
	if n.Cmd != nil {
		n.Cmd.Process.Signal(syscall.SIGKILL)
		<-n.Done
		n.Cmd = nil
	}
}

// Stop sends SIGTERM and waits for a clean exit; the test fails after
// StopTimeout or on a non-zero exit status.
func (n *Node) Stop() {
	n.T.Helper()
	if n.Cmd == nil {
		return
	}
	n.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.Done:
	case <-time.After(StopTimeout):
		n.T.Fatalf("coupond did not stop within %s of SIGTERM", StopTimeout)
	}
	if code := n.Cmd.ProcessState.ExitCode(); code != 0 {
		n.T.Fatalf("coupond exited with %d after SIGTERM", code)
	}
	n.Cmd = nil
}

// Token reads a token file of the node's data folder (admin.token,
// operator.token).
func (n *Node) Token(name string) string {
	n.T.Helper()
	b, err := os.ReadFile(filepath.Join(n.Data, name))
	if err != nil {
		n.T.Fatalf("cannot read token: %v", err)
	}
	return strings.TrimSpace(string(b))
}
