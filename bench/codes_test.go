package bench

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func checkUnique(t *testing.T, length int, n uint64) {
	t.Helper()
	g, err := NewCodeGen(length)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]struct{}, n)
	buf := make([]byte, 0, length)
	for i := range n {
		buf = g.Append(buf[:0], i)
		if len(buf) != length {
			t.Fatalf("len %d: code %d %q has length %d", length, i, buf, len(buf))
		}
		for _, c := range buf {
			if strings.IndexByte(CodeAlphabet, c) < 0 {
				t.Fatalf("len %d: code %d %q has %q outside [0-9A-Z]", length, i, buf, c)
			}
		}
		s := string(buf)
		if _, dup := seen[s]; dup {
			t.Fatalf("len %d: code %d %q repeats an earlier code", length, i, s)
		}
		seen[s] = struct{}{}
	}
}

func TestCodeGenUniqueMillion(t *testing.T) {
	checkUnique(t, 12, 1_000_000)
}

func TestCodeGenOtherLengths(t *testing.T) {
	checkUnique(t, 4, 1_000_000) // 36^4 = 1,679,616: a dense part of the space
	checkUnique(t, 2, 36*36)     // the whole space
	checkUnique(t, 20, 200_000)  // a padded prefix
	checkUnique(t, MaxCodeLen, 10_000)
}

func TestCodeGenDeterministicAndSpread(t *testing.T) {
	g1, _ := NewCodeGen(12)
	g2, _ := NewCodeGen(12)
	for i := range uint64(1000) {
		if g1.Code(i) != g2.Code(i) {
			t.Fatalf("code %d differs between generators", i)
		}
	}
	// Consecutive indexes should not give codes that share a long prefix.
	if a, b := g1.Code(0), g1.Code(1); a[:6] == b[:6] {
		t.Errorf("codes 0 and 1 look alike: %s %s", a, b)
	}
	if _, err := NewCodeGen(0); err == nil {
		t.Error("length 0 accepted")
	}
	if _, err := NewCodeGen(MaxCodeLen + 1); err == nil {
		t.Error("length 129 accepted")
	}
}

func TestCodeReaderMatchesCodes(t *testing.T) {
	for _, length := range []int{1, 5, 12, 17} {
		g, _ := NewCodeGen(length)
		const start, n = 3, 5000
		want := &bytes.Buffer{}
		for i := uint64(start); i < start+n; i++ {
			want.WriteString(g.Code(i))
			want.WriteByte('\n')
		}
		if n > g.Capacity() {
			continue
		}
		readers := map[string]func(io.Reader) io.Reader{
			"plain":   func(r io.Reader) io.Reader { return r },
			"onebyte": iotest.OneByteReader,
			"halfway": iotest.HalfReader,
		}
		for name, wrap := range readers {
			r, err := NewCodeReader(g, start, n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(wrap(r))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("len %d, %s reads: body differs from the codes", length, name)
			}
			if int64(len(got)) != CSVSize(g, n) {
				t.Fatalf("len %d: %d bytes, CSVSize says %d", length, len(got), CSVSize(g, n))
			}
		}
	}
}

func TestCodeReaderOddBuffers(t *testing.T) {
	g, _ := NewCodeGen(12)
	r, _ := NewCodeReader(g, 0, 1000)
	var out bytes.Buffer
	buf := make([]byte, 7) // smaller than a line
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		buf = make([]byte, 1+(len(buf)*5)%61)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for i, l := range lines {
		if l != g.Code(uint64(i)) {
			t.Fatalf("line %d = %q, want %q", i, l, g.Code(uint64(i)))
		}
	}
	if err := iotest.TestReader(mustReader(t, g, 0, 300), []byte(strings.Join(lines[:300], "\n")+"\n")); err != nil {
		t.Fatal(err)
	}
}

func mustReader(t *testing.T, g *CodeGen, start, n uint64) *CodeReader {
	t.Helper()
	r, err := NewCodeReader(g, start, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCodeReaderCapacity(t *testing.T) {
	g, _ := NewCodeGen(2)
	if _, err := NewCodeReader(g, 0, 36*36); err != nil {
		t.Fatalf("whole space refused: %v", err)
	}
	if _, err := NewCodeReader(g, 1, 36*36); err == nil {
		t.Fatal("more codes than exist accepted")
	}
}

func TestParseCount(t *testing.T) {
	good := map[string]int64{
		"1000000": 1_000_000, "10_000_000": 10_000_000, "1,000": 1000,
		"10M": 10_000_000, "5k": 5000, "1e7": 10_000_000, "2.5M": 2_500_000, "1G": 1_000_000_000,
	}
	for in, want := range good {
		got, err := ParseCount(in)
		if err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "abc", "1.5", "1e30", "M"} {
		if v, err := ParseCount(in); err == nil {
			t.Errorf("ParseCount(%q) = %d, want an error", in, v)
		}
	}
}

func BenchmarkCodeReader(b *testing.B) {
	g, _ := NewCodeGen(12)
	buf := make([]byte, 256<<10)
	b.SetBytes(13)
	r, _ := NewCodeReader(g, 0, uint64(b.N))
	b.ResetTimer()
	for {
		if _, err := r.Read(buf); err == io.EOF {
			break
		}
	}
}
