package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// listProblems checks the counts of a list after a run: added codes were
// imported, used were handed out, nothing is withdrawn or still reserved,
// and the counts add up (SPEC §1).
func listProblems(l List, added, used int64) []string {
	var p []string
	if l.Added != added {
		p = append(p, fmt.Sprintf("GET list: added = %d, want %d (codes imported)", l.Added, added))
	}
	if l.Used != used {
		p = append(p, fmt.Sprintf("GET list: used = %d, want %d (assignments made)", l.Used, used))
	}
	if l.Available != added-used {
		p = append(p, fmt.Sprintf("GET list: available = %d, want %d", l.Available, added-used))
	}
	if l.Reserved != 0 || l.Withdrawn != 0 {
		p = append(p, fmt.Sprintf("GET list: reserved = %d, withdrawn = %d, want 0 and 0", l.Reserved, l.Withdrawn))
	}
	p = append(p, countsProblems(l)...)
	return p
}

// fallbackProblems checks the list's fallback_used against the fallback
// assignments the run was answered (SPEC §4: counted there, not in used).
func fallbackProblems(l List, run *sendRun, fallbacks int64) []string {
	if l.FallbackUsed != fallbacks {
		return []string{fmt.Sprintf("GET list: fallback_used = %d, want %d (fallback assignments answered)", l.FallbackUsed, fallbacks)}
	}
	if run.fallbackCode != "" && (l.FallbackCode == nil || *l.FallbackCode != run.fallbackCode) {
		return []string{fmt.Sprintf("GET list: fallback_code %v, want %q", l.FallbackCode, run.fallbackCode)}
	}
	return nil
}

// shortageFields are the result fields of a run given --on-shortage.
func shortageFields(run *sendRun, fallbacks int64) []Field {
	if run.onShortage == "" {
		return nil
	}
	return []Field{{Key: "on_shortage", Value: run.onShortage}, {Key: "fallbacks", Value: fallbacks}}
}

// countsProblems checks the identities between the counts of a list.
func countsProblems(l List) []string {
	var p []string
	if l.Added != l.Available+l.Reserved+l.Used+l.Withdrawn {
		p = append(p, fmt.Sprintf("GET list: added %d != available %d + reserved %d + used %d + withdrawn %d",
			l.Added, l.Available, l.Reserved, l.Used, l.Withdrawn))
	}
	if l.UsedOrDeleted != l.Used+l.Withdrawn {
		p = append(p, fmt.Sprintf("GET list: used_or_deleted %d != used %d + withdrawn %d", l.UsedOrDeleted, l.Used, l.Withdrawn))
	}
	return p
}

// sendProblems checks GET /v1/sends/{id} after a run.
func sendProblems(ctx context.Context, c *Client, run *sendRun, sendID string, assigned int64) []string {
	s, err := c.GetSend(ctx, sendID)
	if err != nil {
		return []string{fmt.Sprintf("GET send %s: %v", sendID, err)}
	}
	var p []string
	if s.Assigned != assigned {
		p = append(p, fmt.Sprintf("GET send %s: assigned = %d, want %d", sendID, s.Assigned, assigned))
	}
	if s.MessageID != run.messageID || s.ListID != run.listID {
		p = append(p, fmt.Sprintf("GET send %s: message_id %q list_id %q, want %q %q", sendID, s.MessageID, s.ListID, run.messageID, run.listID))
	}
	if s.Reserved != 0 {
		p = append(p, fmt.Sprintf("GET send %s: reserved = %d after every recipient got a code, want 0", sendID, s.Reserved))
	}
	return p
}

// retryProblems retries, and checks that the retries consumed nothing: the
// list's used and available counts are unchanged.
func retryProblems(ctx context.Context, c *Client, run *sendRun, retries func() []string) []string {
	before, err := c.GetList(ctx, run.listID)
	if err != nil {
		return []string{fmt.Sprintf("GET list before the retries: %v", err)}
	}
	p := retries()
	after, err := c.GetList(ctx, run.listID)
	if err != nil {
		return append(p, fmt.Sprintf("GET list after the retries: %v", err))
	}
	if after.Used != before.Used || after.Available != before.Available {
		p = append(p, fmt.Sprintf("the retries changed the list: used %d -> %d, available %d -> %d",
			before.Used, after.Used, before.Available, after.Available))
	}
	return p
}

// fatal sorts the error of a worker: a verification failure becomes a
// problem, anything else ends the run.
func fatal(err error, problems *[]string) error {
	var re *replyError
	if errors.As(err, &re) {
		*problems = append(*problems, re.msg)
		return nil
	}
	return err
}

func latSummary(l *Latencies) string {
	return fmt.Sprintf("p50 %s p99 %s p99.9 %s max %s", fmtMS(l.Percentile(50)), fmtMS(l.Percentile(99)), fmtMS(l.Percentile(99.9)), fmtMS(l.Max()))
}

func fmtMS(d time.Duration) string { return strconv.FormatFloat(durMS(d), 'f', 2, 64) + "ms" }

func latFields(prefix string, l *Latencies) []Field {
	return []Field{
		{Key: prefix + "p50_ms", Value: durMS(l.Percentile(50)), Prec: 3},
		{Key: prefix + "p99_ms", Value: durMS(l.Percentile(99)), Prec: 3},
		{Key: prefix + "p999_ms", Value: durMS(l.Percentile(99.9)), Prec: 3},
		{Key: prefix + "max_ms", Value: durMS(l.Max()), Prec: 3},
	}
}

func okWord(ok bool) string {
	if ok {
		return "OK"
	}
	return "FAIL"
}

// bigRcpt is the recipient form of a big send: prefix<7 digits>@example.com
// (23 bytes with prefix u00.), or with --short-recipients r<7 digits> as
// peer scenario (a) has them.
func bigRcpt(cfg *Config, prefix string) rcptGen {
	if cfg.ShortRcpt {
		return rcptGen{prefix: "r", width: 7}
	}
	return rcptGen{prefix: prefix, width: 7, suffix: "@example.com"}
}

// bigSend is one send of the big-send scenario.
type bigSend struct {
	id string
	rg rcptGen
	n  int64
	a  *allocator
}

// RunBigSend is the big-send scenario: --parallel sends (one by default)
// sharing --recipients recipients, each sent in requests of --chunk.
func RunBigSend(ctx context.Context, env *Env) (*Result, error) {
	cfg := env.Cfg
	c := env.Client
	total, chunk, par := cfg.Recipients, int64(cfg.Chunk), int64(cfg.Parallel)
	codes := total
	if cfg.CodesSet {
		codes = max(codes, cfg.Codes)
	}
	run, err := setupSends(ctx, env, "big-send", codes)
	if err != nil {
		return nil, err
	}

	sends := make([]*bigSend, par)
	for p := range par {
		s := &bigSend{
			id: fmt.Sprintf("bench-%s-big-%d", run.runID, p),
			rg: bigRcpt(cfg, fmt.Sprintf("u%02d.", p)),
			n:  total / par,
			a:  newAllocator(run, env.connClient(int(p))),
		}
		if p < total%par {
			s.n++
		}
		s.a.log.idx = make([]uint32, 0, s.n)
		sends[p] = s
	}
	if cfg.Reserve {
		for _, s := range sends {
			r, err := c.OpenSend(ctx, s.id, run.messageID, s.n, run.onShortage)
			if err != nil {
				return nil, fmt.Errorf("reserving %d codes for send %s: %w", s.n, s.id, err)
			}
			if r.Reserved != s.n || r.ListID != run.listID {
				return nil, &CheckError{Scenario: "big-send", Problems: []string{
					fmt.Sprintf("PUT send %s: reserved %d on list %q, want %d on %q", s.id, r.Reserved, r.ListID, s.n, run.listID)}}
			}
		}
	}
	// The "available" of each reply is predictable with one send, or when
	// every send reserved its codes beforehand.
	expectAvail := func(assignedSoFar int64) (int64, bool) {
		switch {
		case cfg.Reserve:
			return codes - total, true
		case par == 1:
			return codes - assignedSoFar, true
		}
		return 0, false
	}

	env.logf("big-send: %d recipients in %d send(s), requests of %d, %d at once", total, par, chunk, par)
	mem, err := startMemWatch(env.Procs)
	if err != nil {
		return nil, err
	}
	var stop atomic.Bool
	errs := make([]error, par)
	var wg sync.WaitGroup
	cpu0 := takeCPU(env.Procs)
	t0 := time.Now()
	for p, s := range sends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := int64(0); from < s.n; from += chunk {
				if stop.Load() || ctx.Err() != nil {
					return
				}
				to := min(from+chunk, s.n)
				avail, err := s.a.allocate(ctx, s.id, s.rg, from, to, nil)
				if err == nil {
					if want, ok := expectAvail(s.a.assigned); ok && avail != want {
						err = &replyError{fmt.Sprintf("send %s: reply to recipients %d..%d says available %d, want %d", s.id, from, to-1, avail, want)}
					}
				}
				if err != nil {
					errs[p] = err
					stop.Store(true)
					return
				}
			}
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
	for _, err := range errs {
		if err != nil {
			if err := fatal(err, &problems); err != nil {
				return nil, fmt.Errorf("big-send: %w", err)
			}
		}
	}
	if memErr != nil {
		return nil, memErr
	}

	// Verification.
	lat := &Latencies{}
	var requests, assigned, fallbacks int64
	logs := make([]*codeLog, 0, par)
	for _, s := range sends {
		lat.Merge(&s.a.lat)
		requests += s.a.requests
		assigned += s.a.assigned
		fallbacks += s.a.fallbacks
		logs = append(logs, &s.a.log)
	}
	if len(problems) == 0 && assigned != total {
		problems = append(problems, fmt.Sprintf("%d assignments, want %d", assigned, total))
	}
	// The list holds a code for every recipient: a fallback is a code the
	// server did not hand out though it could.
	if fallbacks > 0 {
		problems = append(problems, fmt.Sprintf("%d recipients got the fallback code, though the list had a code for each", fallbacks))
	}
	drawn := assigned - fallbacks
	led := checkLedger(run.g, codes, logs)
	problems = append(problems, led.problems(drawn)...)
	retryOK := "skipped"
	if len(problems) == 0 {
		rp := retryProblems(ctx, c, run, func() []string {
			var p []string
			ra := newAllocator(run, c)
			for _, s := range sends {
				to := min(chunk, s.n)
				if err := ra.retry(ctx, s.id, s.rg, 0, to, s.a.log.idx[:to]); err != nil {
					p = append(p, err.Error())
				}
			}
			return p
		})
		retryOK = okWord(len(rp) == 0)
		problems = append(problems, rp...)
		for _, s := range sends {
			problems = append(problems, sendProblems(ctx, c, run, s.id, s.n)...)
		}
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

	var hist *Latencies
	if len(problems) == 0 && cfg.History > 0 {
		var hp []string
		hist, hp = historyLookups(ctx, c, sends, cfg.History)
		problems = append(problems, hp...)
	}

	res := &Result{Scenario: "big-send", Codes: assigned, Requests: requests, Elapsed: elapsed, Lat: lat}
	var sum strings.Builder
	fmt.Fprintf(&sum, "big-send: %d codes to %d send(s) in %d requests of %d in %.2fs = %s codes/s, %s req/s | request %s",
		assigned, par, requests, chunk, elapsed.Seconds(), humanRate(perSecond(assigned, elapsed)), humanRate(perSecond(requests, elapsed)), latSummary(lat))
	if cfg.Reserve {
		sum.WriteString(" | reserved first")
	}
	if run.onShortage != "" {
		fmt.Fprintf(&sum, " | on_shortage=%s", run.onShortage)
	}
	fmt.Fprintf(&sum, " | verify: %s retry=%s list{added=%d used=%d available=%d}%s => %s | %s",
		led, retryOK, l.Added, l.Used, l.Available, rep.word(), okWord(len(problems) == 0), cpu)
	res.Extra = append(res.Extra,
		Field{Key: "max_ms", Value: durMS(lat.Max()), Prec: 3},
		Field{Key: "chunk", Value: chunk},
		Field{Key: "parallel", Value: par},
		Field{Key: "reserve", Value: cfg.Reserve})
	res.Extra = append(res.Extra, shortageFields(run, fallbacks)...)
	if hist != nil {
		fmt.Fprintf(&sum, " | history lookup with %d assignments stored: %s", assigned, latSummary(hist))
		res.Extra = append(res.Extra, latFields("history_", hist)...)
	}
	res.Extra = append(res.Extra, cpu.fields()...)
	mem.apply(res, &sum, assigned)
	rep.apply(res, &sum, cfg.Target)
	res.Summary = sum.String()
	if len(problems) > 0 {
		return res, &CheckError{Scenario: "big-send", Problems: problems}
	}
	return res, nil
}

// historyLookups times n GET /v1/recipients/{r}/assignments of random
// recipients of the sends, one at a time, and checks each answers exactly
// the one assignment the send made.
func historyLookups(ctx context.Context, c *Client, sends []*bigSend, n int) (*Latencies, []string) {
	lat := &Latencies{}
	var problems []string
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < n && len(problems) < 10; i++ {
		s := sends[rng.Intn(len(sends))]
		r := s.rg.String(rng.Int63n(s.n))
		var out struct {
			Assignments []struct {
				SendID string `json:"send_id"`
			} `json:"assignments"`
		}
		t := time.Now()
		_, err := c.sendJSON(ctx, http.MethodGet, "/v1/recipients/"+url.PathEscape(r)+"/assignments", nil, &out, http.StatusOK)
		lat.Add(time.Since(t))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("history of %s: %v", r, err))
		case len(out.Assignments) != 1 || out.Assignments[0].SendID != s.id:
			problems = append(problems, fmt.Sprintf("history of %s: %+v, want one assignment in %s", r, out.Assignments, s.id))
		}
	}
	return lat, problems
}
