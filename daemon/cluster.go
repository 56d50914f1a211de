package daemon

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// Timings of joining and catching up.
const (
	joinRetry       = time.Second
	joinCallTimeout = 15 * time.Second
	caughtUpPoll    = 20 * time.Millisecond
	snapshotPoll    = time.Second
)

// readOperatorToken reads --token-file for --join.
func readOperatorToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read --token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("--token-file is empty")
	}
	return tok, nil
}

// join asks the node at --join to add this one as a voter, until it is
// added, the answer says it never will be, or the node stops. The call is
// idempotent on the leader, so retrying after an unknown outcome is safe.
func (n *Node) join(token string) {
	body, _ := json.Marshal(map[string]string{
		"id": n.cfg.NodeID, "raft_addr": string(n.transport.LocalAddr()), "http_addr": n.advertisedHTTPAddr(),
	})
	scheme := "http"
	if n.peerTLS != nil {
		scheme = "https"
	}
	client := &fasthttp.Client{TLSConfig: n.peerTLS, ReadTimeout: joinCallTimeout, WriteTimeout: joinCallTimeout}
	for {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI(scheme + "://" + n.cfg.Join + "/v1/cluster/nodes")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		req.SetBody(body)
		err := client.DoTimeout(req, resp, joinCallTimeout)
		status, answer := resp.StatusCode(), string(resp.Body())
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
		switch {
		case err != nil:
			n.log.Warn().Str("join", n.cfg.Join).Err(err).Msg("cannot reach the node to join; retrying")
		case status == fasthttp.StatusOK || status == fasthttp.StatusCreated:
			n.log.Info().Str("join", n.cfg.Join).Msg("joined the cluster")
			return
		case status >= 400 && status < 500:
			n.log.Error().Str("join", n.cfg.Join).Int("status", status).Str("answer", answer).
				Msg("the cluster refused to add this node; fix the cause and restart it")
			return
		default:
			n.log.Warn().Str("join", n.cfg.Join).Int("status", status).Msg("the cluster could not add this node yet; retrying")
		}
		select {
		case <-n.done:
			return
		case <-time.After(joinRetry):
		}
	}
}

// watchCaughtUp lets a follower answer once it has heard from a leader and
// applied what it knows is committed. (A leader is let in by the barrier
// of onLeadership.) Local reads on a follower may lag the leader by what is
// in flight; ?consistency=strong reads through the leader.
func (n *Node) watchCaughtUp() {
	t := time.NewTicker(caughtUpPoll)
	defer t.Stop()
	for !n.api.CaughtUp() {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		_, leader := n.raft.LeaderWithID()
		if n.raft.State() == raft.Follower && leader != "" && !n.raft.LastContact().IsZero() &&
			n.raft.CommitIndex() > 0 && n.raft.AppliedIndex() >= n.raft.CommitIndex() {
			n.api.MarkCaughtUp()
			n.log.Info().Str("leader", string(leader)).Uint64("applied_index", n.raft.AppliedIndex()).Msg("caught up with the leader")
		}
	}
}

// leaderDuties runs once a new leader has applied every earlier entry: the
// API may answer from then on, and the cluster key and this node's entry
// of the directory are made right.
func (n *Node) leaderDuties() error {
	defer n.api.MarkCaughtUp()
	if _, ok := n.fsm.ClusterKey(); !ok {
		var c raftfsm.SetClusterKey
		rand.Read(c.Key[:])
		if err := n.applyOnce(&c); err != nil {
			return fmt.Errorf("cannot set the cluster key: %w", err)
		}
	}
	self := raftfsm.NodeInfo{ID: n.cfg.NodeID, RaftAddr: string(n.transport.LocalAddr()), HTTPAddr: n.advertisedHTTPAddr()}
	if known, ok := n.fsm.Node(self.ID); !ok || known != self {
		if err := n.applyOnce(&raftfsm.SetNode{Node: self}); err != nil {
			return fmt.Errorf("cannot record this node's addresses: %w", err)
		}
	}
	return nil
}

// snapshotBySize takes a snapshot once --raft-snapshot-bytes of commands
// were applied since the last one it took: Raft's own trigger counts
// entries, and import entries are large.
func (n *Node) snapshotBySize() {
	last := n.fsm.BytesApplied()
	missingLogged := false // snapshotsMissing logged that it could not act yet
	t := time.NewTicker(snapshotPoll)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
		}
		if n.snapshotsMissing(&missingLogged) {
			continue
		}
		total := n.fsm.BytesApplied()
		if total-last < uint64(n.cfg.SnapshotBytes) {
			continue
		}
		if err := n.await(n.raft.Snapshot()); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			n.log.Warn().Err(err).Msg("cannot take a snapshot")
			continue
		}
		n.log.Info().Uint64("bytes", total-last).Msg("snapshot taken: log size")
		last = total
	}
}
