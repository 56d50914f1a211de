package daemon_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/coupond/coupond/daemon"
)

// TestGzipUploadThroughFollower: a follower forwards a gzip body to the
// leader as it came, Content-Encoding included, so the leader decodes it
// (the codes arrive whole) and refuses a bomb or a corrupt stream itself.
func TestGzipUploadThroughFollower(t *testing.T) {
	t.Parallel()
	nodes := make([]*clusterNode, 2)
	for i := range nodes {
		cfg := daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: freeAddr(t),
			NodeID: fmt.Sprintf("n%d", i+1), LogFormat: "json", LogLevel: "warn", MaxBody: 2 << 20}
		if i > 0 {
			cfg.Join = nodes[0].n.HTTPAddr()
			cfg.TokenFile = filepath.Join(nodes[0].cfg.DataDir, "operator.token")
		}
		nodes[i] = startClusterNode(t, cfg, nil)
		if i > 0 {
			waitJoined(t, nodes[0], nodes[i])
		}
	}
	op, admin := nodes[0].readToken("operator.token"), nodes[0].readToken("admin.token")
	waitConverged(t, op, nodes...)
	leader := leaderAmong(nodes...)
	if leader == nil {
		t.Fatal("no single leader")
	}
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
