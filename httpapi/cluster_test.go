package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestRemoveLastVoterIsRefused: removing the only voter would leave a
// cluster that can never elect a leader again; the API refuses it with a
// 409 the operator can act on, and the cluster stays as it was.
func TestRemoveLastVoterIsRefused(t *testing.T) {
	n := startNode(t, nodeOpts{})
	e := wantError(t, n.do(t, "DELETE", "/v1/cluster/nodes/node1", n.operator, nil), http.StatusConflict, "last_voter")
	if msg, _ := e["message"].(string); !strings.Contains(msg, "node1") {
		t.Fatalf("the refusal does not name the node: %q", msg)
	}
	r := n.do(t, "GET", "/v1/cluster", n.operator, nil)
	if r.status != http.StatusOK || strings.Count(string(r.body), `"suffrage":"voter"`) != 1 || !strings.Contains(string(r.body), `"leader":"node1"`) {
		t.Fatalf("the cluster changed: %s", r)
	}
	// It still takes writes.
	n.newList(t, n.admin, "after-refusal")
}
