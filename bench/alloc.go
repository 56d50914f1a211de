package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// The hot path of the send scenarios: request bodies are built with append
// (no encoding/json, no per-recipient strings), replies are read into a
// reused buffer and scanned by a small specialised parser that hands out
// sub-slices of it.

// rcptGen makes the recipients of one send: recipient i is
// prefix + i (decimal, zero-padded to width) + suffix.
type rcptGen struct {
	prefix, suffix string
	width          int
}

// Append appends recipient i to dst.
func (g rcptGen) Append(dst []byte, i int64) []byte {
	dst = append(dst, g.prefix...)
	var num [20]byte
	d := strconv.AppendInt(num[:0], i, 10)
	for k := len(d); k < g.width; k++ {
		dst = append(dst, '0')
	}
	dst = append(dst, d...)
	return append(dst, g.suffix...)
}

// String returns recipient i.
func (g rcptGen) String(i int64) string { return string(g.Append(nil, i)) }

// allocBody is the JSON body of one allocation request together with where
// each recipient sits in it, so that the reply can be checked against the
// request without keeping the recipients anywhere else.
type allocBody struct {
	buf        []byte
	offs       []int32 // recipient k is buf[offs[2k]:offs[2k+1]]
	onShortage string  // "": the field is left out (the server's default policy)
}

// N is the number of recipients in the body.
func (b *allocBody) N() int { return len(b.offs) / 2 }

// Recipient k of the body (a sub-slice of the body: do not keep it).
func (b *allocBody) Recipient(k int) []byte { return b.buf[b.offs[2*k]:b.offs[2*k+1]] }

// build writes {"message_id":M,"recipients":[r_from, ..., r_to-1]}, with
// "on_shortage" after the message when the body has one (it is the policy
// of a send the request opens; SPEC §4). Recipients made by rcptGen never
// need escaping; messageID is escaped.
func (b *allocBody) build(messageID string, g rcptGen, from, to int64) {
	b.buf = append(b.buf[:0], `{"message_id":`...)
	b.buf = appendJSONString(b.buf, messageID)
	if b.onShortage != "" {
		b.buf = append(b.buf, `,"on_shortage":`...)
		b.buf = appendJSONString(b.buf, b.onShortage)
	}
	b.buf = append(b.buf, `,"recipients":[`...)
	b.offs = b.offs[:0]
	for i := from; i < to; i++ {
		if i > from {
			b.buf = append(b.buf, ',')
		}
		b.buf = append(b.buf, '"')
		b.offs = append(b.offs, int32(len(b.buf)))
		b.buf = g.Append(b.buf, i)
		b.offs = append(b.offs, int32(len(b.buf)))
		b.buf = append(b.buf, '"')
	}
	b.buf = append(b.buf, "]}"...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s)
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// errBadReply is wrapped by every parse error of an allocation reply.
var errBadReply = errors.New("malformed allocation reply")

// parseAllocReply scans the 200 answer of POST /v1/sends/{id}/codes,
// {"assignments":[{"recipient":R,"code":C,"fallback"?:B},...],"available":N},
// calling fn for every assignment in order (fallback is false when the
// assignment has no "fallback" key: SPEC §4 flags only fallback ones). The slices given to fn point into data (or
// into a scratch buffer when the string had escapes): fn must copy what it
// keeps. Keys may come in any order and unknown keys are skipped. It returns
// the "available" count and the number of assignments.
func parseAllocReply(data []byte, fn func(k int, rcpt, code []byte, fallback bool) error) (available int64, n int, err error) {
	s := scanner{data: data}
	defer func() {
		if err != nil && errors.Is(err, errBadReply) {
			err = fmt.Errorf("%w (at byte %d of %d)", err, s.pos, len(data))
		}
	}()
	haveAssign, haveAvail := false, false
	err = s.object(func(key []byte) error {
		switch string(key) {
		case "assignments":
			haveAssign = true
			return s.array(func() error {
				var rcpt, code []byte
				var haveR, haveC, fallback bool
				err := s.object(func(k []byte) error {
					var err error
					switch string(k) {
					case "recipient":
						rcpt, err = s.str(&s.scratchR)
						haveR = true
					case "code":
						code, err = s.str(&s.scratchC)
						haveC = true
					case "fallback":
						fallback, err = s.boolean()
					default:
						err = s.skip()
					}
					return err
				})
				if err != nil {
					return err
				}
				if !haveR || !haveC {
					return fmt.Errorf("%w: assignment %d lacks recipient or code", errBadReply, n)
				}
				if err := fn(n, rcpt, code, fallback); err != nil {
					return err
				}
				n++
				return nil
			})
		case "available":
			haveAvail = true
			v, err := s.int()
			available = v
			return err
		default:
			return s.skip()
		}
	})
	if err != nil {
		return available, n, err
	}
	s.ws()
	if s.pos != len(s.data) {
		return available, n, fmt.Errorf("%w: text after the object", errBadReply)
	}
	if !haveAssign {
		return available, n, fmt.Errorf(`%w: no "assignments"`, errBadReply)
	}
	if !haveAvail {
		return available, n, fmt.Errorf(`%w: no "available"`, errBadReply)
	}
	return available, n, nil
}

// scanner is a minimal JSON reader over a byte slice.
type scanner struct {
	data               []byte
	pos                int
	scratchR, scratchC []byte
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) expect(c byte) error {
	s.ws()
	if s.pos >= len(s.data) {
		return fmt.Errorf("%w: unexpected end, want %q", errBadReply, c)
	}
	if s.data[s.pos] != c {
		return fmt.Errorf("%w: %q where %q was expected", errBadReply, s.data[s.pos], c)
	}
	s.pos++
	return nil
}

// peek returns the next non-space byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

// object reads {"k": v, ...}, calling member with each key; member must
// consume the value.
func (s *scanner) object(member func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	var scratch []byte
	for {
		key, err := s.str(&scratch)
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return fmt.Errorf("%w: want , or } in an object", errBadReply)
		}
	}
}

// array reads [v, ...], calling elem for each element; elem must consume it.
func (s *scanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return fmt.Errorf("%w: want , or ] in an array", errBadReply)
		}
	}
}

// str reads a string. Without escapes it returns a sub-slice of the data;
// with escapes it decodes into *scratch.
func (s *scanner) str(scratch *[]byte) ([]byte, error) {
	if err := s.expect('"'); err != nil {
		return nil, err
	}
	start := s.pos
	// One pass over the (short) string: its end, or an escape.
	for i := start; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '"':
			s.pos = i + 1
			return s.data[start:i], nil
		case c == '\\':
			return s.escaped(start, scratch)
		case c < 0x20:
			return nil, fmt.Errorf("%w: control character in a string", errBadReply)
		}
	}
	return nil, fmt.Errorf("%w: unterminated string", errBadReply)
}

// escaped reads the rest of a string that starts at start (after its
// quote) and has an escape: it decodes it into *scratch.
func (s *scanner) escaped(start int, scratch *[]byte) ([]byte, error) {
	// Escapes: find the real end, then let encoding/json decode it.
	j := start
	for {
		if j >= len(s.data) {
			return nil, fmt.Errorf("%w: unterminated string", errBadReply)
		}
		c := s.data[j]
		if c == '\\' {
			j += 2
			continue
		}
		if c == '"' {
			break
		}
		j++
	}
	var v string
	if err := json.Unmarshal(s.data[start-1:j+1], &v); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadReply, err)
	}
	s.pos = j + 1
	*scratch = append((*scratch)[:0], v...)
	return *scratch, nil
}

// int reads a non-negative integer (a JSON number without fraction).
func (s *scanner) int() (int64, error) {
	s.ws()
	start := s.pos
	for s.pos < len(s.data) && (s.data[s.pos] >= '0' && s.data[s.pos] <= '9' || s.data[s.pos] == '-') {
		s.pos++
	}
	v, err := strconv.ParseInt(string(s.data[start:s.pos]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad integer %q", errBadReply, s.data[start:s.pos])
	}
	return v, nil
}

// boolean reads true or false.
func (s *scanner) boolean() (bool, error) {
	s.ws()
	for _, lit := range []string{"true", "false"} {
		if bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
			s.pos += len(lit)
			return lit == "true", nil
		}
	}
	return false, fmt.Errorf("%w: want true or false", errBadReply)
}

// skip consumes any JSON value.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		var scratch []byte
		_, err := s.str(&scratch)
		return err
	case c == 0:
		return fmt.Errorf("%w: unexpected end", errBadReply)
	default:
		start := s.pos
		for s.pos < len(s.data) {
			c := s.data[s.pos]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			s.pos++
		}
		if !json.Valid(s.data[start:s.pos]) {
			return fmt.Errorf("%w: bad value %q", errBadReply, s.data[start:s.pos])
		}
		return nil
	}
}

// errorCode extracts error.code of an error body ("" when there is none).
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// poster sends requests on the hot path and reads the answers into a buffer
// it reuses. One per goroutine.
type poster struct {
	c   *Client
	raw *rawConn // nil: net/http
	buf []byte
}

func newPoster(c *Client) *poster { return &poster{c: c, raw: c.rawConn()} }

// sendCodesPath is the allocation path of a send.
func sendCodesPath(sendID string) string { return "/v1/sends/" + url.PathEscape(sendID) + "/codes" }

// post sends body as JSON and returns the status and the whole answer
// (valid until the next call).
func (p *poster) post(ctx context.Context, path string, body []byte) (int, []byte, error) {
	if p.raw != nil {
		st, b, err := p.raw.post(ctx, path, body, p.buf)
		p.buf = b[:0]
		return st, b, err
	}
	req, err := p.c.newRequest(ctx, http.MethodPost, path, bytes.NewReader(body), int64(len(body)), "application/json")
	if err != nil {
		return 0, nil, err
	}
	resp, err := p.c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > 0 && int64(cap(p.buf)) < resp.ContentLength {
		p.buf = make([]byte, 0, resp.ContentLength)
	}
	b := p.buf[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := resp.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return resp.StatusCode, nil, fmt.Errorf("POST %s: reading the answer: %w", path, err)
		}
	}
	p.buf = b
	return resp.StatusCode, b, nil
}

// postErr turns a non-200 answer into an *APIError.
func postErr(path string, status int, body []byte) *APIError {
	if len(body) > maxErrBody {
		body = body[:maxErrBody]
	}
	return &APIError{Method: http.MethodPost, Path: path, Status: status, Body: string(body)}
}
