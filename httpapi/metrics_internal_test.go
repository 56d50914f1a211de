package httpapi

import (
	"testing"
	"time"
)

// TestObserveRequestAllocs: counting a request whose route and status were
// seen before allocates nothing (the label children are cached).
func TestObserveRequestAllocs(t *testing.T) {
	m := NewMetrics()
	m.observeRequest("sends.allocate", 200, time.Millisecond)
	allocs := testing.AllocsPerRun(1000, func() { m.observeRequest("sends.allocate", 200, time.Millisecond) })
	if allocs != 0 {
		t.Fatalf("observeRequest allocates %v times per request, want 0", allocs)
	}
	m.observeRequest("sends.allocate", 409, time.Millisecond)
	if got := len(*m.children.Load()); got != 2 {
		t.Fatalf("%d cached label children, want 2 (one per route and status)", got)
	}
}

// BenchmarkObserveRequest measures what metrics add to every request, from
// parallel connections as fasthttp serves them.
func BenchmarkObserveRequest(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observeRequest("sends.allocate", 200, 150*time.Microsecond)
		}
	})
}
