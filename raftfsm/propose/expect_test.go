package propose

import (
	"testing"

	"github.com/coupond/coupond/raftfsm"
)

// TestExpectedCodes: the estimate a create-and-import sends with its first
// chunk, so the new list's index is sized once (raftfsm/staged.go).
func TestExpectedCodes(t *testing.T) {
	var first raftfsm.CodeBlock
	for range 100 {
		first = first.AppendCode([]byte("SPRING-0001")) // 12 bytes in the block, 12 in the CSV
	}
	f := func(length int, block raftfsm.CodeBlock, want uint32) {
		t.Helper()
		if got := expectedCodes(length, block); got != want {
			t.Fatalf("expectedCodes(%d, %d codes) = %d, want %d", length, block.Count(), got, want)
		}
	}
	f(12_000_000, first, 1_000_000)
	f(-1, first, 0) // chunked: no Content-Length
	f(0, first, 0)
	f(12_000_000, nil, 0)
	f(1<<62, first, 1<<32-1) // capped, never wrapped
}
