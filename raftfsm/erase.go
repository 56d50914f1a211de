package raftfsm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
)

// Erasure of a recipient (SPEC §4 "Erasure of a recipient"). Every stored
// assignment of (tenant, recipient) keeps its code, send, list and time,
// but its recipient becomes ErasedForm: "erased:" and the hex of the first
// 16 bytes of HMAC-SHA256(tenant key, recipient). The tenant key is made by
// the leader (crypto/rand) and carried in every erase command; the first
// erasure of a tenant stores it under h + tenant, later ones ignore theirs,
// so every replica keys the tenant alike. The key leaves the state machine
// only in snapshots: no answer, log line or metric holds it.
//
// An erased entry is marked in its batch (assignBatch.Erased) and is history
// only: no recipient lookup finds it, its erased form included, so the
// recipient's history is empty, a release of it finds nothing, and its next
// allocation is a new recipient. The index is left as it is on the node
// that applies the erasure (its slot hashes the plain recipient, which
// find no longer matches), and a rebuilt index leaves erased entries out;
// without the mark a rebuild would index them under their erased form, and
// a restarted node would find them where the others do not.

// EraseRecipient erases a recipient from every assignment of a tenant.
// Its answer is the number of assignments erased (int).
type EraseRecipient struct {
	Tenant    string
	Recipient []byte
	// Key is a fresh random key; the apply uses it only when the tenant
	// has none yet.
	Key [ErasureKeyLen]byte
	At  int64
}

// ErasureKeyLen is the size of a tenant's erasure key.
const ErasureKeyLen = 32

func (*EraseRecipient) Type() CmdType { return CmdEraseRecipient }
func (c *EraseRecipient) appendBody(b []byte) []byte {
	b = appendString(b, c.Tenant)
	b = appendBytes(b, c.Recipient)
	b = append(b, c.Key[:]...)
	return appendVarint(b, c.At)
}
func (c *EraseRecipient) decodeBody(d *decoder) {
	c.Tenant = d.string("Tenant")
	c.Recipient = d.bytes("Recipient")
	copy(c.Key[:], d.fixed("Key", ErasureKeyLen))
	c.At = d.varint("At")
	if d.err == nil && (len(c.Recipient) == 0 || len(c.Recipient) > MaxRecipientLen) {
		d.fail("Recipient", fmt.Sprintf("length %d", len(c.Recipient)))
	}
}
func (c *EraseRecipient) at(int64) int64                { return c.At }
func (c *EraseRecipient) apply(a *applier) (any, error) { return a.eraseRecipient(c) }

func erasureKey(tenant string) []byte { return append([]byte{prefixErasure}, tenant...) }

// erasedForm is what an erased recipient becomes.
func erasedForm(key *[ErasureKeyLen]byte, recipient []byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(recipient)
	sum := m.Sum(nil)
	return append([]byte("erased:"), hex.EncodeToString(sum[:16])...)
}

// ErasedForm is what recipient becomes in the tenant's assignments when it
// is erased; false while the tenant has erased nobody (it has no key yet).
func (f *FSM) ErasedForm(tenant string, recipient []byte) (string, bool) {
	f.mu.RLock()
	key := f.erasureKeys[tenant]
	f.mu.RUnlock()
	if key == nil {
		return "", false
	}
	return string(erasedForm(key, recipient)), true
}

func (a *applier) eraseRecipient(c *EraseRecipient) (int, error) {
	if _, ok := a.f.Tenant(c.Tenant); !ok {
		return 0, ErrNotFound
	}
	a.f.mu.RLock()
	key := a.f.erasureKeys[c.Tenant]
	a.f.mu.RUnlock()
	if key == nil {
		k := c.Key
		key = &k
		a.set(erasureKey(c.Tenant), append([]byte{recordVersion}, k[:]...))
		a.f.mu.Lock()
		a.f.erasureKeys[c.Tenant] = key
		a.f.mu.Unlock()
	}

	// The batches that hold the recipient in any send of the tenant
	// (released, fallback or not). The index's probe order differs from
	// node to node (its hash seed is the process's), so they are sorted.
	h := a.f.hist
	var nos []uint64
	h.find(h.hash32(c.Tenant, c.Recipient), c.Recipient, func(m batchMeta) bool {
		s := a.f.sendByNum(m.send)
		return s != nil && s.Tenant == c.Tenant
	}, a.cachedBatch, func(seq uint64, _ *assignBatch, _ int) bool {
		no, _, _ := h.batchOf(seq)
		nos = append(nos, no)
		return true
	})
	slices.Sort(nos)
	nos = slices.Compact(nos)

	erased := erasedForm(key, c.Recipient)
	n := 0
	for _, no := range nos {
		old, _ := a.cachedBatch(no)
		b := *old
		b.Recips = slices.Clone(old.Recips)
		b.Erased = slices.Clone(old.Erased)
		for i, r := range b.Recips {
			if !old.erased(i) && bytes.Equal(r, c.Recipient) {
				b.Recips[i] = erased
				b.Erased = append(b.Erased, uint32(i))
				n++
			}
		}
		slices.Sort(b.Erased)
		a.set(assignKey(no), b.marshal(nil))
		// The decoded batch cached for allocations holds the plain
		// recipient; the next read takes the rewritten one.
		delete(a.f.scratch.batches, no)
	}
	if n > 0 {
		a.erased = true
		a.f.stats.assignmentsErased.Add(uint64(n))
	}
	return n, nil
}

// notifyErasures wakes the reader of ErasuresApplied without ever blocking.
func (f *FSM) notifyErasures() {
	select {
	case f.erasuresApplied <- struct{}{}:
	default:
	}
}

// ErasuresApplied receives a value (coalesced) once an apply that erased
// an assignment is committed to Pebble, on every node, leader and
// followers alike, and after a restore of a state in which a tenant has
// erased someone (the old state it replaced may have held the plain
// recipient). The daemon then makes the plain bytes leave the disk.
func (f *FSM) ErasuresApplied() <-chan struct{} { return f.erasuresApplied }

func (s *state) loadErasureKey(k, v []byte) error {
	if len(k) < 2 || len(v) != 1+ErasureKeyLen || v[0] != recordVersion {
		return fmt.Errorf("erasure key of tenant %q: %w", k[1:], errCorrupt)
	}
	var key [ErasureKeyLen]byte
	copy(key[:], v[1:])
	s.erasureKeys[string(k[1:])] = &key
	return nil
}
