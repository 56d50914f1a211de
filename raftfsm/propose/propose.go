// Package propose is the only code that calls Raft to change the state.
// It owns how a change reaches the log: group commit of small commands,
// apply-and-wait with the apply timeout, and the protocols that span
// several entries (a streamed import, reserve-then-chunks allocation,
// membership order), plus the daemon's own one-off writes. The state
// machine (raftfsm) owns what a change does; HTTP owns only the wire.
package propose

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"

	"github.com/coupond/coupond/raftfsm"
)

// Raft is the part of *raft.Raft the proposer drives.
type Raft interface {
	Apply(cmd []byte, timeout time.Duration) raft.ApplyFuture
	State() raft.RaftState
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	CurrentTerm() uint64
	CommitIndex() uint64
	AppliedIndex() uint64
	LastContact() time.Time
	GetConfiguration() raft.ConfigurationFuture
	Barrier(timeout time.Duration) raft.Future
	AddVoter(id raft.ServerID, addr raft.ServerAddress, prevIndex uint64, timeout time.Duration) raft.IndexFuture
	RemoveServer(id raft.ServerID, prevIndex uint64, timeout time.Duration) raft.IndexFuture
}

// DefaultApplyTimeout bounds the wait for one command's outcome, from the
// Raft queue to the state machine's answer; past it the outcome is unknown.
const DefaultApplyTimeout = 10 * time.Second

// Config tunes a Proposer; the zero value is the daemon's defaults.
type Config struct {
	// ApplyTimeout is DefaultApplyTimeout when zero.
	ApplyTimeout time.Duration
	// StateErr, when set, reports why this node cannot write its state
	// right now (a full disk): writes are refused at once with
	// ErrStateUnwritable instead of waiting on a state machine that cannot apply.
	StateErr func() error
	Log      zerolog.Logger
}

// Errors of the proposer itself. Every one of them leaves the outcome of
// the write unknown or not started; a retry is safe. The state machine's
// domain outcomes (raftfsm.ErrNotFound, *raftfsm.InsufficientError, ...)
// come back as they are.
var (
	// ErrTimeout: the outcome did not come within the apply timeout.
	ErrTimeout = errors.New("cannot learn the outcome of the write in time")
	// ErrStateUnwritable: nothing was proposed, this node cannot write its state.
	ErrStateUnwritable = errors.New("this node cannot write its state right now")
	// ErrUploadInProgress: an upload with the same id is being streamed on this node.
	ErrUploadInProgress = errors.New("an upload with this id is still in progress")
	// ErrStopped: the caller's stop channel closed before the outcome came.
	ErrStopped = errors.New("stopped before the outcome of the write was known")
)

// RaftError is an error of Raft itself (not leader, leadership lost,
// shutdown, a log store that cannot write): the outcome is unknown.
type RaftError struct{ Err error }

func (e *RaftError) Error() string { return "raft: " + e.Err.Error() }
func (e *RaftError) Unwrap() error { return e.Err }

// BodyError is an error of the caller's input, met while a protocol read
// it (a CSV line that is not valid, a body cut short): nothing of the
// request became visible.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// Proposer turns requests into Raft entries and waits for their outcome.
type Proposer struct {
	raft    Raft
	fsm     *raftfsm.FSM
	cfg     Config
	log     zerolog.Logger
	timeout time.Duration

	batch   *batcher
	sends   *sendLocks
	uploads sync.Map // raftfsm.UploadID -> struct{}: imports this node is streaming now
}

// New returns the proposer of one node. It claims the state machine's
// early answers (raftfsm.FSM.SetEarlyAnswers) for its group commit.
func New(r Raft, fsm *raftfsm.FSM, cfg Config) *Proposer {
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = DefaultApplyTimeout
	}
	p := &Proposer{raft: r, fsm: fsm, cfg: cfg, log: cfg.Log, timeout: cfg.ApplyTimeout, sends: newSendLocks()}
	p.batch = startBatcher(r, groupWaitMax, time.Now, cfg.ApplyTimeout)
	if fsm != nil {
		fsm.SetEarlyAnswers(p.batch.answerEarly)
	}
	return p
}

// Close stops the group commit once nothing proposes any more (after the
// HTTP server stopped); what is queued still goes out.
func (p *Proposer) Close() { p.batch.close() }

// Writable reports why this node cannot write its state now; nil when it can.
func (p *Proposer) Writable() error {
	if p.cfg.StateErr == nil {
		return nil
	}
	if err := p.cfg.StateErr(); err != nil {
		return fmt.Errorf("%w: %v", ErrStateUnwritable, err)
	}
	return nil
}

// Propose runs one command through Raft and waits for its outcome, for at
// most the apply timeout. Small commands share log entries with
// concurrent ones (batcher.go). It returns the state machine's value, or
// its domain error, or one of the proposer's errors.
func (p *Proposer) Propose(c raftfsm.Command) (any, error) {
	if err := p.Writable(); err != nil {
		return nil, err
	}
	cmd := raftfsm.Encode(c)
	if len(cmd) > smallCmdBytes {
		return p.wait(p.applyRaw(cmd), nil)
	}
	resp, err := p.batch.submit(cmd)
	return outcome(resp, err)
}

// pending is a command handed to Raft and the time its outcome is due.
type pending struct {
	f        raft.ApplyFuture
	deadline time.Time
}

// applyRaw hands cmd to Raft on its own, without waiting for its outcome;
// the caller checks Writable first. The wait for a place in Raft's queue
// counts against the same timeout as the outcome.
func (p *Proposer) applyRaw(cmd []byte) pending {
	deadline := time.Now().Add(p.timeout)
	return pending{f: p.raft.Apply(cmd, p.timeout), deadline: deadline}
}

// wait waits for a command's outcome until its deadline, or until stop closes.
func (p *Proposer) wait(a pending, stop <-chan struct{}) (any, error) {
	if err := await(a.f, a.deadline, stop); err != nil {
		return outcome(nil, err)
	}
	resp, ok := a.f.Response().(*raftfsm.Response)
	if !ok {
		return nil, fmt.Errorf("propose: the state machine answered %T", a.f.Response())
	}
	return outcome(resp, nil)
}

// outcome unwraps a state machine's answer, or wraps Raft's error.
func outcome(resp *raftfsm.Response, err error) (any, error) {
	switch {
	case errors.Is(err, ErrTimeout), errors.Is(err, ErrStopped):
		return nil, err
	case err != nil:
		return nil, &RaftError{Err: err}
	case resp.Err != nil:
		return nil, resp.Err
	}
	return resp.Value, nil
}

// await waits for f until deadline (zero: none), or until stop closes (nil: never).
// Raft's own timeout bounds only the wait for a place in its queue: a
// state machine that cannot write (Pebble stalls on a full disk) holds the
// future until space returns, and a client must have an answer before
// that; and Raft leaves a future still queued at its shutdown unanswered.
// The goroutine ends when f does.
func await(f raft.Future, deadline time.Time, stop <-chan struct{}) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var expired <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expired = t.C
	}
	select {
	case err := <-done:
		return err
	case <-expired:
		return ErrTimeout
	case <-stop:
		return ErrStopped
	}
}

// applyUntil applies a command of the daemon's own background work: it
// waits for the outcome as long as it takes (a slow start is no reason to
// give up a leader's duty), until stop closes.
func (p *Proposer) applyUntil(c raftfsm.Command, stop <-chan struct{}) (any, error) {
	return p.wait(pending{f: p.raft.Apply(raftfsm.Encode(c), p.timeout)}, stop)
}

// ApplyOnce applies a command the daemon itself issues, where "it exists
// already" means an earlier run or leader did it: that is success. It
// gives up when stop closes.
func (p *Proposer) ApplyOnce(c raftfsm.Command, stop <-chan struct{}) error {
	_, err := p.applyUntil(c, stop)
	if errors.Is(err, raftfsm.ErrExists) {
		return nil
	}
	return err
}

// AckAlerts records that the low-stock alerts ids were delivered.
func (p *Proposer) AckAlerts(ids []uint64, stop <-chan struct{}) error {
	_, err := p.applyUntil(&raftfsm.AckAlerts{IDs: append([]uint64(nil), ids...)}, stop)
	return err
}
