package propose

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coupond/coupond/raftfsm"
)

// firstEntryRaft keeps the first entry proposed to it and resolves none.
type firstEntryRaft struct {
	Raft
	mu    sync.Mutex
	first []byte
}

func (r *firstEntryRaft) Apply(b []byte, _ time.Duration) raft.ApplyFuture {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == nil {
		r.first = bytes.Clone(b)
	}
	return stuckApply{}
}

// sizedCodes is codesBody with an estimate of its length.
type sizedCodes struct {
	codesBody
	est int
}

func (b *sizedCodes) EstimatedLen() int { return b.est }

// TestSizedBodySizesTheNewList: the first chunk of a create-and-import
// carries the codes expected from the body's estimate when it has one (a
// compressed body), else from Import.BodyLen.
func TestSizedBodySizesTheNewList(t *testing.T) {
	var block raftfsm.CodeBlock
	for range 10 {
		block = block.AppendCode([]byte("CODE-0001"))
	}
	for _, c := range []struct {
		name    string
		bodyLen int
		body    ImportBody
		want    uint32
	}{
		{"no length, no estimate", -1, &codesBody{n: 10}, 0},
		{"length", 5000, &codesBody{n: 10}, expectedCodes(5000, block)},
		{"estimate", -1, &sizedCodes{codesBody{n: 10}, 1 << 20}, expectedCodes(1<<20, block)},
		{"no estimate: the length", 5000, &sizedCodes{codesBody{n: 10}, -1}, expectedCodes(5000, block)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &firstEntryRaft{}
			p := New(r, nil, Config{ApplyTimeout: 20 * time.Millisecond})
			defer p.Close()
			create := &raftfsm.CreateList{Tenant: "t", ID: 1, Name: "n", Dedupe: true}
			p.Import(Import{Tenant: "t", List: 1, Create: create, BodyLen: c.bodyLen}, c.body) // times out: nothing applies
			r.mu.Lock()
			defer r.mu.Unlock()
			cmd, err := raftfsm.Decode(r.first)
			if err != nil {
				t.Fatal(err)
			}
			chunk, ok := cmd.(*raftfsm.ImportChunk)
			if !ok || !chunk.NewList || chunk.Chunk != 0 {
				t.Fatalf("first entry %T %+v, want chunk 0 of a new list", cmd, cmd)
			}
			if chunk.Expect != c.want {
				t.Fatalf("Expect %d, want %d", chunk.Expect, c.want)
			}
		})
	}
	if expectedCodes(1<<20, block) == 0 || expectedCodes(1<<20, block) == expectedCodes(5000, block) {
		t.Fatal("the cases do not tell the estimate from the length")
	}
}
