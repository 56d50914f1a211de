package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A fake cluster for the --spawn-cluster tests, played by the test binary
// (see TestMain): node 1 is fakeAPI plus the cluster calls; a node started
// with --join asks node 1 to add it, then forwards every call to node 1
// except /readyz and /v1/cluster/digest. The digest is a count of the
// writes node 1 served, so every node agrees unless
// COUPONBENCH_FAKE_DIVERGE names one that lies. COUPONBENCH_FAKE_JOIN_FAIL
// names a node that exits instead of joining.

const fakeOperatorToken = "fake-operator-token"

type fakeLeader struct {
	next    http.Handler
	id      string
	mu      sync.Mutex
	nodes   []ClusterNode
	applied atomic.Int64
}

func newFakeLeader(id, raftAddr, httpAddr string, next http.Handler) *fakeLeader {
	return &fakeLeader{next: next, id: id, nodes: []ClusterNode{{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr, Suffrage: "voter", State: "leader"}}}
}

func isOperator(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+fakeOperatorToken
}

func (f *fakeLeader) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/cluster") {
		f.next.ServeHTTP(w, r)
		if r.Method != http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/") {
			f.applied.Add(1)
		}
		return
	}
	if !isOperator(r) {
		writeErr(w, http.StatusUnauthorized, "unauthorized", "operator token needed")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster":
		n := f.applied.Load()
		writeJSON(w, http.StatusOK, map[string]any{"leader": f.id, "nodes": f.nodes, "term": 1, "commit_index": n, "applied_index": n})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/cluster/nodes":
		var m ClusterNode
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.ID == "" {
			writeErr(w, http.StatusBadRequest, "invalid_json", fmt.Sprint(err))
			return
		}
		m.Suffrage, m.State = "voter", "follower"
		f.nodes = append(f.nodes, m)
		writeJSON(w, http.StatusOK, m)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/cluster/digest":
		n := f.applied.Load()
		writeJSON(w, http.StatusOK, Digest{Node: f.id, AppliedIndex: uint64(n), Digest: json.RawMessage(fmt.Sprintf(`"d%08x"`, n))})
	default:
		writeErr(w, http.StatusNotFound, "not_found", "no such call")
	}
}

func fakeJoinerMain(id, httpAddr, raftAddr, join, tokenFile string) int {
	if os.Getenv("COUPONBENCH_FAKE_JOIN_FAIL") == id {
		fmt.Fprintln(os.Stderr, "fake: cannot join, as told")
		return 1
	}
	tok, err := ReadToken(tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	leader := &url.URL{Scheme: "http", Host: join}
	proxy := httputil.NewSingleHostReverseProxy(leader)
	proxy.Transport = &http.Transport{Proxy: nil}
	var joined atomic.Bool
	go func() {
		body, _ := json.Marshal(ClusterNode{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr})
		for {
			req, _ := http.NewRequest(http.MethodPost, leader.String()+"/v1/cluster/nodes", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					joined.Store(true)
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if !joined.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		case "/v1/cluster/digest":
			req, _ := http.NewRequest(http.MethodGet, leader.String()+r.URL.Path, nil)
			req.Header.Set("Authorization", r.Header.Get("Authorization"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				writeErr(w, http.StatusBadGateway, "unavailable", err.Error())
				return
			}
			defer resp.Body.Close()
			var d Digest
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&d) != nil {
				b, _ := io.ReadAll(resp.Body)
				w.WriteHeader(resp.StatusCode)
				w.Write(b)
				return
			}
			d.Node = id
			if os.Getenv("COUPONBENCH_FAKE_DIVERGE") == id {
				d.Digest = json.RawMessage(`"diverged"`)
			}
			writeJSON(w, http.StatusOK, d)
		default:
			proxy.ServeHTTP(w, r)
		}
	})
	return serveFake(httpAddr, h)
}
