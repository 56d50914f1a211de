package pool

import (
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// Readers that compare lists with each other (the overlap report, the
// count of imported codes that other lists hold). They run on any
// goroutine next to the writer and copy no codes: they walk one list's
// arena in position order and probe the other list's index.

// FindBatch is the number of codes FindMany hashes before it probes them.
const FindBatch = 32

// IsFirst reports whether pos holds the first occurrence of its code (the
// one the index holds): true for every position of a list without
// duplicates or copies. False when pos >= Len(). Any goroutine.
func (l *List) IsFirst(pos uint32) bool {
	if pos >= l.Len() {
		return false
	}
	// The writer records a new group's head in the dup table before it
	// links the head, so a linked head is always found there.
	if l.linkR(pos) == 0 {
		return true
	}
	_, ok := l.groupOf(pos)
	return ok
}

// FindMany looks codes up and calls fn(i, first, ok) for each in order,
// with the position of the code's first occurrence (ok=false: not in the
// list). Like Lookup, each answer is linearizable on its own. Any
// goroutine.
//
// A probe that finds its code makes four dependent loads (tag word, slot,
// offset, code bytes), each a cache miss in a big list. FindMany works in
// batches of FindBatch so that the misses of a batch overlap: it loads the
// tag words of every code first, then for each the first candidate slot,
// its offset and its first code byte, and only then compares (probe, now
// mostly from cache). The first two passes only load; what they find is
// checked again by probe.
func (l *List) FindMany(codes [][]byte, fn func(i int, first uint32, ok bool)) {
	var hs [FindBatch]uint64
	var sink uint64
	for from := 0; from < len(codes); from += FindBatch {
		batch := codes[from:min(from+FindBatch, len(codes))]
		t := l.idx.Load()
		n := l.Len()
		for j, code := range batch {
			hs[j] = maphash.Bytes(l.seed, code)
			sink += atomic.LoadUint64(&t.tags[(hs[j]&t.mask)>>3])
		}
		// A slot may be read only after its tag was seen occupied, and
		// the layout loaded after that tag covers the slot's position
		// (index.go, "Publication"); the bounds checks only guard against
		// a position of a tag loaded after lay.
		lay := l.lay.Load()
		// One pass per dependent load, so that within a pass the loads
		// are independent and their misses overlap; 0 = no candidate.
		var ss [FindBatch]uint64 // candidate slot + 1
		for j := range batch {
			h := hs[j]
			i := h & t.mask
			w := atomic.LoadUint64(&t.tags[i>>3])
			if m := zeroBytes(w^tagOf(h)*byteOne) & (hiBits << ((i & 7) * 8)); m != 0 {
				ss[j] = (i>>3)<<3 | uint64(bits.TrailingZeros64(m)>>3) + 1
			}
		}
		var ps [FindBatch]uint32 // its position + 1
		for j := range batch {
			if ss[j] != 0 {
				ps[j] = t.slots[ss[j]-1]
			}
		}
		var vs [FindBatch]uint64
		for j := range batch {
			p := ps[j] - 1
			bi := int(p >> posShift)
			if ps[j] == 0 || bi >= len(lay.blocks) || int(p&posMask) >= len(lay.blocks[bi].off) {
				continue
			}
			b := lay.blocks[bi]
			vs[j] = b.base + uint64(b.off[p&posMask]) + 1
		}
		for j := range batch {
			if v := vs[j] - 1; vs[j] != 0 && int(v>>slabShift) < len(lay.slabs) {
				if s := lay.slabs[v>>slabShift]; int(v&slabMask) < len(s) {
					sink += uint64(s[v&slabMask])
				}
			}
		}
		for j, code := range batch {
			if len(code) == 0 || len(code) > MaxCodeLen {
				fn(from+j, 0, false)
				continue
			}
			_, head, found := l.probe(t, hs[j], code, nil)
			if found && head >= n {
				// Added after Len was loaded: absent at that moment.
				found = false
			}
			fn(from+j, head, found)
		}
	}
	findSink.Add(sink)
}

// findSink keeps FindMany's early loads from being optimised away.
var findSink atomic.Uint64

// EachFirst calls fn with the first occurrences among positions [from, to)
// in position order, in batches of at most FindBatch (pos[i] holds
// codes[i]); to is clipped to Len(). The code slices alias the arena (see
// Code); pos and codes are reused after fn returns. fn returns false to
// stop. Any goroutine.
func (l *List) EachFirst(from, to uint32, fn func(pos []uint32, codes [][]byte) bool) {
	l.eachBatch(from, to, true, fn)
}

// EachCode is EachFirst for every position, first occurrences or not.
func (l *List) EachCode(from, to uint32, fn func(pos []uint32, codes [][]byte) bool) {
	l.eachBatch(from, to, false, fn)
}

func (l *List) eachBatch(from, to uint32, firstOnly bool, fn func(pos []uint32, codes [][]byte) bool) {
	to = min(to, l.Len())
	var ps [FindBatch]uint32
	var cs [FindBatch][]byte
	lay := l.lay.Load() // publishes every position below the Len loaded above
	k := 0
	for p := from; p < to; p++ {
		if firstOnly && !l.IsFirst(p) {
			continue
		}
		ps[k], cs[k] = p, codeAt(lay, p)
		k++
		if k == FindBatch {
			if !fn(ps[:k], cs[:k]) {
				return
			}
			k = 0
		}
	}
	if k > 0 {
		fn(ps[:k], cs[:k])
	}
}
