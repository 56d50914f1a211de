package daemon

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// Rate limit of the HTTP server's warnings: logBurst lines of one kind per
// logWindow reach the log; the rest are counted, and the count rides on
// the next line let through (or is written when the node stops). A client
// that can open connections cannot flood the log.
const (
	logBurst  = 5
	logWindow = time.Minute
)

// limitedLog lets logBurst lines of each kind through per logWindow. The
// kinds are a fixed set (fasthttp's message formats, "accept"), so the
// map stays small.
type limitedLog struct {
	log zerolog.Logger
	mu  sync.Mutex
	by  map[string]*logLimiter
}

func newLimitedLog(log zerolog.Logger) *limitedLog {
	return &limitedLog{log: log, by: map[string]*logLimiter{}}
}

// warn writes one warn line of the kind unless the kind used its lines of
// this window; emit adds the fields and sends the event.
func (l *limitedLog) warn(kind string, emit func(ev *zerolog.Event)) {
	l.mu.Lock()
	lim := l.by[kind]
	if lim == nil {
		lim = &logLimiter{burst: logBurst, window: logWindow}
		l.by[kind] = lim
	}
	l.mu.Unlock()
	ok, suppressed := lim.allow()
	if !ok {
		return
	}
	ev := l.log.Warn()
	if suppressed > 0 {
		ev.Int("suppressed", suppressed)
	}
	emit(ev)
}

// flush reports the lines each kind had suppressed and not reported yet;
// the node calls it when it stops serving.
func (l *limitedLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for kind, lim := range l.by {
		if n := lim.takeSuppressed(); n > 0 {
			l.log.Warn().Int("suppressed", n).Str("kind", kind).Msg("lines of this kind were suppressed")
		}
	}
}

// fasthttpLogger is the Logger given to fasthttp. fasthttp's messages
// quote request bytes (an Authorization header with a control character
// comes back whole in "invalid header value"), so no argument that may
// hold them is ever formatted: only addresses, numbers and the system's
// own error texts are; the rest reads "(redacted)".
type fasthttpLogger struct{ log *limitedLog }

func (l fasthttpLogger) Printf(format string, args ...interface{}) {
	l.log.warn(format, func(ev *zerolog.Event) {
		safe := make([]any, len(args))
		for i, a := range args {
			safe[i] = redact(a)
		}
		ev.Msgf(format, safe...)
	})
}

// redact returns what of a fasthttp log argument may be written.
func redact(a any) any {
	switch v := a.(type) {
	case net.Addr:
		return v.String()
	case int, int64, uint64, float64, time.Duration:
		return v
	case error:
		return safeError(v)
	}
	return "(redacted)"
}

// safeError keeps what an error says about the connection, never what
// the client sent.
func safeError(err error) string {
	var errno syscall.Errno
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "i/o timeout"
	case errors.As(err, &errno):
		return errno.Error()
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return "body too large"
	}
	return "bad request (details withheld: they may quote the request)"
}
