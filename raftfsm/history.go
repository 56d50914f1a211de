package raftfsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"slices"
	"sort"
	"sync/atomic"
)

// MaxAssignments bounds the assignments one state machine keeps: the index
// stores a 32-bit sequence number per assignment.
const MaxAssignments = 1<<32 - 2

// history indexes every assignment by (tenant, recipient). It is the
// idempotency check of allocation (a recipient's code in a send) and the
// recipient's mailing history. Assignments are numbered in apply order
// (seq); each Allocate that assigns new codes writes one batch holding its
// recipients and codes under one Pebble key, so the index keeps only
// (hash, seq) per assignment: 8 bytes per slot.
//
// One writer (apply), lock-free readers: slots are read and written with
// atomics, a grown table is published with one pointer store, and batch
// metadata is append-only behind an atomic slice header.
type history struct {
	seed    maphash.Seed
	tab     atomic.Pointer[histTable]
	entries uint64 // writer only

	batches atomic.Pointer[chunked[batchMeta]] // readers' view of wb
	wb      chunked[batchMeta]                 // the writer's list
	nextSeq uint64                             // writer only
}

// batchMeta locates the assignments of one batch; immutable once published.
type batchMeta struct {
	firstSeq uint64
	send     uint32 // send number
	n        uint32
}

type histTable struct {
	slots []uint64 // hash32<<32 | (seq+1); 0 is empty
	shift uint     // position = hash32 >> shift
}

// newHistory makes an index with room for reserve assignments before it
// first grows (and at least 1024 slots).
func newHistory(reserve int) *history {
	h := &history{seed: maphash.MakeSeed()}
	bits := uint(10)
	for (uint64(reserve)+1)*4 > uint64(1)<<bits*3 && bits < 31 {
		bits++
	}
	h.tab.Store(&histTable{slots: make([]uint64, 1<<bits), shift: 32 - bits})
	h.batches.Store(&chunked[batchMeta]{})
	return h
}

// hash32 is the recipient's hash within a tenant.
func (h *history) hash32(tenant string, r []byte) uint32 {
	return indexHash(h.tenantHash(tenant), h.recipientHash(r))
}

// The index hash is made of a tenant's hash and a recipient's, so that
// allocation hashes each recipient once: the same hash finds the repeats
// within a request (its low bits) and places it in the index (its high).
func (h *history) tenantHash(tenant string) uint64 { return maphash.String(h.seed, tenant) }
func (h *history) recipientHash(r []byte) uint64   { return maphash.Bytes(h.seed, r) }
func indexHash(tenantHash, recipientHash uint64) uint32 {
	return uint32((tenantHash ^ recipientHash) >> 32)
}

// candidates calls fn with the seq of every assignment whose recipient hash
// is h, until fn returns false. Any goroutine.
func (h *history) candidates(hash uint32, fn func(seq uint64) bool) {
	t := h.tab.Load()
	mask := uint64(len(t.slots) - 1)
	for i := uint64(hash>>t.shift) & mask; ; i = (i + 1) & mask {
		s := atomic.LoadUint64(&t.slots[i])
		if s == 0 {
			return
		}
		if uint32(s>>32) == hash && !fn(uint64(uint32(s))-1) {
			return
		}
	}
}

// find calls fn for every assignment of recipient r that the index holds
// under hash (hash32 of r's tenant and r), in probe order, until fn returns
// false: the one lookup of assignments by recipient, for allocation's
// idempotency check, the assignment check and a recipient's history. For
// each candidate, keep first decides from its batch's metadata whether to
// read it at all; read fetches the batch, and a batch it does not find is
// skipped (an apply indexed it and has not stored it yet). A candidate
// counts only once the stored batch confirms it, so a hash collision costs
// a read, never a wrong answer. An error of read other than not found ends
// the lookup and is returned. Any goroutine, with a read that suits it.
func (h *history) find(hash uint32, r []byte, keep func(batchMeta) bool,
	read func(no uint64) (*assignBatch, error), fn func(seq uint64, b *assignBatch, i int) bool) error {
	var err error
	h.candidates(hash, func(seq uint64) bool {
		no, meta, ok := h.batchOf(seq)
		if !ok || !keep(meta) {
			return true
		}
		var b *assignBatch
		if b, err = read(no); err != nil {
			if isNotFound(err) {
				err = nil
				return true
			}
			return false
		}
		i, ok := b.entry(seq, meta.send)
		if !ok || b.erased(i) || !bytes.Equal(b.Recips[i], r) {
			return true
		}
		return fn(seq, b, i)
	})
	return err
}

// entry returns entry seq of b, or false when b is not the batch the index
// meant (a restore replaced the stored state under a reader).
func (b *assignBatch) entry(seq uint64, send uint32) (int, bool) {
	if b.Send != send || seq < b.FirstSeq || seq-b.FirstSeq >= uint64(len(b.Recips)) {
		return 0, false
	}
	return int(seq - b.FirstSeq), true
}

// touch loads the home slot of every hash, one independent load each, so
// the processor overlaps the cache misses that the probes one by one would
// take in turn; the probes and inserts that follow then hit the cache.
func (h *history) touch(hashes []uint32) uint64 {
	t := h.tab.Load()
	mask := uint64(len(t.slots) - 1)
	var sum uint64
	for _, hash := range hashes {
		sum += atomic.LoadUint64(&t.slots[uint64(hash>>t.shift)&mask])
	}
	return sum
}

// add indexes seq under hash. Writer only.
func (h *history) add(hash uint32, seq uint64) {
	t := h.tab.Load()
	if (h.entries+1)*4 > uint64(len(t.slots))*3 {
		t = h.grow(t)
	}
	insertSlot(t, uint64(hash)<<32|(seq+1))
	h.entries++
}

func insertSlot(t *histTable, s uint64) {
	mask := uint64(len(t.slots) - 1)
	for i := (s >> 32 >> t.shift) & mask; ; i = (i + 1) & mask {
		if atomic.LoadUint64(&t.slots[i]) == 0 {
			atomic.StoreUint64(&t.slots[i], s)
			return
		}
	}
}

func (h *history) grow(old *histTable) *histTable {
	t := &histTable{slots: make([]uint64, len(old.slots)*2), shift: old.shift - 1}
	for _, s := range old.slots {
		if s != 0 {
			insertSlot(t, s)
		}
	}
	h.tab.Store(t)
	return t
}

// addBatch records a batch of n assignments of a send and returns its
// number and first seq. Writer only.
func (h *history) addBatch(send uint32, n int) (no uint64, firstSeq uint64) {
	no, firstSeq = uint64(h.wb.len()), h.nextSeq
	h.wb.add(batchMeta{firstSeq: firstSeq, send: send, n: uint32(n)})
	h.nextSeq += uint64(n)
	wb := h.wb
	h.batches.Store(&wb)
	return no, firstSeq
}

// batchOf finds the batch holding seq. Any goroutine.
func (h *history) batchOf(seq uint64) (no uint64, meta batchMeta, ok bool) {
	bs := h.batches.Load()
	i := sort.Search(bs.len(), func(i int) bool { return bs.at(i).firstSeq > seq }) - 1
	if i < 0 {
		return 0, batchMeta{}, false
	}
	if m := bs.at(i); seq < m.firstSeq+uint64(m.n) {
		return uint64(i), m, true
	}
	return 0, batchMeta{}, false
}

// assignBatch is the stored form of one batch: who got which code, in
// request order, with the list positions the codes came from.
type assignBatch struct {
	Send     uint32
	List     uint64
	At       int64
	FirstSeq uint64
	Runs     []posRun // the positions taken, in order; none in a fallback batch
	Recips   [][]byte // aliases the stored value
	Codes    [][]byte // aliases the stored value
	// Fallback: every entry got the list's fallback code, drawn from no
	// position. Stored as record version 2, so other batches keep their bytes.
	Fallback bool
	// Erased: the entries, ascending, whose recipient was erased (erase.go):
	// they are history only, never found by a recipient lookup, and a
	// rebuilt index leaves them out. Stored as record version 3 (4 for a
	// fallback batch), so batches without erasures keep their bytes.
	Erased []uint32
}

const (
	fallbackBatchVersion = 2
	// erasedBatchVersion is added to a batch's version (1 or 2) when it
	// has erased entries: their indexes follow its pairs.
	erasedBatchVersion = 2
)

// posRun is n consecutive list positions from start.
type posRun struct{ start, n uint32 }

func (b *assignBatch) marshal(dst []byte) []byte {
	v := byte(recordVersion)
	if b.Fallback {
		v = fallbackBatchVersion
	}
	if len(b.Erased) > 0 {
		v += erasedBatchVersion
	}
	dst = append(dst, v)
	dst = binary.AppendUvarint(dst, uint64(b.Send))
	dst = binary.AppendUvarint(dst, b.List)
	dst = binary.AppendVarint(dst, b.At)
	dst = binary.AppendUvarint(dst, b.FirstSeq)
	dst = binary.AppendUvarint(dst, uint64(len(b.Recips)))
	dst = binary.AppendUvarint(dst, uint64(len(b.Runs)))
	for _, r := range b.Runs {
		dst = binary.AppendUvarint(dst, uint64(r.start))
		dst = binary.AppendUvarint(dst, uint64(r.n))
	}
	for i, r := range b.Recips {
		dst = appendBytes(dst, r)
		dst = append(dst, byte(len(b.Codes[i])))
		dst = append(dst, b.Codes[i]...)
	}
	if len(b.Erased) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(b.Erased)))
		prev := uint32(0)
		for k, i := range b.Erased {
			if k > 0 {
				i -= prev + 1 // strictly ascending: gaps, one encoding per set
			}
			dst = binary.AppendUvarint(dst, uint64(i))
			prev = b.Erased[k]
		}
	}
	return dst
}

func unmarshalBatch(v []byte) (*assignBatch, error) {
	if len(v) == 0 || v[0] < recordVersion || v[0] > fallbackBatchVersion+erasedBatchVersion {
		return nil, fmt.Errorf("assignment batch of unknown version: %w", errCorrupt)
	}
	d := &decoder{b: v[1:], version: v[0]}
	erased := v[0] > fallbackBatchVersion
	fallback := v[0] == fallbackBatchVersion || v[0] == fallbackBatchVersion+erasedBatchVersion
	b := &assignBatch{Fallback: fallback, Send: d.uint32("Send"), List: d.uvarint("List"), At: d.varint("At"), FirstSeq: d.uvarint("FirstSeq")}
	n := d.uvarint("Recips")
	runs := d.uvarint("Runs")
	if d.err == nil && (n > uint64(len(v)) || runs > uint64(len(v))) {
		d.fail("Recips", "more entries than bytes")
	}
	if d.err == nil && b.Fallback && runs != 0 {
		d.fail("Runs", "positions in a fallback batch")
	}
	if d.err != nil {
		return nil, d.err
	}
	b.Runs = make([]posRun, runs)
	for i := range b.Runs {
		b.Runs[i] = posRun{d.uint32("Runs"), d.uint32("Runs")}
	}
	b.Recips = make([][]byte, n)
	b.Codes = make([][]byte, n)
	for i := range b.Recips {
		b.Recips[i] = d.bytes("Recips")
		b.Codes[i] = d.fixed("Codes", int(d.byte("Codes")))
	}
	if erased {
		k := d.count("Erased", n)
		if d.err == nil && k == 0 {
			d.fail("Erased", "none in an erased batch")
		}
		next := uint64(0) // the least index the next one may be
		for range k {
			i := next + d.uvarint("Erased")
			if d.err != nil {
				break
			}
			if i >= n {
				d.fail("Erased", "index past the entries")
				break
			}
			b.Erased = append(b.Erased, uint32(i))
			next = i + 1
		}
	}
	return b, d.done()
}

// erased reports whether entry i's recipient was erased.
func (b *assignBatch) erased(i int) bool {
	_, found := slices.BinarySearch(b.Erased, uint32(i))
	return found
}

// positionOf returns the list position of entry i.
func (b *assignBatch) positionOf(i int) uint32 {
	if b.Fallback {
		return 0
	}
	for _, r := range b.Runs {
		if uint32(i) < r.n {
			return r.start + uint32(i)
		}
		i -= int(r.n)
	}
	panic("BUG: batch entry past its runs")
}

// entryAt returns the entry holding list position pos, or -1.
func (b *assignBatch) entryAt(pos uint32) int {
	i := 0
	for _, r := range b.Runs {
		if pos >= r.start && pos < r.start+r.n {
			return i + int(pos-r.start)
		}
		i += int(r.n)
	}
	return -1
}

func assignKey(no uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 9), prefixAssign), no)
}
