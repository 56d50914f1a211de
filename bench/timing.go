package bench

import (
	"reflect"
	"time"
)

// Timings are the waits, timeouts and polls of the cluster and failover
// scenarios. A zero field takes its default (DefaultTimings); the tests
// shorten them.
type Timings struct {
	FormTimeout     time.Duration // the joiners all voters and ready
	ConvergeTimeout time.Duration // every node at the same applied index and digest
	ClusterPoll     time.Duration // GET /v1/cluster and digest polling

	// Failover.
	KillWaitMin     time.Duration // random wait before each kill, in [min, max)
	KillWaitMax     time.Duration //
	FailoverTimeout time.Duration // a kill with no acknowledged allocation after this fails the run
	AckGrace        time.Duration // after the first acknowledgement, for earlier ones still being reported
	RetryBackoff    time.Duration // pause before retrying a refused (503) or unanswered request
	AttemptTimeout  time.Duration // one HTTP attempt
	RequestGiveUp   time.Duration // a request not acknowledged after this fails the run
	FailoverTail    time.Duration // load after the last restart, before the run ends
	LeaderTimeout   time.Duration // finding (and confirming) the leader before a kill
	LeaderPoll      time.Duration // between GET /v1/cluster tries
}

// DefaultTimings are the timings of a real run.
func DefaultTimings() Timings {
	return Timings{
		FormTimeout:     60 * time.Second,
		ConvergeTimeout: 30 * time.Second,
		ClusterPoll:     100 * time.Millisecond,
		KillWaitMin:     1 * time.Second,
		KillWaitMax:     3 * time.Second,
		FailoverTimeout: 60 * time.Second,
		AckGrace:        50 * time.Millisecond,
		RetryBackoff:    10 * time.Millisecond,
		AttemptTimeout:  15 * time.Second,
		RequestGiveUp:   90 * time.Second,
		FailoverTail:    1 * time.Second,
		LeaderTimeout:   30 * time.Second,
		LeaderPoll:      100 * time.Millisecond,
	}
}

// withDefaults is t with every zero field set to its default.
func (t Timings) withDefaults() Timings {
	v, def := reflect.ValueOf(&t).Elem(), reflect.ValueOf(DefaultTimings())
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			v.Field(i).Set(def.Field(i))
		}
	}
	return t
}
