package raftfsm

import (
	"sync"
	"testing"
)

// TestChunkedAcrossChunks: entries keep their values across chunk
// boundaries, and a copy handed to a reader stays valid while the writer
// goes on adding (run with -race).
func TestChunkedAcrossChunks(t *testing.T) {
	var c chunked[int]
	views := make(chan chunked[int], 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := range views {
			for i := range v.len() {
				if got := v.at(i); got != i*3 {
					t.Errorf("reader: entry %d is %d, want %d", i, got, i*3)
					return
				}
			}
		}
	}()
	const n = 3*chunkLen + 5
	for i := range n {
		c.add(i * 3)
		if i%(chunkLen/2) == 0 || i == n-1 {
			views <- c
		}
	}
	close(views)
	wg.Wait()
	if c.len() != n || len(c.chunks) != 4 {
		t.Fatalf("%d entries in %d chunks, want %d in 4", c.len(), len(c.chunks), n)
	}
	c.set(chunkLen, -1)
	if c.at(chunkLen) != -1 || c.at(chunkLen-1) != (chunkLen-1)*3 || c.at(chunkLen+1) != (chunkLen+1)*3 {
		t.Fatal("set changed the wrong entry")
	}
}

// TestChunkedStartsSmall: a list with a few entries (most lists' take log)
// holds room for a few, not for a whole chunk.
func TestChunkedStartsSmall(t *testing.T) {
	var c chunked[takeEntry]
	for i := range 20 {
		c.add(takeEntry{batch: uint64(i)})
	}
	if len(c.chunks) != 1 || len(c.chunks[0]) != 2*firstChunkLen {
		t.Fatalf("20 entries take %d chunks, the first of %d entries", len(c.chunks), len(c.chunks[0]))
	}
	for i := range 20 {
		if c.at(i).batch != uint64(i) {
			t.Fatalf("entry %d lost across the first chunk's growth", i)
		}
	}
}
