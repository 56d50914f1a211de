package daemon

import (
	"io"
	"time"

	"github.com/hashicorp/raft"
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
