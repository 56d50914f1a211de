package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coupond/coupond/httpapi/client"
)

// Targets of --target: which nodes of a spawned cluster the scenario drives.
const (
	TargetLeader   = "leader"   // the leader only
	TargetFollower = "follower" // one follower (node 2 normally): every write is forwarded
	TargetAll      = "all"      // every node, connections round-robin
)

// ClusterInfo is the answer of GET /v1/cluster (SPEC §2), the client's
// type with the harness's helpers.
type ClusterInfo client.ClusterStatus

// ClusterNode is one member in ClusterInfo.
type ClusterNode = client.ClusterNode

// Voters counts the members with the voter suffrage.
func (ci ClusterInfo) Voters() int {
	n := 0
	for _, m := range ci.Nodes {
		if strings.EqualFold(m.Suffrage, "voter") {
			n++
		}
	}
	return n
}

// Digest is the answer of GET /v1/cluster/digest: a node's state digest at
// its applied index.
type Digest struct {
	Node         string          `json:"node"`
	AppliedIndex uint64          `json:"applied_index"`
	Digest       json.RawMessage `json:"digest"`
}

// digestsAgree reports whether every node is at the same applied index with
// the same digest.
func digestsAgree(ds []Digest) bool {
	if len(ds) == 0 {
		return false
	}
	for _, d := range ds {
		if len(d.Digest) == 0 || d.AppliedIndex != ds[0].AppliedIndex || !bytes.Equal(d.Digest, ds[0].Digest) {
			return false
		}
	}
	return true
}

func fmtDigests(ds []Digest) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%s applied_index=%d digest=%s", d.Node, d.AppliedIndex, d.Digest))
	}
	return strings.Join(parts, "; ")
}

// Cluster is a set of coupond nodes spawned by the harness: node 1
// bootstraps, the others join it with its operator token.
type Cluster struct {
	Nodes      []*Node
	Leader     int     // index of the leader in Nodes, once formed
	AdminToken string  // of the default tenant, written by node 1
	Timing     Timings // FormTimeout and ClusterPoll; zero fields take their defaults
	op         []*Client
}

// NewCluster prepares (but does not start) n fresh nodes n1..nN, each in a
// temporary folder of its own.
func NewCluster(bin string, n int) (*Cluster, error) {
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("picking ports: %w", err)
	}
	c := &Cluster{}
	for i := range n {
		node, err := newNode(bin, ports[2*i], ports[2*i+1])
		if err != nil {
			c.Close()
			return nil, err
		}
		node.ID = fmt.Sprintf("n%d", i+1)
		c.Nodes = append(c.Nodes, node)
	}
	return c, nil
}

// SetKeep makes Close leave the temporary folders in place.
func (c *Cluster) SetKeep(keep bool) {
	for _, n := range c.Nodes {
		n.Keep = keep
	}
}

// Procs are the node processes, for the memory and CPU figures.
func (c *Cluster) Procs() []Proc {
	var p []Proc
	for _, n := range c.Nodes {
		p = append(p, Proc{Name: n.ID, PID: n.PID()})
	}
	return p
}

// Start starts node 1, waits until it is ready, starts the others with
// --join, and waits until node 1 lists every node as a voter and every
// node's /readyz answers 200.
func (c *Cluster) Start(ctx context.Context) error {
	first := c.Nodes[0]
	if err := first.Start(); err != nil {
		return err
	}
	if err := first.WaitReady(ctx, ReadyTimeout); err != nil {
		return fmt.Errorf("%s: %w", first.ID, err)
	}
	opToken, err := waitTokenFile(first.OperatorTokenFile(), 5*time.Second)
	if err != nil {
		return fmt.Errorf("%s is ready but: %w", first.ID, err)
	}
	if c.AdminToken, err = first.WaitToken(5 * time.Second); err != nil {
		return fmt.Errorf("%s is ready but: %w", first.ID, err)
	}
	for _, n := range c.Nodes {
		c.op = append(c.op, NewClient(n.HTTPAddr, opToken, 2))
	}
	for _, n := range c.Nodes[1:] {
		n.Join, n.JoinWith = first.HTTPAddr, first.OperatorTokenFile()
		if err := n.Start(); err != nil {
			return err
		}
	}

	form := c.Timing.withDefaults().FormTimeout
	ctx, cancel := context.WithTimeout(ctx, form)
	defer cancel()
	info, err := c.waitVoters(ctx)
	if err != nil {
		return err
	}
	for _, n := range c.Nodes[1:] {
		if err := n.WaitReady(ctx, form); err != nil {
			return fmt.Errorf("%s: %w", n.ID, err)
		}
	}
	c.Leader = -1
	for i, n := range c.Nodes {
		if info.Leader != nil && *info.Leader == n.ID {
			c.Leader = i
		}
	}
	if c.Leader < 0 {
		return fmt.Errorf("GET /v1/cluster on %s names leader %v, not one of the spawned nodes", first.ID, info.Leader)
	}
	return nil
}

// waitVoters polls GET /v1/cluster on node 1 until it lists every node as a
// voter and names a leader. A node that exits ends the wait.
func (c *Cluster) waitVoters(ctx context.Context) (ClusterInfo, error) {
	tm := c.Timing.withDefaults()
	last := "no answer yet"
	for {
		var info ClusterInfo
		_, err := c.op[0].sendJSON(ctx, http.MethodGet, "/v1/cluster", nil, &info, http.StatusOK)
		switch {
		case err != nil:
			last = err.Error()
		case info.Voters() == len(c.Nodes) && info.Leader != nil:
			return info, nil
		default:
			b, _ := json.Marshal(info)
			last = string(b)
		}
		for _, n := range c.Nodes {
			if !n.Running() {
				return info, fmt.Errorf("%s exited while the cluster formed (%v)%s", n.ID, n.err, n.logTail())
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return info, fmt.Errorf("GET /v1/cluster on %s does not list %d voters after %s; last answer: %s%s",
					c.Nodes[0].ID, len(c.Nodes), tm.FormTimeout, last, c.logTails())
			}
			return info, ctx.Err()
		case <-time.After(tm.ClusterPoll):
		}
	}
}

// Digests reads GET /v1/cluster/digest of every node, all at once.
func (c *Cluster) Digests(ctx context.Context) ([]Digest, error) {
	ds := make([]Digest, len(c.op))
	errs := make([]error, len(c.op))
	var wg sync.WaitGroup
	for i, op := range c.op {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := op.sendJSON(ctx, http.MethodGet, "/v1/cluster/digest", nil, &ds[i], http.StatusOK); err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.Nodes[i].ID, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ds, nil
}

// WaitConverged polls the digests of every node until they agree (same
// applied index, same digest) or timeout passes. It returns the last
// readings, whether they agree, and the time it waited.
func (c *Cluster) WaitConverged(ctx context.Context, timeout time.Duration) ([]Digest, bool, time.Duration, error) {
	poll := c.Timing.withDefaults().ClusterPoll
	t0 := time.Now()
	deadline := t0.Add(timeout)
	var ds []Digest
	var lastErr error
	for {
		got, err := c.Digests(ctx)
		if err == nil {
			ds, lastErr = got, nil
			if digestsAgree(ds) {
				return ds, true, time.Since(t0), nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			return ds, false, time.Since(t0), lastErr
		}
		select {
		case <-ctx.Done():
			return ds, false, time.Since(t0), ctx.Err()
		case <-time.After(poll):
		}
	}
}

// Close stops every node at once (SIGTERM, SIGKILL after StopGrace) and
// removes their folders unless kept.
func (c *Cluster) Close() error {
	for _, op := range c.op {
		op.CloseIdle()
	}
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Close(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.ID, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		b.WriteString(n.logTail())
	}
	return b.String()
}

// targetNodes lists the indexes of the nodes that --target drives, the
// first being the one that also gets the setup, the admin and the checks.
func targetNodes(target string, nodes, leader int) []int {
	switch target {
	case TargetFollower:
		for i := range nodes {
			if i != leader {
				return []int{i}
			}
		}
	case TargetAll:
		all := make([]int, nodes)
		for i := range all {
			all[i] = i
		}
		return all
	}
	return []int{leader}
}

// describe lists the nodes: "n1 127.0.0.1:P (leader), n2 127.0.0.1:Q".
func (c *Cluster) describe() string {
	var parts []string
	for i, n := range c.Nodes {
		s := n.ID + " " + n.HTTPAddr
		if i == c.Leader {
			s += " (leader)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// replicaReport is the check, after a run against a spawned cluster, that
// every node reached the same applied index and state digest.
type replicaReport struct {
	nodes    int // 0: no cluster, nothing checked
	equal    bool
	ds       []Digest
	waited   time.Duration
	problems []string
}

// checkReplicas waits up to Timing.ConvergeTimeout for the nodes of the
// cluster to agree. Without a cluster it checks nothing.
func (e *Env) checkReplicas(ctx context.Context) replicaReport {
	if e.Cluster == nil {
		return replicaReport{}
	}
	converge := e.Cfg.Timing.withDefaults().ConvergeTimeout
	ds, ok, waited, err := e.Cluster.WaitConverged(ctx, converge)
	r := replicaReport{nodes: len(e.Cluster.Nodes), equal: ok, ds: ds, waited: waited}
	if !ok {
		msg := fmt.Sprintf("the %d nodes did not reach the same applied_index and digest within %s: %s",
			r.nodes, converge, fmtDigests(ds))
		if err != nil {
			msg += fmt.Sprintf(" (last error: %v)", err)
		}
		r.problems = []string{msg}
	}
	return r
}

// word is the verdict part, " digests=equal" or " digests=differ" ("" with
// no cluster).
func (r replicaReport) word() string {
	switch {
	case r.nodes == 0:
		return ""
	case r.equal:
		return " digests=equal"
	}
	return " digests=differ"
}

// apply adds the cluster part to the summary and the JSON fields.
func (r replicaReport) apply(res *Result, sum *strings.Builder, target string) {
	if r.nodes == 0 {
		return
	}
	fmt.Fprintf(sum, " | cluster: %d nodes, --target %s, ", r.nodes, target)
	if r.equal {
		fmt.Fprintf(sum, "every node at applied_index %d with digest %s %.2fs after the run", r.ds[0].AppliedIndex, shortDigest(r.ds[0].Digest), r.waited.Seconds())
	} else {
		fmt.Fprintf(sum, "the nodes did NOT converge in %.0fs", r.waited.Seconds())
	}
	res.Extra = append(res.Extra,
		Field{Key: "cluster_nodes", Value: r.nodes},
		Field{Key: "target", Value: target},
		Field{Key: "digests_equal", Value: r.equal})
	if r.equal {
		res.Extra = append(res.Extra,
			Field{Key: "applied_index", Value: int64(r.ds[0].AppliedIndex)},
			Field{Key: "converge_s", Value: r.waited.Seconds(), Prec: 3})
	}
}

// shortDigest is the first 16 characters of a digest (a JSON string or
// any other JSON value).
func shortDigest(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return s
}
