package daemon

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeTickWorld is the leader state, the due lists and the proposals a ticker
// sees, under one lock.
type fakeTickWorld struct {
	mu        sync.Mutex
	leader    bool
	dueFrom   int64 // TickDue(now) is now >= dueFrom (0: never due)
	clock     int64
	fail      error // the next proposals fail with it
	proposed  []int64
	dueAsked  int
	proposing chan struct{} // when set, a proposal blocks until it is closed
}

func (w *fakeTickWorld) ticker() *expiryTicker {
	t := newExpiryTicker(
		func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.leader },
		func(now int64) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.dueAsked++
			return w.dueFrom != 0 && now >= w.dueFrom
		},
		func(at int64) error {
			w.mu.Lock()
			block, fail := w.proposing, w.fail
			w.proposed = append(w.proposed, at)
			w.mu.Unlock()
			if block != nil {
				<-block
			}
			return fail
		},
		zerolog.Nop())
	t.now = func() time.Time {
		w.mu.Lock()
		defer w.mu.Unlock()
		return time.Unix(0, w.clock)
	}
	return t
}

func (w *fakeTickWorld) set(f func()) { w.mu.Lock(); f(); w.mu.Unlock() }

func (w *fakeTickWorld) proposals() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.proposed...)
}

// TestExpiryTickerProposesOnlyOnTheLeader: a round proposes a Tick, with
// the round's own time, only while the node leads and some list is due; a
// follower never proposes, whatever is due; a failed proposal is asked
// again by the next round.
func TestExpiryTickerProposesOnlyOnTheLeader(t *testing.T) {
	w := &fakeTickWorld{clock: 1_000, dueFrom: 500}
	tk := w.ticker()
	done := make(chan struct{})
	defer close(done)

	for range 5 { // a follower with a due list
		tk.round(done)
	}
	if p := w.proposals(); len(p) != 0 {
		t.Fatalf("a follower proposed ticks %v", p)
	}

	w.set(func() { w.leader = true; w.dueFrom = 0 })
	tk.round(done)
	if p := w.proposals(); len(p) != 0 {
		t.Fatalf("the leader proposed %v with no list due", p)
	}

	w.set(func() { w.dueFrom = 2_000 }) // due from 2_000: not yet at 1_000
	tk.round(done)
	w.set(func() { w.clock = 2_000 })
	tk.round(done)
	if p := w.proposals(); len(p) != 1 || p[0] != 2_000 {
		t.Fatalf("proposals %v, want one Tick at the leader's time 2000", p)
	}

	w.set(func() { w.clock = 3_000; w.fail = errors.New("leadership lost") })
	tk.round(done)
	w.set(func() { w.clock = 4_000; w.fail = nil })
	tk.round(done)
	if p := w.proposals(); len(p) != 3 || p[1] != 3_000 || p[2] != 4_000 {
		t.Fatalf("proposals %v, want the failed Tick at 3000 retried at 4000", p)
	}

	w.set(func() { w.leader = false; w.clock = 5_000 })
	tk.round(done)
	if p := w.proposals(); len(p) != 3 {
		t.Fatalf("a node that stopped leading proposed %v", p)
	}
}

// TestExpiryTickerLoop: the loop runs a round on its period and at once
// on a poke (a new leadership), and ends with the node even while a
// proposal waits for an answer that never comes.
func TestExpiryTickerLoop(t *testing.T) {
	w := &fakeTickWorld{clock: 10, dueFrom: 1, leader: true}
	tk := w.ticker()
	tk.every = time.Hour // only pokes run rounds
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() { tk.run(done); close(ended) }()

	time.Sleep(50 * time.Millisecond)
	if p := w.proposals(); len(p) != 0 {
		t.Fatalf("proposals %v before the first period or poke", p)
	}
	tk.poke()
	waitUntil(t, "the poked round's proposal", func() bool { return len(w.proposals()) == 1 })

	block := make(chan struct{})
	defer close(block)
	w.set(func() { w.proposing = block })
	tk.poke()
	waitUntil(t, "a proposal that hangs", func() bool { return len(w.proposals()) == 2 })
	close(done)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not end with the node while a proposal hung")
	}

	// The period alone drives rounds too.
	w2 := &fakeTickWorld{clock: 10, dueFrom: 1, leader: true}
	tk2 := w2.ticker()
	tk2.every = 10 * time.Millisecond
	done2 := make(chan struct{})
	go tk2.run(done2)
	defer close(done2)
	waitUntil(t, "three periodic proposals", func() bool { return len(w2.proposals()) >= 3 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5s", what)
		}
	}
}
