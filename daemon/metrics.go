package daemon

import (
	"io"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/raftfsm"
)

// timedFSM is the state machine as Raft sees it: it times each batch of
// log entries the state machine applies, for
// coupond_fsm_apply_duration_seconds, so raftfsm itself stays free of
// metrics (and of the clock: its apply is deterministic). Snapshot passes
// through the embedded FSM; Restore is logged, since a follower that
// installs a snapshot rewrites its whole state meanwhile.
type timedFSM struct {
	*raftfsm.FSM
	metrics *httpapi.Metrics
	log     zerolog.Logger
}

// Interfaces Raft looks for: with BatchApplyCh it hands whole batches to
// ApplyBatch only if the FSM it was given implements BatchingFSM.
var (
	_ raft.FSM         = timedFSM{}
	_ raft.BatchingFSM = timedFSM{}
)

// Apply is only for Raft's interface: with BatchingFSM it calls ApplyBatch.
func (t timedFSM) Apply(l *raft.Log) interface{} { return t.ApplyBatch([]*raft.Log{l})[0] }

func (t timedFSM) Restore(rc io.ReadCloser) error {
	start := time.Now()
	t.log.Info().Msg("restoring a snapshot from the leader")
	if err := t.FSM.Restore(rc); err != nil {
		t.log.Error().Err(err).Msg("cannot restore the leader's snapshot: the state is partial, and the node stops rather than apply entries to it; its next start restores the snapshot again")
		return err
	}
	t.log.Info().Dur("took", time.Since(start)).Uint64("applied_index", t.FSM.AppliedIndex()).Msg("snapshot restored")
	return nil
}

func (t timedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	start := time.Now()
	out := t.FSM.ApplyBatch(logs)
	t.metrics.ObserveApply(time.Since(start))
	return out
}

// lifecycleMetrics are the metrics of fallback codes, releases and expiry
// (README "Metrics"), read from the state machine at scrape time. now is
// the clock that decides which lists have expired: the node's, since a
// scrape is a read, not a command.
func lifecycleMetrics(fsm *raftfsm.FSM, now func() time.Time) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_fallback_codes_given_total",
			Help: "Fallback codes this node's state machine gave to recipients (sends with on_shortage fallback on a list that ran dry or expired) since the process started.",
		}, func() float64 { return float64(fsm.FallbacksGiven()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_codes_released_total",
			Help: "Codes this node's state machine returned to their lists by releases of undelivered codes since the process started.",
		}, func() float64 { return float64(fsm.CodesReleased()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coupond_lists_expired",
			Help: "Lists, of every tenant, whose expires_at has passed by this node's clock.",
		}, func() float64 { return float64(fsm.ExpiredLists(now().UnixNano())) }),
	}
}
