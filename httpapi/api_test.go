package httpapi_test

// Acceptance point (b): every "Lists" and "Operators" call of SPEC §2 over
// real HTTP, with its success and error statuses, the error body shape and
// the counts of a list after each change.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// TestListsAPI covers POST/GET /v1/lists, GET/PATCH/DELETE /v1/lists/{id},
// top-up, withdraw and code lookup on one node (each subtest works on lists
// of its own).
func TestListsAPI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "other")
	_, adminB := n.createToken(t, "other", "admin")

	t.Run("CreateJSONAnswers201WithTheListAndItsDefaults", func(t *testing.T) {
		r := n.do(t, "POST", "/v1/lists", n.admin, map[string]any{"name": "spring"})
		wantStatus(t, r, http.StatusCreated)
		l := checkListShape(t, r.body)
		want := list{ID: l.ID, Name: "spring", Dedupe: true, CreatedAt: l.CreatedAt, ExpiryWarningDays: 7}
		if l != want {
			t.Fatalf("got %+v, want %+v", l, want)
		}
		if got := n.getList(t, n.admin, l.ID); got != l {
			t.Fatalf("GET after create: %+v, want %+v", got, l)
		}

		r = n.do(t, "POST", "/v1/lists", n.admin, map[string]any{"name": "generic", "dedupe": false, "low_stock_threshold": 3})
		wantStatus(t, r, http.StatusCreated)
		l = checkListShape(t, r.body)
		if l.Dedupe || l.LowStockThreshold != 3 || !l.LowStock || l.Name != "generic" {
			t.Fatalf("dedupe=false threshold=3: %+v (an empty list is below its threshold)", l)
		}

		long := strings.Repeat("n", 256)
		if got := n.createList(t, n.admin, map[string]any{"name": long}); got.Name != long {
			t.Fatalf("256-byte name not kept: %q", got.Name)
		}
		if got := n.createList(t, n.admin, map[string]any{"name": "Été 2026 — ü"}); got.Name != "Été 2026 — ü" {
			t.Fatalf("UTF-8 name not kept: %q", got.Name)
		}
	})

	t.Run("CreateJSONRefusesBadInputWith400AndCreatesNothing", func(t *testing.T) {
		before := n.listIDs(t, n.admin)
		for _, c := range []struct{ name, body, code string }{
			{"bad JSON", `{"name": "x"`, "invalid_json"},
			{"not JSON", `name=x`, "invalid_json"},
			{"empty body", ``, "invalid_json"},
			{"unknown field", `{"name": "x", "colour": "red"}`, "invalid_json"},
			{"unknown field only", `{"nme": "x"}`, "invalid_json"},
			{"name not a string", `{"name": 5}`, "invalid_json"},
			{"dedupe not a bool", `{"name": "x", "dedupe": "yes"}`, "invalid_json"},
			{"threshold negative", `{"name": "x", "low_stock_threshold": -1}`, "invalid_json"},
			{"threshold a string", `{"name": "x", "low_stock_threshold": "3"}`, "invalid_json"},
			{"threshold fractional", `{"name": "x", "low_stock_threshold": 1.5}`, "invalid_json"},
			{"array", `[{"name": "x"}]`, "invalid_json"},
			{"trailing data", `{"name": "x"} {"name": "y"}`, "invalid_json"},
			{"missing name", `{}`, "invalid_request"},
			{"null", `null`, "invalid_request"},
			{"empty name", `{"name": ""}`, "invalid_request"},
			{"name of 257 bytes", `{"name": "` + strings.Repeat("n", 257) + `"}`, "invalid_request"},
			{"control character in name", `{"name": "a\u0001b"}`, "invalid_request"},
			{"C1 control in name", `{"name": "a\u0085b"}`, "invalid_request"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "POST", "/v1/lists", n.admin, rawJSON(c.body)), http.StatusBadRequest, c.code)
			})
		}
		if after := n.listIDs(t, n.admin); !reflect.DeepEqual(after, before) {
			t.Fatalf("refused creates changed GET /v1/lists: %v -> %v", before, after)
		}
	})

	t.Run("CreateAndImportAnswers201WithListAndImport", func(t *testing.T) {
		r := n.do(t, "POST", "/v1/lists?name=autumn&header=true", n.admin, "code\nA-1\nA-2\nA-1\n")
		var out map[string]json.RawMessage
		decode(t, r, http.StatusCreated, &out)
		if len(out) != 2 || out["list"] == nil || out["import"] == nil {
			t.Fatalf(`want exactly {"list","import"}: %s`, r)
		}
		l := checkListShape(t, out["list"])
		var imp importResult
		if err := json.Unmarshal(out["import"], &imp); err != nil {
			t.Fatal(err)
		}
		if imp != (importResult{Imported: 2, Duplicates: 1, Size: 2}) {
			t.Fatalf("import %+v", imp)
		}
		if l.Name != "autumn" || !l.Dedupe || l.counts() != (counts{Added: 2, Available: 2}) {
			t.Fatalf("list %+v", l)
		}
		if got := n.getList(t, n.admin, l.ID); got != l {
			t.Fatalf("GET after create+import: %+v, want %+v", got, l)
		}
		for code, want := range map[string]string{"A-1": "available", "A-2": "available", "code": ""} {
			if got := n.codeState(t, n.admin, l.ID, code); got != want {
				t.Fatalf("code %q: state %q, want %q", code, got, want)
			}
		}

		r = n.do(t, "POST", "/v1/lists?name=Black%20Friday&dedupe=false", n.admin, "G\nG\nG\n")
		decode(t, r, http.StatusCreated, &out)
		l = checkListShape(t, out["list"])
		json.Unmarshal(out["import"], &imp)
		if imp != (importResult{Imported: 3, Size: 3}) || l.Dedupe || l.Name != "Black Friday" || l.Added != 3 {
			t.Fatalf("dedupe=false create+import: %s", r)
		}

		r = n.do(t, "POST", "/v1/lists?name=empty", n.admin, "")
		decode(t, r, http.StatusCreated, &out)
		if l = checkListShape(t, out["list"]); l.Added != 0 {
			t.Fatalf("empty create+import: %s", r)
		}
	})

	t.Run("CreateAndImportRefusesBadQueryWith400AndCreatesNothing", func(t *testing.T) {
		before := n.listIDs(t, n.admin)
		for _, q := range []string{"name=", "name=x&dedupe=yes", "name=x&header=maybe", "name=x&dedupe=", "name=" + strings.Repeat("n", 257), "name=a%01b"} {
			t.Run(q, func(t *testing.T) {
				wantError(t, n.do(t, "POST", "/v1/lists?"+q, n.admin, "A\nB\n"), http.StatusBadRequest, "invalid_request")
			})
		}
		if after := n.listIDs(t, n.admin); !reflect.DeepEqual(after, before) {
			t.Fatalf("refused create+import changed GET /v1/lists: %v -> %v", before, after)
		}
	})

	t.Run("GetListsAnswersTheTenantsListsWithTheirCounts", func(t *testing.T) {
		a := n.newList(t, n.admin, "one")
		n.topUp(t, n.admin, a, "X1\nX2\nX3\n")
		b := n.newList(t, adminB, "of-b")

		r := n.do(t, "GET", "/v1/lists", n.admin, nil)
		var out map[string][]json.RawMessage
		decode(t, r, http.StatusOK, &out)
		if len(out) != 1 || out["lists"] == nil {
			t.Fatalf(`want exactly {"lists": [...]}: %s`, r)
		}
		found := false
		for _, raw := range out["lists"] {
			l := checkListShape(t, raw)
			if l.ID == b {
				t.Fatalf("tenant A sees tenant B's list %s", b)
			}
			if l.ID == a {
				found = true
				if l.counts() != (counts{Added: 3, Available: 3}) || l != n.getList(t, n.admin, a) {
					t.Fatalf("list in GET /v1/lists %+v differs from GET one", l)
				}
			}
		}
		if !found {
			t.Fatalf("list %s missing from GET /v1/lists: %s", a, r)
		}
		if ids := n.listIDs(t, adminB); len(ids) != 1 || ids[0] != b {
			t.Fatalf("tenant B's lists: %v, want [%s]", ids, b)
		}
	})

	t.Run("GetListAnswersCountsAndEmptyAssignedMessages", func(t *testing.T) {
		id := n.newList(t, n.admin, "detail")
		r := n.do(t, "GET", "/v1/lists/"+id, n.admin, nil)
		wantStatus(t, r, http.StatusOK)
		checkListShape(t, r.body, "assigned_messages")
		var m map[string]json.RawMessage
		json.Unmarshal(r.body, &m)
		if string(m["assigned_messages"]) != "[]" {
			t.Fatalf("assigned_messages = %s, want []", m["assigned_messages"])
		}
	})

	t.Run("UnknownMalformedAndForeignListIDsAre404", func(t *testing.T) {
		id := n.newList(t, n.admin, "mine")
		n.topUp(t, n.admin, id, "M1\n")
		foreign := n.newList(t, adminB, "theirs")
		n.topUp(t, adminB, foreign, "F1\n")
		beforeMine, beforeForeign := n.getListRaw(t, n.admin, id), n.getListRaw(t, adminB, foreign)

		ids := map[string]string{
			"unknown":             "0000000000000001",
			"not hex":             "zzzzzzzzzzzzzzzz",
			"15 characters":       id[:15],
			"17 characters":       id + "0",
			"with a slash":        id[:8] + "%2F" + id[8:],
			"another tenant's id": foreign,
			"empty":               "",
		}
		if up := strings.ToUpper(id); up != id {
			ids["upper-case spelling"] = up
		}
		for name, bad := range ids {
			for _, c := range []struct {
				method, suffix string
				body           any
			}{
				{"GET", "", nil},
				{"PATCH", "", map[string]any{"name": "stolen"}},
				{"DELETE", "", nil},
				{"POST", "/codes", "NEW1\n"},
				{"POST", "/codes/withdraw", "F1\nM1\n"},
				{"GET", "/codes/F1", nil},
			} {
				t.Run(name+" "+c.method+c.suffix, func(t *testing.T) {
					wantError(t, n.do(t, c.method, "/v1/lists/"+bad+c.suffix, n.admin, c.body), http.StatusNotFound, "not_found")
				})
			}
		}
		// The other direction: tenant B on tenant A's list.
		wantError(t, n.do(t, "GET", "/v1/lists/"+id, adminB, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "DELETE", "/v1/lists/"+id, adminB, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "GET", "/v1/lists/"+id+"/codes/M1", adminB, nil), http.StatusNotFound, "not_found")

		if n.getListRaw(t, n.admin, id) != beforeMine || n.getListRaw(t, adminB, foreign) != beforeForeign {
			t.Fatal("a 404 call changed a list")
		}
	})

	t.Run("PatchListRenamesAndSetsTheThreshold", func(t *testing.T) {
		id := n.newList(t, n.admin, "before")
		n.topUp(t, n.admin, id, "P1\nP2\nP3\n")

		r := n.do(t, "PATCH", "/v1/lists/"+id, n.admin, map[string]any{"name": "after"})
		wantStatus(t, r, http.StatusOK)
		if l := checkListShape(t, r.body); l.Name != "after" || l.Added != 3 {
			t.Fatalf("rename: %+v", l)
		}
		r = n.do(t, "PATCH", "/v1/lists/"+id, n.admin, map[string]any{"low_stock_threshold": 5})
		wantStatus(t, r, http.StatusOK)
		if l := checkListShape(t, r.body); l.Name != "after" || l.LowStockThreshold != 5 || !l.LowStock {
			t.Fatalf("threshold 5 over 3 available: %+v", l)
		}
		r = n.do(t, "PATCH", "/v1/lists/"+id, n.admin, map[string]any{"low_stock_threshold": 3})
		if l := checkListShape(t, r.body); l.LowStock {
			t.Fatalf("threshold 3 with 3 available is not low: %+v", l)
		}
		r = n.do(t, "PATCH", "/v1/lists/"+id, n.admin, map[string]any{"name": "both", "low_stock_threshold": 0})
		if l := checkListShape(t, r.body); l.Name != "both" || l.LowStockThreshold != 0 || l.LowStock {
			t.Fatalf("both fields: %+v", l)
		}
		before := n.getListRaw(t, n.admin, id)
		r = n.do(t, "PATCH", "/v1/lists/"+id, n.admin, rawJSON(`{}`))
		wantStatus(t, r, http.StatusOK)
		if after := n.getListRaw(t, n.admin, id); after != before {
			t.Fatalf("empty PATCH changed the list:\n%s\n%s", before, after)
		}

		for _, c := range []struct{ name, body, code string }{
			{"bad JSON", `{"name": `, "invalid_json"},
			{"unknown field", `{"name": "x", "dedupe": false}`, "invalid_json"},
			{"name not a string", `{"name": 1}`, "invalid_json"},
			{"threshold a string", `{"low_stock_threshold": "1"}`, "invalid_json"},
			{"threshold negative", `{"low_stock_threshold": -1}`, "invalid_json"},
			{"empty name", `{"name": ""}`, "invalid_request"},
			{"name of 257 bytes", `{"name": "` + strings.Repeat("n", 257) + `"}`, "invalid_request"},
			{"empty body", ``, "invalid_json"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "PATCH", "/v1/lists/"+id, n.admin, rawJSON(c.body)), http.StatusBadRequest, c.code)
			})
		}
		if after := n.getListRaw(t, n.admin, id); after != before {
			t.Fatalf("refused PATCHes changed the list:\n%s\n%s", before, after)
		}
	})

	t.Run("DeleteListAnswers204AndThenEverythingIs404", func(t *testing.T) {
		id := n.newList(t, n.admin, "doomed")
		n.topUp(t, n.admin, id, "D1\nD2\n")
		r := n.do(t, "DELETE", "/v1/lists/"+id, n.admin, nil)
		wantStatus(t, r, http.StatusNoContent)
		if len(r.body) != 0 {
			t.Fatalf("204 with a body: %q", r.body)
		}
		for _, c := range []struct {
			method, suffix string
			body           any
		}{
			{"GET", "", nil}, {"DELETE", "", nil}, {"PATCH", "", map[string]any{"name": "x"}},
			{"POST", "/codes", "D3\n"}, {"POST", "/codes/withdraw", "D1\n"}, {"GET", "/codes/D1", nil},
		} {
			wantError(t, n.do(t, c.method, "/v1/lists/"+id+c.suffix, n.admin, c.body), http.StatusNotFound, "not_found")
		}
		for _, other := range n.listIDs(t, n.admin) {
			if other == id {
				t.Fatalf("deleted list %s still in GET /v1/lists", id)
			}
		}
	})

	t.Run("CountsRightAfterImport", func(t *testing.T) {
		l := n.createList(t, n.admin, map[string]any{"name": "counts", "low_stock_threshold": 3})
		if res := n.topUp(t, n.admin, l.ID, "C1\nC2\nC3\nC4\n"); res != (importResult{Imported: 4, Size: 4}) {
			t.Fatalf("import %+v", res)
		}
		got := n.getList(t, n.admin, l.ID)
		if got.counts() != (counts{Added: 4, Available: 4}) {
			t.Fatalf("counts after import %+v", got)
		}
		for _, c := range []string{"C1", "C2", "C3", "C4"} {
			if st := n.codeState(t, n.admin, l.ID, c); st != "available" {
				t.Fatalf("%s: %q", c, st)
			}
		}
	})

	t.Run("TopUpWithDedupeSkipsDuplicatesInTheFileAndAgainstTheList", func(t *testing.T) {
		id := n.newList(t, n.admin, "dedupe-on")
		n.topUp(t, n.admin, id, "A\nB\n")
		// A is known, the second C repeats the first.
		if res := n.topUp(t, n.admin, id, "C\nA\nC\nD\n"); res != (importResult{Imported: 2, Duplicates: 2, Size: 4}) {
			t.Fatalf("top-up %+v", res)
		}
		if got := n.getList(t, n.admin, id); got.counts() != (counts{Added: 4, Available: 4}) {
			t.Fatalf("counts %+v", got)
		}
		// A withdrawn code is still in the list: importing it again is a duplicate.
		r := n.do(t, "POST", "/v1/lists/"+id+"/codes/withdraw", n.admin, "D\n")
		wantStatus(t, r, http.StatusOK)
		if res := n.topUp(t, n.admin, id, "D\nE\n"); res != (importResult{Imported: 1, Duplicates: 1, Size: 4}) {
			t.Fatalf("top-up with a withdrawn code %+v", res)
		}
		if st := n.codeState(t, n.admin, id, "D"); st != "withdrawn" {
			t.Fatalf("D after re-import: %q, want withdrawn", st)
		}
		if got := n.getList(t, n.admin, id); got.counts() != (counts{Added: 5, Available: 4, Withdrawn: 1, UsedOrDeleted: 1}) {
			t.Fatalf("counts %+v", got)
		}
	})

	t.Run("TopUpWithoutDedupeAddsEveryLine", func(t *testing.T) {
		id := n.createList(t, n.admin, map[string]any{"name": "dedupe-off", "dedupe": false}).ID
		n.topUp(t, n.admin, id, "A\n")
		// Every line counts in in_other_lists too: the lists of the tests above hold A and B.
		if res := n.topUp(t, n.admin, id, "A\nB\nB\n"); res != (importResult{Imported: 3, Size: 4, InOtherLists: 3}) {
			t.Fatalf("top-up %+v", res)
		}
		if got := n.getList(t, n.admin, id); got.counts() != (counts{Added: 4, Available: 4}) {
			t.Fatalf("counts %+v", got)
		}
		// One copy of A withdrawn, the other still available.
		r := n.do(t, "POST", "/v1/lists/"+id+"/codes/withdraw", n.admin, "A\n")
		var w map[string]uint64
		decode(t, r, http.StatusOK, &w)
		if w["withdrawn"] != 1 {
			t.Fatalf("withdraw %s", r)
		}
		if got := n.getList(t, n.admin, id); got.counts() != (counts{Added: 4, Available: 3, Withdrawn: 1, UsedOrDeleted: 1}) {
			t.Fatalf("counts %+v", got)
		}
	})

	t.Run("UploadOfOnlyKnownCodesLeavesTheListUnchanged", func(t *testing.T) {
		id := n.newList(t, n.admin, "known")
		n.topUp(t, n.admin, id, "K1\nK2\nK3\n")
		before := n.getListRaw(t, n.admin, id)
		if res := n.topUp(t, n.admin, id, "K2\nK1\nK3\nK1\n"); res != (importResult{Duplicates: 4, Size: 3}) {
			t.Fatalf("known codes %+v", res)
		}
		if res := n.topUp(t, n.admin, id, ""); res != (importResult{Size: 3}) {
			t.Fatalf("empty upload %+v", res)
		}
		if res := n.topUp(t, n.admin, id, "\n \n\"\"\n"); res != (importResult{Size: 3}) {
			t.Fatalf("blank upload %+v", res)
		}
		if after := n.getListRaw(t, n.admin, id); after != before {
			t.Fatalf("GET changed:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("TopUpWithHeaderTrueSkipsTheFirstLine", func(t *testing.T) {
		id := n.newList(t, n.admin, "header")
		r := n.do(t, "POST", "/v1/lists/"+id+"/codes?header=true", n.admin, "code\nH1\nH2\n")
		var res importResult
		decode(t, r, http.StatusOK, &res)
		if res != (importResult{Imported: 2, Size: 2}) || n.codeState(t, n.admin, id, "code") != "" {
			t.Fatalf("header=true: %s", r)
		}
		r = n.do(t, "POST", "/v1/lists/"+id+"/codes?header=false", n.admin, "code\nH3\n")
		decode(t, r, http.StatusOK, &res)
		if res != (importResult{Imported: 2, Size: 4}) || n.codeState(t, n.admin, id, "code") != "available" {
			t.Fatalf("header=false: %s", r)
		}
		before := n.getListRaw(t, n.admin, id)
		for _, q := range []string{"header=yes", "header=", "header=TRUEISH"} {
			wantError(t, n.do(t, "POST", "/v1/lists/"+id+"/codes?"+q, n.admin, "H9\n"), http.StatusBadRequest, "invalid_request")
		}
		if after := n.getListRaw(t, n.admin, id); after != before {
			t.Fatal("a refused top-up changed the list")
		}
	})

	t.Run("WithdrawCountsAndAnAlreadyWithdrawnCodeCountsAsWithdrawn", func(t *testing.T) {
		l := n.createList(t, n.admin, map[string]any{"name": "withdraw", "low_stock_threshold": 3})
		n.topUp(t, n.admin, l.ID, "W1\nW2\nW3\nW4\n")

		withdraw := func(csv string) map[string]uint64 {
			t.Helper()
			r := n.do(t, "POST", "/v1/lists/"+l.ID+"/codes/withdraw", n.admin, csv)
			var out map[string]uint64
			decode(t, r, http.StatusOK, &out)
			if len(out) != 3 {
				t.Fatalf(`want exactly {"withdrawn","not_found","already_used"}: %s`, r)
			}
			return out
		}
		// W1 twice: the second finds it withdrawn, which counts as withdrawn (README).
		if got := withdraw("W1\nNOPE\nW1\n"); !reflect.DeepEqual(got, map[string]uint64{"withdrawn": 2, "not_found": 1, "already_used": 0}) {
			t.Fatalf("first withdrawal %v", got)
		}
		if got := n.getList(t, n.admin, l.ID); got.counts() != (counts{Added: 4, Available: 3, Withdrawn: 1, UsedOrDeleted: 1}) {
			t.Fatalf("counts %+v", got)
		}
		if got := withdraw("W1\nW2\n"); !reflect.DeepEqual(got, map[string]uint64{"withdrawn": 2, "not_found": 0, "already_used": 0}) {
			t.Fatalf("second withdrawal %v", got)
		}
		got := n.getList(t, n.admin, l.ID)
		if got.counts() != (counts{Added: 4, Available: 2, Withdrawn: 2, UsedOrDeleted: 2, LowStock: true}) {
			t.Fatalf("counts %+v (2 available < threshold 3 is low stock)", got)
		}
		for code, want := range map[string]string{"W1": "withdrawn", "W2": "withdrawn", "W3": "available"} {
			if st := n.codeState(t, n.admin, l.ID, code); st != want {
				t.Fatalf("%s: %q, want %q", code, st, want)
			}
		}
		if got := withdraw(""); !reflect.DeepEqual(got, map[string]uint64{"withdrawn": 0, "not_found": 0, "already_used": 0}) {
			t.Fatalf("empty withdrawal %v", got)
		}

		before := n.getListRaw(t, n.admin, l.ID)
		e := wantError(t, n.do(t, "POST", "/v1/lists/"+l.ID+"/codes/withdraw", n.admin, "W3\nW4,x\n"), http.StatusBadRequest, "invalid_csv")
		if e["line"] != float64(2) || e["reason"] != "second column" {
			t.Fatalf("invalid CSV details %v", e)
		}
		if after := n.getListRaw(t, n.admin, l.ID); after != before {
			t.Fatal("a refused withdrawal changed the list")
		}
		// README: one withdrawal holds at most about 1 MiB of codes (one Raft entry).
		// 45,000 codes of 24 bytes: past the limit, with less than 256 KiB left
		// unread when the server refuses (so the answer is not lost to a reset).
		big := "W3\n" + codeLines("WITHDRAW-TOO-MANY-", 0, 45000)
		wantError(t, n.do(t, "POST", "/v1/lists/"+l.ID+"/codes/withdraw", n.admin, big), http.StatusRequestEntityTooLarge, "payload_too_large")
		if after := n.getListRaw(t, n.admin, l.ID); after != before {
			t.Fatal("a withdrawal refused with 413 changed the list")
		}
	})

	t.Run("CodeLookupDecodesThePercentEncodedSegmentExactlyOnce", func(t *testing.T) {
		id := n.newList(t, n.admin, "paths")
		// Codes as imported; "é" is U+00E9 (precomposed).
		n.topUp(t, n.admin, id, "a/b\n.\n..\nA B\né\n%41\n%2F\na/../b\n+\nx?y\n#h\nCODE-1\nwithdraw\n")
		for _, c := range []struct{ escaped, code string }{
			{"a%2Fb", "a/b"},
			{"%2E", "."},
			{"%2E%2E", ".."},
			{".", "."},
			{"..", ".."},
			{"A%20B", "A B"},
			{"%C3%A9", "é"},
			{"%c3%a9", "é"},
			{"%2541", "%41"},
			{"%252F", "%2F"},
			{"a%2F%2E%2E%2Fb", "a/../b"},
			{"a%2F..%2Fb", "a/../b"},
			{"+", "+"},
			{"x%3Fy", "x?y"},
			{"%23h", "#h"},
			{"CODE-1", "CODE-1"},
			{"%43ODE-1", "CODE-1"},
			{"withdraw", "withdraw"}, // GET on .../codes/withdraw is a lookup, not the withdrawal
		} {
			t.Run(c.escaped, func(t *testing.T) {
				r := n.do(t, "GET", "/v1/lists/"+id+"/codes/"+c.escaped, n.admin, nil)
				var out map[string]any
				decode(t, r, http.StatusOK, &out)
				if !reflect.DeepEqual(out, map[string]any{"code": c.code, "state": "available"}) {
					t.Fatalf("got %s, want code %q available", r, c.code)
				}
			})
		}
		// Decoded once, never normalised: these name codes that are not in the list.
		for _, escaped := range []string{
			"%41",          // "A", not "%41"
			"%2F",          // "/", not "%2F"
			"b",            // "a/../b" is not normalised to "b"
			"a%2Fb%2F",     // "a/b/"
			"e%CC%81",      // decomposed é is another code
			"A+B",          // "+" is not a space in a path
			"code-1",       // case matters
			"%20CODE-1",    // " CODE-1"
			"%252541",      // "%2541"
			"NOT-IMPORTED", // plain unknown code
		} {
			t.Run("404 "+escaped, func(t *testing.T) {
				wantError(t, n.do(t, "GET", "/v1/lists/"+id+"/codes/"+escaped, n.admin, nil), http.StatusNotFound, "not_found")
			})
		}
		for _, bad := range []string{"%zz", "%4", "abc%"} {
			t.Run("400 "+bad, func(t *testing.T) {
				wantError(t, n.do(t, "GET", "/v1/lists/"+id+"/codes/"+bad, n.admin, nil), http.StatusBadRequest, "invalid_request")
			})
		}
	})
}

// TestBoolQueryParamsAcceptOnlyTrueOrFalse: README "API notes" says dedupe
// and header take true or false, 400 otherwise.
func TestBoolQueryParamsAcceptOnlyTrueOrFalse(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	id := n.newList(t, n.admin, "bools")
	before := n.listIDs(t, n.admin)
	for _, q := range []string{"header=1", "header=0", "header=t", "header=F", "header=TRUE", "header=False"} {
		t.Run("top-up "+q, func(t *testing.T) {
			wantError(t, n.do(t, "POST", "/v1/lists/"+id+"/codes?"+q, n.admin, "code\nB1\n"), http.StatusBadRequest, "invalid_request")
		})
	}
	for _, q := range []string{"dedupe=1", "dedupe=0", "dedupe=T", "dedupe=f"} {
		t.Run("create "+q, func(t *testing.T) {
			wantError(t, n.do(t, "POST", "/v1/lists?name=x&"+q, n.admin, "B1\n"), http.StatusBadRequest, "invalid_request")
		})
	}
	if after := n.listIDs(t, n.admin); !reflect.DeepEqual(after, before) {
		t.Fatalf("lists created: %v -> %v", before, after)
	}
}

// TestOperatorsAPI covers tenants, tokens, the cluster view, health, readiness
// and metrics, and the routing errors (401, 403, 404, 405) on one node.
func TestOperatorsAPI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})

	tenantIDs := func() []string {
		t.Helper()
		var out map[string][]map[string]any
		r := n.do(t, "GET", "/v1/tenants", n.operator, nil)
		decode(t, r, http.StatusOK, &out)
		if len(out) != 1 || out["tenants"] == nil {
			t.Fatalf(`want exactly {"tenants": [...]}: %s`, r)
		}
		var ids []string
		for _, tn := range out["tenants"] {
			ids = append(ids, tn["id"].(string))
		}
		sort.Strings(ids)
		return ids
	}

	t.Run("CreateTenantAnswers201AndGetTenantsListsIt", func(t *testing.T) {
		r := n.do(t, "POST", "/v1/tenants", n.operator, map[string]string{"id": "acme", "name": "Acme Ltd"})
		var tn map[string]any
		decode(t, r, http.StatusCreated, &tn)
		if tn["id"] != "acme" || tn["name"] != "Acme Ltd" {
			t.Fatalf("tenant %s", r)
		}
		ids := tenantIDs()
		if !contains(ids, "acme") || !contains(ids, "default") {
			t.Fatalf("tenants %v lack acme or default", ids)
		}
		for _, id := range []string{"a", "0", "a-b-9", strings.Repeat("z", 63)} {
			if r := n.do(t, "POST", "/v1/tenants", n.operator, map[string]string{"id": id, "name": id}); r.status != http.StatusCreated {
				t.Fatalf("valid tenant id %q: %s", id, r)
			}
		}
	})

	t.Run("CreateTenantThatExistsIs409", func(t *testing.T) {
		n.do(t, "POST", "/v1/tenants", n.operator, map[string]string{"id": "twice", "name": "1"})
		wantError(t, n.do(t, "POST", "/v1/tenants", n.operator, map[string]string{"id": "twice", "name": "2"}), http.StatusConflict, "tenant_exists")
		wantError(t, n.do(t, "POST", "/v1/tenants", n.operator, map[string]string{"id": "default", "name": "x"}), http.StatusConflict, "tenant_exists")
	})

	t.Run("CreateTenantRefusesBadInputWith400", func(t *testing.T) {
		before := tenantIDs()
		for _, c := range []struct{ name, body, code string }{
			{"bad JSON", `{"id": "x"`, "invalid_json"},
			{"unknown field", `{"id": "x1", "name": "x", "plan": "gold"}`, "invalid_json"},
			{"id not a string", `{"id": 5, "name": "x"}`, "invalid_json"},
			{"name not a string", `{"id": "x2", "name": true}`, "invalid_json"},
			{"missing id", `{"name": "x"}`, "invalid_request"},
			{"empty id", `{"id": "", "name": "x"}`, "invalid_request"},
			{"upper case id", `{"id": "Acme", "name": "x"}`, "invalid_request"},
			{"leading hyphen", `{"id": "-acme", "name": "x"}`, "invalid_request"},
			{"underscore", `{"id": "a_b", "name": "x"}`, "invalid_request"},
			{"space", `{"id": "a b", "name": "x"}`, "invalid_request"},
			{"slash", `{"id": "a/b", "name": "x"}`, "invalid_request"},
			{"non-ASCII", `{"id": "é", "name": "x"}`, "invalid_request"},
			{"64 characters", `{"id": "` + strings.Repeat("a", 64) + `", "name": "x"}`, "invalid_request"},
			{"missing name", `{"id": "noname"}`, "invalid_request"},
			{"empty name", `{"id": "noname", "name": ""}`, "invalid_request"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "POST", "/v1/tenants", n.operator, rawJSON(c.body)), http.StatusBadRequest, c.code)
			})
		}
		if after := tenantIDs(); !reflect.DeepEqual(after, before) {
			t.Fatalf("refused creates changed the tenants: %v -> %v", before, after)
		}
	})

	t.Run("CreateTokenAnswers201AndTheTokenWorksAtOnce", func(t *testing.T) {
		n.createTenant(t, "tok-tenant")
		r := n.do(t, "POST", "/v1/tenants/tok-tenant/tokens", n.operator, map[string]string{"role": "admin", "name": "ci"})
		var out map[string]string
		decode(t, r, http.StatusCreated, &out)
		if len(out) != 2 || out["id"] == "" || out["token"] == "" || strings.Contains(out["id"], out["token"]) {
			t.Fatalf(`want {"id","token"}: %s`, r)
		}
		var lists map[string][]any
		decode(t, n.do(t, "GET", "/v1/lists", out["token"], nil), http.StatusOK, &lists)
		if len(lists["lists"]) != 0 {
			t.Fatalf("new tenant has lists: %v", lists)
		}
		// A sender token authenticates at once: lists are refused with 403, not 401.
		_, sender := n.createToken(t, "tok-tenant", "sender")
		wantError(t, n.do(t, "GET", "/v1/lists", sender, nil), http.StatusForbidden, "forbidden")
		// A token without a name is fine.
		r = n.do(t, "POST", "/v1/tenants/tok-tenant/tokens", n.operator, map[string]string{"role": "sender"})
		wantStatus(t, r, http.StatusCreated)
		// Two tokens never share a secret or an id.
		id2, secret2 := n.createToken(t, "tok-tenant", "admin")
		if id2 == out["id"] || secret2 == out["token"] {
			t.Fatal("two tokens share an id or a secret")
		}
	})

	t.Run("CreateTokenRefusesBadInput", func(t *testing.T) {
		for _, c := range []struct {
			name, tenant, body string
			status             int
			code               string
		}{
			{"role operator", "default", `{"role": "operator"}`, 400, "invalid_request"},
			{"role unknown", "default", `{"role": "root"}`, 400, "invalid_request"},
			{"role upper case", "default", `{"role": "Admin"}`, 400, "invalid_request"},
			{"role missing", "default", `{"name": "x"}`, 400, "invalid_request"},
			{"role not a string", "default", `{"role": 2}`, 400, "invalid_json"},
			{"unknown field", "default", `{"role": "admin", "tenant": "x"}`, 400, "invalid_json"},
			{"bad JSON", "default", `{"role": `, 400, "invalid_json"},
			{"name too long", "default", `{"role": "admin", "name": "` + strings.Repeat("n", 257) + `"}`, 400, "invalid_request"},
			{"unknown tenant", "nope", `{"role": "admin"}`, 404, "not_found"},
			{"malformed tenant id", "NOPE", `{"role": "admin"}`, 404, "not_found"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "POST", "/v1/tenants/"+c.tenant+"/tokens", n.operator, rawJSON(c.body)), c.status, c.code)
			})
		}
	})

	t.Run("RevokeTokenAnswers204AndTheTokenGets401AtOnce", func(t *testing.T) {
		id, secret := n.createToken(t, "default", "admin")
		wantStatus(t, n.do(t, "GET", "/v1/lists", secret, nil), http.StatusOK)
		r := n.do(t, "DELETE", "/v1/tokens/"+id, n.operator, nil)
		wantStatus(t, r, http.StatusNoContent)
		if len(r.body) != 0 {
			t.Fatalf("204 with a body: %q", r.body)
		}
		wantError(t, n.do(t, "GET", "/v1/lists", secret, nil), http.StatusUnauthorized, "unauthorized")
		wantError(t, n.do(t, "POST", "/v1/lists", secret, map[string]string{"name": "x"}), http.StatusUnauthorized, "unauthorized")
		wantError(t, n.do(t, "DELETE", "/v1/tokens/"+id, n.operator, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "DELETE", "/v1/tokens/tok_0000000000000000", n.operator, nil), http.StatusNotFound, "not_found")
		// The other tokens still work.
		wantStatus(t, n.do(t, "GET", "/v1/lists", n.admin, nil), http.StatusOK)
	})

	t.Run("GetClusterAnswersTheSpecFields", func(t *testing.T) {
		r := n.do(t, "GET", "/v1/cluster", n.operator, nil)
		var out map[string]json.RawMessage
		decode(t, r, http.StatusOK, &out)
		keys := make([]string, 0, len(out))
		for k := range out {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if strings.Join(keys, ",") != "applied_index,commit_index,leader,nodes,term" {
			t.Fatalf("cluster fields %v: %s", keys, r)
		}
		var c struct {
			Leader       *string           `json:"leader"`
			Nodes        []json.RawMessage `json:"nodes"`
			Term         uint64            `json:"term"`
			CommitIndex  uint64            `json:"commit_index"`
			AppliedIndex uint64            `json:"applied_index"`
		}
		if err := json.Unmarshal(r.body, &c); err != nil {
			t.Fatal(err)
		}
		if c.Leader == nil || *c.Leader != "node1" || c.Term < 1 || c.CommitIndex < 1 || c.AppliedIndex < 1 || c.AppliedIndex > c.CommitIndex {
			t.Fatalf("cluster %s", r)
		}
		if len(c.Nodes) != 1 {
			t.Fatalf("want one node: %s", r)
		}
		var node struct {
			ID       string `json:"id"`
			RaftAddr string `json:"raft_addr"`
			HTTPAddr string `json:"http_addr"`
			Suffrage string `json:"suffrage"`
			State    string `json:"state"`
		}
		var fields map[string]any
		json.Unmarshal(c.Nodes[0], &fields)
		dec := json.NewDecoder(bytes.NewReader(c.Nodes[0]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&node); err != nil || len(fields) != 5 {
			t.Fatalf(`node must be exactly {"id","raft_addr","http_addr","suffrage","state"}: %v: %s`, err, r)
		}
		if node.ID != "node1" || node.Suffrage != "voter" || node.State != "leader" {
			t.Fatalf("node %+v", node)
		}
		if _, port, err := net.SplitHostPort(node.RaftAddr); err != nil || port == "0" {
			t.Fatalf("raft_addr %q", node.RaftAddr)
		}
		if _, _, err := net.SplitHostPort(node.HTTPAddr); err != nil {
			t.Fatalf("http_addr %q", node.HTTPAddr)
		}
	})

	t.Run("HealthzReadyzMetricsNeedNoToken", func(t *testing.T) {
		for _, auth := range []string{"", "Bearer garbage"} {
			r := n.send(t, req{method: "GET", path: "/healthz", authRaw: auth})
			var st map[string]string
			decode(t, r, http.StatusOK, &st)
			r = n.send(t, req{method: "GET", path: "/readyz", authRaw: auth})
			decode(t, r, http.StatusOK, &st)
			r = n.send(t, req{method: "GET", path: "/metrics", authRaw: auth})
			wantStatus(t, r, http.StatusOK)
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Fatalf("/metrics Content-Type %q", ct)
			}
			body := string(r.body)
			for _, want := range []string{"# TYPE coupond_raft_leader gauge\n", "\ncoupond_raft_leader 1\n", "coupond_raft_term ", "coupond_fsm_applied_index "} {
				if !strings.Contains(body, want) {
					t.Fatalf("/metrics lacks %q:\n%s", want, body)
				}
			}
		}
	})

	t.Run("MembershipChangesCheckTheirInput", func(t *testing.T) {
		// A node that does not answer is never added: it would cost a
		// single node its quorum.
		wantError(t, n.do(t, "POST", "/v1/cluster/nodes", n.operator, map[string]string{"id": "node2", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"}), http.StatusUnprocessableEntity, "node_unreachable")
		for _, body := range []map[string]string{
			{"raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2"},
			{"id": "node2", "raft_addr": "nohost", "http_addr": "127.0.0.1:2"},
			{"id": "node2", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1"},
		} {
			wantError(t, n.do(t, "POST", "/v1/cluster/nodes", n.operator, body), http.StatusBadRequest, "invalid_request")
		}
		wantError(t, n.do(t, "POST", "/v1/cluster/nodes", n.operator, map[string]string{"id": "node2", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "extra": "x"}), http.StatusBadRequest, "invalid_json")
		wantError(t, n.do(t, "DELETE", "/v1/cluster/nodes/node2", n.operator, nil), http.StatusNotFound, "not_found")
		r := n.do(t, "GET", "/v1/cluster", n.operator, nil)
		if r.status != http.StatusOK || strings.Count(string(r.body), `"suffrage"`) != 1 {
			t.Fatalf("the cluster changed: %d %s", r.status, r.body)
		}
	})

	t.Run("WrongMethodIs405WithAllow", func(t *testing.T) {
		for _, c := range []struct{ method, path, allow string }{
			{"PUT", "/v1/lists", "GET,POST"},
			{"DELETE", "/v1/lists", "GET,POST"},
			{"POST", "/v1/lists/0000000000000001", "DELETE,GET,PATCH"},
			{"PUT", "/v1/lists/0000000000000001", "DELETE,GET,PATCH"},
			{"GET", "/v1/lists/0000000000000001/codes", "POST"},
			{"DELETE", "/v1/lists/0000000000000001/codes/X", "GET"},
			{"PUT", "/v1/lists/0000000000000001/codes/withdraw", "GET,POST"},
			{"PUT", "/v1/tenants", "GET,POST"},
			{"GET", "/v1/tenants/default/tokens", "POST"},
			{"GET", "/v1/tokens/tok_1", "DELETE"},
			{"POST", "/v1/cluster", "GET"},
			{"GET", "/v1/cluster/nodes", "POST"},
			{"POST", "/healthz", "GET"},
			{"POST", "/readyz", "GET"},
			{"DELETE", "/metrics", "GET"},
		} {
			t.Run(c.method+" "+c.path, func(t *testing.T) {
				for _, tok := range []string{n.admin, n.operator} {
					r := n.do(t, c.method, c.path, tok, nil)
					wantError(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
					var allow []string
					for _, m := range strings.Split(r.header.Get("Allow"), ",") {
						allow = append(allow, strings.TrimSpace(m))
					}
					sort.Strings(allow)
					if strings.Join(allow, ",") != c.allow {
						t.Fatalf("Allow %q, want %s", r.header.Get("Allow"), c.allow)
					}
				}
			})
		}
	})

	t.Run("UnknownRouteIs404", func(t *testing.T) {
		for _, p := range []string{"/", "/v1", "/v2/lists", "/v1/nothing", "/v1/lists/0000000000000001/codes/a/b", "/v1/tenants/default", "/v1/tokens", "/v1/cluster/x"} {
			wantError(t, n.do(t, "GET", p, n.operator, nil), http.StatusNotFound, "not_found")
		}
	})

	t.Run("MissingOrInvalidTokenIs401", func(t *testing.T) {
		for _, auth := range []string{
			"",
			"Bearer",
			"Bearer ",
			"Basic " + n.admin,
			"Token " + n.admin,
			n.admin,
			"Bearer garbage",
			"Bearer " + n.admin + "x",
			"Bearer " + n.admin[:len(n.admin)-1],
		} {
			for _, path := range []string{"/v1/lists", "/v1/tenants", "/v1/cluster"} {
				wantError(t, n.send(t, req{method: "GET", path: path, authRaw: auth}), http.StatusUnauthorized, "unauthorized")
			}
		}
		// The scheme is case-insensitive (RFC 7235).
		wantStatus(t, n.send(t, req{method: "GET", path: "/v1/lists", authRaw: "bearer " + n.admin}), http.StatusOK)
	})

	t.Run("WrongRoleIs403", func(t *testing.T) {
		wantError(t, n.do(t, "GET", "/v1/lists", n.operator, nil), http.StatusForbidden, "forbidden")
		wantError(t, n.do(t, "POST", "/v1/lists", n.operator, map[string]string{"name": "x"}), http.StatusForbidden, "forbidden")
		wantError(t, n.do(t, "GET", "/v1/tenants", n.admin, nil), http.StatusForbidden, "forbidden")
		wantError(t, n.do(t, "POST", "/v1/tenants/default/tokens", n.admin, map[string]string{"role": "admin"}), http.StatusForbidden, "forbidden")
		wantError(t, n.do(t, "GET", "/v1/cluster", n.admin, nil), http.StatusForbidden, "forbidden")
	})
}

// TestClusterHTTPAddrIsTheListeningAddress: a node started on port 0 must
// report where its API really listens.
func TestClusterHTTPAddrIsTheListeningAddress(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	var c struct {
		Nodes []struct {
			HTTPAddr string `json:"http_addr"`
		} `json:"nodes"`
	}
	decode(t, n.do(t, "GET", "/v1/cluster", n.operator, nil), http.StatusOK, &c)
	if len(c.Nodes) != 1 || c.Nodes[0].HTTPAddr != n.node.HTTPAddr() {
		t.Fatalf("http_addr %+v, want %s", c.Nodes, n.node.HTTPAddr())
	}
}

// TestJSONBodyPastMaxBodyIs413: README says "JSON bodies at most 1 MiB; any
// body at most --max-body".
func TestJSONBodyPastMaxBodyIs413(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{maxBody: 1024})
	pad := strings.Repeat(" ", 4096)
	before := n.listIDs(t, n.admin)
	wantError(t, n.do(t, "POST", "/v1/lists", n.admin, rawJSON(`{"name": "padded"`+pad+`}`)), http.StatusRequestEntityTooLarge, "payload_too_large")
	wantError(t, n.do(t, "POST", "/v1/tenants", n.operator, rawJSON(`{"id": "padded", "name": "x"`+pad+`}`)), http.StatusRequestEntityTooLarge, "payload_too_large")
	if after := n.listIDs(t, n.admin); !reflect.DeepEqual(after, before) {
		t.Fatalf("a body past --max-body created a list: %v -> %v", before, after)
	}
}

// TestMalformedHTTPRequestGetsTheJSONErrorShape: a request the HTTP layer
// cannot parse is bad input too (SPEC §2: every error is {"error": {...}}).
func TestMalformedHTTPRequestGetsTheJSONErrorShape(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/lists HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	wantError(t, response{status: resp.StatusCode, header: resp.Header, body: body}, http.StatusBadRequest, "invalid_request")
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// TestCSVBodyPastMaxBodyIs413 runs a node with MaxBody = 1 MiB: a CSV body of
// exactly 1 MiB is imported, one byte more is refused with 413 whether the
// client sends Content-Length or chunks, and a refused body changes nothing
// (top-up, withdraw, and create+import, which creates no list).
//
// Bodies the server refuses part-way are sent with rawExchange, which stops
// writing where the server must have decided; with an ordinary client the
// answer is often lost to a connection reset (see
// TestEarlyRefusalOfALargeUploadReachesTheClient).
func TestCSVBodyPastMaxBodyIs413(t *testing.T) {
	t.Parallel()
	const maxBody = 1 << 20
	n := startNode(t, nodeOpts{maxBody: maxBody})

	// 65,536 lines of 16 bytes: exactly 1 MiB.
	var exact bytes.Buffer
	for i := 0; exact.Len() < maxBody; i++ {
		fmt.Fprintf(&exact, "B%014d\n", i)
	}
	if exact.Len() != maxBody {
		t.Fatalf("test body is %d bytes", exact.Len())
	}
	over := append(append([]byte{}, exact.Bytes()...), 'X')

	id := n.newList(t, n.admin, "limits")
	n.topUp(t, n.admin, id, "S1\n")
	paths := []string{"/v1/lists/" + id + "/codes", "/v1/lists/" + id + "/codes/withdraw", "/v1/lists?name=too-big"}

	for _, c := range []struct {
		name string
		send func(t *testing.T, path string) response
	}{
		{"Content-Length of 1 MiB + 1", func(t *testing.T, path string) response {
			// The length alone decides. fasthttp reads the first 8 KiB of a
			// body before it calls the handler: send just those.
			return n.rawExchange(t, "POST", path, n.admin, []string{"Content-Type: text/csv", fmt.Sprintf("Content-Length: %d", maxBody+1)}, over)
		}},
		{"Content-Length of 4 GiB", func(t *testing.T, path string) response {
			return n.rawExchange(t, "POST", path, n.admin, []string{"Content-Type: text/csv", "Content-Length: 4294967296"}, over[:8<<10])
		}},
		{"chunked 1 MiB + 1 (net/http client)", func(t *testing.T, path string) response {
			return n.send(t, req{method: "POST", path: path, token: n.admin, body: bytes.NewReader(over), ctype: "text/csv", chunked: true})
		}},
		{"chunked, more than 1 MiB + 1 on the way", func(t *testing.T, path string) response {
			// Chunks up to one byte past the limit, and the body goes on.
			return n.rawExchange(t, "POST", path, n.admin, []string{"Content-Type: text/csv", "Transfer-Encoding: chunked"}, chunked(over))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range paths {
				before := n.getListRaw(t, n.admin, id)
				beforeLists := n.listIDs(t, n.admin)
				wantError(t, c.send(t, path), http.StatusRequestEntityTooLarge, "payload_too_large")
				if after := n.getListRaw(t, n.admin, id); after != before {
					t.Fatalf("POST %s: a refused body changed the list:\n%s\n%s", path, before, after)
				}
				if after := n.listIDs(t, n.admin); !reflect.DeepEqual(after, beforeLists) {
					t.Fatalf("POST %s: a refused body made a list", path)
				}
				if st := n.codeState(t, n.admin, id, "B00000000000000"); st != "" {
					t.Fatalf("a code of a refused body is in the list: %q", st)
				}
			}
		})
	}

	t.Run("exactly MaxBody is accepted", func(t *testing.T) {
		var res importResult
		decode(t, n.send(t, req{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, body: bytes.NewReader(exact.Bytes()), ctype: "text/csv"}), http.StatusOK, &res)
		if res != (importResult{Imported: 65536, Size: 65537}) {
			t.Fatalf("1 MiB import %+v", res)
		}
		decode(t, n.send(t, req{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, body: bytes.NewReader(exact.Bytes()), ctype: "text/csv", chunked: true}), http.StatusOK, &res)
		if res != (importResult{Duplicates: 65536, Size: 65537}) {
			t.Fatalf("1 MiB chunked re-import %+v", res)
		}
		if got := n.getList(t, n.admin, id); got.counts() != (counts{Added: 65537, Available: 65537}) {
			t.Fatalf("counts %+v", got)
		}
	})

	t.Run("JSON body past 1 MiB", func(t *testing.T) {
		body := `{"name": "` + strings.Repeat("n", 1<<20) + `"}`
		before := n.listIDs(t, n.admin)
		wantError(t, n.rawExchange(t, "POST", "/v1/lists", n.admin, []string{"Content-Type: application/json", fmt.Sprintf("Content-Length: %d", len(body))}, []byte(body)), http.StatusRequestEntityTooLarge, "payload_too_large")
		wantError(t, n.send(t, req{method: "POST", path: "/v1/lists", token: n.admin, body: strings.NewReader(body), ctype: "application/json", chunked: true}), http.StatusRequestEntityTooLarge, "payload_too_large")
		if after := n.listIDs(t, n.admin); !reflect.DeepEqual(after, before) {
			t.Fatal("a JSON body past 1 MiB made a list")
		}
	})
}

// TestEarlyRefusalOfALargeUploadReachesTheClient uploads large bodies that the
// server refuses early (a CSV error on line 2 of a 10 MiB body; a 20 MiB body
// whose Content-Length is past MaxBody = 16 MiB) with an ordinary net/http client: the client must get the
// 400 or 413 answer, not a connection reset.
func TestEarlyRefusalOfALargeUploadReachesTheClient(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{maxBody: 16 << 20})
	id := n.newList(t, n.admin, "early")
	badCSV := []byte("E1\n" + strings.Repeat("y", 10<<20) + "\n")
	tooBig := bytes.Repeat([]byte("TOO-BIG-CODE-01\n"), 20<<20/16)
	for i := 0; i < 10; i++ {
		r := n.doRaw(req{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, body: bytes.NewReader(badCSV), ctype: "text/csv"})
		if r.err != nil {
			t.Fatalf("try %d, CSV error on line 2 of a 10 MiB body: %v", i, r.err)
		}
		wantError(t, r, http.StatusBadRequest, "invalid_csv")
		r = n.doRaw(req{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, body: bytes.NewReader(tooBig), ctype: "text/csv"})
		if r.err != nil {
			t.Fatalf("try %d, 4 MiB body with Content-Length past MaxBody: %v", i, r.err)
		}
		wantError(t, r, http.StatusRequestEntityTooLarge, "payload_too_large")
	}
}
