package httpapi

import "testing"

// TestRouteTableHasNoOverlaps: no path matches two routes of one method, so
// the table's order never decides which handler runs.
func TestRouteTableHasNoOverlaps(t *testing.T) {
	overlap := func(a, b []string) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != "" && b[i] != "" && a[i] != b[i] {
				return false
			}
		}
		return true
	}
	var all []compiledRoute
	for _, rs := range routesBySegs {
		all = append(all, rs...)
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.def.method == b.def.method && overlap(a.segs, b.segs) {
				t.Errorf("%s %s and %s overlap", a.def.method, a.def.pattern, b.def.pattern)
			}
		}
	}
}

// TestMatch covers what the table must keep from the switch it replaced:
// HEAD served by GET, 405 with every method of the path (a code named
// "withdraw" is looked up with GET), 404 for unknown and overlong paths.
func TestMatch(t *testing.T) {
	f := func(method, path, wantName string, wantStatus int, wantAllow string) {
		t.Helper()
		seg, perr := splitPath(nil, []byte(path))
		if perr != nil {
			t.Fatalf("%s: %v", path, perr)
		}
		rt, err := match(method, seg)
		if rt.name != wantName {
			t.Errorf("%s %s: route %q, want %q", method, path, rt.name, wantName)
		}
		status, allow := 0, ""
		if err != nil {
			status = err.status
			allow, _ = err.details["allow"].(string)
		}
		if status != wantStatus || allow != wantAllow {
			t.Errorf("%s %s: status %d allow %q, want %d %q", method, path, status, allow, wantStatus, wantAllow)
		}
	}
	f("POST", "/v1/sends/s-1/codes", "sends.allocate", 0, "")
	f("HEAD", "/v1/lists", "lists.list", 0, "")
	f("HEAD", "/healthz", "healthz", 0, "")
	f("GET", "/v1/lists/0000000000000001/codes/withdraw", "lists.code", 0, "")
	f("POST", "/v1/lists/0000000000000001/codes/withdraw", "lists.withdraw", 0, "")
	f("GET", "/v1/lists/0000000000000001/codes/a%2Fb", "lists.code", 0, "")
	f("GET", "/v1/lists/", "lists.get", 0, "") // the handler answers 404 for the empty id
	f("PUT", "/v1/lists/0000000000000001/codes/withdraw", "unknown", 405, "POST, GET")
	f("PUT", "/v1/lists/x", "unknown", 405, "GET, PATCH, DELETE")
	f("HEAD", "/v1/tokens/t", "unknown", 405, "DELETE")
	f("GET", "/v1/cluster/x", "unknown", 404, "")
	f("GET", "/v1/lists/0000000000000001/codes/a/b", "unknown", 404, "")
	f("GET", "/v1/lists/a/codes/b/c/d", "unknown", 404, "")
	f("GET", "/", "unknown", 404, "")
	f("GET", "/v2/lists", "unknown", 404, "")
}

// BenchmarkMatch measures routing, which every request goes through: the
// allocation call of the hot path, a read, a code lookup that shares its
// prefix with withdraw, a health probe, and a 405 (which lists the methods).
func BenchmarkMatch(b *testing.B) {
	for _, c := range []struct{ name, method, path string }{
		{"allocate", "POST", "/v1/sends/s-1/codes"},
		{"list", "GET", "/v1/lists/0000000000000001"},
		{"code", "GET", "/v1/lists/0000000000000001/codes/withdraw"},
		{"healthz", "GET", "/healthz"},
		{"405", "GET", "/v1/cluster/nodes"},
	} {
		seg, err := splitPath(nil, []byte(c.path))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				match(c.method, seg)
			}
		})
	}
}
