package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/valyala/fasthttp"
)

// maxListSeries bounds the lists that get their own
// coupond_list_available_codes series: the oldest ones. Every list counts
// in coupond_available_codes and coupond_lists, so a node with many lists
// keeps a bounded scrape and its totals.
const maxListSeries = 100

// latencyBuckets cover a single-recipient allocation (~0.1 ms) up to a
// large import or a request that waited for an election (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is the Prometheus registry of one node. It is not the global
// default registry, so tests can run several nodes in one process. The
// daemon makes it before Raft starts, so the state machine's apply time is
// measured from the first replayed entry (ObserveApply); one Metrics serves
// one Server.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	apply    prometheus.Histogram
	purges   prometheus.Histogram

	// children caches the label children of requests and latency by route
	// and status, so a request costs one map lookup and a few atomic adds.
	// The map is copied on a miss (rare: routes and statuses are a small,
	// fixed set) and never changed once published.
	children atomic.Pointer[map[requestKey]requestChildren]
	missMu   sync.Mutex
}

type requestKey struct {
	route  string
	status int
}

type requestChildren struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// NewMetrics returns a registry holding the Go runtime, process, HTTP and
// state-machine apply metrics; New adds the node's Raft, list and Pebble
// metrics to it.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coupond_http_requests_total",
			Help: "HTTP requests answered, by route name and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "coupond_http_request_duration_seconds",
			Help:    "Time from routing a request to its handler's return (a streamed body may still be sending), by route name.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coupond_fsm_apply_duration_seconds",
			Help:    "Time the state machine took to apply one batch of Raft log entries (one Pebble batch).",
			Buckets: latencyBuckets,
		}),
		purges: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coupond_erasure_purge_duration_seconds",
			Help:    "Time this node took to purge its disk after an erasure (snapshot without log, older snapshots removed, state compacted, raft.db rewritten); the count is the purges done.",
			Buckets: latencyBuckets,
		}),
	}
	m.children.Store(&map[requestKey]requestChildren{})
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency, m.apply, m.purges)
	return m
}

// ObserveApply records how long the state machine took to apply one batch
// of log entries. It is safe to call from any goroutine.
func (m *Metrics) ObserveApply(d time.Duration) { m.apply.Observe(d.Seconds()) }

// ObservePurge records one finished purge of the disk after an erasure.
// It is safe to call from any goroutine.
func (m *Metrics) ObservePurge(d time.Duration) { m.purges.Observe(d.Seconds()) }

// observeRequest counts one answered request. route is a name from match,
// so the label sets stay bounded.
func (m *Metrics) observeRequest(route string, status int, took time.Duration) {
	c, ok := (*m.children.Load())[requestKey{route, status}]
	if !ok {
		c = m.addChildren(requestKey{route, status})
	}
	c.count.Inc()
	c.latency.Observe(took.Seconds())
}

func (m *Metrics) addChildren(k requestKey) requestChildren {
	m.missMu.Lock()
	defer m.missMu.Unlock()
	old := *m.children.Load()
	if c, ok := old[k]; ok {
		return c // another request added it meanwhile
	}
	c := requestChildren{
		count:   m.requests.WithLabelValues(k.route, strconv.Itoa(k.status)),
		latency: m.latency.WithLabelValues(k.route),
	}
	next := make(map[requestKey]requestChildren, len(old)+1)
	for key, v := range old {
		next[key] = v
	}
	next[k] = c
	m.children.Store(&next)
	return c
}

// registerNode adds the metrics read from the node's Raft and state
// machine at scrape time.
func (m *Metrics) registerNode(r Writer, fsm Reader) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coupond_state_writable",
			Help: "1 while this node can write its state; 0 while it cannot (a failed Pebble flush, as on a full disk, or a long write stall) and refuses writes.",
		}, func() float64 {
			if r != nil && r.Writable() != nil {
				return 0
			}
			return 1
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_codes_allocated_total",
			Help: "Codes this node's state machine assigned to recipients since the process started.",
		}, func() float64 { return float64(fsm.CodesAllocated()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_codes_imported_total",
			Help: "Codes this node's state machine added to lists (after de-duplication) since the process started.",
		}, func() float64 { return float64(fsm.CodesImported()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_fallback_codes_given_total",
			Help: "Fallback codes this node's state machine gave to recipients (sends with on_shortage fallback that could not draw a code) since the process started.",
		}, func() float64 { return float64(fsm.FallbacksGiven()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_assignments_erased_total",
			Help: "Assignments this node's state machine rewrote to an erased recipient since the process started.",
		}, func() float64 { return float64(fsm.AssignmentsErased()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "coupond_codes_released_total",
			Help: "Codes this node's state machine returned to their lists by releases of undelivered codes since the process started.",
		}, func() float64 { return float64(fsm.CodesReleased()) }),
		// Expiry is a matter of time, not of a command: the node's clock
		// decides, as it does for the expired field of a list view.
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coupond_lists_expired",
			Help: "Lists, of every tenant, whose expires_at has passed by this node's clock.",
		}, func() float64 { return float64(fsm.ExpiredLists(time.Now().UnixNano())) }),
		newNodeCollector(r, fsm),
	)
}

// nodeCollector reads Raft, the lists and Pebble when scraped: values that
// live elsewhere are copied at scrape time, never tracked twice.
type nodeCollector struct {
	raft Writer
	fsm  Reader

	raftState, raftLeader, term, commitIndex, raftApplied, fsmApplied, lastContact *prometheus.Desc
	lists, available, listAvailable                                                *prometheus.Desc
	diskUsage, memtable, compactions, compactDebt, flushes, readAmp, tables        *prometheus.Desc
	cacheSize, cacheHits, cacheMisses, flushedBytes, compactedBytes                *prometheus.Desc
}

func newNodeCollector(r Writer, fsm Reader) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		raft: r, fsm: fsm,
		raftState:   d("coupond_raft_state", "1 for this node's Raft state (follower, candidate, leader, shutdown), 0 for the others.", "state"),
		raftLeader:  d("coupond_raft_leader", "1 when this node is the Raft leader."),
		term:        d("coupond_raft_term", "Current Raft term."),
		commitIndex: d("coupond_raft_commit_index", "Raft commit index."),
		raftApplied: d("coupond_raft_applied_index", "Index of the last Raft entry handed to the state machine (no-ops and configuration entries included)."),
		fsmApplied:  d("coupond_fsm_applied_index", "Index of the last entry applied to the state machine."),
		lastContact: d("coupond_raft_last_contact_seconds", "Seconds since this follower last heard from the leader; 0 on the leader; absent before the first contact."),

		lists:         d("coupond_lists", "Code lists on this node, of every tenant."),
		available:     d("coupond_available_codes", "Codes that can still be handed out, summed over every list."),
		listAvailable: d("coupond_list_available_codes", "Codes that can still be handed out, for the "+strconv.Itoa(maxListSeries)+" oldest lists only (coupond_available_codes counts all).", "tenant", "list"),

		diskUsage:      d("coupond_pebble_disk_usage_bytes", "Disk space used by the Pebble state, live and obsolete files."),
		memtable:       d("coupond_pebble_memtable_size_bytes", "Bytes allocated by Pebble memtables."),
		compactions:    d("coupond_pebble_compactions_total", "Pebble compactions since the store was opened."),
		compactDebt:    d("coupond_pebble_compaction_debt_bytes", "Estimated bytes Pebble must compact to reach a stable shape."),
		flushes:        d("coupond_pebble_flushes_total", "Pebble memtable flushes since the store was opened."),
		readAmp:        d("coupond_pebble_read_amplification", "Pebble read amplification: L0 sublevels plus non-empty lower levels."),
		tables:         d("coupond_pebble_tables", "Live Pebble sstables."),
		cacheSize:      d("coupond_pebble_block_cache_size_bytes", "Bytes in Pebble's block cache."),
		cacheHits:      d("coupond_pebble_block_cache_hits_total", "Pebble block cache hits."),
		cacheMisses:    d("coupond_pebble_block_cache_misses_total", "Pebble block cache misses."),
		flushedBytes:   d("coupond_pebble_flushed_bytes_total", "Bytes Pebble wrote to sstables by flushes (the Raft log is the write-ahead log, so Pebble has none)."),
		compactedBytes: d("coupond_pebble_compacted_bytes_total", "Bytes Pebble wrote to sstables by compactions."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.raftState, c.raftLeader, c.term, c.commitIndex, c.raftApplied, c.fsmApplied,
		c.lastContact, c.lists, c.available, c.listAvailable, c.diskUsage, c.memtable, c.compactions, c.compactDebt,
		c.flushes, c.readAmp, c.tables, c.cacheSize, c.cacheHits, c.cacheMisses, c.flushedBytes, c.compactedBytes} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	st := c.raft.Status()
	for _, s := range []string{"follower", "candidate", "leader", "shutdown"} {
		gauge(c.raftState, boolean(st.State == s), s)
	}
	gauge(c.raftLeader, boolean(st.State == "leader"))
	gauge(c.term, float64(st.Term))
	gauge(c.commitIndex, float64(st.CommitIndex))
	gauge(c.raftApplied, float64(st.AppliedIndex))
	gauge(c.fsmApplied, float64(c.fsm.AppliedIndex()))
	// As raft.Stats reports it: a leader is its own contact, and a node
	// that never heard from a leader has no age to report.
	if st.State == "leader" {
		gauge(c.lastContact, 0)
	} else if !st.LastContact.IsZero() {
		gauge(c.lastContact, time.Since(st.LastContact).Seconds())
	}

	oldest, lists, available := c.fsm.ListsSummary(maxListSeries)
	gauge(c.lists, float64(lists))
	gauge(c.available, float64(available))
	for _, l := range oldest {
		gauge(c.listAvailable, float64(l.Available), l.Tenant, formatListID(l.ID))
	}

	pm := c.fsm.StoreMetrics()
	total := pm.Total()
	gauge(c.diskUsage, float64(pm.DiskSpaceUsage()))
	gauge(c.memtable, float64(pm.MemTable.Size))
	counter(c.compactions, float64(pm.Compact.Count))
	gauge(c.compactDebt, float64(pm.Compact.EstimatedDebt))
	counter(c.flushes, float64(pm.Flush.Count))
	gauge(c.readAmp, float64(pm.ReadAmp()))
	gauge(c.tables, float64(total.TablesCount))
	gauge(c.cacheSize, float64(pm.BlockCache.Size))
	counter(c.cacheHits, float64(pm.BlockCache.Hits))
	counter(c.cacheMisses, float64(pm.BlockCache.Misses))
	counter(c.flushedBytes, float64(total.TableBytesFlushed))
	counter(c.compactedBytes, float64(total.TableBytesCompacted))
}

// metrics answers GET /metrics: the node's registry in the format the
// scraper asks for (Prometheus text unless its Accept header prefers
// OpenMetrics or protobuf).
func (s *Server) metrics(r *request) *apiError {
	mfs, err := s.prom.reg.Gather()
	if err != nil {
		// Gather still returns every family it could collect; a partial
		// scrape is more useful to an operator than none.
		s.log.Warn().Err(err).Msg("cannot gather every metric")
	}
	accept := http.Header{"Accept": []string{string(r.ctx.Request.Header.Peek("Accept"))}}
	format := expfmt.NegotiateAccept(accept, expfmt.DefaultOpenMetricsAcceptedFormats()...)
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetContentType(string(format))
	if err := encodeMetrics(r.ctx, format, mfs); err != nil {
		// Only a bug gets here: the body is a memory buffer.
		return newError(fasthttp.StatusInternalServerError, "internal", "cannot encode metrics: "+err.Error())
	}
	return nil
}

func encodeMetrics(w io.Writer, format expfmt.Format, mfs []*dto.MetricFamily) error {
	enc := expfmt.NewEncoder(w, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		return c.Close()
	}
	return nil
}
