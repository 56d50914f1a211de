package raftfsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"sort"
)

// Digest is a hash of the logical state: tenants, tokens, lists with their
// metadata, every code of every list in position order with its state,
// messages, sends, assignments, the cluster key, the low-stock outbox and
// the tenants' erasure keys.
// The node directory is left out: a node that restarts on another HTTP
// port updates its entry, and the digest compares ledgers across restarts too.
// Two replicas (or a node before and after a restart) with equal state have
// equal digests; the applied index is left out on purpose.
func (f *FSM) Digest() string {
	h := sha256.New()
	var b []byte
	for _, t := range f.Tenants() {
		h.Write(t.marshal())
	}
	f.mu.RLock()
	ids := make([]string, 0, len(f.tokenIDs))
	for id := range f.tokenIDs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		hash := f.tokenIDs[id]
		h.Write(hash[:])
		h.Write(f.tokens[hash].marshal())
	}
	lists := make([]*ListMeta, 0, len(f.lists))
	for _, l := range f.lists {
		lists = append(lists, l)
	}
	pools := f.pools
	f.mu.RUnlock()
	sort.Slice(lists, func(i, j int) bool { return lists[i].ID < lists[j].ID })
	for _, l := range lists {
		h.Write(l.marshal())
		p := pools.Get(l.ID)
		for pos := uint32(0); pos < p.Len(); pos++ {
			b = binary.AppendUvarint(b[:0], uint64(pos))
			b = append(b, byte(p.StateOf(pos)))
			b = append(b, p.Code(pos)...)
			h.Write(b)
		}
	}
	if key, ok := f.ClusterKey(); ok {
		h.Write(key[:])
	}
	if seq := f.LastAlertID(); seq > 0 {
		h.Write(binary.BigEndian.AppendUint64(b[:0], seq))
	}
	// Messages, sends and assignment batches are hashed as stored: their
	// bytes are deterministic.
	// So are the low-stock outbox and the last alert id.
	// The tenants' erasure keys decide what erased recipients become.
	for _, p := range []byte{prefixMessage, prefixSend, prefixAssign, prefixAlert, prefixReleased, prefixErasure} {
		f.scan([]byte{p}, func(k, v []byte) error {
			h.Write(k)
			h.Write(v)
			return nil
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}
