package main

import "math/bits"

// Codes have the shape couponbench imports into coupond: 12 characters over
// [0-9A-Z], unique by construction. code(i) writes (i·codeMul + codeAdd) mod
// 36^12 in base 36; codeMul is a unit modulo 36^12 (odd, not a multiple of
// 3), so the map is a bijection and distinct indexes give distinct codes.
// A large multiplier scatters consecutive codes over the key space, so a
// peer's index sees inserts in random order, as with real codes.
const (
	codeAlphabet        = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	codeLen             = 12
	codeSpace    uint64 = 4738381338321616896 // 36^12
	codeMul      uint64 = 1923952142679964693 // odd and no multiple of 3
	codeAdd      uint64 = 2685821657736338717
)

// code returns the i-th generated code.
func code(i uint64) string {
	var b [codeLen]byte
	return string(appendCode(b[:0], i))
}

func appendCode(dst []byte, i uint64) []byte {
	hi, lo := bits.Mul64(i%codeSpace, codeMul)
	_, v := bits.Div64(hi%codeSpace, lo, codeSpace)
	v, _ = bits.Add64(v, codeAdd, 0)
	v %= codeSpace // both terms are below 36^12 < 2^63: no overflow
	var b [codeLen]byte
	for k := codeLen - 1; k >= 0; k-- {
		b[k] = codeAlphabet[v%36]
		v /= 36
	}
	return append(dst, b[:]...)
}
