package raftfsm

import (
	"bytes"
	"slices"

	"github.com/coupond/coupond/pool"
)

// allocScratch is the writer's reusable memory for allocations.
type allocScratch struct {
	seen    []int32 // open-addressing set of request indexes (+1), for repeats in one request
	recips  [][]byte
	rhashes []uint64 // per request index: the recipient's hash (history.recipientHash)
	hashes  []uint32 // per request index: the recipient's history hash
	first   []int32  // per request index: the index of its first occurrence
	touched uint64   // keeps history.touch from being optimised away
	fresh   []int    // request indexes that need a new code
	batches map[uint64]*assignBatch
	batch   assignBatch // the batch being written
	encoded []byte      // its encoding
}

func (a *applier) message(tenant, id string) (*Message, error) {
	m, ok := a.f.Message(tenant, id)
	if !ok {
		return nil, ErrNotFound
	}
	return m, nil
}

func (a *applier) putMessage(m *Message) {
	a.set(tenantScoped(prefixMessage, m.Tenant, m.ID), m.marshal())
	a.f.mu.Lock()
	a.f.messages[scopedKey(m.Tenant, m.ID)] = m
	a.f.mu.Unlock()
}

// putSend publishes s and stages its record, written at the end of the
// batch (writeSends).
func (a *applier) putSend(s *Send) {
	a.sends = append(a.sends, s)
	a.f.mu.Lock()
	defer a.f.mu.Unlock()
	if int(s.Num) <= a.f.sendKeys.len() {
		a.f.sends[a.f.sendKeys.at(int(s.Num)-1)] = s // a copy of a known send shares its strings
		return
	}
	if int(s.Num) != a.f.sendKeys.len()+1 {
		panic("BUG: send numbers out of order")
	}
	k := compactSend(s, a.f.tenants, a.f.messages)
	a.f.sendKeys.add(k)
	a.f.sends[k] = s
}

// UpsertResult says whether an upsert created the message.
type UpsertResult struct{ Created bool }

func (a *applier) upsertMessage(c *UpsertMessage) (UpsertResult, error) {
	if _, ok := a.f.Tenant(c.Tenant); !ok {
		return UpsertResult{}, ErrNotFound
	}
	old, exists := a.f.Message(c.Tenant, c.ID)
	m := &Message{Tenant: c.Tenant, ID: c.ID, Name: c.Name, Campaign: c.Campaign,
		CampaignType: c.CampaignType, Channel: c.Channel, DOI: c.DOI, Status: "draft"}
	if exists {
		m.Status, m.List = old.Status, old.List
	}
	if c.Status != "" {
		m.Status = c.Status
	}
	if m.List != 0 {
		// A message with a coupon list must stay eligible: unassign first.
		if why := Eligibility(m.CampaignType, m.Channel, m.DOI); why != "" {
			return UpsertResult{}, &EligibilityError{Reason: why}
		}
	}
	a.putMessage(m)
	return UpsertResult{Created: !exists}, nil
}

func (a *applier) assignList(c *AssignList) error {
	old, err := a.message(c.Tenant, c.Message)
	if err != nil {
		return err
	}
	if c.List != 0 {
		if _, err := a.listOf(c.Tenant, c.List); err != nil {
			return err
		}
		if why := Eligibility(old.CampaignType, old.Channel, old.DOI); why != "" {
			return &EligibilityError{Reason: why}
		}
	}
	m := *old
	m.List = c.List
	a.putMessage(&m)
	return nil
}

// sendFor finds the send of an allocation or hold, or prepares the one the
// request opens implicitly (not stored until the request succeeds).
func (a *applier) sendFor(tenant, id, message string) (s *Send, created bool, err error) {
	if old, ok := a.f.Send(tenant, id); ok {
		if message != "" && message != old.Message {
			return nil, false, ErrSendMismatch
		}
		cp := *old
		return &cp, false, nil
	}
	if message == "" {
		return nil, false, ErrMessageRequired
	}
	m, err := a.message(tenant, message)
	if err != nil {
		return nil, false, err
	}
	if m.List == 0 {
		return nil, false, ErrNoCouponList
	}
	a.f.mu.RLock()
	num := uint32(a.f.sendKeys.len() + 1)
	a.f.mu.RUnlock()
	return &Send{Tenant: tenant, ID: id, Num: num, Message: message, List: m.List}, true, nil
}

// listForSend returns the list a send draws from; a deleted list has nothing.
func (a *applier) listForSend(s *Send) (*ListMeta, *pool.List) {
	a.f.mu.RLock()
	l := a.f.lists[s.List]
	a.f.mu.RUnlock()
	if l == nil {
		return nil, nil
	}
	return l, a.f.pools.Get(l.ID)
}

// hold grows the send's hold by what need exceeds it, or refuses (the list
// expired at the command's time at, or has not enough codes). It
// returns a copy of the list's meta with the grown hold, not yet published:
// the caller publishes it once, with whatever else it changes.
func (a *applier) hold(s *Send, need uint64, at int64) (*ListMeta, error) {
	l, p := a.listForSend(s)
	if l == nil {
		return nil, &InsufficientError{Needed: need, Available: 0} // the list was deleted
	}
	if need > 0 && l.Expired(at) {
		return nil, ErrListExpired // not even from the send's hold
	}
	nl := *l
	if need > s.Reserved {
		avail := listAvailable(l, p)
		short := need - s.Reserved
		if short > avail {
			return nil, &InsufficientError{Needed: need, Available: s.Reserved + avail}
		}
		nl.Reserved += short
		s.Reserved += short
	}
	return &nl, nil
}

// OpenResult answers PUT /v1/sends/{id}.
type OpenResult struct {
	Send    *Send
	Created bool
}

func (a *applier) openSend(c *OpenSend) (OpenResult, error) {
	s, created, err := a.sendFor(c.Tenant, c.Send, c.Message)
	if err != nil {
		return OpenResult{}, err
	}
	if s.Closed {
		return OpenResult{}, ErrSendClosed
	}
	if created {
		s.CreatedAt = c.At
	}
	if c.SetOnShortage {
		s.OnShortage = c.OnShortage
	}
	if c.HasExpected {
		want := uint64(0)
		if c.Expected > s.Assigned {
			want = c.Expected - s.Assigned
		}
		if want > s.Reserved {
			nl, err := a.hold(s, want, c.At)
			if err != nil {
				return OpenResult{}, err
			}
			a.putList(nl)
		} else if want < s.Reserved {
			a.releaseHold(s, s.Reserved-want)
		}
	}
	a.putSend(s)
	return OpenResult{Send: s, Created: created}, nil
}

// releaseHold gives n of the send's hold back to its list.
func (a *applier) releaseHold(s *Send, n uint64) {
	if n > s.Reserved {
		panic("BUG: releasing more than the send holds")
	}
	s.Reserved -= n
	a.f.mu.RLock()
	l := a.f.lists[s.List]
	a.f.mu.RUnlock()
	if l == nil {
		return // the list was deleted (it had nothing left to hold)
	}
	nl := *l
	if nl.Reserved < n {
		panic("BUG: list holds less than its sends")
	}
	nl.Reserved -= n
	a.putList(&nl)
}

func (a *applier) reserve(c *Reserve) error {
	s, created, err := a.sendFor(c.Tenant, c.Send, c.Message)
	if err != nil {
		return err
	}
	if created {
		s.OnShortage = c.OnShortage
	}
	if c.Need == 0 {
		return nil
	}
	if s.Closed {
		return ErrSendClosed
	}
	if created {
		s.CreatedAt = c.At
	}
	// Under fallback the chunks give the fallback code to whom the hold
	// cannot cover.
	nl, err := a.hold(s, a.toDraw(s, c.Need, c.At), c.At)
	if err != nil {
		return err
	}
	a.putList(nl)
	a.putSend(s)
	return nil
}

func (a *applier) closeSend(c *CloseSend) (*Send, error) {
	old, ok := a.f.Send(c.Tenant, c.Send)
	if !ok {
		return nil, ErrNotFound
	}
	if old.Closed {
		return old, nil
	}
	s := *old
	a.releaseHold(&s, s.Reserved)
	s.Closed = true
	a.putSend(&s)
	return &s, nil
}

// AllocResult answers an allocation: one code per request recipient, in
// request order (a repeated recipient gets the same code), and the list's
// available count after it. Codes alias memory that is never rewritten.
type AllocResult struct {
	Codes     [][]byte
	Fallback  []bool // Fallback[i]: Codes[i] is the list's fallback code; nil when none is
	New       int
	Available uint64
}

func (a *applier) allocate(c *Allocate) (*AllocResult, error) {
	s, created, err := a.sendFor(c.Tenant, c.Send, c.Message)
	if err != nil {
		return nil, err
	}
	if created {
		s.OnShortage = c.OnShortage
	}
	sc := &a.f.scratch
	sc.recips = sc.recips[:0]
	c.Recipients.Each(func(r []byte) { sc.recips = append(sc.recips, r) })
	n := len(sc.recips)
	res := &AllocResult{Codes: make([][]byte, n)}

	// Which recipients need a new code: not repeated earlier in the request,
	// and without a code in this send (a send with no assignment has none).
	sc.rhashes = sc.rhashes[:0]
	for _, r := range sc.recips {
		sc.rhashes = append(sc.rhashes, a.f.hist.recipientHash(r))
	}
	a.markRepeats()
	th := a.f.hist.tenantHash(s.Tenant)
	sc.hashes = sc.hashes[:0]
	unique := uint64(0)
	for i, rh := range sc.rhashes {
		h := uint32(0) // a repeat within the request is never looked up
		if sc.first[i] == int32(i) {
			h = indexHash(th, rh)
			unique++
		}
		sc.hashes = append(sc.hashes, h)
	}
	sc.touched += a.f.hist.touch(sc.hashes)
	// A new assignment is indexed under the seq assign will give it (until
	// assign publishes its batch, lookups skip it as unknown). When the
	// request is sure to succeed, that happens as soon as its lookup misses,
	// while the slot is still in cache; otherwise only once the hold is
	// granted, so that a refused request indexes nothing.
	indexed := a.canAssignAll(s, unique, c.At)
	sc.fresh = sc.fresh[:0]
	for i := range sc.recips {
		if sc.first[i] != int32(i) {
			continue
		}
		if s.Assigned > 0 {
			if live, _ := a.liveAssignment(s, sc.recips[i], sc.hashes[i]); live != nil {
				res.Codes[i] = live.b.Codes[live.i]
				if live.b.Fallback {
					res.markFallback(i)
				}
				continue
			}
		}
		if indexed {
			a.f.hist.add(sc.hashes[i], a.f.hist.nextSeq+uint64(len(sc.fresh)))
		}
		sc.fresh = append(sc.fresh, i)
	}
	need := uint64(len(sc.fresh))
	if need > 0 {
		if s.Closed {
			return nil, ErrSendClosed
		}
		if a.f.hist.nextSeq+need > MaxAssignments {
			return nil, ErrAssignmentsFull
		}
		draw := a.toDraw(s, need, c.At) // drawn from the list; the rest get the fallback code
		nl, err := a.hold(s, draw, c.At)
		if err != nil {
			if indexed {
				panic("BUG: an allocation indexed ahead failed: " + err.Error())
			}
			return nil, err
		}
		if !indexed {
			for k, i := range sc.fresh {
				a.f.hist.add(sc.hashes[i], a.f.hist.nextSeq+uint64(k))
			}
		}
		if created {
			s.CreatedAt = c.At
		}
		a.assign(s, nl, c.At, res, int(draw))
	}
	for i := range res.Codes {
		if res.Codes[i] == nil {
			res.Codes[i] = res.Codes[sc.first[i]]
			if res.Fallback != nil && res.Fallback[sc.first[i]] {
				res.Fallback[i] = true
			}
		}
	}
	if l, p := a.listForSend(s); l != nil {
		res.Available = listAvailable(l, p)
	}
	if need > 0 || created {
		a.putSend(s)
	}
	if m, _ := a.f.Message(s.Tenant, s.Message); m != nil && m.Status != "sent" {
		nm := *m
		nm.Status = "sent"
		a.putMessage(&nm)
	}
	return res, nil
}

// canAssignAll reports whether n new assignments of send s would succeed
// at time at, whatever the send already holds or has.
func (a *applier) canAssignAll(s *Send, n uint64, at int64) bool {
	if s.Closed || a.f.hist.nextSeq+n > MaxAssignments {
		return false
	}
	l, p := a.listForSend(s)
	return l != nil && (a.fallsBack(s, l) || n <= a.drawable(s, l, p, at))
}

// drawable is how many codes send s can draw from list l at time at: its
// hold and what the list has beyond every hold; none once it expired.
func (a *applier) drawable(s *Send, l *ListMeta, p *pool.List, at int64) uint64 {
	if l.Expired(at) {
		return 0
	}
	return s.Reserved + listAvailable(l, p)
}

// toDraw is how many of need new codes send s draws from its list at time
// at: all of them, unless the send falls back, then what it can draw.
func (a *applier) toDraw(s *Send, need uint64, at int64) uint64 {
	if s.OnShortage != ShortageFallback {
		return need // a send under reject skips the list's lookup
	}
	if l, p := a.listForSend(s); a.fallsBack(s, l) {
		return min(need, a.drawable(s, l, p, at))
	}
	return need
}

// fallsBack reports whether send s gives list l's fallback code when it
// runs short (SPEC §4 "Shortage policy and fallback code").
func (a *applier) fallsBack(s *Send, l *ListMeta) bool {
	return s.OnShortage == ShortageFallback && l != nil && l.FallbackCode != ""
}

// markFallback records that request recipient i got the fallback code.
func (r *AllocResult) markFallback(i int) {
	if r.Fallback == nil {
		r.Fallback = make([]bool, len(r.Codes))
	}
	r.Fallback[i] = true
}

// maxBatchEntries bounds one stored batch: a history lookup reads one batch
// per candidate, so batches stay small (~10 KB) however big the request.
const maxBatchEntries = 256

// assign gives the send's new recipients their codes: the first draw from
// its hold (just grown to cover them, in l, the unpublished meta hold
// returned), the rest the list's fallback code. It writes them as batches
// of at most maxBatchEntries (allocate has indexed them, in this order),
// and publishes l once.
func (a *applier) assign(s *Send, l *ListMeta, at int64, res *AllocResult, draw int) {
	sc := &a.f.scratch
	p := a.f.pools.Get(l.ID)
	n := len(sc.fresh)
	for g := 0; g < draw; g += maxBatchEntries {
		a.assignGroup(s, l, p, at, res, sc.fresh[g:min(g+maxBatchEntries, draw)])
	}
	if draw < n {
		fallback := []byte(l.FallbackCode)
		for g := draw; g < n; g += maxBatchEntries {
			a.assignFallback(s, l, at, res, sc.fresh[g:min(g+maxBatchEntries, n)], fallback)
		}
		l.FallbackUsed += uint64(n - draw)
		a.f.stats.fallbacksGiven.Add(uint64(n - draw))
	}
	s.Reserved -= uint64(draw)
	s.Assigned += uint64(n)
	l.Reserved -= uint64(draw)
	l.Cursor = p.Cursor()
	l.Usage.add(DayOf(at), uint64(draw))
	a.putList(l)
	res.New = n
	a.f.stats.codesAllocated.Add(uint64(draw))
}

// assignFallback writes one batch of fallback assignments: no positions,
// every entry the list's fallback code.
func (a *applier) assignFallback(s *Send, l *ListMeta, at int64, res *AllocResult, fresh []int, code []byte) {
	sc := &a.f.scratch
	n := len(fresh)
	b := &sc.batch
	*b = assignBatch{Send: s.Num, List: l.ID, At: at, Runs: b.Runs[:0], Fallback: true,
		Recips: slices.Grow(b.Recips[:0], n)[:n], Codes: slices.Grow(b.Codes[:0], n)[:n]}
	for k, i := range fresh {
		b.Recips[k], b.Codes[k] = sc.recips[i], code
		res.Codes[i] = code
		res.markFallback(i)
	}
	no, first := a.f.hist.addBatch(s.Num, n)
	b.FirstSeq = first
	sc.encoded = b.marshal(sc.encoded[:0])
	a.set(assignKey(no), sc.encoded)
}

func (a *applier) assignGroup(s *Send, l *ListMeta, p *pool.List, at int64, res *AllocResult, fresh []int) {
	sc := &a.f.scratch
	n := len(fresh)
	// The batch and its encoding are scratch: the Pebble batch copies the value.
	b := &sc.batch
	*b = assignBatch{Send: s.Num, List: l.ID, At: at, Runs: b.Runs[:0],
		Recips: slices.Grow(b.Recips[:0], n)[:n], Codes: slices.Grow(b.Codes[:0], n)[:n]}
	k := 0
	p.Take(n, func(pos uint32, code []byte) {
		if last := len(b.Runs) - 1; last >= 0 && b.Runs[last].start+b.Runs[last].n == pos {
			b.Runs[last].n++
		} else {
			b.Runs = append(b.Runs, posRun{start: pos, n: 1})
		}
		i := fresh[k]
		b.Recips[k], b.Codes[k] = sc.recips[i], code
		res.Codes[i] = code
		k++
	})
	no, first := a.f.hist.addBatch(s.Num, n)
	b.FirstSeq = first
	sc.encoded = b.marshal(sc.encoded[:0])
	a.set(assignKey(no), sc.encoded)
	a.f.mu.Lock()
	logTake(a.f.takeLog, l.ID, takeEntry{start: b.Runs[0].start, batch: no})
	a.f.mu.Unlock()
}

// markRepeats fills scratch.first: for each request recipient, the index of
// its first occurrence in the request.
func (a *applier) markRepeats() {
	sc := &a.f.scratch
	n := len(sc.recips)
	sc.first = sc.first[:0]
	if n == 1 {
		sc.first = append(sc.first, 0)
		return
	}
	size := 16
	for size < 2*n {
		size *= 2
	}
	if cap(sc.seen) < size {
		sc.seen = make([]int32, size)
	}
	seen := sc.seen[:size]
	clear(seen)
	mask := uint64(size - 1)
	for i, r := range sc.recips {
		j := sc.rhashes[i] & mask
		for {
			e := seen[j]
			if e == 0 {
				seen[j] = int32(i + 1)
				sc.first = append(sc.first, int32(i))
				break
			}
			if bytes.Equal(sc.recips[e-1], r) {
				sc.first = append(sc.first, e-1)
				break
			}
			j = (j + 1) & mask
		}
	}
}

// cachedBatch reads a batch through the applier's Pebble batch, keeping a
// few decoded: a retried chunk looks up thousands of recipients in the same
// batch. The index holds only batches the writer stored, so any error is
// the store's.
func (a *applier) cachedBatch(no uint64) (*assignBatch, error) {
	sc := &a.f.scratch
	if b, ok := sc.batches[no]; ok {
		return b, nil
	}
	b, err := a.f.readBatch(a.b, no)
	if err != nil {
		panic("cannot read assignment batch: " + err.Error())
	}
	if sc.batches == nil || len(sc.batches) >= 16 {
		sc.batches = map[uint64]*assignBatch{}
	}
	sc.batches[no] = b
	return b, nil
}
