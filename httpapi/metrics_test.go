package httpapi_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics reads /metrics in the Prometheus text format and parses it.
func (n *testNode) scrapeMetrics(t testing.TB) scrape {
	t.Helper()
	r := n.do(t, "GET", "/metrics", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics Content-Type %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("cannot parse /metrics: %v\n%s", err, r.body)
	}
	return mfs
}

// find answers the series of family name whose labels include labels
// (name=value pairs), or nil.
func (s scrape) find(name string, labels ...string) *dto.Metric {
	mf := s[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value answers a counter's or gauge's value, or a histogram's count; an
// absent series is 0, as for a counter not incremented yet.
func (s scrape) value(name string, labels ...string) float64 {
	m := s.find(name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetricsMove scrapes, imports, scrapes, allocates, scrapes: the
// counters and gauges move by exactly what the calls did.
func TestMetricsMove(t *testing.T) {
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 5)

	s0 := n.scrapeMetrics(t)
	if res := n.topUp(t, n.admin, f.list, codeLines("MX-", 0, 3)+f.codes[0]+"\n"); res.Imported != 3 || res.Duplicates != 1 {
		t.Fatalf("top-up answered %+v, want 3 imported and 1 duplicate", res)
	}
	s1 := n.scrapeMetrics(t)
	// One recipient twice: the request needs two codes, not three.
	n.alloc(t, n.admin, "send-metrics", f.msg, "ann@example.com", "bob@example.com", "ann@example.com")
	s2 := n.scrapeMetrics(t)

	f64 := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	delta := func(a, b scrape, name string, labels ...string) float64 {
		return b.value(name, labels...) - a.value(name, labels...)
	}
	f64("imported by the top-up", delta(s0, s1, "coupond_codes_imported_total"), 3)
	f64("allocated by the top-up", delta(s0, s1, "coupond_codes_allocated_total"), 0)
	f64("imported by the allocation", delta(s1, s2, "coupond_codes_imported_total"), 0)
	f64("allocated by the allocation", delta(s1, s2, "coupond_codes_allocated_total"), 2)
	// The fixture imported its 5 codes on this node too, since the process started.
	f64("codes imported in all", s2.value("coupond_codes_imported_total"), 8)

	topup := []string{"route", "lists.topup", "code", "200"}
	allocate := []string{"route", "sends.allocate", "code", "200"}
	f64("top-up requests across the top-up", delta(s0, s1, "coupond_http_requests_total", topup...), 1)
	f64("allocations across the top-up", delta(s0, s1, "coupond_http_requests_total", allocate...), 0)
	f64("allocations across the allocation", delta(s1, s2, "coupond_http_requests_total", allocate...), 1)
	f64("allocation latencies observed", delta(s1, s2, "coupond_http_request_duration_seconds", "route", "sends.allocate"), 1)
	// Each scrape is counted once it is answered, so the next one sees it.
	f64("scrapes seen by the next scrape", delta(s1, s2, "coupond_http_requests_total", "route", "metrics", "code", "200"), 1)

	list := []string{"tenant", "default", "list", f.list}
	if s0.find("coupond_list_available_codes", list...) == nil {
		t.Fatalf("no coupond_list_available_codes series for list %s", f.list)
	}
	f64("available before", s0.value("coupond_list_available_codes", list...), 5)
	f64("available after the top-up", s1.value("coupond_list_available_codes", list...), 8)
	f64("available after the allocation", s2.value("coupond_list_available_codes", list...), 6)
	f64("available in all lists", s2.value("coupond_available_codes"), 6)
	f64("lists", s2.value("coupond_lists"), 1)

	f64("leader state", s2.value("coupond_raft_state", "state", "leader"), 1)
	f64("follower state", s2.value("coupond_raft_state", "state", "follower"), 0)
	f64("leader", s2.value("coupond_raft_leader"), 1)
	if s2.value("coupond_raft_term") < 1 || s2.value("coupond_raft_commit_index") < s1.value("coupond_raft_commit_index")+1 {
		t.Errorf("term %v, commit index %v after %v: want a term and a commit index that grew with the allocation",
			s2.value("coupond_raft_term"), s2.value("coupond_raft_commit_index"), s1.value("coupond_raft_commit_index"))
	}
	if got := delta(s1, s2, "coupond_fsm_applied_index"); got < 1 {
		t.Errorf("applied index grew by %v across an allocation", got)
	}
	if got := delta(s1, s2, "coupond_fsm_apply_duration_seconds"); got < 1 {
		t.Errorf("apply latency observed %v times across an allocation", got)
	}
	for _, name := range []string{"coupond_pebble_disk_usage_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if s2.value(name) <= 0 {
			t.Errorf("%s = %v, want a positive value", name, s2.value(name))
		}
	}
}

// TestMetricsListSeriesBounded: past maxListSeries lists, only the oldest
// get their own series; the totals still count every list.
func TestMetricsListSeriesBounded(t *testing.T) {
	n := startNode(t, nodeOpts{})
	const lists = 103 // maxListSeries + 3
	var ids []string
	for i := range lists {
		id := n.newList(t, n.admin, fmt.Sprintf("bounded-%d", i))
		n.topUp(t, n.admin, id, codeLines(fmt.Sprintf("B%d-", i), 0, 2))
		ids = append(ids, id)
	}
	s := n.scrapeMetrics(t)
	if got := len(s["coupond_list_available_codes"].GetMetric()); got != 100 {
		t.Errorf("%d coupond_list_available_codes series, want 100", got)
	}
	// Lists made one after another are oldest first in creation order.
	for i, id := range ids {
		m := s.find("coupond_list_available_codes", "list", id)
		if (m != nil) != (i < 100) {
			t.Errorf("list %d (%s) has a series: %v, want %v", i, id, m != nil, i < 100)
		}
	}
	if got := s.value("coupond_lists"); got != lists {
		t.Errorf("coupond_lists = %v, want %d", got, lists)
	}
	if got := s.value("coupond_available_codes"); got != 2*lists {
		t.Errorf("coupond_available_codes = %v, want %d", got, 2*lists)
	}
}

// TestMetricsOpenMetrics: a scraper that asks for OpenMetrics gets it:
// counter families named without _total, and a closing # EOF line.
func TestMetricsOpenMetrics(t *testing.T) {
	n := startNode(t, nodeOpts{})
	r := n.sendAccept(t, req{method: "GET", path: "/metrics"}, "application/openmetrics-text;version=1.0.0")
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text; version=1.0.0") {
		t.Fatalf("Content-Type %q, want OpenMetrics 1.0.0", ct)
	}
	if !bytes.HasSuffix(r.body, []byte("# EOF\n")) || !bytes.Contains(r.body, []byte("\n# TYPE coupond_codes_allocated counter\n")) {
		t.Fatalf("not an OpenMetrics exposition of the node:\n%s", r.body)
	}
}

// TestMetricsLifecycle: coupond_fallback_codes_given_total counts the
// fallback codes handed out, coupond_codes_released_total the codes
// releases returned (a released fallback returns none), and
// coupond_lists_expired the lists past expires_at by the node's clock: it
// grows when that time passes, with no command.
func TestMetricsLifecycle(t *testing.T) {
	n := startNode(t, nodeOpts{})
	const (
		given    = "coupond_fallback_codes_given_total"
		released = "coupond_codes_released_total"
		expired  = "coupond_lists_expired"
	)
	s0 := n.scrapeMetrics(t)
	for _, name := range []string{given, released, expired} {
		if s0.find(name) == nil || s0.value(name) != 0 {
			t.Fatalf("a fresh node: %s is %v (present: %v), want 0", name, s0.value(name), s0.find(name) != nil)
		}
	}

	// Two codes and a fallback code; a send that falls back gets 2 codes
	// and 3 fallbacks for 5 recipients.
	f := n.newFixture(t, n.admin, 2)
	if r := n.do(t, "PATCH", "/v1/lists/"+f.list, n.admin, map[string]any{"fallback_code": "FALLBACK-1"}); r.status != http.StatusOK {
		t.Fatalf("PATCH fallback_code: %s", r)
	}
	n.openSend(t, n.admin, "s-fb", map[string]any{"message_id": f.msg, "on_shortage": "fallback"}, http.StatusCreated)
	a := n.alloc(t, n.admin, "s-fb", "", "r0", "r1", "r2", "r3", "r4")
	if a.Assignments[1].Code == "FALLBACK-1" || a.Assignments[2].Code != "FALLBACK-1" {
		t.Fatalf("5 recipients on 2 codes: %+v, want 2 codes then fallbacks", a.Assignments)
	}
	// r0 holds a code, r4 the fallback: one code goes back.
	r := n.do(t, "POST", "/v1/sends/s-fb/release", n.admin, map[string]any{"recipients": []string{"r0", "r4"}})
	if r.status != http.StatusOK {
		t.Fatalf("release: %s", r)
	}

	// Lists that expired a second ago, expire in 2 s, and in an hour.
	now := time.Now()
	for i, at := range []time.Time{now.Add(-time.Second), now.Add(2 * time.Second), now.Add(time.Hour)} {
		n.createList(t, n.admin, map[string]any{"name": fmt.Sprint("expiring-", i), "expires_at": at.UTC().Format(time.RFC3339Nano)})
	}
	s1 := n.scrapeMetrics(t)
	if s1.value(given) != 3 || s1.value(released) != 1 || s1.value(expired) != 1 {
		t.Fatalf("fallbacks given %v, codes released %v, lists expired %v; want 3, 1, 1",
			s1.value(given), s1.value(released), s1.value(expired))
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.scrapeMetrics(t).value(expired) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("coupond_lists_expired did not count the list that expired 2 s after its creation")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := n.scrapeMetrics(t); s.value(given) != 3 || s.value(released) != 1 {
		t.Fatalf("the counters moved with no command: %v given, %v released", s.value(given), s.value(released))
	}
}

// TestMetricsErasure: coupond_assignments_erased_total counts the
// assignments an erasure rewrote (none for a second erasure).
func TestMetricsErasure(t *testing.T) {
	n := startNode(t, nodeOpts{})
	const erased = "coupond_assignments_erased_total"
	if s := n.scrapeMetrics(t); s.find(erased) == nil || s.value(erased) != 0 {
		t.Fatalf("a fresh node: %s is %v (present: %v), want 0", erased, s.value(erased), s.find(erased) != nil)
	}
	f := n.newFixture(t, n.admin, 4)
	n.openSend(t, n.admin, "s-1", map[string]any{"message_id": f.msg}, http.StatusCreated)
	n.openSend(t, n.admin, "s-2", map[string]any{"message_id": f.msg}, http.StatusCreated)
	n.alloc(t, n.admin, "s-1", "", "ann", "bob")
	n.alloc(t, n.admin, "s-2", "", "ann")
	for _, want := range []float64{2, 2} { // the second erasure finds nothing
		if r := n.do(t, "DELETE", "/v1/recipients/ann", n.admin, nil); r.status != http.StatusOK {
			t.Fatalf("erase: %s", r)
		}
		if got := n.scrapeMetrics(t).value(erased); got != want {
			t.Fatalf("%s = %v, want %v", erased, got, want)
		}
	}
}
