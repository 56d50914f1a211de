package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCodesAreUniqueAndShaped(t *testing.T) {
	const n = 300_000
	seen := make(map[string]struct{}, n)
	for i := range uint64(n) {
		c := code(i)
		if len(c) != codeLen || strings.Trim(c, codeAlphabet) != "" {
			t.Fatalf("code(%d) = %q: not %d characters of [0-9A-Z]", i, c, codeLen)
		}
		if _, dup := seen[c]; dup {
			t.Fatalf("code(%d) = %q came before", i, c)
		}
		seen[c] = struct{}{}
	}
	if code(smallFirst) == code(0) || code(7) != code(7) {
		t.Fatal("codes are not a function of their index")
	}
	// Consecutive codes are scattered: an index sees random inserts.
	if code(1) > code(0) && code(2) > code(1) && code(3) > code(2) {
		t.Fatalf("consecutive codes are sorted: %s %s %s %s", code(0), code(1), code(2), code(3))
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var l latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 99.9: 100 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := l.percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if l[0] != 100*time.Millisecond {
		t.Error("percentile sorted the caller's slice")
	}
}

func TestTableMediansAndRatios(t *testing.T) {
	coupond := `{"scenario":"import","codes_per_s":3000000}
{"scenario":"import","codes_per_s":1000000}
{"scenario":"import","codes_per_s":2000000}
{"scenario":"small-sends","requests_per_s":30000,"p99_ms":2}
{"scenario":"small-sends","requests_per_s":10000,"p99_ms":4,"machine_busy_cores":1.5,"harness_cpu_cores":0.2,"server_cpu_cores":0.5,"seconds":20,"codes":200000}
`
	peers := `{"scenario":"import","peer":"redis","config":"aof=always","codes_per_s":1000000}
{"scenario":"small-sends","peer":"redis","config":"aof=always","requests_per_s":5000,"p99_ms":9,"server_cpu_cores":0.5,"seconds":20,"codes":100000}
{"scenario":"import","peer":"postgres","config":"synchronous_commit=on","codes_per_s":100000}
`
	s := newSamples()
	if err := s.add(strings.NewReader(coupond)); err != nil {
		t.Fatal(err)
	}
	if err := s.add(strings.NewReader("couponbench's summary lines are skipped\n" + peers)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s.write(&out)
	got := out.String()
	for _, want := range []string{
		"| scenario | coupond | redis[aof=always] | coupond vs redis | postgres[synchronous_commit=on] | coupond vs postgres |",
		// median of 1M, 2M, 3M is 2M: 2x Redis's 1M, 20x PostgreSQL's 100k
		"| (c) import 1M codes, codes/s | 2.00M | 1.00M | 2.00x | 100.0k | 20.00x |",
		// two rounds: the mean of the middle pair; no peer figure, no ratio
		"| (a) big send 1M in calls of 10k, codes/s | – | – | – | – | – |",
		"| (b) small sends, 32 clients, req/s | 20.0k | 5.0k | 4.00x | – | – |",
		// a latency's ratio is peer over coupond: 9 ms against 3 ms
		"| (b) small sends, p99 ms | 3.00 | 9.00 | 3.00x | – | – |",
		// 0.5 cores x 20 s over 200,000 codes is 50 µs a code; Redis's 100 µs
		"| (b) small sends, server CPU µs per request | 50.00 | 100.00 | 2.00x | – | – |",
		"Medians of 3 round(s)",
		"- coupond: small-sends 1.50 (server 0.50, other 0.80)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

// memStore is a store in memory, with bugs to switch on, so that the
// runner's checks are shown to catch what they are for.
type memStore struct {
	mu    sync.Mutex
	free  map[int][]string
	sent  map[string]string // list/send/recipient -> code
	count map[int]counts
	bug   string // "twice": one code goes to two recipients; "retry": a retry takes new codes
}

func newMemStore(bug string) *memStore {
	return &memStore{free: map[int][]string{}, sent: map[string]string{}, count: map[int]counts{}, bug: bug}
}

func (m *memStore) importCodes(_ context.Context, list int, first, n uint64, lat *latencies) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := first; i < first+n; i++ {
		m.free[list] = append(m.free[list], code(i))
	}
	*lat = append(*lat, time.Millisecond)
	return nil
}

func (m *memStore) allocate(_ context.Context, list int, send string, rcpts []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(rcpts))
	var fresh []int
	for i, r := range rcpts {
		if c, ok := m.sent[fmt.Sprint(list, send, r)]; ok && m.bug != "retry" {
			out[i] = c
		} else {
			fresh = append(fresh, i)
		}
	}
	if len(fresh) > len(m.free[list]) {
		return nil, errInsufficient
	}
	c := m.count[list]
	for _, i := range fresh {
		out[i] = m.free[list][0]
		if m.bug == "twice" && c.assigned == 1 {
			out[i] = out[fresh[0]]
		} else {
			m.free[list] = m.free[list][1:]
			c.free--
		}
		m.sent[fmt.Sprint(list, send, rcpts[i])] = out[i]
		c.assigned++
	}
	m.count[list] = c
	return out, nil
}

func (m *memStore) counts(_ context.Context, list int) (counts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.count[list]
	c.free = int64(len(m.free[list]))
	c.distinctCodes, c.distinctPairs = c.assigned, c.assigned // the runner's own checks are under test
	return c, nil
}

func (m *memStore) footprint(context.Context) (int64, error) { return 0, nil }
func (m *memStore) footprintKind() string                    { return "ram" }

func smallConfig() config {
	return config{importCodes: 2000, recipients: 2000, chunk: 500, smallCodes: 20000, conc: 4, duration: 200 * time.Millisecond, retries: 50}
}

// runAll runs the three scenarios and returns their JSON lines.
func runAll(t *testing.T, st store, peer string) ([]map[string]any, error) {
	t.Helper()
	r := newRunner(st, peer, "test", "", smallConfig())
	var lines []map[string]any
	for _, run := range []func(context.Context) (*result, error){r.importScenario, r.bigSend, r.smallSends} {
		res, err := run(context.Background())
		if err != nil {
			return lines, err
		}
		raw, err := res.jsonLine()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		lines = append(lines, m)
	}
	return lines, nil
}

func TestRunnerChecksCatchBugs(t *testing.T) {
	lines, err := runAll(t, newMemStore(""), "mem")
	if err != nil {
		t.Fatalf("a correct store failed: %v", err)
	}
	if len(lines) != 3 || lines[1]["codes"] != 2000.0 || lines[1]["retry_ok"] != true || lines[2]["requests"].(float64) < 1 {
		t.Fatalf("lines: %v", lines)
	}
	for i, want := range []string{"import", "big-send", "small-sends"} {
		if lines[i]["scenario"] != want || lines[i]["peer"] != "mem" || lines[i]["p99_ms"] == nil {
			t.Errorf("line %d: %v", i, lines[i])
		}
	}
	for bug, want := range map[string]string{
		"twice": "distinct codes 1999 != assignments 2000",
		"retry": "a retry of the first call did not get the same codes",
	} {
		_, err := runAll(t, newMemStore(bug), "mem")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bug %q: err = %v, want %q", bug, err, want)
		}
	}
}

// contract is what every peer's allocation must do, checked on a real
// server: first in first out, all or nothing, idempotent per (send,
// recipient), and a history per recipient.
func contract(t *testing.T, st interface {
	store
	history(context.Context, string) (map[string]string, error)
}) {
	ctx := context.Background()
	var lat latencies
	if err := st.importCodes(ctx, 7, 100, 10, &lat); err != nil {
		t.Fatal(err)
	}
	got, err := st.allocate(ctx, 7, "s1", []string{"ann", "bob", "ann"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{code(100), code(101), code(100)}; !slices.Equal(got, want) {
		t.Fatalf("first allocation = %v, want %v (import order, a repeated recipient gets one code)", got, want)
	}
	before, _ := st.counts(ctx, 7)
	if again, err := st.allocate(ctx, 7, "s1", []string{"bob", "ann"}); err != nil || !slices.Equal(again, []string{code(101), code(100)}) {
		t.Fatalf("retry = %v, %v", again, err)
	}
	if after, _ := st.counts(ctx, 7); after != before {
		t.Fatalf("a retry moved the counts: %v -> %v", before, after)
	}
	if got, err := st.allocate(ctx, 7, "s2", []string{"ann", "cy"}); err != nil || !slices.Equal(got, []string{code(102), code(103)}) {
		t.Fatalf("second send = %v, %v", got, err)
	}
	// Seven free codes: eight new recipients are refused, and nothing moves
	// (the known recipient in the same call gets nothing either).
	before, _ = st.counts(ctx, 7)
	many := []string{"ann"}
	for i := range 8 {
		many = append(many, "n"+strconv.Itoa(i))
	}
	if _, err := st.allocate(ctx, 7, "s2", many); !errors.Is(err, errInsufficient) {
		t.Fatalf("8 recipients for 6 codes: err = %v, want errInsufficient", err)
	}
	if after, _ := st.counts(ctx, 7); after != before || after.free != 6 {
		t.Fatalf("a refused call moved the counts: %v -> %v", before, after)
	}
	want := counts{free: 6, assigned: 4, distinctCodes: 4, distinctPairs: 4}
	if c, err := st.counts(ctx, 7); err != nil || c != want {
		t.Fatalf("counts = %v, %v; want %v", c, err, want)
	}
	h, err := st.history(ctx, "ann")
	if err != nil || len(h) != 2 || h["s1"] != code(100) || h["s2"] != code(102) {
		t.Fatalf("ann's history = %v, %v", h, err)
	}
	// Concurrent callers never share a code.
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]string{}
	if err := st.importCodes(ctx, 8, 0, 400, &lat); err != nil {
		t.Fatal(err)
	}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				send := fmt.Sprintf("c%d-%d", w, i)
				got, err := st.allocate(ctx, 8, send, []string{"x"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := seen[got[0]]; dup {
					t.Errorf("code %s went to %s and %s", got[0], other, send)
				}
				seen[got[0]] = send
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if c, _ := st.counts(ctx, 8); c.free != 0 || c.assigned != 400 || c.distinctCodes != 400 {
		t.Fatalf("after 400 concurrent calls: %v", c)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls ok for up to 10 s.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("%s did not start in 10 s", what)
}

func TestRedisScript(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server on PATH (Debian: apt-get install redis-server)")
	}
	dir, port := t.TempDir(), freePort(t)
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ctx := context.Background()
	var st *redisStore
	waitFor(t, "redis-server", func() bool {
		st, err = newRedisStore(ctx, "127.0.0.1:"+strconv.Itoa(port), 12)
		return err == nil
	})
	defer st.close()
	if err := st.reset(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := st.appendfsync(ctx); err != nil || s != "aof=everysec" {
		t.Fatalf("appendfsync = %q, %v", s, err)
	}
	contract(t, st)
	// A call bigger than the script's slices of 1,000.
	var lat latencies
	if err := st.importCodes(ctx, 9, 0, 2500, &lat); err != nil {
		t.Fatal(err)
	}
	rc := make([]string, 2500)
	for i := range rc {
		rc[i] = bigRecipient(i)
	}
	got, err := st.allocate(ctx, 9, "big", rc)
	if err != nil || got[0] != code(0) || got[2499] != code(2499) {
		t.Fatalf("2500 recipients: %v", err)
	}
	if _, err := runAll(t, st, "redis"); err != nil {
		t.Fatal(err)
	}
}

// pgBin finds PostgreSQL's server programs: Debian keeps them off PATH.
func pgBin() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.Sort(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	return ""
}

func TestPostgresFunction(t *testing.T) {
	bin := pgBin()
	if bin == "" {
		t.Skip("no PostgreSQL server programs (Debian: apt-get install postgresql)")
	}
	// PostgreSQL refuses to run as root: as root, run it as the postgres
	// user, in a folder that user owns.
	var asUser []string
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skip("running as root and there is no postgres user")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		d, err := os.MkdirTemp("", "peers-pg-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
		dir, asUser = d, []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(args ...string) {
		t.Helper()
		all := append(slices.Clone(asUser), args...)
		if out, err := exec.Command(all[0], all[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	data, port := filepath.Join(dir, "data"), freePort(t)
	run(filepath.Join(bin, "initdb"), "-D", data, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
	run(filepath.Join(bin, "pg_ctl"), "-D", data, "-w", "-l", filepath.Join(dir, "pg.log"),
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir), "start")
	t.Cleanup(func() {
		all := append(slices.Clone(asUser), filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
		exec.Command(all[0], all[1:]...).Run()
	})
	ctx := context.Background()
	st, err := newPGStore(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if err := st.reset(ctx); err != nil {
		t.Fatal(err)
	}
	contract(t, st)
	if _, err := runAll(t, st, "postgres"); err != nil {
		t.Fatal(err)
	}
}
