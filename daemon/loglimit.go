package daemon

import (
	"sync"
	"time"
)

// logLimiter lets burst log lines through per window (1 when burst is 0)
// and counts the others; the count rides on the next line let through, so
// a flood of one kind of trouble costs a few lines, never the log.
type logLimiter struct {
	burst  int
	window time.Duration

	mu         sync.Mutex
	start      time.Time // of the current window
	lines      int       // let through in it
	suppressed int       // left out since the last line let through
}

// allow reports whether a line may be logged now and, if so, how many
// were left out since the last one.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.start.IsZero() || now.Sub(l.start) >= l.window {
		l.start, l.lines = now, 0
	}
	if l.lines >= max(l.burst, 1) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.lines, l.suppressed = l.lines+1, 0
	return true, n
}

// takeSuppressed returns the lines left out and not reported yet, and
// forgets them.
func (l *logLimiter) takeSuppressed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.suppressed
	l.suppressed = 0
	return n
}
