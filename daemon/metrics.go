package daemon

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/raftfsm"
)

// timedFSM is the state machine as Raft sees it: it times each batch of
// log entries the state machine applies, for
// coupond_fsm_apply_duration_seconds, so raftfsm itself stays free of
// metrics (and of the clock: its apply is deterministic). Snapshot and
// Restore pass through the embedded FSM.
type timedFSM struct {
	*raftfsm.FSM
	metrics *httpapi.Metrics
}

// Interfaces Raft looks for: with BatchApplyCh it hands whole batches to
// ApplyBatch only if the FSM it was given implements BatchingFSM.
var (
	_ raft.FSM         = timedFSM{}
	_ raft.BatchingFSM = timedFSM{}
)

func (t timedFSM) Apply(l *raft.Log) interface{} {
	start := time.Now()
	out := t.FSM.Apply(l)
	t.metrics.ObserveApply(time.Since(start))
	return out
}

func (t timedFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	start := time.Now()
	out := t.FSM.ApplyBatch(logs)
	t.metrics.ObserveApply(time.Since(start))
	return out
}
