package main

// Erasure of a recipient with real processes (SPEC §4 "Erasure of a
// recipient": "within 60 s of the answer no file of any node's data folder
// holds its bytes"; issue 18 acceptance b).

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ctExport is GET /v1/sends/{id}/assignments.
type ctExport struct {
	Assignments []struct {
		Recipient string `json:"recipient"`
		Code      string `json:"code"`
	} `json:"assignments"`
}

// dataFilesHolding names, per needle, the files under dir that hold it
// (each file read whole; files deleted during the walk are skipped).
func dataFilesHolding(t *testing.T, dir string, needles []string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		for _, s := range needles {
			if bytes.Contains(b, []byte(s)) {
				found[s] = append(found[s], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

var erasedForm = regexp.MustCompile(`^erased:[0-9a-f]{32}$`)

// TestErasureLeavesTheDisk: 1,000 recipients get codes in 5 sends on three
// nodes whose Raft took snapshots and kept its trailing log; 10 of them
// are erased. Every node then answers them erased (history empty, exports
// and code lookups show the erased form, the same on every node, counts
// unchanged, digests equal), and within 60 s no file of any node's data
// folder holds their bytes, while a recipient not erased is still found
// there (so the search can fail). A node restarted from its disk still
// shows them erased.
func TestErasureLeavesTheDisk(t *testing.T) {
	t.Parallel() // its own processes and folders
	if testing.Short() {
		t.Skip("three processes, 5,000 assignments")
	}
	// Small snapshot threshold: Raft takes snapshots holding the plain
	// recipients before the erasure, which the purge must delete; the
	// default trailing entries keep every allocation in raft.db too.
	c := startCtClusterOf(t, fastBinary(t), "--raft-snapshot-entries", "8")
	leaderID := c.waitMembers(c.nodes...)
	L := c.node(leaderID)
	admin := c.admin

	const nRecip, nSends, nErase = 1000, 5, 10
	recips := make([]string, nRecip)
	for i := range recips {
		var b [16]byte
		rand.Read(b[:])
		recips[i] = hex.EncodeToString(b[:]) // 32 hex chars: found on disk only as itself
	}
	var list, list2 listJSON
	c.must(L, 201, &list, "POST", "/v1/lists", admin, ctJSON, []byte(`{"name":"erasure"}`))
	c.must(L, 200, nil, "POST", "/v1/lists/"+list.ID+"/codes", admin, ctCSV, codesCSV("E", 0, nRecip*nSends))
	c.must(L, 201, nil, "PUT", "/v1/messages/m1", admin, ctJSON,
		[]byte(`{"name":"m1","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`))
	c.must(L, 200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, ctJSON, []byte(`{"list_id":"`+list.ID+`"}`))
	codeOf := map[string][]string{} // recipient -> its codes, one per send
	for s := 1; s <= nSends; s++ {
		send := fmt.Sprintf("s%d", s)
		for from := 0; from < nRecip; from += 250 {
			// Through the followers as well: every node writes its log.
			n := c.nodes[(s+from/250)%len(c.nodes)]
			var a ctAlloc
			c.must(n, 200, &a, "POST", "/v1/sends/"+send+"/codes", admin, ctJSON, ctAllocBody("m1", recips[from:from+250]))
			for _, as := range a.Assignments {
				codeOf[as.Recipient] = append(codeOf[as.Recipient], as.Code)
			}
		}
	}
	for _, r := range recips {
		if len(codeOf[r]) != nSends {
			t.Fatalf("recipient %s has %d codes, want %d", r, len(codeOf[r]), nSends)
		}
	}
	var before listJSON
	c.must(L, 200, &before, "GET", "/v1/lists/"+list.ID+"?consistency=strong", admin, nil, nil)
	erased, kept := recips[:nErase], recips[nErase]

	// Before the erasure every node has a snapshot, and its files hold
	// the recipients: the search below can find them.
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range c.nodes {
		for {
			snaps, _ := filepath.Glob(filepath.Join(n.Data, "snapshots", "snapshots", "*", "meta.json"))
			if len(snaps) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s took no snapshot within 60 s", n.id)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, n := range c.nodes {
		found := dataFilesHolding(t, n.Data, erased[:1])
		if len(found[erased[0]]) == 0 {
			t.Fatalf("%s: no file holds a recipient before the erasure: the search proves nothing", n.id)
		}
		t.Logf("%s before the erasure: %s is in %v", n.id, erased[0], found[erased[0]])
	}

	// A steady load on another list from here until the disk is clean:
	// the purge runs, and raft.db is rewritten, while allocations go on.
	c.must(L, 201, &list2, "POST", "/v1/lists", admin, ctJSON, []byte(`{"name":"load"}`))
	c.must(L, 200, nil, "POST", "/v1/lists/"+list2.ID+"/codes", admin, ctCSV, codesCSV("L", 0, 50000))
	c.must(L, 201, nil, "PUT", "/v1/messages/m2", admin, ctJSON,
		[]byte(`{"name":"m2","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`))
	c.must(L, 200, nil, "PUT", "/v1/messages/m2/coupon-list", admin, ctJSON, []byte(`{"list_id":"`+list2.ID+`"}`))
	stopLoad, loadDone := make(chan struct{}), make(chan struct{})
	var loaded int
	var loadErr error
	go func() {
		defer close(loadDone)
		F := c.others(leaderID)[0]
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			default:
			}
			st, b, err := c.call(F, "POST", "/v1/sends/load/codes", admin, ctJSON,
				ctAllocBody("m2", []string{fmt.Sprintf("load-%06d@example.com", i)}))
			switch {
			case err == nil && st == 200:
				loaded++
			case err == nil && st == 503 && (ctErrCode(b) == "no_leader" || ctErrCode(b) == "not_ready"):
			default:
				loadErr = fmt.Errorf("allocation %d under the purge: %d %v %.200s", i, st, err, b)
				return
			}
		}
	}()
	erasedAt := time.Now()
	for i, r := range erased {
		var out struct {
			Erased int `json:"erased"`
		}
		c.must(c.nodes[i%len(c.nodes)], 200, &out, "DELETE", "/v1/recipients/"+url.PathEscape(r), admin, nil, nil)
		if out.Erased != nSends {
			t.Fatalf("erasing %s: erased %d, want %d", r, out.Erased, nSends)
		}
	}
	answered := time.Now()
	var again struct {
		Erased int `json:"erased"`
	}
	c.must(L, 200, &again, "DELETE", "/v1/recipients/"+url.PathEscape(erased[0]), admin, nil, nil)
	if again.Erased != 0 {
		t.Fatalf("a second erasure answered %d, want 0", again.Erased)
	}
	t.Logf("%d erasures answered in %s", nErase, answered.Sub(erasedAt).Round(time.Millisecond))

	checkErased := func(n *ctNode) {
		t.Helper()
		for _, r := range erased {
			var h struct {
				Assignments []json.RawMessage `json:"assignments"`
			}
			c.must(n, 200, &h, "GET", "/v1/recipients/"+url.PathEscape(r)+"/assignments?consistency=strong", admin, nil, nil)
			if len(h.Assignments) != 0 {
				t.Fatalf("%s: the history of erased %s holds %d assignments", n.id, r, len(h.Assignments))
			}
		}
		var h struct {
			Assignments []json.RawMessage `json:"assignments"`
		}
		c.must(n, 200, &h, "GET", "/v1/recipients/"+url.PathEscape(kept)+"/assignments?consistency=strong", admin, nil, nil)
		if len(h.Assignments) != nSends {
			t.Fatalf("%s: the history of %s, not erased, holds %d assignments", n.id, kept, len(h.Assignments))
		}
		// Each erased recipient has one erased form, in every send.
		formOf := map[string]string{}
		for _, r := range erased {
			for _, code := range codeOf[r] {
				formOf[code] = r
			}
		}
		form := map[string]string{}
		for s := 1; s <= nSends; s++ {
			body := c.must(n, 200, nil, "GET", fmt.Sprintf("/v1/sends/s%d/assignments?consistency=strong", s), admin, nil, nil)
			for _, r := range erased {
				if bytes.Contains(body, []byte(r)) {
					t.Fatalf("%s: the export of s%d holds erased %s", n.id, s, r)
				}
			}
			var ex ctExport
			if err := json.Unmarshal(body, &ex); err != nil {
				t.Fatalf("%s: export of s%d: %v", n.id, s, err)
			}
			if len(ex.Assignments) != nRecip {
				t.Fatalf("%s: export of s%d has %d rows, want %d", n.id, s, len(ex.Assignments), nRecip)
			}
			seen := 0
			for _, a := range ex.Assignments {
				r, ok := formOf[a.Code]
				if !ok {
					continue
				}
				seen++
				if !erasedForm.MatchString(a.Recipient) {
					t.Fatalf("%s: s%d, code %s of erased %s shows recipient %q", n.id, s, a.Code, r, a.Recipient)
				}
				if f, ok := form[r]; ok && f != a.Recipient {
					t.Fatalf("%s: erased %s shows as %s and as %s", n.id, r, f, a.Recipient)
				}
				form[r] = a.Recipient
			}
			if seen != nErase {
				t.Fatalf("%s: export of s%d has %d codes of erased recipients, want %d", n.id, s, seen, nErase)
			}
		}
		code := codeOf[erased[0]][0]
		body := c.must(n, 200, nil, "GET", "/v1/lists/"+list.ID+"/codes/"+code+"?consistency=strong", admin, nil, nil)
		if bytes.Contains(body, []byte(erased[0])) || !bytes.Contains(body, []byte(form[erased[0]])) {
			t.Fatalf("%s: lookup of code %s: %s, want the erased form %s", n.id, code, body, form[erased[0]])
		}
		var l listJSON
		c.must(n, 200, &l, "GET", "/v1/lists/"+list.ID+"?consistency=strong", admin, nil, nil)
		if l.counts() != before.counts() {
			t.Fatalf("%s: list counts %v after the erasure, %v before", n.id, l.counts(), before.counts())
		}
	}
	for _, n := range c.nodes {
		checkErased(n)
	}

	// The disk: every node, every file, within 60 s of the answers.
	needles := append([]string{kept}, erased...)
	for {
		var left []string
		for _, n := range c.nodes {
			found := dataFilesHolding(t, n.Data, needles)
			if len(found[kept]) == 0 {
				t.Fatalf("%s: no file holds %s, which was not erased: the search proves nothing", n.id, kept)
			}
			for _, r := range erased {
				if f := found[r]; len(f) > 0 {
					left = append(left, fmt.Sprintf("%s: %s in %v", n.id, r, f))
				}
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Since(answered) > 60*time.Second {
			t.Fatalf("60 s after the erasure, erased recipients are still on disk:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("no data folder holds an erased recipient %s after the last answer", time.Since(answered).Round(100*time.Millisecond))
	close(stopLoad)
	<-loadDone
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	t.Logf("%d allocations of the steady load went on meanwhile", loaded)
	c.sameDigest(c.nodes...)
	for _, n := range c.nodes {
		logs := n.Logs.String()
		i := strings.Index(logs, "purged the disk after an erasure")
		if i < 0 {
			t.Fatalf("%s does not log its purge", n.id)
		}
		line := logs[strings.LastIndex(logs[:i], "\n")+1:]
		t.Logf("%s: %s", n.id, line[:strings.IndexByte(line, '\n')+1])
		if m := scrape(t, n.URL("/metrics")); !strings.Contains(m, fmt.Sprintf("\ncoupond_assignments_erased_total %d\n", len(erased)*nSends)) ||
			strings.Contains(m, "\ncoupond_erasure_purge_duration_seconds_count 0\n") ||
			!strings.Contains(m, "\ncoupond_erasure_purge_duration_seconds_count ") {
			t.Fatalf("%s: the metrics do not show %d assignments erased and a purge done", n.id, len(erased)*nSends)
		}
		for _, r := range erased {
			if strings.Contains(n.Logs.String(), r) {
				t.Fatalf("%s logs erased %s", n.id, r)
			}
		}
	}

	// A follower restarted from its disk still shows them erased.
	F := c.others(leaderID)[0]
	F.Stop()
	F.Launch()
	c.waitMembers(c.nodes...)
	c.sameDigest(c.nodes...)
	checkErased(F)
	if found := dataFilesHolding(t, F.Data, erased); len(found) > 0 {
		t.Fatalf("%s after its restart: erased recipients on disk: %v", F.id, found)
	}
}

// TestErasurePurgedAfterCrash: a node killed (SIGKILL) right after it
// answered erasures, before or while it purged, purges at its next start:
// the erase entry still in its log, or the mark a purge leaves until it
// ends, tells it to. Each round kills at another moment.
func TestErasurePurgedAfterCrash(t *testing.T) {
	t.Parallel() // its own processes and folders
	if testing.Short() {
		t.Skip("kills and restarts a process")
	}
	p := newProcOf(t, fastBinary(t))
	p.Start()
	admin := p.Token("admin.token")
	mustDo := func(want int, method, path, ct string, body []byte) []byte {
		t.Helper()
		st, b := p.do(method, path, admin, ct, bytes.NewReader(body))
		if st != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
		}
		return b
	}
	var list listJSON
	json.Unmarshal(mustDo(201, "POST", "/v1/lists", "application/json", []byte(`{"name":"crash"}`)), &list)
	mustDo(200, "POST", "/v1/lists/"+list.ID+"/codes", "text/csv", codesCSV("C", 0, 1000))
	mustDo(201, "PUT", "/v1/messages/m1", "application/json",
		[]byte(`{"name":"m1","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`))
	mustDo(200, "PUT", "/v1/messages/m1/coupon-list", "application/json", []byte(`{"list_id":"`+list.ID+`"}`))
	recips := make([]string, 300)
	for i := range recips {
		var b [16]byte
		rand.Read(b[:])
		recips[i] = hex.EncodeToString(b[:])
	}
	mustDo(200, "POST", "/v1/sends/s1/codes", "application/json", ctAllocBody("m1", recips))
	kept := recips[len(recips)-1]
	// 0: before the purge starts; 1100 ms: the purge (1 s after the
	// erasure) is under way or just done. The last round also removes the
	// purge mark, as if the kill came before the node wrote it: the erase
	// entries in the log must do.
	delays := []time.Duration{0, 1100 * time.Millisecond, 1030 * time.Millisecond, 0}
	for round, delay := range delays {
		erased := recips[round*3 : round*3+3]
		for _, r := range erased {
			mustDo(200, "DELETE", "/v1/recipients/"+url.PathEscape(r), "", nil)
		}
		time.Sleep(delay)
		p.Kill9()
		marker := false
		if _, err := os.Stat(filepath.Join(p.Data, "purge.pending")); err == nil {
			marker = true
		}
		if round == len(delays)-1 {
			os.Remove(filepath.Join(p.Data, "purge.pending"))
			marker = false
		}
		p.restart()
		deadline := time.Now().Add(60 * time.Second)
		for {
			found := dataFilesHolding(t, p.Data, append([]string{kept}, erased...))
			if len(found[kept]) == 0 {
				t.Fatalf("round %d: no file holds %s, which was not erased: the search proves nothing", round, kept)
			}
			delete(found, kept)
			if len(found) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d (killed %s after the erasures, purge marked: %v): 60 s after the restart erased recipients are on disk: %v",
					round, delay, marker, found)
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, r := range erased {
			var h struct {
				Assignments []json.RawMessage `json:"assignments"`
			}
			json.Unmarshal(mustDo(200, "GET", "/v1/recipients/"+url.PathEscape(r)+"/assignments", "", nil), &h)
			if len(h.Assignments) != 0 {
				t.Fatalf("round %d: erased %s has a history after the restart", round, r)
			}
		}
		t.Logf("round %d: killed %s after the erasures (purge marked: %v); the disk was clean after the restart", round, delay, marker)
	}
}

// TestErasureReachesANodeThatWasDown: a follower stopped before an
// erasure comes back after the leader's purge dropped the log holding it;
// it installs the leader's snapshot (whose restore signals an erasure when
// the state has erased anyone), and its own disk (old log, old snapshots,
// old tables) is purged too.
func TestErasureReachesANodeThatWasDown(t *testing.T) {
	t.Parallel() // its own processes and folders
	if testing.Short() {
		t.Skip("three processes")
	}
	c := startCtClusterOf(t, fastBinary(t), "--raft-snapshot-entries", "8")
	leaderID := c.waitMembers(c.nodes...)
	L, F := c.node(leaderID), c.others(leaderID)[0]
	admin := c.admin
	recips := make([]string, 200)
	for i := range recips {
		var b [16]byte
		rand.Read(b[:])
		recips[i] = hex.EncodeToString(b[:])
	}
	var list listJSON
	c.must(L, 201, &list, "POST", "/v1/lists", admin, ctJSON, []byte(`{"name":"down"}`))
	// A big import first: its log entries take the low pages of raft.db,
	// which bolt reuses first, so the allocation's pages outlast the few
	// writes of this test unless the purge rewrites the file.
	c.must(L, 200, nil, "POST", "/v1/lists/"+list.ID+"/codes", admin, ctCSV, codesCSV("D", 0, 100000))
	c.must(L, 201, nil, "PUT", "/v1/messages/m1", admin, ctJSON,
		[]byte(`{"name":"m1","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`))
	c.must(L, 200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, ctJSON, []byte(`{"list_id":"`+list.ID+`"}`))
	c.must(L, 200, nil, "POST", "/v1/sends/s1/codes", admin, ctJSON, ctAllocBody("m1", recips))
	c.sameDigest(c.nodes...)
	erased, kept := recips[:5], recips[len(recips)-1]
	if found := dataFilesHolding(t, F.Data, erased[:1]); len(found) == 0 {
		t.Fatalf("%s holds no recipient before the erasure: the search proves nothing", F.id)
	}
	F.Stop()
	for _, r := range erased {
		c.must(L, 200, nil, "DELETE", "/v1/recipients/"+url.PathEscape(r), admin, nil, nil)
	}
	// The leader's purge drops the log through the erasures: F can only
	// catch up from a snapshot.
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(L.Logs.String(), "purged the disk after an erasure") {
		if time.Now().After(deadline) {
			t.Fatal("the leader did not purge within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	F.Launch()
	c.waitMembers(c.nodes...)
	c.sameDigest(c.nodes...)
	if !strings.Contains(F.Logs.String(), "restoring a snapshot from the leader") {
		t.Fatalf("%s caught up without installing a snapshot: the test does not test it", F.id)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		found := dataFilesHolding(t, F.Data, append([]string{kept}, erased...))
		if len(found[kept]) == 0 {
			t.Fatalf("no file of %s holds %s, which was not erased: the search proves nothing", F.id, kept)
		}
		delete(found, kept)
		if len(found) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("60 s after %s came back, erased recipients are on its disk: %v", F.id, found)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// scrape reads a node's /metrics.
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return string(b)
}
