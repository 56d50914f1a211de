package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Mem is a process's memory as /proc/PID/status shows it, in bytes.
type Mem struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: peak resident ("high water mark")
}

// ReadMem reads VmRSS and VmHWM of a process (Linux only).
func ReadMem(pid int) (Mem, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Mem{}, err
	}
	return parseStatus(data)
}

func parseStatus(data []byte) (Mem, error) {
	var m Mem
	var haveRSS, haveHWM bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst, haveRSS = &m.RSS, true
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst, haveHWM = &m.HWM, true
		default:
			continue
		}
		f := bytes.Fields(line[6:])
		if len(f) < 1 {
			return Mem{}, fmt.Errorf("bad line %q", line)
		}
		v, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("bad line %q: %w", line, err)
		}
		mult := int64(1)
		if len(f) > 1 {
			switch string(f[1]) {
			case "kB":
				mult = 1 << 10
			case "mB", "MB":
				mult = 1 << 20
			}
		}
		*dst = v * mult
	}
	if !haveRSS || !haveHWM {
		return Mem{}, fmt.Errorf("no VmRSS/VmHWM in status (kernel thread or exited process?)")
	}
	return m, nil
}

// ResetPeak resets the VmHWM of a process to its current RSS (writes 5 to
// /proc/PID/clear_refs). It needs the right to write there (same user, or
// root); callers fall back to sampling when it fails.
func ResetPeak(pid int) error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("5\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// MinRSS reads VmRSS of the processes every interval for the given duration
// and returns the smallest sum seen (RSS settles after the Go GC returns
// memory).
func MinRSS(pids []int, over, every time.Duration) (int64, error) {
	var best int64 = -1
	deadline := time.Now().Add(over)
	for {
		var sum int64
		for _, pid := range pids {
			m, err := ReadMem(pid)
			if err != nil {
				return 0, err
			}
			sum += m.RSS
		}
		if best < 0 || sum < best {
			best = sum
		}
		if time.Now().Add(every).After(deadline) {
			return best, nil
		}
		time.Sleep(every)
	}
}

// PeakSampler polls VmRSS of a process in the background, keeping the
// largest value, as a cross-check of VmHWM.
type PeakSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  int64
}

// StartPeakSampler starts polling every interval.
func StartPeakSampler(pid int, every time.Duration) *PeakSampler {
	s := &PeakSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := ReadMem(pid); err == nil {
				s.mu.Lock()
				s.max = max(s.max, m.RSS)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends the polling and returns the largest RSS seen (0 if none).
func (s *PeakSampler) Stop() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}
