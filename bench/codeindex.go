package bench

import (
	"math/big"
	"math/bits"
)

// inverse returns mul^-1 modulo mod (mul is a unit by construction).
func (g *CodeGen) inverse() uint64 {
	if g.inv == 0 {
		m := new(big.Int).SetUint64(g.mod)
		x := new(big.Int).ModInverse(new(big.Int).SetUint64(g.mul), m)
		if x == nil {
			panic("bench: code multiplier is not a unit") // NewCodeGen makes it one
		}
		g.inv = x.Uint64()
	}
	return g.inv
}

// digit36 maps a byte of CodeAlphabet to its value, anything else to 0xFF.
var digit36 = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xFF
	}
	for i := range len(CodeAlphabet) {
		t[CodeAlphabet[i]] = byte(i)
	}
	return t
}()

// Index inverts Append: it returns the index i whose code is code, and false
// when code is not one the generator makes (wrong length, a character outside
// the alphabet, or, for codes longer than 12, a prefix that does not match).
// It does not allocate.
func (g *CodeGen) Index(code []byte) (uint64, bool) {
	if len(code) != g.length {
		return 0, false
	}
	var v uint64
	for _, c := range code[g.length-g.core:] {
		d := digit36[c]
		if d == 0xFF {
			return 0, false
		}
		v = v*36 + uint64(d)
	}
	// i = (v - add) * mul^-1 mod m
	if v >= g.add {
		v -= g.add
	} else {
		v = v + g.mod - g.add
	}
	hi, lo := bits.Mul64(v, g.inverse())
	_, i := bits.Div64(hi, lo, g.mod)
	if g.length > g.core {
		var buf [MaxCodeLen]byte
		g.put(buf[:], i, g.value(i))
		if string(buf[:g.length-g.core]) != string(code[:g.length-g.core]) {
			return 0, false
		}
	}
	return i, true
}
