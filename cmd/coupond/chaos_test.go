package main

// The fault test (acceptance test (b)): three real coupond processes,
// clients allocating with retries against any node, and a nemesis that
// kills the leader with kill -9 at random moments, pauses nodes with
// SIGSTOP/SIGCONT and restarts nodes. Afterwards every request is retried
// until answered and the run is checked: no code twice, no acknowledged
// assignment lost, every retry answered the same code, the same state
// digest on every node, added == available + reserved + used + withdrawn,
// and the client history linearizable per (send, recipient) key
// (chaos_model_test.go).
//
// The short run (make test) loads the cluster for about 25 s with at least
// 5 leader kills; make chaos runs it longer. Environment:
//
//	COUPOND_CHAOS_DURATION  load time (default 25s), e.g. 3m
//	COUPOND_CHAOS_KILLS     leader kills at least (default 5)
//	COUPOND_CHAOS_CLIENTS   allocating clients (default 8)
//	COUPOND_CHAOS_SEED      seed of the clients and the nemesis (default: time)
//	COUPOND_CHAOS_KEEP      1: keep the logs and history even when the run passes
//
// A failing run keeps the nodes' logs, the history (JSON lines), the
// nemesis's events and a porcupine visualisation of the keys that are not
// linearizable in a folder named in the failure.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/coupond/coupond/httpapi/client"
)

// chaosConfig is one run's knobs.
type chaosConfig struct {
	duration     time.Duration
	minKills     int
	clients      int
	seed         uint64
	keep         bool
	sends        int           // sends the clients allocate in
	initialCodes int           // codes of the first import
	topUpCodes   int           // codes per top-up
	lowWater     uint64        // top up when the list has fewer available
	timeout      time.Duration // client request timeout
	readShare    float64       // share of client operations that are strong reads
	snapBytes    string        // --raft-snapshot-bytes of the nodes
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	c := chaosConfig{duration: 25 * time.Second, minKills: 5, clients: 8, seed: uint64(time.Now().UnixNano()),
		sends: 3, initialCodes: 40_000, topUpCodes: 5_000, lowWater: 20_000, timeout: 10 * time.Second, readShare: 0.1, snapBytes: "32KiB"}
	envInt := func(name string, p *int) {
		if s := os.Getenv(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a number", name, s)
			}
			*p = n
		}
	}
	if s := os.Getenv("COUPOND_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("COUPOND_CHAOS_DURATION=%q: %v", s, err)
		}
		c.duration = d
	}
	envInt("COUPOND_CHAOS_KILLS", &c.minKills)
	envInt("COUPOND_CHAOS_CLIENTS", &c.clients)
	if s := os.Getenv("COUPOND_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("COUPOND_CHAOS_SEED=%q: %v", s, err)
		}
		c.seed = n
	}
	c.keep = os.Getenv("COUPOND_CHAOS_KEEP") == "1"
	if c.duration > time.Minute {
		c.initialCodes = 100_000
		c.topUpCodes = 10_000
		c.lowWater = 50_000
		// The state grows to 10 MB and more, which a node under -race takes
		// 5-10 s to restore: with a snapshot every second, a node back
		// from a crash would get a newer snapshot after each install.
		c.snapBytes = "128KiB"
	}
	return c
}

// chaosNode is one node of the cluster. Its process is started, killed
// and restarted by the test goroutine and the nemesis, one at a time.
type chaosNode struct {
	*proc
	id     string
	up     atomic.Bool // the process runs (for the readiness monitor)
	paused atomic.Bool

	// Kept by the readiness monitor: since when the running, unpaused
	// node has answered /readyz with anything but 200, and the longest
	// such stretch.
	notReadySince   time.Time
	longestNotReady time.Duration
}

// crash kills the node's process with SIGKILL.
func (n *chaosNode) crash() {
	n.up.Store(false)
	n.Kill9()
}

// restart runs the node's process again.
func (n *chaosNode) restart() error {
	if err := n.Spawn(); err != nil {
		return err
	}
	n.up.Store(true)
	return nil
}

func (n *chaosNode) running() bool { return n.Cmd != nil }

// chaosCluster is the three nodes and what the test learnt of them.
type chaosCluster struct {
	t        *testing.T
	nodes    []*chaosNode
	operator string
	admin    string
	listID   string
	base     time.Time // time 0 of the history
	probe    *http.Client
	saved    bool // the artifacts were kept

	mu       sync.Mutex
	events   []string // what the nemesis did, with times
	problems []string // broken promises and harness failures seen during the run
}

func (cl *chaosCluster) now() int64 { return time.Since(cl.base).Nanoseconds() }

func (cl *chaosCluster) event(format string, a ...any) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.events = append(cl.events, fmt.Sprintf("%8.3fs ", time.Since(cl.base).Seconds())+fmt.Sprintf(format, a...))
}

func (cl *chaosCluster) problem(format string, a ...any) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	msg := fmt.Sprintf("%.3fs: ", time.Since(cl.base).Seconds()) + fmt.Sprintf(format, a...)
	if len(cl.problems) < 100 {
		cl.problems = append(cl.problems, msg)
	}
}

// call sends one request with client c; err is a transport error or timeout.
func chaosCall(c *http.Client, method, u, token, contentType string, body []byte) (int, []byte, http.Header, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, resp.Header, err
	}
	return resp.StatusCode, b, resp.Header, nil
}

// startChaosCluster bootstraps n1 and joins n2 and n3 to it.
func startChaosCluster(t *testing.T, cfg *chaosConfig) *chaosCluster {
	// Small snapshot triggers (every 200 entries or a few dozen KiB of
	// commands, 10 entries kept after it): snapshots and log compaction
	// happen during the run, and a node back from a kill often needs the
	// leader's snapshot.
	tune := []string{"--raft-snapshot-entries", "200", "--raft-snapshot-bytes", cfg.snapBytes, "--raft-trailing-entries", "10"}
	n1 := &chaosNode{proc: newProc(t, append([]string{"--id", "n1"}, tune...)...), id: "n1"}
	n1.Start()
	n1.up.Store(true)
	cl := &chaosCluster{t: t, nodes: []*chaosNode{n1}, operator: n1.Token("operator.token"), admin: n1.Token("admin.token"),
		probe: &http.Client{Timeout: 2 * time.Second}}
	for _, id := range []string{"n2", "n3"} {
		n := &chaosNode{proc: newProc(t, append([]string{"--id", id, "--join", n1.HTTPAddr,
			"--token-file", filepath.Join(n1.Data, "operator.token")}, tune...)...), id: id}
		n.Start()
		n.up.Store(true)
		cl.nodes = append(cl.nodes, n)
	}
	// Every node sees three voters and a leader.
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range cl.nodes {
		for {
			c, err := cl.clusterOf(n)
			voters := 0
			if err == nil {
				for _, m := range c.Nodes {
					if m.Suffrage == "voter" {
						voters++
					}
				}
			}
			if err == nil && voters == 3 && c.Leader != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not see a leader and three voters 60s after start: %+v %v", n.id, c, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return cl
}

func (cl *chaosCluster) clusterOf(n *chaosNode) (client.ClusterStatus, error) {
	var c client.ClusterStatus
	st, b, _, err := chaosCall(cl.probe, "GET", n.URL("/v1/cluster"), cl.operator, "", nil)
	if err != nil {
		return c, err
	}
	if st != 200 {
		return c, fmt.Errorf("status %d: %.200s", st, b)
	}
	return c, json.Unmarshal(b, &c)
}

// leader is the running node that says it leads, waiting up to limit.
func (cl *chaosCluster) leader(limit time.Duration) *chaosNode {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, n := range cl.nodes {
			if !n.running() || n.paused.Load() {
				continue
			}
			c, err := cl.clusterOf(n)
			if err != nil {
				continue
			}
			for _, m := range c.Nodes {
				if m.ID == n.id && m.State == "leader" {
					return n
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// waitReady waits for /readyz on the node.
func (cl *chaosCluster) waitReady(n *chaosNode, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if !n.running() {
			return errors.New("not running")
		}
		select {
		case <-n.Done:
			return fmt.Errorf("exited: %v", n.Cmd.ProcessState)
		default:
		}
		st, _, _, err := chaosCall(cl.probe, "GET", n.URL("/readyz"), "", "", nil)
		if err == nil && st == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (last: %d %v)", limit, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setup makes the list, the message and its assignment through n1.
func (cl *chaosCluster) setup(codes []byte) {
	t := cl.t
	n1 := cl.nodes[0]
	var created struct {
		List   listJSON   `json:"list"`
		Import importJSON `json:"import"`
	}
	n1.must(201, &created, "POST", "/v1/lists?name=chaos", cl.admin, "text/csv", codes)
	n1.must(201, nil, "PUT", "/v1/messages/m", cl.admin, "application/json",
		[]byte(`{"name":"Chaos","campaign":"chaos","campaign_type":"standard","channel":"email","doi":false}`))
	n1.must(200, nil, "PUT", "/v1/messages/m/coupon-list", cl.admin, "application/json",
		[]byte(`{"list_id":"`+created.List.ID+`"}`))
	cl.listID = created.List.ID
	t.Logf("list %s: %d codes imported", cl.listID, created.Import.Imported)
}

// chaosRequest is one allocation request; a request whose outcome is
// unknown is sent again, unchanged.
type chaosRequest struct {
	send   string
	recips []string
	body   []byte
}

// chaosRecipients is every recipient asked for so far, per send; requests
// repeat some of them.
type chaosRecipients struct {
	mu    sync.Mutex
	next  []int      // per send: the next fresh recipient number
	asked [][]string // per send: the recipients asked for so far
}

func chaosRecipientName(i int) string { return fmt.Sprintf("u%06d@chaos.example", i) }

func chaosSendName(i int) string { return "chaos-" + strconv.Itoa(i) }

// newRequest picks 1-20 recipients of a random send: about a third
// repeated from earlier requests of any client (half of those from the
// latest 50, which may still be in flight), the rest fresh. Recipients are
// numbered per send, so a recipient is in several sends.
func (r *chaosRecipients) newRequest(rng *rand.Rand) *chaosRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := rng.IntN(len(r.next))
	n := 1 + rng.IntN(20)
	seen := map[string]bool{}
	var recips []string
	for len(recips) < n {
		var rc string
		if len(r.asked[s]) > 0 && rng.IntN(3) == 0 {
			from := 0
			if rng.IntN(2) == 0 {
				from = max(0, len(r.asked[s])-50)
			}
			rc = r.asked[s][from+rng.IntN(len(r.asked[s])-from)]
		} else {
			rc = chaosRecipientName(r.next[s])
			r.next[s]++
			r.asked[s] = append(r.asked[s], rc)
		}
		if !seen[rc] {
			seen[rc] = true
			recips = append(recips, rc)
		}
	}
	body, err := json.Marshal(map[string]any{"message_id": "m", "recipients": recips})
	if err != nil {
		panic(err)
	}
	return &chaosRequest{send: chaosSendName(s), recips: recips, body: body}
}

// someRecipient is a recipient asked for already, if any.
func (r *chaosRecipients) someRecipient(rng *rand.Rand) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := rng.IntN(len(r.asked))
	if len(r.asked[s]) == 0 {
		return "", false
	}
	return r.asked[s][rng.IntN(len(r.asked[s]))], true
}

// chaosClient is one client of the run: it allocates and reads, and sends
// again the requests whose outcome it does not know.
type chaosClient struct {
	id      int
	cl      *chaosCluster
	cfg     *chaosConfig
	rng     *rand.Rand
	http    *http.Client
	recips  *chaosRecipients
	avail   *atomic.Uint64 // the list's available count in the latest answer
	pending []*chaosRequest

	ops   []chaosOp
	stats map[string]int
}

func (c *chaosClient) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		var ok bool
		switch {
		case len(c.pending) > 0 && c.rng.IntN(10) < 3:
			req := c.pending[0]
			c.pending = c.pending[1:]
			ok = c.allocate(req, true)
		case c.rng.Float64() < c.cfg.readShare:
			ok = c.strongRead()
		default:
			ok = c.allocate(c.recips.newRequest(c.rng), false)
		}
		if !ok {
			// Give the cluster a moment: a node down refuses at once.
			time.Sleep(time.Duration(50+c.rng.IntN(200)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(10+c.rng.IntN(30)) * time.Millisecond)
		}
	}
}

func (c *chaosClient) node() *chaosNode { return c.cl.nodes[c.rng.IntN(len(c.cl.nodes))] }

// chaosOutcomeOf classifies a failed call for the statistics.
func chaosOutcomeOf(st int, b []byte, err error) string {
	switch {
	case err != nil && strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	case err != nil && strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case err != nil:
		return "conn-error"
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	return strconv.Itoa(st) + " " + e.Error.Code
}

// allocate sends one allocation request and records it; it reports whether
// it was answered. An unanswered request goes back to pending.
func (c *chaosClient) allocate(req *chaosRequest, retry bool) bool {
	n := c.node()
	op := chaosOp{Client: c.id, Kind: opAllocate, Node: n.id, Retry: retry}
	for _, rc := range req.recips {
		op.Keys = append(op.Keys, chaosKey{req.send, rc})
	}
	op.Call = c.cl.now()
	st, b, _, err := chaosCall(c.http, "POST", n.URL("/v1/sends/"+req.send+"/codes"), c.cl.admin, "application/json", req.body)
	op.Return = c.cl.now()
	op.Status = st
	if st == 200 && err == nil {
		var r struct {
			Assignments []struct {
				Recipient string `json:"recipient"`
				Code      string `json:"code"`
			} `json:"assignments"`
			Available *uint64 `json:"available"`
		}
		if derr := json.Unmarshal(b, &r); derr != nil || len(r.Assignments) != len(req.recips) || r.Available == nil {
			c.cl.problem("client %d: allocation via %s answered 200 with %.300s (%v)", c.id, n.id, b, derr)
			err = errors.New("bad 200 answer")
		} else {
			for i, a := range r.Assignments {
				if a.Recipient != req.recips[i] {
					c.cl.problem("client %d: allocation via %s answered recipient %q at %d, asked %q", c.id, n.id, a.Recipient, i, req.recips[i])
				}
				op.Codes = append(op.Codes, a.Code)
			}
			op.OK = true
			c.avail.Store(*r.Available)
		}
	}
	if !op.OK {
		what := chaosOutcomeOf(st, b, err)
		op.Err = what
		if err == nil {
			op.Err += ": " + string(b[:min(len(b), 200)])
		}
		c.stats[what]++
		switch {
		case err != nil, st == 503, st == 401:
			// Unknown outcome (a restarting node may not know the token yet).
		case st == 409 && strings.Contains(what, "insufficient_codes"):
			c.cl.problem("client %d: the list ran dry (the test tops it up too slowly): %s", c.id, b)
		default:
			c.cl.problem("client %d: allocation via %s: unexpected status %d: %.300s", c.id, n.id, st, b)
		}
		c.pending = append(c.pending, req)
	} else {
		c.stats["ok"]++
	}
	if retry {
		c.stats["retries"]++
	}
	c.ops = append(c.ops, op)
	return op.OK
}

// strongRead reads one recipient's history through the leader and records
// it as a read of the recipient's key in every send.
func (c *chaosClient) strongRead() bool {
	rc, ok := c.recips.someRecipient(c.rng)
	if !ok {
		return true
	}
	n := c.node()
	op := chaosOp{Client: c.id, Kind: opRead, Node: n.id}
	for s := range c.cfg.sends {
		op.Keys = append(op.Keys, chaosKey{chaosSendName(s), rc})
	}
	op.Call = c.cl.now()
	st, b, _, err := chaosCall(c.http, "GET", n.URL("/v1/recipients/"+url.PathEscape(rc)+"/assignments?consistency=strong"), c.cl.admin, "", nil)
	op.Return = c.cl.now()
	op.Status = st
	if st == 200 && err == nil {
		var h struct {
			Assignments []struct {
				Code   string `json:"code"`
				SendID string `json:"send_id"`
			} `json:"assignments"`
		}
		if derr := json.Unmarshal(b, &h); derr != nil {
			c.cl.problem("client %d: history of %s via %s: %v: %.300s", c.id, rc, n.id, derr, b)
		} else {
			codes := make([]string, len(op.Keys))
			good := true
			for _, a := range h.Assignments {
				i := slices.IndexFunc(op.Keys, func(k chaosKey) bool { return k.Send == a.SendID })
				switch {
				case i < 0:
					c.cl.problem("client %d: history of %s lists send %q", c.id, rc, a.SendID)
					good = false
				case codes[i] != "":
					c.cl.problem("client %d: history of %s lists send %s twice: codes %s and %s", c.id, rc, a.SendID, codes[i], a.Code)
					good = false
				default:
					codes[i] = a.Code
				}
			}
			op.Codes, op.OK = codes, good
		}
	}
	if !op.OK {
		what := chaosOutcomeOf(st, b, err)
		op.Err = what
		c.stats["read "+what]++
		if err == nil && st != 503 && st != 401 && st != 200 {
			c.cl.problem("client %d: strong read via %s: unexpected status %d: %.300s", c.id, n.id, st, b)
		}
	} else {
		c.stats["read ok"]++
	}
	c.ops = append(c.ops, op)
	return op.OK
}

// chaosTopUps adds codes to the list when it runs low (and now and then
// anyway): a top-up whose outcome is unknown is sent again with the same
// codes, which the list's de-duplication makes safe.
type chaosTopUps struct {
	cl      *chaosCluster
	rng     *rand.Rand
	http    *http.Client
	avail   *atomic.Uint64
	size    int
	low     uint64
	batches [][]byte // every batch, acknowledged or not
	acked   []bool
	added   int // codes of every batch
	calls   int
}

func (u *chaosTopUps) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(1000+u.rng.IntN(2000)) * time.Millisecond):
		}
		u.step(u.avail.Load() < u.low || u.rng.IntN(4) == 0)
	}
}

// step sends every unacknowledged batch again, and a new one with more.
func (u *chaosTopUps) step(more bool) bool {
	if more {
		prefix := "T" + strconv.Itoa(len(u.batches))
		u.batches = append(u.batches, codesCSV(prefix, 0, u.size))
		u.acked = append(u.acked, false)
		u.added += u.size
	}
	all := true
	for i, b := range u.batches {
		if u.acked[i] {
			continue
		}
		n := u.cl.nodes[u.rng.IntN(len(u.cl.nodes))]
		u.calls++
		st, body, _, err := chaosCall(u.http, "POST", n.URL("/v1/lists/"+u.cl.listID+"/codes"), u.cl.admin, "text/csv", b)
		switch {
		case err == nil && st == 200:
			var r importJSON
			if err := json.Unmarshal(body, &r); err != nil || r.Imported+r.Duplicates != uint64(u.size) {
				u.cl.problem("top-up T%d via %s: %.300s (%v): imported + duplicates should be %d", i, n.id, body, err, u.size)
			}
			u.acked[i] = true
			u.cl.event("top-up T%d via %s: imported %d, duplicates %d", i, n.id, r.Imported, r.Duplicates)
		case err != nil || st == 503 || st == 401:
			all = false
		default:
			all = false
			u.cl.problem("top-up T%d via %s: status %d: %.300s", i, n.id, st, body)
		}
	}
	return all
}

// chaosNemesis, every 1-3 s, kills the leader (kill -9, back after 0.2-2
// s), kills a follower (back after 2-5 s), pauses a node (SIGSTOP for 1-3
// s) or restarts one (SIGTERM), one thing at a time, until the load time is
// over and it killed the leader minKills times.
type chaosNemesis struct {
	cl            *chaosCluster
	rng           *rand.Rand
	cfg           *chaosConfig
	until         time.Time
	kills         int // of the leader
	followerKills int
	pauses        int
	stops         int // graceful restarts (SIGTERM)
}

func (nm *chaosNemesis) run(quit <-chan struct{}) {
	for {
		if time.Now().After(nm.until) && nm.kills >= nm.cfg.minKills {
			return
		}
		select {
		case <-quit:
			return
		case <-time.After(time.Duration(1000+nm.rng.IntN(2000)) * time.Millisecond):
		}
		// A leader kill with its restart takes about 2-5 s: kill the
		// leader whenever the kills still owed need the time left. Each
		// run pauses a node at least once.
		owed := nm.cfg.minKills - nm.kills
		left := time.Until(nm.until)
		r := nm.rng.IntN(100)
		switch {
		case owed > 0 && left < time.Duration(owed)*4*time.Second:
			nm.killLeader()
		case nm.pauses == 0:
			nm.pause()
		case r < 45:
			nm.killLeader()
		case r < 65:
			nm.killFollower()
		case r < 90:
			nm.pause()
		default:
			nm.restart()
		}
	}
}

func (nm *chaosNemesis) killLeader() {
	cl := nm.cl
	l := cl.leader(20 * time.Second)
	if l == nil {
		cl.event("no leader for 20s: the nemesis waits")
		cl.problem("no node has led for 20s (nodes running: %v)", nm.running())
		return
	}
	l.crash()
	nm.kills++
	cl.event("kill -9 leader %s (kill #%d)", l.id, nm.kills)
	time.Sleep(time.Duration(200+nm.rng.IntN(1800)) * time.Millisecond)
	nm.start(l)
}

// killFollower kills a node that does not lead and keeps it down for 2-5
// s: the leader compacts its log meanwhile, so the node comes back to a
// snapshot.
func (nm *chaosNemesis) killFollower() {
	l := nm.cl.leader(5 * time.Second)
	var fs []*chaosNode
	for _, n := range nm.cl.nodes {
		if n != l && n.running() {
			fs = append(fs, n)
		}
	}
	if l == nil || len(fs) == 0 {
		return
	}
	n := fs[nm.rng.IntN(len(fs))]
	n.crash()
	nm.followerKills++
	nm.cl.event("kill -9 follower %s", n.id)
	time.Sleep(time.Duration(2000+nm.rng.IntN(3000)) * time.Millisecond)
	nm.start(n)
}

func (nm *chaosNemesis) start(n *chaosNode) {
	if err := n.restart(); err != nil {
		nm.cl.problem("cannot restart %s: %v", n.id, err)
		return
	}
	nm.cl.event("restart %s", n.id)
}

func (nm *chaosNemesis) pause() {
	n := nm.cl.nodes[nm.rng.IntN(len(nm.cl.nodes))]
	if !n.running() {
		return
	}
	d := time.Duration(1000+nm.rng.IntN(2000)) * time.Millisecond
	n.paused.Store(true)
	n.Cmd.Process.Signal(syscall.SIGSTOP)
	nm.cl.event("SIGSTOP %s for %s", n.id, d)
	time.Sleep(d)
	n.Cmd.Process.Signal(syscall.SIGCONT)
	n.paused.Store(false)
	nm.pauses++
	nm.cl.event("SIGCONT %s", n.id)
}

// restart stops a random node with SIGTERM and starts it again.
func (nm *chaosNemesis) restart() {
	n := nm.cl.nodes[nm.rng.IntN(len(nm.cl.nodes))]
	if !n.running() {
		return
	}
	n.up.Store(false)
	n.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.Done:
		if code := n.Cmd.ProcessState.ExitCode(); code != 0 {
			nm.cl.problem("%s exited with %d after SIGTERM", n.id, code)
		}
	case <-time.After(30 * time.Second):
		nm.cl.problem("%s did not stop within 30s of SIGTERM; killed", n.id)
		n.Cmd.Process.Signal(syscall.SIGQUIT)
		<-n.Done
	}
	n.Cmd = nil
	nm.stops++
	nm.cl.event("SIGTERM %s", n.id)
	time.Sleep(time.Duration(100+nm.rng.IntN(900)) * time.Millisecond)
	nm.start(n)
}

func (nm *chaosNemesis) running() []string {
	var out []string
	for _, n := range nm.cl.nodes {
		if n.running() {
			out = append(out, n.id)
		}
	}
	return out
}

// TestChaos is the fault test: see the top of this file.
func TestChaos(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	cfg := chaosConfigFromEnv(t)
	t.Logf("seed %d (COUPOND_CHAOS_SEED), load %s, at least %d leader kills, %d clients", cfg.seed, cfg.duration, cfg.minKills, cfg.clients)
	start := time.Now()
	cl := startChaosCluster(t, &cfg)
	codes := map[string]bool{} // every code ever uploaded
	initial := codesCSV("K", 0, cfg.initialCodes)
	for i := range cfg.initialCodes {
		codes[code("K", i)] = true
	}
	cl.setup(initial)
	t.Logf("cluster up and set up in %s", time.Since(start).Round(time.Millisecond))

	failed := false
	defer func() {
		if (failed || t.Failed() || cfg.keep) && !cl.saved {
			cl.saveArtifacts(nil, nil)
		}
	}()

	// The load and the faults.
	cl.base = time.Now()
	var avail atomic.Uint64
	avail.Store(uint64(cfg.initialCodes))
	recips := &chaosRecipients{next: make([]int, cfg.sends), asked: make([][]string, cfg.sends)}
	stop := make(chan struct{})
	stopLoad := sync.OnceFunc(func() { close(stop) })
	defer stopLoad()
	var wg sync.WaitGroup
	clients := make([]*chaosClient, cfg.clients)
	for i := range clients {
		c := &chaosClient{id: i, cl: cl, cfg: &cfg, rng: rand.New(rand.NewPCG(cfg.seed, uint64(i+1))),
			http:   &http.Client{Timeout: cfg.timeout, Transport: http.DefaultTransport.(*http.Transport).Clone()},
			recips: recips, avail: &avail, stats: map[string]int{}}
		clients[i] = c
		wg.Go(func() { c.run(stop) })
	}
	up := &chaosTopUps{cl: cl, rng: rand.New(rand.NewPCG(cfg.seed, 1000)), avail: &avail, size: cfg.topUpCodes, low: cfg.lowWater,
		http: &http.Client{Timeout: 60 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	wg.Go(func() { up.run(stop) })
	monitorStop, monitorDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(monitorDone); cl.monitorReadiness(monitorStop) }()
	stopMonitor := sync.OnceFunc(func() { close(monitorStop); <-monitorDone })
	defer stopMonitor()
	nm := &chaosNemesis{cl: cl, rng: rand.New(rand.NewPCG(cfg.seed, 0)), cfg: &cfg, until: time.Now().Add(cfg.duration)}
	quit := make(chan struct{})
	nmDone := make(chan struct{})
	go func() { defer close(nmDone); nm.run(quit) }()
	select {
	case <-nmDone:
	case <-time.After(cfg.duration + 5*time.Minute):
		close(quit)
		<-nmDone
		cl.problem("the nemesis did not get its %d leader kills done in %s", cfg.minKills, cfg.duration+5*time.Minute)
	}
	loadTime := time.Since(cl.base)

	// Heal: the load stops, every node runs, unpaused, and is ready.
	stopLoad()
	wg.Wait()
	cl.event("load stopped")
	for _, n := range cl.nodes {
		if !n.running() {
			if err := n.restart(); err != nil {
				t.Fatalf("cannot restart %s: %v", n.id, err)
			}
			cl.event("restart %s after the run", n.id)
		}
		n.Cmd.Process.Signal(syscall.SIGCONT)
	}
	for _, n := range cl.nodes {
		if err := cl.waitReady(n, 90*time.Second); err != nil {
			failed = true
			cl.dumpGoroutines()
			t.Fatalf("after the run, %s: %v (a hang?)", n.id, err)
		}
	}
	stopMonitor()

	// Resolve every unknown outcome: retry until answered.
	resolveStart := time.Now()
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range clients {
		for len(c.pending) > 0 {
			req := c.pending[0]
			c.pending = c.pending[1:]
			if !c.allocate(req, true) {
				if time.Now().After(deadline) {
					failed = true
					cl.dumpGoroutines()
					t.Fatalf("a request still has no answer 2 minutes after the run (%s): %v", req.send, c.ops[len(c.ops)-1].Err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	for !up.step(false) {
		if time.Now().After(deadline) {
			failed = true
			t.Fatalf("a top-up still has no answer 2 minutes after the run")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range up.batches {
		for j := range cfg.topUpCodes {
			codes[code("T"+strconv.Itoa(i), j)] = true
		}
	}
	t.Logf("every unknown outcome resolved in %s", time.Since(resolveStart).Round(time.Millisecond))

	// Converge: the same applied index and the same digest everywhere.
	cl.checkDigests()

	// Every node lists the same assignments.
	final := map[chaosKey]string{}
	for i, n := range cl.nodes {
		got := map[chaosKey]string{}
		for s := range cfg.sends {
			as, err := cl.assignments(n, chaosSendName(s))
			if err != nil {
				cl.problem("assignments of %s on %s: %v", chaosSendName(s), n.id, err)
				continue
			}
			for rc, c := range as {
				got[chaosKey{chaosSendName(s), rc}] = c
			}
			var st sendState
			if status, b, _, err := chaosCall(cl.probe, "GET", n.URL("/v1/sends/"+chaosSendName(s)), cl.admin, "", nil); err != nil || status != 200 || json.Unmarshal(b, &st) != nil {
				if status != 404 || len(as) != 0 {
					cl.problem("send %s on %s: %d %v %.200s", chaosSendName(s), n.id, status, err, b)
				}
			} else if st.Assigned != uint64(len(as)) || st.Reserved != 0 {
				cl.problem("send %s on %s: assigned %d, reserved %d; it lists %d assignments", chaosSendName(s), n.id, st.Assigned, st.Reserved, len(as))
			}
		}
		if i == 0 {
			final = got
			continue
		}
		diff := 0
		for k, c := range final {
			if got[k] != c {
				if diff < 5 {
					cl.problem("%s lists %s -> %q, n1 lists %q", n.id, k, got[k], c)
				}
				diff++
			}
		}
		if diff > 0 || len(got) != len(final) {
			cl.problem("%s lists %d assignments, n1 %d; %d differ", n.id, len(got), len(final), diff)
		}
	}
	for k, c := range final {
		if !codes[c] {
			cl.problem("%s has %q, which was never imported", k, c)
		}
	}

	// The counts of the list: nothing lost, nothing made up.
	for _, n := range cl.nodes {
		var l listJSON
		st, b, _, err := chaosCall(cl.probe, "GET", n.URL("/v1/lists/"+cl.listID), cl.admin, "", nil)
		if err != nil || st != 200 || json.Unmarshal(b, &l) != nil {
			cl.problem("list on %s: %d %v %.200s", n.id, st, err, b)
			continue
		}
		if l.Added != l.Available+l.Reserved+l.Used+l.Withdrawn || l.Added != uint64(len(codes)) ||
			l.Used != uint64(len(final)) || l.Reserved != 0 || l.Withdrawn != 0 {
			cl.problem("list on %s: %+v; want added %d = available + reserved + used + withdrawn, used %d (the assignments), none reserved or withdrawn",
				n.id, l, len(codes), len(final))
		}
	}

	// The history.
	var ops []chaosOp
	stats := map[string]int{}
	for _, c := range clients {
		ops = append(ops, c.ops...)
		for k, v := range c.stats {
			stats[k] += v
		}
	}
	checkStart := time.Now()
	v := checkChaosHistory(ops, final, 2*time.Minute)
	for _, p := range v.Problems {
		cl.problem("%s", p)
	}
	t.Logf("history: %d requests (%d unknown outcomes), %d porcupine operations on %d keys, %v, checked in %s",
		len(ops), v.Unknown, v.Operations, v.Keys, v.Result, time.Since(checkStart).Round(time.Millisecond))

	for _, n := range cl.nodes {
		if logs := n.Logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
			logs = logs[strings.Index(logs, "WARNING: DATA RACE"):]
			cl.problem("the race detector reported a data race in %s:\n%s", n.id, logs[:min(len(logs), 6000)])
		}
	}

	t.Logf("load %s: %d leader kills, %d follower kills, %d pauses, %d graceful restarts; %d assignments, %d codes added (%d top-ups, %d calls); client outcomes %v",
		loadTime.Round(time.Millisecond), nm.kills, nm.followerKills, nm.pauses, nm.stops, len(final), len(codes), len(up.batches), up.calls, stats)
	var notReady []string
	for _, n := range cl.nodes {
		notReady = append(notReady, fmt.Sprintf("%s %s", n.id, n.longestNotReady.Round(100*time.Millisecond)))
	}
	t.Logf("longest time a running node was not ready: %s", strings.Join(notReady, ", "))
	t.Logf("snapshots taken %v, installed from the leader %v, state restored from a snapshot at start %v",
		cl.countLogs("snapshot complete up to"), cl.countLogs("installed remote snapshot"), cl.countLogs("restoring it"))
	if nm.kills < cfg.minKills {
		cl.problem("only %d leader kills, want at least %d", nm.kills, cfg.minKills)
	}
	if len(cl.problems) > 0 {
		failed = true
		if len(v.BadKeys) > 0 {
			cl.saveArtifacts(ops, final, v.BadKeys...)
		} else {
			cl.saveArtifacts(ops, final)
		}
		for _, p := range cl.problems {
			t.Error(p)
		}
		t.Logf("nemesis:\n%s", strings.Join(cl.events, "\n"))
		return
	}
	if cfg.keep {
		cl.saveArtifacts(ops, final)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// monitorReadiness asks every running, unpaused node for /readyz twice a
// second, and keeps the longest time each was not ready: how long a node
// back from a crash takes to catch up under load.
func (cl *chaosCluster) monitorReadiness(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
		for _, n := range cl.nodes {
			if !n.up.Load() || n.paused.Load() {
				n.notReadySince = time.Time{}
				continue
			}
			st, _, _, err := chaosCall(cl.probe, "GET", n.URL("/readyz"), "", "", nil)
			switch {
			case err == nil && st == 200:
				n.notReadySince = time.Time{}
			case n.notReadySince.IsZero():
				n.notReadySince = time.Now()
			default:
				n.longestNotReady = max(n.longestNotReady, time.Since(n.notReadySince))
			}
		}
	}
}

// checkDigests polls every node's digest until their applied indexes
// agree, then compares the digests.
func (cl *chaosCluster) checkDigests() {
	type digest struct {
		Node    string `json:"node"`
		Applied uint64 `json:"applied_index"`
		Digest  string `json:"digest"`
	}
	deadline := time.Now().Add(60 * time.Second)
	var last []digest
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = nil, nil
		for _, n := range cl.nodes {
			var d digest
			st, b, _, err := chaosCall(cl.probe, "GET", n.URL("/v1/cluster/digest"), cl.operator, "", nil)
			if err == nil && st != 200 {
				err = fmt.Errorf("%s: status %d: %.200s", n.id, st, b)
			}
			if err == nil {
				err = json.Unmarshal(b, &d)
			}
			if err != nil {
				lastErr = err
				break
			}
			last = append(last, d)
		}
		if lastErr == nil && last[0].Applied == last[1].Applied && last[1].Applied == last[2].Applied {
			if last[0].Digest != last[1].Digest || last[1].Digest != last[2].Digest {
				cl.problem("state digests differ at applied index %d: %+v", last[0].Applied, last)
			} else {
				cl.event("digests agree at applied index %d: %s", last[0].Applied, last[0].Digest)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	cl.problem("the nodes' applied indexes did not converge within 60s: %+v %v", last, lastErr)
}

// assignments reads a send's assignments on node n (CSV): recipient ->
// code, failing on a recipient listed twice. A send that does not exist has none.
func (cl *chaosCluster) assignments(n *chaosNode, send string) (map[string]string, error) {
	req, err := http.NewRequest("GET", n.URL("/v1/sends/"+send+"/assignments"), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+cl.admin)
	req.Header.Set("Accept", "text/csv")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if resp.StatusCode == 404 {
		return out, nil
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		rc, c, ok := strings.Cut(line, ",")
		if !ok || strings.Contains(c, ",") || c == "" {
			return nil, fmt.Errorf("bad line %q", line)
		}
		if old, dup := out[rc]; dup {
			return nil, fmt.Errorf("recipient %q listed twice (codes %q and %q)", rc, old, c)
		}
		out[rc] = c
	}
	return out, nil
}

// countLogs counts, per node, log lines whose message contains word.
func (cl *chaosCluster) countLogs(word string) map[string]int {
	out := map[string]int{}
	for _, n := range cl.nodes {
		for line := range strings.SplitSeq(n.Logs.String(), "\n") {
			var ev struct {
				Message string `json:"message"`
			}
			if json.Unmarshal([]byte(line), &ev) == nil && strings.Contains(strings.ToLower(ev.Message), word) {
				out[n.id]++
			}
		}
	}
	return out
}

// dumpGoroutines asks every running node for its goroutines (SIGQUIT ends
// it), for the logs kept.
func (cl *chaosCluster) dumpGoroutines() {
	for _, n := range cl.nodes {
		if n.running() {
			n.Cmd.Process.Signal(syscall.SIGCONT)
			n.Cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-n.Done:
			case <-time.After(10 * time.Second):
			}
		}
	}
}

// saveArtifacts keeps the logs, the nemesis's events, the history and a
// visualisation of the bad keys in a folder that outlives the test.
func (cl *chaosCluster) saveArtifacts(ops []chaosOp, final map[chaosKey]string, bad ...chaosKey) {
	t := cl.t
	cl.saved = true
	dir, err := os.MkdirTemp("", "coupond-chaos-")
	if err != nil {
		t.Logf("cannot keep the artifacts: %v", err)
		return
	}
	for _, n := range cl.nodes {
		os.WriteFile(filepath.Join(dir, n.id+".log"), []byte(n.Logs.String()), 0o644)
	}
	cl.mu.Lock()
	os.WriteFile(filepath.Join(dir, "events.txt"), []byte(strings.Join(cl.events, "\n")+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "problems.txt"), []byte(strings.Join(cl.problems, "\n")+"\n"), 0o644)
	cl.mu.Unlock()
	if ops != nil {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		for _, op := range ops {
			enc.Encode(op)
		}
		os.WriteFile(filepath.Join(dir, "history.jsonl"), b.Bytes(), 0o644)
		b.Reset()
		for _, k := range slices.SortedFunc(func(yield func(chaosKey) bool) {
			for k := range final {
				if !yield(k) {
					return
				}
			}
		}, compareChaosKeys) {
			fmt.Fprintf(&b, "%s,%s,%s\n", k.Send, k.Recipient, final[k])
		}
		os.WriteFile(filepath.Join(dir, "final.csv"), b.Bytes(), 0o644)
	}
	if len(bad) > 0 {
		if len(bad) > 20 {
			bad = bad[:20]
		}
		model := chaosModel.ToModel()
		_, info := porcupine.CheckOperationsVerbose(model, keyHistoryOps(ops, final, bad), time.Minute)
		if err := porcupine.VisualizePath(model, info, filepath.Join(dir, "linearizability.html")); err != nil {
			t.Logf("visualisation: %v", err)
		}
	}
	t.Logf("the run's logs, events and history are kept in %s", dir)
}
