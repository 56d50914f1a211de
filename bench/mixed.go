package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMixedCodes is what mixed imports before it starts, without --codes.
const DefaultMixedCodes = 2_000_000

// minTopUp is the smallest top-up of the mixed scenario's admin.
const minTopUp = 10_000

// mixedBig runs big sends one after the other (a goroutine of mixed): sends
// of --recipients in requests of --chunk until told to stop. When the list
// is dry it waits for the admin's next top-up and retries the request.
type mixedBig struct {
	a        *allocator
	sends    []*bigSend // sends started, the last one possibly cut short
	counts   []int64    // recipients that got a code in each send
	dryWaits int64
	err      error
}

func (m *mixedBig) loop(ctx context.Context, cfg *Config, run *sendRun, stop *atomic.Bool, deadline time.Time, recipients, chunk int64) {
	running := func() bool { return !stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) }
	for k := 0; running(); k++ {
		s := &bigSend{
			id: fmt.Sprintf("bench-%s-mb%d", run.runID, k),
			rg: bigRcpt(cfg, fmt.Sprintf("m%d.", k)),
			n:  recipients,
		}
		m.sends = append(m.sends, s)
		m.counts = append(m.counts, 0)
		for from := int64(0); from < s.n && running(); {
			to := min(from+chunk, s.n)
			_, err := m.a.allocate(ctx, s.id, s.rg, from, to, nil)
			if isDry(err) {
				m.dryWaits++
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				m.err = err
				stop.Store(true)
				return
			}
			m.counts[k] += to - from
			from = to
		}
	}
}

// mixedAdmin tops the list up every interval and reads its counts.
type mixedAdmin struct {
	topups, topupCodes int64
	topupLat, readLat  Latencies
	problems           []string
	err                error
}

func (m *mixedAdmin) loop(ctx context.Context, c *Client, run *sendRun, stop *atomic.Bool, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var prevUsed int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if stop.Load() {
			return
		}
		t0 := time.Now()
		l, err := c.GetList(ctx, run.listID)
		if err != nil {
			m.err = fmt.Errorf("admin: GET list: %w", err)
			stop.Store(true)
			return
		}
		m.readLat.Add(time.Since(t0))
		for _, p := range countsProblems(l) {
			m.problems = append(m.problems, "during the run: "+p)
		}
		if l.Added != run.imported {
			m.problems = append(m.problems, fmt.Sprintf("during the run: GET list: added = %d, want %d (codes imported so far)", l.Added, run.imported))
		}
		// Keep about two intervals of consumption available.
		amount := max(int64(minTopUp), 2*(l.Used-prevUsed)-l.Available)
		prevUsed = l.Used
		if stop.Load() {
			return
		}
		r, d, err := c.TopUp(ctx, run.listID, run.g, uint64(run.imported), uint64(amount))
		if err != nil {
			m.err = fmt.Errorf("admin: top-up of %d codes: %w", amount, err)
			stop.Store(true)
			return
		}
		m.topupLat.Add(d)
		if r.Imported != amount || r.Duplicates != 0 {
			m.problems = append(m.problems, fmt.Sprintf("top-up of %d new codes: imported %d, duplicates %d", amount, r.Imported, r.Duplicates))
		}
		run.imported += amount
		m.topups++
		m.topupCodes += amount
	}
}

// RunMixed is the mixed scenario: for --duration, one goroutine makes big
// sends (requests of --chunk), --conc make small sends, and an admin tops
// the list up every second and reads its counts.
func RunMixed(ctx context.Context, env *Env) (*Result, error) {
	cfg := env.Cfg
	c := env.Client
	codes := int64(DefaultMixedCodes)
	if cfg.CodesSet {
		codes = cfg.Codes
	}
	run, err := setupSends(ctx, env, "mixed", codes)
	if err != nil {
		return nil, err
	}
	every := cfg.TopUpEvery
	if every <= 0 {
		every = time.Second
	}
	perConn := cfg.SendPer == SendPerConn
	big := &mixedBig{a: newAllocator(run, env.connClient(0))}
	ws := make([]*smallWorker, cfg.Conc)
	for w := range ws {
		ws[w] = newSmallWorker(run, env.connClient(w+1), "ms", w, perConn)
	}
	admin := &mixedAdmin{}
	env.logf("mixed: %s of big sends (%d recipients, requests of %d) on 1 connection, small sends on %d, a top-up every %s",
		cfg.Duration, cfg.Recipients, cfg.Chunk, cfg.Conc, every)

	mem, err := startMemWatch(env.Procs)
	if err != nil {
		return nil, err
	}
	var stop atomic.Bool
	var dry atomic.Int64 // unused: mixed waits for top-ups instead
	var wg sync.WaitGroup
	cpu0 := takeCPU(env.Procs)
	t0 := time.Now()
	deadline := t0.Add(cfg.Duration)
	wg.Add(1)
	go func() {
		defer wg.Done()
		big.loop(ctx, cfg, run, &stop, deadline, cfg.Recipients, int64(cfg.Chunk))
	}()
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, &stop, deadline, true, &dry)
		}()
	}
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		admin.loop(ctx, c, run, &stop, every)
	}()
	wg.Wait()
	elapsed := time.Since(t0)
	stop.Store(true)
	<-adminDone
	cpu := cpuBetween(cpu0, takeCPU(env.Procs))
	memErr := mem.stop(ctx, false)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var problems []string
	for _, err := range append([]error{big.err, admin.err}, workerErrs(ws)...) {
		if err != nil {
			if err := fatal(err, &problems); err != nil {
				return nil, fmt.Errorf("mixed: %w", err)
			}
		}
	}
	if memErr != nil {
		return nil, memErr
	}
	problems = append(problems, admin.problems...)

	// Totals per kind.
	smallLat := &Latencies{}
	var smallReq, dryWaits int64
	logs := []*codeLog{&big.a.log}
	for _, w := range ws {
		smallLat.Merge(&w.a.lat)
		smallReq += w.a.requests
		dryWaits += w.dryWaits
		logs = append(logs, &w.a.log)
	}
	dryWaits += big.dryWaits
	assigned := big.a.assigned + smallReq
	requests := big.a.requests + smallReq
	all := &Latencies{}
	all.Merge(&big.a.lat)
	all.Merge(smallLat)

	led := checkLedger(run.g, run.imported, logs)
	problems = append(problems, led.problems(assigned)...)
	retryOK := "skipped"
	if len(problems) == 0 {
		rp := retryProblems(ctx, c, run, func() []string {
			var p []string
			if len(big.sends) > 0 && big.counts[0] > 0 {
				s := big.sends[0]
				to := min(int64(cfg.Chunk), big.counts[0])
				if err := newAllocator(run, c).retry(ctx, s.id, s.rg, 0, to, big.a.log.idx[:to]); err != nil {
					p = append(p, err.Error())
				}
			}
			return append(p, retrySmall(ctx, run, c, ws, retrySampleSize)...)
		})
		retryOK = okWord(len(rp) == 0)
		problems = append(problems, rp...)
		for k, s := range big.sends {
			if big.counts[k] > 0 {
				problems = append(problems, sendProblems(ctx, c, run, s.id, big.counts[k])...)
			}
		}
		problems = append(problems, smallSendProblems(ctx, c, run, ws)...)
	}
	l, err := c.GetList(ctx, run.listID)
	if err != nil {
		problems = append(problems, fmt.Sprintf("GET list at the end: %v", err))
	} else {
		problems = append(problems, listProblems(l, run.imported, assigned)...)
	}
	rep := env.checkReplicas(ctx)
	problems = append(problems, rep.problems...)

	res := &Result{Scenario: "mixed", Codes: assigned, Requests: requests, Elapsed: elapsed, Lat: all}
	var sum strings.Builder
	fmt.Fprintf(&sum, "mixed: %.1fs, %d codes = %s codes/s in %d requests | big: %d codes in %d requests = %s codes/s, request %s | small (%d connections): %d requests = %s req/s, latency %s | admin: %d top-ups of %d codes in all (%s), %d reads (%s) | dry waits %d",
		elapsed.Seconds(), assigned, humanRate(perSecond(assigned, elapsed)), requests,
		big.a.assigned, big.a.requests, humanRate(perSecond(big.a.assigned, elapsed)), latSummary(&big.a.lat),
		cfg.Conc, smallReq, humanRate(perSecond(smallReq, elapsed)), latSummary(smallLat),
		admin.topups, admin.topupCodes, latSummary(&admin.topupLat), admin.readLat.Len(), latSummary(&admin.readLat), dryWaits)
	fmt.Fprintf(&sum, " | verify: %s retry=%s list{added=%d available=%d reserved=%d used=%d withdrawn=%d}%s => %s | %s",
		led, retryOK, l.Added, l.Available, l.Reserved, l.Used, l.Withdrawn, rep.word(), okWord(len(problems) == 0), cpu)
	res.Extra = append(res.Extra,
		Field{Key: "big_codes", Value: big.a.assigned},
		Field{Key: "big_requests", Value: big.a.requests},
		Field{Key: "big_codes_per_s", Value: perSecond(big.a.assigned, elapsed), Prec: 1})
	res.Extra = append(res.Extra, latFields("big_", &big.a.lat)...)
	res.Extra = append(res.Extra,
		Field{Key: "small_requests", Value: smallReq},
		Field{Key: "small_requests_per_s", Value: perSecond(smallReq, elapsed), Prec: 2})
	res.Extra = append(res.Extra, latFields("small_", smallLat)...)
	res.Extra = append(res.Extra,
		Field{Key: "topups", Value: admin.topups},
		Field{Key: "topup_codes", Value: admin.topupCodes})
	res.Extra = append(res.Extra, latFields("topup_", &admin.topupLat)...)
	res.Extra = append(res.Extra, Field{Key: "reads", Value: int64(admin.readLat.Len())})
	res.Extra = append(res.Extra, latFields("read_", &admin.readLat)...)
	res.Extra = append(res.Extra,
		Field{Key: "dry_waits", Value: dryWaits},
		Field{Key: "conc", Value: cfg.Conc},
		Field{Key: "send_per", Value: cfg.SendPer})
	res.Extra = append(res.Extra, cpu.fields()...)
	mem.apply(res, &sum, 0)
	rep.apply(res, &sum, cfg.Target)
	res.Summary = sum.String()
	if len(problems) > 0 {
		return res, &CheckError{Scenario: "mixed", Problems: problems}
	}
	return res, nil
}

func workerErrs(ws []*smallWorker) []error {
	var e []error
	for _, w := range ws {
		e = append(e, w.err)
	}
	return e
}
