package render_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"

	"github.com/coupond/coupond/httpapi/render"
	"github.com/coupond/coupond/httpapi/render/rendertest"
)

func TestCodeTable(t *testing.T) {
	if len(rendertest.Cases) < 15 {
		t.Fatalf("the table has %d cases, want at least 15", len(rendertest.Cases))
	}
	for _, c := range rendertest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			out, err := render.Code(c.Template, c.Code)
			if err != nil {
				t.Fatal(err)
			}
			if err := rendertest.Check(c, out); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// randomCode makes a valid code (SPEC §1) from characters that need
// escaping somewhere: markup, quotes, URL delimiters, escapes of JS and CSS,
// white space inside, non-ASCII beyond the BMP.
func randomCode(r *rand.Rand) string {
	alphabet := []rune("aZ09&+#\"'<>= /?%\\;:(){}`-._~Üé🎟\u00a0\u3000,*!")
	for {
		var b strings.Builder
		for range 1 + r.IntN(20) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := b.String()
		first, _ := utf8.DecodeRuneInString(s)
		last, _ := utf8.DecodeLastRuneInString(s)
		if !unicode.Is(unicode.White_Space, first) && !unicode.Is(unicode.White_Space, last) {
			return s
		}
	}
}

// TestCodeTableRandomCodes runs the table's templates with many random
// codes: whatever the code holds, it reads back as one intact value.
func TestCodeTableRandomCodes(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 1))
	for range 300 {
		code := randomCode(r)
		for _, c := range rendertest.Cases {
			if c.Exact != "" {
				continue
			}
			c.Code = code
			out, err := render.Code(c.Template, code)
			if err != nil {
				t.Fatalf("%s, code %q: %v", c.Name, code, err)
			}
			if err := rendertest.Check(c, out); err != nil {
				t.Fatalf("%s, code %q: %v", c.Name, code, err)
			}
		}
	}
}

// TestCodeKeepsEverythingElse: apart from the placeholders in values and
// text, the output is the template byte for byte, including markup the
// tokenizer finds odd.
func TestCodeKeepsEverythingElse(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<!-- $code -->", "<!-- $code -->"},
		{"<!--[if mso]><v:roundrect href=\"$code\"><![endif]-->", "<!--[if mso]><v:roundrect href=\"$code\"><![endif]-->"},
		{"<!doctype html><html><body>\n\t$code\r\n</body></html>", "<!doctype html><html><body>\n\tK&amp;1\r\n</body></html>"},
		{"<p>&nbsp;&#36;code &amp; $code</p>", "<p>&nbsp;&#36;code &amp; K&amp;1</p>"},
		{"<a =x href=$code>", "<a =x href=K%261>"},
		{"<a /=y href=\"$code\">", "<a /=y href=\"K%261\">"},
		{"<a href = '$code' >", "<a href = 'K%261' >"},
		{"<a HREF=$code/>", "<a HREF=K%261/>"},
		{"<a href=\"$code\" href=\"$code\">", "<a href=\"K%261\" href=\"K%261\">"},
		{"<a\thref\n=\n\"x?$code\"\ttitle=$code>", "<a\thref\n=\n\"x?K%261\"\ttitle=K&amp;1>"},
		{"<p title=\"a>b $code\">", "<p title=\"a>b K&amp;1\">"},
		{"<br/>$code<br />", "<br/>K&amp;1<br />"},
		{"</p title=\"$code\">", "</p title=\"$code\">"},
		{"<script>/* $code */ x = '$code'</script>", "<script>/* K\\u00261 */ x = 'K\\u00261'</script>"},
		{"<style>p::after{content:'$code'}</style>", "<style>p::after{content:'K\\0000261'}</style>"},
		{"<p>unfinished <a href=\"$code", "<p>unfinished <a href=\"$code"},
		{"<textarea><b>$code</b></textarea>", "<textarea><b>K&amp;1</b></textarea>"},
		{"<p>\x00$code</p>", "<p>\x00K&amp;1</p>"},
		{"<svg><a xlink:href=\"$code\"/></svg>", "<svg><a xlink:href=\"K%261\"/></svg>"},
		{"<img srcset=\"a.png?c=$code 2x\">", "<img srcset=\"a.png?c=K%261 2x\">"},
		{"<p>$codex $cod $CODE</p>", "<p>K&amp;1x $cod $CODE</p>"},
	} {
		got, err := render.Code(tc.in, "K&1")
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got != tc.want {
			t.Errorf("%q:\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestCodeRefusesInvalidCodes(t *testing.T) {
	for _, code := range []string{"", "a\xffb"} {
		if _, err := render.Code("<p>$code</p>", code); err != render.ErrInvalidCode {
			t.Errorf("code %q: err %v, want ErrInvalidCode", code, err)
		}
	}
}

// TestCodeJavascriptURLSpellings: a browser runs a javascript: URL however
// its scheme is spelt, so each spelling gets the JavaScript escaping.
func TestCodeJavascriptURLSpellings(t *testing.T) {
	for _, href := range []string{"javascript:f('$code')", " JavaScript:f('$code')", "java&#x09;script:f('$code')", "\x01javascript:f('$code')"} {
		out, err := render.Code(`<a href="`+href+`">x</a>`, "');alert(1);('")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `%5Cu0027%5Cu0029`) {
			t.Errorf("%q rendered %q: the quote is not JavaScript-escaped", href, out)
		}
	}
}

// FuzzCode: for any template and code, rendering never fails on the
// template, keeps a template without placeholders as it is, and yields
// HTML whose tokens are the template's (no markup appears or vanishes).
func FuzzCode(f *testing.F) {
	for _, c := range rendertest.Cases {
		f.Add(c.Template, c.Code)
	}
	f.Fuzz(func(t *testing.T, tmpl, code string) {
		out, err := render.Code(tmpl, code)
		if code == "" || !utf8.ValidString(code) {
			if err == nil {
				t.Fatal("an invalid code was accepted")
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", tmpl, err)
		}
		if !strings.Contains(tmpl, render.Placeholder) && out != tmpl {
			t.Fatalf("%q changed to %q", tmpl, out)
		}
		if a, b := tokenKinds(tmpl), tokenKinds(out); a != b {
			t.Fatalf("%q -> %q: tokens %q became %q", tmpl, out, a, b)
		}
	})
}

// tokenKinds lists the token types and tag names of s.
func tokenKinds(s string) string {
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return b.String()
		}
		b.WriteString(tt.String())
		if tt != html.TextToken && tt != html.CommentToken && tt != html.DoctypeToken {
			name, _ := z.TagName()
			b.Write(name)
			for more := true; more; {
				var k []byte
				k, _, more = z.TagAttr()
				b.WriteString(" " + string(k))
			}
		}
		b.WriteByte(';')
	}
}
