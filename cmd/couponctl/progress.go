package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// describeEvery bounds how often the codes/s figure is recomputed.
const describeEvery = 200 * time.Millisecond

// meter drives the progress bar of an import or an export. Codes are
// counted as lines, so a header line or blank lines count too.
//
// An import's bar is in bytes of the file (the bar shows bytes, the rate
// in bytes and the ETA; the description the codes and codes/s). A CSV
// export's bar is in codes, sized by the send's assigned count (codes,
// codes/s and the ETA; the description the bytes). A total of -1 (stdin,
// a JSON export) shows a spinner with what is known.
//
// The methods of a nil meter do nothing, so callers need no "if progress".
type meter struct {
	mu      sync.Mutex // the transport reads an upload on its own goroutine
	bar     *progressbar.ProgressBar
	verb    string
	inCodes bool
	total   int64
	bytes   int64
	lines   int64
	start   time.Time
	shown   time.Time
	done    bool // the server answered
}

func newMeter(w io.Writer, verb string, total int64, inCodes bool) *meter {
	if total == 0 {
		total = -1 // the bar refuses a max of 0
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(verb),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	}
	if inCodes {
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("codes"))
	} else {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	max := total
	if !inCodes && total > 0 {
		// One byte more than the file: the bar fills when the server has
		// answered (finish), not when the last byte left, so the figures
		// it ends with include the server's work.
		max++
	}
	return &meter{bar: progressbar.NewOptions64(max, opts...), verb: verb, inCodes: inCodes, total: total, start: time.Now()}
}

// count records bytes that went through.
func (m *meter) count(p []byte) {
	if m == nil || len(p) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bytes += int64(len(p))
	m.lines += int64(bytes.Count(p, []byte{'\n'}))
	v := m.bytes
	if m.inCodes {
		v = m.lines
	}
	if m.total > 0 {
		v = min(v, m.total)
	}
	if m.bar.IsFinished() {
		return
	}
	// The description first: the bar prints its last line when it fills.
	if now := time.Now(); now.Sub(m.shown) >= describeEvery || v == m.total {
		m.shown = now
		m.bar.Describe(m.describe(now))
	}
	m.bar.Set64(v)
}

func (m *meter) describe(now time.Time) string {
	if m.inCodes {
		return fmt.Sprintf("%s %s", m.verb, humanBytes(m.bytes))
	}
	if m.bytes == m.total && !m.done {
		return fmt.Sprintf("%s %d codes sent, waiting for the server", m.verb, m.lines)
	}
	took := now.Sub(m.start).Seconds()
	if took < 0.2 && !m.done {
		return fmt.Sprintf("%s %d codes", m.verb, m.lines) // too early for a rate
	}
	rate := float64(m.lines) / took
	return fmt.Sprintf("%s %d codes, %.0f codes/s", m.verb, m.lines, rate)
}

// finish fills the bar and ends its line.
func (m *meter) finish() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.done = true
	if !m.bar.IsFinished() {
		m.bar.Describe(m.describe(time.Now()))
		m.bar.Finish()
	}
}

// abort leaves the bar where it stopped and ends its line.
func (m *meter) abort() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.bar.IsFinished() {
		m.bar.Exit()
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// meterReader counts an upload as it is read. It is an io.Seeker whenever
// the file under it is one, so the client can still rewind it to retry.
type meterReader struct {
	r io.Reader
	m *meter
}

func (r *meterReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.m.count(p[:n])
	return n, err
}

func (r *meterReader) Seek(off int64, whence int) (int64, error) {
	s, ok := r.r.(io.Seeker)
	if !ok {
		return 0, errors.New("cannot seek in this input")
	}
	pos, err := s.Seek(off, whence)
	if err == nil && whence == io.SeekStart {
		// A rewind for a retry: count the new try from where it starts.
		r.m.mu.Lock()
		r.m.bytes, r.m.lines = 0, 0
		r.m.mu.Unlock()
	}
	return pos, err
}

// meterWriter counts an export as it is written.
type meterWriter struct {
	w io.Writer
	m *meter
}

func (w *meterWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.m.count(p[:n])
	return n, err
}
