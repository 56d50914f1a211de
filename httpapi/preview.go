package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/httpapi/render"
	"github.com/coupond/coupond/raftfsm"
)

// previewMessage renders a template with a message's code (SPEC §4): the
// code its list hands out next, or the code a recipient holds in a send.
// It writes nothing and takes nothing. As a POST it is answered by the
// leader (a follower forwards it like a write), so the next code is the
// one the next allocation gets.
func (s *Server) previewMessage(r *request) *apiError {
	m, ok := s.state.Message(r.token.Tenant, r.seg[2])
	if !ok {
		return newError(fasthttp.StatusNotFound, "not_found", "no such message")
	}
	var in struct {
		HTML      *string `json:"html"`
		SendID    *string `json:"send_id"`
		Recipient *string `json:"recipient"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	if in.HTML == nil {
		return badRequest("html is required: the template to render")
	}
	if (in.SendID == nil) != (in.Recipient == nil) {
		return badRequest("send_id and recipient go together: the code a recipient got in a send")
	}
	var code string
	var list uint64
	if in.SendID != nil {
		a, e := s.previewAssignment(r.token.Tenant, m, *in.SendID, *in.Recipient)
		if e != nil {
			return e
		}
		code, list = a.Code, a.List
	} else {
		var e *apiError
		if code, e = s.previewNextCode(r.token.Tenant, m); e != nil {
			return e
		}
		list = m.List
	}
	out, err := render.Code(*in.HTML, code)
	if err != nil {
		return newError(fasthttp.StatusBadRequest, "invalid_html", err.Error())
	}
	// Not writeJSON: json.Marshal would write every < > & of the HTML as
	// \u003c and the like, valid but unreadable in a terminal.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]string{"html": out, "code": code, "list_id": formatListID(list)}); err != nil {
		panic("BUG: cannot encode response: " + err.Error())
	}
	r.ctx.SetStatusCode(fasthttp.StatusOK)
	r.ctx.SetContentType("application/json")
	r.ctx.SetBody(b.Bytes())
	return nil
}

// previewNextCode is the code m's list hands out next.
func (s *Server) previewNextCode(tenant string, m *raftfsm.Message) (string, *apiError) {
	noList := newError(fasthttp.StatusUnprocessableEntity, "no_coupon_list", "the message has no coupon list")
	if m.List == 0 {
		return "", noList
	}
	v, ok := s.state.List(tenant, m.List)
	if !ok {
		return "", noList
	}
	if v.Expired(s.now().UnixNano()) {
		return "", fromApply(raftfsm.ErrListExpired)
	}
	code, ok, err := s.state.NextCode(tenant, m.List)
	switch {
	case errors.Is(err, raftfsm.ErrNotFound):
		return "", noList // deleted since
	case err != nil:
		return "", fromApply(err)
	case !ok:
		// As an allocation of one new recipient would answer.
		return "", fromApply(&raftfsm.InsufficientError{Needed: 1, Available: 0})
	}
	return code, nil
}

// previewAssignment is the live assignment of recipient in m's send.
func (s *Server) previewAssignment(tenant string, m *raftfsm.Message, send, recipient string) (raftfsm.Assignment, *apiError) {
	if e := validID("send_id", send); e != nil {
		return raftfsm.Assignment{}, e
	}
	if e := validID("recipient", recipient); e != nil {
		return raftfsm.Assignment{}, e
	}
	sd, ok := s.state.Send(tenant, send)
	if !ok {
		return raftfsm.Assignment{}, newError(fasthttp.StatusNotFound, "not_found", "no such send")
	}
	if sd.Message != m.ID {
		return raftfsm.Assignment{}, fromApply(raftfsm.ErrSendMismatch)
	}
	a, ok, err := s.state.LiveAssignment(tenant, send, []byte(recipient))
	switch {
	case errors.Is(err, raftfsm.ErrNotFound):
		return raftfsm.Assignment{}, newError(fasthttp.StatusNotFound, "not_found", "no such send")
	case err != nil:
		return raftfsm.Assignment{}, fromApply(err)
	case !ok:
		return raftfsm.Assignment{}, newError(fasthttp.StatusNotFound, "not_found", "the recipient has no code in this send")
	}
	return a, nil
}
