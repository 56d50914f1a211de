package raftfsm

import (
	"encoding/binary"
	"fmt"

	"github.com/coupond/coupond/pool"
)

// Releases (SPEC §4 "Release of undelivered codes"). A released
// assignment stays in history, marked under r + its seq with the time; the
// recipient is then new to its send, and a later allocation gives it a code
// again. The code goes back to its list as a copy at the end of the pool
// (pool.List.Readd): it is handed out after every code waiting already, in
// the order of the releases. Each release command that returns codes is
// one batch of its list (ListMeta.Batches), stored under c + list + batch
// number as the copied positions, so a rebuild makes the same copies in the
// same order among the imports.

// ReleaseResult answers a release.
type ReleaseResult struct {
	Released, NotAssigned, AlreadyReleased uint64
}

func releasedKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixReleased}, seq)
}

func copiesKey(list uint64, n uint32) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixCopies}, list)
	return binary.BigEndian.AppendUint32(k, n)
}

// releasedAt is when assignment seq was released; false while it is live.
// Any goroutine.
func (f *FSM) releasedAt(seq uint64) (int64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	at, ok := f.released[seq]
	return at, ok
}

func (a *applier) release(c *Release) (ReleaseResult, error) {
	old, ok := a.f.Send(c.Tenant, c.Send)
	if !ok {
		return ReleaseResult{}, ErrNotFound
	}
	s := *old
	l, p := a.listForSend(&s)
	var nl *ListMeta
	if l != nil {
		cp := *l
		nl = &cp
	}
	var res ReleaseResult
	var copied []uint32 // positions whose codes go back, in release order
	seen := make(map[string]bool)
	th := a.f.hist.tenantHash(s.Tenant)
	c.Recipients.Each(func(r []byte) {
		if seen[string(r)] {
			return // a recipient repeated in the request counts once
		}
		seen[string(r)] = true
		live, earlier := a.liveAssignment(&s, r, indexHash(th, a.f.hist.recipientHash(r)))
		if live == nil {
			if earlier {
				res.AlreadyReleased++
			} else {
				res.NotAssigned++
			}
			return
		}
		a.set(releasedKey(live.seq), appendVarint([]byte{recordVersion}, c.At))
		a.f.mu.Lock()
		a.f.released[live.seq] = c.At
		a.f.mu.Unlock()
		s.Assigned--
		res.Released++
		switch {
		case nl == nil: // the list was deleted: its codes have nowhere to go
		case live.b.Fallback:
			nl.FallbackUsed--
		default:
			copied = append(copied, live.b.positionOf(live.i))
		}
	})
	if res.Released == 0 {
		return res, nil
	}
	if len(copied) > 0 {
		a.readd(nl, p, copied)
	}
	if nl != nil {
		a.putList(nl)
	}
	a.putSend(&s)
	a.f.stats.codesReleased.Add(uint64(len(copied)))
	return res, nil
}

// readd puts the codes at positions back at the end of list l's pool as one
// batch of the list.
func (a *applier) readd(l *ListMeta, p *pool.List, positions []uint32) {
	for _, pos := range positions {
		if _, err := p.Readd(pos); err != nil {
			// Only a list at its most codes refuses; the state is ahead
			// of what one node can hold, and going on would diverge.
			panic(fmt.Sprintf("cannot put a released code back into list %016x: %v", l.ID, err))
		}
	}
	a.set(copiesKey(l.ID, l.Batches), appendPositions([]byte{recordVersion}, positions))
	l.Batches++
	l.Released += uint64(len(positions))
}

// appendPositions writes positions as a count and deltas from the previous
// one (zig-zag: a release's order is its request's, not the pool's).
func appendPositions(b []byte, positions []uint32) []byte {
	b = binary.AppendUvarint(b, uint64(len(positions)))
	prev := int64(0)
	for _, pos := range positions {
		b = binary.AppendVarint(b, int64(pos)-prev)
		prev = int64(pos)
	}
	return b
}

// readdCopies replays the copies of batch n of a list while its pool is
// rebuilt.
func (f *FSM) readdCopies(p *pool.List, list uint64, n uint32) error {
	v, closer, err := f.db.Get(copiesKey(list, n))
	if err != nil {
		return fmt.Errorf("list %016x has neither an import nor copies as batch %d: %w", list, n, err)
	}
	defer closer.Close()
	d := recordDecoder(v)
	count := d.count("Positions", uint64(len(v)))
	prev := int64(0)
	for range count {
		pos := prev + d.varint("Positions")
		if d.err != nil {
			break
		}
		if pos < 0 || pos > int64(^uint32(0)) {
			return fmt.Errorf("copies of batch %d: position %d: %w", n, pos, errCorrupt)
		}
		if _, err := p.Readd(uint32(pos)); err != nil {
			return fmt.Errorf("copies of batch %d: %w", n, err)
		}
		prev = pos
	}
	return d.done()
}

func (s *state) loadReleased(k, v []byte) error {
	if len(k) != 9 {
		return fmt.Errorf("released mark of %d bytes: %w", len(k), errCorrupt)
	}
	d := recordDecoder(v)
	at := d.varint("At")
	if err := d.done(); err != nil {
		return fmt.Errorf("released mark: %w", err)
	}
	s.released[binary.BigEndian.Uint64(k[1:])] = at
	return nil
}

// found is one assignment the history found: its seq and its place in its batch.
type found struct {
	seq uint64
	b   *assignBatch
	i   int
}

// liveAssignment finds r's assignment in send s that is not released, and
// says whether r had one that was (earlier). Writer only.
func (a *applier) liveAssignment(s *Send, r []byte, hash uint32) (live *found, earlier bool) {
	a.f.hist.find(hash, r, func(m batchMeta) bool { return m.send == s.Num }, a.cachedBatch,
		func(seq uint64, b *assignBatch, i int) bool {
			if _, ok := a.f.released[seq]; ok {
				earlier = true
				return true
			}
			live = &found{seq: seq, b: b, i: i}
			return false
		})
	return live, earlier
}
