package raftfsm

import (
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/coupond/coupond/pool"
)

// Overlaps between the lists of a tenant (SPEC §4). Both the report and
// the import count compare lists pairwise on the pools' own indexes: one
// side's arena is walked in position order, the other side's index is
// probed. Nothing copies a list's codes, so they cost no memory beyond a
// few fixed buffers per worker (and, for the import count, one bit per
// imported code).

// MaxOverlapExamples is the number of example codes an Overlap carries.
const MaxOverlapExamples = 5

// Overlap is another list of the tenant that holds codes of a list.
type Overlap struct {
	List     uint64
	Name     string
	Codes    uint64   // distinct codes of the list that the other list holds too
	Examples []string // up to MaxOverlapExamples of them, in the list's order
}

// overlapPiece is the number of positions one job walks: small enough that
// the jobs of one pair spread over every core, big enough that a job
// costs far more than handing it out.
const overlapPiece = 1 << 16

// Overlaps reports every other list of the tenant that holds at least one
// code of list, the most codes first (then by list id). Codes are compared
// in any state (available, assigned, withdrawn). The pools are read
// lock-free while the writer goes on: a report made while an import into
// one of the lists commits may count part of it.
func (f *FSM) Overlaps(tenant string, list uint64) ([]Overlap, error) {
	f.mu.RLock()
	self, ok := f.lists[list]
	var others []*ListMeta
	if ok && self.Tenant == tenant {
		for _, l := range f.lists {
			if l.Tenant == tenant && l.ID != list {
				others = append(others, l)
			}
		}
	}
	pools := f.pools
	f.mu.RUnlock()
	if !ok || self.Tenant != tenant {
		return nil, ErrNotFound
	}
	a := pools.Get(list)
	if a == nil {
		return nil, ErrNotFound
	}
	nA := a.Len()
	type pair struct {
		meta  *ListMeta
		b     *pool.List
		nB    uint32
		iterA bool // walk this list and probe the other, else the reverse
	}
	var pairs []pair
	for _, m := range others {
		b := pools.Get(m.ID)
		if b == nil {
			continue
		}
		nB := b.Len()
		if nA == 0 || nB == 0 {
			continue
		}
		// Either side gives the same count (distinct codes of one found
		// in the other); the smaller one needs fewer probes.
		pairs = append(pairs, pair{meta: m, b: b, nB: nB, iterA: nA <= nB})
	}
	type job struct {
		pair     int
		from, to uint32
	}
	var jobs []job
	for i, p := range pairs {
		n := nA
		if !p.iterA {
			n = p.nB
		}
		for from := uint32(0); from < n; from += min(overlapPiece, n-from) {
			jobs = append(jobs, job{pair: i, from: from, to: from + min(overlapPiece, n-from)})
		}
	}
	type result struct {
		codes uint64
		ex    []uint32 // the smallest positions of list found, ascending
	}
	results := make([]result, len(jobs))
	// One report at a time: each uses every core already, so more at once
	// would not finish sooner and would keep the apply goroutine from a
	// core for longer.
	overlapReports <- struct{}{}
	defer func() { <-overlapReports }()
	parallel(len(jobs), func(j int) {
		jb := jobs[j]
		p := pairs[jb.pair]
		r := &results[j]
		if p.iterA {
			// Positions come in order: the first found are the examples.
			a.EachFirst(jb.from, jb.to, func(pos []uint32, codes [][]byte) bool {
				p.b.FindMany(codes, func(i int, first uint32, ok bool) {
					if ok && first < p.nB {
						r.codes++
						if len(r.ex) < MaxOverlapExamples {
							r.ex = append(r.ex, pos[i])
						}
					}
				})
				return true
			})
			return
		}
		p.b.EachFirst(jb.from, jb.to, func(_ []uint32, codes [][]byte) bool {
			a.FindMany(codes, func(_ int, first uint32, ok bool) {
				if ok && first < nA {
					r.codes++
					r.ex = keepSmallest(r.ex, first)
				}
			})
			return true
		})
	})
	merged := make([]result, len(pairs))
	for j, jb := range jobs {
		m := &merged[jb.pair]
		m.codes += results[j].codes
		for _, pos := range results[j].ex {
			m.ex = keepSmallest(m.ex, pos)
		}
	}
	var out []Overlap
	for i, p := range pairs {
		m := merged[i]
		if m.codes == 0 {
			continue
		}
		o := Overlap{List: p.meta.ID, Name: p.meta.Name, Codes: m.codes, Examples: make([]string, len(m.ex))}
		for k, pos := range m.ex {
			o.Examples[k] = string(a.Code(pos))
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(x, y Overlap) int {
		if x.Codes != y.Codes {
			if x.Codes > y.Codes {
				return -1
			}
			return 1
		}
		if x.List < y.List {
			return -1
		}
		if x.List > y.List {
			return 1
		}
		return 0
	})
	return out, nil
}

// overlapReports holds one token while a report runs.
var overlapReports = make(chan struct{}, 1)

// keepSmallest adds pos to ex, the up to MaxOverlapExamples smallest
// positions seen, ascending (positions are distinct).
func keepSmallest(ex []uint32, pos uint32) []uint32 {
	if len(ex) == MaxOverlapExamples && pos >= ex[len(ex)-1] {
		return ex
	}
	i, _ := slices.BinarySearch(ex, pos)
	if len(ex) < MaxOverlapExamples {
		ex = append(ex, 0)
	}
	copy(ex[i+1:], ex[i:len(ex)-1])
	ex[i] = pos
	return ex
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines and returns when
// all are done. Inline when there is one job or one core.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

// inOtherListsInline is the work (codes times other lists) below which the
// import count runs on the apply goroutine alone.
const inOtherListsInline = 1 << 16

// inOtherLists counts the positions [from, Len) of list id's pool p (the
// codes a commit has just added) whose code stands in another list of the
// tenant. Writer only: it runs inside the commit's apply, so no pool
// changes meanwhile, and the count is the same on every replica. It costs
// nothing when the tenant has no other non-empty list; otherwise each pair
// walks its smaller side (the added codes, or the other list when that is
// smaller and the added codes are all first occurrences), on every core.
func (a *applier) inOtherLists(tenant string, id uint64, p *pool.List, from uint32) uint64 {
	to := p.Len()
	if from >= to {
		return 0
	}
	// The writer changes f.lists only on this goroutine: no lock to read it.
	var others []*pool.List
	for _, l := range a.f.lists {
		if l.Tenant != tenant || l.ID == id {
			continue
		}
		if o := a.f.pools.Get(l.ID); o != nil && o.Len() > 0 {
			others = append(others, o)
		}
	}
	if len(others) == 0 {
		return 0
	}
	n := to - from
	// One bit per added code: a code found in any other list. Jobs of
	// different lists mark the same words, hence the atomic Or.
	marks := make([]atomic.Uint64, (n+63)/64)
	mark := func(pos uint32) {
		k := pos - from
		marks[k>>6].Or(1 << (k & 63))
	}
	marked := func(pos uint32) bool {
		k := pos - from
		return marks[k>>6].Load()&(1<<(k&63)) != 0
	}
	type job struct {
		other     *pool.List
		from, to  uint32
		walkOther bool
	}
	var jobs []job
	var work uint64
	for _, o := range others {
		// In a de-duplicating list every added code is a new first
		// occurrence, so walking the other list and probing this one finds
		// exactly them; a list without dedupe counts each added position.
		if on := o.Len(); p.Dedupe() && on < n {
			for s := uint32(0); s < on; s += min(overlapPiece, on-s) {
				jobs = append(jobs, job{other: o, from: s, to: s + min(overlapPiece, on-s), walkOther: true})
			}
			work += uint64(on)
			continue
		}
		for s := from; s < to; s += min(overlapPiece, to-s) {
			jobs = append(jobs, job{other: o, from: s, to: s + min(overlapPiece, to-s)})
		}
		work += uint64(n)
	}
	run := func(j int) {
		jb := jobs[j]
		if jb.walkOther {
			jb.other.EachFirst(jb.from, jb.to, func(_ []uint32, codes [][]byte) bool {
				p.FindMany(codes, func(_ int, first uint32, ok bool) {
					if ok && first >= from {
						mark(first)
					}
				})
				return true
			})
			return
		}
		var batch [][]byte
		var at []uint32
		p.EachCode(jb.from, jb.to, func(pos []uint32, codes [][]byte) bool {
			// A code another list already matched needs no more probes.
			batch, at = batch[:0], at[:0]
			for i, c := range codes {
				if !marked(pos[i]) {
					batch, at = append(batch, c), append(at, pos[i])
				}
			}
			jb.other.FindMany(batch, func(i int, _ uint32, ok bool) {
				if ok {
					mark(at[i])
				}
			})
			return true
		})
	}
	if work < inOtherListsInline {
		for j := range jobs {
			run(j)
		}
	} else {
		parallel(len(jobs), run)
	}
	var c uint64
	for i := range marks {
		c += uint64(bits.OnesCount64(marks[i].Load()))
	}
	return c
}
