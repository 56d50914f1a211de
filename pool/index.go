package pool

import (
	"bytes"
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// The code index: open addressing, power-of-two size, linear probing.
//
// slots[i] holds position+1 of the first occurrence of a code (0 = empty).
// A parallel tag array holds one byte per slot: 0x80 (occupied) | the top 7
// bits of the hash. Tags are packed eight to a uint64 word so that one atomic
// load yields eight tags and the probe can test them all at once (SWAR).
//
// Publication: the writer stores the slot with a plain store and then
// publishes the tag with an atomic store of its word. A reader reads a slot
// only after an atomic load of its word showed the tag occupied, so the slot
// write happens before the read. Slots and tags are never cleared or moved in
// a published table. Growth builds a new table from the arena (plain stores,
// not yet visible) and publishes it with one atomic pointer store.
type table struct {
	tags  []uint64
	slots []uint32
	mask  uint64 // len(slots)-1
	wmask uint64 // len(tags)-1
}

const (
	minTable = 16 // slots; at least 8 (one tag word)
	// The table grows when it would exceed loadNum/loadDen full.
	loadNum = 4
	loadDen = 5

	hiBits  = 0x8080808080808080
	lo7Bits = 0x7f7f7f7f7f7f7f7f
	byteOne = 0x0101010101010101
)

func newTable(n int) *table {
	return &table{
		tags:  make([]uint64, n/8),
		slots: make([]uint32, n),
		mask:  uint64(n - 1),
		wmask: uint64(n/8 - 1),
	}
}

func (t *table) bytes() int { return len(t.slots)*4 + len(t.tags)*8 }

func tagOf(h uint64) uint64 { return 0x80 | h>>57 }

// zeroBytes returns the high bit of every byte of x that is zero (exact, no
// false positives).
func zeroBytes(x uint64) uint64 {
	return ^(((x & lo7Bits) + lo7Bits) | x | lo7Bits)
}

// probe looks for code (hash h) in t. It returns the position of its first
// occurrence and found=true, or the slot where it would be inserted and
// found=false. lay is the layout to read codes from; nil means load the
// current one at each comparison (readers: a position seen in the index may
// be newer than any layout loaded before the probe).
func (l *List) probe(t *table, h uint64, code []byte, lay *layout) (slot uint64, pos uint32, found bool) {
	tag := tagOf(h) * byteOne
	i := h & t.mask
	wi := i >> 3
	start := uint64(hiBits) << ((i & 7) * 8)
	for {
		w := atomic.LoadUint64(&t.tags[wi])
		empty := ^w & hiBits & start
		match := zeroBytes(w^tag) & start
		if empty != 0 {
			// The code, if present, lies before the first empty slot.
			match &= empty&-empty - 1
		}
		for match != 0 {
			s := wi<<3 | uint64(bits.TrailingZeros64(match)>>3)
			p := t.slots[s] - 1
			ly := lay
			if ly == nil {
				ly = l.lay.Load()
			}
			if bytes.Equal(codeAt(ly, p), code) {
				return s, p, true
			}
			match &= match - 1
		}
		if empty != 0 {
			return wi<<3 | uint64(bits.TrailingZeros64(empty)>>3), 0, false
		}
		wi = (wi + 1) & t.wmask
		start = hiBits
	}
}

// emptySlot returns the first empty slot in h's probe sequence. Only for a
// table not yet published or for the writer.
func (t *table) emptySlot(h uint64) uint64 {
	i := h & t.mask
	wi := i >> 3
	start := uint64(hiBits) << ((i & 7) * 8)
	for {
		if empty := ^t.tags[wi] & hiBits & start; empty != 0 {
			return wi<<3 | uint64(bits.TrailingZeros64(empty)>>3)
		}
		wi = (wi + 1) & t.wmask
		start = hiBits
	}
}

// set fills slot s (empty) with pos for hash h using plain stores. Only for a
// table that is not published yet.
func (t *table) set(s, h uint64, pos uint32) {
	t.slots[s] = pos + 1
	t.tags[s>>3] |= tagOf(h) << ((s & 7) * 8)
}

// insert fills slot s (empty) of a published table: the slot first, then the
// tag word with an atomic store. Writer only.
func (t *table) insert(s, h uint64, pos uint32) {
	if t.slots[s] != 0 {
		panic("BUG: pool: insert into an occupied slot")
	}
	t.slots[s] = pos + 1
	wp := &t.tags[s>>3]
	atomic.StoreUint64(wp, *wp|tagOf(h)<<((s&7)*8))
}

// growIndex replaces the index by one twice the size. Writer only.
func (l *List) growIndex() *table {
	return l.rebuildIndex(2 * len(l.w.idx.slots))
}

// GrowIndex makes room in the index for n more distinct codes, rebuilding
// it once to the size that n further Adds would have grown it to step by
// step: a big import then rehashes its list once instead of at each
// doubling. It changes no outcome of any call (the index only decides
// equal or not). Writer only.
func (l *List) GrowIndex(n int) {
	w := &l.w
	want := (w.entries + uint64(n)) * loadDen
	size := len(w.idx.slots)
	for want > uint64(size)*loadNum {
		size *= 2
	}
	if size > len(w.idx.slots) {
		l.rebuildIndex(size)
	}
}

// rebuildIndex replaces the index by one of size slots (a power of two,
// larger than the current one), rebuilt from the codes of positions
// [0, w.n) in order (first occurrences only). Writer only.
//
// The rebuild works in batches: hash a batch of codes (sequential arena
// reads), then load the tag word and home slot of every hash in the batch
// (independent loads, so their cache and TLB misses overlap), then insert.
func (l *List) rebuildIndex(size int) *table {
	w := &l.w
	old := w.idx
	nt := newTable(size)
	lay := w.lay
	const batch = 32
	var hs [batch]uint64
	var ps [batch]uint32
	var n uint64
	for p := uint32(0); p < w.n; {
		k := 0
		for ; k < batch && p < w.n; p++ {
			if w.groups && !l.isHead(p) {
				continue
			}
			hs[k] = maphash.Bytes(l.seed, codeAt(lay, p))
			ps[k] = p
			k++
		}
		var touch uint64
		for j := range k {
			i := hs[j] & nt.mask
			touch += nt.tags[i>>3] + uint64(nt.slots[i])
		}
		w.touch += touch
		for j := range k {
			nt.set(nt.emptySlot(hs[j]), hs[j], ps[j])
		}
		n += uint64(k)
	}
	if n != w.entries {
		panic("BUG: pool: index rebuild found a different number of codes")
	}
	l.idx.Store(nt)
	w.idx = nt
	l.mem.Add(int64(nt.bytes() - old.bytes()))
	return nt
}

// dupTable maps the head position of a group of duplicates (lists without
// dedupe) to its group id. Open addressing over uint64 entries
// (head+1)<<32 | gid, 0 = empty; each entry is one atomic word, so readers
// need no ordering beyond loading it. Grows at half full.
type dupTable struct {
	e     []uint64
	mask  uint64
	shift uint
	n     uint64
}

func newDupTable(bitsN uint) *dupTable {
	return &dupTable{e: make([]uint64, 1<<bitsN), mask: 1<<bitsN - 1, shift: 64 - bitsN}
}

func (d *dupTable) home(head uint32) uint64 {
	return (uint64(head) * 0x9E3779B97F4A7C15) >> d.shift
}

func (d *dupTable) get(head uint32) (uint32, bool) {
	k := uint64(head) + 1
	for i := d.home(head); ; i = (i + 1) & d.mask {
		e := atomic.LoadUint64(&d.e[i])
		if e == 0 {
			return 0, false
		}
		if e>>32 == k {
			return uint32(e), true
		}
	}
}

// put adds head -> gid; atomic says whether the table is published.
func (d *dupTable) put(head, gid uint32, atomicStore bool) {
	e := (uint64(head)+1)<<32 | uint64(gid)
	for i := d.home(head); ; i = (i + 1) & d.mask {
		if d.e[i] == 0 {
			if atomicStore {
				atomic.StoreUint64(&d.e[i], e)
			} else {
				d.e[i] = e
			}
			d.n++
			return
		}
		if d.e[i]>>32 == uint64(head)+1 {
			panic("BUG: pool: duplicate group head")
		}
	}
}

// dupPut records a new group. Writer only.
func (l *List) dupPut(head, gid uint32) {
	w := &l.w
	d := w.dup
	if d == nil {
		d = newDupTable(4)
		l.mem.Add(int64(8 * len(d.e)))
		w.dup = d
		l.dup.Store(d)
	}
	if 2*(d.n+1) > uint64(len(d.e)) {
		nd := newDupTable(64 - d.shift + 1)
		for _, e := range d.e {
			if e != 0 {
				nd.put(uint32(e>>32-1), uint32(e), false)
			}
		}
		l.mem.Add(int64(8 * (len(nd.e) - len(d.e))))
		w.dup = nd
		l.dup.Store(nd)
		d = nd
	}
	d.put(head, gid, true)
}

// groupOf returns the group id of head. Any goroutine.
func (l *List) groupOf(head uint32) (uint32, bool) {
	d := l.dup.Load()
	if d == nil {
		return 0, false
	}
	return d.get(head)
}
