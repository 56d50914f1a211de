package httpapi

import (
	"fmt"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// maxIDLen bounds message, send and recipient ids in bytes.
const maxIDLen = 256

var campaignTypes = map[string]bool{"standard": true, "auto": true, "tracking": true, "network_tracking": true}
var channels = map[string]bool{"email": true, "web_push": true, "app_push": true, "sms": true, "voice": true, "print": true}
var messageStatuses = map[string]bool{"draft": true, "sent": true}

// validID checks a caller-chosen id (message, send) or a recipient: 1 to
// maxIDLen bytes of UTF-8 without control characters.
func validID(field, id string) *apiError {
	if id == "" || len(id) > maxIDLen || !utf8.ValidString(id) {
		return badRequest(fmt.Sprintf("%s must be 1 to %d bytes of UTF-8", field, maxIDLen))
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return badRequest(fmt.Sprintf("%s must not contain control characters", field))
		}
	}
	return nil
}

type messageJSON struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Campaign     string  `json:"campaign"`
	CampaignType string  `json:"campaign_type"`
	Channel      string  `json:"channel"`
	DOI          bool    `json:"doi"`
	Status       string  `json:"status"`
	CouponListID *string `json:"coupon_list_id"`
}

func toMessageJSON(m *raftfsm.Message) messageJSON {
	out := messageJSON{ID: m.ID, Name: m.Name, Campaign: m.Campaign, CampaignType: m.CampaignType,
		Channel: m.Channel, DOI: m.DOI, Status: m.Status}
	if m.List != 0 {
		id := formatListID(m.List)
		out.CouponListID = &id
	}
	return out
}

func (s *Server) putMessage(r *request) *apiError {
	id := r.seg[2]
	if e := validID("message id", id); e != nil {
		return e
	}
	var in struct {
		Name         *string `json:"name"`
		Campaign     *string `json:"campaign"`
		CampaignType *string `json:"campaign_type"`
		Channel      *string `json:"channel"`
		DOI          *bool   `json:"doi"`
		Status       *string `json:"status"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	switch {
	case in.Name == nil || in.Campaign == nil || in.CampaignType == nil || in.Channel == nil || in.DOI == nil:
		return badRequest("name, campaign, campaign_type, channel and doi are required")
	case !campaignTypes[*in.CampaignType]:
		return badRequest("campaign_type must be standard, auto, tracking or network_tracking")
	case !channels[*in.Channel]:
		return badRequest("channel must be email, web_push, app_push, sms, voice or print")
	case in.Status != nil && !messageStatuses[*in.Status]:
		return badRequest("status must be draft or sent")
	}
	if e := validName("name", *in.Name); e != nil {
		return e
	}
	if *in.Campaign != "" {
		if e := validName("campaign", *in.Campaign); e != nil {
			return e
		}
	}
	c := &raftfsm.UpsertMessage{Tenant: r.token.Tenant, ID: id, Name: *in.Name, Campaign: *in.Campaign,
		CampaignType: *in.CampaignType, Channel: *in.Channel, DOI: *in.DOI, At: s.now().UnixNano()}
	if in.Status != nil {
		c.Status = *in.Status
	}
	v, e := s.apply(c)
	if e != nil {
		return e
	}
	m, ok := s.state.Message(c.Tenant, id)
	if !ok {
		return unavailable("the message was written but is not readable yet; read it again")
	}
	status := fasthttp.StatusOK
	if v.(raftfsm.UpsertResult).Created {
		status = fasthttp.StatusCreated
	}
	writeJSON(r.ctx, status, toMessageJSON(m))
	return nil
}

func (s *Server) getMessage(r *request) *apiError {
	m, ok := s.state.Message(r.token.Tenant, r.seg[2])
	if !ok {
		return errNotFound
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toMessageJSON(m))
	return nil
}

func (s *Server) assignList(r *request) *apiError {
	if _, ok := s.state.Message(r.token.Tenant, r.seg[2]); !ok {
		return newError(fasthttp.StatusNotFound, "not_found", "no such message")
	}
	var in struct {
		ListID *string `json:"list_id"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	if in.ListID == nil {
		return badRequest("list_id is required")
	}
	list, ok := parseListID(*in.ListID)
	if !ok {
		return newError(fasthttp.StatusNotFound, "not_found", "no such list")
	}
	return s.setMessageList(r, list)
}

func (s *Server) unassignList(r *request) *apiError {
	if e := s.setMessageList(r, 0); e != nil {
		return e
	}
	r.ctx.SetStatusCode(fasthttp.StatusNoContent)
	r.ctx.ResetBody()
	return nil
}

func (s *Server) setMessageList(r *request, list uint64) *apiError {
	if _, e := s.apply(&raftfsm.AssignList{Tenant: r.token.Tenant, Message: r.seg[2], List: list}); e != nil {
		return e
	}
	m, ok := s.state.Message(r.token.Tenant, r.seg[2])
	if !ok {
		return errNotFound
	}
	writeJSON(r.ctx, fasthttp.StatusOK, toMessageJSON(m))
	return nil
}
