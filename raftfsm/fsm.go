// Package raftfsm is coupond's replicated state machine: the commands of the
// Raft log, their deterministic application to Pebble and the in-memory
// pools, and snapshots of the whole state.
package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/coupond/coupond/pool"
)

// Domain outcomes of Apply. They come back in the Response, never as a
// panic; InsufficientError and EligibilityError (sends.go) wrap the last
// two with their details.
var (
	ErrNotFound          = errors.New("not found")
	ErrExists            = errors.New("already exists")
	ErrCodesReserved     = errors.New("withdrawal would leave fewer codes than are reserved")
	ErrListFull          = errors.New("list would exceed its maximum number of codes")
	ErrUploadIncomplete  = errors.New("upload is missing staged chunks")
	ErrUploadReused      = errors.New("upload id already used for another request")
	ErrUploadListDeleted = errors.New("the list of this upload was deleted")
	ErrNoCouponList      = errors.New("message has no coupon list")
	ErrMessageRequired   = errors.New("message_id is required to open a send")
	ErrSendMismatch      = errors.New("message_id differs from the send's message")
	ErrSendClosed        = errors.New("send is closed")
	ErrListInUse         = errors.New("list is assigned to a message or held by a send and not empty")
	ErrAssignmentsFull   = errors.New("the node holds the most assignments it can index")
	ErrNotEligible       = errors.New("message is not eligible for a coupon list")
	errInsufficientCodes = errors.New("insufficient codes")
)

// Response is what Apply returns for every command: Value on success, Err
// for a refused command (a domain outcome). The caller checks the Raft
// future's error first, then Err.
type Response struct {
	Value any
	Err   error
}

// FSM owns the state. Apply runs on one goroutine (Raft's); readers may call
// the read methods at any time: they take mu only for map lookups, which the
// writer holds for map updates alone, never across a Pebble write.
type FSM struct {
	db    *pebble.DB
	pools *pool.Pools

	mu       sync.RWMutex
	tenants  map[string]*Tenant
	tokens   map[[32]byte]*Token
	tokenIDs map[string][32]byte
	lists    map[uint64]*ListMeta
	messages map[string]*Message            // by scopedKey(tenant, id)
	sends    map[string]*Send               // by scopedKey(tenant, id)
	sendKeys chunked[string]                // scopedKey of send number i+1
	takeLog  map[uint64]*chunked[takeEntry] // by list, in take order
	nodes    map[string]*NodeInfo
	// clusterKey signs calls the nodes forward to each other; nil until the
	// first leader sets it.
	clusterKey *[ClusterKeyLen]byte
	// alerts is the low-stock outbox in id order; the slice is replaced,
	// never changed, once published. alertSeq is the last id recorded.
	alerts        []*Alert
	alertSeq      uint64
	alertsChanged chan struct{} // capacity 1: a coalesced wake-up for the delivery loop
	// erasureKeys holds each tenant's erasure key once it erased someone
	// (erase.go); a key never changes once set.
	erasureKeys     map[string]*[ErasureKeyLen]byte
	erasuresApplied chan struct{} // capacity 1: a coalesced wake-up for the daemon

	hist *history // assignments by recipient; lock-free for readers
	// released maps the seq of each released assignment to its time; it is
	// replaced by a restore, changed by the writer under mu.
	released map[uint64]int64
	opts     Options

	// Writer-only scratch of allocation, reused across applies.
	scratch allocScratch
	// Writer only: the pools uploads for new lists build as their chunks
	// come (staged.go), and the codes of one chunk while it is added.
	staged      map[UploadID]*stagedPool
	stagedCodes [][]byte

	// early, once set, says for each batch entry whether this node waits
	// for its commands (SetEarlyAnswers).
	early atomic.Pointer[EarlyAnswers]
	// answeredAhead is open while an apply that answered commands before
	// committing its Pebble batch runs, closed once it committed; the last
	// one stays in place, closed. Readers that find an assignment indexed
	// but not stored wait on it (readStoredBatch).
	answeredAhead atomic.Pointer[chan struct{}]

	applied atomic.Uint64 // index of the last entry applied (durable or about to be)
	// restoring is set while a snapshot restore rewrites Pebble, and stays
	// set when one failed or a crash cut one off (keyRestoring): the state
	// is then partial, and only another restore may follow.
	restoring atomic.Bool
	// bytesApplied counts command bytes applied since the process started,
	// for the daemon's byte-based snapshot trigger.
	bytesApplied atomic.Uint64
	stats        applyStats // totals for metrics (stats.go)
}

// Options tune an FSM; the zero value suits tests and small nodes.
type Options struct {
	// HistoryReserve sizes the assignment index for this many assignments
	// from the start (8 bytes a slot, at most 3/4 full). The index doubles
	// as it fills, rehashing everything in one apply; a new node that
	// starts small would rehash on the way through its first big send,
	// stalling every write each time, so a daemon reserves room for its
	// first sends.
	HistoryReserve int
}

// New opens the state kept in db and rebuilds the in-memory pools from it.
func New(db *pebble.DB) (*FSM, error) { return Open(db, Options{}) }

// Open is New with options.
func Open(db *pebble.DB, o Options) (*FSM, error) {
	f := &FSM{db: db, opts: o, alertsChanged: make(chan struct{}, 1), erasuresApplied: make(chan struct{}, 1)}
	if err := f.load(); err != nil {
		return nil, err
	}
	return f, nil
}

// AppliedIndex is the Raft index of the last applied entry.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// RestoreUnfinished reports whether the state is a snapshot restore that a
// crash or an error cut off. Such an FSM shows an empty state at index 0
// and refuses to apply entries: the caller must restore a snapshot first.
func (f *FSM) RestoreUnfinished() bool { return f.restoring.Load() }

// BytesApplied is the size of the commands applied since the process started.
func (f *FSM) BytesApplied() uint64 { return f.bytesApplied.Load() }

// Pools exposes the code pools to readers.
func (f *FSM) Pools() *pool.Pools { return f.pools }

type reader interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func isNotFound(err error) bool { return errors.Is(err, pebble.ErrNotFound) }

// eachStagedChunk calls fn for the chunks of an upload in chunk order.
func (f *FSM) eachStagedChunk(r reader, upload UploadID, fn func(n uint32, codes CodeBlock) error) error {
	prefix := append([]byte{prefixStaged}, upload[:]...)
	return scanReader(r, prefix, func(k, v []byte) error {
		return fn(binary.BigEndian.Uint32(k[len(prefix):]), CodeBlock(v))
	})
}

func (f *FSM) scan(prefix []byte, fn func(k, v []byte) error) error {
	return scanReader(f.db, prefix, fn)
}

func scanReader(r reader, prefix []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// PendingUploads lists the uploads that staged chunks but were neither
// committed nor aborted, oldest first by their leader's time.
func (f *FSM) PendingUploads() ([]UploadID, error) {
	type pending struct {
		id UploadID
		at int64
	}
	var ps []pending
	err := f.scan([]byte{prefixUpload}, func(k, v []byte) error {
		u, err := unmarshalUpload(v)
		if err != nil {
			return err
		}
		if !u.Committed {
			var id UploadID
			copy(id[:], k[1:])
			ps = append(ps, pending{id, u.At})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list pending uploads: %w", err)
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].at < ps[j].at })
	out := make([]UploadID, len(ps))
	for i, p := range ps {
		out[i] = p.id
	}
	return out, nil
}

// UploadBound reports whether the upload is committed and bound to a
// request digest (made under an Idempotency-Key): a retry then only needs
// its digest, not its codes staged again.
func (f *FSM) UploadBound(id UploadID) bool {
	v, closer, err := f.db.Get(uploadKey(id))
	if err != nil {
		return false // not found, or unreadable: the caller stages as usual
	}
	defer closer.Close()
	u, err := unmarshalUpload(v)
	return err == nil && u.Committed && u.keyed()
}

// TokenByHash finds the token whose secret hashes to h.
func (f *FSM) TokenByHash(h [32]byte) (*Token, bool) {
	f.mu.RLock()
	t, ok := f.tokens[h]
	f.mu.RUnlock()
	return t, ok
}

// TokenByID finds a token by its public id.
func (f *FSM) TokenByID(id string) (*Token, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	h, ok := f.tokenIDs[id]
	if !ok {
		return nil, false
	}
	return f.tokens[h], true
}

// Tenant returns one tenant.
func (f *FSM) Tenant(id string) (*Tenant, bool) {
	f.mu.RLock()
	t, ok := f.tenants[id]
	f.mu.RUnlock()
	return t, ok
}

// Tenants returns every tenant, sorted by id.
func (f *FSM) Tenants() []*Tenant {
	f.mu.RLock()
	out := make([]*Tenant, 0, len(f.tenants))
	for _, t := range f.tenants {
		out = append(out, t)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// ListView is a list with its counts, as readers see it.
type ListView struct {
	ListMeta
	Added, Available, Reserved, Used, Withdrawn uint64
}

// LowStock reports available below a non-zero threshold.
func (v *ListView) LowStock() bool { return v.Threshold > 0 && v.Available < v.Threshold }

// List returns a tenant's list; another tenant's list is not found.
func (f *FSM) List(tenant string, id uint64) (*ListView, bool) {
	f.mu.RLock()
	l, ok := f.lists[id]
	f.mu.RUnlock()
	if !ok || l.Tenant != tenant {
		return nil, false
	}
	return view(l), true
}

// Lists returns a tenant's lists, oldest first.
func (f *FSM) Lists(tenant string) []*ListView {
	f.mu.RLock()
	var metas []*ListMeta
	for _, l := range f.lists {
		if l.Tenant == tenant {
			metas = append(metas, l)
		}
	}
	f.mu.RUnlock()
	sortOldestFirst(metas)
	out := make([]*ListView, len(metas))
	for i, l := range metas {
		out[i] = view(l)
	}
	return out
}

// view reads only the meta's published counts: one consistent moment.
func view(l *ListMeta) *ListView {
	c := l.counts
	v := &ListView{ListMeta: *l, Reserved: l.Reserved, Added: c.added, Used: c.used, Withdrawn: c.withdrawn}
	if c.available >= l.Reserved {
		v.Available = c.available - l.Reserved
	}
	return v
}

// CodeInfo is the state of one code of a list.
type CodeInfo struct {
	Code       string
	State      pool.State
	Assignment *Assignment // for an assigned code
}

// CodeState looks a code up in a tenant's list.
func (f *FSM) CodeState(tenant string, list uint64, code []byte) (CodeInfo, error) {
	f.mu.RLock()
	l, ok := f.lists[list]
	pools := f.pools
	f.mu.RUnlock()
	if !ok || l.Tenant != tenant {
		return CodeInfo{}, ErrNotFound
	}
	p := pools.Get(list)
	if p == nil {
		return CodeInfo{}, ErrNotFound
	}
	pos, st, found := p.Lookup(code)
	if !found {
		return CodeInfo{}, ErrNotFound
	}
	info := CodeInfo{Code: string(code), State: st}
	if st == pool.Assigned {
		info.Assignment, _ = f.CodeAssignment(list, pos)
	}
	return info, nil
}

// sortOldestFirst orders lists by creation, then id: the order in which
// lists are shown and reported.
func sortOldestFirst(metas []*ListMeta) {
	sort.Slice(metas, func(i, j int) bool {
		if metas[i].CreatedAt != metas[j].CreatedAt {
			return metas[i].CreatedAt < metas[j].CreatedAt
		}
		return metas[i].ID < metas[j].ID
	})
}
