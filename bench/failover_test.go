package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidateFailover(t *testing.T) {
	base := DefaultConfig()
	base.Scenario = "failover"
	base.SpawnCluster = 3
	ok := map[string]func(*Config){
		"defaults":        func(c *Config) {},
		"five nodes":      func(c *Config) { c.SpawnCluster = 5 },
		"one kill":        func(c *Config) { c.Kills = 1 },
		"target all":      func(c *Config) { c.Target = TargetAll },
		"chunk and conc":  func(c *Config) { c.Chunk, c.ChunkSet, c.Conc, c.ConcSet = 4, true, 2, true },
		"send per conn":   func(c *Config) { c.SendPer = SendPerConn },
		"keep and spawn":  func(c *Config) { c.Keep, c.Spawn = true, true },
		"codes given":     func(c *Config) { c.Codes, c.CodesSet = 50_000, true },
		"net/http client": func(c *Config) { c.NetHTTP = true },
	}
	for name, mod := range ok {
		cfg := base
		mod(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]func(*Config){
		"no cluster":          func(c *Config) { c.SpawnCluster = 0 },
		"single spawn":        func(c *Config) { c.SpawnCluster, c.Spawn = 0, true },
		"one node":            func(c *Config) { c.SpawnCluster = 1 },
		"two nodes":           func(c *Config) { c.SpawnCluster = 2 },
		"zero kills":          func(c *Config) { c.Kills = 0 },
		"negative kills":      func(c *Config) { c.Kills = -1 },
		"target follower":     func(c *Config) { c.Target = TargetFollower },
		"server pid":          func(c *Config) { c.ServerPID = 42 },
		"chunk over limit":    func(c *Config) { c.Chunk, c.ChunkSet = MaxRecipientsPerRequest+1, true },
		"zero conc":           func(c *Config) { c.Conc, c.ConcSet = 0, true },
		"default codes > cap": func(c *Config) { c.CodeLen = 3 },
		"restart":             func(c *Config) { c.Restart, c.Spawn = true, true },
	}
	for name, mod := range bad {
		cfg := base
		mod(&cfg)
		var ue *UsageError
		if err := cfg.Validate(); !errors.As(err, &ue) {
			t.Errorf("%s: err = %v, want a usage error", name, err)
		}
	}
	if _, ok := Lookup("failover"); !ok {
		t.Error("failover is not registered")
	}
}

func TestMedianDuration(t *testing.T) {
	s := time.Second
	cases := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * s}, 3 * s},
		{[]time.Duration{3 * s, 1 * s}, 2 * s},
		{[]time.Duration{5 * s, 1 * s, 3 * s}, 3 * s},
		{[]time.Duration{4 * s, 1 * s, 3 * s, 2 * s}, 2500 * time.Millisecond},
		{[]time.Duration{1, 2}, 1}, // the mean of the two middles, rounded down
		{[]time.Duration{9 * s, 1 * s, 1 * s, 1 * s, 9 * s}, 1 * s},
	}
	for _, c := range cases {
		in := append([]time.Duration(nil), c.in...)
		if got := medianDuration(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("median sorted its input: %v", c.in)
			}
		}
	}
	f := figuresOf([]time.Duration{1200 * time.Millisecond, 800 * time.Millisecond, 2 * s, 900 * time.Millisecond, 1100 * time.Millisecond})
	if f.median != 1100*time.Millisecond || f.p90 != 2*s || f.max != 2*s {
		t.Errorf("figures of five: %+v", f)
	}
	ten := make([]time.Duration, 10)
	for i := range ten {
		ten[i] = time.Duration(10-i) * s
	}
	if f := figuresOf(ten); f.median != 5500*time.Millisecond || f.p90 != 9*s || f.max != 10*s {
		t.Errorf("figures of 1..10 s: %+v", f)
	}
	if f := figuresOf(nil); f != (failoverFigures{}) {
		t.Errorf("figures of none: %+v", f)
	}
}

func TestAckProbe(t *testing.T) {
	var p ackProbe
	t0 := time.Now()
	p.ack(t0.Add(time.Second), t0.Add(2*time.Second), 1) // not armed: ignored
	seen := p.arm(t0)
	p.ack(t0.Add(-time.Millisecond), t0.Add(10*time.Millisecond), 0) // sent before the kill
	p.ack(t0, t0.Add(11*time.Millisecond), 0)                        // sent at the kill, not after
	select {
	case <-seen:
		t.Fatal("a request sent before the kill counted")
	default:
	}
	p.ack(t0.Add(5*time.Millisecond), t0.Add(900*time.Millisecond), 2)
	select {
	case <-seen:
	default:
		t.Fatal("the first acknowledgement after the kill was not seen")
	}
	p.ack(t0.Add(6*time.Millisecond), t0.Add(700*time.Millisecond), 1) // reported later, acknowledged earlier
	p.ack(t0.Add(7*time.Millisecond), t0.Add(950*time.Millisecond), 0)
	first, node := p.disarm()
	if first != t0.Add(700*time.Millisecond) || node != 1 {
		t.Fatalf("first %v on node %d, want +700ms on node 1", first.Sub(t0), node)
	}
	p.ack(t0.Add(8*time.Millisecond), t0.Add(100*time.Millisecond), 2) // disarmed: ignored
	if first, _ := p.disarm(); first != t0.Add(700*time.Millisecond) {
		t.Fatal("an acknowledgement after disarm counted")
	}
	// Armed again for the next kill: a fresh start.
	p.arm(t0.Add(time.Hour))
	if first, node := p.disarm(); !first.IsZero() || node != -1 {
		t.Fatalf("re-armed probe kept %v %d", first, node)
	}
}

// fakeFailover is an in-process cluster of n HTTP nodes sharing one
// fakeAPI (their replicated state): any node answers any call, as coupond
// forwards to the leader. Killing the leader closes its listener and
// connections at once and starts an "election": for election, every
// allocation is refused with 503 no_leader (some, with applyThen503, are
// applied first: the outcome is unknown to the client, who must retry),
// then the next live node leads. restart listens on the same address again.
type fakeFailover struct {
	api      *fakeAPI
	addrs    []string
	election time.Duration // < 0: the cluster never elects again

	applyThen503 bool

	mu        sync.Mutex
	srvs      []*http.Server
	up        []bool
	leaderIdx int
	electedAt time.Time
	refusals  atomic.Int64
	applied   atomic.Int64 // allocations applied but answered 503
	killed    []int
}

func newFakeFailover(t *testing.T, n int, election time.Duration) *fakeFailover {
	f := &fakeFailover{api: newFakeAPI("tok", 12), election: election}
	f.srvs, f.up = make([]*http.Server, n), make([]bool, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addrs = append(f.addrs, ln.Addr().String())
		f.serve(i, ln)
	}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, s := range f.srvs {
			s.Close()
		}
	})
	return f
}

func (f *fakeFailover) serve(i int, ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f.handle(w, r) })}
	f.srvs[i], f.up[i] = srv, true
	go srv.Serve(ln)
}

func (f *fakeFailover) electing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.election < 0 && !f.electedAt.IsZero() || time.Now().Before(f.electedAt)
}

func (f *fakeFailover) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/codes") && strings.HasPrefix(r.URL.Path, "/v1/sends/") && f.electing() {
		if f.applyThen503 && f.refusals.Add(1)%3 == 0 {
			rec := httptest.NewRecorder()
			f.api.ServeHTTP(rec, r)
			if rec.Code == http.StatusOK {
				f.applied.Add(1)
			}
		}
		w.Header().Set("Retry-After", "1")
		writeErr(w, http.StatusServiceUnavailable, "no_leader", "the cluster has no leader right now; retry")
		return
	}
	f.api.ServeHTTP(w, r)
}

func (f *fakeFailover) size() int             { return len(f.addrs) }
func (f *fakeFailover) nodeID(i int) string   { return fmt.Sprintf("n%d", i+1) }
func (f *fakeFailover) nodeAddr(i int) string { return f.addrs[i] }
func (f *fakeFailover) nodePID(int) int       { return 0 }

func (f *fakeFailover) leader(ctx context.Context, alive func(int) bool) (int, error) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if !f.electing() {
			f.mu.Lock()
			li, up := f.leaderIdx, f.up[f.leaderIdx]
			f.mu.Unlock()
			if up && alive(li) {
				return li, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return -1, errors.New("fake: no leader")
}

func (f *fakeFailover) kill(i int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.up[i] {
		return errors.New("fake: not running")
	}
	f.srvs[i].Close()
	f.up[i] = false
	f.killed = append(f.killed, i)
	if i == f.leaderIdx {
		f.electedAt = time.Now().Add(f.election)
		for k := 1; k < len(f.up); k++ {
			if j := (i + k) % len(f.up); f.up[j] {
				f.leaderIdx = j
				break
			}
		}
	}
	return nil
}

func (f *fakeFailover) restart(ctx context.Context, i int) error {
	ln, err := net.Listen("tcp", f.addrs[i])
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serve(i, ln)
	return nil
}

// shortFailover shortens the waits of the scenario for a test.
func shortFailover(env *Env) {
	tm := &env.Cfg.Timing
	tm.KillWaitMin, tm.KillWaitMax, tm.FailoverTail, tm.AckGrace = 40*time.Millisecond, 80*time.Millisecond, 50*time.Millisecond, 10*time.Millisecond
}

// failoverEnv is an Env for runFailover against the fake (as Run makes it,
// driving node 1).
func failoverEnv(t *testing.T, f *fakeFailover) (*Env, *bytes.Buffer) {
	cfg := DefaultConfig()
	cfg.Scenario, cfg.SpawnCluster, cfg.Kills = "failover", 3, 3
	cfg.Codes, cfg.CodesSet = 50_000, true
	cfg.Conc, cfg.ConcSet = 4, true
	var log bytes.Buffer
	cfg.Stdout, cfg.Stderr = &bytes.Buffer{}, &log
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := NewClient(f.addrs[0], "tok", 8)
	c.Strong = true
	t.Cleanup(c.CloseIdle)
	return &Env{Cfg: &cfg, Client: c, Clients: []*Client{c}, Log: &log}, &log
}

func TestFailoverAgainstFake(t *testing.T) {
	for _, perConn := range []bool{false, true} {
		t.Run(fmt.Sprintf("per-conn=%v", perConn), func(t *testing.T) {
			const election = 150 * time.Millisecond
			f := newFakeFailover(t, 3, election)
			f.applyThen503 = true
			env, log := failoverEnv(t, f)
			shortFailover(env)
			if perConn {
				env.Cfg.SendPer = SendPerConn
				env.Cfg.Chunk, env.Cfg.ChunkSet = 3, true
			}
			res, err := runFailover(context.Background(), env, f)
			if err != nil {
				t.Fatalf("runFailover: %v\nlog: %s", err, log)
			}
			noProblems(t, f.api)
			if len(f.killed) != 3 || f.killed[0] != 0 || f.killed[1] != 1 || f.killed[2] != 2 {
				t.Errorf("killed %v, want the leader each time: n1, n2, n3", f.killed)
			}
			if f.applied.Load() == 0 {
				t.Error("the fake never applied an allocation it refused: the retries were not tested")
			}
			line, err := res.JSONLine()
			if err != nil {
				t.Fatal(err)
			}
			keys, m := jsonKeys(t, line)
			if keys[0] != "scenario" || m["scenario"] != "failover" || m["kills"] != 3.0 || m["conc"] != 4.0 {
				t.Errorf("JSON: %s", line)
			}
			secs, _ := m["failover_s"].([]any)
			if len(secs) != 3 {
				t.Fatalf("failover_s: %s", line)
			}
			for _, s := range secs {
				// The election, plus a retry pause or two.
				if d := time.Duration(s.(float64) * float64(time.Second)); d < election || d > election+time.Second {
					t.Errorf("a failover of %v with an election of %v", d, election)
				}
			}
			med := m["failover_median_s"].(float64)
			if med < election.Seconds() || med > m["failover_max_s"].(float64) || m["failover_goal_met"] != true {
				t.Errorf("median: %s", line)
			}
			if m["retried_requests"].(float64) < 1 || m["refused_attempts"].(float64) < 1 {
				t.Errorf("no retries counted: %s", line)
			}
			k := 1.0
			if perConn {
				k = 3
			}
			if m["codes"].(float64) != m["requests"].(float64)*k || m["recipients_per_request"] != k {
				t.Errorf("codes vs requests: %s", line)
			}
			l := onlyList(t, f.api)
			if l.Used != int64(m["codes"].(float64)) || l.Added != 50_000 {
				t.Errorf("list %+v, result %s", l, line)
			}
			for _, want := range []string{"failover: 3 kills of the leader (kill -9)", "goal: median < 3s: met", "retry=OK", "=> OK", "kills: n1 "} {
				if !strings.Contains(res.Summary, want) {
					t.Errorf("summary lacks %q: %s", want, res.Summary)
				}
			}
			if strings.Count(log.String(), "restarted and ready") != 3 {
				t.Errorf("progress: %s", log)
			}
		})
	}
}

func TestFailoverCatchesNonIdempotentRetry(t *testing.T) {
	f := newFakeFailover(t, 3, 100*time.Millisecond)
	f.applyThen503 = true
	f.api.forgetIdem = true // a retried recipient draws a new code
	env, log := failoverEnv(t, f)
	shortFailover(env)
	env.Cfg.Kills = 2
	res, err := runFailover(context.Background(), env, f)
	var ce *CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a CheckError\nlog: %s", err, log)
	}
	if !strings.Contains(err.Error(), "not idempotent") && !strings.Contains(err.Error(), "used = ") {
		t.Fatalf("the error names neither the retry nor the list counts: %v", err)
	}
	if res == nil || !strings.Contains(res.Summary, "=> FAIL") {
		t.Fatalf("summary: %v", res)
	}
}

func TestFailoverNoNewLeader(t *testing.T) {
	f := newFakeFailover(t, 3, -1) // never elects again
	env, log := failoverEnv(t, f)
	shortFailover(env)
	env.Cfg.Timing.FailoverTimeout = 300 * time.Millisecond
	t0 := time.Now()
	_, err := runFailover(context.Background(), env, f)
	if err == nil || IsUsage(err) || !strings.Contains(err.Error(), "kill 1 of the leader n1: no allocation acknowledged within 300ms") {
		t.Fatalf("err = %v\nlog: %s", err, log)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("took %v to give up", d)
	}
}

func TestFailoverWorkerRetriesSameRequest(t *testing.T) {
	// Node A refuses the first two attempts of each request (503), node B
	// is down but still thought alive (connection refused): the worker must
	// send the same send and recipients again, alternating, until A answers.
	api := newFakeAPI("tok", 12)
	var mu sync.Mutex
	attempts := map[string]int{}
	var bodies []string
	srvA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/sends/") && strings.HasSuffix(r.URL.Path, "/codes") {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			mu.Lock()
			attempts[r.URL.Path]++
			a := attempts[r.URL.Path]
			bodies = append(bodies, r.URL.Path+" "+string(b))
			mu.Unlock()
			if a <= 2 {
				writeErr(w, http.StatusServiceUnavailable, "unavailable", "retry")
				return
			}
		}
		api.ServeHTTP(w, r)
	}))
	defer srvA.Close()
	srvB := httptest.NewServer(http.NotFoundHandler())
	srvB.Close()
	env, _ := failoverEnv(t, &fakeFailover{addrs: []string{srvA.Listener.Addr().String()}})
	run, err := setupSends(context.Background(), env, "failover", 100)
	if err != nil {
		t.Fatal(err)
	}
	st := &failoverShared{tm: env.Cfg.Timing, alive: make([]atomic.Bool, 2)}
	st.alive[0].Store(true)
	st.alive[1].Store(true)
	ca, cb := NewClient(srvA.URL, "tok", 2), NewClient(srvB.URL, "tok", 2)
	defer ca.CloseIdle()
	fw := &failoverWorker{a: newAllocator(run, ca), posters: []*poster{newPoster(ca), newPoster(cb)},
		rg: rcptGen{prefix: "u00.", width: 7, suffix: "@example.com"}, sendPrefix: "bench-" + run.runID + "-f0", k: 2}
	for range 3 {
		if err := fw.request(context.Background(), st); err != nil {
			t.Fatal(err)
		}
	}
	if fw.a.requests != 3 || fw.a.assigned != 6 || fw.nRetried != 3 || len(fw.retried) != 3 || fw.lat.Len() != 3 {
		t.Fatalf("requests %d assigned %d retried %d %v", fw.a.requests, fw.a.assigned, fw.nRetried, fw.retried)
	}
	if st.refused.Load() != 6 || st.noReply.Load() != 6 {
		t.Fatalf("refused %d, unanswered %d; want 6 and 6", st.refused.Load(), st.noReply.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 9 {
		t.Fatalf("%d attempts reached node A, want 9", len(bodies))
	}
	for r := range 3 {
		for a := 1; a < 3; a++ {
			if bodies[3*r+a] != bodies[3*r] {
				t.Fatalf("attempt %d of request %d differs:\n%s\n%s", a+1, r, bodies[3*r+a], bodies[3*r])
			}
		}
	}
	if !strings.Contains(bodies[3], "-f0-1/codes ") || !strings.Contains(bodies[3], `"u00.0000002@example.com","u00.0000003@example.com"]`) {
		t.Fatalf("request 1: %s", bodies[3])
	}
	led := checkLedger(run.g, 100, []*codeLog{&fw.a.log})
	if p := led.problems(6); len(p) > 0 {
		t.Fatal(p)
	}

	// An aborted run gives up a request it retries.
	st.abort.Store(true)
	attempts = map[string]int{}
	mu.Unlock()
	err = fw.request(context.Background(), st)
	mu.Lock()
	if !errors.Is(err, errAborted) {
		t.Fatalf("aborted: %v", err)
	}
}
