package propose

import (
	"errors"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// Status is this node's view of the consensus, for probes and metrics.
type Status struct {
	// State is "follower", "candidate", "leader" or "shutdown".
	State        string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64 // entries handed to the state machine, not always applied yet
	// LastContact is when this node last heard from a leader (zero: never).
	LastContact time.Time
}

// Member is one server of the Raft configuration.
type Member struct {
	ID       string
	RaftAddr string
	Voter    bool
	Suffrage string // "voter", "nonvoter" or "staging", as GET /v1/cluster writes it
}

// IsLeader reports whether this node leads now (as far as it knows).
func (p *Proposer) IsLeader() bool { return p.raft.State() == raft.Leader }

// Leader is the id of the leader this node knows, "" when none.
func (p *Proposer) Leader() string {
	_, id := p.raft.LeaderWithID()
	return string(id)
}

// Status answers this node's view of the consensus.
func (p *Proposer) Status() Status {
	return Status{State: strings.ToLower(p.raft.State().String()), Term: p.raft.CurrentTerm(),
		CommitIndex: p.raft.CommitIndex(), AppliedIndex: p.raft.AppliedIndex(), LastContact: p.raft.LastContact()}
}

// ReadBarrier makes a read on the leader linearizable. A Raft barrier
// commits in this term only with a quorum, so this node still leads, and
// it resolves only after the state machine has applied every entry before
// it. (Raft's AppliedIndex counts entries handed to the state machine, not
// applied yet, so waiting for it would not do.) Concurrent barriers share
// one log write.
func (p *Proposer) ReadBarrier() error {
	deadline := time.Now().Add(p.timeout)
	return wrapRaft(await(p.raft.Barrier(p.timeout), deadline, nil))
}

// Members answers the Raft configuration.
func (p *Proposer) Members() ([]Member, error) {
	f := p.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, &RaftError{Err: err}
	}
	servers := f.Configuration().Servers
	out := make([]Member, len(servers))
	for i, s := range servers {
		out[i] = Member{ID: string(s.ID), RaftAddr: string(s.Address), Voter: s.Suffrage == raft.Voter,
			Suffrage: strings.ToLower(s.Suffrage.String())}
	}
	return out, nil
}

// AddVoter makes node a voter, on the leader. The directory entry goes
// first: once a voter, the node may be elected, and the others must know
// where to forward to.
func (p *Proposer) AddVoter(node raftfsm.NodeInfo) error {
	if _, err := p.Propose(&raftfsm.SetNode{Node: node}); err != nil {
		return err
	}
	deadline := time.Now().Add(p.timeout)
	f := p.raft.AddVoter(raft.ServerID(node.ID), raft.ServerAddress(node.RaftAddr), 0, p.timeout)
	if err := await(f, deadline, nil); err != nil {
		return wrapRaft(err)
	}
	p.log.Info().Str("node", node.ID).Str("raft_addr", node.RaftAddr).Str("http_addr", node.HTTPAddr).Msg("node added")
	return nil
}

// RemoveMember removes a server, on the leader; removing the leader itself
// makes it step down once the change is committed. Its directory entry
// goes after: a stale entry of a removed node is harmless (it can never
// lead again), so a failure there does not undo the removal.
func (p *Proposer) RemoveMember(id string) error {
	deadline := time.Now().Add(p.timeout)
	if err := await(p.raft.RemoveServer(raft.ServerID(id), 0, p.timeout), deadline, nil); err != nil {
		return wrapRaft(err)
	}
	if _, err := p.Propose(&raftfsm.RemoveNode{ID: id}); err != nil && !errors.Is(err, raftfsm.ErrNotFound) {
		p.log.Warn().Str("node", id).Err(err).Msg("node removed; its directory entry stays")
	}
	p.log.Info().Str("node", id).Msg("node removed")
	return nil
}

// wrapRaft marks an error of a Raft future as one of Raft's.
func wrapRaft(err error) error {
	if err == nil || errors.Is(err, ErrTimeout) || errors.Is(err, ErrStopped) {
		return err
	}
	return &RaftError{Err: err}
}
