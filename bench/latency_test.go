package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	var l Latencies
	if got := l.Percentile(50); got != 0 {
		t.Fatalf("empty p50 = %v", got)
	}
	// 1..1000 ms in a random order.
	perm := rand.New(rand.NewPCG(1, 2)).Perm(1000)
	for _, i := range perm {
		l.Add(time.Duration(i+1) * time.Millisecond)
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{
		{0, 1 * time.Millisecond},
		{50, 500 * time.Millisecond},
		{90, 900 * time.Millisecond},
		{99, 990 * time.Millisecond},
		{99.9, 999 * time.Millisecond},
		{100, 1000 * time.Millisecond},
	}
	for _, c := range cases {
		if got := l.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := l.Mean(); got != 500500*time.Microsecond {
		t.Errorf("mean = %v", got)
	}
	if got := l.Max(); got != time.Second {
		t.Errorf("max = %v", got)
	}
}

func TestPercentilesSmall(t *testing.T) {
	var l Latencies
	l.Add(42 * time.Millisecond)
	for _, p := range []float64{50, 99, 99.9} {
		if got := l.Percentile(p); got != 42*time.Millisecond {
			t.Errorf("one sample: p%v = %v", p, got)
		}
	}
	// 100 samples: p99 is the 99th, p99.9 the largest.
	var m Latencies
	for i := 100; i >= 1; i-- {
		m.Add(time.Duration(i))
	}
	if got := m.Percentile(99); got != 99 {
		t.Errorf("p99 of 1..100 = %d", got)
	}
	if got := m.Percentile(99.9); got != 100 {
		t.Errorf("p99.9 of 1..100 = %d", got)
	}
	if got := m.Percentile(50); got != 50 {
		t.Errorf("p50 of 1..100 = %d", got)
	}
}

func TestLatenciesMerge(t *testing.T) {
	var a, b Latencies
	a.Add(3)
	a.Add(1)
	_ = a.Percentile(50) // sorts a
	b.Add(2)
	b.Add(0)
	a.Merge(&b)
	a.Merge(nil)
	if a.Len() != 4 || a.Percentile(0) != 0 || a.Percentile(100) != 3 || a.Percentile(50) != 1 {
		t.Fatalf("merged: len %d min %d max %d p50 %d", a.Len(), a.Percentile(0), a.Percentile(100), a.Percentile(50))
	}
}
