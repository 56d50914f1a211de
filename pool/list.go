package pool

import (
	"hash/maphash"
	"math/bits"
	"strconv"
	"sync/atomic"
)

// List is one coupon code list: an append-only sequence of codes, a cursor
// (positions below it were handed out by Take, unless withdrawn) and a
// withdrawn bitmap.
//
// Writer methods (Add, AddMany, GrowIndex, Readd, Withdraw, Take, SetCursor)
// must be called from one goroutine only. All other methods may be called
// from any goroutine at any time and never block.
//
// Counters: Len, Cursor, Used and Withdrawn never decrease. Between writer
// calls Len == Available + Used + Withdrawn and Used <= Cursor <= Len. During
// a writer call every instant still satisfies Available + Used + Withdrawn <=
// Len, so a reader that loads Used, Withdrawn, Available and Len in that
// order always finds the sum within Len. Len and Available are published by
// one atomic store, as are Cursor and Used.
type List struct {
	dedupe bool
	seed   maphash.Seed

	_ [64]byte // keep the reader-visible words off the writer's lines
	// la is Len<<32 | Available, cu is Cursor<<32 | Used; one atomic store
	// publishes both halves.
	la  atomic.Uint64
	cu  atomic.Uint64
	wdn atomic.Uint32 // Withdrawn
	mem atomic.Int64  // MemoryBytes
	lay atomic.Pointer[layout]
	idx atomic.Pointer[table]
	dup atomic.Pointer[dupTable]
	_   [64]byte

	w writer
}

// writer is the state only the writer goroutine touches (its own copies of
// the published counters, the current slab, the current tables).
type writer struct {
	n, avail, cursor, used, withdrawn uint32

	max uint32 // MaxCodes; lowered by tests

	lay *layout
	idx *table
	dup *dupTable

	entries uint64 // codes in the index (distinct codes)
	slab    []byte // current slab
	fill    int    // bytes used in slab
	slabNo  uint64 // index of slab in lay.slabs

	groups  bool   // a duplicate was added (no dedupe): links exist
	ngroups uint32 // groups created

	touch uint64 // sink for loads issued only to start cache misses early
}

func newList(dedupe bool) *List {
	l := &List{dedupe: dedupe, seed: maphash.MakeSeed()}
	l.w.max = MaxCodes
	l.w.lay = &layout{}
	l.lay.Store(l.w.lay)
	l.w.idx = newTable(minTable)
	l.idx.Store(l.w.idx)
	l.mem.Store(int64(listHdr + l.w.idx.bytes()))
	return l
}

// Dedupe reports whether Add skips codes already in the list.
func (l *List) Dedupe() bool { return l.dedupe }

// Add appends code at the next position; the bytes are copied. With dedupe
// on, a code already in the list (in any state) is not added: Add returns the
// position of its first occurrence and added=false. With dedupe off every
// code is added. Errors: ErrCodeLength (empty or longer than MaxCodeLen;
// nothing changes) and ErrListFull (the list holds MaxCodes positions and the
// code needs a new one). Writer only.
func (l *List) Add(code []byte) (pos uint32, added bool, err error) {
	if len(code) == 0 || len(code) > MaxCodeLen {
		return 0, false, ErrCodeLength
	}
	w := &l.w
	h := maphash.Bytes(l.seed, code)
	// Load the home slot now (result unused) so that its cache miss
	// overlaps the tag word's miss in probe instead of stalling the atomic
	// tag store in insert later.
	w.touch += uint64(w.idx.slots[h&w.idx.mask])
	return l.addHashed(code, h)
}

// addBatch is the number of codes AddMany hashes and looks up ahead.
const addBatch = 32

// AddMany adds codes in order exactly as as many calls of Add would, and
// calls fn with each one's outcome (i indexes codes). It is faster on big
// lists: it hashes a batch of codes and loads their tag words and home
// slots first (independent loads, whose cache misses overlap), then adds
// them one by one. Writer only.
func (l *List) AddMany(codes [][]byte, fn func(i int, pos uint32, added bool, err error)) {
	w := &l.w
	var hs [addBatch]uint64
	for from := 0; from < len(codes); from += addBatch {
		batch := codes[from:min(from+addBatch, len(codes))]
		t := w.idx
		var touch uint64
		for j, code := range batch {
			hs[j] = maphash.Bytes(l.seed, code)
			i := hs[j] & t.mask
			touch += t.tags[i>>3] + uint64(t.slots[i])
		}
		w.touch += touch
		for j, code := range batch {
			if len(code) == 0 || len(code) > MaxCodeLen {
				fn(from+j, 0, false, ErrCodeLength)
				continue
			}
			pos, added, err := l.addHashed(code, hs[j])
			fn(from+j, pos, added, err)
		}
	}
}

// addHashed is Add of code with hash h.
func (l *List) addHashed(code []byte, h uint64) (pos uint32, added bool, err error) {
	w := &l.w
	t := w.idx
	slot, head, found := l.probe(t, h, code, w.lay)
	if found && l.dedupe {
		return head, false, nil
	}
	if w.n >= w.max {
		return 0, false, ErrListFull
	}
	pos = w.n
	// Order: code and offset, then the index entry (or the duplicate
	// chain), then Len. A reader that has seen the new Len finds the code;
	// a reader that finds the code before Len covers it treats it as absent
	// (Lookup checks the position against Len).
	l.appendCode(code)
	if found {
		// Duplicate in a list without dedupe: not indexed itself, chained
		// to the group of its first occurrence.
		tail := l.addToGroup(head, pos)
		l.publishLen()
		tail.Store(pos)
		return pos, true, nil
	}
	if (w.entries+1)*loadDen > uint64(len(t.slots))*loadNum {
		t = l.growIndex()
		slot = t.emptySlot(h)
	}
	t.insert(slot, h, pos)
	w.entries++
	l.publishLen()
	return pos, true, nil
}

// Readd appends a copy of the code at pos as a new Available position at
// the end of the list and returns the new position. It does so whatever the
// list's dedupe setting and whatever pos's state: the caller decides when a
// code is to be handed out again (a released assignment), and the same call
// is replayed in order when the list is rebuilt (before SetCursor). The copy
// is not indexed itself: like a duplicate in a list without dedupe it is
// chained to the code's first occurrence, so Lookup and Withdraw find it.
// Errors: ErrNoSuchPosition (pos >= Len) and ErrListFull (the list holds
// MaxCodes positions); nothing changes then. Writer only.
func (l *List) Readd(pos uint32) (uint32, error) {
	w := &l.w
	if pos >= w.n {
		return 0, ErrNoSuchPosition
	}
	if w.n >= w.max {
		return 0, ErrListFull
	}
	// code aliases the arena; appendCode copies it to fresh bytes (an old
	// slab is never written again), so the alias stays valid.
	code := codeAt(w.lay, pos)
	_, head, found := l.probe(w.idx, maphash.Bytes(l.seed, code), code, w.lay)
	if !found {
		panic("BUG: pool: code of a position missing from the index")
	}
	n := w.n
	// The same order as a duplicate Add: code, chain, Len, then the tail.
	l.appendCode(code)
	tail := l.addToGroup(head, n)
	l.publishLen()
	tail.Store(n)
	return n, nil
}

// publishLen publishes position w.n (Available).
func (l *List) publishLen() {
	w := &l.w
	w.n++
	w.avail++
	l.la.Store(uint64(w.n)<<32 | uint64(w.avail))
}

// Len returns the number of positions (codes added). Any goroutine.
func (l *List) Len() uint32 { return uint32(l.la.Load() >> 32) }

// Cursor returns the next position Take considers. Any goroutine.
func (l *List) Cursor() uint32 { return uint32(l.cu.Load() >> 32) }

// Withdrawn returns the number of withdrawn positions. Any goroutine.
func (l *List) Withdrawn() uint32 { return l.wdn.Load() }

// Available returns the number of Available positions (at or after the
// cursor and not withdrawn). Any goroutine.
func (l *List) Available() uint32 { return uint32(l.la.Load()) }

// Used returns the number of Assigned positions (before the cursor and not
// withdrawn). Any goroutine.
func (l *List) Used() uint32 { return uint32(l.cu.Load()) }

// StateOf returns the state of pos, or 0 when pos >= Len(). Any goroutine.
func (l *List) StateOf(pos uint32) State {
	// The cursor is loaded first: a withdrawn bit is only ever set at or
	// after the cursor, so for pos below the loaded cursor the bit is
	// already final, and for pos at or after it "bit clear" means Available
	// at the time of the cursor load.
	c := l.Cursor()
	if pos >= l.Len() {
		return 0
	}
	if withdrawnIn(l.lay.Load(), pos) {
		return Withdrawn
	}
	if pos < c {
		return Assigned
	}
	return Available
}

// Code returns the code at pos, or nil when pos >= Len(). The slice aliases
// the arena: it stays valid and unchanged for the life of the List, and
// callers must not modify it (its capacity is clipped, so append copies).
// Any goroutine.
func (l *List) Code(pos uint32) []byte {
	if pos >= l.Len() {
		return nil
	}
	return codeAt(l.lay.Load(), pos)
}

// Peek returns the position and code that the next Take would hand out
// first: the first Available position at or after the cursor. ok=false
// when nothing is Available. It takes nothing. The answer was exact at one
// instant during the call. Any goroutine.
func (l *List) Peek() (pos uint32, code []byte, ok bool) {
	for {
		if l.Available() == 0 {
			return 0, nil, false
		}
		c := l.Cursor()
		n := l.Len()
		lay := l.lay.Load() // loaded after Len: it covers every position below n
		p, found := firstClear(lay, c, n)
		// Bits in [c, p) were set when scanned and stay set. If p is
		// Available now, then at StateOf's cursor load (>= c) every
		// position from that cursor up to p was withdrawn: p came first.
		// Otherwise the writer took p or withdrew it meanwhile, or added
		// positions past n: look again.
		if found && l.StateOf(p) == Available {
			return p, codeAt(lay, p), true
		}
	}
}

// firstClear returns the first position in [from, to) whose withdrawn bit
// is clear, a bitmap word (64 positions) at a time.
func firstClear(lay *layout, from, to uint32) (uint32, bool) {
	for p := from; p < to; {
		bi := p >> posShift
		end := uint32(min(uint64(to), uint64(bi+1)<<posShift))
		bb := lay.blocks[bi].bits.Load()
		if bb == nil {
			return p, true // no withdrawal in this block
		}
		for p < end {
			free := ^bb[(p&posMask)>>6].Load() >> (p & 63)
			span := min(64-(p&63), end-p)
			if span < 64 {
				free &= 1<<span - 1
			}
			if free != 0 {
				return p + uint32(bits.TrailingZeros64(free)), true
			}
			p += span
		}
	}
	return 0, false
}

// Lookup finds code. It returns the position of the code and its state;
// ok=false when the code is not in the list. For a code held several times
// (a list without dedupe, or copies made by Readd) it reports the first
// occurrence whose state is Available, else the last occurrence: after a
// copy was handed out, that is the newest assignment. Any goroutine.
func (l *List) Lookup(code []byte) (pos uint32, state State, ok bool) {
	if len(code) == 0 || len(code) > MaxCodeLen {
		return 0, 0, false
	}
	_, head, found := l.probe(l.idx.Load(), maphash.Bytes(l.seed, code), code, nil)
	if !found || head >= l.Len() {
		// head >= Len: the writer is adding the code right now.
		return 0, 0, false
	}
	// The state first, then the link: the head's link is set before any
	// second occurrence is published, so a zero link means head was the only
	// occurrence when its state was loaded.
	st := l.StateOf(head)
	if l.linkR(head) == 0 {
		return head, st, true
	}
	if p, ok := l.firstAvailable(head); ok {
		return p, Available, true
	}
	for {
		// The last occurrence t and its state s, then the first Available
		// occurrence. If there is none and t is still the last afterwards,
		// (t, s) was exact when firstAvailable looked: no occurrence was
		// published after t meanwhile, and s, not Available, is final. The
		// loop repeats only while the writer publishes or takes occurrences
		// of this very code.
		t := l.lastOf(head)
		s := l.StateOf(t)
		if p, ok := l.firstAvailable(head); ok {
			return p, Available, true
		}
		if s != Available && l.lastOf(head) == t {
			return t, s, true
		}
	}
}

// Withdraw marks an Available position withdrawn. It returns false, and
// changes nothing, if pos is not Available (out of range, Assigned or
// already Withdrawn). Writer only.
func (l *List) Withdraw(pos uint32) bool {
	w := &l.w
	if pos >= w.n || pos < w.cursor {
		return false
	}
	bb := l.bitsW(pos)
	word := &bb[(pos&posMask)>>6]
	m := uint64(1) << (pos & 63)
	old := word.Load()
	if old&m != 0 {
		return false
	}
	// Bit first, then Available down, then Withdrawn up: the sum never
	// exceeds Len.
	word.Store(old | m)
	w.avail--
	w.withdrawn++
	l.la.Store(uint64(w.n)<<32 | uint64(w.avail))
	l.wdn.Store(w.withdrawn)
	if w.groups {
		l.unavailable(pos, w.cursor)
	}
	return true
}

// Take hands out the next n Available positions in FIFO order, skipping
// withdrawn ones: it calls fn for each with its position and code, then
// publishes the cursor just past the last one. fn must not call writer
// methods of the list; the code slice is as described at Code. Take panics
// if n is negative or greater than Available() (the caller checks first).
// Writer only.
func (l *List) Take(n int, fn func(pos uint32, code []byte)) {
	w := &l.w
	if n < 0 || uint64(n) > uint64(w.avail) {
		panic("BUG: pool: Take of " + strconv.Itoa(n) + " with " +
			strconv.FormatUint(uint64(w.avail), 10) + " available")
	}
	if n == 0 {
		return
	}
	lay := w.lay
	old := w.cursor
	p := old
	for k := 0; k < n; p++ {
		if p >= w.n {
			panic("BUG: pool: Take ran past the end")
		}
		if withdrawnIn(lay, p) {
			continue
		}
		fn(p, codeAt(lay, p))
		k++
	}
	// Available down first, then cursor and Used together.
	w.cursor = p
	w.avail -= uint32(n)
	w.used += uint32(n)
	l.la.Store(uint64(w.n)<<32 | uint64(w.avail))
	l.cu.Store(uint64(w.cursor)<<32 | uint64(w.used))
	l.passed(old, p)
}

// passed moves the hints of duplicate groups after the cursor moved from old
// to c (after publishing it: until then a reader sees the old hint, which
// is either still right or visibly stale). Writer only.
func (l *List) passed(old, c uint32) {
	if !l.w.groups {
		return
	}
	for p := old; p < c; p++ {
		if !withdrawnIn(l.w.lay, p) {
			l.unavailable(p, c)
		}
	}
}

// SetCursor moves the cursor to c, for rebuilding from storage: the codes
// were re-added and the withdrawn positions withdrawn already. Positions in
// [Cursor(), c) that are not withdrawn become Assigned and the counters are
// recomputed. It panics unless Cursor() <= c <= Len(). Writer only.
func (l *List) SetCursor(c uint32) {
	w := &l.w
	if c < w.cursor || c > w.n {
		panic("BUG: pool: SetCursor " + strconv.FormatUint(uint64(c), 10) +
			" outside [" + strconv.FormatUint(uint64(w.cursor), 10) + ", " +
			strconv.FormatUint(uint64(w.n), 10) + "]")
	}
	old := w.cursor
	taken := c - old - l.countWithdrawn(old, c)
	if taken > w.avail {
		panic("BUG: pool: SetCursor takes more than available")
	}
	w.cursor = c
	w.avail -= taken
	w.used += taken
	l.la.Store(uint64(w.n)<<32 | uint64(w.avail))
	l.cu.Store(uint64(w.cursor)<<32 | uint64(w.used))
	l.passed(old, c)
}

// MemoryBytes returns the bytes the list holds in slabs, offsets, bitmaps,
// duplicate links and groups, the index and the directories (for metrics and
// tests; a table being replaced by a resize is not counted). Any goroutine.
func (l *List) MemoryBytes() int { return int(l.mem.Load()) }
