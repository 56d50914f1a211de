package daemon_test

// Helpers of the multi-node tests (partition_test.go, tls_test.go): nodes of
// one cluster in this process, a Raft stream layer that can cut a node off
// the others, HTTP(S) calls that report transport errors, and polling.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/daemon"
)

// faultNet is the in-test network of the Raft layers: it knows which node
// listens on which address, and can cut a node off. A cut node can neither
// dial nor be dialled, and every connection it has is closed.
type faultNet struct {
	mu      sync.Mutex
	byAddr  map[string]string // Raft address -> node id
	cut     map[string]bool   // no new connection to or from the node
	sealed  map[string]bool   // and every old one closed: Cut has returned
	conns   map[*faultConn]struct{}
	layers  []*faultLayer
	refused map[string]int // node id -> connections refused because of a cut
}

// errCut is what a dial involving a cut node fails with.
var errCut = errors.New("faultnet: node is cut off")

func newFaultNet(t *testing.T) *faultNet {
	fn := &faultNet{byAddr: map[string]string{}, cut: map[string]bool{}, sealed: map[string]bool{},
		conns: map[*faultConn]struct{}{}, refused: map[string]int{}}
	// Registered before any node, so it runs after every node closed.
	t.Cleanup(fn.close)
	return fn
}

// layer listens on a fresh loopback port for node id.
func (fn *faultNet) layer(t *testing.T, id string) *faultLayer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &faultLayer{fn: fn, id: id, ln: ln}
	fn.mu.Lock()
	fn.byAddr[ln.Addr().String()] = id
	fn.layers = append(fn.layers, l)
	fn.mu.Unlock()
	return l
}

// Cut isolates node id: from now on no connection to or from it is made,
// and those it has are closed.
func (fn *faultNet) Cut(id string) {
	fn.mu.Lock()
	fn.cut[id] = true
	var doomed []*faultConn
	for c := range fn.conns {
		if c.local == id || c.peer == id {
			doomed = append(doomed, c)
			delete(fn.conns, c)
		}
	}
	fn.mu.Unlock()
	for _, c := range doomed {
		c.Conn.Close()
	}
	fn.mu.Lock()
	fn.sealed[id] = true
	fn.mu.Unlock()
}

// Heal lets node id talk to the others again.
func (fn *faultNet) Heal(id string) {
	fn.mu.Lock()
	delete(fn.cut, id)
	delete(fn.sealed, id)
	fn.mu.Unlock()
}

// isCut reports whether node id is cut off and Cut has returned: until
// then, connections it had may still carry a few bytes (a write sent to it
// just before may still be acknowledged).
func (fn *faultNet) isCut(id string) bool {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return fn.sealed[id]
}

func (fn *faultNet) refusedOf(id string) int {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return fn.refused[id]
}

// admit tracks c once both its ends are known, unless one of them is cut.
func (fn *faultNet) admit(c *faultConn, peer string) error {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.cut[c.local] || fn.cut[peer] {
		fn.refused[c.local]++
		return errCut
	}
	c.peer = peer
	fn.conns[c] = struct{}{}
	return nil
}

func (fn *faultNet) forget(c *faultConn) {
	fn.mu.Lock()
	delete(fn.conns, c)
	fn.mu.Unlock()
}

func (fn *faultNet) close() {
	fn.mu.Lock()
	conns, layers := fn.conns, fn.layers
	fn.conns = map[*faultConn]struct{}{}
	fn.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
	for _, l := range layers {
		l.ln.Close() // already closed by its transport unless its node never started
	}
}

// faultLayer is one node's raft.StreamLayer on the faultNet. A dialler
// sends its node id on one line first; the accepting side reads it before
// Raft reads anything, so every connection is known by its two nodes.
type faultLayer struct {
	fn *faultNet
	id string
	ln net.Listener
}

var _ raft.StreamLayer = (*faultLayer)(nil)

func (l *faultLayer) Addr() net.Addr { return l.ln.Addr() }
func (l *faultLayer) Close() error   { return l.ln.Close() }

// Accept hands the connection over at once; its first Read consumes the
// header (so a slow dialler never holds up the accept loop).
func (l *faultLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &faultConn{Conn: c, fn: l.fn, local: l.id, accepted: true}, nil
}

func (l *faultLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	l.fn.mu.Lock()
	peer, known := l.fn.byAddr[string(addr)]
	cut := l.fn.cut[l.id] || l.fn.cut[peer]
	if cut {
		l.fn.refused[l.id]++
	}
	l.fn.mu.Unlock()
	if !known {
		return nil, fmt.Errorf("faultnet: no node listens on %s", addr)
	}
	if cut {
		return nil, errCut
	}
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, l.id+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	fc := &faultConn{Conn: c, fn: l.fn, local: l.id}
	if err := l.fn.admit(fc, peer); err != nil {
		c.Close()
		return nil, err
	}
	return fc, nil
}

// faultConn is a connection of the faultNet.
type faultConn struct {
	net.Conn
	fn       *faultNet
	local    string
	peer     string // guarded by fn.mu; "" until an accepted conn's header is read
	accepted bool

	header    sync.Once
	headerErr error
	closed    sync.Once
}

func (c *faultConn) Read(p []byte) (int, error) {
	if c.accepted {
		c.header.Do(func() { c.headerErr = c.readHeader() })
		if c.headerErr != nil {
			return 0, c.headerErr
		}
	}
	return c.Conn.Read(p)
}

// readHeader reads the dialler's node id byte by byte, so nothing of what
// follows is consumed.
func (c *faultConn) readHeader() error {
	c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var id []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(c.Conn, b[:]); err != nil {
			c.Conn.Close()
			return err
		}
		if b[0] == '\n' {
			break
		}
		if len(id) == 64 {
			c.Conn.Close()
			return errors.New("faultnet: header too long")
		}
		id = append(id, b[0])
	}
	c.Conn.SetReadDeadline(time.Time{})
	if err := c.fn.admit(c, string(id)); err != nil {
		c.Conn.Close()
		return err
	}
	return nil
}

func (c *faultConn) Close() error {
	var err error
	c.closed.Do(func() {
		c.fn.forget(c)
		err = c.Conn.Close()
	})
	return err
}

// clusterNode is one node of an in-process cluster.
type clusterNode struct {
	t      *testing.T
	id     string
	cfg    daemon.Config
	n      *daemon.Node
	logs   *logBuffer
	scheme string
	client *http.Client
	once   sync.Once
}

// startClusterNode starts a node on cfg (a complete configuration); it is
// closed when the test ends, and its logs are shown if the test failed.
// client makes the test's calls to it (nil: plain HTTP).
func startClusterNode(t *testing.T, cfg daemon.Config, client *http.Client) *clusterNode {
	t.Helper()
	cn := &clusterNode{t: t, id: cfg.NodeID, cfg: cfg, logs: &logBuffer{}, scheme: "http", client: client}
	if cfg.TLSCert != "" {
		cn.scheme = "https"
	}
	if client == nil {
		// Its own transport, so close can drop its idle connections: the
		// HTTP server's shutdown waits for a connection that net/http
		// dialled but never used, until the client closes it.
		cn.client = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{}}
	}
	n, err := daemon.Start(cfg, daemon.NewLogger(cfg, cn.logs))
	if err != nil {
		t.Fatalf("cannot start %s: %v\n%s", cfg.NodeID, err, tailString(cn.logs.String(), 4000))
	}
	cn.n = n
	t.Cleanup(func() {
		cn.close()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", cn.id, tailString(cn.logs.String(), 5000))
		}
	})
	return cn
}

func (cn *clusterNode) close() {
	cn.once.Do(func() {
		if tr, ok := cn.client.Transport.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
		if err := cn.n.Close(); err != nil {
			cn.t.Errorf("close %s: %v", cn.id, err)
		}
	})
}

func (cn *clusterNode) isLeader() bool { return cn.n.Raft().State() == raft.Leader }

func (cn *clusterNode) readToken(name string) string {
	cn.t.Helper()
	b, err := os.ReadFile(filepath.Join(cn.cfg.DataDir, name))
	if err != nil {
		cn.t.Fatalf("cannot read %s of %s: %v", name, cn.id, err)
	}
	return strings.TrimSpace(string(b))
}

// do sends one request; a transport error (timeout included) is returned,
// never fatal, so goroutines may call it.
func (cn *clusterNode) do(method, path, token, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, cn.scheme+"://"+cn.n.HTTPAddr()+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := cn.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// must sends a request, checks the status and decodes the JSON answer into out.
func (cn *clusterNode) must(want int, out any, method, path, token, contentType string, body []byte) {
	cn.t.Helper()
	st, b, err := cn.do(method, path, token, contentType, body)
	if err != nil {
		cn.t.Fatalf("%s %s on %s: %v", method, path, cn.id, err)
	}
	if st != want {
		cn.t.Fatalf("%s %s on %s: status %d, want %d: %s", method, path, cn.id, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			cn.t.Fatalf("%s %s on %s: %v: %s", method, path, cn.id, err, b)
		}
	}
}

// mustJSON is must with a JSON body.
func (cn *clusterNode) mustJSON(want int, out any, method, path, token string, body any) {
	cn.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		cn.t.Fatal(err)
	}
	cn.must(want, out, method, path, token, "application/json", b)
}

type digestAnswer struct {
	Node         string `json:"node"`
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
}

// digest asks the node for GET /v1/cluster/digest.
func (cn *clusterNode) digest(operator string) (digestAnswer, error) {
	var d digestAnswer
	st, b, err := cn.do("GET", "/v1/cluster/digest", operator, "", nil)
	if err != nil {
		return d, err
	}
	if st != http.StatusOK {
		return d, fmt.Errorf("status %d: %s", st, b)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, err
	}
	if d.Node != cn.id {
		return d, fmt.Errorf("digest answered by %q, want %q", d.Node, cn.id)
	}
	return d, nil
}

// waitFor polls cond until it holds; cond's text says what it saw last.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// voters answers the voters of the node's Raft configuration.
func voters(cn *clusterNode) []string {
	f := cn.n.Raft().GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var ids []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	return ids
}

// waitJoined waits until node is a voter in the leader's configuration and
// answers ready (it has caught up with the leader).
func waitJoined(t *testing.T, leader, node *clusterNode) {
	t.Helper()
	waitFor(t, 30*time.Second, node.id+" joins", func() (bool, string) {
		vs := voters(leader)
		member := false
		for _, v := range vs {
			member = member || v == node.id
		}
		st, b, err := node.do("GET", "/readyz", "", "", nil)
		return member && err == nil && st == http.StatusOK,
			fmt.Sprintf("voters %v, /readyz %d %s %v", vs, st, b, err)
	})
}

// waitConverged waits until every node answers the same applied index and
// digest, and answers them.
func waitConverged(t *testing.T, operator string, nodes ...*clusterNode) digestAnswer {
	t.Helper()
	var last digestAnswer
	waitFor(t, 30*time.Second, "replicas converge", func() (bool, string) {
		var seen []string
		same := true
		for i, cn := range nodes {
			d, err := cn.digest(operator)
			if err != nil {
				return false, fmt.Sprintf("%s: %v", cn.id, err)
			}
			seen = append(seen, fmt.Sprintf("%s@%d=%.12s", d.Node, d.AppliedIndex, d.Digest))
			if i == 0 {
				last = d
			} else if d.AppliedIndex != last.AppliedIndex || d.Digest != last.Digest {
				same = false
			}
		}
		return same, strings.Join(seen, " ")
	})
	return last
}

// leaderAmong answers the one node of nodes that leads, or nil.
func leaderAmong(nodes ...*clusterNode) *clusterNode {
	var found *clusterNode
	for _, cn := range nodes {
		if cn.isLeader() {
			if found != nil {
				return nil // two claim it (an old leader not stepped down yet): not settled
			}
			found = cn
		}
	}
	return found
}

// emailMessage is a message that may have a coupon list (SPEC §1).
func emailMessage(name string) map[string]any {
	return map[string]any{"name": name, "campaign": "Campaign " + name, "campaign_type": "standard", "channel": "email", "doi": false}
}

// assignment is one (recipient, code) of GET /v1/sends/{id}/assignments.
type assignment struct {
	Recipient string `json:"recipient"`
	Code      string `json:"code"`
}

// sendAssignments reads a send's assignments from one node (a local read).
func sendAssignments(cn *clusterNode, token, send string) map[string]string {
	cn.t.Helper()
	var out struct {
		Assignments []assignment `json:"assignments"`
	}
	cn.must(http.StatusOK, &out, "GET", "/v1/sends/"+send+"/assignments", token, "", nil)
	m := make(map[string]string, len(out.Assignments))
	for _, a := range out.Assignments {
		if _, dup := m[a.Recipient]; dup {
			cn.t.Fatalf("%s: recipient %q appears twice in send %s", cn.id, a.Recipient, send)
		}
		m[a.Recipient] = a.Code
	}
	return m
}

// fullList is the list object of SPEC §2 with every count.
type fullList struct {
	ID        string `json:"id"`
	Added     uint64 `json:"added"`
	Available uint64 `json:"available"`
	Reserved  uint64 `json:"reserved"`
	Used      uint64 `json:"used"`
	Withdrawn uint64 `json:"withdrawn"`
}

func (l fullList) addsUp() bool {
	return l.Added == l.Available+l.Reserved+l.Used+l.Withdrawn
}

// joinedCluster starts len(cfgs) nodes, the first bootstrapping and the
// others joining it, waits until they agree, and answers the operator and
// admin tokens and the leader. cfgs[i] needs no Join or TokenFile.
func joinedCluster(t *testing.T, cfgs []daemon.Config) (nodes []*clusterNode, op, admin string, leader *clusterNode) {
	t.Helper()
	nodes = make([]*clusterNode, len(cfgs))
	for i, cfg := range cfgs {
		if i > 0 {
			cfg.Join = nodes[0].n.HTTPAddr()
			cfg.TokenFile = filepath.Join(nodes[0].cfg.DataDir, "operator.token")
		}
		nodes[i] = startClusterNode(t, cfg, nil)
		if i > 0 {
			waitJoined(t, nodes[0], nodes[i])
		}
	}
	op, admin = nodes[0].readToken("operator.token"), nodes[0].readToken("admin.token")
	waitConverged(t, op, nodes...)
	if leader = leaderAmong(nodes...); leader == nil {
		t.Fatal("no single leader")
	}
	return nodes, op, admin, leader
}

// plainConfig is a node's config on loopback with a free Raft address.
func plainConfig(t *testing.T, id string) daemon.Config {
	return daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: freeAddr(t),
		NodeID: id, LogFormat: "json", LogLevel: "warn"}
}
