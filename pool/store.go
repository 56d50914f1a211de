package pool

import (
	"math"
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Storage of code bytes and per-position data.
//
// Code bytes live in slabs. A code is stored as one length byte followed by
// its bytes and never straddles two slabs. Slab k covers the virtual byte
// range [k<<slabShift, k<<slabShift + len(slab)); the first slabs of a list
// are small and double up to maxSlab, every later slab is maxSlab bytes.
//
// Per-position data lives in position blocks of posBlockSize positions. A
// block holds, for each of its positions, the uint32 distance from the block's
// base (the virtual address of its first code) to the position's code, plus a
// lazily allocated withdrawn bitmap and a lazily allocated link array (used
// only by lists without dedupe that hold duplicates). Block 0 starts small and
// doubles (by copying) up to posBlockSize; later blocks are allocated at full
// size, so no large array is ever copied.
const (
	slabShift = 19
	maxSlab   = 1 << slabShift // 512 KiB
	slabMask  = maxSlab - 1
	minSlab   = 1 << 10

	posShift     = 14
	posBlockSize = 1 << posShift // 16384 positions: 64 KiB of offsets
	posMask      = posBlockSize - 1
	minBlock0    = 64
	bitWords     = posBlockSize / 64

	grpShift     = 10
	grpBlockSize = 1 << grpShift
	grpMask      = grpBlockSize - 1
)

// layout is an immutable snapshot of the directories of a list. The writer
// publishes a new layout (through List.lay) whenever a directory changes;
// the slices only ever grow, and an element below len is never modified, so a
// reader may keep using any layout it loaded. Appending into spare capacity
// of a shared backing array is safe: older layouts never look past their len.
type layout struct {
	slabs  [][]byte
	blocks []*posBlock
	groups []*grpBlock
}

// posBlock holds the data of posBlockSize consecutive positions.
type posBlock struct {
	// base is the virtual address of the block's first code.
	base uint64
	// off[i] is the virtual address of position i's code minus base. Written
	// once, before the position is published through List.la.
	off []uint32
	// bits is the withdrawn bitmap, nil until the first Withdraw in the block.
	bits atomic.Pointer[bitBlock]
	// links is the duplicate chain (see group.go), nil until needed.
	links atomic.Pointer[linkBlock]
}

type bitBlock [bitWords]atomic.Uint64

type linkBlock [posBlockSize]atomic.Uint32

var (
	posBlockHdr = int(unsafe.Sizeof(posBlock{}))
	bitBlockLen = int(unsafe.Sizeof(bitBlock{}))
	linkBlockLn = int(unsafe.Sizeof(linkBlock{}))
	grpBlockLen = int(unsafe.Sizeof(grpBlock{}))
	listHdr     = int(unsafe.Sizeof(List{}))
)

// codeAt returns the code at pos, which must be published in lay. The slice
// has its capacity clipped so that an append by the caller cannot write into
// the slab.
func codeAt(lay *layout, pos uint32) []byte {
	b := lay.blocks[pos>>posShift]
	v := b.base + uint64(b.off[pos&posMask])
	s := lay.slabs[v>>slabShift]
	o := v & slabMask
	e := o + 1 + uint64(s[o])
	return s[o+1 : e : e]
}

// withdrawnIn reports whether pos's withdrawn bit is set.
func withdrawnIn(lay *layout, pos uint32) bool {
	bb := lay.blocks[pos>>posShift].bits.Load()
	return bb != nil && bb[(pos&posMask)>>6].Load()&(1<<(pos&63)) != 0
}

// appendCode stores code at position w.n (not yet published) in the arena and
// the offsets. It may publish a new layout.
func (l *List) appendCode(code []byte) {
	w := &l.w
	need := 1 + len(code)
	if w.fill+need > len(w.slab) {
		l.newSlab()
	}
	v := w.slabNo<<slabShift | uint64(w.fill)
	w.slab[w.fill] = byte(len(code))
	copy(w.slab[w.fill+1:], code)
	w.fill += need

	pos := w.n
	bi := int(pos >> posShift)
	var b *posBlock
	if bi < len(w.lay.blocks) {
		b = w.lay.blocks[bi]
		if int(pos&posMask) >= len(b.off) {
			b = l.growBlock0()
		}
	} else {
		b = l.newBlock(v)
	}
	d := v - b.base
	if d > math.MaxUint32 {
		panic("BUG: pool: offset delta overflows uint32")
	}
	b.off[pos&posMask] = uint32(d)
}

func (l *List) newSlab() {
	w := &l.w
	size := minSlab
	if w.slab != nil {
		w.slabNo++
		size = min(2*len(w.slab), maxSlab)
	}
	w.slab = make([]byte, size)
	w.fill = 0
	old := w.lay
	if uint64(len(old.slabs)) != w.slabNo {
		panic("BUG: pool: slab numbering out of step")
	}
	l.mem.Add(int64(size))
	l.publish(&layout{slabs: append(old.slabs, w.slab), blocks: old.blocks, groups: old.groups})
}

// newBlock appends a position block whose first code is at virtual address
// base.
func (l *List) newBlock(base uint64) *posBlock {
	old := l.w.lay
	n := posBlockSize
	if len(old.blocks) == 0 {
		n = minBlock0
	} else if len(old.blocks[len(old.blocks)-1].off) != posBlockSize {
		panic("BUG: pool: new block after a partial block")
	}
	b := &posBlock{base: base, off: make([]uint32, n)}
	l.mem.Add(int64(4*n + posBlockHdr))
	l.publish(&layout{slabs: old.slabs, blocks: append(old.blocks, b), groups: old.groups})
	return b
}

// growBlock0 doubles block 0, the only block that is ever smaller than
// posBlockSize. Readers holding the old block keep reading valid entries.
func (l *List) growBlock0() *posBlock {
	old := l.w.lay
	if len(old.blocks) != 1 || len(old.blocks[0].off) >= posBlockSize {
		panic("BUG: pool: growBlock0 on a full-size block")
	}
	ob := old.blocks[0]
	nb := &posBlock{base: ob.base, off: make([]uint32, 2*len(ob.off))}
	copy(nb.off, ob.off)
	nb.bits.Store(ob.bits.Load())
	nb.links.Store(ob.links.Load())
	l.mem.Add(int64(4 * (len(nb.off) - len(ob.off))))
	l.publish(&layout{slabs: old.slabs, blocks: []*posBlock{nb}, groups: old.groups})
	return nb
}

// publish makes nl the current layout for the writer and for readers.
func (l *List) publish(nl *layout) {
	w := &l.w
	d := dirBytes(nl) - dirBytes(w.lay)
	l.mem.Add(int64(d))
	l.lay.Store(nl)
	w.lay = nl
}

func dirBytes(lay *layout) int {
	return cap(lay.slabs)*24 + cap(lay.blocks)*8 + cap(lay.groups)*8
}

// bitsW returns the withdrawn bitmap of pos's block, allocating it. Writer
// only.
func (l *List) bitsW(pos uint32) *bitBlock {
	b := l.w.lay.blocks[pos>>posShift]
	bb := b.bits.Load()
	if bb == nil {
		bb = new(bitBlock)
		l.mem.Add(int64(bitBlockLen))
		b.bits.Store(bb)
	}
	return bb
}

// countWithdrawn counts withdrawn positions in [from, to). Writer only.
func (l *List) countWithdrawn(from, to uint32) uint32 {
	var n uint32
	lay := l.w.lay
	for p := from; p < to; {
		bi := p >> posShift
		end := uint32(min(uint64(to), uint64(bi+1)<<posShift))
		bb := lay.blocks[bi].bits.Load()
		if bb == nil {
			p = end
			continue
		}
		for p < end {
			wi := (p & posMask) >> 6
			word := bb[wi].Load() >> (p & 63)
			span := min(64-(p&63), end-p)
			if span < 64 {
				word &= 1<<span - 1
			}
			n += uint32(bits.OnesCount64(word))
			p += span
		}
	}
	return n
}
