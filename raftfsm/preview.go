package raftfsm

import "fmt"

// Reads for the preview of `$code` (SPEC §4). They take nothing and write
// nothing: a preview never changes a count.

// NextCode returns the code a tenant's list hands out next (the first
// Available position from its cursor), whichever send draws it: a hold is
// a count, not particular codes. ok is false when the list has no code
// available. ErrNotFound for a list the tenant does not have.
func (f *FSM) NextCode(tenant string, list uint64) (code string, ok bool, err error) {
	f.mu.RLock()
	l, found := f.lists[list]
	pools := f.pools
	f.mu.RUnlock()
	if !found || l.Tenant != tenant {
		return "", false, ErrNotFound
	}
	p := pools.Get(list)
	if p == nil {
		return "", false, ErrNotFound
	}
	_, c, ok := p.Peek()
	return string(c), ok, nil
}

// LiveAssignment returns the assignment a recipient holds now in a
// tenant's send: not released (after a release the recipient has none
// until it is allocated again). ok is false when it has none; ErrNotFound
// for a send the tenant does not have.
func (f *FSM) LiveAssignment(tenant, send string, recipient []byte) (a Assignment, ok bool, err error) {
	s, found := f.Send(tenant, send)
	if !found {
		return Assignment{}, false, ErrNotFound
	}
	hist := f.history()
	err = hist.find(hist.hash32(tenant, recipient), recipient, func(m batchMeta) bool { return m.send == s.Num },
		f.readStoredBatch, func(seq uint64, b *assignBatch, i int) bool {
			if _, released := f.releasedAt(seq); released {
				return true
			}
			a = Assignment{Recipient: string(recipient), Code: string(b.Codes[i]), List: b.List, Message: s.Message,
				Send: s.ID, At: b.At, Position: b.positionOf(i), Fallback: b.Fallback}
			ok = true
			return false
		})
	if err != nil {
		return Assignment{}, false, fmt.Errorf("cannot read history: %w", err)
	}
	return a, ok, nil
}
