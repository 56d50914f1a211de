package raftfsm

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// applyStats counts what this process's state machine applied, for the
// node's metrics. The totals start at zero with the process and are not
// part of the replicated state: every node counts the entries it applies
// itself, replays after a restart included, so no Raft entry depends on them.
type applyStats struct {
	codesAllocated atomic.Uint64
	codesImported  atomic.Uint64
	fallbacksGiven atomic.Uint64
	codesReleased  atomic.Uint64
	// assignmentsErased counts assignments whose recipient was erased.
	assignmentsErased atomic.Uint64
}

// AssignmentsErased is the number of assignments this process's state
// machine rewrote to an erased recipient since the process started.
func (f *FSM) AssignmentsErased() uint64 { return f.stats.assignmentsErased.Load() }

// FallbacksGiven is the number of fallback codes this process's state
// machine has given to recipients since the process started.
func (f *FSM) FallbacksGiven() uint64 { return f.stats.fallbacksGiven.Load() }

// CodesReleased is the number of codes this process's state machine has
// returned to their lists by releases since the process started.
func (f *FSM) CodesReleased() uint64 { return f.stats.codesReleased.Load() }

// CodesAllocated is the number of codes this process's state machine has
// assigned to recipients since the process started.
func (f *FSM) CodesAllocated() uint64 { return f.stats.codesAllocated.Load() }

// CodesImported is the number of codes this process's state machine has
// added to lists (after de-duplication) since the process started.
func (f *FSM) CodesImported() uint64 { return f.stats.codesImported.Load() }

// StoreMetrics reports the Pebble store's own metrics (sizes, compactions,
// read amplification). It must not be called after the store was closed.
func (f *FSM) StoreMetrics() *pebble.Metrics { return f.db.Metrics() }

// ListAvailability is one list's available count, for metrics.
type ListAvailability struct {
	ID        uint64
	Tenant    string
	Available uint64
}

// ListsSummary reports the number of lists and the codes available in all
// of them, and the availability of at most limit lists: the oldest ones
// (created first, then by id), so the set a caller reports stays the same
// from one call to the next while lists are only added.
func (f *FSM) ListsSummary(limit int) (oldest []ListAvailability, lists int, available uint64) {
	f.mu.RLock()
	metas := make([]*ListMeta, 0, len(f.lists))
	for _, l := range f.lists {
		metas = append(metas, l)
	}
	f.mu.RUnlock()
	sortOldestFirst(metas)
	oldest = make([]ListAvailability, 0, min(limit, len(metas)))
	for i, l := range metas {
		v := view(l)
		available += v.Available
		if i < limit {
			oldest = append(oldest, ListAvailability{ID: l.ID, Tenant: l.Tenant, Available: v.Available})
		}
	}
	return oldest, len(metas), available
}
