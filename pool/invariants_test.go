package pool

import (
	"bytes"
	"hash/maphash"
	"testing"
)

// checkInvariants checks the internal structure of a list (no concurrent
// writer): counters, index, duplicate groups and memory accounting.
func checkInvariants(t testing.TB, l *List) {
	t.Helper()
	w := &l.w
	lay := l.lay.Load()
	if lay != w.lay || l.idx.Load() != w.idx || l.dup.Load() != w.dup {
		t.Fatal("published pointers differ from the writer's")
	}
	if l.Len() != w.n || l.Available() != w.avail || l.Cursor() != w.cursor ||
		l.Used() != w.used || l.Withdrawn() != w.withdrawn {
		t.Fatal("published counters differ from the writer's")
	}
	var wd, wdBelow uint32
	for p := range w.n {
		if withdrawnIn(lay, p) {
			wd++
			if p < w.cursor {
				wdBelow++
			}
		}
	}
	if wd != w.withdrawn || w.used != w.cursor-wdBelow || w.avail != w.n-w.cursor-(wd-wdBelow) {
		t.Fatalf("counters disagree with the bitmap: W%d/%d U%d C%d A%d N%d", wd, w.withdrawn, w.used, w.cursor, w.avail, w.n)
	}

	// Index: every occupied slot holds a distinct code at the right tag and
	// reachable from its home without crossing an empty slot.
	tb := w.idx
	var occupied uint64
	seen := map[string]uint32{}
	for s := range uint64(len(tb.slots)) {
		tag := tb.tags[s>>3] >> ((s & 7) * 8) & 0xff
		if tag == 0 {
			if tb.slots[s] != 0 {
				t.Fatalf("empty slot %d holds %d", s, tb.slots[s])
			}
			continue
		}
		occupied++
		p := tb.slots[s] - 1
		if p >= w.n {
			t.Fatalf("slot %d holds position %d >= Len %d", s, p, w.n)
		}
		c := codeAt(lay, p)
		h := maphash.Bytes(l.seed, c)
		if tagOf(h) != tag {
			t.Fatalf("slot %d tag %x, want %x", s, tag, tagOf(h))
		}
		for i := h & tb.mask; i != s; i = (i + 1) & tb.mask {
			if tb.tags[i>>3]>>((i&7)*8)&0xff == 0 {
				t.Fatalf("slot %d not reachable from its home", s)
			}
		}
		if q, dup := seen[string(c)]; dup {
			t.Fatalf("code at %d indexed twice (also %d)", p, q)
		}
		seen[string(c)] = p
	}
	if occupied != w.entries || 5*occupied > 4*uint64(len(tb.slots)) {
		t.Fatalf("index holds %d entries, writer counts %d, %d slots", occupied, w.entries, len(tb.slots))
	}

	// Every position's code is indexed at its first occurrence; duplicates
	// (no dedupe) are chained in groups with an exact hint.
	inGroup := make(map[uint32]bool)
	if w.dup != nil {
		for _, e := range w.dup.e {
			if e == 0 {
				continue
			}
			head, gid := uint32(e>>32-1), uint32(e)
			if seen[string(codeAt(lay, head))] != head {
				t.Fatalf("group head %d is not the indexed occurrence", head)
			}
			g := lay.groups[gid>>grpShift]
			var members []uint32
			var hint uint32
			p := head
			for {
				members = append(members, p)
				inGroup[p] = true
				if hint == 0 && p >= w.cursor && !withdrawnIn(lay, p) {
					hint = p + 1
				}
				nx := l.linkW(p)
				if nx == 0 {
					t.Fatalf("group %d: member %d has no link", gid, p)
				}
				if nx-1 <= p {
					if nx-1 != head {
						t.Fatalf("group %d: chain wraps to %d, not head %d", gid, nx-1, head)
					}
					break
				}
				p = nx - 1
				if !bytes.Equal(codeAt(lay, p), codeAt(lay, head)) {
					t.Fatalf("group %d: member %d has another code", gid, p)
				}
			}
			if len(members) < 2 || g.tail[gid&grpMask].Load() != p {
				t.Fatalf("group %d: %d members, tail %d, want %d", gid, len(members), g.tail[gid&grpMask].Load(), p)
			}
			if got := g.hint[gid&grpMask].Load(); got != hint {
				t.Fatalf("group %d: hint %d, want %d", gid, got, hint)
			}
		}
	}
	for p := range w.n {
		c := codeAt(lay, p)
		first, ok := seen[string(c)]
		switch {
		case !ok:
			t.Fatalf("code at %d is not indexed", p)
		case first != p && !inGroup[p]:
			t.Fatalf("duplicate at %d (first %d) is not in a group", p, first)
		case first == p && l.linkW(p) != 0 && !inGroup[p]:
			t.Fatalf("position %d linked but in no group", p)
		}
	}

	// Memory accounting.
	want := listHdr + tb.bytes() + dirBytes(lay)
	if w.dup != nil {
		want += 8 * len(w.dup.e)
	}
	for _, s := range lay.slabs {
		want += cap(s)
	}
	for _, b := range lay.blocks {
		want += 4*len(b.off) + posBlockHdr
		if b.bits.Load() != nil {
			want += bitBlockLen
		}
		if b.links.Load() != nil {
			want += linkBlockLn
		}
	}
	want += len(lay.groups) * grpBlockLen
	if got := l.MemoryBytes(); got != want {
		t.Fatalf("MemoryBytes %d, structures hold %d", got, want)
	}
}
