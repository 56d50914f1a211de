package bench

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(p, []byte("  "+tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig(t *testing.T, addr, tokenFile string) (Config, *bytes.Buffer, *bytes.Buffer) {
	cfg := DefaultConfig()
	cfg.Scenario = "import"
	cfg.Addr = addr
	cfg.TokenFile = tokenFile
	cfg.Codes = 20_000
	var out, errOut bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &errOut
	return cfg, &out, &errOut
}

func TestImportAgainstFake(t *testing.T) {
	api := newFakeAPI("s3cret", 12)
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg, out, errOut := testConfig(t, srv.URL, writeToken(t, "s3cret"))
	cfg.JSON = true
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	if p := api.problems(); len(p) > 0 {
		t.Fatalf("the fake saw problems:\n%s", strings.Join(p, "\n"))
	}
	if api.uploads != 1 {
		t.Fatalf("%d uploads", api.uploads)
	}
	keys, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	// No server pid: no memory fields at all.
	if !slices.Equal(keys, JSONFields[:len(JSONFields)-1]) {
		t.Fatalf("keys %v", keys)
	}
	if m["codes"] != 20000.0 || m["requests"] != 1.0 || m["p50_ms"] != m["p999_ms"] {
		t.Fatalf("result: %s", out)
	}
	if !strings.Contains(errOut.String(), "import: 20000 codes in ") {
		t.Fatalf("no human summary on stderr: %s", errOut)
	}
}

func TestImportHumanSummary(t *testing.T) {
	api := newFakeAPI("tok", 8)
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg, out, errOut := testConfig(t, strings.TrimPrefix(srv.URL, "http://"), writeToken(t, "tok"))
	cfg.CodeLen = 8
	cfg.Codes = 1000
	cfg.ServerPID = os.Getpid() // measure ourselves: exercises the memory path
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	if p := api.problems(); len(p) > 0 {
		t.Fatalf("the fake saw problems:\n%s", strings.Join(p, "\n"))
	}
	s := out.String()
	if !strings.HasPrefix(s, "import: 1000 codes in ") || !strings.Contains(s, "server RSS ") || !strings.Contains(s, "B/code") {
		t.Fatalf("summary: %q", s)
	}
}

func TestImportServerRefuses(t *testing.T) {
	api := newFakeAPI("tok", 12)
	api.failStatus = http.StatusBadRequest
	api.failBody = "line 7: bad"
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg, out, _ := testConfig(t, srv.URL, writeToken(t, "tok"))
	cfg.JSON = true
	err := Run(context.Background(), cfg)
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an APIError", err)
	}
	if ae.Status != 400 || !strings.Contains(ae.Body, "invalid_csv") || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("error lacks status or body: %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("a result was printed for a failed import: %s", out)
	}
}

func TestImportWrongCounts(t *testing.T) {
	api := newFakeAPI("tok", 12)
	api.lie = true
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg, out, _ := testConfig(t, srv.URL, writeToken(t, "tok"))
	cfg.JSON = true
	err := Run(context.Background(), cfg)
	var ce *CheckError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "import.imported = 19999, want 20000") {
		t.Fatalf("err = %v, want a CheckError about imported", err)
	}
	if out.Len() != 0 {
		t.Fatalf("a JSON result was printed for a failed check: %s", out)
	}
}

func TestImportBadToken(t *testing.T) {
	api := newFakeAPI("right", 12)
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg, _, _ := testConfig(t, srv.URL, writeToken(t, "wrong"))
	err := Run(context.Background(), cfg)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("err = %v, want 401", err)
	}
	if api.uploads != 0 {
		t.Fatal("uploaded with a bad token")
	}
}

func TestCheckImport(t *testing.T) {
	good := CreateImportReply{List: List{ID: "a"}, Import: ImportResult{Imported: 5, Size: 5}}
	if p := CheckImport(5, good, &List{Added: 5, Available: 5}); len(p) != 0 {
		t.Fatalf("good import flagged: %v", p)
	}
	bad := CreateImportReply{Import: ImportResult{Imported: 4, Duplicates: 1, Size: 4}}
	p := CheckImport(5, bad, &List{Added: 4, Available: 3})
	if len(p) != 6 {
		t.Fatalf("want 6 problems, got %d: %v", len(p), p)
	}
}

func TestValidate(t *testing.T) {
	base := DefaultConfig()
	base.Scenario = "import"
	if err := base.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		name     string
		mod      func(*Config)
		notBuilt bool
	}{
		{"unknown", func(c *Config) { c.Scenario = "nope" }, false},
		{"none", func(c *Config) { c.Scenario = "" }, false},
		{"restart without spawn", func(c *Config) { c.Restart = true }, false},
		{"spawn and pid", func(c *Config) { c.Spawn, c.ServerPID = true, 1 }, false},
		{"too many codes", func(c *Config) { c.CodeLen, c.Codes = 2, 36*36+1 }, false},
		{"zero codes", func(c *Config) { c.Codes = 0 }, false},
		{"big-send codes < recipients", func(c *Config) { c.Scenario, c.Codes, c.CodesSet = "big-send", 10, true }, false},
		{"big-send parallel > recipients", func(c *Config) { c.Scenario, c.Recipients, c.Parallel = "big-send", 2, 3 }, false},
		{"chunk over the server limit", func(c *Config) { c.Scenario, c.Chunk = "big-send", 100_001 }, false},
		{"reserve outside big-send", func(c *Config) { c.Scenario, c.Reserve = "small-sends", true }, false},
		{"send-per", func(c *Config) { c.Scenario, c.SendPer = "small-sends", "minute" }, false},
		{"small default codes too many", func(c *Config) { c.Scenario, c.CodeLen = "small-sends", 4 }, false},
		{"zero duration", func(c *Config) { c.Scenario, c.Duration = "mixed", 0 }, false},
		{"cluster and restart", func(c *Config) { c.Spawn, c.SpawnCluster, c.Restart = true, 3, true }, false},
	}
	for _, c := range cases {
		cfg := base
		c.mod(&cfg)
		err := cfg.Validate()
		var nb *NotBuiltError
		var ue *UsageError
		switch {
		case c.notBuilt && !errors.As(err, &nb):
			t.Errorf("%s: err = %v, want not built", c.name, err)
		case !c.notBuilt && !errors.As(err, &ue):
			t.Errorf("%s: err = %v, want a usage error", c.name, err)
		case !IsUsage(err):
			t.Errorf("%s: IsUsage false", c.name)
		}
	}
	for _, sc := range []string{"big-send", "small-sends", "mixed"} {
		cfg := base
		cfg.Scenario = sc
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s defaults: %v", sc, err)
		}
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tcoupond\nVmPeak:\t 9999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n"))
	if err != nil || m.RSS != 1<<20 || m.HWM != 2<<20 {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := parseStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Fatal("no error without VmRSS")
	}
	self, err := ReadMem(os.Getpid())
	if err != nil || self.RSS <= 0 || self.HWM < self.RSS {
		t.Fatalf("own memory: %+v %v", self, err)
	}
}

// TestSpawnImportRestart runs the whole --spawn --restart --json path against
// this test binary acting as coupond (see TestMain).
func TestSpawnImportRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COUPONBENCH_FAKE_NODE", "1")
	cfg, out, errOut := testConfig(t, "", "")
	cfg.Spawn = true
	cfg.Bin = exe
	cfg.Restart = true
	cfg.JSON = true
	cfg.Codes = 5000
	t0 := time.Now()
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	keys, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if !slices.Equal(keys[:len(JSONFields)], JSONFields) {
		t.Fatalf("keys %v", keys)
	}
	for _, k := range []string{"server_rss_growth_bytes_per_code", "restart_ready_s", "server_rss_before_mib", "server_rss_after_mib"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, out)
		}
	}
	if m["server_peak_rss_mib"].(float64) <= 0 || m["restart_ready_s"].(float64) <= 0.05 {
		t.Errorf("peak or restart time implausible: %s", out)
	}
	if !strings.Contains(errOut.String(), "restart to ready") {
		t.Errorf("summary: %s", errOut)
	}
	// The temporary folder is gone.
	for _, line := range strings.Split(errOut.String(), "\n") {
		if i := strings.Index(line, "data /"); i >= 0 {
			dir := strings.TrimSuffix(strings.Fields(line[i+5:])[0], "),")
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("data folder %s still there (%v)", dir, err)
			}
		}
	}
	t.Logf("spawn + import + restart in %s: %s", time.Since(t0), strings.TrimSpace(errOut.String()))
}

func TestSpawnMissingBinary(t *testing.T) {
	cfg, _, _ := testConfig(t, "", "")
	cfg.Spawn = true
	cfg.Bin = filepath.Join(t.TempDir(), "no-such-coupond")
	err := Run(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "coupond binary") {
		t.Fatalf("err = %v", err)
	}
}

// --gzip sends the import compressed (chunked: the compressed length is
// known at the end only); the fake decodes it and checks every code.
func TestImportGzipAgainstFake(t *testing.T) {
	api := newFakeAPI("s3cret", 12)
	srv := httptest.NewServer(api)
	defer srv.Close()
	cfg, _, errOut := testConfig(t, srv.URL, writeToken(t, "s3cret"))
	cfg.Gzip = true
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	if p := api.problems(); len(p) > 0 {
		t.Fatalf("the fake saw problems:\n%s", strings.Join(p, "\n"))
	}
	if api.uploads != 1 || api.gzipUploads != 1 {
		t.Fatalf("%d uploads, %d of them gzip", api.uploads, api.gzipUploads)
	}
}
