// Package codecsv reads single-column CSV uploads of coupon codes as a stream.
//
// A Reader turns an upload body into a sequence of codes, one per physical
// line, following the product rules: UTF-8 with an optional leading BOM,
// LF / CRLF / CR line ends, white space trimmed around values (outside and
// inside quotes), RFC 4180 quoting within a single line, blank lines and empty
// values skipped, at most MaxCodeLen bytes per code. Any rule violation is
// reported as an *Error carrying the physical line number; the caller must
// refuse the whole upload.
//
// The Reader uses a fixed 64 KiB buffer whatever the body or line length and
// does no heap allocation per code. Plain ASCII lines take a fast path; all
// other lines go through a general rune-by-rune state machine.
package codecsv

import (
	"errors"
	"io"
	"strconv"
	"unicode/utf8"
)

// MaxCodeLen is the longest code accepted, in bytes, after trimming and
// unquoting.
const MaxCodeLen = 128

// Reason strings of Error.
const (
	reasonSecondColumn = "second column"
	reasonBareQuote    = "quote in unquoted value"
	reasonUnterminated = "unterminated quote"
	reasonAfterQuote   = "text after closing quote"
	reasonUTF8         = "invalid UTF-8"
	reasonControl      = "control character"
	reasonTooLong      = "code longer than 128 bytes"
)

const (
	bufSize = 64 << 10
	// fastWant is how many bytes of a line the fast path looks at; longer
	// lines take the slow path. The buffer is refilled when fewer remain.
	fastWant = 2*MaxCodeLen + 2
	// maxEmptyReads is how many (0, nil) reads in a row are tolerated.
	maxEmptyReads = 100
)

var errInvalidRead = errors.New("codecsv: reader returned invalid count from Read")

// Error is a rule violation; the whole upload must be refused. Line is the
// 1-based physical line (a header line counts as line 1).
type Error struct {
	Line   int
	Reason string
}

func (e *Error) Error() string {
	return "line " + strconv.Itoa(e.Line) + ": " + e.Reason
}

// plain marks the bytes a fast-path code may consist of: printable ASCII
// without space and without the characters that need the general parser.
var plain = func() (t [256]bool) {
	for c := 0x21; c <= 0x7E; c++ {
		t[c] = true
	}
	t[','] = false
	t[';'] = false
	t['"'] = false
	return t
}()

// Parser states for the general (slow) path.
const (
	stStart  = iota // only white space seen so far
	stBare          // in an unquoted value
	stQuoted        // inside quotes
	stQuote         // inside quotes right after '"': closing quote or half of ""
	stAfter         // after the closing quote
)

// Reader reads coupon codes from a single-column CSV body.
type Reader struct {
	src  io.Reader
	buf  []byte // fixed size bufSize; buf[r:w] is unread data
	r, w int

	eof  bool  // src returned io.EOF
	rerr error // src returned another error; surfaced once buffered data is used
	err  error // sticky result: io.EOF, *Error or a read error

	line       int // physical line of the line being parsed
	codeLine   int // physical line of the last returned code
	skipHeader bool
	started    bool

	code [MaxCodeLen]byte // value assembled by the slow path
}

// NewReader returns a Reader reading from r. If skipHeader is set, the first
// physical line is a header and is skipped without validation.
func NewReader(r io.Reader, skipHeader bool) *Reader {
	return newReaderSize(r, skipHeader, bufSize)
}

// newReaderSize is NewReader with a buffer of size bytes (at least fastWant).
// Tests use small buffers to exercise refills.
func newReaderSize(r io.Reader, skipHeader bool, size int) *Reader {
	return &Reader{
		src:        r,
		buf:        make([]byte, max(size, fastWant)),
		line:       1,
		skipHeader: skipHeader,
	}
}

// Line is the physical line number of the code last returned.
func (x *Reader) Line() int { return x.codeLine }

// Next returns the next code. The returned slice is valid until the next call
// of Next. It returns io.EOF at the end, *Error for invalid input and other
// read errors as returned by the underlying reader; errors are sticky.
func (x *Reader) Next() ([]byte, error) {
	if x.err != nil {
		return nil, x.err
	}
	if !x.started {
		x.started = true
		x.start()
	}
	for {
		if x.w-x.r < fastWant && !x.eof && x.rerr == nil {
			x.fill(fastWant)
		}
		if x.r == x.w {
			// fill stops short only at end of input or on a read error.
			if x.rerr != nil {
				x.err = x.rerr
			} else {
				x.err = io.EOF
			}
			return nil, x.err
		}

		// Fast path: the line is returned in place if scanFast accepts it.
		end := min(x.r+fastWant, x.w)
		if cs, ce, n := scanFast(x.buf[x.r:end], x.eof && end == x.w); n > 0 {
			code := x.buf[x.r+cs : x.r+ce : x.r+ce]
			x.r += n
			x.codeLine = x.line
			x.line++
			return code, nil
		}

		code, ok := x.slowLine()
		if x.err != nil {
			return nil, x.err
		}
		if ok {
			return code, nil
		}
	}
}

// scanFast accepts a line made of optional spaces, a run of 1..MaxCodeLen
// plain bytes, optionally in quotes, optional spaces and a line end, all in s.
// Such a line needs no further validation. s holds buffered data from the
// start of the line; atEOF tells that the input ends after s. scanFast
// returns the code's bounds and the length of the line with its line end, or
// n == 0 if the line needs the slow path.
func scanFast(s []byte, atEOF bool) (cs, ce, n int) {
	i := 0
	for i < len(s) && s[i] == ' ' {
		i++
	}
	quoted := i < len(s) && s[i] == '"'
	if quoted {
		i++
	}
	cs = i
	for i < len(s) && plain[s[i]] {
		i++
	}
	ce = i
	if ce == cs || ce-cs > MaxCodeLen {
		return 0, 0, 0
	}
	if quoted {
		if i >= len(s) || s[i] != '"' {
			return 0, 0, 0
		}
		i++
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i >= len(s) {
		return 0, 0, 0
	}
	switch s[i] {
	case '\n':
		return cs, ce, i + 1
	case '\r':
		if i+1 < len(s) {
			if s[i+1] == '\n' {
				return cs, ce, i + 2
			}
			return cs, ce, i + 1
		}
		if atEOF {
			return cs, ce, i + 1
		}
	}
	return 0, 0, 0
}

// start drops a leading BOM and skips the header line if asked to.
func (x *Reader) start() {
	x.fill(3)
	if x.w-x.r >= 3 && x.buf[x.r] == 0xEF && x.buf[x.r+1] == 0xBB && x.buf[x.r+2] == 0xBF {
		x.r += 3
	}
	if x.skipHeader {
		x.skipLine()
	}
}

// skipLine consumes one physical line without looking at its content.
func (x *Reader) skipLine() {
	for {
		if x.r == x.w {
			if x.eof || x.rerr != nil {
				return
			}
			x.fill(1)
			continue
		}
		i := indexLineEnd(x.buf[x.r:x.w])
		if i < 0 {
			x.r = x.w
			continue
		}
		c := x.buf[x.r+i]
		x.r += i + 1
		if c == '\r' {
			x.eatLF()
		}
		x.line++
		return
	}
}

// indexLineEnd returns the index of the first CR or LF in b, or -1.
func indexLineEnd(b []byte) int {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			return i
		}
	}
	return -1
}

// eatLF consumes an LF right after a consumed CR, so that CRLF is one line end.
func (x *Reader) eatLF() {
	if x.r == x.w && !x.eof && x.rerr == nil {
		x.fill(1)
	}
	if x.r < x.w && x.buf[x.r] == '\n' {
		x.r++
	}
}

// fill compacts the buffer and reads until at least n bytes are buffered,
// the input ends or a read fails.
func (x *Reader) fill(n int) {
	if x.r > 0 {
		x.w = copy(x.buf, x.buf[x.r:x.w])
		x.r = 0
	}
	empty := 0
	for x.w < n && !x.eof && x.rerr == nil {
		k, err := x.src.Read(x.buf[x.w:])
		if k < 0 || k > len(x.buf)-x.w {
			x.rerr = errInvalidRead
			return
		}
		x.w += k
		if err != nil {
			if err == io.EOF {
				x.eof = true
			} else {
				x.rerr = err
			}
			return
		}
		if k > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			x.rerr = io.ErrNoProgress
		}
	}
}

func (x *Reader) fail(reason string) {
	x.err = &Error{Line: x.line, Reason: reason}
}

// slowLine parses one physical line rune by rune. It returns the code and
// true, or false for a line without a code (blank, white space, empty value)
// or when x.err was set.
//
// The value is assembled in x.code: n bytes of committed content, followed by
// ws bytes of white space that become content only if more content follows.
// White space that does not fit is counted but not stored; any content after
// it makes the code too long anyway. ws saturates so that runs of any length
// need no memory.
func (x *Reader) slowLine() ([]byte, bool) {
	st := stStart
	n, ws := 0, 0
	for {
		if x.w-x.r < utf8.UTFMax && !x.eof && x.rerr == nil {
			x.fill(utf8.UTFMax)
		}
		if x.r == x.w {
			if x.rerr != nil {
				// The line may be incomplete: report the read error.
				x.err = x.rerr
				return nil, false
			}
			return x.endLine(st, n) // last line without line end
		}
		c := x.buf[x.r]
		if plain[c] && st <= stQuoted {
			// Common case: a plain byte in the value.
			if n+ws >= MaxCodeLen {
				x.fail(reasonTooLong)
				return nil, false
			}
			if st == stStart {
				st = stBare
			}
			n += ws
			ws = 0
			x.code[n] = c
			n++
			x.r++
			continue
		}
		ru, size := rune(c), 1
		if c >= utf8.RuneSelf {
			if x.rerr != nil && !utf8.FullRune(x.buf[x.r:x.w]) {
				x.err = x.rerr
				return nil, false
			}
			ru, size = utf8.DecodeRune(x.buf[x.r:x.w])
			if ru == utf8.RuneError && size == 1 {
				x.fail(reasonUTF8)
				return nil, false
			}
		}

		add := false // the rune is content of the value
		switch {
		case c == '\n' || c == '\r':
			x.r++
			if c == '\r' {
				x.eatLF()
			}
			code, ok := x.endLine(st, n)
			x.line++
			return code, ok

		case c == '\t':
			if st == stQuoted {
				x.fail(reasonControl)
			} else {
				x.fail(reasonSecondColumn)
			}
			return nil, false

		case isControl(ru):
			x.fail(reasonControl)
			return nil, false

		case isSpace(ru):
			switch st {
			case stBare, stQuoted:
				if n > 0 && ws <= MaxCodeLen {
					if n+ws+size <= MaxCodeLen {
						copy(x.code[n+ws:], x.buf[x.r:x.r+size])
					}
					ws += size
				}
			case stQuote:
				st = stAfter
			}

		case c == '"':
			switch st {
			case stStart:
				st = stQuoted
			case stBare:
				x.fail(reasonBareQuote)
				return nil, false
			case stQuoted:
				st = stQuote
			case stQuote: // "" inside quotes: a literal quote
				st = stQuoted
				add = true
			default:
				x.fail(reasonAfterQuote)
				return nil, false
			}

		case c == ',' || c == ';':
			if st != stQuoted {
				x.fail(reasonSecondColumn)
				return nil, false
			}
			add = true

		default:
			switch st {
			case stStart:
				st = stBare
			case stQuote, stAfter:
				x.fail(reasonAfterQuote)
				return nil, false
			}
			add = true
		}
		if add {
			// Content commits the pending white space before it.
			if n+ws+size > MaxCodeLen {
				x.fail(reasonTooLong)
				return nil, false
			}
			n += ws
			ws = 0
			n += copy(x.code[n:], x.buf[x.r:x.r+size])
		}
		x.r += size
	}
}

// endLine finishes a line in state st with n bytes of code.
func (x *Reader) endLine(st, n int) ([]byte, bool) {
	if st == stQuoted {
		x.fail(reasonUnterminated)
		return nil, false
	}
	if n == 0 {
		return nil, false
	}
	x.codeLine = x.line
	return x.code[:n:n], true
}

// isControl reports Unicode Cc (C0, DEL, C1) plus U+2028 and U+2029.
// Callers handle CR, LF and TAB before.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7F && r <= 0x9F) || r == 0x2028 || r == 0x2029
}

// isSpace reports Unicode White_Space characters that are not control
// characters (those are errors) and not TAB (a column separator).
func isSpace(r rune) bool {
	switch {
	case r == ' ', r == 0xA0, r == 0x1680, r >= 0x2000 && r <= 0x200A,
		r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}
