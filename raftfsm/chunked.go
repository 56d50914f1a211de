package raftfsm

// chunked is an append-only list kept in fixed-size chunks, so it grows
// without copying what it holds. The node keeps a few such lists with an
// entry per send or per allocation; as plain slices each growth copied
// all of it on the apply goroutine, stalling every write for longer as the
// list grew (DESIGN.md, "Measurements").
//
// The first chunk starts small and doubles up to a full chunk, since a
// list's take log is one of these and most lists take few allocations;
// that copy is bounded by a chunk.
//
// One writer. A copy of the value is a consistent view for readers on other
// goroutines: entries below its length never change, a chunk a reader can
// see is never written below that length, and the writer only writes past
// the length of any copy it handed out (a doubled first chunk comes with a
// new directory, so readers keep the old one).
type chunked[T any] struct {
	chunks [][]T // chunk 0: firstChunkLen doubling to chunkLen; then chunkLen each
	n      int
}

const (
	chunkBits     = 14
	chunkLen      = 1 << chunkBits
	firstChunkLen = 16
)

func (c *chunked[T]) len() int { return c.n }

func (c *chunked[T]) at(i int) T { return c.chunks[i>>chunkBits][i&(chunkLen-1)] }

// set replaces entry i, which the writer has not handed to any reader yet.
func (c *chunked[T]) set(i int, v T) { c.chunks[i>>chunkBits][i&(chunkLen-1)] = v }

func (c *chunked[T]) add(v T) {
	switch {
	case len(c.chunks) == 0:
		c.chunks = [][]T{make([]T, firstChunkLen)}
	case c.n < chunkLen && c.n == len(c.chunks[0]):
		grown := make([]T, 2*c.n)
		copy(grown, c.chunks[0])
		c.chunks = [][]T{grown}
	case c.n == len(c.chunks)*chunkLen:
		c.chunks = append(c.chunks, make([]T, chunkLen))
	}
	c.set(c.n, v)
	c.n++
}
