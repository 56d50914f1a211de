package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// allocator posts allocation requests for one goroutine, checks each reply
// against its request and records the codes. Not safe for concurrent use.
type allocator struct {
	run  *sendRun
	p    *poster
	body allocBody
	log  codeLog
	lat  Latencies

	requests  int64 // successful (200) allocation requests
	assigned  int64 // assignments in them
	fallbacks int64 // of those, the ones answered with the list's fallback code
}

func newAllocator(run *sendRun, c *Client) *allocator {
	return &allocator{run: run, p: newPoster(c), body: allocBody{onShortage: run.onShortage}}
}

// replyError is a 200 answer that does not match its request: a failed
// verification, not a transport problem.
type replyError struct{ msg string }

func (e *replyError) Error() string { return e.msg }

// refusal is a non-200 answer of an allocation.
type refusal struct {
	status int
	code   string // error.code of the body
	err    *APIError
}

func (r *refusal) Error() string { return r.err.Error() }

// Unwrap lets errors.As find the *APIError.
func (r *refusal) Unwrap() error { return r.err }

func isDry(err error) bool {
	r, ok := err.(*refusal)
	return ok && r.status == http.StatusConflict && r.code == "insufficient_codes"
}

// allocate asks codes for recipients [from, to) of rg in send sendID. For
// every assignment, in order, it checks the recipient and calls onCode (nil:
// record the code in the log, or count a fallback). It returns the
// "available" of the reply. A 200 whose assignments do not match the
// request is a *replyError (a fallback assignment whose code is not the
// run's fallback code is one), any other status a *refusal; the latency of
// a 200 is recorded.
func (a *allocator) allocate(ctx context.Context, sendID string, rg rcptGen, from, to int64, onCode func(k int, code []byte, fallback bool) error) (int64, error) {
	a.body.build(a.run.messageID, rg, from, to)
	path := sendCodesPath(sendID)
	t0 := time.Now()
	status, reply, err := a.p.post(ctx, path, a.body.buf)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, &refusal{status: status, code: errorCode(reply), err: postErr(path, status, reply)}
	}
	a.lat.Add(d)
	want := a.body.N()
	var mismatch string
	var fallbacks int64
	avail, n, err := parseAllocReply(reply, func(k int, rcpt, code []byte, fallback bool) error {
		if k >= want {
			return &replyError{fmt.Sprintf("send %s: more than %d assignments for %d recipients", sendID, want, want)}
		}
		if !bytes.Equal(rcpt, a.body.Recipient(k)) && mismatch == "" {
			mismatch = fmt.Sprintf("send %s: assignment %d is for %q, the request's recipient %d is %q", sendID, k, rcpt, k, a.body.Recipient(k))
		}
		if fallback {
			if a.run.fallbackCode == "" {
				return &replyError{fmt.Sprintf("send %s: %q got the fallback %q, but the run set no fallback code", sendID, rcpt, code)}
			}
			if string(code) != a.run.fallbackCode {
				return &replyError{fmt.Sprintf("send %s: %q got the fallback %q, the list's fallback code is %q", sendID, rcpt, code, a.run.fallbackCode)}
			}
			fallbacks++
		}
		if onCode != nil {
			return onCode(k, code, fallback)
		}
		if !fallback {
			a.log.add(a.run.g, code)
		}
		return nil
	})
	if err != nil {
		if re, ok := err.(*replyError); ok {
			return avail, re
		}
		return avail, fmt.Errorf("POST %s: %w", path, err)
	}
	if n != want {
		return avail, &replyError{fmt.Sprintf("send %s: %d assignments for %d recipients", sendID, n, want)}
	}
	if mismatch != "" {
		return avail, &replyError{mismatch + " (assignments must follow the request order)"}
	}
	a.requests++
	a.assigned += int64(n)
	a.fallbacks += fallbacks
	return avail, nil
}

// retry re-sends recipients [from, to) of a send whose codes were
// want[0:to-from] (generator indexes) and checks the same codes come back.
// Use an allocator of its own, so that the retry is not counted in a run.
func (a *allocator) retry(ctx context.Context, sendID string, rg rcptGen, from, to int64, want []uint32) error {
	var bad []string
	nbad := 0
	_, err := a.allocate(ctx, sendID, rg, from, to, func(k int, code []byte, fallback bool) error {
		if k >= len(want) {
			return nil
		}
		if i, ok := a.run.g.Index(code); fallback || !ok || i != uint64(want[k]) {
			nbad++
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%s got %q, first time %q", rg.String(from+int64(k)), code, a.run.g.Code(uint64(want[k]))))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("retry of send %s: %w", sendID, err)
	}
	if nbad > 0 {
		return &replyError{fmt.Sprintf("retry of send %s: %d of %d recipients got another code (not idempotent), e.g. %s",
			sendID, nbad, to-from, strings.Join(bad, "; "))}
	}
	return nil
}

// retryFallback re-sends recipients [from, to) of a send that were all
// answered with the fallback code and checks they get it again: a fallback
// assignment is as permanent as any other (SPEC §4).
func (a *allocator) retryFallback(ctx context.Context, sendID string, rg rcptGen, from, to int64) error {
	var bad []string
	_, err := a.allocate(ctx, sendID, rg, from, to, func(k int, code []byte, fallback bool) error {
		if !fallback && len(bad) < 3 {
			bad = append(bad, fmt.Sprintf("%s got %q", rg.String(from+int64(k)), code))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("retry of send %s: %w", sendID, err)
	}
	if len(bad) > 0 {
		return &replyError{fmt.Sprintf("retry of send %s: recipients answered with the fallback got a code instead (not idempotent), e.g. %s",
			sendID, strings.Join(bad, "; "))}
	}
	return nil
}
