package raftfsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The codec of command bodies and stored records. Writers append: integers
// as varints, strings and byte runs as a uvarint length and the bytes, a
// bool as one byte 0 or 1, fixed-size arrays as their bytes. The decoder
// reads the same values back and refuses anything else: a truncated value,
// a varint longer than it need be, a bool that is not 0 or 1. So every
// value has exactly one encoding, and a decoded entry encodes back to the
// bytes it came from (FuzzDecode).

// errCorrupt marks bytes that no writer of this package produced: a corrupt
// log entry or stored record. Every decoding error wraps it.
var errCorrupt = errors.New("corrupt data")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func appendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// fieldError says which field of a command or record could not be read.
type fieldError struct{ field, problem string }

func (e *fieldError) Error() string { return "field " + e.field + ": " + e.problem }
func (e *fieldError) Unwrap() error { return errCorrupt }

// decoder reads what the append helpers wrote. Each read names the field it
// reads, for the error; the first error sticks and every later read returns
// a zero value.
type decoder struct {
	b       []byte
	err     error
	version byte // of the command or record being read
}

// fail records that field could not be read.
func (d *decoder) fail(field, problem string) {
	if d.err == nil {
		d.err = &fieldError{field: field, problem: problem}
	}
	d.b = nil
}

// uvarintLen reads the length of the uvarint at the start of d.b, or fails.
// A uvarint whose last byte is 0 has a shorter encoding (except 0 itself):
// the writers never produce one.
func (d *decoder) uvarintLen(field string) (uint64, int) {
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail(field, "truncated")
		return 0, 0
	case n < 0:
		d.fail(field, "varint overflows 64 bits")
		return 0, 0
	case n > 1 && d.b[n-1] == 0:
		d.fail(field, "non-minimal varint")
		return 0, 0
	}
	return v, n
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := d.uvarintLen(field)
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32(field string) uint32 {
	v := d.uvarint(field)
	if v > 1<<32-1 {
		d.fail(field, "exceeds 32 bits")
		return 0
	}
	return uint32(v)
}

// varint reads a zig-zag varint: a uvarint underneath, with the same rules.
func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) byte(field string) byte {
	p := d.fixed(field, 1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) bool(field string) bool {
	switch b := d.byte(field); {
	case d.err != nil || b == 0:
		return false
	case b == 1:
		return true
	default:
		d.fail(field, fmt.Sprintf("bool of value %d", b))
		return false
	}
}

func (d *decoder) fixed(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.fail(field, "truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// bytes returns a slice aliasing the entry.
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail(field, "truncated")
		return nil
	}
	return d.fixed(field, int(n))
}

func (d *decoder) string(field string) string { return string(d.bytes(field)) }

// shortage reads a Shortage byte; no other value is one.
func (d *decoder) shortage() Shortage {
	v := Shortage(d.byte("OnShortage"))
	if d.err == nil && v > ShortageFallback {
		d.fail("OnShortage", fmt.Sprintf("unknown policy %d", v))
	}
	return v
}

// count reads the number of elements of a list whose every element takes
// at least one byte, so a corrupt count cannot make the reader allocate
// more than the bytes left could hold.
func (d *decoder) count(field string, max uint64) uint64 {
	n := d.uvarint(field)
	if d.err == nil && (n > max || n > uint64(len(d.b))) {
		d.fail(field, fmt.Sprintf("%d elements", n))
		return 0
	}
	return n
}

// done ends a record: every byte must have been read.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes: %w", len(d.b), errCorrupt)
	}
	return d.err
}

// recordDecoder reads a stored record of version recordVersion.
func recordDecoder(v []byte) *decoder {
	if len(v) == 0 || v[0] != recordVersion {
		return &decoder{err: fmt.Errorf("record of unknown version: %w", errCorrupt)}
	}
	return &decoder{b: v[1:], version: v[0]}
}
