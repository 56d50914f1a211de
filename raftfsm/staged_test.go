package raftfsm

import (
	"fmt"
	"testing"
)

// TestStagedPoolGivesTheSameState: a create-and-import whose chunks built
// their own pool (ImportChunk.NewList) must leave exactly the state of one
// whose commit adds the codes itself: the same answer and digest, whether
// the staged pool was used, lost to a restart half-way, or given up for a
// chunk out of order.
func TestStagedPoolGivesTheSameState(t *testing.T) {
	chunks := make([][]string, 3)
	for i := range 3000 {
		chunks[i%3] = append(chunks[i%3], fmt.Sprintf("C%05d", i%2500)) // 500 duplicates
	}
	run := func(t *testing.T, newList bool, order []int, reopenAfter int) (ImportResult, string, bool) {
		tf := newTestFSM(t)
		tf.mustApply(&CreateTenant{ID: "acme", Name: "Acme", At: 1})
		up := UploadID{7}
		for k, n := range order {
			tf.mustApply(&ImportChunk{Tenant: "acme", Upload: up, Chunk: uint32(n), Codes: block(chunks[n]...), NewList: newList})
			if k == reopenAfter {
				tf = tf.reopen()
			}
		}
		staged := tf.f.staged[up]
		res := tf.mustApply(&ImportCommit{Tenant: "acme", Upload: up, Chunks: 3, List: 5,
			Create: &CreateList{Tenant: "acme", ID: 5, Name: "new", Dedupe: true, At: 2}}).(ImportResult)
		used := staged != nil && tf.f.pools.Get(5) == staged.list
		if len(tf.f.staged) != 0 {
			t.Fatalf("%d staged pools left after the commit", len(tf.f.staged))
		}
		// A restart rebuilds the list from the stored batches: same state.
		d := tf.f.Digest()
		if again := tf.reopen().f.Digest(); again != d {
			t.Fatal("the state after a restart differs from the state the commit left")
		}
		return res, d, used
	}
	wantRes, want, used := run(t, false, []int{0, 1, 2}, -1)
	if used || wantRes.Imported != 2500 || wantRes.Duplicates != 500 {
		t.Fatalf("without NewList: %+v (staged pool used: %v)", wantRes, used)
	}
	for _, c := range []struct {
		name        string
		order       []int
		reopenAfter int
		wantUsed    bool
	}{
		{"staged pool", []int{0, 1, 2}, -1, true},
		{"restart half-way", []int{0, 1, 2}, 0, false},
		{"chunk out of order", []int{1, 0, 2}, -1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, d, used := run(t, true, c.order, c.reopenAfter)
			if used != c.wantUsed {
				t.Fatalf("staged pool used: %v, want %v", used, c.wantUsed)
			}
			if res != wantRes || d != want {
				t.Fatalf("got %+v, digest equal %v; want %+v", res, d == want, wantRes)
			}
		})
	}
}
