package httpapi_test

// An Idempotency-Key belongs to one tenant, route, target, parameters and
// body: a retry of the same request gets the first answer, a reuse with
// anything else is 409 idempotency_key_reused, and a retry whose list was
// deleted since is 404 not_found.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// keyed sends a CSV import with an Idempotency-Key ("" sends none).
func (n *testNode) keyed(t testing.TB, token, path, key, body string) response {
	t.Helper()
	hr, err := http.NewRequest("POST", n.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "text/csv")
	hr.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		hr.Header.Set("Idempotency-Key", key)
	}
	resp, err := n.client.Do(hr)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	checkOpenAPI(t, "POST", path, r)
	return r
}

// created is the answer of a create-and-import.
type created struct {
	List   list         `json:"list"`
	Import importResult `json:"import"`
}

// sortedIDs answers the ids of a tenant's lists, sorted.
func (n *testNode) sortedIDs(t testing.TB, token string) []string {
	t.Helper()
	ids := n.listIDs(t, token)
	sort.Strings(ids)
	return ids
}

// The two sequences of the issue.
func TestIdempotencyKeySequences(t *testing.T) {
	n := startNode(t, nodeOpts{})

	t.Run("CreateUnderTheKeyOfATopUpIsRefused", func(t *testing.T) {
		l2 := n.newList(t, n.admin, "l2")
		var first importResult
		decode(t, n.keyed(t, n.admin, "/v1/lists/"+l2+"/codes", "B1", "L2-1\nL2-2\n"), http.StatusOK, &first)
		ids, l2Before := n.sortedIDs(t, n.admin), n.getListRaw(t, n.admin, l2)

		r := n.keyed(t, n.admin, "/v1/lists?name=new", "B1", "NEW-1\nNEW-2\nNEW-3\n")
		wantError(t, r, http.StatusConflict, "idempotency_key_reused")
		if got := n.sortedIDs(t, n.admin); !reflect.DeepEqual(got, ids) {
			t.Fatalf("the refused create changed the lists: %v, before %v", got, ids)
		}
		if got := n.getListRaw(t, n.admin, l2); got != l2Before {
			t.Fatalf("the refused create changed l2:\n%s\nbefore\n%s", got, l2Before)
		}
		// The top-up itself is still answered as the first time.
		var again importResult
		decode(t, n.keyed(t, n.admin, "/v1/lists/"+l2+"/codes", "B1", "L2-1\nL2-2\n"), http.StatusOK, &again)
		if again != first {
			t.Fatalf("retried top-up: %+v, first %+v", again, first)
		}
	})

	for _, c := range []struct{ name, csv string }{{"Empty", ""}, {"NonEmpty", "DEL-1\nDEL-2\n"}} {
		t.Run("RetryOfADeletedCreateAndImport"+c.name, func(t *testing.T) {
			key := "deleted-" + c.name
			var first created
			decode(t, n.keyed(t, n.admin, "/v1/lists?name=gone", key, c.csv), http.StatusCreated, &first)
			if r := n.do(t, "DELETE", "/v1/lists/"+first.List.ID, n.admin, nil); r.status != http.StatusNoContent {
				t.Fatalf("delete: %s", r)
			}
			ids := n.sortedIDs(t, n.admin)
			for i := 0; i < 2; i++ { // an answer that stays: no 503 to retry forever
				r := n.keyed(t, n.admin, "/v1/lists?name=gone", key, c.csv)
				e := wantError(t, r, http.StatusNotFound, "not_found")
				if msg, _ := e["message"].(string); !strings.Contains(msg, "deleted") {
					t.Fatalf("the 404 does not say the list was deleted: %s", r)
				}
				if r.header.Get("Retry-After") != "" {
					t.Fatalf("a final answer with Retry-After: %s", r)
				}
			}
			if got := n.sortedIDs(t, n.admin); !reflect.DeepEqual(got, ids) {
				t.Fatalf("a retry after delete changed the lists: %v, before %v", got, ids)
			}
			// Another request under that key is a reuse, deleted list or not.
			wantError(t, n.keyed(t, n.admin, "/v1/lists?name=gone", key, "OTHER\n"), http.StatusConflict, "idempotency_key_reused")
		})
	}
}

// The same key on another route, target, parameters or body; and the same
// request by another tenant, for which the key is simply new.
func TestIdempotencyKeyCrossRouteReuses(t *testing.T) {
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "other")
	_, otherAdmin := n.createToken(t, "other", "admin")
	a, b := n.newList(t, n.admin, "a"), n.newList(t, n.admin, "b")
	otherList := n.newList(t, otherAdmin, "theirs")

	type call struct {
		token func() string
		path  string
		body  string
	}
	mine := func() string { return n.admin }
	theirs := func() string { return otherAdmin }
	topUp := func(id, body string) call { return call{mine, "/v1/lists/" + id + "/codes", body} }
	create := func(query, body string) call { return call{mine, "/v1/lists?" + query, body} }
	const body = "X-1\nX-2\n"
	rows := []struct {
		name        string
		first, then call
		status      int
		code        string // "" for a success
	}{
		{"TopUpOfAThenTopUpOfB", topUp(a, body), topUp(b, body), 409, "idempotency_key_reused"},
		{"TopUpThenCreateAndImport", topUp(a, body), create("name=c1", body), 409, "idempotency_key_reused"},
		{"CreateAndImportThenTopUp", create("name=c2", body), topUp(a, body), 409, "idempotency_key_reused"},
		{"TopUpWithAnotherBody", topUp(a, body), topUp(a, "Y-1\n"), 409, "idempotency_key_reused"},
		{"TopUpWithAnotherHeaderFlag", topUp(a, body), call{mine, "/v1/lists/" + a + "/codes?header=true", body}, 409, "idempotency_key_reused"},
		{"CreateAndImportWithAnotherBody", create("name=c3", body), create("name=c3", "Y-1\n"), 409, "idempotency_key_reused"},
		{"CreateAndImportWithAnotherName", create("name=c4", body), create("name=c4b", body), 409, "idempotency_key_reused"},
		{"CreateAndImportWithAnotherDedupe", create("name=c5", body), create("name=c5&dedupe=false", body), 409, "idempotency_key_reused"},
		{"TopUpRetried", topUp(a, body), topUp(a, body), 200, ""},
		{"CreateAndImportRetried", create("name=c6", body), create("name=c6", body), 201, ""},
		{"AnotherTenantTopUp", topUp(a, body), call{theirs, "/v1/lists/" + otherList + "/codes", body}, 200, ""},
		{"AnotherTenantCreateAndImport", topUp(a, body), call{theirs, "/v1/lists?name=t1", body}, 201, ""},
		{"AnotherTenantSameCreateAndImport", create("name=c7", body), call{theirs, "/v1/lists?name=c7", body}, 201, ""},
	}
	// snapshot is everything both tenants can read of their lists.
	snapshot := func() string {
		var sb strings.Builder
		for _, tok := range []string{n.admin, otherAdmin} {
			for _, id := range n.sortedIDs(t, tok) {
				sb.WriteString(n.getListRaw(t, tok, id))
			}
		}
		return sb.String()
	}
	for i, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			// Codes unique to the row, so a second import is never all duplicates.
			pre := string(rune('A'+i)) + "-"
			fix := func(c call) call { c.body = strings.ReplaceAll(c.body, "X-", pre); return c }
			first, then := fix(row.first), fix(row.then)
			key := "key-" + row.name
			r1 := n.keyed(t, first.token(), first.path, key, first.body)
			if r1.status != 200 && r1.status != 201 {
				t.Fatalf("first request: %s", r1)
			}
			before := snapshot()
			r2 := n.keyed(t, then.token(), then.path, key, then.body)
			if row.code != "" {
				wantError(t, r2, row.status, row.code)
				if after := snapshot(); after != before {
					t.Fatalf("the refused request changed the lists:\n%s\nbefore\n%s", after, before)
				}
				return
			}
			if r2.status != row.status {
				t.Fatalf("second request: %s, want %d", r2, row.status)
			}
			sameRequest := then.token() == first.token()
			switch {
			case r2.status == 200 && sameRequest:
				if string(r2.body) != string(r1.body) {
					t.Fatalf("retry answered %s, first %s", r2.body, r1.body)
				}
			case r2.status == 200: // another tenant: a new upload of its own
				var res importResult
				decode(t, r2, 200, &res)
				if res.Imported != 2 {
					t.Fatalf("another tenant's import under the same key: %+v, want 2 imported", res)
				}
			case sameRequest:
				var c1, c2 created
				decode(t, r1, 201, &c1)
				decode(t, r2, 201, &c2)
				if c2.List.ID != c1.List.ID || c2.Import != c1.Import {
					t.Fatalf("retried create-and-import: %+v, first %+v", c2, c1)
				}
				if after := snapshot(); after != before {
					t.Fatalf("the retry changed the lists:\n%s\nbefore\n%s", after, before)
				}
			default: // another tenant: a list of its own
				var c1, c2 created
				decode(t, r2, 201, &c2)
				if c2.Import.Imported != 2 {
					t.Fatalf("another tenant's create-and-import under the same key: %+v", c2)
				}
				if json.Unmarshal(r1.body, &c1) == nil && c1.List.ID == c2.List.ID {
					t.Fatalf("another tenant got the first tenant's list %s", c1.List.ID)
				}
				if r := n.do(t, "GET", "/v1/lists/"+c2.List.ID, n.admin, nil); r.status != http.StatusNotFound {
					t.Fatalf("the first tenant sees the other tenant's list: %s", r)
				}
			}
			// The first tenant's retry still gets its first answer.
			r3 := n.keyed(t, first.token(), first.path, key, first.body)
			if r3.status != r1.status {
				t.Fatalf("retry of the first request after the second: %s, first %s", r3, r1)
			}
			if r1.status == 200 && string(r3.body) != string(r1.body) {
				t.Fatalf("retry of the first request answered %s, first %s", r3.body, r1.body)
			}
		})
	}

	// Withdrawals take no key: one sent with a key leaves it free.
	t.Run("WithdrawIgnoresTheKey", func(t *testing.T) {
		id := n.newList(t, n.admin, "w")
		n.topUp(t, n.admin, id, "W-1\n")
		var w map[string]uint64
		decode(t, n.keyed(t, n.admin, "/v1/lists/"+id+"/codes/withdraw", "key-w", "W-1\n"), http.StatusOK, &w)
		if w["withdrawn"] != 1 {
			t.Fatalf("withdraw %v", w)
		}
		var res importResult
		decode(t, n.keyed(t, n.admin, "/v1/lists/"+id+"/codes", "key-w", "W-2\n"), http.StatusOK, &res)
		if res.Imported != 1 {
			t.Fatalf("top-up under the key a withdrawal carried: %+v", res)
		}
	})
}

// appliedIndex is the node's applied index, as GET /v1/cluster shows it.
func (n *testNode) appliedIndex(t testing.TB) uint64 {
	t.Helper()
	var c struct {
		Applied uint64 `json:"applied_index"`
	}
	decode(t, n.do(t, "GET", "/v1/cluster", n.operator, nil), http.StatusOK, &c)
	return c.Applied
}

// While the first upload under a key still streams, the same key answers
// 409 upload_in_progress (whatever the retry's body). A connection cut
// before the declared Content-Length aborts the upload: nothing of it is
// committed and the key stays free, so the retry imports the whole body.
func TestIdempotencyKeyOfAStreamingUpload(t *testing.T) {
	n := startNode(t, nodeOpts{})
	id := n.newList(t, n.admin, "streaming")
	body := []byte(codeLines("S-", 0, 400_000)) // about 3.4 MiB: several staged chunks
	path := "/v1/lists/" + id + "/codes"

	// The first upload sends three quarters of its body and stalls.
	c, err := net.Dial("tcp", strings.TrimPrefix(n.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := n.appliedIndex(t)
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/csv\r\n"+
		"Idempotency-Key: busy\r\nContent-Length: %d\r\n\r\n", path, n.admin, len(body))
	if _, err := c.Write(append([]byte(head), body[:len(body)*3/4]...)); err != nil {
		t.Fatal(err)
	}
	// A staged chunk in the log says the handler holds the upload.
	deadline := time.Now().Add(20 * time.Second)
	for n.appliedIndex(t) < before+1 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled upload staged no chunks within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, retry := range [][]byte{body, []byte("OTHER\n")} {
		wantError(t, n.keyed(t, n.admin, path, "busy", string(retry)), http.StatusConflict, "upload_in_progress")
	}
	if l := n.getList(t, n.admin, id); l.Added != 0 {
		t.Fatalf("a streaming upload is visible: %+v", l)
	}
	c.Close() // cut before its Content-Length: the upload aborts, nothing of it is imported

	// The key is free once the cut upload is gone: poll, its handler ends
	// when it notices the closed connection.
	deadline = time.Now().Add(20 * time.Second)
	for {
		r := n.keyed(t, n.admin, path, "busy", string(body))
		if r.status == http.StatusOK {
			var res importResult
			decode(t, r, http.StatusOK, &res)
			if res.Imported != 400_000 {
				t.Fatalf("import after the cut upload: %+v", res)
			}
			break
		}
		if l := n.getList(t, n.admin, id); l.Added != 0 {
			t.Fatalf("the upload cut before its Content-Length was committed: %+v (retry: %s)", l.counts(), r)
		}
		wantError(t, r, http.StatusConflict, "upload_in_progress")
		if time.Now().After(deadline) {
			t.Fatal("the cut upload still holds its key after 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
