package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Send-id modes of the small sends (--send-per).
const (
	SendPerRequest = "request" // a new send for every request, as peer scenario (b) does
	SendPerConn    = "conn"    // one send per connection
)

// smallWorker is one connection of the small sends: one recipient per
// request, recipient i of worker w is u<w>.<i>@example.com.
type smallWorker struct {
	a          *allocator
	rg         rcptGen
	sendPrefix string
	perConn    bool
	dryWaits   int64
	fbFrom     int64 // the first request answered with the fallback code (-1: none)
	err        error
}

func newSmallWorker(run *sendRun, c *Client, tag string, w int, perConn bool) *smallWorker {
	return &smallWorker{
		a:          newAllocator(run, c),
		rg:         rcptGen{prefix: fmt.Sprintf("u%02d.", w), width: 7, suffix: "@example.com"},
		sendPrefix: fmt.Sprintf("bench-%s-%s%d", run.runID, tag, w),
		perConn:    perConn,
		fbFrom:     -1,
	}
}

// sendID is the send of request i.
func (s *smallWorker) sendID(i int64) string {
	if s.perConn {
		return s.sendPrefix
	}
	return s.sendPrefix + "-" + strconv.FormatInt(i, 10)
}

// loop sends one request after the other until stop is set or the
// deadline passes. When the list is dry (409 insufficient_codes) it either
// waits and retries (waitOnDry) or records the time in dry and stops all.
// Under the fallback policy a dry list answers with the fallback code: the
// time is recorded in dry and the run goes on; from then on every answer
// must be the fallback (nothing tops the list up).
func (s *smallWorker) loop(ctx context.Context, stop *atomic.Bool, deadline time.Time, waitOnDry bool, dry *atomic.Int64) {
	for !stop.Load() && ctx.Err() == nil && time.Now().Before(deadline) {
		i := s.a.requests
		fb := s.a.fallbacks
		_, err := s.a.allocate(ctx, s.sendID(i), s.rg, i, i+1, nil)
		if err == nil {
			switch {
			case s.a.fallbacks > fb && s.fbFrom < 0:
				s.fbFrom = i
				dry.CompareAndSwap(0, time.Now().UnixNano())
			case s.a.fallbacks == fb && s.fbFrom >= 0:
				err = &replyError{fmt.Sprintf("send %s: a code was handed out after request %d got the fallback, on a list nothing tops up", s.sendID(i), s.fbFrom)}
			default:
				continue
			}
			if err == nil {
				continue
			}
		}
		if isDry(err) {
			if waitOnDry {
				s.dryWaits++
				time.Sleep(10 * time.Millisecond)
				continue
			}
			dry.CompareAndSwap(0, time.Now().UnixNano())
			stop.Store(true)
			return
		}
		s.err = err
		stop.Store(true)
		return
	}
}

// retrySample retries up to k requests spread over the worker's run and
// checks they get the same code again; the first request answered with
// the fallback, if any, must get it again.
func (s *smallWorker) retrySample(ctx context.Context, run *sendRun, c *Client, k int64) []string {
	ra := newAllocator(run, c)
	var p []string
	n := s.a.requests
	if s.fbFrom >= 0 {
		if err := ra.retryFallback(ctx, s.sendID(s.fbFrom), s.rg, s.fbFrom, s.fbFrom+1); err != nil {
			p = append(p, err.Error())
		}
		n = s.fbFrom // the requests before it drew codes, one each
	}
	if n == 0 || int64(len(s.a.log.idx)) != n {
		return p
	}
	step := max(1, n/k)
	for i := int64(0); i < n; i += step {
		if err := ra.retry(ctx, s.sendID(i), s.rg, i, i+1, s.a.log.idx[i:i+1]); err != nil {
			p = append(p, err.Error())
			if len(p) >= 3 {
				break
			}
		}
	}
	return p
}

// retrySmall retries a sample of about total requests over the workers,
// the workers in parallel.
func retrySmall(ctx context.Context, run *sendRun, c *Client, ws []*smallWorker, total int64) []string {
	var mu sync.Mutex
	var p []string
	var wg sync.WaitGroup
	per := max(1, total/int64(max(1, len(ws))))
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := w.retrySample(ctx, run, c, per)
			mu.Lock()
			p = append(p, q...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return p
}

// smallSendProblems checks GET /v1/sends of the small sends: each worker's
// send with --send-per conn, else the first send of each worker.
func smallSendProblems(ctx context.Context, c *Client, run *sendRun, ws []*smallWorker) []string {
	var p []string
	for _, w := range ws {
		switch {
		case w.a.requests == 0:
		case w.perConn:
			p = append(p, sendProblems(ctx, c, run, w.sendID(0), w.a.requests)...)
		default:
			p = append(p, sendProblems(ctx, c, run, w.sendID(0), 1)...)
		}
	}
	return p
}

// DefaultSmallCodes is what small-sends imports without --codes.
const DefaultSmallCodes = 3_000_000

// retrySampleSize is how many small requests are retried to check
// idempotency (as peer scenario (b) does; a variable for the tests).
var retrySampleSize int64 = 1000

// RunSmallSends is the small-sends scenario: --conc connections, each
// sending one recipient per request for --duration.
func RunSmallSends(ctx context.Context, env *Env) (*Result, error) {
	cfg := env.Cfg
	c := env.Client
	codes := int64(DefaultSmallCodes)
	if cfg.CodesSet {
		codes = cfg.Codes
	}
	run, err := setupSends(ctx, env, "small-sends", codes)
	if err != nil {
		return nil, err
	}
	perConn := cfg.SendPer == SendPerConn
	ws := make([]*smallWorker, cfg.Conc)
	for w := range ws {
		ws[w] = newSmallWorker(run, env.connClient(w), "s", w, perConn)
		ws[w].a.log.idx = make([]uint32, 0, 1<<14)
	}
	env.logf("small-sends: %d connections for %s, one recipient per request, a send per %s", cfg.Conc, cfg.Duration, cfg.SendPer)

	mem, err := startMemWatch(env.Procs)
	if err != nil {
		return nil, err
	}
	var stop atomic.Bool
	var dry atomic.Int64
	var wg sync.WaitGroup
	cpu0 := takeCPU(env.Procs)
	t0 := time.Now()
	deadline := t0.Add(cfg.Duration)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, &stop, deadline, false, &dry)
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := cpuBetween(cpu0, takeCPU(env.Procs))
	memErr := mem.stop(ctx, true)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var problems []string
	for _, w := range ws {
		if w.err != nil {
			if err := fatal(w.err, &problems); err != nil {
				return nil, fmt.Errorf("small-sends: %w", err)
			}
		}
	}
	if memErr != nil {
		return nil, memErr
	}

	lat := &Latencies{}
	var requests, fallbacks int64
	logs := make([]*codeLog, 0, len(ws))
	for _, w := range ws {
		lat.Merge(&w.a.lat)
		requests += w.a.requests
		fallbacks += w.a.fallbacks
		logs = append(logs, &w.a.log)
	}
	drawn := requests - fallbacks // one recipient a request
	led := checkLedger(run.g, codes, logs)
	problems = append(problems, led.problems(drawn)...)
	retryOK := "skipped"
	if len(problems) == 0 {
		rp := retryProblems(ctx, c, run, func() []string { return retrySmall(ctx, run, c, ws, retrySampleSize) })
		retryOK = okWord(len(rp) == 0)
		problems = append(problems, rp...)
		problems = append(problems, smallSendProblems(ctx, c, run, ws)...)
	}
	l, err := c.GetList(ctx, run.listID)
	if err != nil {
		problems = append(problems, fmt.Sprintf("GET list at the end: %v", err))
	} else {
		problems = append(problems, listProblems(l, codes, drawn)...)
		problems = append(problems, fallbackProblems(l, run, fallbacks)...)
	}
	rep := env.checkReplicas(ctx)
	problems = append(problems, rep.problems...)

	res := &Result{Scenario: "small-sends", Codes: requests, Requests: requests, Elapsed: elapsed, Lat: lat}
	var sum strings.Builder
	fmt.Fprintf(&sum, "small-sends: %d connections x %.1fs: %d requests = %s req/s (= codes/s), a send per %s | latency %s",
		cfg.Conc, elapsed.Seconds(), requests, humanRate(perSecond(requests, elapsed)), cfg.SendPer, latSummary(lat))
	if run.onShortage != "" {
		fmt.Fprintf(&sum, " | on_shortage=%s", run.onShortage)
	}
	switch at := dry.Load(); {
	case at != 0 && fallbacks > 0:
		fmt.Fprintf(&sum, " | the list ran dry after %.1fs: %d requests after that got the fallback code", time.Unix(0, at).Sub(t0).Seconds(), fallbacks)
		env.logf("small-sends: the list of %d codes ran dry after %.1fs: %d requests got the fallback code (raise --codes to time draws only)",
			codes, time.Unix(0, at).Sub(t0).Seconds(), fallbacks)
	case at != 0:
		fmt.Fprintf(&sum, " | STOPPED EARLY: the list ran dry (409 insufficient_codes) after %.1fs; import more with --codes (now %d)",
			time.Unix(0, at).Sub(t0).Seconds(), codes)
		env.logf("small-sends: the list of %d codes ran dry after %.1fs: the run stopped early (raise --codes)", codes, time.Unix(0, at).Sub(t0).Seconds())
	}
	fmt.Fprintf(&sum, " | verify: %s retry=%s list{added=%d used=%d available=%d}%s => %s | %s",
		led, retryOK, l.Added, l.Used, l.Available, rep.word(), okWord(len(problems) == 0), cpu)
	res.Extra = append(res.Extra,
		Field{Key: "max_ms", Value: durMS(lat.Max()), Prec: 3},
		Field{Key: "conc", Value: cfg.Conc},
		Field{Key: "send_per", Value: cfg.SendPer},
		Field{Key: "ran_dry", Value: dry.Load() != 0})
	res.Extra = append(res.Extra, shortageFields(run, fallbacks)...)
	res.Extra = append(res.Extra, cpu.fields()...)
	mem.apply(res, &sum, requests)
	rep.apply(res, &sum, cfg.Target)
	res.Summary = sum.String()
	if len(problems) > 0 {
		return res, &CheckError{Scenario: "small-sends", Problems: problems}
	}
	return res, nil
}
