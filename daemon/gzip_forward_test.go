package daemon_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/coupond/coupond/daemon"
)

// TestGzipUploadThroughFollower: a follower forwards a gzip body to the
// leader as it came, Content-Encoding included, so the leader decodes it
// (the codes arrive whole) and refuses a bomb or a corrupt stream itself.
func TestGzipUploadThroughFollower(t *testing.T) {
	t.Parallel()
	cfgs := []daemon.Config{plainConfig(t, "n1"), plainConfig(t, "n2")}
	for i := range cfgs {
		cfgs[i].MaxBody = 2 << 20
	}
	nodes, op, admin, leader := joinedCluster(t, cfgs)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}

	post := func(path string, body []byte) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("POST", "http://"+follower.n.HTTPAddr()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "text/csv")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := follower.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return out.Bytes()
	}

	codes := csvCodes("FW", 0, 50_000)
	st, b := post("/v1/lists?name=forwarded", gz(codes))
	var created struct {
		List   fullList `json:"list"`
		Import struct {
			Imported uint64 `json:"imported"`
		} `json:"import"`
	}
	if st != http.StatusCreated || json.Unmarshal(b, &created) != nil || created.Import.Imported != 50_000 {
		t.Fatalf("gzip import through the follower: %d %s", st, b)
	}
	before := waitConverged(t, op, nodes...)

	// 3 MB of one line: past --max-body once decoded, a few KiB sent.
	if st, b := post("/v1/lists/"+created.List.ID+"/codes", gz(bytes.Repeat([]byte("BOMB\n"), 600_000))); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("gzip bomb through the follower: %d %s", st, b)
	}
	torn := gz(codes)
	if st, b := post("/v1/lists/"+created.List.ID+"/codes", torn[:len(torn)-5]); st != http.StatusBadRequest || !bytes.Contains(b, []byte("invalid_gzip")) {
		t.Fatalf("a torn gzip stream through the follower: %d %s", st, b)
	}
	if after := waitConverged(t, op, nodes...); after.Digest != before.Digest {
		t.Fatal("a refused gzip body changed the state")
	}
}
