package daemon_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/coupond/coupond/daemon"
	"github.com/coupond/coupond/raftfsm"
)

// scrapeValues reads the node's /metrics and answers the value of each
// unlabelled counter or gauge named in names (absent: not in the map).
func scrapeValues(cn *clusterNode, names ...string) map[string]float64 {
	cn.t.Helper()
	st, body, err := cn.do("GET", "/metrics", "", "", nil)
	if err != nil || st != http.StatusOK {
		cn.t.Fatalf("GET /metrics: %d %v %.300s", st, err, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		cn.t.Fatalf("cannot parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for _, name := range names {
		mf := mfs[name]
		if mf == nil || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			out[name] = m.Counter.GetValue()
		case m.Gauge != nil:
			out[name] = m.Gauge.GetValue()
		}
	}
	return out
}

// TestLifecycleMetrics: coupond_fallback_codes_given_total counts the
// fallback codes handed out, coupond_codes_released_total the codes a
// release returned (a released fallback returns none), and
// coupond_lists_expired the lists past expires_at by the node's clock, so
// it grows when that time passes, with no command.
func TestLifecycleMetrics(t *testing.T) {
	cn := startClusterNode(t, daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: freeAddr(t), NodeID: "node1",
		LogFormat: "json", LogLevel: "info"}, nil)
	admin := cn.readToken("admin.token")
	const (
		given    = "coupond_fallback_codes_given_total"
		released = "coupond_codes_released_total"
		expired  = "coupond_lists_expired"
	)
	s0 := scrapeValues(cn, given, released, expired)
	if len(s0) != 3 || s0[given] != 0 || s0[released] != 0 || s0[expired] != 0 {
		t.Fatalf("a fresh node scrapes %v, want the three metrics at 0", s0)
	}

	// A list of 2 codes with a fallback code, and a send that falls back.
	now := time.Now()
	applyCommand(cn, &raftfsm.CreateList{Tenant: "default", ID: 0xb1, Name: "fb", Dedupe: true, At: now.UnixNano(),
		FallbackCode: "FALLBACK-1"})
	cn.must(200, nil, "POST", "/v1/lists/00000000000000b1/codes", admin, "text/csv", csvCodes("FB", 0, 2))
	cn.mustJSON(201, nil, "PUT", "/v1/messages/m1", admin, emailMessage("m1"))
	cn.mustJSON(200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, map[string]string{"list_id": "00000000000000b1"})
	applyCommand(cn, &raftfsm.OpenSend{Tenant: "default", Send: "s1", Message: "m1", At: now.UnixNano(),
		SetOnShortage: true, OnShortage: raftfsm.ShortageFallback})
	var alloc struct {
		Assignments []assignment `json:"assignments"`
	}
	recips := []string{"r0", "r1", "r2", "r3", "r4"}
	cn.mustJSON(200, &alloc, "POST", "/v1/sends/s1/codes", admin, map[string]any{"recipients": recips})
	if len(alloc.Assignments) != 5 || alloc.Assignments[0].Code == "FALLBACK-1" || alloc.Assignments[4].Code != "FALLBACK-1" {
		t.Fatalf("allocation of 5 on 2 codes: %+v, want 2 codes then 3 fallbacks", alloc.Assignments)
	}
	// Release r0 (a code) and r4 (a fallback): one code goes back.
	var block raftfsm.RecipientBlock
	block = block.AppendRecipient([]byte("r0")).AppendRecipient([]byte("r4"))
	applyCommand(cn, &raftfsm.Release{Tenant: "default", Send: "s1", Recipients: block, At: time.Now().UnixNano()})

	// Lists expired a second ago, expiring in 2 s, and in an hour.
	now = time.Now()
	for i, at := range []time.Time{now.Add(-time.Second), now.Add(2 * time.Second), now.Add(time.Hour)} {
		applyCommand(cn, &raftfsm.CreateList{Tenant: "default", ID: 0xc0 + uint64(i), Name: fmt.Sprint("exp", i),
			Dedupe: true, At: now.UnixNano(), HasExpiry: true, ExpiresAt: at.UnixNano()})
	}
	s1 := scrapeValues(cn, given, released, expired)
	if s1[given] != 3 || s1[released] != 1 || s1[expired] != 1 {
		t.Fatalf("scraped %v, want 3 fallbacks given, 1 code released, 1 list expired", s1)
	}
	waitFor(t, 10*time.Second, "the second list to expire", func() (bool, string) {
		s := scrapeValues(cn, expired)
		return s[expired] == 2, fmt.Sprint(s)
	})
	if s := scrapeValues(cn, given, released); s[given] != 3 || s[released] != 1 {
		t.Fatalf("the counters moved without a command: %v", s)
	}
}
