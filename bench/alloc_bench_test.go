package bench

import (
	"encoding/json"
	"testing"
)

// cannedReply is the answer to recipients [0, n) of rg with codes [0, n).
func cannedReply(g *CodeGen, rg rcptGen, n int) []byte {
	b := []byte(`{"assignments":[`)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"recipient":"`...)
		b = rg.Append(b, int64(i))
		b = append(b, `","code":"`...)
		b = g.Append(b, uint64(i))
		b = append(b, `"}`...)
	}
	return append(b, `],"available":0}`...)
}

// BenchmarkChunkClientSide is the harness's own work for one request of
// 10,000 recipients, without the network: build the body, parse the reply,
// check every recipient and record every code. Reported per code.
func BenchmarkChunkClientSide(b *testing.B) {
	g, _ := NewCodeGen(12)
	rg := rcptGen{prefix: "u00.", width: 7, suffix: "@example.com"}
	const n = 10_000
	reply := cannedReply(g, rg, n)
	a := &allocator{run: &sendRun{g: g, messageID: "bench-x"}}
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		a.body.build("bench-x", rg, 0, n)
		a.log.idx = a.log.idx[:0]
		_, k, err := parseAllocReply(reply, func(k int, r, c []byte, _ bool) error {
			if string(r) != string(a.body.Recipient(k)) {
				b.Fatal("mismatch")
			}
			a.log.add(g, c)
			return nil
		})
		if err != nil || k != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/code")
}

// BenchmarkChunkEncodingJSON is the same reply decoded by encoding/json, for
// comparison.
func BenchmarkChunkEncodingJSON(b *testing.B) {
	g, _ := NewCodeGen(12)
	rg := rcptGen{prefix: "u00.", width: 7, suffix: "@example.com"}
	const n = 10_000
	reply := cannedReply(g, rg, n)
	b.SetBytes(int64(len(reply)))
	b.ReportAllocs()
	for b.Loop() {
		var v struct {
			Assignments []struct{ Recipient, Code string }
			Available   int64
		}
		if err := json.Unmarshal(reply, &v); err != nil || len(v.Assignments) != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/code")
}
