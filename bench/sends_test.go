package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// sendConfig is a small configuration of scenario sc against srv.
func sendConfig(t *testing.T, sc string, srv *httptest.Server, tok string) (Config, *bytes.Buffer, *bytes.Buffer) {
	cfg, out, errOut := testConfig(t, srv.URL, writeToken(t, tok))
	cfg.Scenario = sc
	cfg.CodesSet = false
	cfg.Recipients = 10_000
	cfg.Chunk = 500
	cfg.Conc = 4
	cfg.Duration = 300 * time.Millisecond
	cfg.JSON = true
	return cfg, out, errOut
}

func fakeServer(t *testing.T) (*fakeAPI, *httptest.Server) {
	api := newFakeAPI("tok", 12)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv
}

func noProblems(t *testing.T, api *fakeAPI) {
	t.Helper()
	if p := api.problems(); len(p) > 0 {
		t.Fatalf("the fake saw problems:\n%s", strings.Join(p, "\n"))
	}
}

// onlyList returns the one list of the fake.
func onlyList(t *testing.T, api *fakeAPI) List {
	t.Helper()
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.lists) != 1 {
		t.Fatalf("%d lists", len(api.lists))
	}
	for _, l := range api.lists {
		return *l
	}
	return List{}
}

func wantCheckError(t *testing.T, err error, out *bytes.Buffer, substr string) {
	t.Helper()
	var ce *CheckError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a CheckError", err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("the error does not mention %q:\n%v", substr, err)
	}
	if out.Len() != 0 {
		t.Fatalf("a JSON result was printed for a failed check: %s", out)
	}
}

func TestBigSendAgainstFake(t *testing.T) {
	api, srv := fakeServer(t)
	cfg, out, errOut := sendConfig(t, "big-send", srv, "tok")
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	noProblems(t, api)
	keys, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if !slices.Equal(keys[:len(JSONFields)-1], JSONFields[:len(JSONFields)-1]) || slices.Contains(keys, "server_peak_rss_mib") {
		t.Fatalf("keys %v", keys)
	}
	if m["scenario"] != "big-send" || m["codes"] != 10000.0 || m["requests"] != 20.0 || m["codes_per_s"].(float64) <= 0 {
		t.Fatalf("result: %s", out)
	}
	// 20 requests, plus the retry of the first chunk.
	if api.allocs != 21 || api.newCodes != 10000 {
		t.Fatalf("fake: %d allocations, %d new codes", api.allocs, api.newCodes)
	}
	if l := onlyList(t, api); l.Used != 10000 || l.Available != 0 || l.Added != 10000 {
		t.Fatalf("list %+v", l)
	}
	if !strings.Contains(errOut.String(), "retry=OK") || !strings.Contains(errOut.String(), "=> OK") {
		t.Fatalf("summary: %s", errOut)
	}
}

func TestBigSendParallelReserve(t *testing.T) {
	api, srv := fakeServer(t)
	cfg, out, errOut := sendConfig(t, "big-send", srv, "tok")
	cfg.Recipients, cfg.Chunk, cfg.Parallel, cfg.Reserve = 10_001, 999, 3, true
	cfg.ShortRcpt = true // the same recipients in the three sends
	cfg.Codes, cfg.CodesSet = 12_000, true
	cfg.ServerPID = os.Getpid() // exercises the memory path on ourselves
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	noProblems(t, api)
	_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if m["codes"] != 10001.0 || m["requests"] != 12.0 || m["parallel"] != 3.0 || m["reserve"] != true {
		t.Fatalf("result: %s", out)
	}
	if _, ok := m["server_peak_rss_mib"]; !ok {
		t.Fatalf("no server memory: %s", out)
	}
	if l := onlyList(t, api); l.Used != 10001 || l.Available != 1999 || l.Reserved != 0 {
		t.Fatalf("list %+v", l)
	}
	if len(api.sends) != 3 {
		t.Fatalf("%d sends", len(api.sends))
	}
}

func TestBigSendCatchesADuplicate(t *testing.T) {
	api, srv := fakeServer(t)
	api.dupAt = 5_432
	cfg, out, _ := sendConfig(t, "big-send", srv, "tok")
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "handed out twice")
	if !strings.Contains(err.Error(), "distinct codes 9999 != assignments 10000") {
		t.Fatalf("err: %v", err)
	}
}

func TestBigSendCatchesForgottenRetry(t *testing.T) {
	api, srv := fakeServer(t)
	api.forgetIdem = true
	cfg, out, _ := sendConfig(t, "big-send", srv, "tok")
	cfg.Codes, cfg.CodesSet = 15_000, true
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "not idempotent")
}

func TestBigSendCatchesWrongOrder(t *testing.T) {
	api, srv := fakeServer(t)
	api.swapOrder = true
	cfg, out, _ := sendConfig(t, "big-send", srv, "tok")
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "request order")
}

func TestBigSendWithoutSendsOnServer(t *testing.T) {
	api, srv := fakeServer(t)
	api.noSends = true
	cfg, out, _ := sendConfig(t, "big-send", srv, "tok")
	err := Run(context.Background(), cfg)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || !strings.Contains(err.Error(), "/v1/messages/") {
		t.Fatalf("err = %v, want a 404 on /v1/messages", err)
	}
	if out.Len() != 0 {
		t.Fatalf("printed: %s", out)
	}
}

func TestSmallSendsAgainstFake(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	for _, per := range []string{SendPerRequest, SendPerConn} {
		t.Run(per, func(t *testing.T) {
			t.Parallel()
			api, srv := fakeServer(t)
			cfg, out, errOut := sendConfig(t, "small-sends", srv, "tok")
			cfg.Codes, cfg.CodesSet = 30_000, true
			cfg.SendPer = per
			if err := Run(context.Background(), cfg); err != nil {
				t.Fatalf("Run: %v\nstderr: %s", err, errOut)
			}
			noProblems(t, api)
			_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
			n := m["requests"].(float64)
			if n < 10 || m["codes"] != n || m["ran_dry"] != false || m["send_per"] != per {
				t.Fatalf("result: %s", out)
			}
			if l := onlyList(t, api); float64(l.Used) != n {
				t.Fatalf("list %+v, %v requests", l, n)
			}
			wantSends := int(n)
			if per == SendPerConn {
				wantSends = cfg.Conc
			}
			if len(api.sends) != wantSends {
				t.Fatalf("%d sends for %v requests", len(api.sends), n)
			}
			t.Logf("%s", strings.TrimSpace(errOut.String()))
		})
	}
}

func TestSmallSendsRunDry(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	api, srv := fakeServer(t)
	cfg, out, errOut := sendConfig(t, "small-sends", srv, "tok")
	cfg.Codes, cfg.CodesSet = 50, true
	cfg.Duration = 10 * time.Second // stops long before
	t0 := time.Now()
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	if time.Since(t0) > 5*time.Second {
		t.Fatal("did not stop when the list ran dry")
	}
	noProblems(t, api)
	_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if m["requests"] != 50.0 || m["ran_dry"] != true {
		t.Fatalf("result: %s", out)
	}
	if !strings.Contains(errOut.String(), "ran dry") {
		t.Fatalf("no message about the dry list: %s", errOut)
	}
}

func TestSmallSendsCatchesADuplicate(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	api, srv := fakeServer(t)
	api.dupAt = 5
	cfg, out, _ := sendConfig(t, "small-sends", srv, "tok")
	cfg.Codes, cfg.CodesSet = 30_000, true
	cfg.Duration = 150 * time.Millisecond
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "handed out twice")
}

func TestMixedAgainstFake(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	api, srv := fakeServer(t)
	cfg, out, errOut := sendConfig(t, "mixed", srv, "tok")
	cfg.Codes, cfg.CodesSet = 3_000, true // runs dry at once: the top-ups must keep it going
	cfg.Recipients, cfg.Chunk = 2_500, 500
	cfg.Duration = 600 * time.Millisecond
	cfg.TopUpEvery = 100 * time.Millisecond
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	noProblems(t, api)
	_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if m["topups"].(float64) < 2 || m["big_codes"].(float64) < 1000 || m["small_requests"].(float64) < 10 || m["reads"].(float64) < m["topups"].(float64) {
		t.Fatalf("result: %s", out)
	}
	if m["codes"] != m["big_codes"].(float64)+m["small_requests"].(float64) {
		t.Fatalf("codes is not big + small: %s", out)
	}
	l := onlyList(t, api)
	if float64(l.Used) != m["codes"] || l.Added != 3_000+int64(m["topup_codes"].(float64)) {
		t.Fatalf("list %+v vs %s", l, out)
	}
	t.Logf("%s", strings.TrimSpace(errOut.String()))
}

func TestMixedCatchesADuplicate(t *testing.T) {
	t.Parallel() // bounded by --duration, not by CPU
	api, srv := fakeServer(t)
	api.dupAt = 300
	cfg, out, _ := sendConfig(t, "mixed", srv, "tok")
	cfg.Codes, cfg.CodesSet = 50_000, true
	cfg.Recipients, cfg.Chunk = 2_000, 500
	cfg.Duration = 250 * time.Millisecond
	cfg.TopUpEvery = 100 * time.Millisecond
	err := Run(context.Background(), cfg)
	wantCheckError(t, err, out, "handed out twice")
}

// TestSpawnBigSend runs big-send with --spawn against this test binary
// acting as coupond (see TestMain).
func TestSpawnBigSend(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COUPONBENCH_FAKE_NODE", "1")
	cfg, out, errOut := testConfig(t, "", "")
	cfg.Scenario = "big-send"
	cfg.Spawn, cfg.Bin, cfg.JSON = true, exe, true
	cfg.Recipients, cfg.Chunk = 5_000, 1_000
	if err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut)
	}
	_, m := jsonKeys(t, bytes.TrimSpace(out.Bytes()))
	if m["codes"] != 5000.0 || m["server_peak_rss_mib"].(float64) <= 0 || m["server_cpu_cores"] == nil {
		t.Fatalf("result: %s", out)
	}
}

func TestParseAllocReply(t *testing.T) {
	type asg struct {
		R, C string
		F    bool
	}
	parse := func(s string) ([]asg, int64, error) {
		var got []asg
		avail, n, err := parseAllocReply([]byte(s), func(k int, r, c []byte, fallback bool) error {
			if k != len(got) {
				return fmt.Errorf("k %d", k)
			}
			got = append(got, asg{string(r), string(c), fallback})
			return nil
		})
		if err == nil && n != len(got) {
			return nil, 0, fmt.Errorf("n %d for %d", n, len(got))
		}
		return got, avail, err
	}
	good := []struct {
		in    string
		want  []asg
		avail int64
	}{
		{`{"assignments":[{"recipient":"a@x","code":"C1"},{"recipient":"b@x","code":"C2"}],"available":7}`,
			[]asg{{"a@x", "C1", false}, {"b@x", "C2", false}}, 7},
		{" { \"available\" : 0 ,\n \"assignments\" : [ { \"code\" : \"Z\" , \"recipient\" : \"r\" } ] }\n",
			[]asg{{"r", "Z", false}}, 0},
		{`{"assignments":[],"available":3,"extra":{"a":[1,2.5e3,"x\"y",true,null,{}]}}`, nil, 3},
		{`{"assignments":[{"recipient":"a\/b\u00e9\"","code":"C\\1","assigned_at":"2026-01-01T00:00:00Z"}],"available":1}`,
			[]asg{{"a/bé\"", "C\\1", false}}, 1},
		{`{"assignments":[{"recipient":"a","code":"C1","fallback":false},{"recipient":"b","code":"FB","fallback":true}],"available":0}`,
			[]asg{{"a", "C1", false}, {"b", "FB", true}}, 0},
	}
	for _, c := range good {
		got, avail, err := parse(c.in)
		if err != nil || !slices.Equal(got, c.want) || avail != c.avail {
			t.Errorf("%s: %v %d %v", c.in, got, avail, err)
		}
		// The same as encoding/json.
		var ref struct {
			Assignments []struct{ Recipient, Code string }
			Available   int64
		}
		if err := json.Unmarshal([]byte(c.in), &ref); err != nil || len(ref.Assignments) != len(c.want) || ref.Available != c.avail {
			t.Errorf("reference decode of %s: %+v %v", c.in, ref, err)
		}
	}
	bad := []string{
		``, `[]`, `{"assignments":[]}`, `{"available":1}`,
		`{"assignments":[{"recipient":"a"}],"available":1}`,
		`{"assignments":[{"recipient":"a","code":"b"}],"available":1} x`,
		`{"assignments":[{"recipient":"a","code":"b"},],"available":1}`,
		`{"assignments":[{"recipient":"a","code":"b}],"available":1}`,
		`{"assignments":[{"recipient":"a","code":"b"}],"available":"1"}`,
		`{"assignments":[{"recipient":"a","code":"b"}],"available":1,"x":nul}`,
		"{\"assignments\":[{\"recipient\":\"a\tb\",\"code\":\"b\"}],\"available\":1}",
		`{"assignments":[{"recipient":"a","code":"b","fallback":1}],"available":1}`,
		`{"assignments":[{"recipient":"a","code":"b","fallback":tru}],"available":1}`,
	}
	for _, in := range bad {
		if _, _, err := parse(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestAllocBody(t *testing.T) {
	var b allocBody
	rg := rcptGen{prefix: "u07.", width: 7, suffix: "@example.com"}
	b.build(`m"1`, rg, 9_999_998, 10_000_001)
	var v struct {
		MessageID  string   `json:"message_id"`
		Recipients []string `json:"recipients"`
	}
	if err := json.Unmarshal(b.buf, &v); err != nil {
		t.Fatalf("%s: %v", b.buf, err)
	}
	want := []string{"u07.9999998@example.com", "u07.9999999@example.com", "u07.10000000@example.com"}
	if v.MessageID != `m"1` || !slices.Equal(v.Recipients, want) || b.N() != 3 {
		t.Fatalf("%s", b.buf)
	}
	for k, w := range want {
		if string(b.Recipient(k)) != w || rg.String(9_999_998+int64(k)) != w {
			t.Fatalf("recipient %d: %q", k, b.Recipient(k))
		}
	}
	if len(rcptGen{prefix: "u00.", width: 7, suffix: "@example.com"}.String(0)) != 23 {
		t.Fatal("recipients are not 23 bytes like peer scenario (b)")
	}
}

func TestCodeIndex(t *testing.T) {
	for _, length := range []int{1, 2, 4, 12, 13, 20, MaxCodeLen} {
		g, _ := NewCodeGen(length)
		n := min(g.Capacity(), 20_000)
		buf := make([]byte, 0, length)
		for i := range n {
			buf = g.Append(buf[:0], i*(g.Capacity()/n))
			j, ok := g.Index(buf)
			if !ok || j != i*(g.Capacity()/n) {
				t.Fatalf("len %d: Index(Code(%d)) = %d %v", length, i, j, ok)
			}
		}
		buf = g.Append(buf[:0], 5)
		buf[0] = 'a'
		if _, ok := g.Index(buf); ok {
			t.Errorf("len %d: lower case accepted", length)
		}
		if _, ok := g.Index(append(buf, 'A')); ok {
			t.Errorf("len %d: wrong length accepted", length)
		}
		if length > 12 {
			buf = g.Append(buf[:0], 5)
			buf[0] = CodeAlphabet[(strings.IndexByte(CodeAlphabet, buf[0])+1)%36]
			if _, ok := g.Index(buf); ok {
				t.Errorf("len %d: wrong prefix accepted", length)
			}
		}
	}
}

func TestCheckLedger(t *testing.T) {
	g, _ := NewCodeGen(12)
	mk := func(idx ...uint32) *codeLog {
		l := &codeLog{}
		for _, i := range idx {
			l.add(g, []byte(g.Code(uint64(i))))
		}
		return l
	}
	r := checkLedger(g, 10, []*codeLog{mk(0, 2, 4), mk(1, 3)})
	if p := r.problems(5); len(p) != 0 || r.Distinct != 5 {
		t.Fatalf("good ledger: %v %+v", p, r)
	}
	r = checkLedger(g, 10, []*codeLog{mk(0, 1, 1), mk(2)})
	if r.Twice != 1 || r.OutOfOrder != 0 || !strings.Contains(strings.Join(r.problems(4), "\n"), "twice") {
		t.Fatalf("twice: %+v", r)
	}
	r = checkLedger(g, 10, []*codeLog{mk(0, 1, 5)})
	if r.OutOfOrder != 1 || !strings.Contains(strings.Join(r.problems(3), "\n"), "FIFO") {
		t.Fatalf("fifo: %+v", r)
	}
	l := mk(0, 11)
	l.add(g, []byte("not-a-code"))
	r = checkLedger(g, 10, []*codeLog{l})
	if r.Foreign != 2 || r.Assignments != 3 || len(r.problems(3)) == 0 {
		t.Fatalf("foreign: %+v", r)
	}
}
