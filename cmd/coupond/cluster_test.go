package main

// Replication with real processes (SPEC §2: "Any node of a cluster answers
// any call: a follower forwards writes to the leader"; §3 --join; the
// acceptance points "a cluster of three processes" and "a node down during
// 200,000+ allocations comes back after the log was compacted, catches up
// and matches the digest").
//
// The helpers of this file are prefixed ct (cluster test) so that they do
// not meet those of the chaos test in the same package.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coupond/coupond/cmd/internal/proctest"
	"github.com/coupond/coupond/httpapi/client"
)

// ctNode is one node of a test cluster.
type ctNode struct {
	*proc
	id string
}

// ctCluster is three nodes bootstrapped by n1, and the tokens n1 wrote.
type ctCluster struct {
	t        *testing.T
	nodes    []*ctNode
	operator string
	admin    string
	http     *http.Client
}

// Request headers used often.
var (
	ctJSON = map[string]string{"Content-Type": "application/json"}
	ctCSV  = map[string]string{"Content-Type": "text/csv"}
)

// startCtCluster bootstraps n1 and joins n2 and n3 to it with --join, each
// with the extra flags; it waits until every node sees three voters.
func startCtCluster(t *testing.T, extra ...string) *ctCluster {
	t.Helper()
	return startCtClusterOf(t, raceBin.Path(t), extra...)
}

// startCtClusterOf is startCtCluster with the binary bin.
func startCtClusterOf(t *testing.T, bin string, extra ...string) *ctCluster {
	t.Helper()
	n1 := &ctNode{proc: newProcOf(t, bin, append([]string{"--id", "n1"}, extra...)...), id: "n1"}
	n1.Start()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	c := &ctCluster{t: t, nodes: []*ctNode{n1}, operator: n1.Token("operator.token"), admin: n1.Token("admin.token"),
		http: &http.Client{Timeout: 60 * time.Second, Transport: tr}}
	for _, id := range []string{"n2", "n3"} {
		n := &ctNode{proc: newProcOf(t, bin, append([]string{"--id", id, "--join", n1.HTTPAddr,
			"--token-file", filepath.Join(n1.Data, "operator.token")}, extra...)...), id: id}
		n.Start() // ready once it was added and caught up
		c.nodes = append(c.nodes, n)
	}
	c.waitMembers(c.nodes...)
	return c
}

// call sends one request to node n; hdr sets request headers.
func (c *ctCluster) call(n *ctNode, method, path, token string, hdr map[string]string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, n.URL(path), r)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// must sends a request to n, checks the status and decodes a JSON answer
// into out (when not nil); it returns the body. A 503 that says that the
// call reached no leader (no_leader, not_ready: nothing was done) is
// retried for a while: a loaded machine may see a leader step down.
func (c *ctCluster) must(n *ctNode, want int, out any, method, path, token string, hdr map[string]string, body []byte) []byte {
	c.t.Helper()
	return c.mustOf(n, false, []int{want}, out, method, path, token, hdr, body)
}

// mustIdem is must for a call that is safe to repeat: it is retried after
// any 503 or broken connection, and any status of wants is accepted.
func (c *ctCluster) mustIdem(n *ctNode, wants []int, out any, method, path, token string, hdr map[string]string, body []byte) []byte {
	c.t.Helper()
	return c.mustOf(n, true, wants, out, method, path, token, hdr, body)
}

func (c *ctCluster) mustOf(n *ctNode, idem bool, wants []int, out any, method, path, token string, hdr map[string]string, body []byte) []byte {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st int
	var b []byte
	var err error
	for {
		st, b, err = c.call(n, method, path, token, hdr, body)
		code := ctErrCode(b)
		retry := err == nil && st == 503 && (code == "no_leader" || code == "not_ready") || idem && (err != nil || st == 503)
		if !retry || time.Now().After(deadline) {
			break
		}
		c.t.Logf("%s %s on %s: %d %v %.200s; retrying", method, path, n.id, st, err, b)
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, n.id, err)
	}
	if !slices.Contains(wants, st) {
		c.t.Fatalf("%s %s on %s: status %d, want %v: %.500s", method, path, n.id, st, wants, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s on %s: %v: %.500s", method, path, n.id, err, b)
		}
	}
	return b
}

// mustErr sends a request that must fail with status and error code.
func (c *ctCluster) mustErr(n *ctNode, status int, code, method, path, token string, hdr map[string]string, body []byte) {
	c.t.Helper()
	b := c.must(n, status, nil, method, path, token, hdr, body)
	if got := ctErrCode(b); got != code {
		c.t.Fatalf("%s %s on %s: error code %q, want %q: %s", method, path, n.id, got, code, b)
	}
}

func ctErrCode(b []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	return e.Error.Code
}

func (c *ctCluster) node(id string) *ctNode {
	c.t.Helper()
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %q", id)
	return nil
}

// others are the nodes but those named.
func (c *ctCluster) others(ids ...string) []*ctNode {
	var out []*ctNode
	for _, n := range c.nodes {
		if !slices.Contains(ids, n.id) {
			out = append(out, n)
		}
	}
	return out
}

// ctView is GET /v1/cluster.
type ctView = client.ClusterStatus

func (c *ctCluster) view(n *ctNode) (ctView, error) {
	var v ctView
	st, b, err := c.call(n, "GET", "/v1/cluster", c.operator, nil, nil)
	if err != nil {
		return v, err
	}
	if st != 200 {
		return v, fmt.Errorf("status %d: %.200s", st, b)
	}
	return v, json.Unmarshal(b, &v)
}

// membersOK checks one node's view: exactly the members, all voters with
// the addresses they were started with, one leader that every member
// reports as such, the others followers.
func membersOK(v ctView, members []*ctNode) error {
	if v.Leader == nil {
		return fmt.Errorf("no leader")
	}
	if len(v.Nodes) != len(members) {
		return fmt.Errorf("%d nodes listed, want %d", len(v.Nodes), len(members))
	}
	leaders := 0
	for _, m := range v.Nodes {
		i := slices.IndexFunc(members, func(n *ctNode) bool { return n.id == m.ID })
		if i < 0 {
			return fmt.Errorf("%s is listed but is not a member", m.ID)
		}
		n := members[i]
		if m.Suffrage != "voter" || m.RaftAddr != n.RaftAddr || m.HTTPAddr != n.HTTPAddr {
			return fmt.Errorf("%s listed as %+v, want a voter at raft %s, http %s", m.ID, m, n.RaftAddr, n.HTTPAddr)
		}
		switch m.State {
		case "leader":
			leaders++
			if m.ID != *v.Leader {
				return fmt.Errorf("%s is in state leader, but the leader is %s", m.ID, *v.Leader)
			}
		case "follower":
		default:
			return fmt.Errorf("%s is in state %q", m.ID, m.State)
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d nodes in state leader", leaders)
	}
	return nil
}

// waitMembers waits until every one of members sees exactly members, as
// voters, and the same leader; it returns the leader's id.
func (c *ctCluster) waitMembers(members ...*ctNode) string {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var leader string
		var err error
		for _, n := range members {
			var v ctView
			if v, err = c.view(n); err == nil {
				err = membersOK(v, members)
			}
			if err == nil && leader != "" && *v.Leader != leader {
				err = fmt.Errorf("leader %s, another node says %s", *v.Leader, leader)
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", n.id, err)
				break
			}
			leader = *v.Leader
		}
		if err == nil {
			return leader
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the members do not agree on the cluster within 60s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leaderOf waits until one of nodes says that it leads.
func (c *ctCluster) leaderOf(nodes ...*ctNode) *ctNode {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if v, err := c.view(n); err == nil && v.Leader != nil && *v.Leader == n.id {
				return n
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no leader among the running nodes within 60s")
	return nil
}

// peerState is the state of node id in n's view of the cluster, polled
// until it is want (when given) for up to 10 s; "" when n does not answer.
func (c *ctCluster) peerState(n *ctNode, id, want string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := ""
		if v, err := c.view(n); err == nil {
			for _, m := range v.Nodes {
				if m.ID == id {
					st = m.State
				}
			}
		}
		if want == "" || st == want || time.Now().After(deadline) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctDigest is GET /v1/cluster/digest.
type ctDigest struct {
	Node    string `json:"node"`
	Applied uint64 `json:"applied_index"`
	Digest  string `json:"digest"`
}

// sameDigest waits until the nodes have applied the same index, then
// requires the same digest of their state; it returns it.
func (c *ctCluster) sameDigest(nodes ...*ctNode) ctDigest {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ds []ctDigest
		var err error
		for _, n := range nodes {
			var d ctDigest
			st, b, e := c.call(n, "GET", "/v1/cluster/digest", c.operator, nil, nil)
			if e == nil && st != 200 {
				e = fmt.Errorf("status %d: %.200s", st, b)
			}
			if e == nil {
				e = json.Unmarshal(b, &d)
			}
			if e == nil && d.Node != n.id {
				e = fmt.Errorf("answered as %q", d.Node)
			}
			if e != nil {
				err = fmt.Errorf("%s: %w", n.id, e)
				break
			}
			ds = append(ds, d)
		}
		if err == nil && !slices.ContainsFunc(ds, func(d ctDigest) bool { return d.Applied != ds[0].Applied }) {
			if slices.ContainsFunc(ds, func(d ctDigest) bool { return d.Digest != ds[0].Digest }) {
				c.t.Fatalf("the nodes applied index %d but their states differ: %+v", ds[0].Applied, ds)
			}
			return ds[0]
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the nodes did not reach the same applied index within 60s: %+v %v", ds, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctRead is a read whose answer every node must give alike.
type ctRead struct {
	path   string
	token  string
	accept string
}

// sameReads reads each path on the leader (a strong read), then polls
// each node's local read until it answers the same bytes: local reads of
// a follower may lag, but not forever. It returns the leader's answers, in
// the order of reads.
func (c *ctCluster) sameReads(leader *ctNode, nodes []*ctNode, reads []ctRead) [][]byte {
	c.t.Helper()
	var out [][]byte
	for _, r := range reads {
		hdr := map[string]string{}
		if r.accept != "" {
			hdr["Accept"] = r.accept
		}
		sep := "?"
		if strings.Contains(r.path, "?") {
			sep = "&"
		}
		want := c.must(leader, 200, nil, "GET", r.path+sep+"consistency=strong", r.token, hdr, nil)
		out = append(out, want)
		for _, n := range nodes {
			deadline := time.Now().Add(20 * time.Second)
			for {
				st, b, err := c.call(n, "GET", r.path, r.token, hdr, nil)
				if err == nil && st == 200 && bytes.Equal(b, want) {
					break
				}
				if time.Now().After(deadline) {
					c.t.Fatalf("GET %s (%s) on %s answers %d %v %.400s\nthe leader %s answers %.400s", r.path, r.accept, n.id, st, err, b, leader.id, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return out
}

// ctAlloc is the JSON answer of an allocation.
type ctAlloc struct {
	Assignments []struct {
		Recipient string `json:"recipient"`
		Code      string `json:"code"`
	} `json:"assignments"`
	Available uint64 `json:"available"`
}

func ctRecipients(format string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, from+i)
	}
	return out
}

func ctAllocBody(message string, recips []string) []byte {
	m := map[string]any{"recipients": recips}
	if message != "" {
		m["message_id"] = message
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// checkAlloc checks an allocation answer: the recipients in order, with
// the codes want (when given).
func checkAlloc(t *testing.T, what string, a ctAlloc, recips, want []string) {
	t.Helper()
	if len(a.Assignments) != len(recips) {
		t.Fatalf("%s: %d assignments for %d recipients: %+v", what, len(a.Assignments), len(recips), a)
	}
	for i, as := range a.Assignments {
		if as.Recipient != recips[i] || as.Code == "" || want != nil && as.Code != want[i] {
			t.Fatalf("%s: assignment %d is %+v, want %s -> %v", what, i, as, recips[i], want)
		}
	}
}

func ctCodes(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = code(prefix, from+i)
	}
	return out
}

func (l listJSON) counts() [5]uint64 {
	return [5]uint64{l.Added, l.Available, l.Reserved, l.Used, l.Withdrawn}
}

// forged sends a call to n that claims to be forwarded by a node without
// a valid signature; it must be refused with 401.
func (c *ctCluster) forged(n *ctNode, method, path, token string, hdr map[string]string, body []byte) {
	c.t.Helper()
	now := strconv.FormatInt(time.Now().Unix(), 10)
	for i, h := range []map[string]string{
		{"X-Coupond-Forwarded-By": "n1"},
		{"X-Coupond-Forwarded-By": "n1", "X-Coupond-Forward-Time": now},
		{"X-Coupond-Forwarded-By": n.id, "X-Coupond-Forward-Time": now, "X-Coupond-Forward-Signature": strings.Repeat("0", 64)},
		{"X-Coupond-Forwarded-By": "n2", "X-Coupond-Forward-Time": "1", "X-Coupond-Forward-Signature": strings.Repeat("ab", 32)},
	} {
		all := map[string]string{}
		for k, v := range hdr {
			all[k] = v
		}
		for k, v := range h {
			all[k] = v
		}
		st, b, err := c.call(n, method, path, token, all, body)
		if err != nil || st != 401 {
			c.t.Fatalf("forged forward #%d %s %s on %s: %d %v %.300s, want 401", i, method, path, n.id, st, err, b)
		}
	}
}

// TestClusterOfThreeProcesses: three real processes joined with --join.
// Every node sees three voters and one leader; every kind of write sent to
// a follower is forwarded and applied; every node then reads the same
// state, a strong read on a follower sees a write at once, and the state
// digests agree. A follower is removed (writes go on), wiped and joined
// again (it gets the whole state back); the leader is restarted with
// SIGTERM (it comes back with its state); a forged forward header is
// refused and changes nothing.
func TestClusterOfThreeProcesses(t *testing.T) {
	start := time.Now()
	c := startCtCluster(t)
	leaderID := c.waitMembers(c.nodes...)
	L := c.node(leaderID)
	fs := c.others(leaderID)
	F1, F2 := fs[0], fs[1]
	admin, op := c.admin, c.operator
	t.Logf("three nodes up and joined in %s; leader %s", time.Since(start).Round(time.Millisecond), leaderID)
	for _, n := range c.nodes[1:] {
		if logs := n.Logs.String(); !strings.Contains(logs, "joined the cluster") {
			t.Fatalf("%s does not log that it joined", n.id)
		}
	}

	// Every kind of write, each sent to a follower.
	writesAt := time.Now()
	var spring listJSON
	c.must(F1, 201, &spring, "POST", "/v1/lists", admin, ctJSON, []byte(`{"name":"spring","low_stock_threshold":5}`))
	var imp importJSON
	c.must(F2, 200, &imp, "POST", "/v1/lists/"+spring.ID+"/codes", admin, ctCSV, codesCSV("A", 0, 100))
	if imp != (importJSON{Imported: 100, Size: 100}) {
		t.Fatalf("top-up through %s: %+v", F2.id, imp)
	}
	c.must(F1, 200, &imp, "POST", "/v1/lists/"+spring.ID+"/codes?header=true", admin, ctCSV,
		append([]byte("code\n"), codesCSV("A", 90, 20)...))
	if imp != (importJSON{Imported: 10, Duplicates: 10, Size: 110}) {
		t.Fatalf("top-up with duplicates through %s: %+v", F1.id, imp)
	}
	var autumn struct {
		List   listJSON   `json:"list"`
		Import importJSON `json:"import"`
	}
	c.must(F2, 201, &autumn, "POST", "/v1/lists?name=autumn", admin, ctCSV, codesCSV("B", 0, 50))
	if autumn.Import != (importJSON{Imported: 50, Size: 50}) || autumn.List.Name != "autumn" || autumn.List.Added != 50 {
		t.Fatalf("create and import through %s: %+v", F2.id, autumn)
	}
	c.mustErr(F1, 400, "invalid_csv", "POST", "/v1/lists/"+autumn.List.ID+"/codes", admin, ctCSV, []byte("B9000\n\"open\n"))
	var wd struct {
		Withdrawn   uint64 `json:"withdrawn"`
		NotFound    uint64 `json:"not_found"`
		AlreadyUsed uint64 `json:"already_used"`
	}
	c.must(F1, 200, &wd, "POST", "/v1/lists/"+spring.ID+"/codes/withdraw", admin, ctCSV,
		append(codesCSV("A", 0, 5), "NOPE\n"...))
	if wd.Withdrawn != 5 || wd.NotFound != 1 || wd.AlreadyUsed != 0 {
		t.Fatalf("withdraw through %s: %+v", F1.id, wd)
	}
	c.must(F2, 200, nil, "PATCH", "/v1/lists/"+spring.ID, admin, ctJSON, []byte(`{"name":"spring-sale","low_stock_threshold":20}`))
	msg := func(name, channel string) []byte {
		return []byte(`{"name":"` + name + `","campaign":"c","campaign_type":"standard","channel":"` + channel + `","doi":false}`)
	}
	c.must(F1, 201, nil, "PUT", "/v1/messages/m1", admin, ctJSON, msg("first", "email"))
	c.must(F2, 200, nil, "PUT", "/v1/messages/m1", admin, ctJSON, msg("First", "email"))
	c.must(F2, 201, nil, "PUT", "/v1/messages/m2", admin, ctJSON, msg("Second", "email"))
	c.must(F1, 201, nil, "PUT", "/v1/messages/m3", admin, ctJSON, msg("Text", "sms"))
	c.must(F2, 200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, ctJSON, []byte(`{"list_id":"`+spring.ID+`"}`))
	c.must(F1, 200, nil, "PUT", "/v1/messages/m2/coupon-list", admin, ctJSON, []byte(`{"list_id":"`+autumn.List.ID+`"}`))
	c.mustErr(F2, 422, "not_eligible", "PUT", "/v1/messages/m3/coupon-list", admin, ctJSON, []byte(`{"list_id":"`+spring.ID+`"}`))

	var opened struct {
		SendID   string `json:"send_id"`
		ListID   string `json:"list_id"`
		Reserved uint64 `json:"reserved"`
	}
	c.must(F1, 201, &opened, "PUT", "/v1/sends/s1", admin, ctJSON, []byte(`{"message_id":"m1","expected_recipients":30}`))
	if opened.SendID != "s1" || opened.ListID != spring.ID || opened.Reserved != 30 {
		t.Fatalf("open send through %s: %+v", F1.id, opened)
	}
	r20 := ctRecipients("r%02d@example.com", 0, 20)
	var a ctAlloc
	c.must(F2, 200, &a, "POST", "/v1/sends/s1/codes", admin, ctJSON, ctAllocBody("m1", r20))
	checkAlloc(t, "allocation through "+F2.id, a, r20, ctCodes("A", 5, 20)) // FIFO after the withdrawn A0..A4
	if a.Available != 75 {
		t.Fatalf("allocation through %s: available %d, want 75 (110 added, 5 withdrawn, 30 held)", F2.id, a.Available)
	}
	c.must(F1, 200, &a, "POST", "/v1/sends/s1/codes", admin, ctJSON, ctAllocBody("", r20))
	checkAlloc(t, "the same allocation retried through "+F1.id, a, r20, ctCodes("A", 5, 20))
	r5 := ctRecipients("r%02d@example.com", 20, 5)
	b := c.must(F1, 200, nil, "POST", "/v1/sends/s1/codes?message_id=m1", admin,
		map[string]string{"Content-Type": "text/plain", "Accept": "text/csv"}, []byte(strings.Join(r5, "\n")+"\n"))
	var wantCSV strings.Builder
	for i, rc := range r5 {
		fmt.Fprintf(&wantCSV, "%s,%s\n", rc, code("A", 25+i))
	}
	if string(b) != wantCSV.String() {
		t.Fatalf("text/plain allocation answered as CSV through %s: %q, want %q", F1.id, b, wantCSV.String())
	}
	both := []string{r20[0], "x1@example.com"}
	c.must(F2, 200, &a, "POST", "/v1/sends/s2/codes", admin, ctJSON, ctAllocBody("m2", both))
	checkAlloc(t, "implicit send through "+F2.id, a, both, ctCodes("B", 0, 2))
	var closed sendState
	c.must(F1, 200, &closed, "POST", "/v1/sends/s1/close", admin, nil, nil)
	if closed.Status != "closed" || closed.Reserved != 0 || closed.Assigned != 25 {
		t.Fatalf("close through %s: %+v", F1.id, closed)
	}
	c.mustErr(F2, 409, "send_closed", "POST", "/v1/sends/s1/codes", admin, ctJSON, ctAllocBody("m1", []string{"late@example.com"}))
	c.must(F2, 200, &a, "POST", "/v1/sends/s1/codes", admin, ctJSON, ctAllocBody("m1", r20[:1]))
	checkAlloc(t, "a served recipient on a closed send", a, r20[:1], ctCodes("A", 5, 1))
	var tmp listJSON
	c.must(F1, 201, &tmp, "POST", "/v1/lists", admin, ctJSON, []byte(`{"name":"tmp"}`))
	c.must(F2, 204, nil, "DELETE", "/v1/lists/"+tmp.ID, admin, nil, nil)
	c.mustErr(F1, 409, "list_in_use", "DELETE", "/v1/lists/"+spring.ID, admin, nil, nil)
	c.must(F1, 204, nil, "DELETE", "/v1/messages/m2/coupon-list", admin, nil, nil)

	// Operator writes: a tenant, its tokens, a revocation.
	c.must(F2, 201, nil, "POST", "/v1/tenants", op, ctJSON, []byte(`{"id":"acme","name":"Acme"}`))
	var tok1, tok2 struct{ ID, Token string }
	c.must(F1, 201, &tok1, "POST", "/v1/tenants/acme/tokens", op, ctJSON, []byte(`{"role":"admin","name":"first"}`))
	c.must(F2, 201, &tok2, "POST", "/v1/tenants/acme/tokens", op, ctJSON, []byte(`{"role":"admin","name":"second"}`))
	var acmeList listJSON
	c.must(F2, 201, &acmeList, "POST", "/v1/lists", tok1.Token, ctJSON, []byte(`{"name":"acme-list"}`))
	c.must(F1, 204, nil, "DELETE", "/v1/tokens/"+tok1.ID, op, nil, nil)
	// A write is checked by the leader, so the revocation holds at once
	// whatever node is asked; a local read may see it a little later.
	for _, n := range c.nodes {
		c.mustErr(n, 401, "unauthorized", "POST", "/v1/lists", tok1.Token, ctJSON, []byte(`{"name":"revoked"}`))
	}
	if st, _, err := c.call(F2, "GET", "/v1/lists", tok1.Token, nil, nil); err == nil && st == 200 {
		t.Logf("note: a local read on %s right after the revocation was answered 200 with the revoked token (the follower had not applied it yet)", F2.id)
	}
	for _, n := range c.nodes {
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, body, err := c.call(n, "GET", "/v1/lists", tok1.Token, nil, nil)
			if err == nil && st == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still reads with a revoked token: %d %v %.200s", n.id, st, err, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("writes through the followers done in %s", time.Since(writesAt).Round(time.Millisecond))

	// A strong read on one follower sees a write made through the other at once.
	lag := 0
	for i := range 10 {
		name := fmt.Sprintf("spring-%d", i)
		c.must(F1, 200, nil, "PATCH", "/v1/lists/"+spring.ID, admin, ctJSON, []byte(`{"name":"`+name+`"}`))
		var l listJSON
		c.must(F2, 200, &l, "GET", "/v1/lists/"+spring.ID+"?consistency=strong", admin, nil, nil)
		if l.Name != name {
			t.Fatalf("strong read on %s right after a rename through %s: name %q, want %q", F2.id, F1.id, l.Name, name)
		}
		rc := fmt.Sprintf("strong-%d@example.com", i)
		c.must(F2, 200, &a, "POST", "/v1/sends/s3/codes", admin, ctJSON, ctAllocBody("m1", []string{rc}))
		var h struct {
			Assignments []struct {
				Code   string `json:"code"`
				SendID string `json:"send_id"`
			} `json:"assignments"`
		}
		c.must(F1, 200, &h, "GET", "/v1/recipients/"+url.PathEscape(rc)+"/assignments?consistency=strong", admin, nil, nil)
		if len(h.Assignments) != 1 || h.Assignments[0].Code != a.Assignments[0].Code || h.Assignments[0].SendID != "s3" {
			t.Fatalf("strong read on %s right after an allocation through %s: %+v, want %s in s3", F1.id, F2.id, h, a.Assignments[0].Code)
		}
		if st, lb, err := c.call(F2, "GET", "/v1/recipients/"+url.PathEscape(rc)+"/assignments", admin, nil, nil); err == nil && st == 200 && !bytes.Contains(lb, []byte(a.Assignments[0].Code)) {
			lag++
		}
	}
	c.mustErr(F1, 400, "invalid_request", "GET", "/v1/lists?consistency=eventual", admin, nil, nil)
	t.Logf("strong reads on followers saw 10 of 10 writes at once; a local read right after the write lagged %d times of 10", lag)
	c.must(F1, 200, nil, "PATCH", "/v1/lists/"+spring.ID, admin, ctJSON, []byte(`{"name":"spring-sale"}`))

	// Every node reads the same state.
	reads := []ctRead{
		{path: "/v1/lists", token: admin},
		{path: "/v1/lists/" + spring.ID, token: admin},
		{path: "/v1/lists/" + autumn.List.ID, token: admin},
		{path: "/v1/lists/" + spring.ID + "/codes/" + code("A", 0), token: admin},
		{path: "/v1/lists/" + spring.ID + "/codes/" + code("A", 5), token: admin},
		{path: "/v1/messages/m1", token: admin},
		{path: "/v1/messages/m2", token: admin},
		{path: "/v1/messages/m3", token: admin},
		{path: "/v1/sends/s1", token: admin},
		{path: "/v1/sends/s2", token: admin},
		{path: "/v1/sends/s3", token: admin},
		{path: "/v1/sends/s1/assignments", token: admin},
		{path: "/v1/sends/s1/assignments", token: admin, accept: "text/csv"},
		{path: "/v1/recipients/" + url.PathEscape(r20[0]) + "/assignments", token: admin},
		{path: "/v1/recipients/" + url.PathEscape(r5[4]) + "/assignments", token: admin},
		{path: "/v1/tenants", token: op},
		{path: "/v1/lists", token: tok2.Token},
	}
	got := c.sameReads(L, c.nodes, reads)
	var lists struct {
		Lists []listJSON `json:"lists"`
	}
	if err := json.Unmarshal(got[0], &lists); err != nil || len(lists.Lists) != 2 {
		t.Fatalf("lists: %v %s", err, got[0])
	}
	for _, l := range lists.Lists {
		var want [5]uint64 // added, available, reserved, used, withdrawn
		switch l.ID {
		case spring.ID:
			want = [5]uint64{110, 110 - 5 - 25 - 10, 0, 35, 5}
		case autumn.List.ID:
			want = [5]uint64{50, 48, 0, 2, 0}
		default:
			t.Fatalf("unexpected list %+v", l)
		}
		if l.counts() != want || l.UsedOrDeleted != want[3]+want[4] {
			t.Fatalf("list %s: %+v, want added, available, reserved, used, withdrawn = %v", l.Name, l, want)
		}
	}
	var hist struct {
		Assignments []struct {
			Code   string `json:"code"`
			SendID string `json:"send_id"`
		} `json:"assignments"`
	}
	if err := json.Unmarshal(got[13], &hist); err != nil || len(hist.Assignments) != 2 || hist.Assignments[0].SendID != "s1" || hist.Assignments[1].SendID != "s2" {
		t.Fatalf("history of %s: %v %+v", r20[0], err, hist)
	}
	var acme struct {
		Lists []listJSON `json:"lists"`
	}
	if err := json.Unmarshal(got[16], &acme); err != nil || len(acme.Lists) != 1 || acme.Lists[0].ID != acmeList.ID {
		t.Fatalf("acme's lists: %v %s", err, got[16])
	}
	if slices.ContainsFunc(lists.Lists, func(l listJSON) bool { return l.ID == acmeList.ID }) {
		t.Fatalf("the default tenant sees acme's list: %s", got[0])
	}
	d := c.sameDigest(c.nodes...)
	t.Logf("every node reads the same state; digests agree at applied index %d", d.Applied)

	// Membership: remove a follower other than n1 (its folder holds the
	// token file of --join), through the other follower.
	R, K := F1, F2
	if R.id == "n1" {
		R, K = F2, F1
	}
	c.must(K, 204, nil, "DELETE", "/v1/cluster/nodes/"+R.id, op, nil, nil)
	c.mustErr(L, 404, "not_found", "DELETE", "/v1/cluster/nodes/"+R.id, op, nil, nil)
	c.mustErr(K, 422, "node_unreachable", "POST", "/v1/cluster/nodes", op, ctJSON,
		[]byte(`{"id":"n9","raft_addr":"`+proctest.FreeAddr(t)+`","http_addr":"`+proctest.FreeAddr(t)+`"}`))
	if lead := c.waitMembers(L, K); lead != L.id {
		t.Logf("the leadership moved from %s to %s while %s was removed", L.id, lead, R.id)
		L = c.node(lead)
	}
	c.must(K, 200, &a, "POST", "/v1/sends/s3/codes", admin, ctJSON, ctAllocBody("m1", []string{"after-removal@example.com"}))
	c.must(K, 200, nil, "PATCH", "/v1/lists/"+autumn.List.ID, admin, ctJSON, []byte(`{"low_stock_threshold":7}`))
	d = c.sameDigest(L, K)
	t.Logf("%s removed; writes go on; %s and %s agree at applied index %d", R.id, L.id, K.id, d.Applied)

	// The removed node, wiped, joins again and gets the whole state.
	R.Stop()
	if err := os.RemoveAll(R.Data); err != nil {
		t.Fatal(err)
	}
	rejoinAt := time.Now()
	logMark := len(R.Logs.String())
	R.Start()
	if !strings.Contains(R.Logs.String()[logMark:], "joined the cluster") {
		t.Fatalf("%s, wiped, did not log that it joined again", R.id)
	}
	if lead := c.waitMembers(c.nodes...); lead != L.id {
		t.Logf("the leadership moved to %s while %s joined again", lead, R.id)
		L = c.node(lead)
	}
	d = c.sameDigest(c.nodes...)
	c.sameReads(L, c.nodes, reads)
	t.Logf("%s wiped and joined again in %s: same digest at applied index %d", R.id, time.Since(rejoinAt).Round(time.Millisecond), d.Applied)

	// The leader, stopped with SIGTERM and started again, comes back with
	// its state; meanwhile the other two elect a leader and take writes.
	before := c.sameDigest(c.nodes...)
	L.Stop()
	rest := c.others(L.id)
	newLeader := c.leaderOf(rest...)
	var follower *ctNode
	for _, n := range rest {
		if n != newLeader {
			follower = n
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, body, err := c.call(follower, "POST", "/v1/sends/s3/codes", admin, ctJSON, ctAllocBody("m1", []string{"leader-down@example.com"}))
		if err == nil && st == 200 {
			break
		}
		if time.Now().After(deadline) || err == nil && st != 503 {
			t.Fatalf("write through %s while %s is down: %d %v %.300s", follower.id, L.id, st, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	restartAt := time.Now()
	logMark = len(L.Logs.String())
	L.Start()
	if loaded := L.loadedIndex(); loaded < before.Applied {
		t.Fatalf("%s restarted from applied index %d; it had applied %d before SIGTERM", L.id, loaded, before.Applied)
	}
	if strings.Contains(L.Logs.String()[logMark:], "Installed remote snapshot") {
		t.Fatalf("%s needed a snapshot after a clean restart", L.id)
	}
	c.waitMembers(c.nodes...)
	c.must(L, 200, &a, "POST", "/v1/sends/s3/codes", admin, ctJSON, ctAllocBody("m1", []string{"after-restart@example.com"}))
	d = c.sameDigest(c.nodes...)
	c.sameReads(newLeader, c.nodes, reads)
	t.Logf("%s restarted in %s (state loaded at applied index %d, stopped at %d); the leader is %s; same digest at applied index %d",
		L.id, time.Since(restartAt).Round(time.Millisecond), L.loadedIndex(), before.Applied, newLeader.id, d.Applied)

	// A forged forward header is refused on every node and changes nothing.
	before = d
	for _, n := range c.nodes {
		c.forged(n, "POST", "/v1/lists", admin, ctJSON, []byte(`{"name":"forged"}`))
		c.forged(n, "POST", "/v1/sends/s3/codes", admin, ctJSON, ctAllocBody("m1", []string{"forged@example.com"}))
		c.forged(n, "GET", "/v1/lists", admin, nil, nil)
		c.forged(n, "DELETE", "/v1/cluster/nodes/"+n.id, op, nil, nil)
	}
	after := c.sameDigest(c.nodes...)
	if after != before {
		t.Fatalf("forged forwards changed the state: %+v, then %+v", before, after)
	}
	c.waitMembers(c.nodes...)
	for _, n := range c.nodes {
		if logs := n.Logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
			logs = logs[strings.Index(logs, "WARNING: DATA RACE"):]
			t.Errorf("the race detector reported a data race in %s:\n%s", n.id, logs[:min(len(logs), 6000)])
		}
	}
	t.Logf("forged forwards refused with 401 on every node; total %s", time.Since(start).Round(time.Millisecond))
}

// Sizes of the snapshot test: snapWorkers goroutines each send
// snapRequests requests of snapChunk new recipients, snapAllocations in all.
const (
	snapWorkers     = 4
	snapRequests    = 50
	snapChunk       = 1000
	snapAllocations = snapWorkers * snapRequests * snapChunk
	snapCodes       = snapAllocations + 1000
)

var (
	compactRE  = regexp.MustCompile(`compacting logs: from=(\d+) to=(\d+)`)
	snapshotRE = regexp.MustCompile(`snapshot complete up to: index=(\d+)`)
)

// snapLoad is the allocations of the snapshot test, checked reply by reply.
type snapLoad struct {
	c       *ctCluster
	nodes   []*ctNode // where requests go, in turn
	mu      sync.Mutex
	codes   map[string]string // code -> recipient
	retries int
}

func (s *snapLoad) run(w int) error {
	send := "snap-" + strconv.Itoa(w)
	for j := range snapRequests {
		recips := ctRecipients("u%07d@snap.example", (w*snapRequests+j)*snapChunk, snapChunk)
		body := ctAllocBody("m", recips)
		n := s.nodes[(w+j)%len(s.nodes)]
		var st int
		var b []byte
		var err error
		for try := 0; ; try++ {
			st, b, err = s.c.call(n, "POST", "/v1/sends/"+send+"/codes", s.c.admin, ctJSON, body)
			if err == nil && st != 503 || try == 150 {
				break
			}
			s.mu.Lock()
			s.retries++ // retries are safe: the same recipients get the same codes
			s.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || st != 200 {
			return fmt.Errorf("%s request %d on %s: %d %v %.300s", send, j, n.id, st, err, b)
		}
		var a ctAlloc
		if err := json.Unmarshal(b, &a); err != nil {
			return fmt.Errorf("%s request %d on %s: %v", send, j, n.id, err)
		}
		if len(a.Assignments) != len(recips) {
			return fmt.Errorf("%s request %d on %s: %d assignments for %d recipients", send, j, n.id, len(a.Assignments), len(recips))
		}
		s.mu.Lock()
		for i, as := range a.Assignments {
			idx, perr := strconv.Atoi(strings.TrimPrefix(as.Code, "Z"))
			if as.Recipient != recips[i] || !strings.HasPrefix(as.Code, "Z") || perr != nil || code("Z", idx) != as.Code || idx >= snapAllocations {
				s.mu.Unlock()
				return fmt.Errorf("%s request %d on %s: assignment %d is %+v: not recipient %s with one of the first %d codes",
					send, j, n.id, i, as, recips[i], snapAllocations)
			}
			if old, dup := s.codes[as.Code]; dup && old != as.Recipient {
				s.mu.Unlock()
				return fmt.Errorf("code %s handed out to %s and to %s", as.Code, old, as.Recipient)
			}
			s.codes[as.Code] = as.Recipient
		}
		s.mu.Unlock()
	}
	return nil
}

// TestSnapshotInstallAfterCompaction: a follower is down (kill -9) while
// the cluster serves 200,000 allocations and compacts its log; started
// again, it is behind the leader's first log entry, so it catches up by
// installing the leader's snapshot, and it ends with the same applied
// index, digest and counts as the leader.
//
// --raft-snapshot-bytes is set low as well: Raft checks the entry count
// of --raft-snapshot-entries only every 60 to 120 s (SnapshotInterval),
// longer than this test runs, so the byte trigger (checked every second)
// is what takes the snapshots here.
func TestSnapshotInstallAfterCompaction(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	start := time.Now()
	c := startCtCluster(t, "--raft-snapshot-entries", "64", "--raft-trailing-entries", "32", "--raft-snapshot-bytes", "1MiB")
	L := c.node(c.waitMembers(c.nodes...))
	var created struct {
		List listJSON `json:"list"`
	}
	// Set up with calls that are safe to repeat: on a loaded machine the
	// leader may step down meanwhile.
	c.mustIdem(L, []int{201}, &created, "POST", "/v1/lists?name=snap", c.admin,
		map[string]string{"Content-Type": "text/csv", "Idempotency-Key": "snap-import"}, codesCSV("Z", 0, snapCodes))
	c.mustIdem(L, []int{200, 201}, nil, "PUT", "/v1/messages/m", c.admin, ctJSON,
		[]byte(`{"name":"Snap","campaign":"snap","campaign_type":"standard","channel":"email","doi":false}`))
	c.mustIdem(L, []int{200}, nil, "PUT", "/v1/messages/m/coupon-list", c.admin, ctJSON, []byte(`{"list_id":"`+created.List.ID+`"}`))
	L = c.node(c.waitMembers(c.nodes...))
	c.sameDigest(c.nodes...)

	// Stop a follower while the cluster is idle: its log ends at most at
	// the leader's commit index.
	followers := c.others(L.id)
	F, G := followers[0], followers[1]
	lv, err := c.view(L)
	if err != nil {
		t.Fatal(err)
	}
	fv, err := c.view(F)
	if err != nil {
		t.Fatal(err)
	}
	stopAt := max(lv.CommitIndex, fv.CommitIndex)
	F.Kill9()
	if st := c.peerState(L, F.id, "unreachable"); st != "unreachable" {
		t.Fatalf("the leader lists the killed %s as %q, want unreachable", F.id, st)
	}
	t.Logf("set up in %s; %s killed at index %d (its applied index %d)", time.Since(start).Round(time.Millisecond), F.id, stopAt, fv.AppliedIndex)

	// The allocations, through the leader and the other follower in turn.
	loadAt := time.Now()
	load := &snapLoad{c: c, nodes: []*ctNode{L, G}, codes: make(map[string]string, snapAllocations)}
	errs := make(chan error, snapWorkers)
	var wg sync.WaitGroup
	for w := range snapWorkers {
		wg.Go(func() { errs <- load.run(w) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(load.codes) != snapAllocations {
		t.Fatalf("%d distinct codes handed out, want %d", len(load.codes), snapAllocations)
	}
	loadTook := time.Since(loadAt)
	t.Logf("%d allocations in %d requests of %d in %s (%.0f/s), %d retries after 503",
		snapAllocations, snapWorkers*snapRequests, snapChunk, loadTook.Round(time.Millisecond), snapAllocations/loadTook.Seconds(), load.retries)

	// The leader took snapshots and compacted its log past where the
	// follower stopped.
	L = c.leaderOf(L, G)
	var compactedTo uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range compactRE.FindAllStringSubmatch(L.Logs.String(), -1) {
			to, _ := strconv.ParseUint(m[2], 10, 64)
			compactedTo = max(compactedTo, to)
		}
		if compactedTo > stopAt {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader %s has not compacted its log past index %d (compacted to %d); snapshots: %v",
				L.id, stopAt, compactedTo, snapshotRE.FindAllString(L.Logs.String(), -1))
		}
		time.Sleep(100 * time.Millisecond)
	}
	lv, err = c.view(L)
	if err != nil {
		t.Fatal(err)
	}
	var afterLoad ctDigest
	c.must(L, 200, &afterLoad, "GET", "/v1/cluster/digest", c.operator, nil, nil)
	snaps := len(snapshotRE.FindAllString(L.Logs.String(), -1))
	t.Logf("the leader %s took %d snapshots and compacted its log up to index %d (commit index %d); %s stopped at %d",
		L.id, snaps, compactedTo, lv.CommitIndex, F.id, stopAt)

	// The follower comes back and catches up by installing a snapshot.
	restartAt := time.Now()
	fMark, lMark := len(F.Logs.String()), len(L.Logs.String())
	F.Launch()
	// The leader's view follows it: unreachable until it serves HTTP,
	// catching_up while it installs the snapshot, then follower.
	states := []string{"unreachable"}
	deadline = time.Now().Add(90 * time.Second)
	for states[len(states)-1] != "follower" {
		select {
		case <-F.Done:
			t.Fatalf("%s exited while catching up:\n%s", F.id, proctest.Tail(F.Logs.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not a follower in the leader's view 90s after its restart: %v", F.id, states)
		}
		if st := c.peerState(L, F.id, ""); st != states[len(states)-1] {
			states = append(states, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	F.WaitReady()
	if !slices.Contains(states, "catching_up") {
		t.Fatalf("the leader never listed %s as catching_up while it installed the snapshot: %v", F.id, states)
	}
	d := c.sameDigest(c.nodes...)
	caughtUp := time.Since(restartAt)
	if !strings.Contains(F.Logs.String()[fMark:], "Installed remote snapshot") {
		t.Fatalf("%s caught up without installing a snapshot:\n%s", F.id, proctest.Tail(F.Logs.String()[fMark:], 4000))
	}
	if !strings.Contains(L.Logs.String()[lMark:], "installing snapshot on: peer="+F.id) {
		t.Fatalf("the leader %s does not log that it sent %s a snapshot", L.id, F.id)
	}
	c.waitMembers(c.nodes...)
	if d.Applied < afterLoad.Applied {
		t.Fatalf("the nodes agree at applied index %d, below the leader's %d after the load", d.Applied, afterLoad.Applied)
	}

	// Its counts, sends and histories are the leader's.
	reads := []ctRead{
		{path: "/v1/lists/" + created.List.ID, token: c.admin},
		{path: "/v1/lists", token: c.admin},
	}
	for w := range snapWorkers {
		reads = append(reads, ctRead{path: "/v1/sends/snap-" + strconv.Itoa(w), token: c.admin})
	}
	for _, i := range []int{0, snapAllocations / 2, snapAllocations - 1} {
		reads = append(reads, ctRead{path: "/v1/recipients/" + url.PathEscape(fmt.Sprintf("u%07d@snap.example", i)) + "/assignments", token: c.admin})
	}
	got := c.sameReads(L, []*ctNode{F}, reads)
	var l listJSON
	if err := json.Unmarshal(got[0], &l); err != nil {
		t.Fatal(err)
	}
	if l.Added != snapCodes || l.Used != snapAllocations || l.Available != snapCodes-snapAllocations || l.Reserved != 0 || l.Withdrawn != 0 {
		t.Fatalf("list after the load: %+v", l)
	}
	for w := range snapWorkers {
		var s sendState
		if err := json.Unmarshal(got[2+w], &s); err != nil || s.Assigned != snapRequests*snapChunk {
			t.Fatalf("send snap-%d: %+v %v", w, s, err)
		}
	}
	for _, n := range c.nodes {
		if logs := n.Logs.String(); strings.Contains(logs, "WARNING: DATA RACE") {
			logs = logs[strings.Index(logs, "WARNING: DATA RACE"):]
			t.Errorf("the race detector reported a data race in %s:\n%s", n.id, logs[:min(len(logs), 6000)])
		}
	}
	t.Logf("%s installed the leader's snapshot and caught up in %s (the leader listed it as %s): applied index %d, digest %s; total %s",
		F.id, caughtUp.Round(time.Millisecond), strings.Join(states, " → "), d.Applied, d.Digest, time.Since(start).Round(time.Millisecond))
}
