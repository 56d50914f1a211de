package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/coupond/coupond/daemon"
)

// keyedImport sends a CSV import with an Idempotency-Key and answers the
// status and body.
func keyedImport(cn *clusterNode, path, token, key string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest("POST", cn.scheme+"://"+cn.n.HTTPAddr()+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Idempotency-Key", key)
	resp, err := cn.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestInOtherListsSurvivesLeaderChange: in_other_lists is counted by every
// replica's own apply and stored with the upload, so a retry answered by a
// new leader (after the list the codes stood in was deleted) is the first
// answer; and the overlap report of a follower matches the leader's.
func TestInOtherListsSurvivesLeaderChange(t *testing.T) {
	fn := newFaultNet(t)
	cfgs := make([]daemon.Config, 3)
	for i := range cfgs {
		id := fmt.Sprintf("n%d", i+1)
		layer := fn.layer(t, id)
		cfgs[i] = daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: layer.Addr().String(),
			NodeID: id, LogFormat: "json", LogLevel: "warn", RaftLayer: layer}
	}
	nodes, op, admin, leader := joinedCluster(t, cfgs)
	var follower *clusterNode
	for _, cn := range nodes {
		if cn != leader {
			follower = cn
			break
		}
	}

	var a struct {
		List struct {
			ID string `json:"id"`
		} `json:"list"`
	}
	follower.must(201, &a, "POST", "/v1/lists?name=a", admin, "text/csv", csvCodes("S", 0, 5000))
	// B: 1,200 of A's codes and 800 new ones, through a follower.
	body := append(csvCodes("S", 3800, 1200), csvCodes("N", 0, 800)...)
	st, first, err := keyedImport(follower, "/v1/lists?name=b", admin, "b-1", body)
	if err != nil || st != 201 {
		t.Fatalf("import b: %d %s %v", st, first, err)
	}
	var created struct {
		List struct {
			ID string `json:"id"`
		} `json:"list"`
		Import struct {
			Imported     uint64 `json:"imported"`
			InOtherLists uint64 `json:"in_other_lists"`
		} `json:"import"`
	}
	if err := json.Unmarshal(first, &created); err != nil || created.Import.Imported != 2000 || created.Import.InOtherLists != 1200 {
		t.Fatalf("import b: %s %v", first, err)
	}
	waitConverged(t, op, nodes...)

	// The report is a local read: a follower answers what the leader does.
	report := func(cn *clusterNode) string {
		t.Helper()
		_, b, err := cn.do("GET", "/v1/lists/"+created.List.ID+"/overlaps", admin, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := fmt.Sprintf(`{"overlaps":[{"list_id":%q,"name":"a","codes":1200,"examples":["S000003800","S000003801","S000003802","S000003803","S000003804"]}]}`, a.List.ID)
	for _, cn := range nodes {
		var got, exp any
		json.Unmarshal([]byte(report(cn)), &got)
		json.Unmarshal([]byte(want), &exp)
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("report on %s: %s\nwant %s", cn.id, report(cn), want)
		}
	}

	// A goes, the leader goes: the retry is answered by a new leader from
	// its own record, with the count of the first commit.
	leader.mustJSON(204, nil, "DELETE", "/v1/lists/"+a.List.ID, admin, nil)
	waitConverged(t, op, nodes...)
	leader.close()
	var rest []*clusterNode
	for _, cn := range nodes {
		if cn != leader {
			rest = append(rest, cn)
		}
	}
	waitFor(t, 30*time.Second, "a new leader", func() (bool, string) {
		l := leaderAmong(rest...)
		return l != nil, fmt.Sprint("leader ", l != nil)
	})
	var again []byte
	waitFor(t, 30*time.Second, "the retry answers", func() (bool, string) {
		st, again, err = keyedImport(rest[0], "/v1/lists?name=b", admin, "b-1", body)
		return err == nil && st == 201, fmt.Sprintf("%d %s %v", st, again, err)
	})
	var retried struct {
		List struct {
			ID string `json:"id"`
		} `json:"list"`
		Import map[string]uint64 `json:"import"`
	}
	if err := json.Unmarshal(again, &retried); err != nil || retried.List.ID != created.List.ID ||
		retried.Import["in_other_lists"] != 1200 || retried.Import["imported"] != 2000 {
		t.Fatalf("retry after the leader change: %s (first %s)", again, first)
	}
}
