package propose

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// answerWithin runs f and fails the test if it has not returned within
// limit: the behaviour under test is that it returns at all.
func answerWithin[T any](t *testing.T, limit time.Duration, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(limit):
		t.Fatalf("no answer within %s", limit)
		panic("unreachable")
	}
}

// TestBatcherGivesUpAtTimeout: a command whose entry never comes back from
// Raft (a state machine stuck on a full disk) is answered ErrTimeout
// after the batcher's timeout; its late answer reaches no later command.
func TestBatcherGivesUpAtTimeout(t *testing.T) {
	h := &heldRaft{entries: make(chan *heldEntry, 8)}
	b := startBatcher(h, groupWaitMax, time.Now, DefaultApplyTimeout)
	defer b.close()
	b.timeout = 50 * time.Millisecond
	type result struct {
		resp *raftfsm.Response
		err  error
	}
	submit := func(send string) result {
		cmd := raftfsm.Encode(&raftfsm.CloseSend{Tenant: "t", Send: send})
		return answerWithin(t, 5*time.Second, func() result {
			r, err := b.submit(cmd)
			return result{r, err}
		})
	}
	if r := submit("stuck"); !errors.Is(r.err, ErrTimeout) {
		t.Fatalf("stuck command answered %v, %v; want ErrTimeout", r.resp, r.err)
	}
	// Queued behind the stuck entry: it times out as well.
	if r := submit("queued"); !errors.Is(r.err, ErrTimeout) {
		t.Fatalf("queued command answered %v, %v; want ErrTimeout", r.resp, r.err)
	}
	b.timeout = 5 * time.Second
	(<-h.entries).release() // "stuck" comes back at last
	(<-h.entries).release() // so does "queued"
	go func() { (<-h.entries).release() }()
	next := raftfsm.Encode(&raftfsm.CloseSend{Tenant: "t", Send: "next"})
	r := submit("next")
	if r.err != nil || r.resp.Value != string(next) {
		t.Fatalf("next command answered %v, %v; want its own answer", r.resp, r.err)
	}
}

// stuckFuture never resolves, like the future of an entry the state
// machine cannot apply.
type stuckFuture struct{}

func (stuckFuture) Error() error          { select {} }
func (stuckFuture) Index() uint64         { return 0 }
func (stuckFuture) Response() interface{} { return nil }

// TestWaitGivesUpAtDeadline: a command sent on its own (imports, chunked
// allocations) is answered ErrTimeout at its deadline (503 unavailable).
func TestWaitGivesUpAtDeadline(t *testing.T) {
	p := &Proposer{}
	err := answerWithin(t, 5*time.Second, func() error {
		_, err := p.wait(pending{f: stuckFuture{}, deadline: time.Now().Add(50 * time.Millisecond)}, nil)
		return err
	})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("stuck command answered %v, want ErrTimeout", err)
	}
}

// TestWaitEndsWithStop: the daemon's background writes wait without a
// deadline, but give up once the node closes, or Close (and so a SIGTERM)
// would wait for ever on a future Raft never answers.
func TestWaitEndsWithStop(t *testing.T) {
	p := &Proposer{}
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		_, err := p.wait(pending{f: stuckFuture{}}, stop)
		errc <- err
	}()
	close(stop)
	select {
	case err := <-errc:
		if !errors.Is(err, ErrStopped) {
			t.Fatalf("wait after stop: %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait still waits 10s after stop")
	}
}

// TestRaftErrorsLeaveTheOutcomeUnknown: every error of Raft itself,
// including the log store's (a full disk), is a *RaftError (503
// unavailable, never 500); the timeout stays ErrTimeout.
func TestRaftErrorsLeaveTheOutcomeUnknown(t *testing.T) {
	f := func(err error) {
		t.Helper()
		_, got := outcome(nil, err)
		var re *RaftError
		if !errors.As(got, &re) || !errors.Is(got, err) {
			t.Fatalf("%v: answered %v, want a *RaftError", err, got)
		}
	}
	f(&os.PathError{Op: "write", Path: "data/raft.db", Err: syscall.ENOSPC})
	f(errors.New("some error of a log store"))
	f(raft.ErrLeadershipLost)
	f(raft.ErrEnqueueTimeout)
	if _, got := outcome(nil, ErrTimeout); got != ErrTimeout {
		t.Fatalf("timeout answered %v, want ErrTimeout", got)
	}
}
