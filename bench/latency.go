package bench

import (
	"math"
	"slices"
	"time"
)

// Latencies collects request durations and answers exact percentiles
// (nearest-rank on the sorted samples). It is not safe for concurrent use:
// give each worker its own and Merge them at the end.
type Latencies struct {
	d      []time.Duration
	sorted bool
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.d = append(l.d, d)
	l.sorted = false
}

// Merge appends the samples of o.
func (l *Latencies) Merge(o *Latencies) {
	if o == nil || len(o.d) == 0 {
		return
	}
	l.d = append(l.d, o.d...)
	l.sorted = false
}

// Len is the number of samples.
func (l *Latencies) Len() int { return len(l.d) }

func (l *Latencies) sort() {
	if !l.sorted {
		slices.Sort(l.d)
		l.sorted = true
	}
}

// Percentile returns the nearest-rank p-th percentile (p in [0, 100]): the
// smallest sample such that at least p% of the samples are <= it. With no
// samples it is 0; p <= 0 gives the minimum, p >= 100 the maximum.
func (l *Latencies) Percentile(p float64) time.Duration {
	n := len(l.d)
	if n == 0 {
		return 0
	}
	l.sort()
	// The small epsilon keeps 99% of 100 samples at rank 99, not 100, despite
	// float rounding.
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = max(1, min(rank, n))
	return l.d[rank-1]
}

// Max is the largest sample (0 with none).
func (l *Latencies) Max() time.Duration { return l.Percentile(100) }

// Mean is the average sample (0 with none).
func (l *Latencies) Mean() time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	var sum float64
	for _, d := range l.d {
		sum += float64(d)
	}
	return time.Duration(sum / float64(len(l.d)))
}
