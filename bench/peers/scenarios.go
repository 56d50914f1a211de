package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// errInsufficient is a peer's answer to an allocation the list cannot cover:
// nothing was assigned.
var errInsufficient = errors.New("insufficient codes")

// store is one peer, set up to do the work coupond does for the three
// scenarios. Lists are numbered; a list holds codes in import order and
// hands them out first in, first out.
type store interface {
	// importCodes appends codes [first, first+n) to the list, in durable
	// writes of the store's own batch size, and records each write's
	// duration. The timed part of scenario (c).
	importCodes(ctx context.Context, list int, first, n uint64, lat *latencies) error
	// allocate gives each recipient of one send a code, in request order:
	// all or nothing (errInsufficient), and idempotent per (send,
	// recipient): a retry, or the same recipient twice, gets the same code.
	// Safe for concurrent use.
	allocate(ctx context.Context, list int, send string, rcpts []string) ([]string, error)
	// counts are the store's own figures for a list, to check the run.
	counts(ctx context.Context, list int) (counts, error)
	// footprint is the bytes the store uses for all lists: memory for
	// Redis, table and index files for PostgreSQL. Its kind says which.
	footprint(ctx context.Context) (int64, error)
	footprintKind() string
}

// settler is a store with work to do after a bulk import, not timed.
type settler interface {
	afterImport(ctx context.Context) error
}

func (r *runner) settle(ctx context.Context) error {
	if s, ok := r.st.(settler); ok {
		return s.afterImport(ctx)
	}
	return nil
}

// counts are what a store holds for one list.
type counts struct {
	free          int64 // codes not handed out
	assigned      int64 // assignments recorded
	distinctCodes int64 // distinct codes among them: a code given twice shows here
	distinctPairs int64 // distinct (send, recipient) among them
}

func (c counts) String() string {
	return fmt.Sprintf("server{free=%d assigned=%d distinct_codes=%d distinct_(send,recipient)=%d}", c.free, c.assigned, c.distinctCodes, c.distinctPairs)
}

// config is the workload; the defaults are the peer scenarios.
type config struct {
	importCodes int           // (c): codes imported, timed
	recipients  int           // (a): recipients of the one big send
	chunk       int           // (a): recipients per call
	smallCodes  int           // (b): codes imported first (not timed)
	conc        int           // (b): concurrent clients
	duration    time.Duration // (b)
	retries     int           // (b): requests sent again to check idempotency
}

// runner drives one store through the scenarios.
type runner struct {
	st     store
	peer   string
	setup  string // config of the result lines
	comm   string // process name of the peer's server, for the CPU split
	cfg    config
	nextAt map[int]uint64 // next code index to import, per list
}

// the lists: (c) and (a) share list 1, as coupond's big-send imports what
// it hands out; (b) has its own so that its codes come after (a)'s.
const (
	listBig   = 1
	listSmall = 2
	// smallFirst keeps list 2's codes apart from list 1's.
	smallFirst = 1 << 40
)

func newRunner(st store, peer, setup, comm string, cfg config) *runner {
	return &runner{st: st, peer: peer, setup: setup, comm: comm, cfg: cfg, nextAt: map[int]uint64{listBig: 0, listSmall: smallFirst}}
}

func (r *runner) newResult(scenario string) *result {
	return &result{scenario: scenario, peer: r.peer, config: r.setup}
}

// check collects failed checks.
type check []string

func (c *check) want(ok bool, format string, a ...any) {
	if !ok {
		*c = append(*c, fmt.Sprintf(format, a...))
	}
}

func (c check) err() error {
	if len(c) == 0 {
		return nil
	}
	return errors.New("verify failed: " + strings.Join(c, "; "))
}

func (c check) verdict() string {
	if len(c) == 0 {
		return "OK"
	}
	return "FAIL"
}

// importScenario is (c): import the codes into list 1, timed.
func (r *runner) importScenario(ctx context.Context) (*result, error) {
	n := uint64(r.cfg.importCodes)
	before, err := r.st.counts(ctx, listBig)
	if err != nil {
		return nil, err
	}
	foot0, err := r.st.footprint(ctx)
	if err != nil {
		return nil, err
	}
	res := r.newResult("import")
	c0 := sampleCPU(r.comm)
	t0 := time.Now()
	if err := r.st.importCodes(ctx, listBig, r.nextAt[listBig], n, &res.lat); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	res.elapsed = time.Since(t0)
	cpu := cpuBetween(c0, sampleCPU(r.comm))
	r.nextAt[listBig] += n
	res.codes, res.requests = int64(n), int64(len(res.lat))
	if err := r.settle(ctx); err != nil {
		return nil, err
	}
	after, err := r.st.counts(ctx, listBig)
	if err != nil {
		return nil, err
	}
	foot1, err := r.st.footprint(ctx)
	if err != nil {
		return nil, err
	}
	var ck check
	ck.want(after.free-before.free == int64(n), "free codes grew by %d, want %d", after.free-before.free, n)
	ck.want(after.assigned == before.assigned, "assignments moved during an import")
	perCode := float64(foot1-foot0) / float64(n)
	res.extra = append(res.extra, field{r.st.footprintKind() + "_bytes_per_code", perCode, 1})
	res.extra = append(res.extra, cpuFields(cpu)...)
	res.summary = fmt.Sprintf("%s import: %d codes in %.2fs = %s codes/s, %d writes (p50 %.2fms p99 %.2fms) | verify: %s => %s | %s %.1f B/unused code | %s",
		res.label(), n, res.elapsed.Seconds(), human(perSecond(res.codes, res.elapsed)), res.requests,
		msOf(res.lat.percentile(50)), msOf(res.lat.percentile(99)), after, ck.verdict(), r.st.footprintKind(), perCode, cpu)
	return res, ck.err()
}

// ensureFree imports (not timed) what list needs to hold want free codes.
func (r *runner) ensureFree(ctx context.Context, list int, want int64) error {
	c, err := r.st.counts(ctx, list)
	if err != nil {
		return err
	}
	if c.free >= want {
		return nil
	}
	n := uint64(want - c.free)
	var lat latencies
	if err := r.st.importCodes(ctx, list, r.nextAt[list], n, &lat); err != nil {
		return fmt.Errorf("setup import: %w", err)
	}
	r.nextAt[list] += n
	return r.settle(ctx)
}

func bigRecipient(i int) string { return fmt.Sprintf("r%07d", i) }

// bigSend is (a): one send of the recipients r0000000... in calls of chunk,
// one call at a time, on list 1.
func (r *runner) bigSend(ctx context.Context) (*result, error) {
	n := r.cfg.recipients
	if err := r.ensureFree(ctx, listBig, int64(n)); err != nil {
		return nil, err
	}
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = bigRecipient(i)
	}
	before, err := r.st.counts(ctx, listBig)
	if err != nil {
		return nil, err
	}
	foot0, err := r.st.footprint(ctx)
	if err != nil {
		return nil, err
	}
	const send = "big-1"
	res := r.newResult("big-send")
	seen := make(map[string]struct{}, n)
	var first []string
	assigned := 0
	c0 := sampleCPU(r.comm)
	t0 := time.Now()
	for s := 0; s < n; s += r.cfg.chunk {
		e := min(s+r.cfg.chunk, n)
		tc := time.Now()
		got, err := r.st.allocate(ctx, listBig, send, rcpts[s:e])
		res.lat = append(res.lat, time.Since(tc))
		if err != nil {
			return nil, fmt.Errorf("big send, recipients %d..%d: %w", s, e-1, err)
		}
		if s == 0 {
			first = got
		}
		for _, c := range got {
			seen[c] = struct{}{}
		}
		assigned += len(got)
	}
	res.elapsed = time.Since(t0)
	cpu := cpuBetween(c0, sampleCPU(r.comm))
	res.codes, res.requests = int64(assigned), int64(len(res.lat))
	foot1, err := r.st.footprint(ctx)
	if err != nil {
		return nil, err
	}
	after, err := r.st.counts(ctx, listBig)
	if err != nil {
		return nil, err
	}

	var ck check
	ck.want(assigned == n, "%d codes for %d recipients", assigned, n)
	ck.want(len(seen) == assigned, "distinct codes %d != assignments %d", len(seen), assigned)
	ck.want(after.assigned-before.assigned == int64(n), "server assignments grew by %d, want %d", after.assigned-before.assigned, n)
	ck.want(after.distinctCodes == after.assigned && after.distinctPairs == after.assigned, "server has %s", after)
	ck.want(before.free-after.free == int64(n), "free codes fell by %d, want %d", before.free-after.free, n)
	// A retry of the first call gets the same codes and takes none.
	retryOK := r.retry(ctx, listBig, send, rcpts[:len(first)], first, after)
	ck.want(retryOK, "a retry of the first call did not get the same codes, or took codes")

	perAssign := float64(foot1-foot0) / float64(max(n, 1))
	res.extra = append(res.extra,
		field{"recipients_per_request", r.cfg.chunk, 0},
		field{"retry_ok", retryOK, 0},
		field{r.st.footprintKind() + "_bytes_per_assignment", perAssign, 1})
	res.extra = append(res.extra, cpuFields(cpu)...)
	res.summary = fmt.Sprintf("%s big-send: %d recipients in %d calls of %d in %.2fs = %s codes/s, %.1f calls/s | call p50 %.2fms p99 %.2fms max %.2fms | verify: assignments=%d distinct_codes=%d %s retry=%s => %s | %s %.1f B/assignment | %s",
		res.label(), n, res.requests, r.cfg.chunk, res.elapsed.Seconds(), human(perSecond(res.codes, res.elapsed)), perSecond(res.requests, res.elapsed),
		msOf(res.lat.percentile(50)), msOf(res.lat.percentile(99)), msOf(res.lat.percentile(100)),
		assigned, len(seen), after, okWord(retryOK), ck.verdict(), r.st.footprintKind(), perAssign, cpu)
	return res, ck.err()
}

// retry sends one call again and checks it gets want and moves no count.
func (r *runner) retry(ctx context.Context, list int, send string, rcpts, want []string, before counts) bool {
	got, err := r.st.allocate(ctx, list, send, rcpts)
	if err != nil || len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	after, err := r.st.counts(ctx, list)
	return err == nil && after == before
}

func okWord(ok bool) string {
	if ok {
		return "OK"
	}
	return "FAIL"
}

// smallCall is one request of (b), kept to check and retry it.
type smallCall struct{ send, rcpt, code string }

// smallSends is (b): conc clients, each making one-recipient requests with a
// new send every request, for the duration, on list 2.
func (r *runner) smallSends(ctx context.Context) (*result, error) {
	if err := r.ensureFree(ctx, listSmall, int64(r.cfg.smallCodes)); err != nil {
		return nil, err
	}
	before, err := r.st.counts(ctx, listSmall)
	if err != nil {
		return nil, err
	}
	type worker struct {
		lat   latencies
		calls []smallCall
		err   error
	}
	workers := make([]worker, r.cfg.conc)
	var stop, ranDry atomic.Bool
	var wg sync.WaitGroup
	c0 := sampleCPU(r.comm)
	t0 := time.Now()
	deadline := t0.Add(r.cfg.duration)
	for w := range workers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			wk := &workers[w]
			for i := 0; !stop.Load() && time.Now().Before(deadline); i++ {
				call := smallCall{send: fmt.Sprintf("b-%02d-%d", w, i), rcpt: fmt.Sprintf("u%02d.%07d@example.com", w, i)}
				tc := time.Now()
				got, err := r.st.allocate(ctx, listSmall, call.send, []string{call.rcpt})
				if errors.Is(err, errInsufficient) {
					ranDry.Store(true)
					stop.Store(true)
					return
				}
				wk.lat = append(wk.lat, time.Since(tc))
				if err != nil {
					wk.err = err
					stop.Store(true)
					return
				}
				call.code = got[0]
				wk.calls = append(wk.calls, call)
			}
		}(w)
	}
	wg.Wait()
	res := r.newResult("small-sends")
	res.elapsed = time.Since(t0)
	cpu := cpuBetween(c0, sampleCPU(r.comm))
	seen := make(map[string]struct{})
	for w := range workers {
		if err := workers[w].err; err != nil {
			return nil, fmt.Errorf("small sends, client %d: %w", w, err)
		}
		res.lat = append(res.lat, workers[w].lat...)
		for _, c := range workers[w].calls {
			seen[c.code] = struct{}{}
			res.codes++
		}
	}
	res.requests = res.codes
	after, err := r.st.counts(ctx, listSmall)
	if err != nil {
		return nil, err
	}

	var ck check
	ck.want(int64(len(seen)) == res.codes, "distinct codes %d != assignments %d", len(seen), res.codes)
	ck.want(after.assigned-before.assigned == res.codes, "server assignments grew by %d, want %d", after.assigned-before.assigned, res.codes)
	ck.want(after.distinctCodes == after.assigned && after.distinctPairs == after.assigned, "server has %s", after)
	ck.want(before.free-after.free == res.codes, "free codes fell by %d, want %d", before.free-after.free, res.codes)
	// Retries of a sample spread over the clients get the same codes and
	// take none.
	retried, retryOK := 0, true
	per := r.cfg.retries/max(r.cfg.conc, 1) + 1
	for w := range workers {
		for i, c := range workers[w].calls {
			if i >= per || retried >= r.cfg.retries {
				break
			}
			got, err := r.st.allocate(ctx, listSmall, c.send, []string{c.rcpt})
			if err != nil || got[0] != c.code {
				retryOK = false
			}
			retried++
		}
	}
	if again, err := r.st.counts(ctx, listSmall); err != nil || again != after {
		retryOK = false
	}
	ck.want(retryOK, "a retried request did not get the same code, or took codes")

	dry := ""
	if ranDry.Load() {
		dry = fmt.Sprintf(" | STOPPED EARLY: the list ran dry after %.1fs (raise -small-codes)", res.elapsed.Seconds())
	}
	res.extra = append(res.extra,
		field{"conc", r.cfg.conc, 0},
		field{"retry_ok", retryOK, 0},
		field{"ran_dry", ranDry.Load(), 0})
	res.extra = append(res.extra, cpuFields(cpu)...)
	res.summary = fmt.Sprintf("%s small-sends: %d clients x %.1fs: %d requests = %s req/s (= codes/s), a send per request | latency p50 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms | verify: assignments=%d distinct_codes=%d %s retry(%d)=%s => %s%s | %s",
		res.label(), r.cfg.conc, res.elapsed.Seconds(), res.codes, human(perSecond(res.codes, res.elapsed)),
		msOf(res.lat.percentile(50)), msOf(res.lat.percentile(99)), msOf(res.lat.percentile(99.9)), msOf(res.lat.percentile(100)),
		res.codes, len(seen), after, retried, okWord(retryOK), ck.verdict(), dry, cpu)
	return res, ck.err()
}
