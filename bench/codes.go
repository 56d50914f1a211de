package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// CodeAlphabet is the set of characters generated codes are made of.
const CodeAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// MaxCodeLen is the longest code the server accepts (SPEC §1: 1..128 bytes).
const MaxCodeLen = 128

// coreDigits is the number of base-36 digits that carry the bijection:
// 36^12 < 2^63, so the arithmetic stays inside a uint64.
const coreDigits = 12

// Seeds for the multiplier and the offset of the affine map. Any odd
// multiplier that 3 does not divide is a unit modulo 36^k; NewCodeGen adjusts
// the reduced seed until it is one.
const (
	codeMulSeed uint64 = 0x9E3779B97F4A7C15
	codeAddSeed uint64 = 0x2545F4914F6CDD1D
)

// pairs[n] is the two base-36 digits of n < 36*36.
var pairs = func() (t [36 * 36][2]byte) {
	for n := range t {
		t[n] = [2]byte{CodeAlphabet[n/36], CodeAlphabet[n%36]}
	}
	return t
}()

// CodeGen maps an index i in [0, Capacity()) to a code of Len() characters
// over CodeAlphabet. The map is injective: the last min(Len, 12) characters
// are base36((i*mul + add) mod 36^min(Len,12)), an affine bijection of
// Z/36^k because mul is coprime to 36. Longer codes get a prefix derived from
// the index (it only makes them look less alike; uniqueness comes from the
// tail).
type CodeGen struct {
	length int
	core   int
	mod    uint64
	mul    uint64
	add    uint64
	inv    uint64 // mul^-1 mod mod, computed by NewCodeGen (see Index)
}

// NewCodeGen returns the generator for codes of the given length (1..128).
func NewCodeGen(length int) (*CodeGen, error) {
	if length < 1 || length > MaxCodeLen {
		return nil, fmt.Errorf("code length %d out of range 1..%d", length, MaxCodeLen)
	}
	core := min(length, coreDigits)
	mod := uint64(1)
	for range core {
		mod *= 36
	}
	mul := (codeMulSeed % mod) | 1
	for mul == 1 || mul%3 == 0 {
		mul += 2
		if mul >= mod {
			mul = 5 % mod
		}
	}
	g := &CodeGen{length: length, core: core, mod: mod, mul: mul, add: codeAddSeed % mod}
	g.inverse()
	return g, nil
}

// Len is the length of every code.
func (g *CodeGen) Len() int { return g.length }

// Capacity is the number of distinct codes the generator can produce.
func (g *CodeGen) Capacity() uint64 { return g.mod }

// value is the affine image of i in [0, mod).
func (g *CodeGen) value(i uint64) uint64 {
	hi, lo := bits.Mul64(i%g.mod, g.mul)
	_, r := bits.Div64(hi, lo, g.mod) // hi < mod since both factors are < mod
	r += g.add
	if r >= g.mod {
		r -= g.mod
	}
	return r
}

// put writes the code of index i, whose affine value is v, into dst[:Len()].
func (g *CodeGen) put(dst []byte, i, v uint64) {
	dst = dst[:g.length]
	k := g.length - 1
	lo := g.length - g.core
	for ; k-1 >= lo; k -= 2 { // two digits per division
		p := &pairs[v%(36*36)]
		dst[k-1], dst[k] = p[0], p[1]
		v /= 36 * 36
	}
	if k == lo {
		dst[k] = CodeAlphabet[v%36]
	}
	if g.length > g.core {
		// Prefix: digits of a 64-bit mix of the index, re-mixed as needed.
		x := i
		var s uint64
		left := 0
		for k := 0; k < g.length-g.core; k++ {
			if left == 0 {
				x = mix64(x + 0x632BE59BD9B4E019)
				s = x
				left = 12
			}
			dst[k] = CodeAlphabet[s%36]
			s /= 36
			left--
		}
	}
}

// mix64 is a 64-bit finaliser (xor-shift-multiply), used only for padding.
func mix64(x uint64) uint64 {
	x ^= x >> 31
	x *= 0x7FB5D329728EA185
	x ^= x >> 27
	x *= 0x81DADEF4BC2DD44D
	x ^= x >> 33
	return x
}

// Append appends the code of index i to dst.
func (g *CodeGen) Append(dst []byte, i uint64) []byte {
	n := len(dst)
	for range g.length {
		dst = append(dst, 0)
	}
	g.put(dst[n:], i, g.value(i))
	return dst
}

// Code returns the code of index i.
func (g *CodeGen) Code(i uint64) string {
	return string(g.Append(make([]byte, 0, g.length), i))
}

// CodeReader streams the codes of indexes [start, start+count) as CSV, one
// code per line ended by LF, generating them on the fly: it never holds more
// than one line in memory.
type CodeReader struct {
	g       *CodeGen
	next    uint64 // index of the next line to emit
	end     uint64
	cur     uint64 // value(next)
	line    []byte // scratch for a line split across Read calls
	pending []byte // tail of line still to emit
}

// ErrTooManyCodes is returned when the index range exceeds the generator.
var ErrTooManyCodes = errors.New("more codes asked than the code length allows")

// NewCodeReader returns a reader over codes [start, start+count).
func NewCodeReader(g *CodeGen, start, count uint64) (*CodeReader, error) {
	if count > g.Capacity() || start > g.Capacity()-count {
		return nil, fmt.Errorf("%w: %d codes from %d, capacity %d at length %d", ErrTooManyCodes, count, start, g.Capacity(), g.Len())
	}
	return &CodeReader{
		g:    g,
		next: start,
		end:  start + count,
		cur:  g.value(start),
		line: make([]byte, g.length+1),
	}, nil
}

// CSVSize is the exact number of bytes of a CSV of count codes of g.
func CSVSize(g *CodeGen, count uint64) int64 {
	return int64(count) * int64(g.length+1)
}

// advance moves to the next index.
func (r *CodeReader) advance() {
	r.next++
	r.cur += r.g.mul
	if r.cur >= r.g.mod {
		r.cur -= r.g.mod
	}
}

// Read implements io.Reader.
func (r *CodeReader) Read(p []byte) (int, error) {
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	if len(r.pending) > 0 {
		return n, nil
	}
	w := r.g.length + 1
	for r.next < r.end && len(p)-n >= w {
		r.g.put(p[n:], r.next, r.cur)
		p[n+w-1] = '\n'
		n += w
		r.advance()
	}
	if r.next < r.end && n < len(p) {
		r.g.put(r.line, r.next, r.cur)
		r.line[w-1] = '\n'
		r.advance()
		k := copy(p[n:], r.line)
		n += k
		r.pending = r.line[k:]
	}
	if n == 0 && r.next >= r.end {
		return 0, io.EOF
	}
	return n, nil
}

// ParseCount parses a count as written on a command line: digits with
// optional "_" or "," separators, an optional k/M/G suffix (10^3, 10^6,
// 10^9), or an exponent form such as 1e7.
func ParseCount(s string) (int64, error) {
	t := strings.NewReplacer("_", "", ",", "").Replace(strings.TrimSpace(s))
	if t == "" {
		return 0, fmt.Errorf("empty count")
	}
	mult := int64(1)
	switch t[len(t)-1] {
	case 'k', 'K':
		mult = 1_000
	case 'm', 'M':
		mult = 1_000_000
	case 'g', 'G':
		mult = 1_000_000_000
	}
	if mult != 1 {
		t = t[:len(t)-1]
	}
	if v, err := strconv.ParseInt(t, 10, 64); err == nil {
		if v < 0 || (v > 0 && v > math.MaxInt64/mult) {
			return 0, fmt.Errorf("count %q out of range", s)
		}
		return v * mult, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("invalid count %q", s)
	}
	f *= float64(mult)
	if f != math.Trunc(f) || f >= math.MaxInt64 {
		return 0, fmt.Errorf("count %q is not a whole number in range", s)
	}
	return int64(f), nil
}

// CountFlag is a flag.Value for counts parsed by ParseCount.
type CountFlag struct{ V *int64 }

func (c CountFlag) String() string {
	if c.V == nil {
		return "0"
	}
	return strconv.FormatInt(*c.V, 10)
}

// Set parses a count.
func (c CountFlag) Set(s string) error {
	v, err := ParseCount(s)
	if err != nil {
		return err
	}
	*c.V = v
	return nil
}
