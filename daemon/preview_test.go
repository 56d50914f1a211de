package daemon_test

import (
	"fmt"
	"testing"

	"github.com/coupond/coupond/daemon"
)

// TestPreviewOnEveryNode: on a 3-node cluster any node answers a preview,
// and a follower's answer is the leader's next code (a follower forwards
// the POST), right after an allocation made through another node. A
// preview changes no state: the digests stay what they were.
func TestPreviewOnEveryNode(t *testing.T) {
	nodes, op, admin, leader := joinedCluster(t, []daemon.Config{plainConfig(t, "n1"), plainConfig(t, "n2"), plainConfig(t, "n3")})
	var followers []*clusterNode
	for _, cn := range nodes {
		if cn != leader {
			followers = append(followers, cn)
		}
	}
	lowStockList(followers[0], admin, 0, 3)
	preview := func(cn *clusterNode) string {
		t.Helper()
		var p struct{ HTML, Code string }
		cn.mustJSON(200, &p, "POST", "/v1/messages/m1/preview", admin, map[string]string{"html": "<b>$code</b>"})
		if p.HTML != "<b>"+p.Code+"</b>" {
			t.Fatalf("%s rendered %q with %q", cn.id, p.HTML, p.Code)
		}
		return p.Code
	}
	before := waitConverged(t, op, nodes...)
	for round := range 3 {
		want := fmt.Sprintf("WH%09d", round)
		for _, cn := range nodes {
			if got := preview(cn); got != want {
				t.Fatalf("round %d: %s previews %q, want %q", round, cn.id, got, want)
			}
		}
		if round == 0 {
			if after := waitConverged(t, op, nodes...); after.Digest != before.Digest {
				t.Fatalf("previews changed the state: digest %s, then %s", before.Digest, after.Digest)
			}
		}
		// Through one follower; the other follower's next preview already
		// names the following code.
		allocateN(followers[0], admin, round, 1)
	}
	followers[1].mustJSON(409, nil, "POST", "/v1/messages/m1/preview", admin, map[string]string{"html": "$code"})
}
