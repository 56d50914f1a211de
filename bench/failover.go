package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The failover scenario (the cluster's acceptance point "failover, leader
// kill -9 to the next acknowledged allocation, under 3 s at the median"):
// small allocation requests run steadily over the live nodes of a spawned
// cluster while the harness kills the leader with SIGKILL --kills times.
// Each kill is timed from the signal to the first allocation acknowledged
// (HTTP 200) by any node whose request was sent after the signal; the
// killed node is then restarted on its data, and is ready again before the
// next kill.

// Failover defaults.
const (
	DefaultKills         = 5
	DefaultFailoverConc  = 8
	DefaultFailoverCodes = 1_000_000
	// FailoverGoal is the acceptance bound on the median failover time.
	FailoverGoal = 3 * time.Second
)

// failoverCluster is what the failover scenario needs of a cluster: the
// spawned one, or an in-process fake in the tests.
type failoverCluster interface {
	size() int
	nodeID(i int) string
	nodeAddr(i int) string
	nodePID(i int) int // 0: unknown (no CPU figure)
	// leader finds the leader among the live nodes and confirms it.
	leader(ctx context.Context, alive func(int) bool) (int, error)
	// kill kills node i with SIGKILL and returns once it is gone.
	kill(i int) error
	// restart starts node i again on its data and returns once it is ready.
	restart(ctx context.Context, i int) error
}

// spawnedFailover is a cluster spawned by the harness.
type spawnedFailover struct{ cl *Cluster }

func (s spawnedFailover) size() int             { return len(s.cl.Nodes) }
func (s spawnedFailover) nodeID(i int) string   { return s.cl.Nodes[i].ID }
func (s spawnedFailover) nodeAddr(i int) string { return s.cl.Nodes[i].HTTPAddr }
func (s spawnedFailover) nodePID(i int) int     { return s.cl.Nodes[i].PID() }
func (s spawnedFailover) kill(i int) error      { return s.cl.Nodes[i].Kill() }

// restart starts the node with the same command line (same data, same
// --join for a joiner, which then restarts as the member it was) and waits
// for its /readyz: 200 means it knows a leader and has caught up.
func (s spawnedFailover) restart(ctx context.Context, i int) error {
	n := s.cl.Nodes[i]
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(ctx, ReadyTimeout)
}

// leader asks GET /v1/cluster of a live node which node leads, then asks
// that node, which must name itself: a node that was just elected, or one
// whose view is stale, makes it try again.
func (s spawnedFailover) leader(ctx context.Context, alive func(int) bool) (int, error) {
	tm := s.cl.Timing.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, tm.LeaderTimeout)
	defer cancel()
	last := "no live node answered"
	for try := 0; ; try++ {
		for k := range s.cl.Nodes {
			j := (try + k) % len(s.cl.Nodes)
			if !alive(j) {
				continue
			}
			li, msg := s.leaderSeenBy(ctx, j)
			if li >= 0 && alive(li) {
				lj, msg2 := s.leaderSeenBy(ctx, li)
				if lj == li {
					return li, nil
				}
				if lj >= 0 {
					msg2 = s.cl.Nodes[li].ID + " names " + s.cl.Nodes[lj].ID
				}
				msg = fmt.Sprintf("%s names %s as the leader, but %s", s.cl.Nodes[j].ID, s.cl.Nodes[li].ID, msg2)
			} else if li >= 0 {
				msg = fmt.Sprintf("%s still names the dead %s", s.cl.Nodes[j].ID, s.cl.Nodes[li].ID)
			}
			last = msg
			break
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return -1, fmt.Errorf("no confirmed leader among the live nodes after %s; last: %s", tm.LeaderTimeout, last)
			}
			return -1, ctx.Err()
		case <-time.After(tm.LeaderPoll):
		}
	}
}

// leaderSeenBy is the index of the leader node j names (-1 with why not).
func (s spawnedFailover) leaderSeenBy(ctx context.Context, j int) (int, string) {
	var info ClusterInfo
	if _, err := s.cl.op[j].sendJSON(ctx, http.MethodGet, "/v1/cluster", nil, &info, http.StatusOK); err != nil {
		return -1, fmt.Sprintf("%s: %v", s.cl.Nodes[j].ID, err)
	}
	if info.Leader == nil {
		return -1, s.cl.Nodes[j].ID + " knows no leader"
	}
	for i, n := range s.cl.Nodes {
		if n.ID == *info.Leader {
			return i, ""
		}
	}
	return -1, fmt.Sprintf("%s names leader %q, not a spawned node", s.cl.Nodes[j].ID, *info.Leader)
}

// ackProbe finds, for one kill, the first allocation acknowledged (200) by
// any node whose request was sent after the kill.
type ackProbe struct {
	armed  atomic.Bool
	mu     sync.Mutex
	killAt time.Time
	first  time.Time // zero: none yet
	node   int
	seen   chan struct{} // closed at the first such acknowledgement
}

// arm starts watching for the kill at killAt.
func (p *ackProbe) arm(killAt time.Time) <-chan struct{} {
	p.mu.Lock()
	p.killAt, p.first, p.node, p.seen = killAt, time.Time{}, -1, make(chan struct{})
	seen := p.seen
	p.mu.Unlock()
	p.armed.Store(true)
	return seen
}

// ack reports an acknowledged request sent at sent, answered at acked by
// node.
func (p *ackProbe) ack(sent, acked time.Time, node int) {
	if !p.armed.Load() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.armed.Load() || !sent.After(p.killAt) {
		return
	}
	if p.first.IsZero() {
		close(p.seen)
	}
	if p.first.IsZero() || acked.Before(p.first) {
		p.first, p.node = acked, node
	}
}

// disarm stops watching and returns the earliest acknowledgement (zero
// time and -1 when there was none).
func (p *ackProbe) disarm() (time.Time, int) {
	p.armed.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first, p.node
}

// failoverShared is what the workers and the killer share.
type failoverShared struct {
	tm      Timings
	alive   []atomic.Bool
	stop    atomic.Bool // end the run after the current requests
	abort   atomic.Bool // the run failed: give up the requests being retried too
	probe   ackProbe
	refused atomic.Int64 // attempts answered 503
	noReply atomic.Int64 // attempts without an answer (connection refused or reset, timeout)
}

// pick is the first live node from i on (-1 if none).
func (s *failoverShared) pick(i int) int {
	n := len(s.alive)
	for k := range n {
		if j := (i + k) % n; s.alive[j].Load() {
			return j
		}
	}
	return -1
}

// maxRetriedKept bounds the retried requests a worker remembers (they are
// all sent again at the end to check they keep their codes).
const maxRetriedKept = 500

// failoverWorker is one connection of the failover load: requests of k
// recipients (recipients [i·k, (i+1)·k) in request i, u<w>... as the small
// sends), to its home node, or the next live one. A request refused with
// 503 or left without an answer is sent again, same send and same
// recipients (so the retry is idempotent), to the next live node, until a
// node acknowledges it.
type failoverWorker struct {
	w          int
	a          *allocator
	posters    []*poster // one per node
	rg         rcptGen
	sendPrefix string
	perConn    bool
	k          int64
	home       int
	lat        Latencies // from the first attempt to the acknowledgement
	retried    []int64   // requests that needed more than one attempt (the first maxRetriedKept)
	nRetried   int64
	err        error
}

func (fw *failoverWorker) sendID(i int64) string {
	if fw.perConn {
		return fw.sendPrefix
	}
	return fw.sendPrefix + "-" + strconv.FormatInt(i, 10)
}

// errAborted ends a worker's request when the run failed elsewhere.
var errAborted = errors.New("the run was aborted")

func (fw *failoverWorker) loop(ctx context.Context, st *failoverShared) {
	for !st.stop.Load() && ctx.Err() == nil {
		if err := fw.request(ctx, st); err != nil {
			if !errors.Is(err, errAborted) {
				fw.err = err
			}
			st.abort.Store(true)
			st.stop.Store(true)
			return
		}
	}
}

// request sends the worker's next request until a node acknowledges it.
func (fw *failoverWorker) request(ctx context.Context, st *failoverShared) error {
	i := fw.a.requests
	from, to := i*fw.k, (i+1)*fw.k
	send := fw.sendID(i)
	t0 := time.Now()
	cur := fw.home
	for attempt := 0; ; attempt++ {
		// The send time first, then the node: a request sent after a kill
		// cannot go to the killed node (marked dead before the kill).
		sent := time.Now()
		node := st.pick(cur)
		if node < 0 {
			return errors.New("no live node")
		}
		fw.a.p = fw.posters[node]
		actx, cancel := context.WithTimeout(ctx, st.tm.AttemptTimeout)
		_, err := fw.a.allocate(actx, send, fw.rg, from, to, nil)
		cancel()
		if err == nil {
			acked := time.Now()
			st.probe.ack(sent, acked, node)
			fw.lat.Add(acked.Sub(t0))
			if attempt > 0 {
				fw.nRetried++
				if len(fw.retried) < maxRetriedKept {
					fw.retried = append(fw.retried, i)
				}
			}
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		var rf *refusal
		var re *replyError
		switch {
		case isDry(err):
			return fmt.Errorf("the list ran dry (409 insufficient_codes) after %d requests of this connection: import more with --codes", i)
		case errors.As(err, &rf) && rf.status == http.StatusServiceUnavailable:
			st.refused.Add(1)
		case errors.As(err, &rf), errors.As(err, &re), errors.Is(err, errBadReply):
			return err
		default:
			st.noReply.Add(1)
		}
		if st.abort.Load() {
			return errAborted
		}
		if time.Since(t0) > st.tm.RequestGiveUp {
			return fmt.Errorf("send %s, recipients %d..%d: no node acknowledged it in %s (%d attempts); last: %w", send, from, to-1, st.tm.RequestGiveUp, attempt+1, err)
		}
		cur = node + 1
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(st.tm.RetryBackoff):
		}
	}
}

// killRecord is one kill of the leader.
type killRecord struct {
	victim    string        // the leader killed
	failover  time.Duration // kill to the first acknowledged allocation sent after it
	ackNode   string        // the node that acknowledged it
	newLeader string        // the leader found after it
	exited    time.Duration // kill to the process reaped
	restart   time.Duration // restart to ready
	refused   int64         // attempts answered 503 between the kill and the acknowledgement
	noReply   int64         // attempts without an answer in that time
}

// failoverFigures are the median, p90 (nearest rank) and max of the
// failover times.
type failoverFigures struct {
	median, p90, max time.Duration
}

// medianDuration is the median: the middle value, or the mean of the two
// middle ones for an even count (0 for none). ds is not modified.
func medianDuration(ds []time.Duration) time.Duration {
	n := len(ds)
	if n == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return s[n/2-1] + (s[n/2]-s[n/2-1])/2
}

func figuresOf(ds []time.Duration) failoverFigures {
	var l Latencies
	for _, d := range ds {
		l.Add(d)
	}
	return failoverFigures{median: medianDuration(ds), p90: l.Percentile(90), max: l.Max()}
}

// serverCPU adds up the CPU time of the node processes over the run,
// across kills (a killed process's CPU is read just before the kill) and
// restarts (a restarted process counts from its start).
type serverCPU struct {
	fc   failoverCluster
	pids []int
	base []float64
	done float64
	ok   bool
}

func newServerCPU(fc failoverCluster) *serverCPU {
	s := &serverCPU{fc: fc, ok: true}
	for i := range fc.size() {
		pid := fc.nodePID(i)
		t, ok := procCPU(pid)
		s.ok = s.ok && pid != 0 && ok
		s.pids, s.base = append(s.pids, pid), append(s.base, t)
	}
	return s
}

func (s *serverCPU) killing(i int) {
	if t, ok := procCPU(s.pids[i]); ok {
		s.done += t - s.base[i]
	} else {
		s.ok = false
	}
}

func (s *serverCPU) restarted(i int) {
	s.pids[i], s.base[i] = s.fc.nodePID(i), 0
	s.ok = s.ok && s.pids[i] != 0
}

func (s *serverCPU) total() (float64, bool) {
	sum := s.done
	for i, pid := range s.pids {
		t, ok := procCPU(pid)
		if !ok {
			return 0, false
		}
		sum += t - s.base[i]
	}
	return sum, s.ok
}

// RunFailover is the failover scenario on a cluster spawned with
// --spawn-cluster 3 or more.
func RunFailover(ctx context.Context, env *Env) (*Result, error) {
	if env.Cluster == nil {
		return nil, &UsageError{"failover needs --spawn-cluster 3 or more"}
	}
	return runFailover(ctx, env, spawnedFailover{env.Cluster})
}

func runFailover(ctx context.Context, env *Env, fc failoverCluster) (*Result, error) {
	cfg := env.Cfg
	c := env.Client
	codes := int64(DefaultFailoverCodes)
	if cfg.CodesSet {
		codes = cfg.Codes
	}
	conc := DefaultFailoverConc
	if cfg.ConcSet {
		conc = cfg.Conc
	}
	k := int64(1)
	if cfg.ChunkSet {
		k = int64(cfg.Chunk)
	}
	run, err := setupSends(ctx, env, "failover", codes)
	if err != nil {
		return nil, err
	}
	n := fc.size()
	clients := make([]*Client, n)
	for i := range clients {
		clients[i] = NewClient(fc.nodeAddr(i), c.token, conc+4)
		clients[i].NetHTTP = cfg.NetHTTP
		clients[i].Strong = true
		defer clients[i].CloseIdle()
	}
	tm := cfg.Timing.withDefaults()
	st := &failoverShared{tm: tm, alive: make([]atomic.Bool, n)}
	for i := range st.alive {
		st.alive[i].Store(true)
	}
	perConn := cfg.SendPer == SendPerConn
	ws := make([]*failoverWorker, conc)
	for w := range ws {
		fw := &failoverWorker{
			w: w, a: newAllocator(run, clients[w%n]), k: k, home: w % n, perConn: perConn,
			rg:         rcptGen{prefix: fmt.Sprintf("u%02d.", w), width: 7, suffix: "@example.com"},
			sendPrefix: fmt.Sprintf("bench-%s-f%d", run.runID, w),
		}
		fw.a.log.idx = make([]uint32, 0, 1<<14)
		for i := range n {
			fw.posters = append(fw.posters, newPoster(clients[i]))
		}
		ws[w] = fw
	}
	env.logf("failover: %d connections over the %d nodes, %d recipient(s) a request, a send per %s; %d kills of the leader, each after %s-%s",
		conc, n, k, cfg.SendPer, cfg.Kills, tm.KillWaitMin, tm.KillWaitMax)

	scpu := newServerCPU(fc)
	cpu0 := takeCPU(nil)
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, fw := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fw.loop(ctx, st)
		}()
	}
	kills, killErr := killLoop(ctx, env, fc, st, scpu, cfg.Kills)
	if killErr == nil {
		sleepUnlessStopped(ctx, st, tm.FailoverTail)
	} else {
		st.abort.Store(true)
	}
	st.stop.Store(true)
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := cpuBetween(cpu0, takeCPU(nil))
	if srv, ok := scpu.total(); ok && elapsed > 0 {
		cpu.server, cpu.haveServer, cpu.servers = srv/elapsed.Seconds(), true, n
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var problems []string
	for _, fw := range ws {
		if fw.err != nil {
			if err := fatal(fw.err, &problems); err != nil {
				return nil, fmt.Errorf("failover: connection %d: %w", fw.w, err)
			}
		}
	}
	if killErr != nil {
		return nil, fmt.Errorf("failover: %w", killErr)
	}

	lat := &Latencies{}
	var requests, assigned, retried int64
	logs := make([]*codeLog, 0, len(ws))
	for _, fw := range ws {
		lat.Merge(&fw.lat)
		requests += fw.a.requests
		assigned += fw.a.assigned
		retried += fw.nRetried
		logs = append(logs, &fw.a.log)
	}
	led := checkLedger(run.g, codes, logs)
	problems = append(problems, led.problems(assigned)...)
	retryOK := "skipped"
	var resent int64
	if len(problems) == 0 {
		rp := retryProblems(ctx, c, run, func() []string {
			p, m := failoverRetries(ctx, run, clients, ws)
			resent = m
			return p
		})
		retryOK = okWord(len(rp) == 0)
		problems = append(problems, rp...)
		problems = append(problems, failoverSendProblems(ctx, c, run, ws)...)
	}
	l, err := c.GetList(ctx, run.listID)
	if err != nil {
		problems = append(problems, fmt.Sprintf("GET list at the end: %v", err))
	} else {
		problems = append(problems, listProblems(l, codes, assigned)...)
	}
	rep := env.checkReplicas(ctx)
	problems = append(problems, rep.problems...)

	var times []time.Duration
	for _, kr := range kills {
		times = append(times, kr.failover)
	}
	fig := figuresOf(times)
	met := fig.median < FailoverGoal

	res := &Result{Scenario: "failover", Codes: assigned, Requests: requests, Elapsed: elapsed, Lat: lat}
	var sum strings.Builder
	fmt.Fprintf(&sum, "failover: %d kills of the leader (kill -9), kill -> first acknowledged allocation:", len(kills))
	for _, kr := range kills {
		fmt.Fprintf(&sum, " %.2fs", kr.failover.Seconds())
	}
	fmt.Fprintf(&sum, " | median %.2fs p90 %.2fs max %.2fs (goal: median < %s: %s)",
		fig.median.Seconds(), fig.p90.Seconds(), fig.max.Seconds(), FailoverGoal, map[bool]string{true: "met", false: "NOT met"}[met])
	fmt.Fprintf(&sum, " | load: %d connections, %d recipient(s) a request: %d requests in %.1fs = %s req/s, %d retried; request (retries included) %s",
		conc, k, requests, elapsed.Seconds(), humanRate(perSecond(requests, elapsed)), retried, latSummary(lat))
	fmt.Fprintf(&sum, " | kills:")
	for i, kr := range kills {
		if i > 0 {
			sum.WriteString(";")
		}
		fmt.Fprintf(&sum, " %s %.2fs -> %s acked (leader %s, %d refused, %d unanswered), restart to ready %.2fs",
			kr.victim, kr.failover.Seconds(), kr.ackNode, kr.newLeader, kr.refused, kr.noReply, kr.restart.Seconds())
	}
	fmt.Fprintf(&sum, " | verify: %s retry=%s (%d resent) list{added=%d available=%d reserved=%d used=%d withdrawn=%d}%s => %s | %s",
		led, retryOK, resent, l.Added, l.Available, l.Reserved, l.Used, l.Withdrawn, rep.word(), okWord(len(problems) == 0), cpu)

	var secs, restarts []float64
	var victims []string
	for _, kr := range kills {
		secs = append(secs, roundTo(kr.failover.Seconds(), 3))
		restarts = append(restarts, roundTo(kr.restart.Seconds(), 3))
		victims = append(victims, kr.victim)
	}
	res.Extra = append(res.Extra,
		Field{Key: "max_ms", Value: durMS(lat.Max()), Prec: 3},
		Field{Key: "kills", Value: len(kills)},
		Field{Key: "failover_s", Value: secs},
		Field{Key: "failover_median_s", Value: fig.median.Seconds(), Prec: 3},
		Field{Key: "failover_p90_s", Value: fig.p90.Seconds(), Prec: 3},
		Field{Key: "failover_max_s", Value: fig.max.Seconds(), Prec: 3},
		Field{Key: "failover_goal_met", Value: met},
		Field{Key: "killed", Value: victims},
		Field{Key: "restart_ready_s", Value: restarts},
		Field{Key: "retried_requests", Value: retried},
		Field{Key: "refused_attempts", Value: st.refused.Load()},
		Field{Key: "unanswered_attempts", Value: st.noReply.Load()},
		Field{Key: "conc", Value: conc},
		Field{Key: "recipients_per_request", Value: k},
		Field{Key: "send_per", Value: cfg.SendPer})
	res.Extra = append(res.Extra, cpu.fields()...)
	rep.apply(res, &sum, TargetAll)
	res.Summary = sum.String()
	if len(problems) > 0 {
		return res, &CheckError{Scenario: "failover", Problems: problems}
	}
	return res, nil
}

func roundTo(x float64, prec int) float64 {
	v, _ := strconv.ParseFloat(fmtNum(x, prec), 64)
	return v
}

// sleepUnlessStopped waits d, or less if the workers stopped (a failure)
// or ctx ended; it reports whether it waited the whole time.
func sleepUnlessStopped(ctx context.Context, st *failoverShared, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if st.stop.Load() || ctx.Err() != nil {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		time.Sleep(min(left, 10*time.Millisecond))
	}
}

// killLoop kills the leader kills times, times each failover, and
// restarts the killed node. It ends early, with what it measured so far,
// when a worker fails (st.stop) or on an error.
func killLoop(ctx context.Context, env *Env, fc failoverCluster, st *failoverShared, scpu *serverCPU, kills int) ([]killRecord, error) {
	var recs []killRecord
	alive := func(i int) bool { return st.alive[i].Load() }
	for k := range kills {
		wait := st.tm.KillWaitMin + rand.N(max(1, st.tm.KillWaitMax-st.tm.KillWaitMin))
		if !sleepUnlessStopped(ctx, st, wait) {
			return recs, nil
		}
		li, err := fc.leader(ctx, alive)
		if err != nil {
			return recs, fmt.Errorf("kill %d: %w", k+1, err)
		}
		var kr killRecord
		kr.victim = fc.nodeID(li)
		scpu.killing(li)
		st.alive[li].Store(false)
		refused0, noReply0 := st.refused.Load(), st.noReply.Load()
		killAt := time.Now()
		seen := st.probe.arm(killAt)
		if err := fc.kill(li); err != nil {
			st.probe.disarm()
			return recs, fmt.Errorf("kill %d: SIGKILL of %s: %w", k+1, kr.victim, err)
		}
		kr.exited = time.Since(killAt)
		timeout := time.After(st.tm.FailoverTimeout)
		for waiting := true; waiting; {
			select {
			case <-seen:
				waiting = false
			case <-timeout:
				st.probe.disarm()
				return recs, fmt.Errorf("kill %d of the leader %s: no allocation acknowledged within %s (%d refused, %d unanswered attempts since)",
					k+1, kr.victim, st.tm.FailoverTimeout, st.refused.Load()-refused0, st.noReply.Load()-noReply0)
			case <-ctx.Done():
				st.probe.disarm()
				return recs, ctx.Err()
			case <-time.After(10 * time.Millisecond):
				if st.stop.Load() {
					st.probe.disarm()
					return recs, nil
				}
			}
		}
		time.Sleep(st.tm.AckGrace)
		first, node := st.probe.disarm()
		kr.failover = first.Sub(killAt)
		kr.ackNode = fc.nodeID(node)
		kr.refused, kr.noReply = st.refused.Load()-refused0, st.noReply.Load()-noReply0
		if nl, err := fc.leader(ctx, alive); err == nil {
			kr.newLeader = fc.nodeID(nl)
		} else {
			kr.newLeader = "?"
		}
		t := time.Now()
		if err := fc.restart(ctx, li); err != nil {
			return append(recs, kr), fmt.Errorf("kill %d: restarting %s: %w", k+1, kr.victim, err)
		}
		kr.restart = time.Since(t)
		scpu.restarted(li)
		st.alive[li].Store(true)
		recs = append(recs, kr)
		env.logf("failover: kill %d/%d: leader %s killed (gone in %s); first allocation acknowledged %.3fs after the kill, by %s (new leader %s; %d refused, %d unanswered attempts meanwhile); %s restarted and ready in %.2fs",
			k+1, kills, kr.victim, kr.exited.Round(time.Microsecond), kr.failover.Seconds(), kr.ackNode, kr.newLeader, kr.refused, kr.noReply, kr.victim, kr.restart.Seconds())
	}
	return recs, nil
}

// failoverRetries sends again every retried request each worker kept (the
// ones that crossed a failover) and a sample spread over its run, each to
// another node than the worker's home, and checks the same codes come
// back. It returns the problems and how many requests it sent.
func failoverRetries(ctx context.Context, run *sendRun, clients []*Client, ws []*failoverWorker) ([]string, int64) {
	var mu sync.Mutex
	var p []string
	var sent int64
	var wg sync.WaitGroup
	per := max(1, retrySampleSize/int64(max(1, len(ws))))
	for _, fw := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, m := fw.resend(ctx, run, clients, per)
			mu.Lock()
			p = append(p, q...)
			sent += m
			mu.Unlock()
		}()
	}
	wg.Wait()
	return p, sent
}

func (fw *failoverWorker) resend(ctx context.Context, run *sendRun, clients []*Client, sample int64) ([]string, int64) {
	reqs := fw.a.requests
	if reqs == 0 || int64(len(fw.a.log.idx)) != reqs*fw.k {
		return nil, 0
	}
	idx := slices.Clone(fw.retried)
	for i := int64(0); i < reqs; i += max(1, reqs/sample) {
		idx = append(idx, i)
	}
	ras := make([]*allocator, len(clients))
	var p []string
	var sent int64
	for j, i := range idx {
		node := (fw.home + 1 + j) % len(clients)
		if ras[node] == nil {
			ras[node] = newAllocator(run, clients[node])
		}
		from, to := i*fw.k, (i+1)*fw.k
		sent++
		if err := ras[node].retry(ctx, fw.sendID(i), fw.rg, from, to, fw.a.log.idx[from:to]); err != nil {
			p = append(p, err.Error())
			if len(p) >= 3 {
				break
			}
		}
	}
	return p, sent
}

// failoverSendProblems checks GET /v1/sends: with a send per connection,
// each connection's send holds all its recipients; with a send per
// request, the first send of each connection and a few retried ones hold
// exactly their k recipients.
func failoverSendProblems(ctx context.Context, c *Client, run *sendRun, ws []*failoverWorker) []string {
	var p []string
	for _, fw := range ws {
		switch {
		case fw.a.requests == 0:
		case fw.perConn:
			p = append(p, sendProblems(ctx, c, run, fw.sendID(0), fw.a.requests*fw.k)...)
		default:
			p = append(p, sendProblems(ctx, c, run, fw.sendID(0), fw.k)...)
			for _, i := range fw.retried[:min(3, len(fw.retried))] {
				p = append(p, sendProblems(ctx, c, run, fw.sendID(i), fw.k)...)
			}
		}
	}
	return p
}
