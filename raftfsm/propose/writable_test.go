package propose

import (
	"crypto/sha256"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// countingRaft counts the entries proposed to it and answers none: a test
// that uses it expects nothing to be proposed.
type countingRaft struct {
	Raft
	applied atomic.Int64
}

func (c *countingRaft) Apply([]byte, time.Duration) raft.ApplyFuture {
	c.applied.Add(1)
	return stuckApply{}
}

type stuckApply struct{ stuckFuture }

// codesBody is an import body of n codes, without a digest.
type codesBody struct{ n int }

func (b *codesBody) Next() ([]byte, error) {
	if b.n == 0 {
		return nil, io.EOF
	}
	b.n--
	return []byte("CODE-0001"), nil
}

func (b *codesBody) Digest() ([sha256.Size]byte, error) { return [sha256.Size]byte{}, nil }

// TestUnwritableStateProposesNothing: while the node cannot write its
// state, every write is refused at once with ErrStateUnwritable, and no
// entry reaches Raft (it would wait out the apply timeout there and add
// to the entries stuck behind a state machine that cannot apply).
func TestUnwritableStateProposesNothing(t *testing.T) {
	r := &countingRaft{}
	full := errors.New("pebble: disk full")
	p := New(r, nil, Config{StateErr: func() error { return full }})
	defer p.Close()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrStateUnwritable) {
			t.Fatalf("%s: %v, want ErrStateUnwritable", what, err)
		}
		if n := r.applied.Load(); n != 0 {
			t.Fatalf("%s: %d entries proposed, want none", what, n)
		}
	}
	_, err := p.Propose(&raftfsm.CloseSend{Tenant: "t", Send: "s"})
	check("Propose", err)
	_, err = p.OpenSend(&raftfsm.OpenSend{Tenant: "t", Send: "s", Message: "m"})
	check("OpenSend", err)
	_, err = p.Allocate(Allocation{Tenant: "t", Send: "s", Message: "m", Recipients: [][]byte{[]byte("r1")}})
	check("Allocate", err)
	_, err = p.Import(Import{Tenant: "t", List: 1}, &codesBody{n: 10})
	check("Import", err)
}
