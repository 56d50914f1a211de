package codecsv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"unicode"
	"unicode/utf8"
)

const mib = 1 << 20

type tcase struct {
	name   string
	in     string
	header bool
	want   []string // codes returned before the end or the error
	err    *Error   // nil: io.EOF expected
}

func e(line int, reason string) *Error { return &Error{Line: line, Reason: reason} }

func cases() []tcase {
	a := func(n int) string { return strings.Repeat("A", n) }
	return []tcase{
		{name: "empty body", in: ""},
		{name: "one code LF", in: "ABC123\n", want: []string{"ABC123"}},
		{name: "no final newline", in: "A\nB", want: []string{"A", "B"}},
		{name: "BOM", in: "\uFEFFABC\nDEF\n", want: []string{"ABC", "DEF"}},
		{name: "BOM only", in: "\uFEFF"},
		{name: "BOM then quoted", in: "\uFEFF\"X\"", want: []string{"X"}},
		{name: "BOM not at start is content", in: "A\n\uFEFFB\n", want: []string{"A", "\uFEFFB"}},
		{name: "truncated BOM", in: "\xEF\xBB", err: e(1, reasonUTF8)},
		{name: "CRLF", in: "A\r\nB\r\n", want: []string{"A", "B"}},
		{name: "lone CR", in: "A\rB\rC", want: []string{"A", "B", "C"}},
		{name: "mixed line ends", in: "A\r\nB\nC\rD\n\r\nE", want: []string{"A", "B", "C", "D", "E"}},
		{name: "CR CR LF is two line ends", in: "A\r\r\nB\n", want: []string{"A", "B"}},
		{name: "LF CR is two line ends", in: "A\n\rB\n", want: []string{"A", "B"}},
		{name: "blank and white-space-only lines", in: "\n   \nA\n \u00A0\u3000 \r\n\r\n\rB\n  \n", want: []string{"A", "B"}},
		{name: "only blank lines", in: "\n\r\n\r  \n"},
		{name: "quoted", in: "\"ABC\"\n", want: []string{"ABC"}},
		{name: "doubled quotes", in: "\"A\"\"B\"\n\"\"\"\"\n\"\"\"x\"\"\"", want: []string{"A\"B", "\"", "\"x\""}},
		{name: "empty quoted value skipped", in: "\"\"\nA\n\"   \"\n  \"\"  \n", want: []string{"A"}},
		{name: "spaces trimmed outside and inside quotes", in: "  \"  AB C  \"  \n", want: []string{"AB C"}},
		{name: "unquoted inner spaces kept", in: "  AB  C  \n", want: []string{"AB  C"}},
		{name: "trailing space before quote-escape kept", in: "\"AB  \"\"\"\n", want: []string{"AB  \""}},
		{name: "quoted separators", in: "\"a,b\"\n\"a;b\"\n", want: []string{"a,b", "a;b"}},
		{name: "bare quote", in: "A\nab\"c\n", want: []string{"A"}, err: e(2, reasonBareQuote)},
		{name: "bare quote after space", in: "ab \"c\"\n", err: e(1, reasonBareQuote)},
		{name: "unterminated quote multi-line", in: "A\n\"abc\ndef\"\n", want: []string{"A"}, err: e(2, reasonUnterminated)},
		{name: "unterminated quote at EOF", in: "\"abc", err: e(1, reasonUnterminated)},
		{name: "unterminated after CRLF lines", in: "A\r\nB\r\n  \"C\"\"\r\n", want: []string{"A", "B"}, err: e(3, reasonUnterminated)},
		{name: "text after closing quote", in: "\"a\"x\n", err: e(1, reasonAfterQuote)},
		{name: "text after closing quote and space", in: "\"a\" x\n", err: e(1, reasonAfterQuote)},
		{name: "second quoted value", in: "\"a\" \"b\"\n", err: e(1, reasonAfterQuote)},
		{name: "second column comma", in: "A\nB,C\n", want: []string{"A"}, err: e(2, reasonSecondColumn)},
		{name: "second column semicolon", in: "B;C", err: e(1, reasonSecondColumn)},
		{name: "second column tab", in: "B\tC", err: e(1, reasonSecondColumn)},
		{name: "trailing comma", in: "B,\n", err: e(1, reasonSecondColumn)},
		{name: "leading comma", in: ",B\n", err: e(1, reasonSecondColumn)},
		{name: "comma only", in: "A\n,\n", want: []string{"A"}, err: e(2, reasonSecondColumn)},
		{name: "comma after closing quote", in: "\"a\",b\n", err: e(1, reasonSecondColumn)},
		{name: "tab after closing quote", in: "\"a\"\t\n", err: e(1, reasonSecondColumn)},
		{name: "tab inside quotes", in: "\"a\tb\"\n", err: e(1, reasonControl)},
		{name: "invalid UTF-8 0xFF", in: "A\nB\xFF\n", want: []string{"A"}, err: e(2, reasonUTF8)},
		{name: "truncated sequence", in: "\xE6\x97\n", err: e(1, reasonUTF8)},
		{name: "truncated sequence at EOF", in: "ab\xE6\x97", err: e(1, reasonUTF8)},
		{name: "overlong", in: "\xC0\xAF\n", err: e(1, reasonUTF8)},
		{name: "surrogate", in: "\"\xED\xA0\x80\"\n", err: e(1, reasonUTF8)},
		{name: "replacement char is valid", in: "\uFFFD\n", want: []string{"\uFFFD"}},
		{name: "NUL", in: "A\x00B\n", err: e(1, reasonControl)},
		{name: "0x01", in: "A\n\x01\n", want: []string{"A"}, err: e(2, reasonControl)},
		{name: "DEL", in: "A\x7F", err: e(1, reasonControl)},
		{name: "C1 U+0080", in: "A\u0080B", err: e(1, reasonControl)},
		{name: "U+0085 is control", in: "AB\u0085\n", err: e(1, reasonControl)},
		{name: "U+2028", in: "A\u2028B", err: e(1, reasonControl)},
		{name: "U+2029 in quotes", in: "\"A\u2029\"", err: e(1, reasonControl)},
		{name: "vertical tab and form feed", in: "A\vB\n", err: e(1, reasonControl)},
		{name: "control inside quotes", in: "\"A\x01\"", err: e(1, reasonControl)},
		{name: "first error on a line wins", in: "\x00,\n", err: e(1, reasonControl)},
		{name: "first error on a line wins 2", in: "a,\x00\n", err: e(1, reasonSecondColumn)},
		{name: "first error in body wins", in: "A;B\n\xFF\n", err: e(1, reasonSecondColumn)},
		{name: "128 bytes ok", in: a(128) + "\n" + a(128), want: []string{a(128), a(128)}},
		{name: "129 bytes", in: a(128) + "\n" + a(129) + "\n", want: []string{a(128)}, err: e(2, reasonTooLong)},
		{name: "128 bytes CRLF", in: a(128) + "\r\n" + a(128) + "\r", want: []string{a(128), a(128)}},
		{name: "128 bytes quoted with spaces", in: "  \" " + a(128) + "  \"  \n", want: []string{a(128)}},
		{name: "129 bytes quoted", in: "\"" + a(129) + "\"\n", err: e(1, reasonTooLong)},
		{name: "too long before second column", in: "\"" + a(129) + "\",x\n", err: e(1, reasonTooLong)},
		{name: "second column before too long", in: "x," + a(200) + "\n", err: e(1, reasonSecondColumn)},
		{name: "128 bytes with escapes", in: "\"" + a(127) + "\"\"\"\n", want: []string{a(127) + "\""}},
		{name: "129 bytes with escapes", in: "\"" + a(128) + "\"\"\"\n", err: e(1, reasonTooLong)},
		{name: "multibyte at boundary 2", in: a(126) + "é\n", want: []string{a(126) + "é"}},
		{name: "multibyte over boundary 2", in: a(127) + "é\n", err: e(1, reasonTooLong)},
		{name: "multibyte at boundary 3", in: a(125) + "日\n", want: []string{a(125) + "日"}},
		{name: "multibyte over boundary 3", in: a(126) + "日\n", err: e(1, reasonTooLong)},
		{name: "multibyte at boundary 4", in: a(124) + "😀\n", want: []string{a(124) + "😀"}},
		{name: "multibyte over boundary 4", in: a(125) + "😀\n", err: e(1, reasonTooLong)},
		{name: "inner spaces count", in: "A" + strings.Repeat(" ", 126) + "B\n", want: []string{"A" + strings.Repeat(" ", 126) + "B"}},
		{name: "inner spaces too long", in: "A" + strings.Repeat(" ", 127) + "B\n", err: e(1, reasonTooLong)},
		{name: "long inner space run", in: "A" + strings.Repeat(" ", 1000) + "B\n", err: e(1, reasonTooLong)},
		{name: "long inner wide space run", in: "\"A" + strings.Repeat("\u3000", 1000) + "B\"\n", err: e(1, reasonTooLong)},
		{name: "10 MiB code", in: a(10 * mib), err: e(1, reasonTooLong)},
		{name: "code then 10 MiB of spaces", in: "ABC" + strings.Repeat(" ", 10*mib) + "\nDEF", want: []string{"ABC", "DEF"}},
		{name: "10 MiB of spaces then code", in: strings.Repeat(" ", 10*mib) + "ABC", want: []string{"ABC"}},
		{name: "quoted code then 10 MiB of wide spaces", in: "\"ABC" + strings.Repeat("\u3000", 10*mib/3) + "\"\n", want: []string{"ABC"}},
		{name: "non-ASCII codes", in: "é\n日本\n\"Ünïcödé\"\n", want: []string{"é", "日本", "Ünïcödé"}},
		{name: "Unicode white space trimmed", in: "\u00A0\u3000AB\u2000\u200A\n\u1680\"\u202FC D\u205F\"\u2003\n", want: []string{"AB", "C D"}},
		{name: "header skipped", in: "code\nA\nB\n", header: true, want: []string{"A", "B"}},
		{name: "header only", in: "code", header: true},
		{name: "header only with newline", in: "code\r\n", header: true},
		{name: "header empty body", in: "", header: true},
		{name: "header not validated", in: "\xFF,\"x\x00\tcode\r\nA\n", header: true, want: []string{"A"}},
		{name: "header with BOM", in: "\uFEFFcode\rA", header: true, want: []string{"A"}},
		{name: "header CRLF line numbers", in: "code\r\nA\r\n,\r\n", header: true, want: []string{"A"}, err: e(3, reasonSecondColumn)},
		{name: "blank header line", in: "\nA\n", header: true, want: []string{"A"}},
		{name: "10 MiB header", in: a(10*mib) + "\nA\n", header: true, want: []string{"A"}},
		{name: "no header flag keeps first line", in: "code\nA\n", want: []string{"code", "A"}},
		{name: "error after many codes", in: strings.Repeat("ABCDEFGHIJKL\n", 3) + "x\"\n", want: []string{"ABCDEFGHIJKL", "ABCDEFGHIJKL", "ABCDEFGHIJKL"}, err: e(4, reasonBareQuote)},
	}
}

// result is what a full read of a body produced.
type result struct {
	codes []string
	lines []int
	err   error
}

func readAll(r io.Reader, header bool) result {
	return readAllSize(r, header, bufSize)
}

func readAllSize(r io.Reader, header bool, size int) result {
	var res result
	cr := newReaderSize(r, header, size)
	for {
		code, err := cr.Next()
		if err != nil {
			res.err = err
			// Errors are sticky.
			if _, err2 := cr.Next(); err2 != err {
				res.err = fmt.Errorf("error not sticky: %v then %v", err, err2)
			}
			return res
		}
		res.codes = append(res.codes, string(code))
		res.lines = append(res.lines, cr.Line())
	}
}

// chunkReader returns random small pieces of its data.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(1+c.rng.IntN(c.max), len(p), len(c.data))
	if c.rng.IntN(8) == 0 {
		n = 0 // an empty read now and then
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

type readerKind struct {
	name  string
	big   bool // also used for the multi-MiB cases
	build func(in string) io.Reader
	size  int // Reader buffer size; 0 for the default
}

var readerKinds = []readerKind{
	{"whole", true, func(in string) io.Reader { return strings.NewReader(in) }, 0},
	{"onebyte", true, func(in string) io.Reader { return iotest.OneByteReader(strings.NewReader(in)) }, 0},
	{"dataerr", false, func(in string) io.Reader { return iotest.DataErrReader(strings.NewReader(in)) }, 0},
	{"half", false, func(in string) io.Reader { return iotest.HalfReader(strings.NewReader(in)) }, 0},
	{"chunks7", true, func(in string) io.Reader {
		return &chunkReader{data: []byte(in), rng: rand.New(rand.NewPCG(1, uint64(len(in)))), max: 7}
	}, 0},
	{"chunks300", false, func(in string) io.Reader {
		return &chunkReader{data: []byte(in), rng: rand.New(rand.NewPCG(2, uint64(len(in)))), max: 300}
	}, 0},
	{"smallbuf", true, func(in string) io.Reader { return strings.NewReader(in) }, fastWant},
	{"smallbuf-chunks", false, func(in string) io.Reader {
		return &chunkReader{data: []byte(in), rng: rand.New(rand.NewPCG(3, uint64(len(in)))), max: 100}
	}, fastWant + 5},
}

func checkResult(t *testing.T, got result, want []string, wantErr *Error) {
	t.Helper()
	if !equalStrings(got.codes, want) {
		t.Errorf("codes = %s, want %s", short(got.codes), short(want))
	}
	if wantErr == nil {
		if got.err != io.EOF {
			t.Errorf("err = %v, want io.EOF", got.err)
		}
		return
	}
	var ce *Error
	if !errors.As(got.err, &ce) || *ce != *wantErr {
		t.Errorf("err = %v, want %v", got.err, wantErr)
	}
}

// sizedDown reports whether the multi-MiB cases are skipped: under the race
// detector, which finds nothing in this one-goroutine reader and makes them
// take a minute, unless -tags long (make test-long). make test runs this
// package a second time without -race, with every case.
const sizedDown = raceEnabled && !testLong

func TestReaderTable(t *testing.T) {
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			big := len(tc.in) > mib
			if big && sizedDown {
				t.Skip("multi-MiB case: make test runs it without -race")
			}
			for _, k := range readerKinds {
				if big && !k.big {
					continue
				}
				t.Run(k.name, func(t *testing.T) {
					size := k.size
					if size == 0 {
						size = bufSize
					}
					checkResult(t, readAllSize(k.build(tc.in), tc.header, size), tc.want, tc.err)
				})
			}
			if !big {
				// The reference model agrees with the table.
				codes, _, err := refParse([]byte(tc.in), tc.header)
				var rerr error = io.EOF
				if err != nil {
					rerr = err
				}
				t.Run("reference", func(t *testing.T) {
					checkResult(t, result{codes: codes, err: rerr}, tc.want, tc.err)
				})
			}
		})
	}
}

func TestLine(t *testing.T) {
	in := "h\r\nA\n\n\"B\"\rC\r\r\n  D  \n\u00A0\nE"
	got := readAll(strings.NewReader(in), true)
	wantLines := []int{2, 4, 5, 7, 9}
	if !equalStrings(got.codes, []string{"A", "B", "C", "D", "E"}) || fmt.Sprint(got.lines) != fmt.Sprint(wantLines) {
		t.Fatalf("got %q lines %v, want lines %v", got.codes, got.lines, wantLines)
	}
	if r := NewReader(strings.NewReader(""), false); r.Line() != 0 {
		t.Fatalf("Line before Next = %d", r.Line())
	}
}

func TestErrorString(t *testing.T) {
	if got := e(12, reasonSecondColumn).Error(); got != "line 12: second column" {
		t.Fatalf("Error() = %q", got)
	}
}

// failReader returns data, then a fixed error.
type failReader struct {
	data []byte
	err  error
}

func (f *failReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"AB\nCD", []string{"AB"}},                // incomplete last line is not a code
		{"AB\n\"CD\"\n\"E", []string{"AB", "CD"}}, // slow path too
		{"AB\r", []string{"AB"}},
		{"é\n\xE6\x97", []string{"é"}}, // truncated rune: read error, not invalid UTF-8
		{"", nil},
	} {
		got := readAll(&failReader{data: []byte(tc.in), err: boom}, false)
		if !equalStrings(got.codes, tc.want) || got.err != boom {
			t.Errorf("%q: got %q, %v; want %q, boom", tc.in, got.codes, got.err, tc.want)
		}
		got = readAll(iotest.OneByteReader(&failReader{data: []byte(tc.in), err: boom}), false)
		if !equalStrings(got.codes, tc.want) || got.err != boom {
			t.Errorf("%q one byte: got %q, %v; want %q, boom", tc.in, got.codes, got.err, tc.want)
		}
	}
	// A reader that never makes progress.
	got := readAll(&failReader{err: nil}, false)
	if got.err != io.ErrNoProgress {
		t.Errorf("no progress: got %v", got.err)
	}
}

func TestStickyError(t *testing.T) {
	r := NewReader(strings.NewReader("A\nB,C\nD\n"), false)
	if c, err := r.Next(); err != nil || string(c) != "A" {
		t.Fatalf("first: %q %v", c, err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors %v, %v", err1, err2)
	}
	var ce *Error
	if !errors.As(err1, &ce) || ce.Line != 2 {
		t.Fatalf("error %v", err1)
	}
}

// genReader produces prefix, n copies of fill, then suffix, without holding
// them in memory.
type genReader struct {
	prefix, suffix string
	fill           byte
	n              int
}

func (g *genReader) Read(p []byte) (int, error) {
	k := 0
	if len(g.prefix) > 0 {
		c := copy(p, g.prefix)
		g.prefix = g.prefix[c:]
		k += c
	}
	for k < len(p) && g.n > 0 {
		p[k] = g.fill
		k++
		g.n--
	}
	if g.n == 0 && k < len(p) {
		c := copy(p[k:], g.suffix)
		g.suffix = g.suffix[c:]
		k += c
	}
	if k == 0 {
		return 0, io.EOF
	}
	return k, nil
}

func TestMemoryBounded(t *testing.T) {
	if sizedDown {
		t.Skip("multi-MiB cases: make test runs them without -race")
	}
	for _, tc := range []struct {
		name   string
		g      genReader
		header bool
		want   []string
		err    *Error
	}{
		{"10 MiB code", genReader{fill: 'A', n: 10 * mib, suffix: "\n"}, false, nil, e(1, reasonTooLong)},
		{"10 MiB quoted code", genReader{prefix: "\"", fill: 'A', n: 10 * mib, suffix: "\"\n"}, false, nil, e(1, reasonTooLong)},
		{"code then 10 MiB spaces", genReader{prefix: "ABC", fill: ' ', n: 10 * mib, suffix: "\nDEF"}, false, []string{"ABC", "DEF"}, nil},
		{"10 MiB header", genReader{fill: 'h', n: 10 * mib, suffix: "\nA"}, true, []string{"A"}, nil},
		{"10 MiB blank lines", genReader{fill: '\n', n: 10 * mib, suffix: "A"}, false, []string{"A"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			codes := make([]string, 0, 4)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			r := NewReader(&g, tc.header)
			var err error
			for {
				var c []byte
				c, err = r.Next()
				if err != nil {
					break
				}
				codes = append(codes, string(c))
			}
			runtime.ReadMemStats(&after)
			if d := after.TotalAlloc - before.TotalAlloc; d > mib {
				t.Errorf("allocated %d bytes, want < 1 MiB", d)
			}
			checkResult(t, result{codes: codes, err: err}, tc.want, tc.err)
		})
	}
}

// mixedBody has fast-path and slow-path lines of every kind.
func mixedBody(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		switch i % 6 {
		case 0:
			fmt.Fprintf(&b, "CODE%08d\n", i)
		case 1:
			fmt.Fprintf(&b, "CODE%08d\r\n", i)
		case 2:
			fmt.Fprintf(&b, "  \"C\"\"%08d\"  \r", i)
		case 3:
			fmt.Fprintf(&b, "\u3000日本%08d\u00A0\n", i)
		case 4:
			fmt.Fprintf(&b, "\n  \n")
		case 5:
			fmt.Fprintf(&b, "X %08d Y\n", i)
		}
	}
	return b.Bytes()
}

func TestZeroAllocsPerCode(t *testing.T) {
	for _, k := range readerKinds {
		if k.name == "dataerr" || k.name == "half" {
			continue
		}
		t.Run(k.name, func(t *testing.T) {
			body := mixedBody(30000)
			size := k.size
			if size == 0 {
				size = bufSize
			}
			r := newReaderSize(k.build(string(body)), false, size)
			allocs := testing.AllocsPerRun(20000, func() {
				if _, err := r.Next(); err != nil {
					t.Fatalf("Next: %v", err)
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocs per code, want 0", allocs)
			}
		})
	}
}

// benchBody returns n lines of 12-character codes ending in LF.
func benchBody(n int, format string) []byte {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 0, n*16)
	var code [12]byte
	x := uint64(0x9E3779B97F4A7C15)
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		v := x
		for j := range code {
			code[j] = alphabet[v&31]
			v >>= 5
		}
		b = fmt.Appendf(b, format, code[:])
	}
	return b
}

func BenchmarkReader(b *testing.B) {
	const n = 1_000_000
	for _, bc := range []struct{ name, format string }{
		{"LF", "%s\n"},
		{"CRLF", "%s\r\n"},
		{"quoted", "\"%s\"\n"},
		{"padded", "  %s \n"},
		{"slow-unicode", "%sé\n"},
		{"slow-nbsp", "\u00A0\"%s\"\u00A0\r\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := benchBody(n, bc.format)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r := NewReader(bytes.NewReader(body), false)
				count := 0
				for {
					_, err := r.Next()
					if err != nil {
						if err != io.EOF {
							b.Fatal(err)
						}
						break
					}
					count++
				}
				if count != n {
					b.Fatalf("got %d codes, want %d", count, n)
				}
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(n)*float64(b.N)/sec, "codes/s")
			b.ReportMetric(sec*1e9/(float64(n)*float64(b.N)), "ns/code")
		})
	}
}

func FuzzReader(f *testing.F) {
	for _, tc := range cases() {
		in := tc.in
		if len(in) > 4096 {
			in = in[:300] + in[len(in)-300:]
		}
		f.Add([]byte(in), tc.header)
	}
	f.Fuzz(func(t *testing.T, body []byte, header bool) {
		got := readAll(bytes.NewReader(body), header)

		// Buffer boundaries do not matter.
		one := readAllSize(iotest.OneByteReader(bytes.NewReader(body)), header, fastWant)
		if !sameResult(got, one) {
			t.Fatalf("whole %v / one byte %v", got, one)
		}
		ch := readAllSize(&chunkReader{data: body, rng: rand.New(rand.NewPCG(uint64(len(body)), 3)), max: 200}, header, fastWant+1)
		if !sameResult(got, ch) {
			t.Fatalf("whole %v / chunks %v", got, ch)
		}

		// The reference model agrees.
		rc, rl, rerr := refParse(body, header)
		ref := result{codes: rc, lines: rl, err: io.EOF}
		if rerr != nil {
			ref.err = rerr
		}
		if !sameResult(got, ref) {
			t.Fatalf("reader %v / reference %v", got, ref)
		}

		nlines := physicalLines(body)
		for i, c := range got.codes {
			checkCode(t, c)
			if l := got.lines[i]; l < 1 || l > nlines || (i > 0 && l <= got.lines[i-1]) {
				t.Fatalf("code %q at line %d of %d (previous %v)", c, l, nlines, got.lines[:i])
			}
		}
		if got.err != io.EOF {
			var ce *Error
			if !errors.As(got.err, &ce) {
				t.Fatalf("unexpected error %v", got.err)
			}
			if ce.Line < 1 || ce.Line > nlines {
				t.Fatalf("error %v outside %d lines", ce, nlines)
			}
			return
		}

		// Round trip through a quoted CSV.
		var enc bytes.Buffer
		for _, c := range got.codes {
			enc.WriteString("\"" + strings.ReplaceAll(c, "\"", "\"\"") + "\"\r\n")
		}
		again := readAllSize(&enc, false, fastWant)
		if again.err != io.EOF || !equalStrings(again.codes, got.codes) {
			t.Fatalf("round trip: %v, want %q", again, got.codes)
		}
	})
}

func checkCode(t *testing.T, c string) {
	t.Helper()
	if len(c) < 1 || len(c) > MaxCodeLen || !utf8.ValidString(c) {
		t.Fatalf("bad code %q", c)
	}
	for _, r := range c {
		if unicode.Is(unicode.Cc, r) || r == 0x2028 || r == 0x2029 {
			t.Fatalf("control character in %q", c)
		}
	}
	first, _ := utf8.DecodeRuneInString(c)
	last, _ := utf8.DecodeLastRuneInString(c)
	if unicode.Is(unicode.White_Space, first) || unicode.Is(unicode.White_Space, last) {
		t.Fatalf("untrimmed code %q", c)
	}
}

// physicalLines counts the lines of body after the BOM: line ends plus a
// last line without one.
func physicalLines(body []byte) int {
	body = bytes.TrimPrefix(body, []byte("\uFEFF"))
	n := 0
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\r':
			if i+1 < len(body) && body[i+1] == '\n' {
				i++
			}
			n++
		case '\n':
			n++
		}
	}
	if len(body) > 0 && body[len(body)-1] != '\n' && body[len(body)-1] != '\r' {
		n++
	}
	return n
}

// refParse is a simple, non-streaming model of the rules: whole body in
// memory, lines split first, Unicode tables from package unicode.
func refParse(body []byte, header bool) (codes []string, lines []int, err *Error) {
	body = bytes.TrimPrefix(body, []byte("\uFEFF"))
	for lineNo := 1; len(body) > 0; lineNo++ {
		end, next := len(body), len(body)
		for i, c := range body {
			if c == '\n' || c == '\r' {
				end, next = i, i+1
				if c == '\r' && i+1 < len(body) && body[i+1] == '\n' {
					next++
				}
				break
			}
		}
		line := body[:end]
		body = body[next:]
		if header && lineNo == 1 {
			continue
		}
		code, reason := refLine(line)
		if reason != "" {
			return codes, lines, &Error{Line: lineNo, Reason: reason}
		}
		if code != "" {
			codes = append(codes, code)
			lines = append(lines, lineNo)
		}
	}
	return codes, lines, nil
}

func refLine(line []byte) (string, string) {
	isWS := func(r rune) bool { return unicode.Is(unicode.White_Space, r) }
	var val []byte
	inQuote, closed, bare := false, false, false
	for i := 0; i < len(line); {
		r, size := utf8.DecodeRune(line[i:])
		if r == utf8.RuneError && size == 1 {
			return "", reasonUTF8
		}
		i += size
		switch {
		case r == '\t' && !inQuote:
			return "", reasonSecondColumn
		case unicode.Is(unicode.Cc, r) || r == '\u2028' || r == '\u2029':
			return "", reasonControl
		case r == '"' && inQuote:
			if i < len(line) && line[i] == '"' {
				i++
				if val = append(val, '"'); len(val) > MaxCodeLen {
					return "", reasonTooLong
				}
			} else {
				inQuote, closed = false, true
			}
		case r == '"':
			switch {
			case closed:
				return "", reasonAfterQuote
			case bare:
				return "", reasonBareQuote
			}
			inQuote = true
		case (r == ',' || r == ';') && !inQuote:
			return "", reasonSecondColumn
		case isWS(r):
			if len(val) > 0 && !closed {
				val = utf8.AppendRune(val, r)
			}
		default:
			if closed {
				return "", reasonAfterQuote
			}
			if !inQuote {
				bare = true
			}
			// The length counts once content follows: val ends in content.
			if val = utf8.AppendRune(val, r); len(val) > MaxCodeLen {
				return "", reasonTooLong
			}
		}
	}
	if inQuote {
		return "", reasonUnterminated
	}
	return string(bytes.TrimRightFunc(val, isWS)), ""
}

func sameResult(a, b result) bool {
	if !equalStrings(a.codes, b.codes) || fmt.Sprint(a.lines) != fmt.Sprint(b.lines) {
		return false
	}
	if a.err == b.err {
		return true
	}
	var ae, be *Error
	return errors.As(a.err, &ae) && errors.As(b.err, &be) && *ae == *be
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// short abbreviates long code lists and codes in failure messages.
func short(codes []string) string {
	var b strings.Builder
	b.WriteString("[")
	for i, c := range codes {
		if i == 20 {
			b.WriteString(" ...")
			break
		}
		if i > 0 {
			b.WriteString(" ")
		}
		if len(c) > 40 {
			c = c[:20] + "..(" + strconv.Itoa(len(c)) + ")"
		}
		b.WriteString(strconv.Quote(c))
	}
	b.WriteString("]")
	return b.String()
}
