package httpapi

import (
	"encoding/json"
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// apiError is an error answer: {"error": {"code", "message", ...details}}.
type apiError struct {
	status  int
	code    string
	message string
	details map[string]any
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

func (e *apiError) with(k string, v any) *apiError {
	if e.details == nil {
		e.details = map[string]any{}
	}
	e.details[k] = v
	return e
}

func badRequest(message string) *apiError {
	return newError(fasthttp.StatusBadRequest, "invalid_request", message)
}

var (
	errUnauthorized = newError(fasthttp.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
	errForbidden    = newError(fasthttp.StatusForbidden, "forbidden", "this token's role may not make this call")
	errNotFound     = newError(fasthttp.StatusNotFound, "not_found", "no such resource")
	errTooLarge     = newError(fasthttp.StatusRequestEntityTooLarge, "payload_too_large", "the request body is larger than the server accepts")
	errNotReady     = newError(fasthttp.StatusServiceUnavailable, "not_ready", "no leader known yet or the state is still catching up")
	// errStateUnwritable refuses a write while the node cannot write its
	// state (Config.StateErr); nothing was done, the retry is safe.
	errStateUnwritable = unavailable("this node cannot write its state right now (is its disk full?); retry")
	// errStateNotReady is /readyz's answer then.
	errStateNotReady = newError(fasthttp.StatusServiceUnavailable, "not_ready", "this node cannot write its state right now (is its disk full?)")
)

// HandleParseError answers a request that fasthttp could not parse, in the
// API's error shape (fasthttp's ErrorHandler).
func HandleParseError(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, errTooLarge)
	} else {
		writeError(ctx, badRequest("the request is not valid HTTP"))
	}
	ctx.SetConnectionClose()
}

// unavailable answers a call whose outcome is unknown or that found no
// leader; the caller retries (every write carries an idempotency key or is
// harmless to repeat).
func unavailable(message string) *apiError {
	return newError(fasthttp.StatusServiceUnavailable, "unavailable", message)
}

// fromApply maps the errors of a write (the proposer's and the state
// machine's domain outcomes) to API errors. It is the one place where that
// mapping lives. Every error of Raft itself leaves the outcome unknown,
// including the log store's (a full disk fails the leader's write of its
// log): 503, and the retry is safe.
func fromApply(err error) *apiError {
	var ae *apiError
	var ins *raftfsm.InsufficientError
	var elig *raftfsm.EligibilityError
	var re *propose.RaftError
	var be *propose.BodyError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &be):
		return csvError(be.Err)
	case errors.Is(err, propose.ErrTimeout):
		return unavailable("the write's outcome is unknown: it did not complete in time; retry")
	case errors.Is(err, propose.ErrStateUnwritable):
		return errStateUnwritable
	case errors.Is(err, propose.ErrUploadInProgress):
		return newError(fasthttp.StatusConflict, "upload_in_progress", "an upload with this Idempotency-Key is still in progress")
	case errors.As(err, &re), errors.Is(err, propose.ErrStopped):
		return unavailable("the cluster could not complete the write; retry")
	case errors.Is(err, raftfsm.ErrNotFound):
		return errNotFound
	case errors.Is(err, raftfsm.ErrCodesReserved):
		return newError(fasthttp.StatusConflict, "codes_reserved", err.Error())
	case errors.Is(err, raftfsm.ErrListFull):
		return newError(fasthttp.StatusConflict, "list_full", err.Error())
	case errors.As(err, &ins):
		return newError(fasthttp.StatusConflict, "insufficient_codes", "not enough codes for this request").
			with("needed", ins.Needed).with("available", ins.Available)
	case errors.As(err, &elig):
		return newError(fasthttp.StatusUnprocessableEntity, "not_eligible", elig.Error()).with("reason", elig.Reason)
	case errors.Is(err, raftfsm.ErrNoCouponList):
		return newError(fasthttp.StatusUnprocessableEntity, "no_coupon_list", "the message has no coupon list")
	case errors.Is(err, raftfsm.ErrMessageRequired):
		return badRequest("message_id is required to open a send")
	case errors.Is(err, raftfsm.ErrSendMismatch):
		return newError(fasthttp.StatusConflict, "send_message_mismatch", "message_id differs from the send's message")
	case errors.Is(err, raftfsm.ErrListExpired):
		return newError(fasthttp.StatusConflict, "list_expired", "the list has expired: it hands out no new code")
	case errors.Is(err, raftfsm.ErrSendClosed):
		return newError(fasthttp.StatusConflict, "send_closed", "the send is closed")
	case errors.Is(err, raftfsm.ErrListInUse):
		return newError(fasthttp.StatusConflict, "list_in_use", "the list is assigned to a message or held by a send and still has codes")
	case errors.Is(err, raftfsm.ErrAssignmentsFull):
		return newError(fasthttp.StatusConflict, "assignments_full", err.Error())
	case errors.Is(err, raftfsm.ErrUploadReused):
		return newError(fasthttp.StatusConflict, "idempotency_key_reused",
			"this Idempotency-Key was used for another request (another list, route, parameters or body)")
	case errors.Is(err, raftfsm.ErrUploadListDeleted):
		return newError(fasthttp.StatusNotFound, "not_found",
			"the list that the upload under this Idempotency-Key went into was deleted")
	case errors.Is(err, raftfsm.ErrExists):
		return newError(fasthttp.StatusConflict, "already_exists", "it exists already")
	case errors.Is(err, raftfsm.ErrUploadIncomplete):
		return unavailable("the cluster could not complete the write; retry")
	}
	return newError(fasthttp.StatusInternalServerError, "internal", "internal error")
}

func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	body := map[string]any{"code": e.code, "message": e.message}
	for k, v := range e.details {
		body[k] = v
	}
	if e.status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	if e.status == fasthttp.StatusUnauthorized {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="coupond"`)
	}
	writeJSON(ctx, e.status, map[string]any{"error": body})
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: cannot encode response: " + err.Error())
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(append(b, '\n'))
}
