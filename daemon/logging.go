package daemon

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

func parseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return 0, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", s)
}

// NewLogger builds the node's logger from the configuration.
func NewLogger(cfg Config, w io.Writer) zerolog.Logger {
	lvl, _ := parseLevel(cfg.LogLevel)
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("node", cfg.NodeID).Logger()
}

// raftLogger lets hashicorp/raft log through zerolog, one event per line.
func raftLogger(log zerolog.Logger) hclog.Logger {
	lvl := hclog.Info
	switch log.GetLevel() {
	case zerolog.DebugLevel, zerolog.TraceLevel:
		lvl = hclog.Debug
	case zerolog.WarnLevel:
		lvl = hclog.Warn
	case zerolog.ErrorLevel:
		lvl = hclog.Error
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       lvl,
		Output:      zerologWriter{log.With().Str("component", "raft").Logger()},
		JSONFormat:  false,
		DisableTime: true,
	})
}

type zerologWriter struct{ log zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	ev := z.log.Info()
	switch {
	case strings.HasPrefix(msg, "[ERROR]"):
		ev = z.log.Error()
	case strings.HasPrefix(msg, "[WARN]"):
		ev = z.log.Warn()
	case strings.HasPrefix(msg, "[DEBUG]"), strings.HasPrefix(msg, "[TRACE]"):
		ev = z.log.Debug()
	}
	ev.Msg(msg)
	return len(p), nil
}

// pebbleLogger sends Pebble's own messages to zerolog. Its errors are
// rate-limited: a failing disk makes Pebble repeat the same one hundreds of
// times a second.
type pebbleLogger struct {
	log    zerolog.Logger
	errors *logLimiter
}

func newPebbleLogger(log zerolog.Logger) pebbleLogger {
	return pebbleLogger{log: log, errors: &logLimiter{window: storeLogEvery}}
}

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.log.Debug().Msgf(format, args...)
}
func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	if ok, n := p.errors.allow(); ok {
		p.log.Error().Int("suppressed", n).Msgf(format, args...)
	}
}
func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	p.log.Fatal().Msgf(format, args...)
}
