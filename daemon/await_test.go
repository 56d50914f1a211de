package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// neverFuture is a Raft future that is never answered, as Raft leaves one
// still queued when it shuts down.
type neverFuture struct{}

func (neverFuture) Error() error { select {} }

// TestAwaitEndsWithClose: a background loop waiting on a future that Raft
// never answers must give up once the node closes, or Close (and so a
// SIGTERM) waits for ever on the loop.
func TestAwaitEndsWithClose(t *testing.T) {
	n := &Node{done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- n.await(neverFuture{}) }()
	close(n.done)
	select {
	case err := <-errc:
		if !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("await after Close: %v, want ErrRaftShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("await still waits 10s after Close")
	}
}
