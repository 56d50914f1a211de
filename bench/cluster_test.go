package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTargetNodes(t *testing.T) {
	cases := []struct {
		target        string
		nodes, leader int
		want          []int
	}{
		{TargetLeader, 3, 0, []int{0}},
		{TargetLeader, 3, 2, []int{2}},
		{TargetFollower, 3, 0, []int{1}},
		{TargetFollower, 3, 1, []int{0}},
		{TargetAll, 3, 1, []int{0, 1, 2}},
		{TargetAll, 1, 0, []int{0}},
	}
	for _, c := range cases {
		if got := targetNodes(c.target, c.nodes, c.leader); !slices.Equal(got, c.want) {
			t.Errorf("targetNodes(%s, %d, leader %d) = %v, want %v", c.target, c.nodes, c.leader, got, c.want)
		}
	}
}

func TestConnClientRoundRobin(t *testing.T) {
	a, b, c := NewClient("127.0.0.1:1", "", 2), NewClient("127.0.0.1:2", "", 2), NewClient("127.0.0.1:3", "", 2)
	env := &Env{Client: a, Clients: []*Client{a, b, c}}
	want := []*Client{a, b, c, a, b, c, a}
	for i, w := range want {
		if got := env.connClient(i); got != w {
			t.Errorf("connection %d goes to %s, want %s", i, got.base, w.base)
		}
	}
	single := &Env{Client: a}
	if single.connClient(5) != a {
		t.Error("without Clients every connection goes to Client")
	}
}

func TestValidateCluster(t *testing.T) {
	base := DefaultConfig()
	base.Scenario = "small-sends"
	ok := []func(*Config){
		func(c *Config) { c.SpawnCluster = 3 },
		func(c *Config) { c.SpawnCluster, c.Spawn = 3, true },
		func(c *Config) { c.SpawnCluster, c.Target = 3, TargetFollower },
		func(c *Config) { c.SpawnCluster, c.Target, c.Keep = 2, TargetAll, true },
		func(c *Config) { c.SpawnCluster, c.Target = 1, TargetAll },
		func(c *Config) { c.Spawn, c.Keep = true, true },
	}
	for i, mod := range ok {
		cfg := base
		mod(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("ok case %d: %v", i, err)
		}
	}
	bad := map[string]func(*Config){
		"negative":              func(c *Config) { c.SpawnCluster = -1 },
		"cluster and pid":       func(c *Config) { c.SpawnCluster, c.ServerPID = 3, 42 },
		"unknown target":        func(c *Config) { c.SpawnCluster, c.Target = 3, "random" },
		"target without spawn":  func(c *Config) { c.Target = TargetAll },
		"target with one spawn": func(c *Config) { c.Spawn, c.Target = true, TargetFollower },
		"follower of one node":  func(c *Config) { c.SpawnCluster, c.Target = 1, TargetFollower },
		"keep without spawn":    func(c *Config) { c.Keep = true },
		"restart in a cluster":  func(c *Config) { c.Scenario, c.Spawn, c.SpawnCluster, c.Restart = "import", true, 3, true },
	}
	for name, mod := range bad {
		cfg := base
		mod(&cfg)
		var ue *UsageError
		if err := cfg.Validate(); !errors.As(err, &ue) {
			t.Errorf("%s: err = %v, want a usage error", name, err)
		}
	}
}

func TestDigestsAgree(t *testing.T) {
	d := func(node string, idx uint64, dg string) Digest {
		return Digest{Node: node, AppliedIndex: idx, Digest: json.RawMessage(dg)}
	}
	cases := []struct {
		ds   []Digest
		want bool
	}{
		{nil, false},
		{[]Digest{d("n1", 5, `"ab"`)}, true},
		{[]Digest{d("n1", 5, `"ab"`), d("n2", 5, `"ab"`), d("n3", 5, `"ab"`)}, true},
		{[]Digest{d("n1", 5, `"ab"`), d("n2", 4, `"ab"`)}, false},
		{[]Digest{d("n1", 5, `"ab"`), d("n2", 5, `"ac"`)}, false},
		{[]Digest{d("n1", 5, ``), d("n2", 5, ``)}, false},
	}
	for i, c := range cases {
		if got := digestsAgree(c.ds); got != c.want {
			t.Errorf("case %d: %v, want %v", i, got, c.want)
		}
	}
	if s := shortDigest(json.RawMessage(`"0123456789abcdef0123"`)); s != "0123456789abcdef…" {
		t.Errorf("shortDigest = %q", s)
	}
}

func TestClusterInfoVoters(t *testing.T) {
	var ci ClusterInfo
	body := `{"leader":"n1","nodes":[{"id":"n1","suffrage":"voter","state":"leader"},{"id":"n2","suffrage":"Voter"},{"id":"n3","suffrage":"nonvoter"}],"term":2,"commit_index":9,"applied_index":9}`
	if err := json.Unmarshal([]byte(body), &ci); err != nil {
		t.Fatal(err)
	}
	if ci.Voters() != 2 || ci.Leader == nil || *ci.Leader != "n1" || ci.CommitIndex != 9 {
		t.Fatalf("%+v: %d voters", ci, ci.Voters())
	}
	if err := json.Unmarshal([]byte(`{"leader":null,"nodes":[]}`), &ci); err != nil || ci.Leader != nil {
		t.Fatalf("null leader: %+v %v", ci, err)
	}
}

// clusterConfig runs scenario sc on a spawned cluster of three fake nodes
// (the test binary, see TestMain).
func clusterConfig(t *testing.T, sc, target string) (Config, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COUPONBENCH_FAKE_NODE", "1")
	cfg, out, errOut := testConfig(t, "", "")
	cfg.Scenario, cfg.SpawnCluster, cfg.Target, cfg.Bin, cfg.JSON = sc, 3, target, exe, true
	cfg.Recipients, cfg.Chunk, cfg.Codes, cfg.CodesSet = 5_000, 1_000, 20_000, true
	cfg.Conc, cfg.Duration = 4, 300*time.Millisecond
	return cfg, out, errOut
}

func TestSpawnClusterTargets(t *testing.T) {
	for _, target := range []string{TargetLeader, TargetFollower, TargetAll} {
		for _, sc := range []string{"small-sends", "big-send"} {
			t.Run(target+"/"+sc, func(t *testing.T) {
				cfg, out, errOut := clusterConfig(t, sc, target)
				cfg.Keep = target == TargetAll
				if err := Run(context.Background(), cfg); err != nil {
					t.Fatalf("Run: %v\nstderr: %s", err, errOut)
				}
				_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
				if m["cluster_nodes"] != 3.0 || m["target"] != target || m["digests_equal"] != true || m["applied_index"].(float64) < 2 {
					t.Errorf("result: %s", out)
				}
				if m["server_peak_rss_mib"].(float64) <= 0 || m["server_cpu_cores"] == nil {
					t.Errorf("no server figures: %s", out)
				}
				log := errOut.String()
				if !strings.Contains(log, sc+": setup: every node at applied_index") {
					t.Errorf("the timed part did not wait for every node to apply the setup: %s", log)
				}
				if !strings.Contains(log, "digests=equal => OK") || !strings.Contains(log, "(3 nodes, summed)") || !strings.Contains(log, "coupond (3 nodes)") {
					t.Errorf("summary: %s", log)
				}
				kept := strings.Count(log, "couponbench: kept n")
				if cfg.Keep != (kept == 3) {
					t.Errorf("keep %v, %d kept folders in the log", cfg.Keep, kept)
				}
				for _, line := range strings.Split(log, "\n") {
					if _, rest, ok := strings.Cut(line, "couponbench: kept "); ok {
						root := filepath.Dir(strings.Fields(rest)[1]) // the fake joiners write no data
						if _, err := os.Stat(filepath.Join(root, "coupond.log")); err != nil {
							t.Errorf("kept folder %s: %v", root, err)
						}
						os.RemoveAll(root)
					}
				}
			})
		}
	}
}

func TestSpawnClusterDiverges(t *testing.T) {
	cfg, out, errOut := clusterConfig(t, "small-sends", TargetLeader)
	t.Setenv("COUPONBENCH_FAKE_DIVERGE", "n3")
	cfg.Timing.ConvergeTimeout = 300 * time.Millisecond
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "did not reach the same applied_index and digest")
	if !strings.Contains(err.Error(), `n3 applied_index=`) || !strings.Contains(errOut.String(), "digests=differ => FAIL") {
		t.Fatalf("err %v\nstderr %s", err, errOut)
	}
}

func TestSpawnClusterImport(t *testing.T) {
	cfg, out, errOut := clusterConfig(t, "import", TargetFollower)
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if m["codes"] != 20000.0 || m["digests_equal"] != true || !strings.Contains(errOut.String(), "verify: digests=equal") {
		t.Fatalf("result %s\nstderr %s", out, errOut)
	}
}

func TestStrongReads(t *testing.T) {
	c := NewClient("127.0.0.1:1", "tok", 2)
	c.Strong = true
	for path, want := range map[string]string{
		"/v1/lists/L1":                "/v1/lists/L1?consistency=strong",
		"/v1/recipients/a%40b?x=1":    "/v1/recipients/a%40b?x=1&consistency=strong",
		"/readyz":                     "/readyz",
		"/v1/sends/s1/codes [POST]":   "/v1/sends/s1/codes",
		"/v1/lists?name=bench [POST]": "/v1/lists?name=bench",
	} {
		method := http.MethodGet
		if p, ok := strings.CutSuffix(path, " [POST]"); ok {
			path, method = p, http.MethodPost
		}
		req, err := c.newRequest(context.Background(), method, path, nil, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := req.URL.RequestURI(); got != want {
			t.Errorf("%s %s: %s, want %s", method, path, got, want)
		}
	}
}

func TestJoinArgs(t *testing.T) {
	n := &Node{DataDir: "d", HTTPAddr: "h", RaftAddr: "r", ID: "n2", Join: "127.0.0.1:1", JoinWith: "d1/operator.token"}
	got := strings.Join(n.Args(), " ")
	if want := "--data d --http h --raft r --id n2 --log-format json --join 127.0.0.1:1 --token-file d1/operator.token"; got != want {
		t.Fatalf("args %q, want %q", got, want)
	}
}

func TestSpawnClusterJoinerDies(t *testing.T) {
	cfg, out, errOut := clusterConfig(t, "import", TargetLeader)
	t.Setenv("COUPONBENCH_FAKE_JOIN_FAIL", "n3")
	err := Run(context.Background(), cfg)
	if err == nil || IsUsage(err) || !strings.Contains(err.Error(), "n3 exited while the cluster formed") ||
		!strings.Contains(err.Error(), "fake: cannot join, as told") || out.Len() != 0 {
		t.Fatalf("err = %v\nstdout %s\nstderr %s", err, out, errOut)
	}
}
