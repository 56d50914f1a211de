package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/coupond/coupond/raftfsm"
)

// overlapsAnswer is the answer of GET /v1/lists/{id}/overlaps.
type overlapsAnswer struct {
	Overlaps []struct {
		ListID   string   `json:"list_id"`
		Name     string   `json:"name"`
		Codes    uint64   `json:"codes"`
		Examples []string `json:"examples"`
	} `json:"overlaps"`
}

// TestFakeOverlaps drives the handler on the fakes: the JSON shape, the
// order the Reader gave, the caller's tenant, and who may ask.
func TestFakeOverlaps(t *testing.T) {
	n := newFakeNode(t)
	list := n.addList("acme", 0x42, 10)
	n.st.overlaps = map[fakeOverlapKey][]raftfsm.Overlap{
		{"acme", 0x42}: {
			{List: 0x43, Name: "summer", Codes: 7, Examples: []string{"A&1", "B 2", "C", "D", "E"}},
			{List: 0x41, Name: "spring", Codes: 1, Examples: []string{"Z"}},
		},
		{"acme", 0x44}: nil,
	}
	r := n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/overlaps", token: n.admin})
	var got overlapsAnswer
	decode(t, r, http.StatusOK, &got)
	var raw map[string][]map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil || len(raw) != 1 || len(raw["overlaps"]) != 2 {
		t.Fatalf("answer %s", r.body)
	}
	for _, o := range raw["overlaps"] {
		if len(o) != 4 {
			t.Fatalf("an overlap has fields other than list_id, name, codes, examples: %s", r.body)
		}
	}
	if o := got.Overlaps; o[0].ListID != "0000000000000043" || o[0].Name != "summer" || o[0].Codes != 7 ||
		!reflect.DeepEqual(o[0].Examples, []string{"A&1", "B 2", "C", "D", "E"}) ||
		o[1].ListID != "0000000000000041" || o[1].Codes != 1 {
		t.Fatalf("answer %s", r.body)
	}
	// No overlap: an empty array, not null.
	r = n.do(fakeReq{method: "GET", path: "/v1/lists/0000000000000044/overlaps", token: n.admin})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"overlaps":[]}` {
		t.Fatalf("no overlaps: %s", r)
	}
	// Senders see counts of lists, never codes; operators no tenant data.
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/overlaps", token: n.sender}),
		http.StatusForbidden, "forbidden")
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/overlaps", token: n.operator}),
		http.StatusForbidden, "forbidden")
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/overlaps"}),
		http.StatusUnauthorized, "unauthorized")
	// The Reader is asked for the caller's tenant: another's list is unknown.
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/overlaps", token: n.otherAdmin}),
		http.StatusNotFound, "not_found")
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/nothex/overlaps", token: n.admin}),
		http.StatusNotFound, "not_found")
	wantError(t, n.do(fakeReq{method: "POST", path: "/v1/lists/" + list + "/overlaps", token: n.admin}),
		http.StatusMethodNotAllowed, "method_not_allowed")
	n.noWrites()
}

// TestOverlapsAPI runs on a real node: in_other_lists on create-and-import
// and top-up (and the same answer to a retry under an Idempotency-Key),
// then the report, with roles and tenants.
func TestOverlapsAPI(t *testing.T) {
	n := startNode(t, nodeOpts{})
	importNew := func(name, csv string) (string, importResult) {
		t.Helper()
		r := n.do(t, "POST", "/v1/lists?name="+url.QueryEscape(name), n.admin, csv)
		var out struct {
			List   json.RawMessage `json:"list"`
			Import importResult    `json:"import"`
		}
		decode(t, r, http.StatusCreated, &out)
		return checkListShape(t, out.List).ID, out.Import
	}
	a, res := importNew("A", codeLines("X", 0, 100))
	if res != (importResult{Imported: 100, Size: 100}) {
		t.Fatalf("import A: %+v", res)
	}
	// B: 30 of A's codes, 10 new ones, and one repeated (skipped: not counted).
	b, res := importNew("B", codeLines("X", 70, 30)+codeLines("Y", 0, 10)+"X000075\n")
	if res != (importResult{Imported: 40, Duplicates: 1, Size: 40, InOtherLists: 30}) {
		t.Fatalf("import B: %+v", res)
	}
	// A top-up of C with codes of A, of B, of both, and new ones.
	c, _ := importNew("C", "Z\n")
	body := "X000001\nY000001\nX000080\nNEW\nZ\n"
	top := func() importResult {
		t.Helper()
		var out importResult
		decode(t, n.keyed(t, n.admin, "/v1/lists/"+c+"/codes", "top-c", body), http.StatusOK, &out)
		return out
	}
	if got := top(); got != (importResult{Imported: 4, Duplicates: 1, Size: 5, InOtherLists: 3}) {
		t.Fatalf("top-up of C: %+v", got)
	}
	// B is deleted: the retry still answers 3, the stored result.
	wantStatus(t, n.do(t, "DELETE", "/v1/lists/"+b, n.admin, nil), http.StatusNoContent)
	if got := top(); got.InOtherLists != 3 {
		t.Fatalf("retried top-up answered %+v", got)
	}

	report := func(id, token string) overlapsAnswer {
		t.Helper()
		var out overlapsAnswer
		decode(t, n.do(t, "GET", "/v1/lists/"+id+"/overlaps", token, nil), http.StatusOK, &out)
		return out
	}
	got := report(a, n.admin)
	if len(got.Overlaps) != 1 || got.Overlaps[0].ListID != c || got.Overlaps[0].Name != "C" || got.Overlaps[0].Codes != 2 ||
		!reflect.DeepEqual(got.Overlaps[0].Examples, []string{"X000001", "X000080"}) {
		t.Fatalf("overlaps of A: %+v", got)
	}
	// The other way round: C's order.
	if got := report(c, n.admin); len(got.Overlaps) != 1 || got.Overlaps[0].ListID != a ||
		!reflect.DeepEqual(got.Overlaps[0].Examples, []string{"X000001", "X000080"}) {
		t.Fatalf("overlaps of C: %+v", got)
	}
	// A withdrawn or handed-out code still counts: it stands in the list.
	wantStatus(t, n.do(t, "POST", "/v1/lists/"+a+"/codes/withdraw", n.admin, "X000001\n"), http.StatusOK)
	if got := report(c, n.admin); got.Overlaps[0].Codes != 2 {
		t.Fatalf("after a withdrawal: %+v", got)
	}
	lone, _ := importNew("lone", "ONLY\n")
	if r := n.do(t, "GET", "/v1/lists/"+lone+"/overlaps", n.admin, nil); r.status != http.StatusOK ||
		strings.TrimSpace(string(r.body)) != `{"overlaps":[]}` {
		t.Fatalf("a list without overlaps: %s", r)
	}

	n.createTenant(t, "rival")
	_, rivalAdmin := n.createToken(t, "rival", "admin")
	_, sender := n.createToken(t, "default", "sender")
	wantError(t, n.do(t, "GET", "/v1/lists/"+a+"/overlaps", sender, nil), http.StatusForbidden, "forbidden")
	wantError(t, n.do(t, "GET", "/v1/lists/"+a+"/overlaps", rivalAdmin, nil), http.StatusNotFound, "not_found")
	wantError(t, n.do(t, "GET", "/v1/lists/"+b+"/overlaps", n.admin, nil), http.StatusNotFound, "not_found")
	// Another tenant's lists never count, in the report or at import.
	r := n.do(t, "POST", "/v1/lists?name=theirs", rivalAdmin, codeLines("X", 0, 100))
	var out struct {
		Import importResult `json:"import"`
	}
	decode(t, r, http.StatusCreated, &out)
	if out.Import.InOtherLists != 0 {
		t.Fatalf("another tenant's import counted this tenant's lists: %+v", out.Import)
	}
	if got := report(a, n.admin); len(got.Overlaps) != 1 {
		t.Fatalf("another tenant's list in the report: %+v", got)
	}
}
