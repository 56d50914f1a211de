package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSnap is a reading of the CPU time used by the machine, by this
// process (the harness) and by the server processes (when their pids are
// known; a cluster's nodes are summed).
type cpuSnap struct {
	t           time.Time
	busy, total float64 // /proc/stat ticks, all CPUs
	self        float64 // seconds
	server      float64 // seconds, all server processes (-1: unknown)
	servers     int     // how many server processes
}

const clockTicks = 100.0 // USER_HZ on Linux

func takeCPU(procs []Proc) cpuSnap {
	s := cpuSnap{t: time.Now(), server: -1, servers: len(procs)}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			s.total += v
			if i != 4 && i != 5 { // idle, iowait
				s.busy += v
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	}
	if len(procs) > 0 {
		s.server = 0
	}
	for _, p := range procs {
		t, ok := procCPU(p.PID)
		if !ok {
			s.server = -1
			break
		}
		s.server += t
	}
	return s
}

// procCPU reads the user + system CPU seconds of a process.
func procCPU(pid int) (float64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	st := string(b)
	r := strings.LastIndexByte(st, ')')
	if r < 0 {
		return 0, false
	}
	f := strings.Fields(st[r+1:]) // f[11] utime, f[12] stime
	if len(f) <= 12 {
		return 0, false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / clockTicks, true
}

// cpuUse is the CPU used between two snaps, in cores (CPU seconds per
// second of wall time).
type cpuUse struct {
	cores            int
	machine, harness float64
	server           float64 // summed over the nodes of a cluster
	haveServer       bool
	servers          int
}

func cpuBetween(a, b cpuSnap) cpuUse {
	u := cpuUse{cores: runtime.NumCPU(), servers: b.servers}
	wall := b.t.Sub(a.t).Seconds()
	if wall <= 0 {
		return u
	}
	if b.total > a.total {
		u.machine = (b.busy - a.busy) / (b.total - a.total) * float64(u.cores)
	}
	u.harness = (b.self - a.self) / wall
	if a.server >= 0 && b.server >= 0 {
		u.server, u.haveServer = (b.server-a.server)/wall, true
	}
	return u
}

func (u cpuUse) String() string {
	s := fmt.Sprintf("cpu: %.2f/%d cores busy = couponbench %.2f", u.machine, u.cores, u.harness)
	if u.haveServer {
		name := "coupond"
		if u.servers > 1 {
			name = fmt.Sprintf("coupond (%d nodes)", u.servers)
		}
		s += fmt.Sprintf(" + %s %.2f + other %.2f", name, u.server, u.machine-u.harness-u.server)
	}
	return s
}

func (u cpuUse) fields() []Field {
	f := []Field{
		{Key: "machine_busy_cores", Value: u.machine, Prec: 2},
		{Key: "harness_cpu_cores", Value: u.harness, Prec: 2},
	}
	if u.haveServer {
		f = append(f, Field{Key: "server_cpu_cores", Value: u.server, Prec: 2})
	}
	return f
}

// memWatch follows the memory of the server processes over a timed phase.
// With several (a cluster) every figure is the sum over the nodes: before
// and after are summed RSS, peak the sum of each node's own peak.
type memWatch struct {
	procs    []Proc
	before   int64
	reset    bool // every node's VmHWM could be reset
	samplers []*PeakSampler
	peaks    []int64 // per node
	peak     int64
	after    int64
}

func startMemWatch(procs []Proc) (*memWatch, error) {
	if len(procs) == 0 {
		return nil, nil
	}
	w := &memWatch{procs: procs, reset: true}
	for _, p := range procs {
		m, err := ReadMem(p.PID)
		if err != nil {
			w.stopSamplers()
			return nil, fmt.Errorf("server memory: %w", err)
		}
		w.before += m.RSS
		w.reset = ResetPeak(p.PID) == nil && w.reset
		w.samplers = append(w.samplers, StartPeakSampler(p.PID, sampleEvery))
	}
	return w, nil
}

func (w *memWatch) stopSamplers() {
	if w == nil {
		return
	}
	w.peaks = w.peaks[:0]
	for _, s := range w.samplers {
		w.peaks = append(w.peaks, s.Stop())
	}
}

// stop ends the sampling and reads the peaks; with settle it then waits and
// reads the settled RSS (see import).
func (w *memWatch) stop(ctx context.Context, settle bool) error {
	if w == nil {
		return nil
	}
	w.stopSamplers()
	w.peak, w.after = 0, 0
	for i, p := range w.procs {
		m, err := ReadMem(p.PID)
		if err != nil {
			return fmt.Errorf("server memory: %w", err)
		}
		w.peaks[i] = max(w.peaks[i], m.HWM)
		w.peak += w.peaks[i]
		w.after += m.RSS
	}
	if settle {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settleDelay):
		}
		var err error
		if w.after, err = MinRSS(w.pids(), settleWindow, settleEvery); err != nil {
			return fmt.Errorf("server memory: %w", err)
		}
	}
	return nil
}

func (w *memWatch) pids() []int {
	var p []int
	for _, pr := range w.procs {
		p = append(p, pr.PID)
	}
	return p
}

// summary is " | server RSS before -> after (peak ...)", with each node's
// peak for a cluster.
func (w *memWatch) summary() string {
	var b strings.Builder
	b.WriteString(" | server RSS ")
	if len(w.procs) > 1 {
		fmt.Fprintf(&b, "(%d nodes, summed) ", len(w.procs))
	}
	fmt.Fprintf(&b, "%.0f MiB -> %.0f MiB (peak %.0f MiB", MiB(w.before), MiB(w.after), MiB(w.peak))
	if len(w.procs) > 1 {
		for i, p := range w.procs {
			sep := " + "
			if i == 0 {
				sep = " = "
			}
			fmt.Fprintf(&b, "%s%s %.0f", sep, p.Name, MiB(w.peaks[i]))
		}
	}
	if !w.reset {
		b.WriteString(", VmHWM since start")
	}
	b.WriteString(")")
	return b.String()
}

// apply puts the readings into res and the summary; perUnit, when > 0, is
// the number of assignments the growth is divided by.
func (w *memWatch) apply(res *Result, sum *strings.Builder, perUnit int64) {
	if w == nil {
		return
	}
	res.PeakRSS, res.HasPeakRSS = w.peak, true
	sum.WriteString(w.summary())
	if perUnit > 0 {
		g := float64(w.after-w.before) / float64(perUnit)
		fmt.Fprintf(sum, ", %+.1f B/assignment", g)
		res.Extra = append(res.Extra, Field{Key: "server_rss_growth_bytes_per_assignment", Value: g, Prec: 2})
	}
	res.Extra = append(res.Extra,
		Field{Key: "server_rss_before_mib", Value: MiB(w.before), Prec: 1},
		Field{Key: "server_rss_after_mib", Value: MiB(w.after), Prec: 1})
}
