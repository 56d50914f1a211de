package raftfsm

// chunked is an append-only list kept in fixed-size chunks, so it grows
// without copying what it holds. The node keeps a few such lists with an
// entry per send or per allocation; as plain slices each growth copied
// all of it on the apply goroutine, and at half a million sends one growth
// stalled every write for ~80 ms (the copy, the fresh pages, and the
// collector's assist for a 10 MB allocation), more as the list grew.
//
// One writer. A copy of the value is a consistent view for readers on other
// goroutines: entries below its length never change and chunks never move,
// and the writer only writes past the length of any copy it handed out.
type chunked[T any] struct {
	chunks []*[chunkLen]T
	n      int
}

const (
	chunkBits = 14
	chunkLen  = 1 << chunkBits
)

func (c *chunked[T]) len() int { return c.n }

func (c *chunked[T]) at(i int) T { return c.chunks[i>>chunkBits][i&(chunkLen-1)] }

// set replaces entry i, which the writer has not handed to any reader yet.
func (c *chunked[T]) set(i int, v T) { c.chunks[i>>chunkBits][i&(chunkLen-1)] = v }

func (c *chunked[T]) add(v T) {
	if c.n == len(c.chunks)*chunkLen {
		c.chunks = append(c.chunks, new([chunkLen]T))
	}
	c.set(c.n, v)
	c.n++
}
