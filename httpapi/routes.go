package httpapi

import (
	"strings"

	"github.com/valyala/fasthttp"
)

// routeDef is one entry of the routing table: a method, a path pattern in
// OpenAPI's template syntax ("/v1/lists/{id}"), and what serves it. A
// "{param}" segment matches any one decoded segment, the empty one
// included: the handlers validate ids, so "/v1/lists/" is a 404 of the
// lists route, as before the table existed.
type routeDef struct {
	method  string
	pattern string
	route
}

// routeTable is the one list of the API's routes (SPEC §2). match walks it;
// TestRouteTableMatchesOpenAPI checks it against docs/openapi.yaml in both
// directions, so a route added here without its documentation fails the
// tests. Route names are stable: logs and metrics label requests with them.
// No two entries with the same method may match one path
// (TestRouteTableHasNoOverlaps), so the order of the entries does not matter.
var routeTable = [...]routeDef{
	{"GET", "/healthz", route{name: "healthz", handler: (*Server).healthz}},
	{"GET", "/readyz", route{name: "readyz", handler: (*Server).readyz}},
	{"GET", "/metrics", route{name: "metrics", handler: (*Server).metrics}},

	{"GET", "/v1/lists", route{name: "lists.list", roles: adminOnly, handler: (*Server).listLists}},
	{"POST", "/v1/lists", route{name: "lists.create", roles: adminOnly, handler: (*Server).createList}},
	{"GET", "/v1/lists/{id}", route{name: "lists.get", roles: adminOnly, handler: (*Server).getList}},
	{"PATCH", "/v1/lists/{id}", route{name: "lists.update", roles: adminOnly, handler: (*Server).updateList}},
	{"DELETE", "/v1/lists/{id}", route{name: "lists.delete", roles: adminOnly, handler: (*Server).deleteList}},
	{"POST", "/v1/lists/{id}/codes", route{name: "lists.topup", roles: adminOnly, handler: (*Server).topUp}},
	// GET .../codes/withdraw is the lookup of a code named "withdraw".
	{"POST", "/v1/lists/{id}/codes/withdraw", route{name: "lists.withdraw", roles: adminOnly, handler: (*Server).withdraw}},
	{"GET", "/v1/lists/{id}/codes/{code}", route{name: "lists.code", roles: adminOnly, handler: (*Server).getCode}},
	// Senders plan sends: the forecast tells them counts, never codes.
	{"GET", "/v1/lists/{id}/forecast", route{name: "lists.forecast", roles: adminOrSender, handler: (*Server).forecast}},

	{"PUT", "/v1/messages/{id}", route{name: "messages.put", roles: adminOrSender, handler: (*Server).putMessage}},
	{"GET", "/v1/messages/{id}", route{name: "messages.get", roles: adminOrSender, handler: (*Server).getMessage}},
	{"PUT", "/v1/messages/{id}/coupon-list", route{name: "messages.assign", roles: adminOnly, handler: (*Server).assignList}},
	{"DELETE", "/v1/messages/{id}/coupon-list", route{name: "messages.unassign", roles: adminOnly, handler: (*Server).unassignList}},

	{"PUT", "/v1/sends/{send_id}", route{name: "sends.open", roles: adminOrSender, handler: (*Server).openSend}},
	{"GET", "/v1/sends/{send_id}", route{name: "sends.get", roles: adminOrSender, handler: (*Server).getSend}},
	{"POST", "/v1/sends/{send_id}/codes", route{name: "sends.allocate", roles: adminOrSender, handler: (*Server).allocate}},
	{"POST", "/v1/sends/{send_id}/close", route{name: "sends.close", roles: adminOrSender, handler: (*Server).closeSend}},
	{"POST", "/v1/sends/{send_id}/release", route{name: "sends.release", roles: adminOrSender, handler: (*Server).release}},
	{"GET", "/v1/sends/{send_id}/assignments", route{name: "sends.assignments", roles: adminOrSender, handler: (*Server).sendAssignments}},
	{"GET", "/v1/recipients/{recipient}/assignments", route{name: "recipients.history", roles: adminOnly, handler: (*Server).recipientHistory}},
	{"DELETE", "/v1/recipients/{recipient}", route{name: "recipients.erase", roles: adminOnly, handler: (*Server).eraseRecipient}},

	{"GET", "/v1/tenants", route{name: "tenants.list", roles: operatorOnly, handler: (*Server).listTenants}},
	{"POST", "/v1/tenants", route{name: "tenants.create", roles: operatorOnly, handler: (*Server).createTenant}},
	{"POST", "/v1/tenants/{id}/tokens", route{name: "tokens.create", roles: operatorOnly, handler: (*Server).createToken}},
	{"DELETE", "/v1/tokens/{token_id}", route{name: "tokens.revoke", roles: operatorOnly, handler: (*Server).revokeToken}},

	{"GET", "/v1/cluster", route{name: "cluster.get", roles: operatorOnly, handler: (*Server).getCluster, local: true}},
	{"GET", "/v1/cluster/digest", route{name: "cluster.digest", roles: operatorOnly, handler: (*Server).getDigest, local: true}},
	{"POST", "/v1/cluster/nodes", route{name: "cluster.add", roles: operatorOnly, handler: (*Server).addNode}},
	{"DELETE", "/v1/cluster/nodes/{id}", route{name: "cluster.remove", roles: operatorOnly, handler: (*Server).removeNode}},
}

// maxRouteSegs bounds the segments of a routed path; longer paths are 404
// without a look at the table.
const maxRouteSegs = 5

// compiledRoute is a routeTable entry cut into segments; an empty string
// stands for a "{param}" segment (no literal segment of the table is empty).
type compiledRoute struct {
	def  *routeDef
	segs []string
}

// routesBySegs holds the routes by their number of segments, so a lookup
// compares a path with the few routes of its length only.
var routesBySegs = func() (out [maxRouteSegs + 1][]compiledRoute) {
	for i := range routeTable {
		d := &routeTable[i]
		segs := strings.Split(strings.TrimPrefix(d.pattern, "/"), "/")
		if !strings.HasPrefix(d.pattern, "/") || len(segs) > maxRouteSegs {
			panic("BUG: route pattern " + d.pattern + " is not /a/b with at most maxRouteSegs segments")
		}
		for k, s := range segs {
			switch {
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
				segs[k] = ""
			case s == "" || strings.ContainsAny(s, "{}"):
				panic("BUG: route pattern " + d.pattern + " has a malformed segment")
			}
		}
		out[len(segs)] = append(out[len(segs)], compiledRoute{def: d, segs: segs})
	}
	return out
}()

func (c *compiledRoute) matches(seg []string) bool {
	for i, s := range c.segs {
		if s != "" && s != seg[i] {
			return false
		}
	}
	return true
}

// match finds the route for a method and decoded path segments; it answers
// the route's name for logs, and 404/405 errors for paths and methods it
// does not know. HEAD is served by the GET route of a path. It allocates
// only for a 405, to list the allowed methods.
func match(method string, seg []string) (route, *apiError) {
	unknown := route{name: "unknown"}
	if len(seg) > maxRouteSegs {
		return unknown, errNotFound
	}
	cands := routesBySegs[len(seg)]
	var get *routeDef
	found := false
	for i := range cands {
		c := &cands[i]
		if !c.matches(seg) {
			continue
		}
		if c.def.method == method {
			return c.def.route, nil
		}
		if c.def.method == "GET" {
			get = c.def
		}
		found = true
	}
	switch {
	case !found:
		return unknown, errNotFound
	case method == "HEAD" && get != nil:
		return get.route, nil
	}
	var allow []string
	for i := range cands {
		if c := &cands[i]; c.matches(seg) {
			allow = append(allow, c.def.method)
		}
	}
	return unknown, newError(fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed here").
		with("allow", strings.Join(allow, ", "))
}
