package httpapi

import (
	"github.com/valyala/fasthttp"
)

// overlapsJSON is the answer of GET /v1/lists/{id}/overlaps (SPEC §4).
type overlapsJSON struct {
	Overlaps []overlapJSON `json:"overlaps"`
}

type overlapJSON struct {
	ListID   string   `json:"list_id"`
	Name     string   `json:"name"`
	Codes    uint64   `json:"codes"`
	Examples []string `json:"examples"`
}

// overlaps lists the tenant's other lists that hold codes of this one, the
// most shared codes first. Admins only: the examples are codes.
func (s *Server) overlaps(r *request) *apiError {
	id, ok := parseListID(r.seg[2])
	if !ok {
		return errNotFound
	}
	ov, err := s.state.Overlaps(r.token.Tenant, id)
	if err != nil {
		return fromApply(err)
	}
	out := overlapsJSON{Overlaps: make([]overlapJSON, len(ov))}
	for i, o := range ov {
		ex := o.Examples
		if ex == nil {
			ex = []string{}
		}
		out.Overlaps[i] = overlapJSON{ListID: formatListID(o.List), Name: o.Name, Codes: o.Codes, Examples: ex}
	}
	writeJSON(r.ctx, fasthttp.StatusOK, out)
	return nil
}
