package httpapi_test

// Acceptance point (a), Sends: every Sends call of SPEC §2 over real HTTP
// with its success and error statuses, the allocation rules (idempotent,
// all or nothing, FIFO, holds, closed sends, limits), a request bigger than
// one Raft entry, assignments of a send, a recipient's history and the code
// lookup of an assigned code.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOpenSend covers PUT /v1/sends/{id} and GET /v1/sends/{id}.
func TestOpenSend(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "other")
	_, adminB := n.createToken(t, "other", "admin")

	t.Run("201Then200AndTheHoldGrowsAndShrinks", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 10)
		o := n.openSend(t, n.admin, "s-open", map[string]any{"message_id": f.msg}, http.StatusCreated)
		if want := (openResult{SendID: "s-open", ListID: f.list, OnShortage: "reject"}); o != want {
			t.Fatalf("open answered %+v, want %+v", o, want)
		}
		if o := n.openSend(t, n.admin, "s-open", map[string]any{"message_id": f.msg}, http.StatusOK); o != (openResult{SendID: "s-open", ListID: f.list, OnShortage: "reject"}) {
			t.Fatalf("second open answered %+v", o)
		}
		s := n.getSend(t, n.admin, "s-open")
		if want := (sendObj{SendID: "s-open", MessageID: f.msg, ListID: f.list, Status: "open", OnShortage: "reject", CreatedAt: s.CreatedAt}); s != want {
			t.Fatalf("GET send %+v, want %+v", s, want)
		}
		n.wantCounts(t, n.admin, f.list, 10, 0, 0)
		created := s.CreatedAt

		step := func(body map[string]any, reserved, available, used uint64) {
			t.Helper()
			o := n.openSend(t, n.admin, "s-open", body, http.StatusOK)
			if o.Reserved != reserved || o.ListID != f.list || o.SendID != "s-open" {
				t.Fatalf("PUT %v answered %+v, want reserved %d", body, o, reserved)
			}
			if s := n.getSend(t, n.admin, "s-open"); s.Reserved != reserved || s.Assigned != used || s.CreatedAt != created {
				t.Fatalf("GET send after PUT %v: %+v", body, s)
			}
			n.wantCounts(t, n.admin, f.list, available, reserved, used)
		}
		for _, c := range []struct{ expected, reserved, available uint64 }{{4, 4, 6}, {7, 7, 3}, {2, 2, 8}, {10, 10, 0}, {0, 0, 10}, {3, 3, 7}} {
			step(map[string]any{"message_id": f.msg, "expected_recipients": c.expected}, c.reserved, c.available, 0)
		}
		// Without expected_recipients the hold stays as it is.
		step(map[string]any{"message_id": f.msg}, 3, 7, 0)
		// The hold is expected − assigned.
		n.alloc(t, n.admin, "s-open", "", "r1@example.com")
		if s := n.getSend(t, n.admin, "s-open"); s.Reserved != 2 || s.Assigned != 1 {
			t.Fatalf("after one allocation: %+v", s)
		}
		n.wantCounts(t, n.admin, f.list, 7, 2, 1)
		step(map[string]any{"message_id": f.msg, "expected_recipients": 5}, 4, 5, 1)
		step(map[string]any{"message_id": f.msg, "expected_recipients": 1}, 0, 9, 1)
		step(map[string]any{"message_id": f.msg, "expected_recipients": 0}, 0, 9, 1)
	})

	t.Run("InsufficientCodesIs409AndARefusedPUTCreatesNothing", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 5)
		before := n.getListRaw(t, n.admin, f.list)
		wantInsufficient(t, n.do(t, "PUT", "/v1/sends/s-short", n.admin, map[string]any{"message_id": f.msg, "expected_recipients": 6}), 6, 5)
		wantError(t, n.do(t, "GET", "/v1/sends/s-short", n.admin, nil), http.StatusNotFound, "not_found")
		if after := n.getListRaw(t, n.admin, f.list); after != before {
			t.Fatalf("a refused PUT changed the list:\nbefore %s\nafter  %s", before, after)
		}
		// An existing send's hold does not move on a refused PUT.
		n.openSend(t, n.admin, "s-short-2", map[string]any{"message_id": f.msg, "expected_recipients": 2}, http.StatusCreated)
		n.wantCounts(t, n.admin, f.list, 3, 2, 0)
		wantInsufficient(t, n.do(t, "PUT", "/v1/sends/s-short-2", n.admin, map[string]any{"message_id": f.msg, "expected_recipients": 6}), 6, 5)
		if s := n.getSend(t, n.admin, "s-short-2"); s.Reserved != 2 {
			t.Fatalf("refused PUT moved the hold: %+v", s)
		}
		n.wantCounts(t, n.admin, f.list, 3, 2, 0)
		// Another send's hold is not available to this one.
		wantInsufficient(t, n.do(t, "PUT", "/v1/sends/s-short-3", n.admin, map[string]any{"message_id": f.msg, "expected_recipients": 4}), 4, 3)
		wantError(t, n.do(t, "GET", "/v1/sends/s-short-3", n.admin, nil), http.StatusNotFound, "not_found")
		if o := n.openSend(t, n.admin, "s-short-3", map[string]any{"message_id": f.msg, "expected_recipients": 3}, http.StatusCreated); o.Reserved != 3 {
			t.Fatalf("open answered %+v", o)
		}
		n.wantCounts(t, n.admin, f.list, 0, 5, 0)
	})

	t.Run("AHoldIsACountThatWithdrawalsCannotEat", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		c := f.codes
		n.openSend(t, n.admin, "s-hold-wd", map[string]any{"message_id": f.msg, "expected_recipients": 2}, http.StatusCreated)
		before := n.getListRaw(t, n.admin, f.list)
		wantError(t, n.do(t, "POST", "/v1/lists/"+f.list+"/codes/withdraw", n.admin, c[0]+"\n"+c[1]+"\n"), http.StatusConflict, "codes_reserved")
		if after := n.getListRaw(t, n.admin, f.list); after != before {
			t.Fatalf("a refused withdrawal changed the list:\nbefore %s\nafter  %s", before, after)
		}
		// Any one code may go: the hold is a count, not particular codes.
		r := n.do(t, "POST", "/v1/lists/"+f.list+"/codes/withdraw", n.admin, c[0]+"\n")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"withdrawn":1`) {
			t.Fatalf("withdraw of one code: %s", r)
		}
		n.wantCounts(t, n.admin, f.list, 0, 2, 0)
		if a := n.alloc(t, n.admin, "s-hold-wd", "", "h1", "h2"); !reflect.DeepEqual(a.codes(), c[1:]) || a.Available != 0 {
			t.Fatalf("allocation from the hold %+v, want %v", a, c[1:])
		}
		n.wantCounts(t, n.admin, f.list, 0, 0, 2)
	})

	t.Run("Errors", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		n.putMessage(t, n.admin, "m-open-nolist", emailMsg("no list"))
		wantError(t, n.do(t, "PUT", "/v1/sends/s-err-1", n.admin, map[string]any{"message_id": "m-open-nolist"}), http.StatusUnprocessableEntity, "no_coupon_list")
		wantError(t, n.do(t, "GET", "/v1/sends/s-err-1", n.admin, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "PUT", "/v1/sends/s-err-2", n.admin, map[string]any{"message_id": "never-made"}), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "GET", "/v1/sends/s-err-2", n.admin, nil), http.StatusNotFound, "not_found")

		n.openSend(t, n.admin, "s-err-3", map[string]any{"message_id": f.msg}, http.StatusCreated)
		n.putMessage(t, n.admin, "m-open-other", emailMsg("other"))
		n.assignList(t, n.admin, "m-open-other", f.list)
		wantError(t, n.do(t, "PUT", "/v1/sends/s-err-3", n.admin, map[string]any{"message_id": "m-open-other"}), http.StatusConflict, "send_message_mismatch")
		if s := n.getSend(t, n.admin, "s-err-3"); s.MessageID != f.msg {
			t.Fatalf("mismatch changed the send: %+v", s)
		}

		for _, c := range []struct{ name, body, code string }{
			{"missing message_id", `{"expected_recipients": 1}`, "invalid_request"},
			{"empty object", `{}`, "invalid_request"},
			{"unknown field", `{"message_id":"` + f.msg + `","policy":"reject"}`, "invalid_json"},
			{"negative expected_recipients", `{"message_id":"` + f.msg + `","expected_recipients":-1}`, "invalid_json"},
			{"expected_recipients a string", `{"message_id":"` + f.msg + `","expected_recipients":"3"}`, "invalid_json"},
			{"fractional expected_recipients", `{"message_id":"` + f.msg + `","expected_recipients":1.5}`, "invalid_json"},
			{"message_id not a string", `{"message_id":5}`, "invalid_json"},
			{"bad JSON", `{"message_id":`, "invalid_json"},
			{"empty body", ``, "invalid_json"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "PUT", "/v1/sends/s-err-4", n.admin, rawJSON(c.body)), http.StatusBadRequest, c.code)
				wantError(t, n.do(t, "GET", "/v1/sends/s-err-4", n.admin, nil), http.StatusNotFound, "not_found")
			})
		}
		for _, id := range []string{strings.Repeat("s", 257), "a%01b", "a%E2%80%A9b", ""} {
			wantError(t, n.do(t, "PUT", "/v1/sends/"+id, n.admin, map[string]any{"message_id": f.msg}), http.StatusBadRequest, "invalid_request")
		}
		// A 256-byte send id, and one with "/" and ".", sent escaped.
		for _, c := range []struct{ path, id string }{{strings.Repeat("s", 256), strings.Repeat("s", 256)}, {"a%2Fb%2E", "a/b."}, {"%2E%2E", ".."}} {
			if o := n.openSend(t, n.admin, c.path, map[string]any{"message_id": f.msg}, http.StatusCreated); o.SendID != c.id {
				t.Fatalf("PUT /v1/sends/%s opened %q", c.path, o.SendID)
			}
			if s := n.getSend(t, n.admin, c.path); s.SendID != c.id {
				t.Fatalf("GET /v1/sends/%s answered %q", c.path, s.SendID)
			}
		}

		// Another tenant sees neither the send nor the message.
		wantError(t, n.do(t, "GET", "/v1/sends/s-err-3", adminB, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "PUT", "/v1/sends/s-err-3", adminB, map[string]any{"message_id": f.msg}), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "GET", "/v1/sends/never-made", n.admin, nil), http.StatusNotFound, "not_found")

		// A closed send is not reopened (our choice: 409 send_closed).
		if r := n.do(t, "POST", "/v1/sends/s-err-3/close", n.admin, nil); r.status != http.StatusOK {
			t.Fatalf("close: %s", r)
		}
		wantError(t, n.do(t, "PUT", "/v1/sends/s-err-3", n.admin, map[string]any{"message_id": f.msg, "expected_recipients": 1}), http.StatusConflict, "send_closed")
		n.wantCounts(t, n.admin, f.list, 3, 0, 0)
	})

	t.Run("ASendKeepsTheListItsMessageHadWhenOpened", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		l2 := n.newList(t, n.admin, "keep-2")
		n.topUp(t, n.admin, l2, "K2-1\nK2-2\n")
		n.openSend(t, n.admin, "s-keep", map[string]any{"message_id": f.msg}, http.StatusCreated)
		n.assignList(t, n.admin, f.msg, l2)
		if a := n.alloc(t, n.admin, "s-keep", f.msg, "k1"); a.Assignments[0].Code != f.codes[0] || a.Available != 2 {
			t.Fatalf("old send after re-assign: %+v, want %s from its own list", a, f.codes[0])
		}
		if s := n.getSend(t, n.admin, "s-keep"); s.ListID != f.list {
			t.Fatalf("send list_id %s, want %s", s.ListID, f.list)
		}
		if a := n.alloc(t, n.admin, "s-keep-2", f.msg, "k1"); a.Assignments[0].Code != "K2-1" || a.Available != 1 {
			t.Fatalf("new send after re-assign: %+v, want K2-1", a)
		}
		if s := n.getSend(t, n.admin, "s-keep-2"); s.ListID != l2 {
			t.Fatalf("new send list_id %s, want %s", s.ListID, l2)
		}
	})
}

// sendCreatedAt answers a send's created_at (it must never change).
func sendCreatedAt(t testing.TB, n *testNode, send string) string {
	t.Helper()
	r := n.do(t, "GET", "/v1/sends/"+send, n.admin, nil)
	var s sendObj
	decode(t, r, http.StatusOK, &s)
	return s.CreatedAt
}

// TestAllocate covers POST /v1/sends/{id}/codes: shapes (JSON, text/plain,
// CSV), the allocation rules and the refusals.
func TestAllocate(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})

	t.Run("OneCodePerRecipientInRequestOrderFIFO", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 6)
		a := n.alloc(t, n.admin, "s-fifo", f.msg, "c@example.com", "a@example.com", "b@example.com")
		if !reflect.DeepEqual(a.codes(), f.codes[:3]) || a.Available != 3 {
			t.Fatalf("allocation %+v, want codes %v and available 3", a, f.codes[:3])
		}
		n.wantCounts(t, n.admin, f.list, 3, 0, 3)
		s := n.getSend(t, n.admin, "s-fifo")
		if want := (sendObj{SendID: "s-fifo", MessageID: f.msg, ListID: f.list, Status: "open", Assigned: 3, OnShortage: "reject", CreatedAt: s.CreatedAt}); s != want {
			t.Fatalf("implicitly opened send %+v, want %+v", s, want)
		}

		// text/plain with ?message_id= opens another send; CRLF and blank lines are fine.
		r := n.postRecipients(t, n.admin, "/v1/sends/s-fifo-text/codes?message_id="+f.msg, []byte("d@example.com\r\ne@example.com\n\n"), "text/plain; charset=utf-8", "")
		a2 := decodeAlloc(t, r, []string{"d@example.com", "e@example.com"})
		if !reflect.DeepEqual(a2.codes(), f.codes[3:5]) || a2.Available != 1 {
			t.Fatalf("text/plain allocation %+v, want %v and available 1", a2, f.codes[3:5])
		}
		// text/plain on an existing send needs no message_id.
		r = n.postRecipients(t, n.admin, "/v1/sends/s-fifo-text/codes", []byte("f@example.com"), "text/plain", "")
		if a3 := decodeAlloc(t, r, []string{"f@example.com"}); a3.Assignments[0].Code != f.codes[5] || a3.Available != 0 {
			t.Fatalf("third allocation %+v", a3)
		}
		n.wantCounts(t, n.admin, f.list, 0, 0, 6)

		// Accept: text/csv answers recipient,code lines, JSON or text/plain in.
		body, _ := json.Marshal(map[string]any{"recipients": []string{"c@example.com", "a@example.com", "b@example.com"}})
		got := parseCSVPairs(t, n.postRecipients(t, n.admin, "/v1/sends/s-fifo/codes", body, "application/json", "text/csv"))
		if !reflect.DeepEqual(got, a.Assignments) {
			t.Fatalf("CSV answer %v, want %v", got, a.Assignments)
		}
		got = parseCSVPairs(t, n.postRecipients(t, n.admin, "/v1/sends/s-fifo-text/codes", []byte("e@example.com\nd@example.com\n"), "text/plain", "text/csv"))
		if want := []pair{{"e@example.com", f.codes[4]}, {"d@example.com", f.codes[3]}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("CSV answer %v, want %v", got, want)
		}
	})

	t.Run("MediaTypesAreCaseInsensitive", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 2)
		r := n.postRecipients(t, n.admin, "/v1/sends/s-media/codes?message_id="+f.msg, []byte("m1\n"), "Text/Plain; charset=UTF-8", "")
		if a := decodeAlloc(t, r, []string{"m1"}); a.Assignments[0].Code != f.codes[0] {
			t.Fatalf("allocation %+v", a)
		}
		r = n.postRecipients(t, n.admin, "/v1/sends/s-media/codes", []byte(`{"recipients":["m1"]}`), "application/json", "Text/CSV")
		if got := parseCSVPairs(t, r); !reflect.DeepEqual(got, []pair{{"m1", f.codes[0]}}) {
			t.Fatalf("CSV answer %v", got)
		}
	})

	t.Run("CSVAnswerQuotesWhatItMust", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		recips := []string{`Smith, J <j@example.com>`, `say "hi"@example.com`, ` spaced `}
		body, _ := json.Marshal(map[string]any{"message_id": f.msg, "recipients": recips})
		got := parseCSVPairs(t, n.postRecipients(t, n.admin, "/v1/sends/s-csv/codes", body, "application/json", "text/csv"))
		want := []pair{{recips[0], f.codes[0]}, {recips[1], f.codes[1]}, {recips[2], f.codes[2]}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("CSV answer %q, want %q", got, want)
		}
	})

	t.Run("ARecipientRepeatedInOneRequestGetsOneCode", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 5)
		a := n.alloc(t, n.admin, "s-rep", f.msg, "r1", "r2", "r1", "r1", "r3")
		c := f.codes
		if want := []string{c[0], c[1], c[0], c[0], c[2]}; !reflect.DeepEqual(a.codes(), want) || a.Available != 2 {
			t.Fatalf("allocation %+v, want %v and available 2", a, want)
		}
		if s := n.getSend(t, n.admin, "s-rep"); s.Assigned != 3 {
			t.Fatalf("send %+v, want 3 assigned", s)
		}
		if got := n.sendAssignments(t, n.admin, "s-rep"); len(got) != 3 {
			t.Fatalf("assignments %v, want 3", got)
		}
		n.wantCounts(t, n.admin, f.list, 2, 0, 3)
	})

	t.Run("SameSendAndRecipientGetTheSameCodeAcrossRetriesAndChunks", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 6)
		c := f.codes
		a1 := n.alloc(t, n.admin, "s-idem", f.msg, "r1", "r2", "r3")
		for i := 0; i < 3; i++ {
			if a := n.alloc(t, n.admin, "s-idem", f.msg, "r1", "r2", "r3"); !reflect.DeepEqual(a, a1) {
				t.Fatalf("retry %d answered %+v, want %+v", i, a, a1)
			}
		}
		a := n.alloc(t, n.admin, "s-idem", "", "r3", "r4", "r1")
		if want := []string{c[2], c[3], c[0]}; !reflect.DeepEqual(a.codes(), want) || a.Available != 2 {
			t.Fatalf("next chunk %+v, want %v and available 2", a, want)
		}
		// Idempotency is per send: another send gives r1 another code.
		if a := n.alloc(t, n.admin, "s-idem-2", f.msg, "r1"); a.Assignments[0].Code != c[4] {
			t.Fatalf("r1 in another send got %s, want %s", a.Assignments[0].Code, c[4])
		}
		if s := n.getSend(t, n.admin, "s-idem"); s.Assigned != 4 {
			t.Fatalf("send %+v, want 4 assigned", s)
		}
		n.wantCounts(t, n.admin, f.list, 1, 0, 5)
	})

	t.Run("WithdrawnCodesAreSkipped", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 6)
		c := f.codes
		n.do(t, "POST", "/v1/lists/"+f.list+"/codes/withdraw", n.admin, c[1]+"\n"+c[3]+"\n")
		a := n.alloc(t, n.admin, "s-wd", f.msg, "w1", "w2", "w3")
		if want := []string{c[0], c[2], c[4]}; !reflect.DeepEqual(a.codes(), want) || a.Available != 1 {
			t.Fatalf("allocation %+v, want %v and available 1", a, want)
		}
		n.do(t, "POST", "/v1/lists/"+f.list+"/codes/withdraw", n.admin, c[5]+"\n")
		wantInsufficient(t, n.do(t, "POST", "/v1/sends/s-wd/codes", n.admin, map[string]any{"recipients": []string{"w4"}}), 1, 0)
		for code, state := range map[string]string{c[0]: "assigned", c[1]: "withdrawn", c[2]: "assigned", c[3]: "withdrawn", c[4]: "assigned", c[5]: "withdrawn"} {
			if got := n.codeState(t, n.admin, f.list, code); got != state {
				t.Fatalf("code %s: %q, want %q", code, got, state)
			}
		}
	})

	t.Run("ASendDrawsFromItsOwnReservationFirst", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 6)
		c := f.codes
		n.openSend(t, n.admin, "s-hold", map[string]any{"message_id": f.msg, "expected_recipients": 2}, http.StatusCreated)
		n.wantCounts(t, n.admin, f.list, 4, 2, 0)
		// Three recipients: two from the hold, one from available; the
		// reservation is a count, so the codes are still the first in FIFO.
		a := n.alloc(t, n.admin, "s-hold", "", "h1", "h2", "h3")
		if !reflect.DeepEqual(a.codes(), c[:3]) || a.Available != 3 {
			t.Fatalf("allocation %+v, want %v and available 3", a, c[:3])
		}
		n.wantCounts(t, n.admin, f.list, 3, 0, 3)

		// A hold taken first protects the send from another one.
		g := n.newFixture(t, n.admin, 5)
		n.openSend(t, n.admin, "s-hold-a", map[string]any{"message_id": g.msg, "expected_recipients": 3}, http.StatusCreated)
		b := n.alloc(t, n.admin, "s-hold-b", g.msg, "x1", "x2")
		if !reflect.DeepEqual(b.codes(), g.codes[:2]) || b.Available != 0 {
			t.Fatalf("other send %+v, want %v and available 0", b, g.codes[:2])
		}
		wantInsufficient(t, n.do(t, "POST", "/v1/sends/s-hold-b/codes", n.admin, map[string]any{"recipients": []string{"x3"}}), 1, 0)
		n.wantCounts(t, n.admin, g.list, 0, 3, 2)
		// Drawing from the hold leaves available as it was.
		if a := n.alloc(t, n.admin, "s-hold-a", "", "y1"); a.Assignments[0].Code != g.codes[2] || a.Available != 0 {
			t.Fatalf("held send %+v, want %s and available 0", a, g.codes[2])
		}
		if s := n.getSend(t, n.admin, "s-hold-a"); s.Reserved != 2 || s.Assigned != 1 {
			t.Fatalf("held send after one: %+v", s)
		}
		n.wantCounts(t, n.admin, g.list, 0, 2, 3)
		wantInsufficient(t, n.do(t, "POST", "/v1/sends/s-hold-a/codes", n.admin, map[string]any{"recipients": []string{"y1", "y2", "y3", "y4"}}), 3, 2)
		n.wantCounts(t, n.admin, g.list, 0, 2, 3)
		if a := n.alloc(t, n.admin, "s-hold-a", "", "y2", "y1", "y3"); !reflect.DeepEqual(a.codes(), []string{g.codes[3], g.codes[2], g.codes[4]}) {
			t.Fatalf("held send %+v", a)
		}
		n.wantCounts(t, n.admin, g.list, 0, 0, 5)
		if s := n.getSend(t, n.admin, "s-hold-a"); s.Reserved != 0 || s.Assigned != 3 {
			t.Fatalf("held send at the end: %+v", s)
		}
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		c := f.codes
		before := n.getListRaw(t, n.admin, f.list)
		wantInsufficient(t, n.do(t, "POST", "/v1/sends/s-aon/codes", n.admin,
			map[string]any{"message_id": f.msg, "recipients": []string{"a", "b", "c", "d"}}), 4, 3)
		wantInsufficient(t, n.postRecipients(t, n.admin, "/v1/sends/s-aon/codes?message_id="+f.msg, []byte("a\nb\nc\nd\n"), "text/plain", ""), 4, 3)
		// The implicit send was not created, nothing changed.
		wantError(t, n.do(t, "GET", "/v1/sends/s-aon", n.admin, nil), http.StatusNotFound, "not_found")
		if after := n.getListRaw(t, n.admin, f.list); after != before {
			t.Fatalf("a refused allocation changed the list:\nbefore %s\nafter  %s", before, after)
		}
		if h := n.history(t, n.admin, "a"); len(h) != 0 {
			t.Fatalf("a refused allocation left history: %+v", h)
		}

		// On an existing send: needed counts only new, distinct recipients.
		n.alloc(t, n.admin, "s-aon", f.msg, "a")
		wantInsufficient(t, n.do(t, "POST", "/v1/sends/s-aon/codes", n.admin,
			map[string]any{"recipients": []string{"a", "b", "c", "b", "d"}}), 3, 2)
		if got := n.sendAssignments(t, n.admin, "s-aon"); len(got) != 1 {
			t.Fatalf("a refused allocation assigned: %v", got)
		}
		n.wantCounts(t, n.admin, f.list, 2, 0, 1)
		a := n.alloc(t, n.admin, "s-aon", "", "a", "b", "b", "c")
		if want := []string{c[0], c[1], c[1], c[2]}; !reflect.DeepEqual(a.codes(), want) || a.Available != 0 {
			t.Fatalf("allocation %+v, want %v", a, want)
		}

		// With a hold: available in the 409 is hold + list available.
		g := n.newFixture(t, n.admin, 4)
		n.openSend(t, n.admin, "s-aon-hold", map[string]any{"message_id": g.msg, "expected_recipients": 2}, http.StatusCreated)
		wantInsufficient(t, n.do(t, "POST", "/v1/sends/s-aon-hold/codes", n.admin,
			map[string]any{"recipients": []string{"1", "2", "3", "4", "5"}}), 5, 4)
		n.wantCounts(t, n.admin, g.list, 2, 2, 0)
		if s := n.getSend(t, n.admin, "s-aon-hold"); s.Reserved != 2 || s.Assigned != 0 {
			t.Fatalf("refused allocation changed the send: %+v", s)
		}
	})

	t.Run("ClosedSend", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 5)
		a := n.alloc(t, n.admin, "s-closed", f.msg, "r1", "r2")
		if r := n.do(t, "POST", "/v1/sends/s-closed/close", n.admin, nil); r.status != http.StatusOK {
			t.Fatalf("close: %s", r)
		}
		// A retry whose recipients all have codes still answers 200.
		if got := n.alloc(t, n.admin, "s-closed", "", "r2", "r1", "r2"); !reflect.DeepEqual(got.codes(), []string{a.codes()[1], a.codes()[0], a.codes()[1]}) || got.Available != 3 {
			t.Fatalf("retry on a closed send %+v", got)
		}
		r := n.postRecipients(t, n.admin, "/v1/sends/s-closed/codes?message_id="+f.msg, []byte("r1\n"), "text/plain", "")
		if got := decodeAlloc(t, r, []string{"r1"}); got.Assignments[0].Code != a.Assignments[0].Code {
			t.Fatalf("text/plain retry on a closed send %+v", got)
		}
		// A new recipient: 409 send_closed, nothing assigned.
		wantError(t, n.do(t, "POST", "/v1/sends/s-closed/codes", n.admin, map[string]any{"recipients": []string{"r1", "r3"}}), http.StatusConflict, "send_closed")
		wantError(t, n.postRecipients(t, n.admin, "/v1/sends/s-closed/codes", []byte("r3\n"), "text/plain", ""), http.StatusConflict, "send_closed")
		if got := n.sendAssignments(t, n.admin, "s-closed"); len(got) != 2 {
			t.Fatalf("assignments after send_closed: %v", got)
		}
		n.wantCounts(t, n.admin, f.list, 3, 0, 2)
	})

	t.Run("MessageErrors", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		n.putMessage(t, n.admin, "m-alloc-nolist", emailMsg("no list"))
		wantError(t, n.do(t, "POST", "/v1/sends/s-me-1/codes", n.admin, map[string]any{"message_id": "m-alloc-nolist", "recipients": []string{"x"}}),
			http.StatusUnprocessableEntity, "no_coupon_list")
		wantError(t, n.postRecipients(t, n.admin, "/v1/sends/s-me-1/codes?message_id=m-alloc-nolist", []byte("x\n"), "text/plain", ""),
			http.StatusUnprocessableEntity, "no_coupon_list")
		wantError(t, n.do(t, "GET", "/v1/sends/s-me-1", n.admin, nil), http.StatusNotFound, "not_found")

		// A new send needs message_id.
		wantError(t, n.do(t, "POST", "/v1/sends/s-me-2/codes", n.admin, map[string]any{"recipients": []string{"x"}}), http.StatusBadRequest, "invalid_request")
		wantError(t, n.do(t, "POST", "/v1/sends/s-me-2/codes", n.admin, map[string]any{"message_id": "", "recipients": []string{"x"}}), http.StatusBadRequest, "invalid_request")
		wantError(t, n.postRecipients(t, n.admin, "/v1/sends/s-me-2/codes", []byte("x\n"), "text/plain", ""), http.StatusBadRequest, "invalid_request")
		wantError(t, n.do(t, "GET", "/v1/sends/s-me-2", n.admin, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "POST", "/v1/sends/s-me-3/codes", n.admin, map[string]any{"message_id": "never-made", "recipients": []string{"x"}}), http.StatusNotFound, "not_found")

		// message_id must match the send's.
		n.putMessage(t, n.admin, "m-alloc-other", emailMsg("other"))
		n.assignList(t, n.admin, "m-alloc-other", f.list)
		n.alloc(t, n.admin, "s-me-4", f.msg, "x")
		wantError(t, n.do(t, "POST", "/v1/sends/s-me-4/codes", n.admin, map[string]any{"message_id": "m-alloc-other", "recipients": []string{"x"}}),
			http.StatusConflict, "send_message_mismatch")
		wantError(t, n.postRecipients(t, n.admin, "/v1/sends/s-me-4/codes?message_id=m-alloc-other", []byte("y\n"), "text/plain", ""),
			http.StatusConflict, "send_message_mismatch")
		n.alloc(t, n.admin, "s-me-4", f.msg, "x")
		n.wantCounts(t, n.admin, f.list, 2, 0, 1)
	})

	t.Run("RecipientRules", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 4)
		post := func(body string) response {
			return n.do(t, "POST", "/v1/sends/s-rules/codes", n.admin, rawJSON(body))
		}
		m := `"message_id":"` + f.msg + `",`
		for _, c := range []struct{ name, body, code string }{
			{"empty recipients", `{` + m + `"recipients":[]}`, "invalid_request"},
			{"missing recipients", `{"message_id":"` + f.msg + `"}`, "invalid_request"},
			{"null recipients", `{` + m + `"recipients":null}`, ""},
			{"empty recipient", `{` + m + `"recipients":["a",""]}`, "invalid_request"},
			{"null recipient", `{` + m + `"recipients":["a",null]}`, ""},
			{"257 bytes", `{` + m + `"recipients":["` + strings.Repeat("r", 257) + `"]}`, "invalid_request"},
			{"257 bytes of UTF-8", `{` + m + `"recipients":["` + strings.Repeat("é", 128) + `r"]}`, "invalid_request"},
			{"C0 control", `{` + m + `"recipients":["a\u0001b"]}`, "invalid_request"},
			{"tab", `{` + m + `"recipients":["a\tb"]}`, "invalid_request"},
			{"new line", `{` + m + `"recipients":["a\nb"]}`, "invalid_request"},
			{"DEL", `{` + m + `"recipients":["a\u007fb"]}`, "invalid_request"},
			{"C1 control", `{` + m + `"recipients":["a\u0085b"]}`, "invalid_request"},
			{"U+2028", `{` + m + `"recipients":["a\u2028b"]}`, "invalid_request"},
			{"U+2029", `{` + m + `"recipients":["a\u2029b"]}`, "invalid_request"},
			{"recipient not a string", `{` + m + `"recipients":[5]}`, ""},
			{"unknown field", `{` + m + `"recipients":["a"],"policy":"reject"}`, "invalid_json"},
			{"recipients not a list", `{` + m + `"recipients":"a"}`, "invalid_json"},
			{"bad JSON", `{` + m + `"recipients":["a"`, "invalid_json"},
			{"empty body", ``, "invalid_json"},
			{"trailing data", `{` + m + `"recipients":["a"]} {}`, "invalid_json"},
			{"array", `["a"]`, "invalid_json"},
		} {
			t.Run(c.name, func(t *testing.T) {
				if c.code == "" { // invalid_json or invalid_request: both say it
					wantStatus(t, post(c.body), http.StatusBadRequest)
					return
				}
				wantError(t, post(c.body), http.StatusBadRequest, c.code)
			})
		}
		text := func(body []byte) response {
			return n.postRecipients(t, n.admin, "/v1/sends/s-rules/codes?message_id="+f.msg, body, "text/plain", "")
		}
		for name, body := range map[string]string{
			"empty body": "", "only blank lines": "\n\r\n\n", "C0 control": "a\x01b\n", "DEL": "a\x7fb\n",
			"C1 control": "a\u0085b\n", "U+2028": "a\u2028b\n", "257 bytes": strings.Repeat("r", 257) + "\n",
			"invalid UTF-8": "a\xffb\n", "tab": "a\tb\n",
		} {
			t.Run("text/plain "+name, func(t *testing.T) {
				wantError(t, text([]byte(body)), http.StatusBadRequest, "invalid_request")
			})
		}
		wantError(t, n.do(t, "GET", "/v1/sends/s-rules", n.admin, nil), http.StatusNotFound, "not_found")
		n.wantCounts(t, n.admin, f.list, 4, 0, 0)

		// 256 bytes (ASCII or UTF-8) is fine and comes back intact; so are
		// spaces, quotes, "/" and non-ASCII.
		recips := []string{strings.Repeat("r", 256), strings.Repeat("é", 128), ` a "b" / c `, "Zoë <zoe@example.com>"}
		a := n.alloc(t, n.admin, "s-rules", f.msg, recips...)
		if !reflect.DeepEqual(a.codes(), f.codes) {
			t.Fatalf("allocation %+v", a)
		}
		got := n.sendAssignments(t, n.admin, "s-rules")
		sort.Slice(got, func(i, j int) bool { return got[i].Code < got[j].Code })
		if !reflect.DeepEqual(got, a.Assignments) {
			t.Fatalf("stored %q, want %q", got, a.Assignments)
		}
	})

	t.Run("AtMost100000RecipientsPerRequest", func(t *testing.T) {
		// 100,000 is fine (repeats keep the codes needed small: the count
		// limit is on the request, not on distinct recipients).
		f := n.newFixture(t, n.admin, 1000)
		recips := make([]string, 100_000)
		for i := range recips {
			recips[i] = fmt.Sprintf("r%03d", i%1000)
		}
		body, _ := json.Marshal(map[string]any{"message_id": f.msg, "recipients": recips})
		r := n.postRecipients(t, n.admin, "/v1/sends/s-limit/codes", body, "application/json", "")
		a := decodeAlloc(t, r, recips)
		for i, p := range a.Assignments {
			if p.Code != f.codes[i%1000] {
				t.Fatalf("assignment %d: %+v, want %s", i, p, f.codes[i%1000])
			}
		}
		if a.Available != 0 {
			t.Fatalf("available %d, want 0", a.Available)
		}
		// The same 100,000 as text/plain: the same answer.
		textBody := []byte(strings.Join(recips, "\n") + "\n")
		if r2 := n.postRecipients(t, n.admin, "/v1/sends/s-limit/codes", textBody, "text/plain", ""); r2.status != http.StatusOK || !bytes.Equal(r2.body, r.body) {
			t.Fatalf("text/plain answered differently: %s", r2)
		}

		// 100,001 is 413, JSON or text, and assigns nothing.
		g := n.newFixture(t, n.admin, 1)
		over := append(recips, "one-more")
		body, _ = json.Marshal(map[string]any{"message_id": g.msg, "recipients": over})
		wantStatus(t, n.postRecipients(t, n.admin, "/v1/sends/s-limit-2/codes", body, "application/json", ""), http.StatusRequestEntityTooLarge)
		textBody = []byte(strings.Join(over, "\n") + "\n")
		wantStatus(t, n.postRecipients(t, n.admin, "/v1/sends/s-limit-2/codes?message_id="+g.msg, textBody, "text/plain", ""), http.StatusRequestEntityTooLarge)
		wantError(t, n.do(t, "GET", "/v1/sends/s-limit-2", n.admin, nil), http.StatusNotFound, "not_found")
		n.wantCounts(t, n.admin, g.list, 1, 0, 0)
	})
}

// bigSend prepares a request of 60,000 recipients of 40 bytes (≈ 2.5 MB,
// more than one Raft entry) and a fixture of codes-1 codes, so the first
// try is one code short.
func bigSend(t *testing.T, n *testNode) (f fixture, recips []string, body []byte) {
	t.Helper()
	const size = 60_000
	f = n.newFixture(t, n.admin, size-1)
	recips = make([]string, size)
	for i := range recips {
		recips[i] = fmt.Sprintf("recipient-%06d@bigsend.mailexample.org", i)
		if len(recips[i]) != 40 {
			t.Fatalf("recipient of %d bytes", len(recips[i]))
		}
	}
	body, _ = json.Marshal(map[string]any{"message_id": f.msg, "recipients": recips})
	if len(body) < 2<<20 {
		t.Fatalf("body of %d bytes is not bigger than one Raft entry", len(body))
	}
	return f, recips, body
}

// TestAllocationBiggerThanOneRaftEntry: refused whole when the list is one
// code short (no send created, nothing assigned), then served whole in
// request order (FIFO) once the list has enough, then the same on a retry.
func TestAllocationBiggerThanOneRaftEntry(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f, recips, body := bigSend(t, n)
	size := len(recips)
	path := "/v1/sends/s-big/codes"

	// One code short: 409, nothing assigned, the send not created.
	before := n.getListRaw(t, n.admin, f.list)
	wantInsufficient(t, n.postRecipients(t, n.admin, path, body, "application/json", ""), uint64(size), uint64(size-1))
	wantError(t, n.do(t, "GET", "/v1/sends/s-big", n.admin, nil), http.StatusNotFound, "not_found")
	if after := n.getListRaw(t, n.admin, f.list); after != before {
		t.Fatalf("a refused allocation changed the list:\nbefore %s\nafter  %s", before, after)
	}
	for _, r := range []string{recips[0], recips[size/2], recips[size-1]} {
		if h := n.history(t, n.admin, r); len(h) != 0 {
			t.Fatalf("a refused allocation left history for %s: %+v", r, h)
		}
	}
	// The same as text/plain.
	wantInsufficient(t, n.postRecipients(t, n.admin, path+"?message_id="+f.msg, []byte(strings.Join(recips, "\n")), "text/plain", ""), uint64(size), uint64(size-1))
	wantError(t, n.do(t, "GET", "/v1/sends/s-big", n.admin, nil), http.StatusNotFound, "not_found")

	// One more code: every recipient gets the code of its rank, FIFO (the
	// answer as CSV: encoding/json is slow on 60,000 pairs under -race).
	n.topUp(t, n.admin, f.list, "LAST-CODE\n")
	codes := append(append([]string{}, f.codes...), "LAST-CODE")
	first := n.postRecipients(t, n.admin, path, body, "application/json", "text/csv")
	got := parseCSVPairs(t, first)
	if len(got) != size {
		t.Fatalf("%d lines for %d recipients", len(got), size)
	}
	for i, p := range got {
		if p.Recipient != recips[i] || p.Code != codes[i] {
			t.Fatalf("assignment %d: %+v, want %s %s", i, p, recips[i], codes[i])
		}
	}
	n.wantCounts(t, n.admin, f.list, 0, 0, uint64(size))
	if s := n.getSend(t, n.admin, "s-big"); s.Assigned != uint64(size) || s.Reserved != 0 || s.Status != "open" {
		t.Fatalf("send %+v", s)
	}
	stored := parseCSVPairs(t, n.sendAccept(t, req{method: "GET", path: "/v1/sends/s-big/assignments", token: n.admin}, "text/csv"))
	sort.Slice(stored, func(i, j int) bool { return stored[i].Recipient < stored[j].Recipient })
	if !reflect.DeepEqual(stored, got) {
		t.Fatalf("%d assignments stored differ from the %d answered", len(stored), len(got))
	}
	if h := n.history(t, n.admin, recips[size-1]); len(h) != 1 || h[0].Code != "LAST-CODE" {
		t.Fatalf("history of the last recipient: %+v", h)
	}

	// A retry answers the same bytes, in reasonable time (a retry decoding
	// whole stored batches per recipient once took minutes), and changes
	// nothing.
	start := time.Now()
	r2 := n.postRecipients(t, n.admin, path, body, "application/json", "text/csv")
	if took := time.Since(start); took > 45*time.Second {
		t.Fatalf("the retry took %v", took)
	}
	if r2.status != http.StatusOK || !bytes.Equal(r2.body, first.body) {
		t.Fatalf("retry answered differently: %s", r2)
	}
	n.wantCounts(t, n.admin, f.list, 0, 0, uint64(size))
	if s := n.getSend(t, n.admin, "s-big"); s.Assigned != uint64(size) || s.Reserved != 0 {
		t.Fatalf("send after the retry %+v", s)
	}
}

// TestCloseSend covers POST /v1/sends/{id}/close.
func TestCloseSend(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 10)
	n.openSend(t, n.admin, "s-close", map[string]any{"message_id": f.msg, "expected_recipients": 5}, http.StatusCreated)
	n.alloc(t, n.admin, "s-close", "", "c1", "c2")
	n.wantCounts(t, n.admin, f.list, 5, 3, 2)

	r := n.do(t, "POST", "/v1/sends/s-close/close", n.admin, nil)
	var s sendObj
	decode(t, r, http.StatusOK, &s)
	fieldsOf(t, r.body, sendFields...)
	created := sendCreatedAt(t, n, "s-close")
	want := sendObj{SendID: "s-close", MessageID: f.msg, ListID: f.list, Status: "closed", Reserved: 0, Assigned: 2, OnShortage: "reject", CreatedAt: created}
	if s != want {
		t.Fatalf("close answered %+v, want %+v", s, want)
	}
	// The unused hold went back to available.
	n.wantCounts(t, n.admin, f.list, 8, 0, 2)
	if got := n.getSend(t, n.admin, "s-close"); got != want {
		t.Fatalf("GET after close %+v, want %+v", got, want)
	}
	// Twice is fine and changes nothing.
	r = n.do(t, "POST", "/v1/sends/s-close/close", n.admin, nil)
	decode(t, r, http.StatusOK, &s)
	if s != want {
		t.Fatalf("second close answered %+v, want %+v", s, want)
	}
	n.wantCounts(t, n.admin, f.list, 8, 0, 2)
	// A send closed without a hold; unknown sends.
	n.openSend(t, n.admin, "s-close-2", map[string]any{"message_id": f.msg}, http.StatusCreated)
	decode(t, n.do(t, "POST", "/v1/sends/s-close-2/close", n.admin, nil), http.StatusOK, &s)
	if s.Status != "closed" || s.Reserved != 0 || s.Assigned != 0 {
		t.Fatalf("close of an empty send %+v", s)
	}
	wantError(t, n.do(t, "POST", "/v1/sends/never-made/close", n.admin, nil), http.StatusNotFound, "not_found")
	n.createTenant(t, "other")
	_, adminB := n.createToken(t, "other", "admin")
	wantError(t, n.do(t, "POST", "/v1/sends/s-close/close", adminB, nil), http.StatusNotFound, "not_found")
}

// TestAssignmentsHistoryAndCodeLookup covers GET
// /v1/sends/{id}/assignments (JSON and CSV), GET
// /v1/recipients/{recipient}/assignments and GET /v1/lists/{id}/codes/{code}
// of an assigned code.
func TestAssignmentsHistoryAndCodeLookup(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "other")
	_, adminB := n.createToken(t, "other", "admin")
	_, sender := n.createToken(t, "default", "sender")

	f := n.newFixture(t, n.admin, 10)
	g := n.newFixture(t, n.admin, 10)
	odd := []string{"a/b.c@example.com", ".", "..", "x%2Fy", "Zoë, \"Z\" <z@example.com>"}
	a1 := n.alloc(t, n.admin, "s-hist-1", f.msg, append([]string{"plain@example.com"}, odd[:3]...)...)
	a2 := n.alloc(t, sender, "s-hist-1", "", odd[3:]...)
	a3 := n.alloc(t, n.admin, "s-hist-2", g.msg, "plain@example.com", "a/b.c@example.com")
	all1 := append(append([]pair{}, a1.Assignments...), a2.Assignments...)

	t.Run("SendAssignmentsJSONAndCSV", func(t *testing.T) {
		for _, tok := range []string{n.admin, sender} {
			got := n.sendAssignments(t, tok, "s-hist-1")
			if !reflect.DeepEqual(got, all1) {
				t.Fatalf("assignments %q, want %q", got, all1)
			}
		}
		r := n.sendAccept(t, req{method: "GET", path: "/v1/sends/s-hist-1/assignments", token: n.admin}, "text/csv")
		if got := parseCSVPairs(t, r); !reflect.DeepEqual(got, all1) {
			t.Fatalf("CSV assignments %q, want %q", got, all1)
		}
		if got := n.sendAssignments(t, n.admin, "s-hist-2"); !reflect.DeepEqual(got, a3.Assignments) {
			t.Fatalf("assignments of s-hist-2 %q, want %q", got, a3.Assignments)
		}
		// An open send without assignments has an empty list.
		n.openSend(t, n.admin, "s-hist-empty", map[string]any{"message_id": f.msg}, http.StatusCreated)
		r = n.do(t, "GET", "/v1/sends/s-hist-empty/assignments", n.admin, nil)
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"assignments":[]}` {
			t.Fatalf("empty send: %s", r)
		}
		r = n.sendAccept(t, req{method: "GET", path: "/v1/sends/s-hist-empty/assignments", token: n.admin}, "text/csv")
		if got := parseCSVPairs(t, r); len(got) != 0 {
			t.Fatalf("empty send as CSV: %q", got)
		}
		wantError(t, n.do(t, "GET", "/v1/sends/never-made/assignments", n.admin, nil), http.StatusNotFound, "not_found")
		wantError(t, n.do(t, "GET", "/v1/sends/s-hist-1/assignments", adminB, nil), http.StatusNotFound, "not_found")
	})

	t.Run("RecipientHistoryIsPathEscapedAndPerTenant", func(t *testing.T) {
		codeOf := func(ps []pair, r string) string {
			for _, p := range ps {
				if p.Recipient == r {
					return p.Code
				}
			}
			t.Fatalf("no %q in %v", r, ps)
			return ""
		}
		// Tenant B gives the same recipient a code in its own send.
		fb := n.newFixture(t, adminB, 2)
		n.alloc(t, adminB, "s-hist-1", fb.msg, "a/b.c@example.com")

		h := n.history(t, n.admin, "a/b.c@example.com") // sent as a%2Fb%2Ec%40example%2Ecom
		sort.Slice(h, func(i, j int) bool { return h[i].SendID < h[j].SendID })
		want := []historyItem{
			{Code: codeOf(a1.Assignments, "a/b.c@example.com"), ListID: f.list, MessageID: f.msg, SendID: "s-hist-1"},
			{Code: codeOf(a3.Assignments, "a/b.c@example.com"), ListID: g.list, MessageID: g.msg, SendID: "s-hist-2"},
		}
		for i := range h {
			h[i].AssignedAt = ""
		}
		if !reflect.DeepEqual(h, want) {
			t.Fatalf("history %+v, want %+v", h, want)
		}
		for _, r := range []string{".", "..", "x%2Fy", "Zoë, \"Z\" <z@example.com>"} {
			all := append(append([]pair{}, all1...), a3.Assignments...)
			h := n.history(t, n.admin, r)
			if len(h) != 1 || h[0].Code != codeOf(all, r) || h[0].SendID != "s-hist-1" {
				t.Fatalf("history of %q: %+v", r, h)
			}
		}
		// "." and ".." sent as %2E and %2E%2E are recipients, not dot segments.
		for _, p := range []string{"%2E", "%2E%2E"} {
			r := n.do(t, "GET", "/v1/recipients/"+p+"/assignments", n.admin, nil)
			if r.status != http.StatusOK || !strings.Contains(string(r.body), `"send_id":"s-hist-1"`) {
				t.Fatalf("GET /v1/recipients/%s/assignments: %s", p, r)
			}
		}
		// B sees only its own.
		hb := n.history(t, adminB, "a/b.c@example.com")
		if len(hb) != 1 || hb[0].ListID != fb.list || hb[0].MessageID != fb.msg || hb[0].Code != fb.codes[0] {
			t.Fatalf("B's history %+v", hb)
		}
		if hb := n.history(t, adminB, "plain@example.com"); len(hb) != 0 {
			t.Fatalf("B sees A's history: %+v", hb)
		}
		// Unknown recipient: an empty list.
		r := n.do(t, "GET", "/v1/recipients/nobody%40example.com/assignments", n.admin, nil)
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"assignments":[]}` {
			t.Fatalf("unknown recipient: %s", r)
		}
	})

	t.Run("CodeLookupOfAnAssignedCode", func(t *testing.T) {
		p := a1.Assignments[1] // a/b.c@example.com
		r := n.do(t, "GET", "/v1/lists/"+f.list+"/codes/"+p.Code, n.admin, nil)
		var out struct {
			Code       string `json:"code"`
			State      string `json:"state"`
			Assignment struct {
				Recipient  string `json:"recipient"`
				SendID     string `json:"send_id"`
				MessageID  string `json:"message_id"`
				AssignedAt string `json:"assigned_at"`
			} `json:"assignment"`
		}
		decode(t, r, http.StatusOK, &out)
		m := fieldsOf(t, r.body, "code", "state", "assignment")
		fieldsOf(t, m["assignment"], "recipient", "send_id", "message_id", "assigned_at")
		if out.Code != p.Code || out.State != "assigned" || out.Assignment.Recipient != p.Recipient ||
			out.Assignment.SendID != "s-hist-1" || out.Assignment.MessageID != f.msg {
			t.Fatalf("lookup of %s: %s", p.Code, r)
		}
		checkTime(t, "assigned_at", out.Assignment.AssignedAt)
		h := n.history(t, n.admin, p.Recipient)
		sort.Slice(h, func(i, j int) bool { return h[i].SendID < h[j].SendID })
		if h[0].AssignedAt != out.Assignment.AssignedAt {
			t.Fatalf("assigned_at %s in the lookup, %s in the history", out.Assignment.AssignedAt, h[0].AssignedAt)
		}
		// A code of the second request names the sender's allocation.
		q := a2.Assignments[0]
		r = n.do(t, "GET", "/v1/lists/"+f.list+"/codes/"+q.Code, n.admin, nil)
		decode(t, r, http.StatusOK, &out)
		if out.State != "assigned" || out.Assignment.Recipient != q.Recipient || out.Assignment.SendID != "s-hist-1" {
			t.Fatalf("lookup of %s: %s", q.Code, r)
		}
		// An available code has no assignment.
		r = n.do(t, "GET", "/v1/lists/"+f.list+"/codes/"+f.codes[9], n.admin, nil)
		fieldsOf(t, r.body, "code", "state")
		if !strings.Contains(string(r.body), `"state":"available"`) {
			t.Fatalf("available code: %s", r)
		}
	})
}

// TestBigAllocationStaysAllOrNothingBesideConcurrentAllocations runs a
// request of 40,000 recipients of 256 bytes (≈ 10 MB, about ten Raft
// entries) on a list with exactly enough codes for it while, as soon as the
// list shows the request's hold, small requests of new recipients run back
// to back on the same send. Whatever the order, the big request is all or
// nothing: 200 with every recipient served, or 409 with none of them
// served, and no hold left behind.
func TestBigAllocationStaysAllOrNothingBesideConcurrentAllocations(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	const size = 40_000
	f := n.newFixture(t, n.admin, size)
	n.openSend(t, n.admin, "s-race", map[string]any{"message_id": f.msg}, http.StatusCreated)
	pad := strings.Repeat("p", 249)
	recips := make([]string, size)
	for i := range recips {
		recips[i] = fmt.Sprintf("%s-%06d", pad, i) // 256 bytes
	}
	body := []byte(strings.Join(recips, "\n"))

	var done atomic.Bool
	var smallOK atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() { // wait for the big request's hold
			r := n.doRaw(req{method: "GET", path: "/v1/lists/" + f.list, token: n.admin})
			var l list
			if json.Unmarshal(r.body, &l) == nil && l.Reserved > 0 {
				break
			}
		}
		for i := 0; !done.Load(); i++ {
			r := n.doRaw(req{method: "POST", path: "/v1/sends/s-race/codes", token: n.admin,
				body: strings.NewReader(fmt.Sprintf("small-%d@example.com", i)), ctype: "text/plain"})
			if r.status == http.StatusOK {
				smallOK.Add(1)
			}
		}
	}()
	big := n.send(t, req{method: "POST", path: "/v1/sends/s-race/codes", token: n.admin, body: bytes.NewReader(body), ctype: "text/plain"})
	done.Store(true)
	wg.Wait()

	s := n.getSend(t, n.admin, "s-race")
	l := n.getList(t, n.admin, f.list)
	ofBig := int64(s.Assigned) - smallOK.Load()
	t.Logf("big request %d; %d small ones served; send assigned %d reserved %d", big.status, smallOK.Load(), s.Assigned, s.Reserved)
	switch big.status {
	case http.StatusOK:
		if ofBig != size {
			t.Fatalf("the big request answered 200 but %d of its %d recipients have codes", ofBig, size)
		}
	case http.StatusConflict:
		wantError(t, big, http.StatusConflict, "insufficient_codes")
		if ofBig != 0 {
			t.Fatalf("the big request answered %s but %d of its recipients got codes", big, ofBig)
		}
	default:
		t.Fatalf("big request: %s", big)
	}
	if s.Reserved != 0 || l.Reserved != 0 {
		t.Fatalf("a hold is left behind: send reserved %d, list reserved %d", s.Reserved, l.Reserved)
	}
}
