package bench

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Memory sampling of the import and send scenarios (variables so that the
// tests can shorten them).
var (
	settleDelay  = 1 * time.Second        // wait after the upload before reading RSS
	settleWindow = 2 * time.Second        // then take the min of reads over this
	settleEvery  = 200 * time.Millisecond // one read every
	sampleEvery  = 25 * time.Millisecond  // RSS polling during the upload
)

// ImportUpload streams codes [0, codes) of length codeLen as one CSV upload
// creating a new list called name. It returns the reply and the request time.
func ImportUpload(ctx context.Context, c *Client, name string, codes int64, codeLen int) (CreateImportReply, time.Duration, error) {
	g, err := NewCodeGen(codeLen)
	if err != nil {
		return CreateImportReply{}, 0, err
	}
	r, err := NewCodeReader(g, 0, uint64(codes))
	if err != nil {
		return CreateImportReply{}, 0, err
	}
	return c.CreateWithCSV(ctx, name, r, CSVSize(g, uint64(codes)))
}

// CheckImport verifies the reply of an import of codes fresh unique codes
// into a new list, and the list as read back; it returns the problems found.
func CheckImport(codes int64, reply CreateImportReply, readBack *List) []string {
	var p []string
	if reply.List.ID == "" {
		p = append(p, `reply has no "list"."id"`)
	}
	if reply.Import.Imported != codes {
		p = append(p, fmt.Sprintf("import.imported = %d, want %d", reply.Import.Imported, codes))
	}
	if reply.Import.Duplicates != 0 {
		p = append(p, fmt.Sprintf("import.duplicates = %d, want 0 (the generated codes are unique)", reply.Import.Duplicates))
	}
	if reply.Import.Size != codes {
		p = append(p, fmt.Sprintf("import.size = %d, want %d", reply.Import.Size, codes))
	}
	if readBack != nil {
		if readBack.Added != codes {
			p = append(p, fmt.Sprintf("GET list: added = %d, want %d", readBack.Added, codes))
		}
		if readBack.Available != codes {
			p = append(p, fmt.Sprintf("GET list: available = %d, want %d", readBack.Available, codes))
		}
	}
	return p
}

// RunImport is the import scenario: one streamed upload of --codes codes.
func RunImport(ctx context.Context, env *Env) (*Result, error) {
	cfg := env.Cfg
	c := env.Client
	codes := cfg.Codes

	// A first authenticated call: checks the token and opens the connection,
	// so neither is part of the measured upload.
	if _, err := c.Lists(ctx); err != nil {
		return nil, fmt.Errorf("GET /v1/lists before the import: %w", err)
	}

	mem, err := startMemWatch(env.Procs)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	g, _ := NewCodeGen(cfg.CodeLen)
	size := CSVSize(g, uint64(codes))
	env.logf("import: streaming %d codes of %d chars (%.1f MiB) as list %q to %s",
		codes, cfg.CodeLen, MiB(size), name, c.base)
	reply, elapsed, err := ImportUpload(ctx, c, name, codes, cfg.CodeLen)
	if err != nil {
		mem.stopSamplers()
		return nil, fmt.Errorf("import upload: %w", err)
	}
	if err := mem.stop(ctx, true); err != nil {
		return nil, fmt.Errorf("after the import: %w", err)
	}
	var problems []string
	var readBack *List
	if reply.List.ID != "" {
		l, err := c.GetList(ctx, reply.List.ID)
		if err != nil {
			problems = append(problems, fmt.Sprintf("reading the list back: %v", err))
		} else {
			readBack = &l
		}
	}
	problems = append(problems, CheckImport(codes, reply, readBack)...)
	rep := env.checkReplicas(ctx)
	problems = append(problems, rep.problems...)

	lat := &Latencies{}
	lat.Add(elapsed)
	res := &Result{
		Scenario: "import",
		Codes:    codes,
		Requests: 1,
		Elapsed:  elapsed,
		Lat:      lat,
	}
	var sum strings.Builder
	rate := perSecond(codes, elapsed)
	fmt.Fprintf(&sum, "import: %d codes in %.2fs = %s codes/s (%.1f MiB/s)", codes, elapsed.Seconds(), humanRate(rate), MiB(size)/elapsed.Seconds())

	var memExtra []Field // the raw readings, after the other extras
	if mem != nil {
		growth := float64(mem.after-mem.before) / float64(codes)
		res.PeakRSS, res.HasPeakRSS = mem.peak, true
		res.Extra = append(res.Extra, Field{Key: "server_rss_growth_bytes_per_code", Value: growth, Prec: 2})
		fmt.Fprintf(&sum, "%s, %+.1f B/code", mem.summary(), growth)
		memExtra = []Field{
			{Key: "server_rss_before_mib", Value: MiB(mem.before), Prec: 1},
			{Key: "server_rss_after_mib", Value: MiB(mem.after), Prec: 1},
		}
	}
	if cfg.Restart && env.Node != nil && len(problems) == 0 {
		rs, err := restartAndCheck(ctx, env, reply.List.ID, codes)
		if err != nil {
			problems = append(problems, err.Error())
		}
		if rs.ready > 0 {
			res.Extra = append(res.Extra,
				Field{Key: "restart_ready_s", Value: rs.ready.Seconds(), Prec: 3},
				Field{Key: "shutdown_s", Value: rs.stop.Seconds(), Prec: 3})
			fmt.Fprintf(&sum, " | restart to ready %.2fs (SIGTERM to exit %.2fs", rs.ready.Seconds(), rs.stop.Seconds())
			if rs.rss > 0 {
				res.Extra = append(res.Extra, Field{Key: "restart_rss_mib", Value: MiB(rs.rss), Prec: 1})
				fmt.Fprintf(&sum, ", RSS %.0f MiB", MiB(rs.rss))
			}
			sum.WriteString(")")
		}
	} else if cfg.Restart && len(problems) > 0 {
		env.logf("import: restart skipped: the import did not verify")
	}
	res.Extra = append(res.Extra, memExtra...)
	if rep.nodes > 0 {
		fmt.Fprintf(&sum, " | verify:%s", rep.word())
	}
	rep.apply(res, &sum, cfg.Target)
	res.Summary = sum.String()
	if len(problems) > 0 {
		return res, &CheckError{Scenario: "import", Problems: problems}
	}
	return res, nil
}

type restartStats struct {
	stop  time.Duration // SIGTERM to exit
	ready time.Duration // start to /readyz 200 and counts read back
	rss   int64         // RSS of the restarted node once ready
}

// restartAndCheck stops the spawned node with SIGTERM, starts it again on
// the same data folder and measures the time until /readyz answers 200 and
// the list's counts read back equal to codes.
func restartAndCheck(ctx context.Context, env *Env, listID string, codes int64) (restartStats, error) {
	var st restartStats
	n := env.Node
	env.logf("import: restarting coupond (SIGTERM, then start on %s)", n.DataDir)
	env.Client.CloseIdle() // idle keep-alive connections must not slow the shutdown
	n.probe.CloseIdle()
	stop, stopErr := n.Stop(StopGrace)
	st.stop = stop
	t0 := time.Now()
	if err := n.Start(); err != nil {
		return st, fmt.Errorf("restart: %w", err)
	}
	env.Procs = []Proc{{Name: n.ID, PID: n.PID()}}
	if err := n.WaitReady(ctx, ReadyTimeout); err != nil {
		return st, fmt.Errorf("restart: %w", err)
	}
	deadline := t0.Add(ReadyTimeout)
	var last string
	for {
		l, err := env.Client.GetList(ctx, listID)
		if err == nil && l.Added == codes && l.Available == codes {
			break
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("added %d, available %d, want %d", l.Added, l.Available, codes)
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("restart: the list did not read back within %s: %s", ReadyTimeout, last)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(ReadyPoll):
		}
	}
	st.ready = time.Since(t0)
	if m, err := ReadMem(n.PID()); err == nil {
		st.rss = m.RSS
	}
	if stopErr != nil {
		return st, fmt.Errorf("restart: %w", stopErr)
	}
	return st, nil
}
