package raftfsm

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/coupond/coupond/pool"
)

// state is what load reads from Pebble before it swaps it in.
type state struct {
	applied    uint64
	tenants    map[string]*Tenant
	tokens     map[[32]byte]*Token
	tokenIDs   map[string][32]byte
	lists      map[uint64]*ListMeta
	messages   map[string]*Message
	sends      map[string]*Send
	sendKeys   chunked[string]
	takeLog    map[uint64]*chunked[takeEntry]
	hist       *history
	nodes      map[string]*NodeInfo
	clusterKey *[ClusterKeyLen]byte
	alerts     []*Alert
	alertSeq   uint64
	released   map[uint64]int64
	pools      *pool.Pools

	erasureKeys map[string]*[ErasureKeyLen]byte
}

func newState(historyReserve int) *state {
	return &state{
		tenants: map[string]*Tenant{}, tokens: map[[32]byte]*Token{}, tokenIDs: map[string][32]byte{},
		lists: map[uint64]*ListMeta{}, messages: map[string]*Message{}, sends: map[string]*Send{},
		takeLog: map[uint64]*chunked[takeEntry]{}, hist: newHistory(historyReserve),
		nodes: map[string]*NodeInfo{}, pools: pool.New(), released: map[uint64]int64{},
		erasureKeys: map[string]*[ErasureKeyLen]byte{},
	}
}

// loaders read the stored records, one key prefix (or meta key) each, in
// this order: a loader may rely on the ones above it (a send shares its
// tenant's and message's strings, an assignment batch needs its send, an
// alert is checked against the alert sequence). Pools are rebuilt after.
var loaders = []struct {
	prefix []byte
	load   func(s *state, k, v []byte) error
}{
	{keyApplied, (*state).loadApplied},
	{[]byte{prefixTenant}, (*state).loadTenant},
	{[]byte{prefixToken}, (*state).loadToken},
	{[]byte{prefixList}, (*state).loadList},
	{[]byte{prefixMessage}, (*state).loadMessage},
	{[]byte{prefixSend}, (*state).loadSend},
	{[]byte{prefixAssign}, (*state).loadBatch},
	{[]byte{prefixNode}, (*state).loadNode},
	{keyClusterKey, (*state).loadClusterKey},
	{keyAlertSeq, (*state).loadAlertSeq},
	{[]byte{prefixAlert}, (*state).loadAlert},
	{[]byte{prefixReleased}, (*state).loadReleased},
	{[]byte{prefixErasure}, (*state).loadErasureKey},
}

// load reads everything from Pebble into a fresh state, rebuilds the pools,
// and swaps it in under the readers' lock.
func (f *FSM) load() error {
	s := newState(f.opts.HistoryReserve)
	if _, closer, err := f.db.Get(keyRestoring); err == nil {
		// What is stored is part of a snapshot: nothing of it is shown.
		closer.Close()
		f.restoring.Store(true)
		f.install(s)
		return nil
	} else if !isNotFound(err) {
		return fmt.Errorf("cannot read restore marker: %w", err)
	}
	for _, l := range loaders {
		if err := f.scan(l.prefix, func(k, v []byte) error { return l.load(s, k, v) }); err != nil {
			return fmt.Errorf("cannot load state: %w", err)
		}
	}
	ids := make([]uint64, 0, len(s.lists))
	for id := range s.lists {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := f.rebuildPool(s.pools, s.lists[id]); err != nil {
			return fmt.Errorf("cannot rebuild list %016x: %w", id, err)
		}
	}
	f.install(s)
	if len(s.alerts) > 0 {
		f.notifyAlerts()
	}
	return nil
}

// install makes s the state readers see and the writer changes.
func (f *FSM) install(s *state) {
	f.mu.Lock()
	f.tenants, f.tokens, f.tokenIDs, f.lists, f.pools = s.tenants, s.tokens, s.tokenIDs, s.lists, s.pools
	f.messages, f.sends, f.sendKeys, f.takeLog, f.hist = s.messages, s.sends, s.sendKeys, s.takeLog, s.hist
	f.nodes, f.clusterKey = s.nodes, s.clusterKey
	f.alerts, f.alertSeq = s.alerts, s.alertSeq
	f.released = s.released
	f.erasureKeys = s.erasureKeys
	f.scratch = allocScratch{} // decoded batches of the old state must not answer for the new
	f.staged = nil             // staged pools of uploads of the old state, too
	f.mu.Unlock()
	f.applied.Store(s.applied)
}

func (s *state) loadApplied(_, v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("applied index of %d bytes: %w", len(v), errCorrupt)
	}
	s.applied = binary.BigEndian.Uint64(v)
	return nil
}

func (s *state) loadTenant(_, v []byte) error {
	t, err := unmarshalTenant(v)
	if err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	s.tenants[t.ID] = t
	return nil
}

func (s *state) loadToken(k, v []byte) error {
	t, err := unmarshalToken(v)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	var h [32]byte
	copy(h[:], k[1:])
	s.tokens[h] = t
	s.tokenIDs[t.ID] = h
	return nil
}

func (s *state) loadList(_, v []byte) error {
	l, err := unmarshalList(v)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	s.lists[l.ID] = l
	return nil
}

func (s *state) loadMessage(_, v []byte) error {
	m, err := unmarshalMessage(v)
	if err != nil {
		return fmt.Errorf("message: %w", err)
	}
	s.messages[scopedKey(m.Tenant, m.ID)] = m
	return nil
}

func (s *state) loadSend(k, v []byte) error {
	sd, err := unmarshalSend(v)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if len(k) != 5 || binary.BigEndian.Uint32(k[1:]) != sd.Num {
		return fmt.Errorf("send %q stored under another number: %w", sd.ID, errCorrupt)
	}
	key := compactSend(sd, s.tenants, s.messages)
	s.sends[key] = sd
	for s.sendKeys.len() < int(sd.Num) {
		s.sendKeys.add("")
	}
	s.sendKeys.set(int(sd.Num)-1, key)
	return nil
}

func (s *state) loadBatch(k, v []byte) error {
	b, err := unmarshalBatch(v)
	if err != nil {
		return fmt.Errorf("assignment batch: %w", err)
	}
	if b.Send == 0 || int(b.Send) > s.sendKeys.len() || s.sendKeys.at(int(b.Send)-1) == "" {
		return fmt.Errorf("batch of unknown send %d: %w", b.Send, errCorrupt)
	}
	sd := s.sends[s.sendKeys.at(int(b.Send)-1)]
	no, first := s.hist.addBatch(b.Send, len(b.Recips))
	if no != binary.BigEndian.Uint64(k[1:]) || first != b.FirstSeq {
		return fmt.Errorf("batch %d out of sequence: %w", no, errCorrupt)
	}
	erased := b.Erased
	for i, r := range b.Recips {
		if len(erased) > 0 && erased[0] == uint32(i) {
			// An erased entry is found by no recipient, its erased form
			// included: a node that applied the erasure indexes it
			// under the plain recipient, which it no longer matches.
			erased = erased[1:]
			continue
		}
		s.hist.add(s.hist.hash32(sd.Tenant, r), first+uint64(i))
	}
	if len(b.Runs) > 0 {
		logTake(s.takeLog, b.List, takeEntry{start: b.Runs[0].start, batch: no})
	}
	return nil
}

// rebuildPool adds a list's codes again in commit order; de-duplication
// decides the same way it did when the imports were applied.
func (f *FSM) rebuildPool(pools *pool.Pools, l *ListMeta) error {
	p := pools.Create(l.ID, l.Dedupe)
	for n := uint32(0); n < l.Batches; n++ {
		v, closer, err := f.db.Get(batchKey(l.ID, n))
		if isNotFound(err) {
			// Not an import: the copies a release put back.
			if err := f.readdCopies(p, l.ID, n); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot read batch %d: %w", n, err)
		}
		var upload UploadID
		copy(upload[:], v)
		closer.Close()
		if err := f.eachStagedChunk(f.db, upload, func(_ uint32, codes CodeBlock) error {
			var addErr error
			codes.Each(func(code []byte) {
				if _, _, err := p.Add(code); err != nil && addErr == nil {
					addErr = err
				}
			})
			return addErr
		}); err != nil {
			return err
		}
	}
	wp := binary.BigEndian.AppendUint64([]byte{prefixWithdraw}, l.ID)
	err := f.scan(wp, func(k, _ []byte) error {
		pos := binary.BigEndian.Uint32(k[len(wp):])
		if !p.Withdraw(pos) {
			return fmt.Errorf("withdrawn position %d is not available: %w", pos, errCorrupt)
		}
		return nil
	})
	if err != nil {
		return err
	}
	p.SetCursor(l.Cursor)
	l.counts = countsOf(p, l.Released)
	return nil
}
