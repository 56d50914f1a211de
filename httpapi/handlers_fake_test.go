package httpapi_test

// Handler tests against the fakes of fakes_test.go, one or more per route
// family: the wire contract seen by a client (status, error code, JSON,
// docs/openapi.yaml) and what the handler handed to the Writer. They need
// no Raft, no Pebble and no network: go test -run Fake ./httpapi/

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/httpapi/codecsv"
	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// keyedUpload is the upload id an Idempotency-Key names: the same key of
// the same tenant must name the same upload, or a retry imports again.
func keyedUpload(tenant, key string) raftfsm.UploadID {
	sum := sha256.Sum256([]byte("import\x00" + tenant + "\x00" + key))
	var id raftfsm.UploadID
	copy(id[:], sum[:])
	return id
}

// stampedNow fails unless at (unix nanoseconds) lies between before and now.
func stampedNow(t *testing.T, what string, at int64, before time.Time) {
	t.Helper()
	if at < before.UnixNano() || at > time.Now().UnixNano() {
		t.Fatalf("%s stamped %v, want the time of the request", what, time.Unix(0, at))
	}
}

func TestFakeLists(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		n := newFakeNode(t)
		before := time.Now()
		r := n.json("POST", "/v1/lists", n.admin, `{"name":"x"}`)
		wantStatus(t, r, http.StatusCreated)
		l := checkListShape(t, r.body)
		c := n.takeWrite("Propose").arg.(*raftfsm.CreateList)
		if c.Tenant != "acme" || c.Name != "x" || !c.Dedupe || c.Threshold != 0 {
			t.Fatalf("CreateList %+v, want tenant acme, name x, dedupe on by default", c)
		}
		if l.ID != fmt.Sprintf("%016x", c.ID) || l.Name != "x" || !l.Dedupe {
			t.Fatalf("answered %+v for the command %+v", l, c)
		}
		stampedNow(t, "CreateList", c.At, before)

		r = n.json("POST", "/v1/lists", n.admin, `{"name":"y","dedupe":false,"low_stock_threshold":5}`)
		l = checkListShape(t, r.body)
		c = n.takeWrite("Propose").arg.(*raftfsm.CreateList)
		if c.Dedupe || c.Threshold != 5 || l.Dedupe || l.LowStockThreshold != 5 || !l.LowStock {
			t.Fatalf("CreateList %+v answered %+v, want dedupe off and threshold 5 (low stock: empty)", c, l)
		}
	})

	t.Run("create refused before any write", func(t *testing.T) {
		n := newFakeNode(t)
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":""}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x","colour":"red"}`), http.StatusBadRequest, "invalid_json")
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("POST", "/v1/lists", n.sender, `{"name":"x"}`), http.StatusForbidden, "forbidden")
		n.noWrites()
	})

	t.Run("top-up", func(t *testing.T) {
		n := newFakeNode(t)
		id := n.addList("acme", 0x1234, 10)
		body := "A1\nA2\r\nA3\n"
		r := n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, ctype: "text/csv",
			body: body, headers: []string{"Idempotency-Key: k1"}})
		var res importResult
		decode(t, r, http.StatusOK, &res)
		fieldsOf(t, r.body, "imported", "duplicates", "size", "in_other_lists")
		if res != (importResult{Imported: 3, Size: 13}) {
			t.Fatalf("import answered %+v, want 3 imported, size 13", res)
		}
		c := n.takeWrite("Import")
		imp := c.arg.(propose.Import)
		if imp.Tenant != "acme" || imp.List != 0x1234 || imp.Create != nil || !imp.Keyed ||
			imp.Upload != keyedUpload("acme", "k1") || imp.BodyLen != len(body) {
			t.Fatalf("Import %+v, want a keyed top-up of acme's list 1234 with the body's length %d", imp, len(body))
		}
		if !reflect.DeepEqual(c.codes, []string{"A1", "A2", "A3"}) {
			t.Fatalf("the body gave codes %q", c.codes)
		}
		if c.digest == ([sha256.Size]byte{}) {
			t.Fatal("a keyed upload without a request digest")
		}

		// The same request and key digest the same; another body does not.
		again := func(body string) fakeCall {
			n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, ctype: "text/csv",
				body: body, headers: []string{"Idempotency-Key: k1"}})
			return n.takeWrite("Import")
		}
		if d := again(body).digest; d != c.digest {
			t.Fatal("a retry of the same request has another digest")
		}
		if d := again("A1\nA2\nA4\n").digest; d == c.digest {
			t.Fatal("another body has the same digest")
		}

		// Without a key each request is an upload of its own; the header
		// line is not a code.
		var uploads []raftfsm.UploadID
		for range 2 {
			r := n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes?header=true", token: n.admin,
				ctype: "text/csv", body: "code\nB1\n"})
			wantStatus(t, r, http.StatusOK)
			c := n.takeWrite("Import")
			imp := c.arg.(propose.Import)
			if imp.Keyed || !reflect.DeepEqual(c.codes, []string{"B1"}) {
				t.Fatalf("Import %+v with codes %q, want an unkeyed upload of B1", imp, c.codes)
			}
			uploads = append(uploads, imp.Upload)
		}
		if uploads[0] == uploads[1] {
			t.Fatal("two requests without Idempotency-Key named the same upload")
		}
	})

	t.Run("create and import", func(t *testing.T) {
		n := newFakeNode(t)
		r := n.do(fakeReq{method: "POST", path: "/v1/lists?name=new&dedupe=false", token: n.admin, ctype: "text/csv", body: "N1\nN2\n"})
		var out struct {
			List   json.RawMessage `json:"list"`
			Import importResult    `json:"import"`
		}
		decode(t, r, http.StatusCreated, &out)
		l := checkListShape(t, out.List)
		c := n.takeWrite("Import")
		imp := c.arg.(propose.Import)
		if imp.Create == nil || imp.Create.Tenant != "acme" || imp.Create.Name != "new" || imp.Create.Dedupe ||
			imp.List != imp.Create.ID || l.ID != fmt.Sprintf("%016x", imp.List) {
			t.Fatalf("Import %+v (create %+v) for the answer %+v, want a new list named new without dedupe", imp, imp.Create, l)
		}
		if out.Import != (importResult{Imported: 2, Size: 2}) || l.Available != 2 {
			t.Fatalf("answered %s", r.body)
		}
	})

	t.Run("import errors", func(t *testing.T) {
		n := newFakeNode(t)
		id := n.addList("acme", 0x1234, 0)
		topUp := func(body string) response {
			return n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes", token: n.admin, ctype: "text/csv", body: body})
		}
		// The body is read by the Writer; its CSV error comes back as a
		// BodyError and is the client's 400 with line and reason.
		e := wantError(t, topUp("L4\nL5,x\n"), http.StatusBadRequest, "invalid_csv")
		if e["line"] != 2.0 || e["reason"] == "" {
			t.Fatalf("invalid_csv without line 2 and a reason: %v", e)
		}
		n.takeWrite("Import")

		n.w.onImport = func(propose.Import, [][]byte) (raftfsm.ImportResult, error) {
			return raftfsm.ImportResult{}, &propose.BodyError{Err: &codecsv.Error{Line: 7, Reason: "a reason"}}
		}
		e = wantError(t, topUp("C1\n"), http.StatusBadRequest, "invalid_csv")
		if e["line"] != 7.0 || e["reason"] != "a reason" {
			t.Fatalf("invalid_csv details %v, want line 7 and the reader's reason", e)
		}
		for _, c := range []struct {
			err    error
			status int
			code   string
		}{
			{propose.ErrUploadInProgress, http.StatusConflict, "upload_in_progress"},
			{raftfsm.ErrUploadReused, http.StatusConflict, "idempotency_key_reused"},
			{raftfsm.ErrListFull, http.StatusConflict, "list_full"},
			{raftfsm.ErrUploadListDeleted, http.StatusNotFound, "not_found"},
			{raftfsm.ErrUploadIncomplete, http.StatusServiceUnavailable, "unavailable"},
			{propose.ErrTimeout, http.StatusServiceUnavailable, "unavailable"},
		} {
			n.w.onImport = func(propose.Import, [][]byte) (raftfsm.ImportResult, error) { return raftfsm.ImportResult{}, c.err }
			wantError(t, topUp("C1\n"), c.status, c.code)
		}
	})

	t.Run("another tenant's list is not found", func(t *testing.T) {
		n := newFakeNode(t)
		id := n.addList("acme", 0x1234, 3)
		for _, q := range []fakeReq{
			{method: "GET", path: "/v1/lists/" + id},
			{method: "PATCH", path: "/v1/lists/" + id, ctype: "application/json", body: `{"name":"mine"}`},
			{method: "DELETE", path: "/v1/lists/" + id},
			{method: "POST", path: "/v1/lists/" + id + "/codes", ctype: "text/csv", body: "X1\n"},
			{method: "POST", path: "/v1/lists/" + id + "/codes/withdraw", ctype: "text/csv", body: "X1\n"},
		} {
			q.token = n.otherAdmin
			wantError(t, n.do(q), http.StatusNotFound, "not_found")
		}
		var out struct {
			Lists []json.RawMessage `json:"lists"`
		}
		decode(t, n.do(fakeReq{method: "GET", path: "/v1/lists", token: n.otherAdmin}), http.StatusOK, &out)
		if len(out.Lists) != 0 {
			t.Fatalf("tenant other sees %d lists", len(out.Lists))
		}
		n.noWrites()
	})

	t.Run("update, withdraw, delete", func(t *testing.T) {
		n := newFakeNode(t)
		id := n.addList("acme", 0x1234, 3)
		l := checkListShape(t, n.json("PATCH", "/v1/lists/"+id, n.admin, `{"name":"renamed"}`).body)
		u := n.takeWrite("Propose").arg.(*raftfsm.UpdateList)
		if *u != (raftfsm.UpdateList{Tenant: "acme", ID: 0x1234, SetName: true, Name: "renamed"}) || l.Name != "renamed" {
			t.Fatalf("UpdateList %+v answered %+v, want only the name set", u, l)
		}

		n.w.onPropose = func(raftfsm.Command) (any, error) {
			return raftfsm.WithdrawResult{Withdrawn: 1, NotFound: 1}, nil
		}
		r := n.do(fakeReq{method: "POST", path: "/v1/lists/" + id + "/codes/withdraw", token: n.admin, ctype: "text/csv", body: "W1\nW2\n"})
		var wr map[string]uint64
		decode(t, r, http.StatusOK, &wr)
		if !reflect.DeepEqual(wr, map[string]uint64{"withdrawn": 1, "not_found": 1, "already_used": 0}) {
			t.Fatalf("withdraw answered %s", r.body)
		}
		w := n.takeWrite("Propose").arg.(*raftfsm.Withdraw)
		var codes []string
		w.Codes.Each(func(c []byte) { codes = append(codes, string(c)) })
		if w.Tenant != "acme" || w.List != 0x1234 || !reflect.DeepEqual(codes, []string{"W1", "W2"}) {
			t.Fatalf("Withdraw of %s from %x (%s), want W1, W2 from acme's 1234", codes, w.List, w.Tenant)
		}

		n.w.onPropose = func(raftfsm.Command) (any, error) { return nil, raftfsm.ErrListInUse }
		wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/lists/" + id, token: n.admin}), http.StatusConflict, "list_in_use")
		n.takeWrite("Propose")
		n.w.onPropose = nil
		r = n.do(fakeReq{method: "DELETE", path: "/v1/lists/" + id, token: n.admin})
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("delete answered %s, want 204 without a body", r)
		}
		if d := n.takeWrite("Propose").arg.(*raftfsm.DeleteList); *d != (raftfsm.DeleteList{Tenant: "acme", ID: 0x1234}) {
			t.Fatalf("DeleteList %+v", d)
		}
	})

	t.Run("strong read passes a barrier", func(t *testing.T) {
		n := newFakeNode(t)
		n.addList("acme", 1, 0)
		wantStatus(t, n.do(fakeReq{method: "GET", path: "/v1/lists", token: n.admin}), http.StatusOK)
		if n.w.barriers != 0 {
			t.Fatal("a local read waited for a Raft barrier")
		}
		wantStatus(t, n.do(fakeReq{method: "GET", path: "/v1/lists?consistency=strong", token: n.admin}), http.StatusOK)
		if n.w.barriers != 1 {
			t.Fatalf("a strong read on the leader passed %d barriers, want 1", n.w.barriers)
		}
		n.noWrites()
	})
}

// sendFixture is acme's list 0x77 with 5 codes and message m1 on it.
func sendFixture(t *testing.T) (*fakeNode, string) {
	n := newFakeNode(t)
	list := n.addList("acme", 0x77, 5)
	n.st.putMessage(raftfsm.Message{Tenant: "acme", ID: "m1", Name: "M1", CampaignType: "standard", Channel: "email",
		Status: "draft", List: 0x77})
	return n, list
}

func TestFakeSends(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		n, list := sendFixture(t)
		before := time.Now()
		r := n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1","expected_recipients":10}`)
		var o openResult
		decode(t, r, http.StatusCreated, &o)
		fieldsOf(t, r.body, "send_id", "list_id", "reserved", "on_shortage")
		if o != (openResult{SendID: "s1", ListID: list, OnShortage: "reject"}) {
			t.Fatalf("open answered %s", r.body)
		}
		c := n.takeWrite("OpenSend").arg.(*raftfsm.OpenSend)
		if c.Tenant != "acme" || c.Send != "s1" || c.Message != "m1" || !c.HasExpected || c.Expected != 10 {
			t.Fatalf("OpenSend %+v", c)
		}
		stampedNow(t, "OpenSend", c.At, before)

		// Open again: the send exists, 200; no expected_recipients, no hold asked.
		r = n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1"}`)
		decode(t, r, http.StatusOK, &o)
		if c := n.takeWrite("OpenSend").arg.(*raftfsm.OpenSend); c.HasExpected {
			t.Fatalf("OpenSend %+v asks a hold nobody asked for", c)
		}

		n.w.onOpenSend = func(*raftfsm.OpenSend) (raftfsm.OpenResult, error) {
			return raftfsm.OpenResult{}, &raftfsm.InsufficientError{Needed: 10, Available: 5}
		}
		wantInsufficient(t, n.json("PUT", "/v1/sends/s2", n.sender, `{"message_id":"m1","expected_recipients":10}`), 10, 5)
		n.takeWrite("OpenSend")

		// The id is the raw path segment, decoded once: %2F stays inside it.
		n.w.onOpenSend = nil
		decode(t, n.json("PUT", "/v1/sends/a%2Fb", n.sender, `{"message_id":"m1"}`), http.StatusCreated, &o)
		if c := n.takeWrite("OpenSend").arg.(*raftfsm.OpenSend); c.Send != "a/b" || o.SendID != "a/b" {
			t.Fatalf("OpenSend %+v answered %+v, want the send a/b", c, o)
		}

		wantError(t, n.json("PUT", "/v1/sends/s3", n.sender, `{}`), http.StatusBadRequest, "invalid_request")
		n.noWrites()
	})

	t.Run("allocate JSON", func(t *testing.T) {
		n, _ := sendFixture(t)
		n.w.onAllocate = func(a propose.Allocation) (propose.Allocated, error) {
			return propose.Allocated{Codes: [][]byte{[]byte("C1"), []byte("C2"), []byte("C1")}, Available: 7}, nil
		}
		before := time.Now()
		r := n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","recipients":["a@x","b@x","a@x"]}`)
		var res allocResult
		decode(t, r, http.StatusOK, &res)
		fieldsOf(t, r.body, "assignments", "available")
		want := allocResult{Assignments: []pair{{"a@x", "C1"}, {"b@x", "C2"}, {"a@x", "C1"}}, Available: 7}
		if !reflect.DeepEqual(res, want) {
			t.Fatalf("allocation answered %s", r.body)
		}
		a := n.takeWrite("Allocate").arg.(propose.Allocation)
		if a.Tenant != "acme" || a.Send != "s1" || a.Message != "m1" || !reflect.DeepEqual(allocRecipients(a), []string{"a@x", "b@x", "a@x"}) {
			t.Fatalf("Allocation %+v with recipients %q, want a@x, b@x, a@x in order", a, allocRecipients(a))
		}
		stampedNow(t, "Allocation", a.At, before)
	})

	t.Run("allocate text/plain, CSV answer", func(t *testing.T) {
		n, _ := sendFixture(t)
		n.st.putSend(raftfsm.Send{Tenant: "acme", ID: "s1", Message: "m1", List: 0x77, CreatedAt: time.Now().UnixNano()})
		// No message_id: the send exists. A recipient with a comma is quoted in the CSV.
		r := n.do(fakeReq{method: "POST", path: "/v1/sends/s1/codes", token: n.admin, ctype: "text/plain; charset=utf-8",
			body: "\xef\xbb\xbfr1\r\nr2\n\nx,y", headers: []string{"Accept: text/csv"}})
		got := parseCSVPairs(t, r)
		if want := []pair{{"r1", "code-r1"}, {"r2", "code-r2"}, {"x,y", "code-x,y"}}; !reflect.DeepEqual(got, want) {
			t.Fatalf("CSV answer %v, want %v", got, want)
		}
		a := n.takeWrite("Allocate").arg.(propose.Allocation)
		if a.Message != "" || !reflect.DeepEqual(allocRecipients(a), []string{"r1", "r2", "x,y"}) {
			t.Fatalf("Allocation %+v with recipients %q, want r1, r2, x,y without a message", a, allocRecipients(a))
		}
	})

	t.Run("allocate refused before any write", func(t *testing.T) {
		n, _ := sendFixture(t)
		// A new send needs its message.
		wantError(t, n.json("POST", "/v1/sends/s9/codes", n.sender, `{"recipients":["a"]}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("POST", "/v1/sends/s9/codes", n.sender, `{"message_id":"m1","recipients":[]}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("POST", "/v1/sends/s9/codes", n.sender, `{"message_id":"m1","recipients":"a"}`), http.StatusBadRequest, "invalid_json")
		wantError(t, n.json("POST", "/v1/sends/s9/codes", n.operator, `{"message_id":"m1","recipients":["a"]}`), http.StatusForbidden, "forbidden")
		n.noWrites()
	})

	t.Run("allocate errors", func(t *testing.T) {
		n, _ := sendFixture(t)
		alloc := func() response {
			return n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","recipients":["a","b","c"]}`)
		}
		fail := func(err error) {
			n.w.onAllocate = func(propose.Allocation) (propose.Allocated, error) { return propose.Allocated{}, err }
		}
		fail(&raftfsm.InsufficientError{Needed: 3, Available: 2})
		wantInsufficient(t, alloc(), 3, 2)
		for _, c := range []struct {
			err    error
			status int
			code   string
		}{
			{propose.ErrTimeout, http.StatusServiceUnavailable, "unavailable"},
			{&propose.RaftError{Err: errors.New("leadership lost")}, http.StatusServiceUnavailable, "unavailable"},
			{raftfsm.ErrNoCouponList, http.StatusUnprocessableEntity, "no_coupon_list"},
			{raftfsm.ErrSendClosed, http.StatusConflict, "send_closed"},
			{raftfsm.ErrSendMismatch, http.StatusConflict, "send_message_mismatch"},
			{raftfsm.ErrNotFound, http.StatusNotFound, "not_found"},
			{raftfsm.ErrAssignmentsFull, http.StatusConflict, "assignments_full"},
			{errors.New("a bug"), http.StatusInternalServerError, "internal"},
		} {
			fail(c.err)
			e := wantError(t, alloc(), c.status, c.code)
			if c.status == http.StatusServiceUnavailable && strings.Contains(fmt.Sprint(e["message"]), "leadership") {
				t.Fatalf("a Raft error's text reached the client: %v", e)
			}
		}
	})

	t.Run("close, get, assignments", func(t *testing.T) {
		n, list := sendFixture(t)
		now := time.Now().UnixNano()
		n.st.putSend(raftfsm.Send{Tenant: "acme", ID: "s1", Message: "m1", List: 0x77, Assigned: 2, CreatedAt: now})
		n.st.assignments[fakeKey{"acme", "s1"}] = []raftfsm.Assignment{
			{Recipient: "a", Code: "C1", List: 0x77, Message: "m1", Send: "s1", At: now},
			{Recipient: "b,c", Code: "C2", List: 0x77, Message: "m1", Send: "s1", At: now},
		}

		r := n.do(fakeReq{method: "GET", path: "/v1/sends/s1/assignments", token: n.sender})
		var out struct {
			Assignments []struct {
				Recipient  string `json:"recipient"`
				Code       string `json:"code"`
				AssignedAt string `json:"assigned_at"`
			} `json:"assignments"`
		}
		decode(t, r, http.StatusOK, &out)
		if len(out.Assignments) != 2 || out.Assignments[1].Recipient != "b,c" || out.Assignments[1].Code != "C2" {
			t.Fatalf("assignments answered %s", r.body)
		}
		checkTime(t, "assigned_at", out.Assignments[0].AssignedAt)
		r = n.do(fakeReq{method: "GET", path: "/v1/sends/s1/assignments", token: n.sender, headers: []string{"Accept: text/csv"}})
		if got := parseCSVPairs(t, r); !reflect.DeepEqual(got, []pair{{"a", "C1"}, {"b,c", "C2"}}) {
			t.Fatalf("CSV export %v", got)
		}

		r = n.do(fakeReq{method: "POST", path: "/v1/sends/s1/close", token: n.sender})
		var s sendObj
		decode(t, r, http.StatusOK, &s)
		fieldsOf(t, r.body, sendFields...)
		if s.SendID != "s1" || s.Status != "closed" || s.ListID != list || s.Assigned != 2 {
			t.Fatalf("close answered %s", r.body)
		}
		if c := n.takeWrite("CloseSend").arg.(*raftfsm.CloseSend); c.Tenant != "acme" || c.Send != "s1" {
			t.Fatalf("CloseSend %+v", c)
		}
		decode(t, n.do(fakeReq{method: "GET", path: "/v1/sends/s1", token: n.sender}), http.StatusOK, &s)
		if s.Status != "closed" {
			t.Fatalf("a closed send reads %q", s.Status)
		}
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/sends/s1", token: n.otherAdmin}), http.StatusNotFound, "not_found")

		// A recipient's history names send and message, not the recipient.
		r = n.do(fakeReq{method: "GET", path: "/v1/recipients/b%2Cc/assignments", token: n.admin})
		var hist struct {
			Assignments []json.RawMessage `json:"assignments"`
		}
		decode(t, r, http.StatusOK, &hist)
		if len(hist.Assignments) != 1 {
			t.Fatalf("history answered %s", r.body)
		}
		fieldsOf(t, hist.Assignments[0], "code", "list_id", "message_id", "send_id", "assigned_at")
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/recipients/a/assignments", token: n.sender}), http.StatusForbidden, "forbidden")
		n.noWrites()
	})
}

// allocRecipients answers an allocation's recipients as strings.
func allocRecipients(a propose.Allocation) []string {
	out := make([]string, len(a.Recipients))
	for i, r := range a.Recipients {
		out[i] = string(r)
	}
	return out
}

func TestFakeMessages(t *testing.T) {
	const email = `{"name":"Welcome","campaign":"Spring","campaign_type":"standard","channel":"email","doi":false}`

	t.Run("upsert", func(t *testing.T) {
		n := newFakeNode(t)
		before := time.Now()
		m := decodeMessage(t, n.json("PUT", "/v1/messages/m1", n.sender, email), http.StatusCreated)
		c := n.takeWrite("Propose").arg.(*raftfsm.UpsertMessage)
		want := raftfsm.UpsertMessage{Tenant: "acme", ID: "m1", Name: "Welcome", Campaign: "Spring",
			CampaignType: "standard", Channel: "email", At: c.At}
		if *c != want {
			t.Fatalf("UpsertMessage %+v, want %+v", c, want)
		}
		stampedNow(t, "UpsertMessage", c.At, before)
		if m.ID != "m1" || m.Status != "draft" || m.CouponListID != nil || m.Channel != "email" {
			t.Fatalf("answered %+v", m)
		}

		m = decodeMessage(t, n.json("PUT", "/v1/messages/m1", n.admin, strings.Replace(email, `"doi":false`, `"doi":true,"status":"sent"`, 1)), http.StatusOK)
		if c := n.takeWrite("Propose").arg.(*raftfsm.UpsertMessage); c.Status != "sent" || !c.DOI || m.Status != "sent" {
			t.Fatalf("UpsertMessage %+v answered %+v, want status sent", c, m)
		}
		decodeMessage(t, n.do(fakeReq{method: "GET", path: "/v1/messages/m1", token: n.sender}), http.StatusOK)
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/messages/m1", token: n.otherAdmin}), http.StatusNotFound, "not_found")
	})

	t.Run("upsert refused before any write", func(t *testing.T) {
		n := newFakeNode(t)
		for _, body := range []string{
			strings.Replace(email, "standard", "weekly", 1),
			strings.Replace(email, "email", "fax", 1),
			strings.Replace(email, `,"doi":false`, "", 1),
			strings.Replace(email, `"doi":false`, `"doi":false,"status":"archived"`, 1),
		} {
			wantError(t, n.json("PUT", "/v1/messages/m1", n.admin, body), http.StatusBadRequest, "invalid_request")
		}
		n.noWrites()
	})

	t.Run("coupon list", func(t *testing.T) {
		n := newFakeNode(t)
		list := n.addList("acme", 0x55, 3)
		n.st.putMessage(raftfsm.Message{Tenant: "acme", ID: "m1", Name: "M1", CampaignType: "standard", Channel: "email", Status: "draft"})

		m := decodeMessage(t, n.json("PUT", "/v1/messages/m1/coupon-list", n.admin, `{"list_id":"`+list+`"}`), http.StatusOK)
		if a := n.takeWrite("Propose").arg.(*raftfsm.AssignList); *a != (raftfsm.AssignList{Tenant: "acme", Message: "m1", List: 0x55}) {
			t.Fatalf("AssignList %+v", a)
		}
		if m.CouponListID == nil || *m.CouponListID != list {
			t.Fatalf("answered %+v, want coupon_list_id %s", m, list)
		}
		// The list reads its message back.
		var l struct {
			AssignedMessages []struct{ ID string } `json:"assigned_messages"`
		}
		r := n.do(fakeReq{method: "GET", path: "/v1/lists/" + list, token: n.admin})
		checkListShape(t, r.body, "assigned_messages")
		decode(t, r, http.StatusOK, &l)
		if len(l.AssignedMessages) != 1 || l.AssignedMessages[0].ID != "m1" {
			t.Fatalf("list answered %s", r.body)
		}

		r = n.do(fakeReq{method: "DELETE", path: "/v1/messages/m1/coupon-list", token: n.admin})
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("unassign answered %s, want 204 without a body", r)
		}
		if a := n.takeWrite("Propose").arg.(*raftfsm.AssignList); *a != (raftfsm.AssignList{Tenant: "acme", Message: "m1"}) {
			t.Fatalf("AssignList %+v, want list 0", a)
		}

		// Not found before any write: the message, or a list id of no list's spelling.
		wantError(t, n.json("PUT", "/v1/messages/nope/coupon-list", n.admin, `{"list_id":"`+list+`"}`), http.StatusNotFound, "not_found")
		wantError(t, n.json("PUT", "/v1/messages/m1/coupon-list", n.admin, `{"list_id":"00000000000000AA"}`), http.StatusNotFound, "not_found")
		wantError(t, n.json("PUT", "/v1/messages/m1/coupon-list", n.admin, `{}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("PUT", "/v1/messages/m1/coupon-list", n.sender, `{"list_id":"`+list+`"}`), http.StatusForbidden, "forbidden")
		n.noWrites()

		// The state machine's refusals.
		n.w.onPropose = func(raftfsm.Command) (any, error) { return nil, &raftfsm.EligibilityError{Reason: "doi_required"} }
		e := wantError(t, n.json("PUT", "/v1/messages/m1/coupon-list", n.admin, `{"list_id":"`+list+`"}`), http.StatusUnprocessableEntity, "not_eligible")
		if e["reason"] != "doi_required" {
			t.Fatalf("not_eligible without its reason: %v", e)
		}
		n.takeWrite("Propose")
		n.w.onPropose = func(raftfsm.Command) (any, error) { return nil, raftfsm.ErrNotFound }
		wantError(t, n.json("PUT", "/v1/messages/m1/coupon-list", n.admin, `{"list_id":"00000000000000aa"}`), http.StatusNotFound, "not_found")
		n.takeWrite("Propose")
		n.w.onPropose = nil
		wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/messages/nope/coupon-list", token: n.admin}), http.StatusNotFound, "not_found")
		if a := n.takeWrite("Propose").arg.(*raftfsm.AssignList); a.Message != "nope" || a.List != 0 {
			t.Fatalf("AssignList %+v, want message nope unassigned", a)
		}
	})
}

func TestFakeOperators(t *testing.T) {
	t.Run("tenants", func(t *testing.T) {
		n := newFakeNode(t)
		before := time.Now()
		r := n.json("POST", "/v1/tenants", n.operator, `{"id":"new-t","name":"New"}`)
		var tn map[string]string
		decode(t, r, http.StatusCreated, &tn)
		fieldsOf(t, r.body, "id", "name", "created_at")
		checkTime(t, "created_at", tn["created_at"])
		c := n.takeWrite("Propose").arg.(*raftfsm.CreateTenant)
		if c.ID != "new-t" || c.Name != "New" || tn["id"] != "new-t" || tn["name"] != "New" {
			t.Fatalf("CreateTenant %+v answered %s", c, r.body)
		}
		stampedNow(t, "CreateTenant", c.At, before)

		wantError(t, n.json("POST", "/v1/tenants", n.operator, `{"id":"new-t","name":"Again"}`), http.StatusConflict, "tenant_exists")
		n.takeWrite("Propose")
		var all struct {
			Tenants []map[string]string `json:"tenants"`
		}
		decode(t, n.do(fakeReq{method: "GET", path: "/v1/tenants", token: n.operator}), http.StatusOK, &all)
		if len(all.Tenants) != 3 {
			t.Fatalf("tenants answered %v, want acme, new-t, other", all.Tenants)
		}
		wantError(t, n.json("POST", "/v1/tenants", n.operator, `{"id":"Bad_Id","name":"x"}`), http.StatusBadRequest, "invalid_request")
		n.noWrites()
	})

	t.Run("tokens", func(t *testing.T) {
		n := newFakeNode(t)
		r := n.json("POST", "/v1/tenants/acme/tokens", n.operator, `{"role":"sender","name":"mailer"}`)
		var tok map[string]string
		decode(t, r, http.StatusCreated, &tok)
		fieldsOf(t, r.body, "id", "token")
		c := n.takeWrite("Propose").arg.(*raftfsm.CreateToken)
		if c.ID != tok["id"] || c.Tenant != "acme" || c.Role != raftfsm.RoleSender || c.Name != "mailer" {
			t.Fatalf("CreateToken %+v for the answer %s", c, r.body)
		}
		// The secret is answered once; the Writer gets only its hash.
		if c.Hash != sha256.Sum256([]byte(tok["token"])) {
			t.Fatal("CreateToken does not hold the sha256 of the secret answered")
		}
		if strings.Contains(fmt.Sprintf("%+v %q", *c, c.Hash[:]), tok["token"]) {
			t.Fatalf("the secret reached the Writer: %+v", c)
		}
		// The new token works, with its role.
		wantStatus(t, n.json("PUT", "/v1/messages/m1", tok["token"],
			`{"name":"M","campaign":"","campaign_type":"standard","channel":"email","doi":false}`), http.StatusCreated)
		n.takeWrite("Propose")
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists", token: tok["token"]}), http.StatusForbidden, "forbidden")

		r = n.do(fakeReq{method: "DELETE", path: "/v1/tokens/" + tok["id"], token: n.operator})
		if r.status != http.StatusNoContent {
			t.Fatalf("revoke answered %s", r)
		}
		if c := n.takeWrite("Propose").arg.(*raftfsm.RevokeToken); c.ID != tok["id"] {
			t.Fatalf("RevokeToken %+v, want %s", c, tok["id"])
		}
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/messages/m1", token: tok["token"]}), http.StatusUnauthorized, "unauthorized")
		wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/tokens/tok_none", token: n.operator}), http.StatusNotFound, "not_found")
		n.takeWrite("Propose")

		// Refused before any write.
		wantError(t, n.json("POST", "/v1/tenants/acme/tokens", n.operator, `{"role":"operator"}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("POST", "/v1/tenants/acme/tokens", n.operator, `{"name":"x"}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("POST", "/v1/tenants/nope/tokens", n.operator, `{"role":"admin"}`), http.StatusNotFound, "not_found")
		n.noWrites()
	})

	t.Run("roles and tokens before any write", func(t *testing.T) {
		n := newFakeNode(t)
		calls := []fakeReq{
			{method: "POST", path: "/v1/tenants", ctype: "application/json", body: `{"id":"t2","name":"T2"}`},
			{method: "POST", path: "/v1/tenants/acme/tokens", ctype: "application/json", body: `{"role":"admin"}`},
			{method: "DELETE", path: "/v1/tokens/tok_admin"},
			{method: "GET", path: "/v1/tenants"},
		}
		for _, q := range calls {
			for _, tok := range []string{n.admin, n.sender} {
				q.token = tok
				wantError(t, n.do(q), http.StatusForbidden, "forbidden")
			}
			q.token = ""
			wantError(t, n.do(q), http.StatusUnauthorized, "unauthorized")
			q.token = "not-a-token"
			wantError(t, n.do(q), http.StatusUnauthorized, "unauthorized")
		}
		n.noWrites()
	})
}

func TestFakeCluster(t *testing.T) {
	t.Run("add a member again", func(t *testing.T) {
		n := newFakeNode(t)
		r := n.json("POST", "/v1/cluster/nodes", n.operator, `{"id":"n1","raft_addr":"127.0.0.1:7001","http_addr":"127.0.0.1:8001"}`)
		var out map[string]string
		decode(t, r, http.StatusOK, &out)
		if out["id"] != "n1" || out["raft_addr"] != "127.0.0.1:7001" || out["http_addr"] != "127.0.0.1:8001" {
			t.Fatalf("answered %s", r.body)
		}
		wantError(t, n.json("POST", "/v1/cluster/nodes", n.operator, `{"id":"n2","raft_addr":"127.0.0.1:7001","http_addr":"127.0.0.1:8002"}`),
			http.StatusConflict, "address_in_use")
		wantError(t, n.json("POST", "/v1/cluster/nodes", n.operator, `{"id":"n2","raft_addr":"nowhere","http_addr":"127.0.0.1:8002"}`),
			http.StatusBadRequest, "invalid_request")
		n.noWrites()
	})

	t.Run("remove", func(t *testing.T) {
		n := newFakeNode(t)
		e := wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/cluster/nodes/n1", token: n.operator}), http.StatusConflict, "last_voter")
		if !strings.Contains(fmt.Sprint(e["message"]), "n1") {
			t.Fatalf("last_voter does not name the node: %v", e)
		}
		wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/cluster/nodes/n9", token: n.operator}), http.StatusNotFound, "not_found")
		n.noWrites()

		n.w.members = append(n.w.members, propose.Member{ID: "n2", RaftAddr: "127.0.0.1:7002", Voter: true, Suffrage: "voter"})
		if r := n.do(fakeReq{method: "DELETE", path: "/v1/cluster/nodes/n2", token: n.operator}); r.status != http.StatusNoContent {
			t.Fatalf("remove answered %s", r)
		}
		if id := n.takeWrite("RemoveMember").arg.(string); id != "n2" {
			t.Fatalf("RemoveMember(%q), want n2", id)
		}
		n.w.onRemoveMember = func(string) error { return &propose.RaftError{Err: errors.New("leadership lost")} }
		wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/cluster/nodes/n2", token: n.operator}), http.StatusServiceUnavailable, "unavailable")
	})

	t.Run("view", func(t *testing.T) {
		n := newFakeNode(t)
		var out struct {
			Leader string        `json:"leader"`
			Nodes  []clusterNode `json:"nodes"`
			Term   uint64        `json:"term"`
		}
		decode(t, n.do(fakeReq{method: "GET", path: "/v1/cluster", token: n.operator}), http.StatusOK, &out)
		want := []clusterNode{{ID: "n1", RaftAddr: "127.0.0.1:7001", HTTPAddr: "127.0.0.1:8001", Suffrage: "voter", State: "leader"}}
		if out.Leader != "n1" || out.Term != 1 || !reflect.DeepEqual(out.Nodes, want) {
			t.Fatalf("cluster answered %+v", out)
		}
	})
}

// clusterNode is one node of GET /v1/cluster.
type clusterNode struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Suffrage string `json:"suffrage"`
	State    string `json:"state"`
}

func TestFakeReadiness(t *testing.T) {
	t.Run("state not writable", func(t *testing.T) {
		n := newFakeNode(t)
		wantStatus(t, n.do(fakeReq{method: "GET", path: "/readyz"}), http.StatusOK)
		n.w.writable = errors.New("pebble: disk full")
		wantError(t, n.do(fakeReq{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, "not_ready")
		wantStatus(t, n.do(fakeReq{method: "GET", path: "/healthz"}), http.StatusOK)
		// Writes are refused (by the Writer, as the Proposer does) and reads still answered.
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x"}`), http.StatusServiceUnavailable, "unavailable")
		wantError(t, n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","recipients":["a"]}`),
			http.StatusServiceUnavailable, "unavailable")
		wantStatus(t, n.do(fakeReq{method: "GET", path: "/v1/lists", token: n.admin}), http.StatusOK)
		n.noWrites()
	})

	t.Run("follower", func(t *testing.T) {
		n := newFakeNode(t)
		n.addList("acme", 1, 0)
		n.w.isLeader, n.w.leader = false, "n2"
		// Reads are local; a write goes to the leader, whose address this
		// node does not know: no_leader, and nothing is written here.
		wantStatus(t, n.do(fakeReq{method: "GET", path: "/v1/lists", token: n.admin}), http.StatusOK)
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x"}`), http.StatusServiceUnavailable, "no_leader")
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists?consistency=strong", token: n.admin}), http.StatusServiceUnavailable, "no_leader")
		n.noWrites()
		if n.w.barriers != 0 {
			t.Fatal("a follower passed a read barrier itself")
		}
	})

	t.Run("not caught up or no leader", func(t *testing.T) {
		n := newFakeNode(t)
		n.w.leader = ""
		wantError(t, n.do(fakeReq{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, "not_ready")
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x"}`), http.StatusServiceUnavailable, "not_ready")

		n = newFakeNode(t)
		n.srv = n.newServer() // the same fakes, a server that has not caught up
		wantError(t, n.do(fakeReq{method: "GET", path: "/readyz"}), http.StatusServiceUnavailable, "not_ready")
		// Not even a 401: the token may be one not replayed yet.
		wantError(t, n.json("POST", "/v1/lists", "not-a-token", `{"name":"x"}`), http.StatusServiceUnavailable, "not_ready")
		n.noWrites()
	})
}
