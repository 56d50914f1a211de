package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// TestFakeEraseRecipient: DELETE /v1/recipients/{r} proposes one
// EraseRecipient of the caller's tenant with the decoded recipient and a
// fresh random key, and answers the state machine's count.
func TestFakeEraseRecipient(t *testing.T) {
	n := newFakeNode(t)
	n.w.onPropose = func(c raftfsm.Command) (any, error) {
		if _, ok := c.(*raftfsm.EraseRecipient); !ok {
			t.Fatalf("proposed %T", c)
		}
		return 3, nil
	}
	before := time.Now()
	r := n.do(fakeReq{method: "DELETE", path: "/v1/recipients/a%2Fb.c%40x", token: n.admin})
	var res map[string]int
	decode(t, r, http.StatusOK, &res)
	if len(res) != 1 || res["erased"] != 3 {
		t.Fatalf("answered %s", r.body)
	}
	c := n.takeWrite("Propose").arg.(*raftfsm.EraseRecipient)
	if c.Tenant != "acme" || string(c.Recipient) != "a/b.c@x" {
		t.Fatalf("EraseRecipient %q %q", c.Tenant, c.Recipient)
	}
	stampedNow(t, "EraseRecipient", c.At, before)
	if c.Key == ([raftfsm.ErasureKeyLen]byte{}) {
		t.Fatal("the key is zero")
	}
	// Each call makes its own key: only the tenant's first one is kept,
	// and no caller can choose it.
	n.do(fakeReq{method: "DELETE", path: "/v1/recipients/a%2Fb.c%40x", token: n.admin})
	if again := n.takeWrite("Propose").arg.(*raftfsm.EraseRecipient); again.Key == c.Key {
		t.Fatal("two erasures carried the same key")
	}

	// Refused before any write: roles, and recipients allocation refuses.
	wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/recipients/x", token: n.sender}), http.StatusForbidden, "forbidden")
	wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/recipients/x", token: n.operator}), http.StatusForbidden, "forbidden")
	wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/recipients/x"}), http.StatusUnauthorized, "unauthorized")
	for _, bad := range []string{"a%01b", "a%C2%85b", "%E2%80%A8", "%FF", strings.Repeat("r", 257)} {
		wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/recipients/" + bad, token: n.admin}), http.StatusBadRequest, "invalid_request")
	}
	n.noWrites()
	// 256 bytes is a recipient.
	n.do(fakeReq{method: "DELETE", path: "/v1/recipients/" + strings.Repeat("é", 128), token: n.admin})
	if c := n.takeWrite("Propose").arg.(*raftfsm.EraseRecipient); len(c.Recipient) != 256 {
		t.Fatalf("recipient of %d bytes", len(c.Recipient))
	}

	// The other tenant's admin erases in its own tenant only.
	n.do(fakeReq{method: "DELETE", path: "/v1/recipients/x", token: n.otherAdmin})
	if c := n.takeWrite("Propose").arg.(*raftfsm.EraseRecipient); c.Tenant != "other" {
		t.Fatalf("tenant %q, want the caller's", c.Tenant)
	}
	// An outcome that is unknown is 503, and a retry is safe.
	n.w.onPropose = func(raftfsm.Command) (any, error) { return nil, propose.ErrTimeout }
	wantError(t, n.do(fakeReq{method: "DELETE", path: "/v1/recipients/x", token: n.admin}), http.StatusServiceUnavailable, "unavailable")
}
