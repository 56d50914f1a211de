package raftfsm

import (
	"errors"
	"math"
	"slices"
)

// The life of a code around a send (SPEC §4): expiry, the expiry warning
// and the forecast. Fallback codes are in alloc.go, releases in release.go.

// ErrListExpired refuses a request that needs a new code from a list whose
// expires_at has passed (by the command's time).
var ErrListExpired = errors.New("the list has expired")

// expiryWarningDue reports whether list l's expiry_soon alert is due at
// time now: armed, inside the warning window, not expired yet, and codes
// still to hand out.
func (l *ListMeta) expiryWarningDue(now int64) bool {
	if !l.HasExpiry || l.Warned || l.WarnDays == 0 || now >= l.ExpiresAt || l.available() == 0 {
		return false
	}
	// Within WarnDays days of the expiry, counted in uint64: a lead of
	// centuries is more nanoseconds than an int64 holds.
	left := uint64(l.ExpiresAt) - uint64(now) // > 0
	return (left-1)/nsPerDay < uint64(l.WarnDays)
}

// tick records the expiry warnings due at the command's time, in list id
// order so every replica writes the same alerts.
func (a *applier) tick(c *Tick) error {
	a.f.mu.RLock()
	var due []*ListMeta
	for _, l := range a.f.lists {
		if l.expiryWarningDue(c.At) {
			due = append(due, l)
		}
	}
	a.f.mu.RUnlock()
	slices.SortFunc(due, func(x, y *ListMeta) int {
		if x.ID < y.ID {
			return -1
		}
		return 1
	})
	for _, l := range due {
		nl := *l
		nl.Warned = true
		a.putList(&nl)
		a.recordAlert(&Alert{Type: AlertExpirySoon, Tenant: l.Tenant, List: l.ID, ListName: l.Name,
			Threshold: l.Threshold, Available: l.available(), At: c.At, ExpiresAt: l.ExpiresAt})
	}
	return nil
}

// TickDue reports whether some list needs a Tick at time now (unix ns):
// the leader asks, and proposes one with its clock. Any goroutine.
func (f *FSM) TickDue(now int64) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, l := range f.lists {
		if l.expiryWarningDue(now) {
			return true
		}
	}
	return false
}

// ExpiredLists counts the lists expired at time now, for metrics.
func (f *FSM) ExpiredLists(now int64) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, l := range f.lists {
		if l.Expired(now) {
			n++
		}
	}
	return n
}

// Forecast answers whether a planned send will fit (SPEC §4 "Forecast").
type Forecast struct {
	Recipients, Needed, Available, Reserved, Shortfall uint64
	Enough                                             bool
	UsedLast7Days                                      uint64
	UsedPerDay                                         float64
	RunsOutAt                                          int64 // unix ns; 0 when the list is not used
	HasExpiry                                          bool
	ExpiresAt                                          int64
	Expired                                            bool
}

// Forecast reads a list's counts and its usage ring: constant time,
// whatever the list's size. With send, that send's hold counts toward the
// recipients; a send not found, or of another list, is ErrNotFound.
func (f *FSM) Forecast(tenant string, list uint64, recipients uint64, send string, now int64) (Forecast, error) {
	v, ok := f.List(tenant, list)
	if !ok {
		return Forecast{}, ErrNotFound
	}
	fc := Forecast{Recipients: recipients, Needed: recipients, Available: v.Available, Reserved: v.Reserved,
		HasExpiry: v.HasExpiry, ExpiresAt: v.ExpiresAt, Expired: v.Expired(now)}
	if send != "" {
		s, ok := f.Send(tenant, send)
		if !ok || s.List != list {
			return Forecast{}, ErrNotFound
		}
		fc.Needed -= min(s.Reserved, recipients)
	}
	if fc.Needed > fc.Available {
		fc.Shortfall = fc.Needed - fc.Available
	}
	fc.Enough = fc.Shortfall == 0 && !fc.Expired
	fc.UsedLast7Days = v.Usage.Last7(DayOf(now))
	fc.UsedPerDay = float64(fc.UsedLast7Days) / 7
	if fc.UsedPerDay > 0 {
		// A big stock used slowly runs out past the last time a unix-ns
		// int64 holds (year 2262): that time is the estimate then.
		ahead := float64(fc.Available) / fc.UsedPerDay * nsPerDay
		fc.RunsOutAt = math.MaxInt64
		if ahead < math.MaxInt64 {
			if at := now + int64(ahead); at >= now {
				fc.RunsOutAt = at
			}
		}
	}
	return fc, nil
}
