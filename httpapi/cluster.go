package httpapi

import (
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// probeTimeout bounds the readiness probe of each peer in GET /v1/cluster.
const probeTimeout = 300 * time.Millisecond

type nodeJSON struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Suffrage string `json:"suffrage"`
	State    string `json:"state"`
}

// getCluster answers this node's view of the cluster. The state of a peer
// is probed on its /readyz: "leader" or "follower" when it answers ready
// ("ready" when this node knows no leader to tell which), "catching_up"
// when it answers not ready, "unreachable" otherwise.
func (s *Server) getCluster(r *request) *apiError {
	servers, err := s.prop.Members()
	if err != nil {
		return fromApply(err)
	}
	leader := s.prop.Leader()
	st := s.prop.Status()
	nodes := make([]nodeJSON, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		n := nodeJSON{ID: srv.ID, RaftAddr: srv.RaftAddr, Suffrage: srv.Suffrage}
		if info, ok := s.state.Node(n.ID); ok {
			n.HTTPAddr = info.HTTPAddr
		}
		switch {
		case n.ID == s.cfg.NodeID:
			n.HTTPAddr = s.cfg.HTTPAddr
			n.State = st.State
		case n.HTTPAddr == "":
			n.State = "unknown"
		}
		nodes[i] = n
		if n.State == "" {
			wg.Add(1)
			go func(n *nodeJSON, isLeader bool) {
				defer wg.Done()
				n.State = s.probe(n.HTTPAddr, isLeader)
				if n.State == "follower" && leader == "" {
					n.State = "ready"
				}
			}(&nodes[i], srv.ID == leader)
		}
	}
	wg.Wait()
	var leaderID any
	if leader != "" {
		leaderID = leader
	}
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]any{
		"leader": leaderID, "nodes": nodes, "term": st.Term,
		"commit_index": st.CommitIndex, "applied_index": st.AppliedIndex,
	})
	return nil
}

func (s *Server) probe(addr string, leader bool) string {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(s.scheme() + "://" + addr + "/readyz")
	if err := s.fwd.DoTimeout(req, resp, probeTimeout); err != nil {
		return "unreachable"
	}
	switch {
	case resp.StatusCode() != fasthttp.StatusOK:
		return "catching_up"
	case leader:
		return "leader"
	}
	return "follower"
}

// getDigest answers the digest of this node's state with the index it was
// taken at, for comparing replicas; it retries while entries are applied.
func (s *Server) getDigest(r *request) *apiError {
	for range 10 {
		before := s.state.AppliedIndex()
		d := s.state.Digest()
		if s.state.AppliedIndex() == before {
			writeJSON(r.ctx, fasthttp.StatusOK, map[string]any{"node": s.cfg.NodeID, "applied_index": before, "digest": d})
			return nil
		}
	}
	return unavailable("the state kept changing while it was hashed; retry")
}

func validHostPort(field, addr string) *apiError {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" || len(addr) > 255 {
		return badRequest(field + " must be host:port")
	}
	return nil
}

// addNode adds a voter (SPEC §2), on the leader. Adding a node that is a
// member already with the same addresses changes nothing and answers 200,
// so a joining node may retry.
func (s *Server) addNode(r *request) *apiError {
	var in struct {
		ID       *string `json:"id"`
		RaftAddr *string `json:"raft_addr"`
		HTTPAddr *string `json:"http_addr"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	if in.ID == nil || in.RaftAddr == nil || in.HTTPAddr == nil {
		return badRequest("id, raft_addr and http_addr are required")
	}
	if e := validID("id", *in.ID); e != nil {
		return e
	}
	if e := validHostPort("raft_addr", *in.RaftAddr); e != nil {
		return e
	}
	if e := validHostPort("http_addr", *in.HTTPAddr); e != nil {
		return e
	}
	node := raftfsm.NodeInfo{ID: *in.ID, RaftAddr: *in.RaftAddr, HTTPAddr: *in.HTTPAddr}
	members, err := s.prop.Members()
	if err != nil {
		return fromApply(err)
	}
	existing := false
	for _, srv := range members {
		switch {
		case srv.ID == node.ID:
			existing = srv.RaftAddr == node.RaftAddr && srv.Voter
		case srv.RaftAddr == node.RaftAddr:
			return newError(fasthttp.StatusConflict, "address_in_use", "another node has this raft_addr")
		}
	}
	known, _ := s.state.Node(node.ID)
	if existing && known == node {
		writeJSON(r.ctx, fasthttp.StatusOK, toNodeInfoJSON(node))
		return nil
	}
	if s.probe(node.HTTPAddr, false) == "unreachable" {
		return newError(fasthttp.StatusUnprocessableEntity, "node_unreachable",
			"the node does not answer on http_addr; start it first (with --join, it asks to be added itself)")
	}
	if err := s.prop.AddVoter(node); err != nil {
		return fromApply(err)
	}
	status := fasthttp.StatusCreated
	if existing {
		status = fasthttp.StatusOK
	}
	writeJSON(r.ctx, status, toNodeInfoJSON(node))
	return nil
}

func toNodeInfoJSON(n raftfsm.NodeInfo) map[string]string {
	return map[string]string{"id": n.ID, "raft_addr": n.RaftAddr, "http_addr": n.HTTPAddr}
}

// removeNode removes a member (SPEC §2), on the leader; removing the leader
// itself makes it step down once the change is committed.
func (s *Server) removeNode(r *request) *apiError {
	id := r.seg[3]
	members, err := s.prop.Members()
	if err != nil {
		return fromApply(err)
	}
	member, otherVoters := false, 0
	for _, srv := range members {
		switch {
		case srv.ID == id:
			member = true
		case srv.Voter:
			otherVoters++
		}
	}
	if !member {
		return errNotFound
	}
	// Raft refuses a configuration without a voter (it could never elect a
	// leader again); say so instead of answering 500.
	if otherVoters == 0 {
		return newError(fasthttp.StatusConflict, "last_voter",
			"node "+id+" is the last voter of the cluster; removing it would leave no node to lead (add another node first)")
	}
	if err := s.prop.RemoveMember(id); err != nil {
		return fromApply(err)
	}
	r.ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}
