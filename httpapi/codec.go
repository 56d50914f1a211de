package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/valyala/fasthttp"
)

// decodeJSON reads a small JSON body into v, refusing unknown fields and
// trailing data.
func (s *Server) decodeJSON(ctx *fasthttp.RequestCtx, v any) *apiError {
	body, e := readBody(ctx, min(int64(maxJSONBody), s.cfg.MaxBody))
	if e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := "the body is not valid JSON for this call"
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			msg = fmt.Sprintf("field %q has the wrong type", te.Field)
		case err == io.EOF:
			msg = "the body is empty; a JSON object is required"
		case bytes.HasPrefix([]byte(err.Error()), []byte("json: unknown field")):
			msg = err.Error()[len("json: "):]
		}
		return newError(fasthttp.StatusBadRequest, "invalid_json", msg)
	}
	if dec.More() {
		return newError(fasthttp.StatusBadRequest, "invalid_json", "unexpected data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newError(fasthttp.StatusBadRequest, "invalid_json", "unexpected data after the JSON object")
	}
	return nil
}

// drainLimit bounds how much of an unread body the server reads and drops
// before it answers an early refusal: a client that is still sending gets
// the answer instead of a reset connection. Past it the connection closes.
const drainLimit = 64 << 20

// drainIdle bounds the wait for more body bytes while draining: a client
// that stopped sending gets its answer instead of a hang.
const drainIdle = time.Second

// drainBody reads what is left of the request body, up to drainLimit; a
// body known to be longer is not read at all and the connection closes.
func drainBody(ctx *fasthttp.RequestCtx) {
	r := ctx.RequestBodyStream()
	if r == nil {
		return
	}
	cl := ctx.Request.Header.ContentLength()
	if cl > drainLimit {
		ctx.SetConnectionClose()
		return
	}
	// A body of known length that was read to its end answers EOF at once,
	// without I/O: most calls end here, with no deadline to set and clear.
	// (An empty read of a chunked body could block on the next chunk size.)
	if cl >= 0 {
		if _, err := r.Read(nil); err == io.EOF {
			return
		}
	}
	conn := ctx.Conn()
	d := &idleReader{r: r, conn: conn}
	n, err := io.Copy(io.Discard, io.LimitReader(d, drainLimit))
	conn.SetReadDeadline(time.Time{})
	if err != nil || n >= drainLimit {
		ctx.SetConnectionClose()
	}
}

// idleReader fails a read that waits longer than drainIdle.
type idleReader struct {
	r    io.Reader
	conn net.Conn
}

func (i *idleReader) Read(p []byte) (int, error) {
	i.conn.SetReadDeadline(time.Now().Add(drainIdle))
	return i.r.Read(p)
}

// readBody reads a whole uncompressed body of at most limit bytes (413
// past it) into one buffer; a Content-Encoding is refused (415).
func readBody(ctx *fasthttp.RequestCtx, limit int64) ([]byte, *apiError) {
	if e := identityOnly(ctx); e != nil {
		return nil, e
	}
	return readPlainBody(ctx, limit)
}

// readPlainBody is readBody after the encoding check: one buffer, sized by
// Content-Length when the client sent one.
func readPlainBody(ctx *fasthttp.RequestCtx, limit int64) ([]byte, *apiError) {
	if cl := ctx.Request.Header.ContentLength(); cl >= 0 {
		if int64(cl) > limit {
			return nil, errTooLarge
		}
		// The length is known: one buffer of exactly that size, no growing.
		buf := make([]byte, cl)
		if _, err := io.ReadFull(bodyStream(ctx), buf); err != nil {
			return nil, badRequest("cannot read the request body")
		}
		return buf, nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, 512))
	if _, err := buf.ReadFrom(io.LimitReader(bodyStream(ctx), limit+1)); err != nil {
		return nil, badRequest("cannot read the request body")
	}
	if int64(buf.Len()) > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// bodyStream returns the request body as a stream: with fasthttp's
// StreamRequestBody, large bodies are never held whole in memory.
func bodyStream(ctx *fasthttp.RequestCtx) io.Reader {
	if r := ctx.RequestBodyStream(); r != nil {
		if n := ctx.Request.Header.ContentLength(); n >= 0 {
			return &declaredBody{r: r, left: int64(n)}
		}
		return r // chunked: fasthttp reports a cut itself
	}
	return bytes.NewReader(ctx.Request.Body())
}

// declaredBody is a streamed body with a Content-Length. fasthttp ends
// such a stream with a plain io.EOF when the client stops sending before
// the length (a broken connection); that must not read as the end of the
// body, or a cut upload would be committed as if it were whole.
type declaredBody struct {
	r    io.Reader
	left int64 // bytes still announced
}

func (b *declaredBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// limitedBody is the body cut at max bytes; reading past it fails with errBodyTooLarge.
type limitedBody struct {
	r   io.Reader
	n   int64 // bytes left before the limit
	hit bool
}

var errBodyTooLarge = errors.New("request body too large")

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// Read one more byte to tell "exactly at the limit" from "past it".
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.hit = true
			return 0, errBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// queryBool reads an optional boolean query parameter.
func queryBool(ctx *fasthttp.RequestCtx, name string, def bool) (bool, *apiError) {
	args := ctx.QueryArgs()
	if !args.Has(name) {
		return def, nil
	}
	switch string(args.Peek(name)) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, badRequest(fmt.Sprintf("query parameter %q must be true or false", name))
}
