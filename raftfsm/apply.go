package raftfsm

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/pool"
)

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: every entry of the batch goes into
// one Pebble batch together with the applied index, so after a crash the
// stored state and the stored index always agree. Entries at or below the
// stored index were applied before a restart and are skipped.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	if f.restoring.Load() {
		panic("cannot apply log entries: the state is a snapshot restore that did not finish; restart the node to restore the snapshot again")
	}
	out := make([]interface{}, len(logs))
	applied := f.applied.Load()
	a := applier{f: f, b: f.db.NewIndexedBatch()}
	defer a.b.Close()
	last := applied
	for i, l := range logs {
		if l.Index <= applied {
			out[i] = &Response{Err: errAlreadyApplied}
			continue
		}
		if l.Type == raft.LogCommand {
			a.entryAt = 0
			if !l.AppendedAt.IsZero() {
				a.entryAt = l.AppendedAt.UnixNano()
			}
			out[i] = a.apply(l.Data)
			f.bytesApplied.Add(uint64(len(l.Data)))
		}
		last = l.Index
	}
	if last == applied {
		return out
	}
	a.writeLists()
	a.writeSends()
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], last)
	if err := a.b.Set(keyApplied, idx[:], nil); err != nil {
		panic(fmt.Sprintf("BUG: cannot stage applied index: %v", err))
	}
	// No sync: the Raft log is the write-ahead log, and a snapshot flushes
	// Pebble before Raft may drop the entries this batch came from.
	if err := a.b.Commit(pebble.NoSync); err != nil {
		panic(fmt.Sprintf("cannot commit applied state at index %d: %v", last, err))
	}
	f.applied.Store(last)
	if a.answeredAhead != nil {
		close(a.answeredAhead)
	}
	if a.erased {
		f.notifyErasures() // now that the rewritten batches are in Pebble
	}
	return out
}

// EarlyAnswers is asked, for each Batch entry applied, for a function that
// answers the entry's commands; nil when nobody on this node waits for them.
type EarlyAnswers func(entry []byte) func(i int, r *Response)

// SetEarlyAnswers makes the state machine answer the commands of the batch
// entries e claims one by one, as soon as each is applied in memory,
// rather than all at once when the future of the entry resolves. The
// entry is committed by then (the state machine only applies committed
// entries) and its results are what a replay would compute, so an answer
// is as final as one given later. What the answered command wrote to
// Pebble is stored only when the whole entry is: until then readers of
// assignments wait for it (readStoredBatch).
//
// Why: the answers of one batch wake one handler each, and on a small
// machine their responses and the clients' next requests keep the cores
// busy for longer than the apply takes; begun during the apply, that work
// overlaps it instead of following it.
func (f *FSM) SetEarlyAnswers(e EarlyAnswers) { f.early.Store(&e) }

// errAlreadyApplied answers an entry replayed after a restart; nobody waits for it.
var errAlreadyApplied = errors.New("entry already applied")

// applier applies decoded commands to one Pebble batch and the in-memory state.
// It reads through the batch, so an entry sees what earlier entries of the
// same batch wrote.
type applier struct {
	f *FSM
	b *pebble.Batch
	// entryAt is the time the leader appended the entry being applied
	// (raft.Log.AppendedAt, replicated with the entry; 0 when unset), and
	// at the leader-stamped time of the command being applied
	// (Command.at: its own At, or entryAt for a command that carries none).
	// Both come from the log, so every replica records the same alerts.
	entryAt, at int64
	// entry is the encoded command being applied (a Batch's answers are
	// claimed by their entry).
	entry []byte
	// lists changed by this batch, written once at its end: a batch of
	// small allocations changes the same list once per command.
	lists []*ListMeta
	// sends changed by this batch, in the order they changed (writeSends).
	sends []*Send
	// answeredAhead is the FSM's channel of the same name when this apply
	// answered commands early; closed once the batch is committed.
	answeredAhead chan struct{}
	// erased: a command of this batch erased an assignment (erase.go).
	erased bool
}

func (a *applier) apply(data []byte) *Response {
	c, err := Decode(data)
	if err != nil {
		// A corrupt entry is a bug or a broken disk: continuing could diverge
		// from the other replicas.
		panic(fmt.Sprintf("BUG: cannot apply log entry: %v", err))
	}
	a.at, a.entry = c.at(a.entryAt), data
	v, err := c.apply(a)
	return &Response{Value: v, Err: err}
}

// earlyAnswers returns who answers the commands of a batch entry as they
// are applied, if anyone here waits for them. Readers learn that answers
// may precede the commit before the first is given.
func (a *applier) earlyAnswers(entry []byte) func(int, *Response) {
	e := a.f.early.Load()
	if e == nil {
		return nil
	}
	answer := (*e)(entry)
	if answer != nil && a.answeredAhead == nil {
		ch := make(chan struct{})
		a.answeredAhead = ch
		a.f.answeredAhead.Store(&ch)
	}
	return answer
}

func (a *applier) set(k, v []byte) {
	if err := a.b.Set(k, v, nil); err != nil {
		panic(fmt.Sprintf("cannot stage write: %v", err))
	}
}

func (a *applier) del(k []byte) {
	if err := a.b.Delete(k, nil); err != nil {
		panic(fmt.Sprintf("cannot stage delete: %v", err))
	}
}

func (a *applier) delPrefix(p []byte) {
	if err := a.b.DeleteRange(p, prefixEnd(p), nil); err != nil {
		panic(fmt.Sprintf("cannot stage range delete: %v", err))
	}
}

func (a *applier) get(k []byte) ([]byte, bool) {
	v, closer, err := a.b.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		panic(fmt.Sprintf("cannot read state: %v", err))
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true
}

func (a *applier) createTenant(c *CreateTenant) (*Tenant, error) {
	f := a.f
	if _, ok := f.Tenant(c.ID); ok {
		return nil, ErrExists
	}
	t := &Tenant{ID: c.ID, Name: c.Name, CreatedAt: c.At}
	a.set(tenantKey(t.ID), t.marshal())
	f.mu.Lock()
	f.tenants[t.ID] = t
	f.mu.Unlock()
	return t, nil
}

func (a *applier) createToken(c *CreateToken) (*Token, error) {
	f := a.f
	if c.Tenant != "" {
		if _, ok := f.Tenant(c.Tenant); !ok {
			return nil, ErrNotFound
		}
	}
	if _, ok := f.TokenByHash(c.Hash); ok {
		return nil, ErrExists
	}
	if _, ok := f.TokenByID(c.ID); ok {
		return nil, ErrExists
	}
	t := &Token{ID: c.ID, Tenant: c.Tenant, Role: c.Role, Name: c.Name, CreatedAt: c.At}
	a.set(tokenKey(c.Hash[:]), t.marshal())
	a.set(tokenIDKey(c.ID), c.Hash[:])
	f.mu.Lock()
	f.tokens[c.Hash] = t
	f.tokenIDs[c.ID] = c.Hash
	f.mu.Unlock()
	return t, nil
}

func (a *applier) revokeToken(c *RevokeToken) error {
	f := a.f
	f.mu.RLock()
	h, ok := f.tokenIDs[c.ID]
	f.mu.RUnlock()
	if !ok {
		return ErrNotFound
	}
	a.del(tokenKey(h[:]))
	a.del(tokenIDKey(c.ID))
	f.mu.Lock()
	delete(f.tokens, h)
	delete(f.tokenIDs, c.ID)
	f.mu.Unlock()
	return nil
}

// listOf returns the tenant's list; another tenant's list does not exist.
func (a *applier) listOf(tenant string, id uint64) (*ListMeta, error) {
	a.f.mu.RLock()
	l, ok := a.f.lists[id]
	a.f.mu.RUnlock()
	if !ok || l.Tenant != tenant {
		return nil, ErrNotFound
	}
	return l, nil
}

func (a *applier) putList(l *ListMeta) {
	if p := a.f.pools.Get(l.ID); p != nil {
		l.counts = countsOf(p, l.Released)
	}
	a.stageList(l)
	a.f.mu.Lock()
	old := a.f.lists[l.ID]
	a.f.lists[l.ID] = l
	a.f.mu.Unlock()
	a.checkLowStock(old, l)
}

// stageList records l as its list's meta to write at the end of the batch.
// Nothing reads list metas back from Pebble while applying (the published
// metas are in memory), so the last one written is all that is needed.
func (a *applier) stageList(l *ListMeta) {
	for i, p := range a.lists {
		if p.ID == l.ID {
			a.lists[i] = l
			return
		}
	}
	a.lists = append(a.lists, l)
}

// unstageList drops a list's staged meta (the list is deleted).
func (a *applier) unstageList(id uint64) {
	for i, p := range a.lists {
		if p.ID == id {
			a.lists = append(a.lists[:i], a.lists[i+1:]...)
			return
		}
	}
}

func (a *applier) writeLists() {
	for _, l := range a.lists {
		a.set(listKey(l.ID), l.marshal())
	}
	a.lists = a.lists[:0]
}

// writeSends writes the records of the sends the batch changed, each once
// and in key order. Nothing reads send records back from Pebble while
// applying (the published sends are in memory). Key order matters for
// speed: the memtable inserts a batch's keys in the order they were staged,
// and a key next to the previous one is found without a search from the
// top of its skiplist, so the batch's assignment keys and its new sends'
// keys (both ascending) go in one after the other.
func (a *applier) writeSends() {
	// Stable: versions of one send stay in the order they were published.
	slices.SortStableFunc(a.sends, func(x, y *Send) int { return cmp.Compare(x.Num, y.Num) })
	for i, s := range a.sends {
		if i+1 < len(a.sends) && a.sends[i+1].Num == s.Num {
			continue // a later version follows
		}
		a.set(sendKey(s.Num), s.marshal())
	}
	a.sends = a.sends[:0]
}

func (a *applier) createList(c *CreateList) (*ListMeta, error) {
	f := a.f
	if _, ok := f.Tenant(c.Tenant); !ok {
		return nil, ErrNotFound
	}
	f.mu.RLock()
	_, exists := f.lists[c.ID]
	f.mu.RUnlock()
	if exists {
		return nil, ErrExists
	}
	l := &ListMeta{ID: c.ID, Tenant: c.Tenant, Name: c.Name, Dedupe: c.Dedupe, Threshold: c.Threshold, CreatedAt: c.At,
		FallbackCode: c.FallbackCode, HasExpiry: c.HasExpiry, ExpiresAt: c.ExpiresAt, WarnDays: c.warnDays()}
	if !l.HasExpiry {
		l.ExpiresAt = 0
	}
	f.pools.Create(l.ID, l.Dedupe)
	a.putList(l)
	return l, nil
}

func (a *applier) updateList(c *UpdateList) error {
	old, err := a.listOf(c.Tenant, c.ID)
	if err != nil {
		return err
	}
	l := *old
	if c.SetName {
		l.Name = c.Name
	}
	if c.SetThreshold {
		l.Threshold = c.Threshold
	}
	if c.SetFallback {
		l.FallbackCode = c.FallbackCode
	}
	if c.SetExpiry {
		l.HasExpiry, l.ExpiresAt = c.HasExpiry, c.ExpiresAt
		if !l.HasExpiry {
			l.ExpiresAt = 0
		}
	}
	if c.SetWarnDays {
		l.WarnDays = c.WarnDays
	}
	if l.HasExpiry != old.HasExpiry || l.ExpiresAt != old.ExpiresAt || l.WarnDays != old.WarnDays {
		l.Warned = false // a new expiry (or lead) re-arms its warning
	}
	a.putList(&l)
	return nil
}

func (a *applier) deleteList(c *DeleteList) error {
	l, err := a.listOf(c.Tenant, c.ID)
	if err != nil {
		return err
	}
	// A list assigned to a message keeps its codes unless it has none left
	// to hand out; history keeps the codes already handed out either way.
	// Codes held by open sends keep the list too.
	if p := a.f.pools.Get(l.ID); l.Reserved > 0 || (p.Available() > 0 && len(a.f.MessagesOfList(c.Tenant, l.ID)) > 0) {
		return ErrListInUse
	}
	for n := uint32(0); n < l.Batches; n++ {
		v, ok := a.get(batchKey(l.ID, n))
		if !ok {
			if _, ok := a.get(copiesKey(l.ID, n)); ok {
				continue // a release's copies (deleted below)
			}
			panic(fmt.Sprintf("BUG: list %016x has no batch %d", l.ID, n))
		}
		var upload UploadID
		copy(upload[:], v)
		a.delPrefix(append([]byte{prefixStaged}, upload[:]...))
		// The record of an upload under an Idempotency-Key stays, so a
		// retry learns the list is gone instead of importing again.
		if u, ok := a.upload(upload); !ok || !u.keyed() {
			a.del(uploadKey(upload))
		}
	}
	// Messages that had the (empty) list have none now.
	for _, m := range a.f.MessagesOfList(c.Tenant, l.ID) {
		nm := *m
		nm.List = 0
		a.putMessage(&nm)
	}
	a.delPrefix(binary.BigEndian.AppendUint64([]byte{prefixBatch}, l.ID))
	a.delPrefix(binary.BigEndian.AppendUint64([]byte{prefixWithdraw}, l.ID))
	a.delPrefix(binary.BigEndian.AppendUint64([]byte{prefixCopies}, l.ID))
	a.unstageList(l.ID)
	a.del(listKey(l.ID))
	a.f.mu.Lock()
	delete(a.f.lists, l.ID)
	a.f.mu.Unlock()
	a.f.pools.Delete(l.ID)
	return nil
}

func (a *applier) upload(id UploadID) (*uploadRecord, bool) {
	v, ok := a.get(uploadKey(id))
	if !ok {
		return nil, false
	}
	u, err := unmarshalUpload(v)
	if err != nil {
		panic(fmt.Sprintf("cannot read upload record: %v", err))
	}
	return u, true
}

func (a *applier) importChunk(c *ImportChunk) error {
	u, ok := a.upload(c.Upload)
	switch {
	case !ok:
		u = &uploadRecord{Tenant: c.Tenant, At: c.At}
		a.set(uploadKey(c.Upload), u.marshal())
	case u.Tenant != c.Tenant:
		return ErrNotFound
	case u.Committed:
		return nil // a late duplicate of a chunk of a finished upload
	}
	a.set(stagedKey(c.Upload, c.Chunk), c.Codes)
	a.stageInPool(c, !ok)
	return nil
}

// bigImport is the size of an import after which the process returns its
// free memory to the system at once.
const bigImport = 1 << 20

func (a *applier) importCommit(c *ImportCommit) (ImportResult, error) {
	u, ok := a.upload(c.Upload)
	if ok && u.Tenant != c.Tenant {
		return ImportResult{}, ErrNotFound
	}
	if ok && u.Committed {
		// A retried commit gets the first answer, if it is the same request:
		// the first commit bound the key to its request digest (a legacy
		// record knows only its list). A retried create-and-import names a
		// new list id; the upload id alone says it is the same upload.
		if !u.Legacy && c.Request != u.Request {
			return ImportResult{}, ErrUploadReused
		}
		if c.Create == nil && u.List != c.List {
			return ImportResult{}, ErrUploadReused
		}
		// The first answer names a list that was deleted since: say so,
		// rather than answer a list no one can read.
		if u.keyed() || u.Legacy {
			if _, err := a.listOf(c.Tenant, u.List); err != nil {
				return ImportResult{}, ErrUploadListDeleted
			}
		}
		return u.Result, nil
	}
	// Count what was staged before changing anything: a commit is all or nothing.
	var chunks uint32
	var codes uint64
	err := a.f.eachStagedChunk(a.b, c.Upload, func(n uint32, b CodeBlock) error {
		if n != chunks {
			return ErrUploadIncomplete
		}
		chunks++
		codes += uint64(b.Count())
		return nil
	})
	if err == nil && chunks != c.Chunks {
		err = ErrUploadIncomplete
	}
	var l *ListMeta
	if err == nil {
		if c.Create != nil {
			l, err = a.createList(c.Create)
		} else {
			l, err = a.listOf(c.Tenant, c.List)
		}
	}
	var p *pool.List
	if err == nil {
		p = a.f.pools.Get(l.ID)
		if uint64(p.Len())+codes > pool.MaxCodes {
			err = ErrListFull
		}
	}
	if err != nil {
		a.dropUpload(c.Upload)
		return ImportResult{}, err
	}

	res := ImportResult{List: l.ID}
	if sp := a.takeStagedPool(c.Upload, chunks); sp != nil && p.Len() == 0 && p.Dedupe() {
		// The same codes in the same order into an empty list: the pool
		// the chunks built is what the adds below would build.
		a.f.pools.Put(l.ID, sp.list)
		p = sp.list
		res.Imported, res.Duplicates = sp.imported, sp.duplicates
	} else {
		a.addStaged(c.Upload, p, codes, &res)
	}
	a.f.stats.codesImported.Add(uint64(res.Imported))
	if res.Imported >= bigImport {
		// Growing the pool left its old arrays as garbage, as much as the
		// codes themselves; give it back now rather than carry it until the
		// heap doubles (DESIGN.md, "Measurements"). In the background: the
		// collection is no part of apply.
		go debug.FreeOSMemory()
	}
	nl := *l
	nl.Batches++
	// An upload that added nothing is not recorded as a batch: it leaves the list unchanged.
	if res.Imported > 0 {
		a.set(batchKey(l.ID, l.Batches), c.Upload[:])
		a.putList(&nl)
	} else {
		a.delPrefix(append([]byte{prefixStaged}, c.Upload[:]...))
	}
	avail := uint64(p.Available())
	if avail >= l.Reserved {
		res.Size = avail - l.Reserved
	}
	a.set(uploadKey(c.Upload), (&uploadRecord{Tenant: c.Tenant, Committed: true, List: l.ID, Result: res, At: c.At,
		Request: c.Request}).marshal())
	return res, nil
}

// addStaged adds the upload's staged codes (codes of them) to p in chunk
// order, counting them into res.
func (a *applier) addStaged(upload UploadID, p *pool.List, codes uint64, res *ImportResult) {
	// One rehash of the index up front instead of one at each doubling on
	// the way: the commit holds up every other write of the node.
	p.GrowIndex(int(codes))
	err := a.f.eachStagedChunk(a.b, upload, func(_ uint32, b CodeBlock) error {
		batch := a.f.stagedCodes[:0] // the codes of one chunk, valid while its callback runs
		b.Each(func(code []byte) { batch = append(batch, code) })
		p.AddMany(batch, func(_ int, _ uint32, added bool, err error) {
			if err != nil {
				panic(fmt.Sprintf("BUG: add after capacity check: %v", err))
			}
			if added {
				res.Imported++
			} else {
				res.Duplicates++
			}
		})
		clear(batch)
		a.f.stagedCodes = batch[:0]
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("cannot read staged chunks: %v", err))
	}
}

func (a *applier) importAbort(id UploadID) error {
	u, ok := a.upload(id)
	if !ok {
		return nil
	}
	if u.Committed {
		return ErrExists
	}
	a.dropUpload(id)
	return nil
}

func (a *applier) dropUpload(id UploadID) {
	delete(a.f.staged, id)
	a.delPrefix(append([]byte{prefixStaged}, id[:]...))
	a.del(uploadKey(id))
}

// WithdrawResult is the answer to a withdrawal (SPEC §2).
type WithdrawResult struct {
	Withdrawn, NotFound, AlreadyUsed uint64
}

func (a *applier) withdraw(c *Withdraw) (WithdrawResult, error) {
	l, err := a.listOf(c.Tenant, c.List)
	if err != nil {
		return WithdrawResult{}, err
	}
	p := a.f.pools.Get(l.ID)
	// First pass decides without changing anything: the request is all or nothing.
	var res WithdrawResult
	var take []uint32
	seen := map[uint32]bool{}
	c.Codes.Each(func(code []byte) {
		pos, st, ok := p.Lookup(code)
		switch {
		case !ok:
			res.NotFound++
		case st == pool.Assigned:
			res.AlreadyUsed++
		default:
			res.Withdrawn++
			if st == pool.Available && !seen[pos] {
				seen[pos] = true
				take = append(take, pos)
			}
		}
	})
	if uint64(p.Available())-uint64(len(take)) < l.Reserved {
		return WithdrawResult{}, ErrCodesReserved
	}
	for _, pos := range take {
		if !p.Withdraw(pos) {
			panic("BUG: position stopped being available during withdraw")
		}
		a.set(withdrawKey(l.ID, pos), nil)
	}
	if len(take) > 0 {
		nl := *l
		a.putList(&nl)
	}
	return res, nil
}
