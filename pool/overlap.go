package pool

import (
	"hash/maphash"
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
// list). It probes in batches of FindBatch: the tag words of a whole batch
// are loaded before any is compared, so their cache misses overlap instead
// of following each other. Like Lookup, each answer is linearizable on its
// own. Any goroutine.
func (l *List) FindMany(codes [][]byte, fn func(i int, first uint32, ok bool)) {
	var hs [FindBatch]uint64
	for from := 0; from < len(codes); from += FindBatch {
		batch := codes[from:min(from+FindBatch, len(codes))]
		t := l.idx.Load()
		n := l.Len()
		for j, code := range batch {
			hs[j] = maphash.Bytes(l.seed, code)
			// Only the tag word: a slot may be read only after its tag
			// was seen occupied (index.go, "Publication").
			// (An atomic load is never optimised away.)
			atomic.LoadUint64(&t.tags[(hs[j]&t.mask)>>3])
		}
		for j, code := range batch {
			if len(code) == 0 || len(code) > MaxCodeLen {
				fn(from+j, 0, false)
				continue
			}
			_, head, found := l.probe(t, hs[j], code, nil)
			if found && head >= n {
				// Added after Len was loaded: absent at that moment. An
				// index loaded before Len cannot hold such a position
				// unless the writer published both since; either way the
				// answer is the state at the Len load.
				found = false
			}
			fn(from+j, head, found)
		}
	}
}

// EachFirst calls fn with the first occurrences among positions [from, to)
// in position order, in batches of at most FindBatch (pos[i] holds
// codes[i]); to is clipped to Len(). The code slices alias the arena (see
// Code); pos and codes are reused after fn returns. fn returns false to
// stop. Any goroutine.
func (l *List) EachFirst(from, to uint32, fn func(pos []uint32, codes [][]byte) bool) {
	to = min(to, l.Len())
	var ps [FindBatch]uint32
	var cs [FindBatch][]byte
	lay := l.lay.Load() // publishes every position below the Len loaded above
	k := 0
	for p := from; p < to; p++ {
		if !l.IsFirst(p) {
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

// EachCode is EachFirst for every position, first occurrences or not.
func (l *List) EachCode(from, to uint32, fn func(pos []uint32, codes [][]byte) bool) {
	to = min(to, l.Len())
	var ps [FindBatch]uint32
	var cs [FindBatch][]byte
	lay := l.lay.Load()
	k := 0
	for p := from; p < to; p++ {
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
