// Package client is a typed Go client of coupond's HTTP API (SPEC §2).
//
// Every call takes a context and sends the bearer token the Client was made
// with. Uploads are streamed from an io.Reader and exports to an io.Writer,
// so a million-code CSV never sits in memory whole.
//
// Retries follow what the server promises. A call is repeated after a
// broken connection or a 503 (waiting the Retry-After the server asked
// for) only when repeating it cannot change the outcome: reads, PUTs,
// DELETEs, closing a send, allocation (idempotent per send and recipient),
// release (a recipient released already counts as such), withdrawal (a
// code already withdrawn counts as withdrawn) and adding a node that is
// already a member. An import is repeated only when it
// carries an Idempotency-Key and its body can be read again (an
// io.Seeker). Any call is repeated when the server certainly did nothing:
// the connection could not be opened, or a 503 no_leader or not_ready.
//
// Errors of the server come back as *Error, usable with errors.As, and the
// helpers IsNotFound, IsConflict and the like.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Retry bounds the retries of one call.
type Retry struct {
	// Attempts is the number of tries of a call, the first included; 1
	// turns retries off.
	Attempts int
	// MinBackoff is the wait before the second try; it doubles with each
	// try up to MaxBackoff. A Retry-After of the server longer than the
	// backoff wins, up to maxRetryAfter.
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// DefaultRetry rides out a leader election (a few seconds) without making
// a caller wait long for a node that is down.
var DefaultRetry = Retry{Attempts: 6, MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}

// maxRetryAfter caps the wait a server may ask for, so a wrong header
// cannot park a caller for hours.
const maxRetryAfter = 30 * time.Second

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// Client calls one coupond node (any node of a cluster answers any call).
// It is safe for concurrent use.
type Client struct {
	base  string // scheme://host:port, no trailing slash
	token string
	http  *http.Client
	retry Retry
}

// Option changes a Client made by New.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with h (for a custom
// transport or TLS settings). h should have no overall Timeout: exports and
// imports stream for as long as they take; use the context instead.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithRetry sets the retry bounds; Retry{Attempts: 1} turns retries off.
func WithRetry(r Retry) Option { return func(c *Client) { c.retry = r } }

// WithTLSConfig makes the Client speak HTTPS with cfg (a private CA, say).
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		c.http = &http.Client{Transport: tr}
	}
}

// New returns a client of the node at addr, "host:port" (plain HTTP) or a
// URL "http://host:port" or "https://host:port", that authenticates with
// token (empty for the calls that need none: Healthz, Readyz).
func New(addr, token string, opts ...Option) (*Client, error) {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("cannot use address %q: want host:port or http(s)://host:port", addr)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	c := &Client{base: u.Scheme + "://" + u.Host, token: token, http: &http.Client{Transport: tr}, retry: DefaultRetry}
	for _, o := range opts {
		o(c)
	}
	if c.retry.Attempts < 1 {
		c.retry.Attempts = 1
	}
	return c, nil
}

// Error is an error answer of the server: its status and the body
// {"error": {"code", "message", ...details}}. Code is empty when the body
// was not the API's error shape (a proxy's page, say).
type Error struct {
	Status  int
	Code    string
	Message string
	// Details holds the other fields of the error object, such as
	// "line" and "reason" of invalid_csv or "needed" and "available" of
	// insufficient_codes (JSON numbers as float64).
	Details map[string]any
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", e.Status)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	// Then the details, in a stable order.
	keys := make([]string, 0, len(e.Details))
	for k := range e.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + detailString(e.Details[k]))
		if i == len(keys)-1 {
			b.WriteString(")")
		}
	}
	return b.String()
}

// maxExactFloat is the largest integer a float64 holds exactly (2^53).
const maxExactFloat = 1 << 53

// detailString prints a detail value; a whole JSON number prints as an
// integer (available=10000000), as %v would print it in exponent form.
func detailString(v any) string {
	if f, ok := v.(float64); ok && f == math.Trunc(f) && math.Abs(f) <= maxExactFloat {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// StatusOf answers the HTTP status of a server error, 0 for other errors.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// HasCode reports a server error with the given error code, such as
// "insufficient_codes" or "list_in_use".
func HasCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// IsNotFound reports a 404: no such object (or one of another tenant).
func IsNotFound(err error) bool { return StatusOf(err) == http.StatusNotFound }

// IsUnauthorized reports a 401: no token, or one the server does not know.
func IsUnauthorized(err error) bool { return StatusOf(err) == http.StatusUnauthorized }

// IsForbidden reports a 403: the token's role may not make the call.
func IsForbidden(err error) bool { return StatusOf(err) == http.StatusForbidden }

// IsConflict reports a 409: the state of an object refuses the call.
func IsConflict(err error) bool { return StatusOf(err) == http.StatusConflict }

// IsRefused reports a 422: a rule refuses the call (not_eligible, ...).
func IsRefused(err error) bool { return StatusOf(err) == http.StatusUnprocessableEntity }

// IsBadRequest reports a 400: the input breaks the API's rules.
func IsBadRequest(err error) bool { return StatusOf(err) == http.StatusBadRequest }

// IsUnavailable reports a 503 that outlasted the retries: no leader, a node
// not ready, or a write whose outcome is unknown (repeat it later).
func IsUnavailable(err error) bool { return StatusOf(err) == http.StatusServiceUnavailable }

// retryable says when a failed try may be repeated.
type retryable int

const (
	// retryNever: repeat only what certainly did nothing.
	retryNever retryable = iota
	// retryAlways: the call is idempotent; any broken try may be repeated.
	retryAlways
	// retryUpload: an idempotent import, which may also meet its own
	// first try still streaming on the server (409 upload_in_progress).
	retryUpload
)

// call is one API request, made again for each try.
type call struct {
	method string
	path   string // escaped, from route
	query  url.Values
	header http.Header
	// body opens the request body for one try; nil means no body.
	body        func() (io.Reader, error)
	size        int64 // body length, -1 when unknown (sent chunked)
	contentType string
	retry       retryable
	// gone: a DELETE whose 404 after a try of unknown outcome means that
	// try deleted it.
	gone bool
	// probe: tried once whatever the answer (a readiness probe).
	probe bool
}

// errNoRepeat stops the retries of an upload whose body was partly read
// and cannot be rewound; the caller gets the error of the try before.
var errNoRepeat = errors.New("cannot send the upload again: its body cannot be rewound")

// jsonCall is a call with a JSON body (in may be nil).
func jsonCall(method, path string, in any, retry retryable) (*call, error) {
	c := &call{method: method, path: path, retry: retry, size: -1}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("cannot encode the request: %w", err)
		}
		c.body = func() (io.Reader, error) { return bytes.NewReader(b), nil }
		c.size = int64(len(b))
		c.contentType = "application/json"
	}
	return c, nil
}

// route joins path segments, each percent-encoded as one segment: a "/"
// inside becomes %2F, and "." and ".." become %2E and %2E%2E so that no
// one on the way resolves them as dot segments (SPEC §2).
func route(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		switch s {
		case ".":
			b.WriteString("%2E")
		case "..":
			b.WriteString("%2E%2E")
		default:
			b.WriteString(url.PathEscape(s))
		}
	}
	return b.String()
}

// do sends c, repeating it as c.retry allows, and returns a response with a
// 2xx status; the caller closes its body.
func (cl *Client) do(ctx context.Context, c *call) (*http.Response, error) {
	unknown := false // a try that may have taken effect was lost
	var prev error
	for attempt := 1; ; attempt++ {
		resp, err := cl.try(ctx, c)
		if errors.Is(err, errNoRepeat) && prev != nil {
			return nil, prev
		}
		var wait time.Duration
		again := false
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("cannot %s %s: %w", c.method, c.path, ctx.Err())
			}
			notSent := isDialError(err)
			again = c.retry != retryNever || notSent
			unknown = unknown || !notSent
			err = fmt.Errorf("cannot %s %s: %w", c.method, c.path, err)
		case resp.StatusCode < 300:
			return resp, nil
		default:
			apiErr := readError(resp)
			err = apiErr
			switch {
			case resp.StatusCode == http.StatusServiceUnavailable:
				nothingDone := apiErr.Code == "no_leader" || apiErr.Code == "not_ready"
				again = c.retry != retryNever || nothingDone
				unknown = unknown || !nothingDone
				wait = retryAfter(resp.Header.Get("Retry-After"))
			case resp.StatusCode == http.StatusConflict && apiErr.Code == "upload_in_progress":
				again = c.retry == retryUpload
			case resp.StatusCode == http.StatusNotFound && c.gone && unknown:
				return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Header: http.Header{}}, nil
			}
		}
		if !again || c.probe || attempt >= cl.retry.Attempts {
			return nil, err
		}
		prev = err
		if b := cl.backoff(attempt); b > wait {
			wait = b
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("cannot %s %s: %w (last try: %v)", c.method, c.path, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// try sends c once.
func (cl *Client) try(ctx context.Context, c *call) (*http.Response, error) {
	u := cl.base + c.path
	if len(c.query) > 0 {
		u += "?" + c.query.Encode()
	}
	var body io.Reader
	if c.body != nil {
		var err error
		if body, err = c.body(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u, body)
	if err != nil {
		if cl, ok := body.(io.Closer); ok {
			cl.Close() // as the transport would have: the next try waits for it
		}
		return nil, err
	}
	if body != nil {
		if c.size > 0 {
			req.ContentLength = c.size
		}
		req.Header.Set("Content-Type", c.contentType)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	return cl.http.Do(req)
}

func (cl *Client) backoff(attempt int) time.Duration {
	d := cl.retry.MinBackoff << (attempt - 1)
	if d <= 0 || d > cl.retry.MaxBackoff {
		d = cl.retry.MaxBackoff
	}
	// Jitter, so that many clients refused at once do not come back at once.
	return d/2 + rand.N(d/2+1)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	return max(0, min(d, maxRetryAfter))
}

// isDialError reports an error of opening the connection: the request was
// never sent, so repeating it is safe whatever it is.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// readError reads and closes an error answer.
func readError(resp *http.Response) *Error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody)) // lets the connection be reused
	e := &Error{Status: resp.StatusCode}
	var body struct {
		Error map[string]any `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != nil {
		e.Code, _ = body.Error["code"].(string)
		e.Message, _ = body.Error["message"].(string)
		delete(body.Error, "code")
		delete(body.Error, "message")
		if len(body.Error) > 0 {
			e.Details = body.Error
		}
		if e.Code != "" {
			return e
		}
	}
	e.Code = ""
	e.Message = strings.TrimSpace(http.StatusText(resp.StatusCode) + " " + strings.TrimSpace(string(b[:min(len(b), 200)])))
	return e
}

// decode reads a JSON answer into out and closes the body.
func decode(resp *http.Response, out any) error {
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("cannot read the answer of %s %s: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// doJSON sends c and decodes the answer into out; it answers the status.
func (cl *Client) doJSON(ctx context.Context, c *call, out any) (int, error) {
	resp, err := cl.do(ctx, c)
	if err != nil {
		return 0, err
	}
	if resp.Request == nil { // made up by do for an already gone object
		return resp.StatusCode, nil
	}
	return resp.StatusCode, decode(resp, out)
}
