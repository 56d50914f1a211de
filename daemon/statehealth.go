package daemon

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rs/zerolog"
)

// What a full disk does to the state (README, API notes, "A full disk").
// Pebble runs without its WAL, so a write only fills a memtable, and
// memtables must be flushed to files. When a flush fails (no space left),
// Pebble retries at once and without end, logging each failure, while
// writes go on filling memtables until two wait for a flush; then every
// write stalls, the Raft apply goroutine with it, and no write is ever
// answered. So a failed flush marks the state unwritable until a flush
// succeeds: the API refuses writes at once (503 unavailable) and /readyz
// answers not ready. The entries Raft holds already stay in its log and
// are applied once space is back; nothing acknowledged is lost. A flush
// that hangs instead (a disk that stopped answering) reports nothing, so a
// write stall longer than stallLimit counts as unwritable too.
const (
	// flushRetryPause slows Pebble's retries of a failed flush, which it
	// makes back to back (hundreds a second, each creating and removing a
	// file). Pebble calls FlushEnd on its flush goroutine with its mutex
	// held: the pause delays the retry, and what needs that mutex meanwhile
	// (a Pebble snapshot, its metrics) waits as long; writes wait anyway.
	flushRetryPause = 200 * time.Millisecond
	// storeLogEvery is the least time between two log lines of one kind
	// of storage trouble; the lines left out are counted in the next one.
	storeLogEvery = 10 * time.Second
	// stallLimit is how long Pebble may stall writes before the state
	// counts as unwritable. A flush that hangs (a disk that stopped
	// answering) reports no error, and a stall of a busy disk passes in
	// well under a second; past half the apply timeout, the writes in
	// flight are about to time out anyway.
	stallLimit = 5 * time.Second
)

// errStalled: Pebble has stalled writes for longer than stallLimit.
var errStalled = errors.New("cannot write the state: Pebble has stalled writes for more than " + stallLimit.String())

// emptyFlushMsg is the text of the error Pebble gives FlushEnd for a flush
// that succeeded but wrote no file (it does not export the error); no
// other failure reads so. TestStateHealthFollowsFlushes guards it.
const emptyFlushMsg = "pebble: empty table"

// stateHealth tracks whether the Pebble state can be written.
type stateHealth struct {
	log     zerolog.Logger
	failure atomic.Pointer[error] // the last flush's error; nil once one succeeded
	stalled atomic.Int64          // UnixNano when the current write stall began; 0: none

	bgLog    logLimiter // Pebble's background errors (flushes, compactions)
	stallLog logLimiter
	spaceLog logLimiter
}

func newStateHealth(log zerolog.Logger) *stateHealth {
	return &stateHealth{log: log, bgLog: logLimiter{window: storeLogEvery},
		stallLog: logLimiter{window: storeLogEvery}, spaceLog: logLimiter{window: storeLogEvery}}
}

// Err reports why the state cannot be written now, nil when it can.
func (h *stateHealth) Err() error {
	if p := h.failure.Load(); p != nil {
		return *p
	}
	if at := h.stalled.Load(); at != 0 && time.Since(time.Unix(0, at)) > stallLimit {
		return errStalled
	}
	return nil
}

// listener is the Pebble EventListener that feeds h; it also replaces
// Pebble's own logging of background errors, which would log each retry.
func (h *stateHealth) listener() *pebble.EventListener {
	return &pebble.EventListener{
		FlushEnd:        h.flushEnd,
		BackgroundError: h.backgroundError,
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			h.stalled.Store(time.Now().UnixNano())
			if ok, n := h.stallLog.allow(); ok {
				h.log.Warn().Str("reason", info.Reason).Int("suppressed", n).Msg("state writes stalled")
			}
		},
		WriteStallEnd: func() { h.stalled.Store(0) },
		LowDiskSpace: func(info pebble.LowDiskSpaceInfo) {
			if ok, n := h.spaceLog.allow(); ok {
				h.log.Warn().Uint64("available_bytes", info.AvailBytes).Uint64("total_bytes", info.TotalBytes).
					Int("suppressed", n).Msg("low disk space for the state")
			}
		},
	}
}

func (h *stateHealth) flushEnd(info pebble.FlushInfo) {
	if info.Err == nil || info.Err.Error() == emptyFlushMsg {
		if h.failure.Swap(nil) != nil {
			h.log.Info().Msg("the state can be written again; writes are accepted")
		}
		return
	}
	err := info.Err
	if h.failure.Swap(&err) == nil {
		h.log.Error().Err(err).Msg("cannot flush the state (is the disk full?); writes are refused until a flush succeeds")
	}
	time.Sleep(flushRetryPause)
}

func (h *stateHealth) backgroundError(err error) {
	if ok, n := h.bgLog.allow(); ok {
		h.log.Error().Err(err).Int("suppressed", n).Msg("state background error")
	}
}
