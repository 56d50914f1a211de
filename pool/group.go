package pool

import (
	"hash/maphash"
	"sync/atomic"
)

// Duplicates in lists without dedupe.
//
// The index holds only the first occurrence (the head) of each code. The
// occurrences of a code that was added more than once form a group:
//
//   - links: per position, next+1 where next is the following occurrence of
//     the same code; the last occurrence links back to the head (a link that
//     does not go forward ends the chain); 0 = not in a group. Link arrays are
//     allocated per position block, only for blocks holding a group member.
//   - dupTable: head -> group id.
//   - per group (grpBlock): tail (last occurrence) and hint (first Available
//     occurrence + 1, or 0 when none is Available).
//
// Groups arise from Add of a code already held (no dedupe) and from Readd
// (either list kind), so the same chains serve both.
//
// The writer keeps hint and tail exact at the end of every writer call.
// Lookup reads the hint and, if it finds it stale (a concurrent Take or
// Withdraw), walks the chain forward to the next Available occurrence; it
// reads the tail and, if it finds it stale (the tail is stored only after
// the new occurrence's Len is published), walks forward to the last
// published occurrence. Every link, hint and tail is read and written
// atomically.
type grpBlock struct {
	tail [grpBlockSize]atomic.Uint32
	hint [grpBlockSize]atomic.Uint32
}

// linkR returns the link of pos (published). Any goroutine.
func (l *List) linkR(pos uint32) uint32 {
	lb := l.lay.Load().blocks[pos>>posShift].links.Load()
	if lb == nil {
		return 0
	}
	return lb[pos&posMask].Load()
}

// linksW returns the link array of pos's block, allocating it. Writer only.
func (l *List) linksW(pos uint32) *linkBlock {
	b := l.w.lay.blocks[pos>>posShift]
	lb := b.links.Load()
	if lb == nil {
		lb = new(linkBlock)
		l.mem.Add(int64(linkBlockLn))
		b.links.Store(lb)
	}
	return lb
}

// linkW returns the link of pos without allocating. Writer only.
func (l *List) linkW(pos uint32) uint32 {
	lb := l.w.lay.blocks[pos>>posShift].links.Load()
	if lb == nil {
		return 0
	}
	return lb[pos&posMask].Load()
}

// isHead reports whether pos holds the first occurrence of its code. Writer
// only.
func (l *List) isHead(pos uint32) bool {
	if l.linkW(pos) == 0 {
		return true
	}
	_, ok := l.w.dup.get(pos)
	return ok
}

// groupW returns the block and index of group gid, allocating the block.
// Writer only.
func (l *List) groupW(gid uint32) (*grpBlock, uint32) {
	old := l.w.lay
	bi := int(gid >> grpShift)
	if bi == len(old.groups) {
		g := new(grpBlock)
		l.mem.Add(int64(grpBlockLen))
		l.publish(&layout{slabs: old.slabs, blocks: old.blocks, groups: append(old.groups, g)})
		return g, gid & grpMask
	}
	return old.groups[bi], gid & grpMask
}

// availableW reports whether pos is Available. Writer only.
func (l *List) availableW(pos uint32) bool {
	return pos >= l.w.cursor && !withdrawnIn(l.w.lay, pos)
}

// addToGroup links the new position n (not yet published) into the group
// of head h, creating the group. Readers may reach n through the chain or
// the hint before Len covers it; StateOf(n) is 0 then, so they pass over it.
// It returns the group's tail word: the caller stores n there after
// publishing Len, so that a reader never takes an unpublished position for
// the last occurrence. Writer only.
func (l *List) addToGroup(h, n uint32) *atomic.Uint32 {
	w := &l.w
	w.groups = true
	// n's link is set before n becomes reachable from the chain.
	l.linksW(n)[n&posMask].Store(h + 1)
	lh := l.linksW(h)
	if lh[h&posMask].Load() == 0 {
		gid := w.ngroups
		g, gi := l.groupW(gid)
		// The tail starts at the head (published), and hint and tail are
		// set before the group becomes reachable (dup entry, head link).
		g.tail[gi].Store(h)
		hint := n + 1
		if l.availableW(h) {
			hint = h + 1
		}
		g.hint[gi].Store(hint)
		w.ngroups++
		l.dupPut(h, gid)
		lh[h&posMask].Store(n + 1)
		return &g.tail[gi]
	}
	gid, ok := w.dup.get(h)
	if !ok {
		panic("BUG: pool: linked head without a group")
	}
	g, gi := l.groupW(gid)
	t := g.tail[gi].Load()
	lt := l.linksW(t)
	if lt[t&posMask].Load() != h+1 {
		panic("BUG: pool: group tail does not link to its head")
	}
	lt[t&posMask].Store(n + 1)
	if g.hint[gi].Load() == 0 {
		g.hint[gi].Store(n + 1)
	}
	return &g.tail[gi]
}

// unavailable is called after pos stopped being Available (taken or
// withdrawn); cur is the cursor to judge the other occurrences by. If pos was
// its group's hint, the hint moves to the next Available occurrence. Writer
// only.
func (l *List) unavailable(pos, cur uint32) {
	if l.linkW(pos) == 0 {
		return
	}
	c := codeAt(l.w.lay, pos)
	_, head, found := l.probe(l.w.idx, maphash.Bytes(l.seed, c), c, l.w.lay)
	if !found {
		panic("BUG: pool: group member missing from the index")
	}
	gid, ok := l.w.dup.get(head)
	if !ok {
		panic("BUG: pool: group member without a group")
	}
	g, gi := l.groupW(gid)
	if g.hint[gi].Load() != pos+1 {
		return
	}
	q := pos
	for {
		nx := l.linkW(q)
		if nx == 0 {
			panic("BUG: pool: broken duplicate chain")
		}
		if nx-1 <= q {
			g.hint[gi].Store(0)
			return
		}
		q = nx - 1
		if q >= cur && !withdrawnIn(l.w.lay, q) {
			g.hint[gi].Store(q + 1)
			return
		}
	}
}

// firstAvailable returns the first Available occurrence of the code whose
// first occurrence is head. Any goroutine.
func (l *List) firstAvailable(head uint32) (uint32, bool) {
	if l.linkR(head) == 0 {
		return 0, false
	}
	gid, ok := l.groupOf(head)
	if !ok {
		panic("BUG: pool: linked head without a group")
	}
	hint := l.lay.Load().groups[gid>>grpShift].hint[gid&grpMask].Load()
	if hint == 0 {
		return 0, false
	}
	p := hint - 1
	for {
		if l.StateOf(p) == Available {
			return p, true
		}
		nx := l.linkR(p)
		if nx == 0 {
			panic("BUG: pool: broken duplicate chain")
		}
		if nx-1 <= p {
			return 0, false
		}
		p = nx - 1
	}
}

// lastOf returns the last published occurrence of the code whose first
// occurrence is head, which must be in a group. Any goroutine.
func (l *List) lastOf(head uint32) uint32 {
	gid, ok := l.groupOf(head)
	if !ok {
		panic("BUG: pool: linked head without a group")
	}
	t := l.lay.Load().groups[gid>>grpShift].tail[gid&grpMask].Load()
	// A tail stored before our load may already link forward to newer
	// occurrences (the writer stores the tail after publishing Len): follow
	// the links while they go forward to a published position.
	for {
		nx := l.linkR(t)
		if nx == 0 {
			panic("BUG: pool: broken duplicate chain")
		}
		if nx-1 <= t || nx-1 >= l.Len() {
			return t
		}
		t = nx - 1
	}
}
