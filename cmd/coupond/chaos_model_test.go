package main

// The checker of the fault test (chaos_test.go): the history the clients
// recorded, and what it must satisfy. It runs without a cluster; the unit
// tests below feed it synthetic histories.
//
// The model is per key (send, recipient): the state is the key's code, or
// none. An allocation that was answered returns a code: it is valid if the
// key has none (then it has that code) or has that code already. An
// allocation whose outcome is unknown (503, timeout, broken connection) may
// or may not have taken effect: if it did, it gave the key the code the key
// has at the end (a key's code never changes), so it steps to "unchanged" or
// "that code". A strong read returns the key's code or none: valid if it
// equals the state. Besides the per-key linearizability check (porcupine,
// partitioned by key), the checker checks what linearizability per key does
// not see: no code given to two keys, every answered code still held by its
// key at the end, and every key asked for holding a code at the end (every
// request was retried until answered).

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// chaosKey is what an allocation is idempotent on.
type chaosKey struct {
	Send      string `json:"send"`
	Recipient string `json:"recipient"`
}

func (k chaosKey) String() string { return k.Send + "/" + k.Recipient }

type chaosOpKind uint8

const (
	opAllocate chaosOpKind = iota // POST /v1/sends/{send}/codes
	opRead                        // strong read of the keys' codes
)

func (k chaosOpKind) String() string {
	if k == opRead {
		return "read"
	}
	return "allocate"
}

// chaosOp is one request of a client, as the client saw it.
type chaosOp struct {
	Client int         `json:"client"`
	Kind   chaosOpKind `json:"kind"`
	Node   string      `json:"node"`          // the node the request went to
	Keys   []chaosKey  `json:"keys"`          // an allocation's keys are all of one send
	Codes  []string    `json:"codes"`         // when OK: the code of each key ("" for none, reads only)
	OK     bool        `json:"ok"`            // answered; otherwise the outcome is unknown
	Call   int64       `json:"call"`          // ns since the start of the run
	Return int64       `json:"return"`        // ns since the start of the run
	Status int         `json:"status"`        // HTTP status, 0 when none
	Err    string      `json:"err,omitempty"` // what went wrong, when not OK
	Retry  bool        `json:"retry"`         // a retry of a request whose outcome was unknown
}

// chaosInput and chaosOutput are a porcupine operation on one key.
type chaosInput struct {
	Key   chaosKey
	Kind  chaosOpKind
	Final string // the key's code at the end: what an unknown allocation may have given it
}

type chaosOutput struct {
	Code    string // "" is none (reads)
	Unknown bool
}

// chaosModel is the per-key model; states are codes ("" is none).
var chaosModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		idx := map[chaosKey]int{}
		var out [][]porcupine.Operation
		for _, op := range h {
			k := op.Input.(chaosInput).Key
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				out = append(out, nil)
			}
			out[i] = append(out[i], op)
		}
		return out
	},
	Init: func() []any { return []any{""} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(string), input.(chaosInput), output.(chaosOutput)
		switch {
		case in.Kind == opRead:
			if out.Code == s {
				return []any{s}
			}
			return nil
		case out.Unknown:
			if s == "" && in.Final != "" {
				return []any{s, in.Final}
			}
			return []any{s}
		case s == "" || s == out.Code:
			return []any{out.Code}
		}
		return nil
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(chaosInput), output.(chaosOutput)
		res := out.Code
		switch {
		case out.Unknown:
			res = "unknown (final " + in.Final + ")"
		case res == "":
			res = "none"
		}
		return fmt.Sprintf("%s %s -> %s", in.Kind, in.Key, res)
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "none"
		}
		return state.(string)
	},
}

// chaosVerdict is what the checker found.
type chaosVerdict struct {
	Problems   []string // every broken promise, described
	Result     porcupine.CheckResult
	BadKeys    []chaosKey // keys whose history is not linearizable
	Operations int        // porcupine operations (one per key of a request)
	Keys       int
	Unknown    int // requests with an unknown outcome
}

func (v *chaosVerdict) fail(format string, a ...any) {
	if len(v.Problems) < 50 {
		v.Problems = append(v.Problems, fmt.Sprintf(format, a...))
	} else if len(v.Problems) == 50 {
		v.Problems = append(v.Problems, "... (more problems left out)")
	}
}

// porcupineHistory turns the requests into one porcupine operation per key;
// an unknown outcome returns at the end of time. Reads that failed tell
// nothing and are left out.
func porcupineHistory(ops []chaosOp, final map[chaosKey]string) []porcupine.Operation {
	var h []porcupine.Operation
	for _, op := range ops {
		if !op.OK && op.Kind == opRead {
			continue
		}
		for i, k := range op.Keys {
			in := chaosInput{Key: k, Kind: op.Kind, Final: final[k]}
			out := chaosOutput{Unknown: !op.OK}
			ret := op.Return
			if op.OK {
				out.Code = op.Codes[i]
			} else {
				ret = math.MaxInt64
			}
			h = append(h, porcupine.Operation{ClientId: op.Client, Input: in, Call: op.Call, Output: out, Return: ret})
		}
	}
	return h
}

// checkChaosHistory checks a run's history against the final state (every
// key's code, as the nodes list it once every request was answered).
func checkChaosHistory(ops []chaosOp, final map[chaosKey]string, timeout time.Duration) chaosVerdict {
	var v chaosVerdict
	acked := map[chaosKey]string{}  // the code answered for each key
	holder := map[string]chaosKey{} // code -> the key it was answered or listed for
	claim := func(code string, k chaosKey, what string) {
		if other, ok := holder[code]; ok && other != k {
			v.fail("code %s given twice: to %s and to %s (%s)", code, other, k, what)
			return
		}
		holder[code] = k
	}
	asked := map[chaosKey]bool{}
	for _, op := range ops {
		if op.OK && len(op.Codes) != len(op.Keys) {
			v.fail("client %d: a %s answered %d codes for %d keys", op.Client, op.Kind, len(op.Codes), len(op.Keys))
			continue
		}
		if op.Kind == opAllocate && !op.OK {
			v.Unknown++
		}
		for i, k := range op.Keys {
			if op.Kind == opAllocate {
				asked[k] = true
			}
			if !op.OK {
				continue
			}
			c := op.Codes[i]
			switch {
			case op.Kind == opAllocate && c == "":
				v.fail("client %d: allocation for %s answered an empty code", op.Client, k)
			case op.Kind == opAllocate:
				if old, ok := acked[k]; ok && old != c {
					v.fail("retry changed the code of %s: answered %s, then %s (client %d, node %s)", k, old, c, op.Client, op.Node)
				}
				acked[k] = c
				claim(c, k, "answers")
			case c != "":
				claim(c, k, "a strong read")
			}
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(acked), compareChaosKeys) {
		if got, ok := final[k]; !ok {
			v.fail("acknowledged assignment lost: %s was answered %s, the final state has none", k, acked[k])
		} else if got != acked[k] {
			v.fail("acknowledged assignment changed: %s was answered %s, the final state has %s", k, acked[k], got)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(final), compareChaosKeys) {
		claim(final[k], k, "final state")
	}
	for _, k := range slices.SortedFunc(maps.Keys(asked), compareChaosKeys) {
		if final[k] == "" {
			v.fail("%s was asked for and every request was retried until answered, yet the final state has no code for it", k)
		}
	}
	v.Keys = len(asked)

	model := chaosModel.ToModel()
	h := porcupineHistory(ops, final)
	v.Operations = len(h)
	v.Result = porcupine.CheckOperationsTimeout(model, h, timeout)
	switch v.Result {
	case porcupine.Unknown:
		v.fail("the linearizability check timed out after %s (%d operations)", timeout, len(h))
	case porcupine.Illegal:
		// Name the keys whose history is not linearizable.
		for _, part := range model.Partition(h) {
			if !porcupine.CheckOperations(model, part) {
				k := part[0].Input.(chaosInput).Key
				v.BadKeys = append(v.BadKeys, k)
				if len(v.BadKeys) <= 5 {
					v.fail("history of %s is not linearizable:\n%s", k, describeKeyHistory(ops, k))
				}
			}
		}
		if len(v.BadKeys) == 0 {
			v.fail("the history is not linearizable")
		}
	}
	return v
}

// describeKeyHistory lists the requests that touched key k, in call order.
func describeKeyHistory(ops []chaosOp, k chaosKey) string {
	var b strings.Builder
	for _, op := range ops {
		for i, kk := range op.Keys {
			if kk != k {
				continue
			}
			res := "unknown (" + op.Err + ")"
			if op.OK {
				res = op.Codes[i]
				if res == "" {
					res = "none"
				}
			}
			ret := fmt.Sprintf("%.3fs", float64(op.Return)/1e9)
			fmt.Fprintf(&b, "  [%.3fs, %s] client %d %s via %s -> %s (status %d, retry %v)\n",
				float64(op.Call)/1e9, ret, op.Client, op.Kind, op.Node, res, op.Status, op.Retry)
		}
	}
	return b.String()
}

// keyHistoryOps is the part of the porcupine history about the given keys.
func keyHistoryOps(ops []chaosOp, final map[chaosKey]string, keys []chaosKey) []porcupine.Operation {
	want := map[chaosKey]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var out []porcupine.Operation
	for _, op := range porcupineHistory(ops, final) {
		if want[op.Input.(chaosInput).Key] {
			out = append(out, op)
		}
	}
	return out
}

func compareChaosKeys(a, b chaosKey) int {
	return cmp.Or(cmp.Compare(a.Send, b.Send), cmp.Compare(a.Recipient, b.Recipient))
}

// The checker on synthetic histories (no cluster).

func synKey(s, r string) chaosKey { return chaosKey{s, r} }

func synAlloc(client int, call, ret int64, keys []chaosKey, codes ...string) chaosOp {
	return chaosOp{Client: client, Kind: opAllocate, Node: "n1", Keys: keys, Codes: codes, OK: true, Call: call, Return: ret, Status: 200}
}

func synUnknown(client int, call, ret int64, keys ...chaosKey) chaosOp {
	return chaosOp{Client: client, Kind: opAllocate, Node: "n1", Keys: keys, Call: call, Return: ret, Status: 503, Err: "unavailable"}
}

func synRead(client int, call, ret int64, keys []chaosKey, codes ...string) chaosOp {
	return chaosOp{Client: client, Kind: opRead, Node: "n2", Keys: keys, Codes: codes, OK: true, Call: call, Return: ret, Status: 200}
}

func synKeys(k ...chaosKey) []chaosKey { return k }

func TestChaosCheckerAcceptsGoodHistories(t *testing.T) {
	a, b, c := synKey("s1", "a"), synKey("s1", "b"), synKey("s2", "a")
	cases := []struct {
		name  string
		ops   []chaosOp
		final map[chaosKey]string
	}{
		{"plain", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a, b), "C1", "C2"),
			synAlloc(1, 5, 15, synKeys(c), "C3"),
			synAlloc(1, 20, 30, synKeys(b, a), "C2", "C1"), // a retry: same codes
			synRead(2, 31, 40, synKeys(a, b, c), "C1", "C2", "C3"),
		}, map[chaosKey]string{a: "C1", b: "C2", c: "C3"}},
		{"concurrent allocations of one key agree", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a), "C1"),
			synAlloc(1, 1, 9, synKeys(a), "C1"),
			synRead(2, 2, 3, synKeys(a), ""), // before either took effect
		}, map[chaosKey]string{a: "C1"}},
		{"unknown outcome that took effect", []chaosOp{
			synUnknown(0, 0, 10, a, b),
			synRead(1, 20, 30, synKeys(a), "C1"), // a has its code before any answer
			synAlloc(0, 40, 50, synKeys(a, b), "C1", "C2"),
		}, map[chaosKey]string{a: "C1", b: "C2"}},
		{"unknown outcome that did not take effect", []chaosOp{
			synUnknown(0, 0, 10, a),
			synRead(1, 20, 30, synKeys(a), ""),
			synAlloc(0, 40, 50, synKeys(a), "C1"),
			synRead(1, 60, 70, synKeys(a), "C1"),
		}, map[chaosKey]string{a: "C1"}},
		{"unknown outcome resolved only by the final state", []chaosOp{
			synUnknown(0, 0, 10, a),
			synUnknown(1, 5, 12, a, b),
			synAlloc(1, 20, 30, synKeys(b), "C2"),
		}, map[chaosKey]string{a: "C1", b: "C2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := checkChaosHistory(tc.ops, tc.final, 10*time.Second)
			if len(v.Problems) != 0 || v.Result != porcupine.Ok {
				t.Fatalf("a good history was refused (%v): %v", v.Result, v.Problems)
			}
		})
	}
}

func TestChaosCheckerRefusesBadHistories(t *testing.T) {
	a, b, c := synKey("s1", "a"), synKey("s1", "b"), synKey("s2", "a")
	cases := []struct {
		name  string
		ops   []chaosOp
		final map[chaosKey]string
		want  string // in a problem
		lin   bool   // the linearizability check itself must refuse it
	}{
		{"a code given twice", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a), "C1"),
			synAlloc(1, 20, 30, synKeys(c), "C1"),
		}, map[chaosKey]string{a: "C1", c: "C1"}, "code C1 given twice", false},
		{"a code given twice inside one answer", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a, b), "C1", "C1"),
		}, map[chaosKey]string{a: "C1", b: "C2"}, "code C1 given twice", false},
		{"a retry answered another code", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a), "C1"),
			synAlloc(0, 20, 30, synKeys(a), "C2"),
		}, map[chaosKey]string{a: "C1"}, "retry changed the code", true},
		{"an acknowledged assignment lost", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a, b), "C1", "C2"),
		}, map[chaosKey]string{a: "C1"}, "acknowledged assignment lost", false},
		{"an acknowledged assignment changed", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a), "C1"),
		}, map[chaosKey]string{a: "C9"}, "acknowledged assignment changed", false},
		{"a key asked for never served", []chaosOp{
			synUnknown(0, 0, 10, a),
		}, map[chaosKey]string{}, "the final state has no code", false},
		{"a stale strong read", []chaosOp{
			synAlloc(0, 0, 10, synKeys(a), "C1"),
			synRead(1, 20, 30, synKeys(a), ""),
		}, map[chaosKey]string{a: "C1"}, "not linearizable", true},
		{"a read of a code that is not the final one", []chaosOp{
			synUnknown(0, 0, 10, a),
			synRead(1, 20, 30, synKeys(a), "C7"),
			synAlloc(0, 40, 50, synKeys(a), "C1"),
		}, map[chaosKey]string{a: "C1"}, "not linearizable", true},
		{"a read that goes back to none", []chaosOp{
			synUnknown(0, 0, 10, a),
			synRead(1, 20, 30, synKeys(a), "C1"),
			synRead(1, 40, 50, synKeys(a), ""),
		}, map[chaosKey]string{a: "C1"}, "not linearizable", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := checkChaosHistory(tc.ops, tc.final, 10*time.Second)
			found := false
			for _, p := range v.Problems {
				found = found || strings.Contains(p, tc.want)
			}
			if !found {
				t.Fatalf("want a problem with %q, got %v (%v)", tc.want, v.Problems, v.Result)
			}
			if tc.lin && v.Result != porcupine.Illegal {
				t.Fatalf("porcupine answered %v, want Illegal", v.Result)
			}
			if tc.lin && (len(v.BadKeys) != 1 || v.BadKeys[0] != a) {
				t.Fatalf("bad keys %v, want [%v]", v.BadKeys, a)
			}
		})
	}
}

// TestChaosCheckerScales: a history like a 3-minute run's (55k
// porcupine operations on 50k keys, a tenth of the requests with an
// unknown outcome) checks in about a second.
func TestChaosCheckerScales(t *testing.T) {
	var ops []chaosOp
	final := map[chaosKey]string{}
	n := 0
	for i := range 10_000 {
		var ks []chaosKey
		var cs []string
		for j := range 5 {
			k := synKey(fmt.Sprintf("s%d", j%3), fmt.Sprintf("r%d", (i*5+j)%60_000))
			if _, ok := final[k]; !ok {
				final[k] = fmt.Sprintf("C%d", n)
				n++
			}
			ks = append(ks, k)
			cs = append(cs, final[k])
		}
		call := int64(i) * 1000
		if i%10 == 0 {
			ops = append(ops, synUnknown(i%8, call, call+5000, ks...))
		}
		ops = append(ops, synAlloc(i%8, call, call+5000, ks, cs...))
	}
	start := time.Now()
	v := checkChaosHistory(ops, final, time.Minute)
	if len(v.Problems) != 0 {
		t.Fatal(v.Problems)
	}
	t.Logf("%d operations on %d keys checked in %s", v.Operations, v.Keys, time.Since(start).Round(time.Millisecond))
}
