package bench

import (
	"fmt"
	"math/bits"
)

// codeLog records, in order, the codes one goroutine was handed, as indexes
// of the code generator (4 bytes a code). A code the generator does not make
// is counted as foreign.
type codeLog struct {
	idx     []uint32
	foreign int64
	sample  []string // a few foreign codes, for the report
}

// add records code, returning its index (or -1 if it is foreign).
func (l *codeLog) add(g *CodeGen, code []byte) int64 {
	i, ok := g.Index(code)
	if !ok || i > 1<<32-1 {
		l.foreign++
		if len(l.sample) < 3 {
			l.sample = append(l.sample, string(code))
		}
		return -1
	}
	l.idx = append(l.idx, uint32(i))
	return int64(i)
}

// ledgerReport is the cross-check of every code handed out in a run.
type ledgerReport struct {
	Assignments int64 // codes handed out (foreign ones included)
	Distinct    int64 // distinct codes among them
	Twice       int64 // handouts of a code already handed out
	Foreign     int64 // codes the harness never imported into the list
	OutOfOrder  int64 // codes whose index is >= Assignments (FIFO broken)
	samples     []string
}

// checkLedger checks that the codes in logs are distinct, are codes the run
// imported (indexes below imported), and, as the list hands codes out in
// import order (SPEC §1), are exactly the first len(codes) imported ones.
func checkLedger(g *CodeGen, imported int64, logs []*codeLog) ledgerReport {
	var r ledgerReport
	seen := make([]uint64, (imported+63)/64)
	for _, l := range logs {
		r.Assignments += int64(len(l.idx)) + l.foreign
		r.Foreign += l.foreign
		for _, s := range l.sample {
			if len(r.samples) < 6 {
				r.samples = append(r.samples, fmt.Sprintf("code %q is not one the harness imported", s))
			}
		}
		for _, i := range l.idx {
			if int64(i) >= imported {
				r.Foreign++
				if len(r.samples) < 6 {
					r.samples = append(r.samples, fmt.Sprintf("code %q (generated #%d) was never imported (%d were)", g.Code(uint64(i)), i, imported))
				}
				continue
			}
			w, b := i/64, uint64(1)<<(i%64)
			if seen[w]&b != 0 {
				r.Twice++
				if len(r.samples) < 6 {
					r.samples = append(r.samples, fmt.Sprintf("code %q (#%d) handed out twice", g.Code(uint64(i)), i))
				}
				continue
			}
			seen[w] |= b
			r.Distinct++
		}
	}
	// FIFO: the distinct codes should be exactly indexes [0, Distinct).
	for w, x := range seen {
		if x == 0 {
			continue
		}
		lo := int64(w) * 64
		if lo+64 <= r.Distinct {
			continue
		}
		for x != 0 {
			b := int64(bits.TrailingZeros64(x))
			x &= x - 1
			if lo+b >= r.Distinct {
				r.OutOfOrder++
			}
		}
	}
	return r
}

// problems lists what is wrong, given the number of assignments the
// scenario counted on its side.
func (r ledgerReport) problems(want int64) []string {
	var p []string
	if r.Assignments != want {
		p = append(p, fmt.Sprintf("recorded %d codes, want %d (one per assignment)", r.Assignments, want))
	}
	if r.Twice > 0 || r.Foreign > 0 || r.Distinct != r.Assignments {
		p = append(p, fmt.Sprintf("distinct codes %d != assignments %d (%d handed out twice, %d never imported)",
			r.Distinct, r.Assignments, r.Twice, r.Foreign))
	}
	if r.OutOfOrder > 0 {
		p = append(p, fmt.Sprintf("not FIFO: %d of the %d codes handed out are not among the first %d imported (SPEC §1: import order)",
			r.OutOfOrder, r.Distinct, r.Distinct))
	}
	return append(p, r.samples...)
}

// String is the short form for summaries.
func (r ledgerReport) String() string {
	return fmt.Sprintf("assignments=%d distinct_codes=%d twice=%d foreign=%d fifo=%v", r.Assignments, r.Distinct, r.Twice, r.Foreign, r.OutOfOrder == 0)
}
