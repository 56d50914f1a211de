package daemon

import (
	"time"

	"github.com/rs/zerolog"
)

// The leader's expiry clock (README "Expiry"). The state machine never
// reads a clock: a list's expiry warning (an expiry_soon alert in the
// outbox) is recorded when a Tick command, stamped with the leader's time,
// is applied. So the leader looks every tickEvery whether some list is due
// (FSM.TickDue) and, only then, proposes a Tick with the same time. An idle
// cluster thus writes no log entry at all, and a list is warned at most one
// round (plus the commit) after its warning time. Followers never propose:
// a new leader takes over the rounds, and its first one comes right after
// the barrier of its term (wake), so a warning that fell due during an
// election is not held up by a whole round.

// tickEvery is the period of the leader's rounds.
const tickEvery = time.Second

// expiryTicker runs the rounds for one node, for the node's whole life.
type expiryTicker struct {
	leader  func() bool          // this node leads now
	due     func(now int64) bool // FSM.TickDue
	propose func(at int64) error // Proposer.Tick: proposes and waits for the apply
	now     func() time.Time
	every   time.Duration
	wake    chan struct{} // buffered (1): a round now, coalesced
	log     zerolog.Logger
}

func newExpiryTicker(leader func() bool, due func(int64) bool, propose func(int64) error, log zerolog.Logger) *expiryTicker {
	return &expiryTicker{leader: leader, due: due, propose: propose, now: time.Now, every: tickEvery,
		wake: make(chan struct{}, 1), log: log}
}

// poke asks for a round now, without ever blocking.
func (t *expiryTicker) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// run does a round every t.every and on every poke until done is closed.
func (t *expiryTicker) run(done <-chan struct{}) {
	tk := time.NewTicker(t.every)
	defer tk.Stop()
	for {
		select {
		case <-done:
			return
		case <-tk.C:
		case <-t.wake:
		}
		t.round(done)
	}
}

// round proposes a Tick if this node leads and some list is due. A failed
// proposal (leadership lost meanwhile, no quorum, a full disk) is only
// logged: the next round asks again, with its own time.
func (t *expiryTicker) round(done <-chan struct{}) {
	if !t.leader() {
		return
	}
	at := t.now().UnixNano()
	if !t.due(at) {
		return
	}
	// The proposal waits for a Raft future, which Raft may leave
	// unanswered when it shuts down: wait for it or for the node's end, so
	// that Close never hangs on this loop (the goroutine left waiting then
	// ends with the process, as in Node.await).
	errc := make(chan error, 1)
	go func() { errc <- t.propose(at) }()
	select {
	case err := <-errc:
		if err != nil {
			t.log.Debug().Err(err).Msg("expiry tick not applied; the next round retries")
			return
		}
		t.log.Debug().Time("at", time.Unix(0, at)).Msg("expiry tick applied")
	case <-done:
	}
}
