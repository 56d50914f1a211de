package daemon_test

import (
	"net"
	"testing"
	"time"

	"github.com/coupond/coupond/daemon"
)

// TestDirectoryHTTPAddrIsDialable: a node started with --http on all
// interfaces (0.0.0.0:PORT, usual in containers) must not record that
// address in the node directory: peers forward to the leader's entry, and
// on another host 0.0.0.0 / [::] is themselves. It records the host of
// --raft with the HTTP port instead. (On one host a test cluster would hide
// the mistake: the ports differ, so dialling [::]:port reaches the node.)
func TestDirectoryHTTPAddrIsDialable(t *testing.T) {
	cfg := daemon.Config{DataDir: t.TempDir(), HTTPAddr: "0.0.0.0:0", RaftAddr: "127.0.0.1:0",
		NodeID: "n1", LogFormat: "json", LogLevel: "warn"}
	cn := startClusterNode(t, cfg, nil)
	waitFor(t, 20*time.Second, "the node's directory entry", func() (bool, string) {
		_, ok := cn.n.FSM().Node("n1")
		return ok, "no entry"
	})
	self, _ := cn.n.FSM().Node("n1")
	host, _, err := net.SplitHostPort(self.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		t.Fatalf("directory entry %+v: its http_addr names no host; peers dialling it reach themselves", self)
	}
}
