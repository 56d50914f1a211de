package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Spawn timings (SPEC §5 harness brief).
const (
	ReadyTimeout = 30 * time.Second
	ReadyPoll    = 20 * time.Millisecond
	StopGrace    = 10 * time.Second
)

// Node is a coupond process started by the harness in a temporary folder.
type Node struct {
	Bin      string
	Root     string // temporary folder, removed by Close
	DataDir  string // Root/data
	LogPath  string // Root/coupond.log (stdout and stderr of every run)
	HTTPAddr string
	RaftAddr string
	ID       string
	Join     string // HTTP address of a node to join (--join), "" to bootstrap
	JoinWith string // operator token file for --join (--token-file)
	Keep     bool   // Close leaves Root in place

	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	err   error         // cmd.Wait result, valid after done
	probe *Client       // for /readyz
}

// FreePorts picks n distinct free TCP ports on 127.0.0.1 by listening on
// port 0 and closing. (Another process could take one before the node binds
// it; on a bench machine that is rare enough.)
func FreePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// NewNode prepares (but does not start) a fresh single node from bin in a
// new temporary folder.
func NewNode(bin string) (*Node, error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, fmt.Errorf("picking ports: %w", err)
	}
	return newNode(bin, ports[0], ports[1])
}

// newNode prepares a node with the given HTTP and Raft ports.
func newNode(bin string, httpPort, raftPort int) (*Node, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("coupond binary: %w (build it: go build -o bin/coupond ./cmd/coupond, or pass --bin)", err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("coupond binary %s is not an executable file", abs)
	}
	root, err := os.MkdirTemp("", "couponbench-")
	if err != nil {
		return nil, err
	}
	n := &Node{
		Bin:      abs,
		Root:     root,
		DataDir:  filepath.Join(root, "data"),
		LogPath:  filepath.Join(root, "coupond.log"),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", httpPort),
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", raftPort),
		ID:       "node1",
	}
	n.probe = NewClient(n.HTTPAddr, "", 2)
	return n, nil
}

// Args are the command-line arguments of the node.
func (n *Node) Args() []string {
	a := []string{"--data", n.DataDir, "--http", n.HTTPAddr, "--raft", n.RaftAddr, "--id", n.ID, "--log-format", "json"}
	if n.Join != "" {
		a = append(a, "--join", n.Join, "--token-file", n.JoinWith)
	}
	return a
}

// TokenFile is the admin token the node writes on its first start.
func (n *Node) TokenFile() string { return filepath.Join(n.DataDir, "admin.token") }

// OperatorTokenFile is the operator token a bootstrapping node writes.
func (n *Node) OperatorTokenFile() string { return filepath.Join(n.DataDir, "operator.token") }

// PID is the process id of the running node (0 when not running).
func (n *Node) PID() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the node process has been started and not exited.
func (n *Node) Running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Start starts the process (its output appended to LogPath).
func (n *Node) Start() error {
	if n.Running() {
		return errors.New("node already running")
	}
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.Bin, n.Args()...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = n.Root
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", n.Bin, err)
	}
	n.cmd = cmd
	n.done = make(chan struct{})
	go func() {
		n.err = cmd.Wait()
		logf.Close()
		close(n.done)
	}()
	return nil
}

// WaitReady polls GET /readyz every ReadyPoll until it answers 200, the
// process exits, or timeout passes.
func (n *Node) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(ReadyPoll)
	defer t.Stop()
	for {
		if n.probe.Ready(ctx) {
			return nil
		}
		select {
		case <-n.done:
			return fmt.Errorf("coupond exited before it was ready (%v)%s", n.err, n.logTail())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("coupond not ready after %s at http://%s/readyz%s", timeout, n.HTTPAddr, n.logTail())
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL. It returns how long
// the process took to exit.
func (n *Node) Stop(grace time.Duration) (time.Duration, error) {
	if !n.Running() {
		return 0, nil
	}
	t0 := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, err
	}
	select {
	case <-n.done:
		return time.Since(t0), nil
	case <-time.After(grace):
	}
	_ = n.cmd.Process.Kill()
	<-n.done
	return time.Since(t0), fmt.Errorf("coupond did not stop within %s of SIGTERM; killed", grace)
}

// Kill sends SIGKILL (kill -9: no shutdown of any kind) and waits until
// the process is reaped. Start may then start it again on the same data.
func (n *Node) Kill() error {
	if !n.Running() {
		return errors.New("node not running")
	}
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-n.done
	return nil
}

// Close stops the node if it runs and removes its temporary folder (unless
// Keep).
func (n *Node) Close() error {
	n.probe.CloseIdle()
	_, err := n.Stop(StopGrace)
	if n.Keep {
		return err
	}
	if rerr := os.RemoveAll(n.Root); err == nil {
		err = rerr
	}
	return err
}

// WaitToken waits (up to timeout) for the admin token file and reads it.
func (n *Node) WaitToken(timeout time.Duration) (string, error) {
	return waitTokenFile(n.TokenFile(), timeout)
}

// waitTokenFile waits (up to timeout) for a token file and reads it.
func waitTokenFile(path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		tok, err := ReadToken(path)
		if err == nil {
			return tok, nil
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(ReadyPoll)
	}
}

// logTail returns the last lines of the node's log, for error messages.
func (n *Node) logTail() string {
	b, err := os.ReadFile(n.LogPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	b = bytes.TrimRight(b, "\n")
	lines := strings.Split(string(b), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return "\n--- last lines of " + n.LogPath + " ---\n" + strings.Join(lines, "\n")
}
