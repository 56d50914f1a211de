package pool

import (
	"slices"
	"strconv"
	"sync/atomic"
)

// poolShards is the number of copy-on-write shards of the registry. Create
// and Delete copy one shard (about n/poolShards entries), Get is one atomic
// load plus one map lookup.
const poolShards = 64

// Pools is the registry of lists, keyed by a uint64 list id.
//
// It is a fixed array of copy-on-write maps, each behind an atomic pointer:
// the writer replaces a shard's map with a modified copy, readers load the
// current map and never see it change. Get and IDs are lock-free and may be
// called from any goroutine; Create and Delete are writer only.
type Pools struct {
	shards [poolShards]atomic.Pointer[map[uint64]*List]
}

// New returns an empty registry.
func New() *Pools {
	return &Pools{}
}

func shardOf(id uint64) int {
	return int((id * 0x9E3779B97F4A7C15) >> (64 - 6))
}

// Get returns the list with the given id, or nil when there is none. Any
// goroutine.
func (p *Pools) Get(id uint64) *List {
	m := p.shards[shardOf(id)].Load()
	if m == nil {
		return nil
	}
	return (*m)[id]
}

// Create registers and returns a new empty list. dedupe selects whether Add
// skips codes already in the list. Writer only; it panics if the id exists.
func (p *Pools) Create(id uint64, dedupe bool) *List {
	s := &p.shards[shardOf(id)]
	old := s.Load()
	var n map[uint64]*List
	if old == nil {
		n = make(map[uint64]*List, 1)
	} else {
		if _, ok := (*old)[id]; ok {
			panic("BUG: pool: Create of existing list " + strconv.FormatUint(id, 10))
		}
		n = make(map[uint64]*List, len(*old)+1)
		for k, v := range *old {
			n[k] = v
		}
	}
	l := newList(dedupe)
	n[id] = l
	s.Store(&n)
	return l
}

// NewList returns an empty list registered nowhere: a writer may fill it
// before it registers it with Put.
func NewList(dedupe bool) *List { return newList(dedupe) }

// Put registers l under id in place of the list there, which must exist;
// readers switch to l at once. Writer only.
func (p *Pools) Put(id uint64, l *List) {
	s := &p.shards[shardOf(id)]
	old := s.Load()
	if old == nil || (*old)[id] == nil {
		panic("BUG: pool: Put of unknown list " + strconv.FormatUint(id, 10))
	}
	n := make(map[uint64]*List, len(*old))
	for k, v := range *old {
		n[k] = v
	}
	n[id] = l
	s.Store(&n)
}

// Delete removes the list with the given id (no-op when absent). Readers that
// already hold the *List may keep using it. Writer only.
func (p *Pools) Delete(id uint64) {
	s := &p.shards[shardOf(id)]
	old := s.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[id]; !ok {
		return
	}
	n := make(map[uint64]*List, len(*old)-1)
	for k, v := range *old {
		if k != id {
			n[k] = v
		}
	}
	s.Store(&n)
}

// IDs returns the ids of all lists, sorted ascending. Any goroutine; with a
// concurrent Create or Delete the result may or may not include that id.
func (p *Pools) IDs() []uint64 {
	var ids []uint64
	for i := range p.shards {
		if m := p.shards[i].Load(); m != nil {
			for id := range *m {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids
}
