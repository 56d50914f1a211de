package httpapi

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/httpapi/recipjson"
	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// Limits of allocation (SPEC §2).
const (
	maxRecipients = 100_000
	// maxAllocBody bounds an allocation body: 100,000 recipients of 256
	// bytes with JSON quoting fit.
	maxAllocBody = 64 << 20
)

type sendJSON struct {
	SendID     string `json:"send_id"`
	MessageID  string `json:"message_id"`
	ListID     string `json:"list_id"`
	Status     string `json:"status"`
	Reserved   uint64 `json:"reserved"`
	Assigned   uint64 `json:"assigned"`
	OnShortage string `json:"on_shortage"`
	CreatedAt  string `json:"created_at"`
}

func toSendJSON(sd *raftfsm.Send) sendJSON {
	status := "open"
	if sd.Closed {
		status = "closed"
	}
	return sendJSON{SendID: sd.ID, MessageID: sd.Message, ListID: formatListID(sd.List), Status: status,
		Reserved: sd.Reserved, Assigned: sd.Assigned, OnShortage: sd.OnShortage.String(), CreatedAt: rfc3339(sd.CreatedAt)}
}

// parseShortage reads an on_shortage value of a request.
func parseShortage(v string) (raftfsm.Shortage, *apiError) {
	p, ok := raftfsm.ParseShortage(v)
	if !ok {
		return 0, badRequest(fmt.Sprintf("on_shortage must be reject or fallback, not %q", v))
	}
	return p, nil
}

func (s *Server) openSend(r *request) *apiError {
	id := r.seg[2]
	if e := validID("send id", id); e != nil {
		return e
	}
	var in struct {
		MessageID          *string `json:"message_id"`
		ExpectedRecipients *uint64 `json:"expected_recipients"`
		OnShortage         *string `json:"on_shortage"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	if in.MessageID == nil {
		return badRequest("message_id is required")
	}
	c := &raftfsm.OpenSend{Tenant: r.token.Tenant, Send: id, Message: *in.MessageID, At: s.now().UnixNano()}
	if in.ExpectedRecipients != nil {
		c.HasExpected, c.Expected = true, *in.ExpectedRecipients
	}
	if in.OnShortage != nil {
		p, e := parseShortage(*in.OnShortage)
		if e != nil {
			return e
		}
		c.SetOnShortage, c.OnShortage = true, p
	}
	res, err := s.prop.OpenSend(c)
	if err != nil {
		return fromApply(err)
	}
	status := fasthttp.StatusOK
	if res.Created {
		status = fasthttp.StatusCreated
	}
	writeJSON(r.ctx, status, map[string]any{"send_id": res.Send.ID, "list_id": formatListID(res.Send.List), "reserved": res.Send.Reserved,
		"on_shortage": res.Send.OnShortage.String()})
	return nil
}

func (s *Server) getSend(r *request) *apiError {
	sd, ok := s.state.Send(r.token.Tenant, r.seg[2])
	if !ok {
		return errNotFound
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toSendJSON(sd))
	return nil
}

func (s *Server) closeSend(r *request) *apiError {
	sd, err := s.prop.CloseSend(&raftfsm.CloseSend{Tenant: r.token.Tenant, Send: r.seg[2], At: s.now().UnixNano()})
	if err != nil {
		return fromApply(err)
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toSendJSON(sd))
	return nil
}

// recipientsBody is a parsed allocation or release body.
type recipientsBody struct {
	message    string
	onShortage *string // nil: not given
	recips     [][]byte
}

// readAllocation parses an allocation body: JSON {"message_id"?,
// "on_shortage"?, "recipients"} or text/plain, one recipient per line,
// with ?message_id= and ?on_shortage=.
func (s *Server) readAllocation(ctx *fasthttp.RequestCtx) (recipientsBody, *apiError) {
	return s.readRecipients(ctx, recipjson.MessageID|recipjson.OnShortage)
}

// readRecipients parses a body of recipients, JSON or text/plain, with the
// optional fields of optional (none for a release).
func (s *Server) readRecipients(ctx *fasthttp.RequestCtx, optional recipjson.Fields) (out recipientsBody, e *apiError) {
	body, e := s.readUpload(ctx, min(int64(maxAllocBody), s.cfg.MaxBody))
	if e != nil {
		return out, e
	}
	var recips [][]byte
	if isMediaType(ctx.Request.Header.ContentType(), "text/plain") {
		args := ctx.QueryArgs()
		if optional&recipjson.MessageID != 0 {
			out.message = string(args.Peek("message_id"))
		}
		if optional&recipjson.OnShortage != 0 && args.Has("on_shortage") {
			v := string(args.Peek("on_shortage"))
			out.onShortage = &v
		}
		body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")) // a leading BOM is no recipient
		// Lines are slices of the body, which lives as long as the request.
		for rest := body; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) == 0 {
				continue
			}
			if len(recips) == maxRecipients {
				return out, tooManyRecipients()
			}
			recips = append(recips, line[:len(line):len(line)])
		}
	} else {
		req, err := recipjson.ParseRequest(body, maxRecipients, optional)
		if errors.Is(err, recipjson.ErrTooManyRecipients) {
			return out, tooManyRecipients()
		}
		if err != nil {
			shape := `{"recipients": [string, ...]}`
			if optional != 0 {
				shape = `{"message_id"?: string, "on_shortage"?: string, "recipients": [string, ...]}`
			}
			return out, newError(fasthttp.StatusBadRequest, "invalid_json", "the body must be "+shape+": "+err.Error())
		}
		if req.MessageID != nil {
			out.message = *req.MessageID
		}
		out.onShortage = req.OnShortage
		recips = req.Recipients
	}
	if len(recips) == 0 {
		return out, badRequest("recipients must not be empty")
	}
	for i, rc := range recips {
		if !validRecipient(rc) {
			return out, validID(fmt.Sprintf("recipients[%d]", i), string(rc))
		}
	}
	if out.message != "" {
		if e := validID("message_id", out.message); e != nil {
			return out, e
		}
	}
	out.recips = recips
	return out, nil
}

// validRecipient is validID's check without allocating: 1 to maxIDLen
// bytes of UTF-8 without control characters.
func validRecipient(r []byte) bool {
	if len(r) == 0 || len(r) > maxIDLen {
		return false
	}
	for i := 0; i < len(r); {
		c := r[i]
		if c < 0x80 {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		ru, n := utf8.DecodeRune(r[i:])
		if ru == utf8.RuneError && n <= 1 || (ru >= 0x80 && ru < 0xa0) || ru == 0x2028 || ru == 0x2029 {
			return false
		}
		i += n
	}
	return true
}

func tooManyRecipients() *apiError {
	return newError(fasthttp.StatusRequestEntityTooLarge, "too_many_recipients",
		fmt.Sprintf("at most %d recipients per request; send the rest in more requests with the same send_id", maxRecipients))
}

func (s *Server) allocate(r *request) *apiError {
	send := r.seg[2]
	if e := validID("send id", send); e != nil {
		return e
	}
	in, e := s.readAllocation(r.ctx)
	if e != nil {
		return e
	}
	var policy raftfsm.Shortage
	if in.onShortage != nil {
		if policy, e = parseShortage(*in.onShortage); e != nil {
			return e
		}
	}
	tenant, at := r.token.Tenant, s.now().UnixNano()
	if in.message == "" {
		if _, ok := s.state.Send(tenant, send); !ok {
			return badRequest("message_id is required: the send does not exist yet")
		}
	}
	res, err := s.prop.Allocate(propose.Allocation{Tenant: tenant, Send: send, Message: in.message, Recipients: in.recips, At: at,
		OnShortage: policy})
	if err != nil {
		return fromApply(err)
	}
	s.writeAssignments(r.ctx, in.recips, res.Codes, res.Fallback, res.Available)
	return nil
}

// release gives the codes of recipients of a send back to its list (SPEC
// §4); on open and closed sends alike.
func (s *Server) release(r *request) *apiError {
	send := r.seg[2]
	if e := validID("send id", send); e != nil {
		return e
	}
	in, e := s.readRecipients(r.ctx, 0)
	if e != nil {
		return e
	}
	res, err := s.prop.Release(propose.ReleaseRequest{Tenant: r.token.Tenant, Send: send, Recipients: in.recips, At: s.now().UnixNano()})
	if err != nil {
		return fromApply(err)
	}
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]uint64{
		"released": res.Released, "not_assigned": res.NotAssigned, "already_released": res.AlreadyReleased})
	return nil
}

// isMediaType compares the media type of a Content-Type, case-insensitively.
func isMediaType(ct []byte, want string) bool {
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ct), []byte(want))
}

// wantsCSV reads Accept: CSV when text/csv is acceptable (q > 0) and
// preferred to JSON (a higher q, or the same q and listed first).
func wantsCSV(ctx *fasthttp.RequestCtx) bool {
	accept := ctx.Request.Header.Peek("Accept")
	if !containsFoldASCII(accept, "csv") {
		return false // no text/csv: JSON, the default
	}
	csvQ, jsonQ := -1.0, -1.0
	csvFirst := false
	for i, part := range bytes.Split(accept, []byte(",")) {
		fields := bytes.Split(part, []byte(";"))
		mt := bytes.ToLower(bytes.TrimSpace(fields[0]))
		q := 1.0
		for _, p := range fields[1:] {
			p = bytes.TrimSpace(p)
			if len(p) > 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' {
				if v, err := strconv.ParseFloat(string(p[2:]), 64); err == nil {
					q = v
				}
			}
		}
		switch string(mt) {
		case "text/csv":
			csvQ, csvFirst = q, jsonQ < 0 || i == 0
		case "application/json":
			jsonQ = q
		}
	}
	return csvQ > 0 && (csvQ > jsonQ || (csvQ == jsonQ && csvFirst))
}

// writeAssignments answers an allocation; fallback[i] marks codes[i] as
// the list's fallback code (fallback is nil when none is). The CSV keeps
// its two columns: a fallback row just carries the fallback code.
func (s *Server) writeAssignments(ctx *fasthttp.RequestCtx, recips, codes [][]byte, fallback []bool, available uint64) {
	var b []byte
	if wantsCSV(ctx) {
		b = make([]byte, 0, len(recips)*40)
		for i, rc := range recips {
			b = appendCSVField(b, rc)
			b = append(b, ',')
			b = appendCSVField(b, codes[i])
			b = append(b, '\n')
		}
		ctx.SetContentType("text/csv; charset=utf-8")
	} else {
		size := 48 // the braces and "available"
		for i, rc := range recips {
			size += len(`{"recipient":"","code":""},`) + len(rc) + len(codes[i])
		}
		b = make([]byte, 0, size)
		b = append(b, `{"assignments":[`...)
		for i, rc := range recips {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"recipient":`...)
			b = appendJSONString(b, rc)
			b = append(b, `,"code":`...)
			b = appendJSONString(b, codes[i])
			if fallback != nil && fallback[i] {
				b = append(b, `,"fallback":true`...)
			}
			b = append(b, '}')
		}
		b = append(b, `],"available":`...)
		b = strconv.AppendUint(b, available, 10)
		b = append(b, "}\n"...)
		ctx.SetContentType("application/json")
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.SetBodyRaw(b) // b is this answer's alone: no copy
}

// jsonPlain marks the bytes a JSON string holds as they are.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string; s is valid UTF-8.
func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	i := 0
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	b = append(b, s[:i]...) // most codes and recipients end here
	for _, c := range s[i:] {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// appendCSVField appends s as one RFC 4180 field, quoted when it must be.
func appendCSVField(b, s []byte) []byte {
	if bytes.ContainsAny(s, ",\"\r\n") || (len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == ' ')) {
		b = append(b, '"')
		for _, c := range s {
			if c == '"' {
				b = append(b, '"')
			}
			b = append(b, c)
		}
		return append(b, '"')
	}
	return append(b, s...)
}

func (s *Server) sendAssignments(r *request) *apiError {
	tenant, send := r.token.Tenant, r.seg[2]
	if _, ok := s.state.Send(tenant, send); !ok {
		return errNotFound
	}
	csv := wantsCSV(r.ctx)
	if csv {
		r.ctx.SetContentType("text/csv; charset=utf-8")
	} else {
		r.ctx.SetContentType("application/json")
	}
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	fsm := s.state
	conn, log := r.ctx.Conn(), s.log
	r.ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		var b []byte
		var writeErr error
		if !csv {
			w.WriteString(`{"assignments":[`)
		}
		first := true
		err := fsm.EachAssignment(tenant, send, func(a *raftfsm.Assignment) error {
			b = b[:0]
			if csv {
				b = appendCSVField(b, []byte(a.Recipient))
				b = append(b, ',')
				b = appendCSVField(b, []byte(a.Code))
				b = append(b, '\n')
			} else {
				if !first {
					b = append(b, ',')
				}
				first = false
				b = appendAssignmentJSON(b, a, false)
			}
			_, writeErr = w.Write(b)
			return writeErr
		})
		if err != nil {
			if writeErr == nil {
				// The status went out already. Ending the chunked body
				// normally would make a cut CSV export look complete, so
				// the connection is dropped before the last chunk.
				log.Error().Err(err).Str("send", send).Msg("cannot read a send's assignments; export cut")
				conn.Close()
			}
			return
		}
		if !csv {
			w.WriteString("]}\n")
		}
	})
	return nil
}

// appendAssignmentJSON writes one assignment; history adds the send and
// message. A fallback one carries "fallback": true, a released one its
// "released_at"; both fields are absent otherwise.
func appendAssignmentJSON(b []byte, a *raftfsm.Assignment, history bool) []byte {
	if history {
		b = append(b, `{"code":`...)
		b = appendJSONString(b, []byte(a.Code))
		b = append(b, `,"list_id":"`...)
		b = append(b, formatListID(a.List)...)
		b = append(b, `","message_id":`...)
		b = appendJSONString(b, []byte(a.Message))
		b = append(b, `,"send_id":`...)
		b = appendJSONString(b, []byte(a.Send))
	} else {
		b = append(b, `{"recipient":`...)
		b = appendJSONString(b, []byte(a.Recipient))
		b = append(b, `,"code":`...)
		b = appendJSONString(b, []byte(a.Code))
	}
	b = append(b, `,"assigned_at":"`...)
	b = append(b, rfc3339(a.At)...)
	b = append(b, '"')
	if a.Fallback {
		b = append(b, `,"fallback":true`...)
	}
	if a.ReleasedAt != 0 {
		b = append(b, `,"released_at":"`...)
		b = append(b, rfc3339(a.ReleasedAt)...)
		b = append(b, '"')
	}
	return append(b, '}')
}

func (s *Server) recipientHistory(r *request) *apiError {
	rc := r.seg[2]
	if e := validID("recipient", rc); e != nil {
		return e
	}
	hist, err := s.state.RecipientHistory(r.token.Tenant, []byte(rc))
	if err != nil {
		return fromApply(err)
	}
	b := []byte(`{"assignments":[`)
	for i := range hist {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendAssignmentJSON(b, &hist[i], true)
	}
	b = append(b, "]}\n"...)
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetContentType("application/json")
	r.ctx.SetBody(b)
	return nil
}
