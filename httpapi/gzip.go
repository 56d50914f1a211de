package httpapi

// Compressed uploads (SPEC §4): CSV bodies (create-and-import, top-up,
// withdrawal) and recipient bodies (allocation, release) may come with
// Content-Encoding: gzip. They are decoded as a stream, and the body limit
// holds twice: for the bytes sent and for the bytes they decode to, so a
// small body that expands past it is refused like a large one (413) before
// anything is written. JSON bodies take no encoding: 415.

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/valyala/fasthttp"
)

// Accept-Encoding of a 415 answer (RFC 7694): what this call takes.
const (
	acceptGzip     = "gzip"
	acceptIdentity = "identity"
)

// requestGzip reads the Content-Encoding of a request whose body may be
// gzip-compressed: true for gzip (or its old name x-gzip), false for none
// or identity. Anything else, and gzip applied twice, is 415: decoding
// only some of the layers would feed compressed bytes to the parser.
func requestGzip(ctx *fasthttp.RequestCtx) (bool, *apiError) {
	h := ctx.Request.Header.ContentEncoding()
	gz := 0
	for _, tok := range bytes.Split(h, []byte(",")) {
		tok = bytes.Trim(tok, " \t")
		switch {
		case len(tok) == 0, equalFoldASCII(tok, "identity"):
		case equalFoldASCII(tok, "gzip"), equalFoldASCII(tok, "x-gzip"):
			gz++
		default:
			return false, unsupportedEncoding(ctx, h, acceptGzip)
		}
	}
	if gz > 1 {
		return false, unsupportedEncoding(ctx, h, acceptGzip)
	}
	return gz == 1, nil
}

// identityOnly refuses a request body with a Content-Encoding: the calls
// that take JSON decode none.
func identityOnly(ctx *fasthttp.RequestCtx) *apiError {
	h := ctx.Request.Header.ContentEncoding()
	for _, tok := range bytes.Split(h, []byte(",")) {
		tok = bytes.Trim(tok, " \t")
		if len(tok) > 0 && !equalFoldASCII(tok, "identity") {
			return unsupportedEncoding(ctx, h, acceptIdentity)
		}
	}
	return nil
}

// unsupportedEncoding is the 415 answer; its Accept-Encoding header tells
// the client what to send instead (RFC 7694).
func unsupportedEncoding(ctx *fasthttp.RequestCtx, got []byte, accept string) *apiError {
	ctx.Response.Header.Set("Accept-Encoding", accept)
	msg := fmt.Sprintf("Content-Encoding %q is not supported by this call", got)
	if accept == acceptGzip {
		msg += "; send the body as it is, or gzip-compressed once"
	} else {
		msg += "; send the body uncompressed"
	}
	return newError(fasthttp.StatusUnsupportedMediaType, "unsupported_encoding", msg)
}

// uploadBody returns a CSV or recipients body as the handler reads it:
// decoded when it came gzip-compressed, and cut at limit both as sent and
// as decoded (reading past either fails with errBodyTooLarge). A declared
// length past the limit is refused at once.
func (s *Server) uploadBody(ctx *fasthttp.RequestCtx, limit int64) (io.Reader, bool, *apiError) {
	gz, e := requestGzip(ctx)
	if e != nil {
		return nil, false, e
	}
	if cl := ctx.Request.Header.ContentLength(); cl > 0 && int64(cl) > limit {
		return nil, false, errTooLarge
	}
	sent := &limitedBody{r: bodyStream(ctx), n: limit}
	if !gz {
		return sent, false, nil
	}
	decoded := &limitedBody{r: &gunzipBody{src: &srcReader{r: sent}}, n: limit}
	return &decodedBody{limitedBody: decoded, sent: sent, limit: limit}, true, nil
}

// decodedBody is a gzip body as uploadBody returns it: the decoded bytes,
// and the counts an estimate of their length needs.
type decodedBody struct {
	*limitedBody              // decoded
	sent         *limitedBody // as sent
	limit        int64
}

// estimatedLen scales the length as sent (declared, -1 when unknown) by
// the ratio read so far: a new list's index is then sized about once, as
// for a plain body (propose.SizedBody). The decoder's read-ahead makes it
// a little low; it changes no outcome.
func (d *decodedBody) estimatedLen(declared int) int {
	in, out := d.limit-d.sent.n, d.limit-d.limitedBody.n
	if declared <= 0 || in <= 0 || out <= 0 {
		return -1
	}
	return int(min(float64(declared)*float64(out)/float64(in), float64(d.limit)))
}

// gzipError is a body that is not a whole gzip stream: a bad header, a
// corrupt deflate stream, a checksum that does not match, or a stream cut
// short.
type gzipError struct{ err error }

func (e *gzipError) Error() string { return "the body is not a valid gzip stream: " + e.err.Error() }
func (e *gzipError) Unwrap() error { return e.err }

// gunzipBody decodes a gzip body as it is read (members one after another,
// as RFC 1952 allows). Errors of the body itself (the limit, a broken
// connection) come back as they are, not as gzip errors: the decoder sees
// them only as a stream that ended early.
type gunzipBody struct {
	src *srcReader
	zr  *gzip.Reader
	err error // sticky
}

// srcReader remembers the last error of the body other than its end.
type srcReader struct {
	r   io.Reader
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

func (g *gunzipBody) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.zr == nil {
		// NewReader reads the first header now, on the first Read, so all
		// failures come through the reader the handler reads.
		zr, err := gzip.NewReader(g.src)
		if err != nil {
			g.err = g.fail(err)
			return 0, g.err
		}
		g.zr = zr
	}
	n, err := g.zr.Read(p)
	if err != nil && err != io.EOF {
		g.err = g.fail(err)
		err = g.err
	}
	return n, err
}

func (g *gunzipBody) fail(err error) error {
	if g.src.err != nil {
		return g.src.err
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // an empty body is no gzip stream
	}
	return &gzipError{err: err}
}

// bodyReadError maps an error of reading a body (not its syntax) to the
// API's answer.
func bodyReadError(err error) *apiError {
	var ge *gzipError
	switch {
	case errors.Is(err, errBodyTooLarge):
		return errTooLarge
	case errors.As(err, &ge):
		return newError(fasthttp.StatusBadRequest, "invalid_gzip", ge.Error())
	}
	return badRequest("cannot read the request body")
}

// readUpload reads a whole recipients body of at most limit bytes, decoded
// when it came gzip-compressed; it is readBody for the calls that take gzip.
func (s *Server) readUpload(ctx *fasthttp.RequestCtx, limit int64) ([]byte, *apiError) {
	gz, e := requestGzip(ctx)
	if e != nil {
		return nil, e
	}
	if !gz {
		return readPlainBody(ctx, limit)
	}
	r, _, e := s.uploadBody(ctx, limit)
	if e != nil {
		return nil, e
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, bodyReadError(err)
	}
	return buf.Bytes(), nil
}
