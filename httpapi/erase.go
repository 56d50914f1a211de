package httpapi

import (
	"crypto/rand"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// eraseRecipient erases a recipient from every assignment of the tenant
// (SPEC §4 "Erasure of a recipient"): its assignments keep their codes and
// show an erased form instead of it → 200 {"erased": n}.
func (s *Server) eraseRecipient(r *request) *apiError {
	rc := r.seg[2]
	if e := validID("recipient", rc); e != nil {
		return e
	}
	c := &raftfsm.EraseRecipient{Tenant: r.token.Tenant, Recipient: []byte(rc), At: s.now().UnixNano()}
	// A fresh key in every command: the state machine keeps the first
	// one a tenant erases with and ignores the rest. It is never logged.
	if _, err := rand.Read(c.Key[:]); err != nil {
		return newError(fasthttp.StatusInternalServerError, "internal", "cannot make a key")
	}
	v, err := s.prop.Propose(c)
	if err != nil {
		return fromApply(err)
	}
	n, _ := v.(int)
	// The answer may precede its entry's commit to the state (early
	// answers); a client that reads the history next must not find the
	// recipient there any more.
	s.state.SettledIndex()
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]int{"erased": n})
	return nil
}
