package daemon_test

// Acceptance point (c) of the cluster issue: the leader is cut off from the
// others by a fault-injecting Raft transport in this process. The minority
// acknowledges no write, the majority elects a leader and goes on, and after
// healing nothing is lost or doubled.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/coupond/coupond/daemon"
)

// allocOutcome is what one allocation request told its caller.
type allocOutcome int

const (
	acked   allocOutcome = iota // 200: the code is the recipient's for good
	refused                     // 503 no_leader / not_ready: nothing reached a leader
	unknown                     // another 503, or no answer: it may or may not have happened
)

func (o allocOutcome) String() string {
	return [...]string{"acknowledged", "refused", "unknown"}[o]
}

// allocLedger records, per recipient, what the client was told.
type allocLedger struct {
	mu       sync.Mutex
	acked    map[string]string // recipient -> code
	refused  map[string]string // recipient -> answer
	unknown  map[string]string // recipient -> answer or error
	minority []string          // requests sent to the cut-off node after the cut
}

func newAllocLedger() *allocLedger {
	return &allocLedger{acked: map[string]string{}, refused: map[string]string{}, unknown: map[string]string{}}
}

// allocate asks node for one code for recipient on send and classifies
// the answer. It never fails the test itself: it runs in goroutines.
func allocate(cn *clusterNode, token, send, recipient string) (allocOutcome, string, error) {
	body, _ := json.Marshal(map[string]any{"message_id": "m1", "recipients": []string{recipient}})
	st, b, err := cn.do("POST", "/v1/sends/"+send+"/codes", token, "application/json", body)
	if err != nil {
		return unknown, err.Error(), nil
	}
	switch st {
	case http.StatusOK:
		var out struct {
			Assignments []assignment `json:"assignments"`
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.Assignments) != 1 || out.Assignments[0].Recipient != recipient {
			return 0, "", fmt.Errorf("allocation for %s on %s: bad answer %s", recipient, cn.id, b)
		}
		return acked, out.Assignments[0].Code, nil
	case http.StatusServiceUnavailable:
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		json.Unmarshal(b, &e)
		if e.Error.Code == "no_leader" || e.Error.Code == "not_ready" {
			return refused, string(b), nil
		}
		return unknown, string(b), nil
	}
	return 0, "", fmt.Errorf("allocation for %s on %s: status %d: %s", recipient, cn.id, st, b)
}

func (l *allocLedger) record(recipient string, o allocOutcome, answer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch o {
	case acked:
		l.acked[recipient] = answer
	case refused:
		l.refused[recipient] = answer
	case unknown:
		l.unknown[recipient] = answer
	}
}

// allocateUntilAcked retries one allocation (the same recipient: retries
// are safe) until it is acknowledged.
func allocateUntilAcked(t *testing.T, cn *clusterNode, token, send, recipient string) string {
	t.Helper()
	var code string
	waitFor(t, 30*time.Second, "allocation for "+recipient+" on "+cn.id, func() (bool, string) {
		o, answer, err := allocate(cn, token, send, recipient)
		if err != nil {
			t.Fatal(err)
		}
		code = answer
		return o == acked, o.String() + ": " + answer
	})
	return code
}

func TestPartitionLeaderCutOff(t *testing.T) {
	start := time.Now()
	fn := newFaultNet(t)
	nodes := make([]*clusterNode, 3)
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		layer := fn.layer(t, id)
		cfg := daemon.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: layer.Addr().String(),
			NodeID: id, LogFormat: "json", LogLevel: "warn", RaftLayer: layer}
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
	t.Logf("3 nodes joined in %s", time.Since(start).Round(time.Millisecond))

	// The ledger: a list of 400 codes with 5 withdrawn, a message with the
	// list, a send holding 25 codes, and the send s1 the test allocates on.
	// Every write goes through a follower (forwarded to the leader).
	var follower *clusterNode
	for _, cn := range nodes {
		if !cn.isLeader() {
			follower = cn
			break
		}
	}
	var created struct {
		List fullList `json:"list"`
	}
	follower.must(201, &created, "POST", "/v1/lists?name=partition", admin, "text/csv", csvCodes("P", 0, 400))
	list := created.List.ID
	var wd map[string]uint64
	follower.must(200, &wd, "POST", "/v1/lists/"+list+"/codes/withdraw", admin, "text/csv", csvCodes("P", 395, 5))
	if wd["withdrawn"] != 5 {
		t.Fatalf("withdraw: %v", wd)
	}
	follower.mustJSON(201, nil, "PUT", "/v1/messages/m1", admin, emailMessage("m1"))
	follower.mustJSON(200, nil, "PUT", "/v1/messages/m1/coupon-list", admin, map[string]string{"list_id": list})
	follower.mustJSON(201, nil, "PUT", "/v1/sends/hold", admin, map[string]any{"message_id": "m1", "expected_recipients": 25})
	follower.mustJSON(201, nil, "PUT", "/v1/sends/s1", admin, map[string]any{"message_id": "m1"})

	ledger := newAllocLedger()
	for i := 0; i < 12; i++ {
		r := fmt.Sprintf("pre-%d", i)
		ledger.record(r, acked, allocateUntilAcked(t, nodes[i%3], admin, "s1", r))
	}

	old := leaderAmong(nodes...)
	if old == nil {
		t.Fatal("no single leader before the partition")
	}
	var majority []*clusterNode
	for _, cn := range nodes {
		if cn != old {
			majority = append(majority, cn)
		}
	}

	// Clients of the old leader run before, during and after the cut. What
	// they send once the cut is made must never be acknowledged.
	stop := make(chan struct{})
	var clients sync.WaitGroup
	var afterCut sync.Map // recipient -> true: sent after the cut
	for w := 0; w < 3; w++ {
		clients.Add(1)
		go func() {
			defer clients.Done()
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				r := fmt.Sprintf("old-%d-%d", w, i)
				cut := fn.isCut(old.id)
				if cut {
					afterCut.Store(r, true)
				}
				o, answer, err := allocate(old, admin, "s1", r)
				if err != nil {
					t.Error(err)
					return
				}
				if cut && o == acked {
					t.Errorf("the cut-off node %s acknowledged %s -> %s", old.id, r, answer)
				}
				ledger.record(r, o, answer)
			}
		}()
	}
	// Let the clients get going against the healthy leader first.
	waitFor(t, 10*time.Second, "allocations on the leader before the cut", func() (bool, string) {
		ledger.mu.Lock()
		defer ledger.mu.Unlock()
		return len(ledger.acked) >= 12+6, fmt.Sprintf("%d acknowledged", len(ledger.acked))
	})

	cutAt := time.Now()
	fn.Cut(old.id)
	t.Logf("cut %s off", old.id)
	// A burst right after the cut, while the old leader may still believe
	// it leads (its lease has not run out yet).
	for i := 0; i < 8; i++ {
		clients.Add(1)
		go func() {
			defer clients.Done()
			r := fmt.Sprintf("burst-%d", i)
			afterCut.Store(r, true)
			o, answer, err := allocate(old, admin, "s1", r)
			if err != nil {
				t.Error(err)
				return
			}
			if o == acked {
				t.Errorf("the cut-off node %s acknowledged %s -> %s", old.id, r, answer)
			}
			ledger.record(r, o, answer)
		}()
	}

	// The majority elects a new leader; the old one steps down.
	var leader *clusterNode
	waitFor(t, 20*time.Second, "a new leader in the majority", func() (bool, string) {
		leader = leaderAmong(majority...)
		return leader != nil && !old.isLeader(),
			fmt.Sprintf("majority leader %v, old still leads: %v", leader != nil, old.isLeader())
	})
	t.Logf("%s leads after %s; %s stepped down", leader.id, time.Since(cutAt).Round(time.Millisecond), old.id)

	// The majority goes on: writes through both of its nodes (one forwards
	// to the new leader), and an earlier allocation retried gets its code.
	for i := 0; i < 20; i++ {
		r := fmt.Sprintf("maj-%d", i)
		ledger.record(r, acked, allocateUntilAcked(t, majority[i%2], admin, "s1", r))
	}
	ledger.mu.Lock()
	pre0 := ledger.acked["pre-0"]
	ledger.mu.Unlock()
	if got := allocateUntilAcked(t, majority[0], admin, "s1", "pre-0"); got != pre0 {
		t.Fatalf("pre-0 retried on the majority got %s, was given %s", got, pre0)
	}
	// A strong read on the cut-off node cannot be answered; on the majority it can.
	if st, b, err := old.do("GET", "/v1/lists/"+list+"?consistency=strong", admin, "", nil); err == nil && st != http.StatusServiceUnavailable {
		t.Fatalf("strong read on the cut-off node: %d %s", st, b)
	}
	var seen fullList
	majority[0].must(200, &seen, "GET", "/v1/lists/"+list+"?consistency=strong", admin, "", nil)
	if !seen.addsUp() {
		t.Fatalf("counts on the majority do not add up: %+v", seen)
	}

	// The old leader's clients keep failing while the majority works;
	// wait until they have made a good number of calls after the cut.
	waitFor(t, 20*time.Second, "calls to the cut-off node", func() (bool, string) {
		n := 0
		afterCut.Range(func(any, any) bool { n++; return true })
		return n >= 30, fmt.Sprintf("%d calls after the cut", n)
	})
	close(stop)
	clients.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if n := fn.refusedOf(old.id); n == 0 {
		t.Fatalf("the cut-off node never tried to reach the others")
	}

	ledger.mu.Lock()
	var minorityAcked, minorityRefused, minorityUnknown int
	afterCut.Range(func(k, _ any) bool {
		r := k.(string)
		switch {
		case ledger.acked[r] != "":
			minorityAcked++
		case ledger.refused[r] != "":
			minorityRefused++
		default:
			minorityUnknown++
		}
		return true
	})
	t.Logf("after the cut the old leader answered: %d acknowledged, %d refused, %d unknown; overall: %d acked, %d refused, %d unknown",
		minorityAcked, minorityRefused, minorityUnknown, len(ledger.acked), len(ledger.refused), len(ledger.unknown))
	ledger.mu.Unlock()
	if minorityAcked != 0 {
		t.Fatalf("the minority acknowledged %d writes", minorityAcked)
	}

	// Heal: the old leader catches up, its uncommitted entries are dropped.
	fn.Heal(old.id)
	healed := waitConverged(t, op, nodes...)
	t.Logf("converged at applied index %d after healing", healed.AppliedIndex)

	// Every request of unknown outcome is retried (through any node) until
	// it is acknowledged; its final answer is the recipient's code.
	var unknowns []string
	for r := range ledger.unknown {
		unknowns = append(unknowns, r)
	}
	sort.Strings(unknowns)
	for i, r := range unknowns {
		ledger.acked[r] = allocateUntilAcked(t, nodes[i%3], admin, "s1", r)
	}
	final := waitConverged(t, op, nodes...)

	// The checks, on every node.
	for _, cn := range nodes {
		got := sendAssignments(cn, admin, "s1")
		byCode := map[string]string{}
		for r, c := range got {
			if other, dup := byCode[c]; dup {
				t.Errorf("%s: code %s given to %s and %s", cn.id, c, other, r)
			}
			byCode[c] = r
		}
		for r, c := range ledger.acked {
			if got[r] != c {
				t.Errorf("%s: acknowledged %s -> %s, now %q", cn.id, r, c, got[r])
			}
		}
		for r, answer := range ledger.refused {
			if c, ok := got[r]; ok {
				t.Errorf("%s: refused request for %s (%s) has the code %s", cn.id, r, answer, c)
			}
		}
		if len(got) != len(ledger.acked) {
			t.Errorf("%s: %d assignments, %d acknowledged", cn.id, len(got), len(ledger.acked))
		}
		var l fullList
		cn.must(200, &l, "GET", "/v1/lists/"+list, admin, "", nil)
		if !l.addsUp() || l.Added != 400 || l.Withdrawn != 5 || l.Reserved != 25 || l.Used != uint64(len(got)) {
			t.Errorf("%s: list counts %+v, want added 400 = available + reserved 25 + used %d + withdrawn 5",
				cn.id, l, len(got))
		}
	}
	t.Logf("%d codes assigned, no code twice, every acknowledged one kept; final index %d; total %s",
		len(ledger.acked), final.AppliedIndex, time.Since(start).Round(time.Millisecond))
}
