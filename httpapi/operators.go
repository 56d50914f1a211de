package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/raftfsm"
)

// ValidTenantID reports whether id matches [a-z0-9][a-z0-9-]{0,62} (SPEC §1).
func ValidTenantID(id string) bool {
	if len(id) == 0 || len(id) > 63 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || (c == '-' && i > 0)
		if !ok {
			return false
		}
	}
	return true
}

type tenantJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
}

func toTenantJSON(t *raftfsm.Tenant) tenantJSON {
	return tenantJSON{ID: t.ID, Name: t.Name, CreatedAt: rfc3339(t.CreatedAt)}
}

func (s *Server) createTenant(r *request) *apiError {
	var in struct {
		ID   *string `json:"id"`
		Name *string `json:"name"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	if in.ID == nil || !ValidTenantID(*in.ID) {
		return badRequest("id is required and must match [a-z0-9][a-z0-9-]{0,62}")
	}
	if in.Name == nil {
		return badRequest("name is required")
	}
	if e := validName("name", *in.Name); e != nil {
		return e
	}
	v, e := s.apply(&raftfsm.CreateTenant{ID: *in.ID, Name: *in.Name, At: s.now().UnixNano()})
	if e != nil {
		if e.status == fasthttp.StatusConflict {
			return newError(fasthttp.StatusConflict, "tenant_exists", "a tenant with this id exists")
		}
		return e
	}
	writeJSON(r.ctx, fasthttp.StatusCreated, toTenantJSON(v.(*raftfsm.Tenant)))
	return nil
}

func (s *Server) listTenants(r *request) *apiError {
	ts := s.state.Tenants()
	out := make([]tenantJSON, len(ts))
	for i, t := range ts {
		out[i] = toTenantJSON(t)
	}
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]any{"tenants": out})
	return nil
}

// NewSecret returns a fresh bearer token, its sha256 and a public id.
func NewSecret() (secret string, hash [32]byte, id string) {
	var b [32]byte
	rand.Read(b[:])
	secret = "cpd_" + base64.RawURLEncoding.EncodeToString(b[:])
	var i [8]byte
	rand.Read(i[:])
	return secret, sha256.Sum256([]byte(secret)), "tok_" + hex.EncodeToString(i[:])
}

func (s *Server) createToken(r *request) *apiError {
	tenant := r.seg[2]
	if _, ok := s.state.Tenant(tenant); !ok {
		return errNotFound
	}
	var in struct {
		Role *string `json:"role"`
		Name *string `json:"name"`
	}
	if e := s.decodeJSON(r.ctx, &in); e != nil {
		return e
	}
	if in.Role == nil {
		return badRequest(`role is required: "admin" or "sender"`)
	}
	role, ok := raftfsm.ParseRole(*in.Role)
	if !ok {
		return badRequest(`role must be "admin" or "sender"`)
	}
	name := ""
	if in.Name != nil {
		if e := validName("name", *in.Name); e != nil {
			return e
		}
		name = *in.Name
	}
	secret, hash, id := NewSecret()
	if _, e := s.apply(&raftfsm.CreateToken{ID: id, Tenant: tenant, Role: role, Name: name, Hash: hash, At: s.now().UnixNano()}); e != nil {
		return e
	}
	writeJSON(r.ctx, fasthttp.StatusCreated, map[string]string{"id": id, "token": secret})
	return nil
}

func (s *Server) revokeToken(r *request) *apiError {
	if _, e := s.apply(&raftfsm.RevokeToken{ID: r.seg[2]}); e != nil {
		return e
	}
	r.ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) healthz(r *request) *apiError {
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// Ready reports a node that has caught up with its log since it started
// and knows a leader now. (Entries in flight are normal on a busy node:
// comparing applied and commit indexes here would make the probe flap.)
func (s *Server) Ready() bool {
	if !s.CaughtUp() {
		return false
	}
	return s.prop.Leader() != ""
}

// readyz also answers not ready while the node cannot write its state:
// its writes are refused then, and a load balancer should send them to a
// node that can take them. (Reads are still answered.)
func (s *Server) readyz(r *request) *apiError {
	if !s.Ready() {
		return errNotReady
	}
	if s.writable() != nil {
		return errStateNotReady
	}
	writeJSON(r.ctx, fasthttp.StatusOK, map[string]string{"status": "ready"})
	return nil
}
