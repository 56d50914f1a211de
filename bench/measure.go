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
// process (the harness) and by the server process (when its pid is known).
type cpuSnap struct {
	t           time.Time
	busy, total float64 // /proc/stat ticks, all CPUs
	self        float64 // seconds
	server      float64 // seconds (-1: unknown)
}

const clockTicks = 100.0 // USER_HZ on Linux

func takeCPU(pid int) cpuSnap {
	s := cpuSnap{t: time.Now(), server: -1}
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
	if pid != 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			st := string(b)
			if r := strings.LastIndexByte(st, ')'); r >= 0 {
				f := strings.Fields(st[r+1:]) // f[11] utime, f[12] stime
				if len(f) > 12 {
					u, _ := strconv.ParseFloat(f[11], 64)
					k, _ := strconv.ParseFloat(f[12], 64)
					s.server = (u + k) / clockTicks
				}
			}
		}
	}
	return s
}

// cpuUse is the CPU used between two snaps, in cores (CPU seconds per
// second of wall time).
type cpuUse struct {
	cores            int
	machine, harness float64
	server           float64
	haveServer       bool
}

func cpuBetween(a, b cpuSnap) cpuUse {
	u := cpuUse{cores: runtime.NumCPU()}
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
		s += fmt.Sprintf(" + coupond %.2f + other %.2f", u.server, u.machine-u.harness-u.server)
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

// memWatch follows the server's memory over a timed phase.
type memWatch struct {
	pid     int
	before  int64
	reset   bool
	sampler *PeakSampler
	peak    int64
	after   int64
}

func startMemWatch(pid int) (*memWatch, error) {
	if pid == 0 {
		return nil, nil
	}
	m, err := ReadMem(pid)
	if err != nil {
		return nil, fmt.Errorf("server memory: %w", err)
	}
	w := &memWatch{pid: pid, before: m.RSS}
	w.reset = ResetPeak(pid) == nil
	w.sampler = StartPeakSampler(pid, sampleEvery)
	return w, nil
}

// stop ends the sampling and reads the peak; with settle it then waits and
// reads the settled RSS (see import).
func (w *memWatch) stop(ctx context.Context, settle bool) error {
	if w == nil {
		return nil
	}
	w.peak = w.sampler.Stop()
	m, err := ReadMem(w.pid)
	if err != nil {
		return fmt.Errorf("server memory: %w", err)
	}
	w.peak = max(w.peak, m.HWM)
	w.after = m.RSS
	if settle {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settleDelay):
		}
		if w.after, err = MinRSS(w.pid, settleWindow, settleEvery); err != nil {
			return fmt.Errorf("server memory: %w", err)
		}
	}
	return nil
}

// apply puts the readings into res and the summary; perUnit, when > 0, is
// the number of assignments the growth is divided by.
func (w *memWatch) apply(res *Result, sum *strings.Builder, perUnit int64) {
	if w == nil {
		return
	}
	res.PeakRSS, res.HasPeakRSS = w.peak, true
	note := ""
	if !w.reset {
		note = ", VmHWM since start"
	}
	fmt.Fprintf(sum, " | server RSS %.0f MiB -> %.0f MiB (peak %.0f MiB%s)", MiB(w.before), MiB(w.after), MiB(w.peak), note)
	if perUnit > 0 {
		g := float64(w.after-w.before) / float64(perUnit)
		fmt.Fprintf(sum, ", %+.1f B/assignment", g)
		res.Extra = append(res.Extra, Field{Key: "server_rss_growth_bytes_per_assignment", Value: g, Prec: 2})
	}
	res.Extra = append(res.Extra,
		Field{Key: "server_rss_before_mib", Value: MiB(w.before), Prec: 1},
		Field{Key: "server_rss_after_mib", Value: MiB(w.after), Prec: 1})
}
