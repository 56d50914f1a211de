package httpapi_test

import (
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var erasedForm = regexp.MustCompile(`^erased:[0-9a-f]{32}$`)

// erase answers DELETE /v1/recipients/{r}'s count.
func (n *testNode) erase(t testing.TB, token, recipient string) int {
	t.Helper()
	r := n.do(t, "DELETE", "/v1/recipients/"+recipientPath(recipient), token, nil)
	var out map[string]int
	decode(t, r, http.StatusOK, &out)
	fieldsOf(t, r.body, "erased")
	return out["erased"]
}

// TestEraseRecipient against a real node (SPEC §4): the recipient's
// history is empty, exports and code lookups show one erased form, counts
// stay, a second erasure answers 0, and an allocation afterwards is new.
func TestEraseRecipient(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "other")
	_, adminB := n.createToken(t, "other", "admin")
	_, sender := n.createToken(t, "default", "sender")
	const r = "a/b.c@example.com" // sent as a%2Fb%2Ec%40example%2Ecom

	f := n.newFixture(t, n.admin, 5)
	n.alloc(t, n.admin, "s-erase-1", f.msg, r, "keep@example.com") // codes 0, 1
	n.alloc(t, sender, "s-erase-2", f.msg, r)                      // code 2
	fb := n.newFixture(t, adminB, 1)
	n.alloc(t, adminB, "s-erase-1", fb.msg, r)
	before := n.getList(t, n.admin, f.list).counts()

	wantError(t, n.do(t, "DELETE", "/v1/recipients/"+recipientPath(r), sender, nil), http.StatusForbidden, "forbidden")
	wantError(t, n.do(t, "DELETE", "/v1/recipients/"+recipientPath(r), n.operator, nil), http.StatusForbidden, "forbidden")
	if len(n.history(t, n.admin, r)) != 2 {
		t.Fatal("a refused erasure erased")
	}

	if got := n.erase(t, n.admin, r); got != 2 {
		t.Fatalf("erased %d, want 2", got)
	}
	if h := n.history(t, n.admin, r); len(h) != 0 {
		t.Fatalf("history after the erasure: %+v", h)
	}
	if h := n.history(t, adminB, r); len(h) != 1 {
		t.Fatalf("the other tenant's history: %+v", h)
	}

	// Exports, JSON and CSV, show one erased form in both sends.
	e1 := n.sendAssignments(t, n.admin, "s-erase-1")
	erased := e1[0].Recipient
	if !erasedForm.MatchString(erased) {
		t.Fatalf("erased form %q", erased)
	}
	if want := []pair{{erased, f.codes[0]}, {"keep@example.com", f.codes[1]}}; !reflect.DeepEqual(e1, want) {
		t.Fatalf("s-erase-1: %v, want %v", e1, want)
	}
	if e2 := n.sendAssignments(t, sender, "s-erase-2"); !reflect.DeepEqual(e2, []pair{{erased, f.codes[2]}}) {
		t.Fatalf("s-erase-2: %v", e2)
	}
	csv := n.sendAccept(t, req{method: "GET", path: "/v1/sends/s-erase-1/assignments", token: n.admin}, "text/csv")
	if got := parseCSVPairs(t, csv); !reflect.DeepEqual(got, e1) {
		t.Fatalf("CSV export %v", got)
	}
	// The code lookup.
	lr := n.do(t, "GET", "/v1/lists/"+f.list+"/codes/"+f.codes[2], n.admin, nil)
	var info struct {
		State      string `json:"state"`
		Assignment struct {
			Recipient string `json:"recipient"`
			SendID    string `json:"send_id"`
		} `json:"assignment"`
	}
	decode(t, lr, http.StatusOK, &info)
	if info.State != "assigned" || info.Assignment.Recipient != erased || info.Assignment.SendID != "s-erase-2" {
		t.Fatalf("code lookup: %s", lr.body)
	}
	if after := n.getList(t, n.admin, f.list).counts(); after != before {
		t.Fatalf("counts %+v, were %+v", after, before)
	}
	// The erased form names nobody.
	if h := n.history(t, n.admin, erased); len(h) != 0 {
		t.Fatalf("history of the erased form: %+v", h)
	}

	if got := n.erase(t, n.admin, r); got != 0 {
		t.Fatalf("second erasure: %d, want 0", got)
	}
	// The recipient is new to the send it had a code in.
	a := n.alloc(t, n.admin, "s-erase-1", "", r)
	if a.Assignments[0].Code != f.codes[3] {
		t.Fatalf("allocation after the erasure: %v, want the next code %s", a.Assignments, f.codes[3])
	}
	if h := n.history(t, n.admin, r); len(h) != 1 || h[0].Code != f.codes[3] {
		t.Fatalf("history after the new allocation: %+v", h)
	}
	// The same tenant key erases it again to the same form.
	if got := n.erase(t, n.admin, r); got != 1 {
		t.Fatalf("third erasure: %d", got)
	}
	e1 = n.sendAssignments(t, n.admin, "s-erase-1")
	if len(e1) != 3 || e1[2].Recipient != erased {
		t.Fatalf("s-erase-1 after the third erasure: %v", e1)
	}
	// The other tenant's key is its own.
	n.erase(t, adminB, r)
	eb := n.sendAssignments(t, adminB, "s-erase-1")
	if len(eb) != 1 || !erasedForm.MatchString(eb[0].Recipient) || eb[0].Recipient == erased {
		t.Fatalf("other tenant's export %v (acme's form %s)", eb, erased)
	}
}

// TestEraseThenReadNeverShowsThePlainRecipient: the answer of an erasure
// may be given before its entry is committed to the state (early answers);
// a read right after it must still not find the recipient. Other clients
// keep the batcher busy, so erasures share entries with allocations.
func TestEraseThenReadNeverShowsThePlainRecipient(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 2000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// doRaw: no Fatal off the test's goroutine.
				body := fmt.Sprintf(`{"message_id":%q,"recipients":["busy-%d-%d"]}`, f.msg, w, i)
				r := n.doRaw(req{method: "POST", path: "/v1/sends/s-busy/codes", token: n.admin,
					body: strings.NewReader(body), ctype: "application/json"})
				if r.err != nil || r.status != http.StatusOK {
					t.Errorf("busy allocation: %s", r)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	for i := range 150 {
		rc := fmt.Sprintf("gone-%d@example.com", i)
		n.alloc(t, n.admin, "s-gone", f.msg, rc)
		if got := n.erase(t, n.admin, rc); got != 1 {
			t.Fatalf("erased %d", got)
		}
		if h := n.history(t, n.admin, rc); len(h) != 0 {
			t.Fatalf("round %d: history right after the erasure: %+v", i, h)
		}
	}
}
