package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// latencies holds request durations; percentiles are nearest-rank, as
// couponbench computes them, so p99 means the same on both sides.
type latencies []time.Duration

func (l latencies) percentile(p float64) time.Duration {
	n := len(l)
	if n == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(math.Ceil(p/100*float64(n) - 1e-9))
	rank = max(1, min(rank, n))
	return s[rank-1]
}

// cpuSample is a reading of the machine's and the processes' CPU time.
// The machine is shared: the summary splits busy cores into this program,
// the peer's server processes and everything else, so a reader can see
// when a figure was taken beside foreign load.
type cpuSample struct {
	at          time.Time
	busy, total float64 // /proc/stat ticks, all CPUs
	self        float64 // seconds of CPU of this process
	server      float64 // seconds of CPU of every process named serverComm
}

const clockTicks = 100.0 // USER_HZ on Linux

func sampleCPU(serverComm string) cpuSample {
	s := cpuSample{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			s.total += v
			if i != 4 && i != 5 { // idle and iowait
				s.busy += v
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	}
	s.server = commCPU(serverComm)
	return s
}

// commCPU sums user and system time of the processes named comm.
func commCPU(comm string) float64 {
	if comm == "" {
		return 0
	}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var sum float64
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if l < 0 || r < l || s[l+1:r] != comm {
			continue
		}
		f := strings.Fields(s[r+1:]) // f[0] is field 3 (state): utime is field 14, stime 15
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			sum += (u + st) / clockTicks
		}
	}
	return sum
}

// cpuUse is the CPU over an interval, in cores.
type cpuUse struct{ machine, self, server float64 }

func cpuBetween(a, b cpuSample) cpuUse {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 {
		return cpuUse{}
	}
	var u cpuUse
	if b.total > a.total {
		u.machine = (b.busy - a.busy) / (b.total - a.total) * float64(runtime.NumCPU())
	}
	u.self = (b.self - a.self) / wall
	u.server = (b.server - a.server) / wall
	return u
}
