package httpapi

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// TestRaftErrorsAreUnavailable: every error of Raft itself leaves the
// outcome unknown, including the log store's (a full disk); it is 503
// unavailable, never 500. So are the proposer's timeout and a node that
// cannot write its state.
func TestRaftErrorsAreUnavailable(t *testing.T) {
	f := func(err error) {
		t.Helper()
		e := fromApply(err)
		if e == nil || e.status != fasthttp.StatusServiceUnavailable || e.code != "unavailable" {
			t.Fatalf("%v: answered %v, want 503 unavailable", err, e)
		}
	}
	f(&propose.RaftError{Err: &os.PathError{Op: "write", Path: "data/raft.db", Err: syscall.ENOSPC}})
	f(&propose.RaftError{Err: errors.New("some error of a log store")})
	f(&propose.RaftError{Err: errors.New("leadership lost")})
	f(&propose.RaftError{Err: errors.New("timed out enqueuing operation")})
	f(propose.ErrTimeout)
	f(propose.ErrStopped)
	f(fmt.Errorf("%w: pebble: disk full", propose.ErrStateUnwritable))
	f(raftfsm.ErrUploadIncomplete)
}
