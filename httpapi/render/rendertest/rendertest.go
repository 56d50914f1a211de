// Package rendertest is the table of templates that shows `$code`
// substitution keeps a code one intact value (SPEC §4), shared by the tests
// of the renderer, of the Go client and of the preview endpoint, so all
// three are held to the same outputs. Check reads an output back the way a
// browser and a link handler would: an HTML parser, then a URL parser or a
// JavaScript or CSS string decoder.
package rendertest

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf16"

	"golang.org/x/net/html"
)

// Kind says how a Probe reads the code back.
type Kind int

const (
	// Text is the text content of an element.
	Text Kind = iota
	// Attr is an attribute value as the HTML parser decodes it.
	Attr
	// Query is one query parameter of a URL attribute.
	Query
	// Path is one path segment of a URL attribute.
	Path
	// Fragment is the fragment of a URL attribute.
	Fragment
	// JSString is the first JavaScript string literal in an element's text
	// (or, with Attr set, in an attribute value).
	JSString
	// JSURLString is JSString in a javascript: URL attribute, after the
	// percent-decoding a browser applies to it.
	JSURLString
	// CSSString is the first CSS string literal in an element's text.
	CSSString
	// NoElem says no element Elem exists (the code made no markup).
	NoElem
)

// Probe is one place where the decoded output must show Want ("$code"
// standing for the code).
type Probe struct {
	Kind  Kind
	Elem  string // tag name
	Attr  string
	Param string   // Query: the parameter
	Keys  []string // Query: all the query's keys, in order
	Seg   int      // Path: the segment ("" before the first slash is 0)
	Segs  int      // Path: the number of segments
	Host  string   // URL probes: the host the URL must keep
	Want  string
}

// Case is one template and code. Exact, when set, is the whole output.
type Case struct {
	Name, Template, Code string
	Probes               []Probe
	Exact                string
}

// Cases covers text, attributes (quoted both ways and unquoted), URL query
// values, path segments and fragments, the placeholder twice, script and
// style contents, event handler attributes, javascript: URLs, RCDATA, and
// templates whose placeholders must not change. Every code is a valid code
// (SPEC §1), so the same table runs through the server.
var Cases = []Case{
	{Name: "text", Template: `<p>Your code: $code</p>`, Code: "SAVE10",
		Probes: []Probe{{Kind: Text, Elem: "p", Want: "Your code: $code"}}},
	{Name: "text with markup characters", Template: `<p>Code: <b>$code</b>!</p>`, Code: `A&B<C>"D'`,
		Probes: []Probe{{Kind: Text, Elem: "b", Want: "$code"}, {Kind: Text, Elem: "p", Want: "Code: $code!"}, {Kind: NoElem, Elem: "c"}}},
	{Name: "twice in text", Template: `<p>$code / $code</p>`, Code: "X&amp;Y",
		Probes: []Probe{{Kind: Text, Elem: "p", Want: "$code / $code"}}},
	{Name: "double-quoted attribute", Template: `<input value="$code" name=c>`, Code: `He said "hi" & left`,
		Probes: []Probe{{Kind: Attr, Elem: "input", Attr: "value", Want: "$code"}, {Kind: Attr, Elem: "input", Attr: "name", Want: "c"}}},
	{Name: "single-quoted attribute", Template: `<span title='$code'>x</span>`, Code: `it's <ok>`,
		Probes: []Probe{{Kind: Attr, Elem: "span", Attr: "title", Want: "$code"}, {Kind: Text, Elem: "span", Want: "x"}}},
	{Name: "unquoted attribute", Template: `<span data-code=$code class=c>x</span>`, Code: "a b=c`d",
		Probes: []Probe{{Kind: Attr, Elem: "span", Attr: "data-code", Want: "$code"}, {Kind: Attr, Elem: "span", Attr: "class", Want: "c"}}},
	{Name: "href query value", Template: `<a href="https://shop.example/redeem?code=$code&amp;utm=mail">Redeem</a>`, Code: "A&B+C#D=E",
		Probes: []Probe{{Kind: Query, Elem: "a", Attr: "href", Param: "code", Keys: []string{"code", "utm"}, Host: "shop.example", Want: "$code"},
			{Kind: Query, Elem: "a", Attr: "href", Param: "utm", Keys: []string{"code", "utm"}, Host: "shop.example", Want: "mail"}}},
	{Name: "href query value with spaces and quotes", Template: `<a href='https://shop.example/r?c=$code'>go</a>`, Code: `a b "c' d+%20`,
		Probes: []Probe{{Kind: Query, Elem: "a", Attr: "href", Param: "c", Keys: []string{"c"}, Host: "shop.example", Want: "$code"}}},
	{Name: "href path segment", Template: `<a href="https://shop.example/c/$code/apply">x</a>`, Code: "x/y?z#w %41",
		Probes: []Probe{{Kind: Path, Elem: "a", Attr: "href", Seg: 2, Segs: 4, Host: "shop.example", Want: "$code"}}},
	{Name: "href fragment", Template: `<a href="https://shop.example/#$code">x</a>`, Code: "#1 &2",
		Probes: []Probe{{Kind: Fragment, Elem: "a", Attr: "href", Host: "shop.example", Want: "$code"}}},
	{Name: "non-ASCII in src and alt", Template: `<IMG SRC="https://img.example/qr?d=$code&amp;s=2" alt="Code $code">`, Code: "Ünïcødé 🎟 ✓",
		Probes: []Probe{{Kind: Query, Elem: "img", Attr: "src", Param: "d", Keys: []string{"d", "s"}, Host: "img.example", Want: "$code"},
			{Kind: Attr, Elem: "img", Attr: "alt", Want: "Code $code"}}},
	{Name: "whole href cannot become a scheme", Template: `<a href="$code">x</a>`, Code: "javascript:alert(1)",
		Probes: []Probe{{Kind: Path, Elem: "a", Attr: "href", Seg: 0, Segs: 1, Want: "$code"}}},
	{Name: "javascript URL", Template: `<a href="javascript:apply('$code')">x</a>`, Code: "');alert(1);('%27",
		Probes: []Probe{{Kind: JSURLString, Elem: "a", Attr: "href", Want: "$code"}}},
	{Name: "script string", Template: `<script>var code = "$code";</script><p>after</p>`, Code: `</script><b>x"y'z\`,
		Probes: []Probe{{Kind: JSString, Elem: "script", Want: "$code"}, {Kind: Text, Elem: "p", Want: "after"}, {Kind: NoElem, Elem: "b"}}},
	{Name: "event handler attribute", Template: `<button onclick="track('$code')">Go</button>`, Code: `a'b"c&d 🎟`,
		Probes: []Probe{{Kind: JSString, Elem: "button", Attr: "onclick", Want: "$code"}, {Kind: Text, Elem: "button", Want: "Go"}}},
	{Name: "style string", Template: `<style>.c::after { content: "$code"; }</style><p>after</p>`, Code: `"};</style><i>x\`,
		Probes: []Probe{{Kind: CSSString, Elem: "style", Want: "$code"}, {Kind: Text, Elem: "p", Want: "after"}, {Kind: NoElem, Elem: "i"}}},
	{Name: "title RCDATA", Template: `<title>Your $code</title><p>x</p>`, Code: "</title><b>&amp;",
		Probes: []Probe{{Kind: Text, Elem: "title", Want: "Your $code"}, {Kind: NoElem, Elem: "b"}}},
	{Name: "no placeholder", Template: "<!DOCTYPE html>\r\n<p class=x>Hello &amp; welcome<br/></p><a / href=x>", Code: "IGNORED",
		Exact: "<!DOCTYPE html>\r\n<p class=x>Hello &amp; welcome<br/></p><a / href=x>"},
	{Name: "comment, doctype and names stay", Template: `<!DOCTYPE html><!-- $code stays --><p data-$code=1 title = '$code' >$code</p>`, Code: "C0DE-1",
		Exact: `<!DOCTYPE html><!-- $code stays --><p data-$code=1 title = 'C0DE-1' >C0DE-1</p>`},
}

// Check reads out, the output of c's template, and says where it does not
// show the code intact.
func Check(c Case, out string) error {
	if c.Exact != "" {
		if out != c.Exact {
			return fmt.Errorf("output %q, want %q", out, c.Exact)
		}
		return nil
	}
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		return fmt.Errorf("parse %q: %w", out, err)
	}
	for _, p := range c.Probes {
		want := strings.ReplaceAll(p.Want, "$code", c.Code)
		got, err := read(doc, p)
		if err != nil {
			return fmt.Errorf("%v in %q", err, out)
		}
		if p.Kind != NoElem && got != want {
			return fmt.Errorf("probe %+v read %q, want %q, in %q", p, got, want, out)
		}
	}
	return nil
}

func read(doc *html.Node, p Probe) (string, error) {
	n := find(doc, p.Elem)
	if p.Kind == NoElem {
		if n != nil {
			return "", fmt.Errorf("an element <%s> appeared", p.Elem)
		}
		return "", nil
	}
	if n == nil {
		return "", fmt.Errorf("no element <%s>", p.Elem)
	}
	if p.Kind == Text || (p.Kind == JSString || p.Kind == CSSString) && p.Attr == "" {
		t := text(n)
		switch p.Kind {
		case JSString:
			return jsString(t)
		case CSSString:
			return cssString(t)
		}
		return t, nil
	}
	v, ok := attr(n, p.Attr)
	if !ok {
		return "", fmt.Errorf("<%s> has no %s", p.Elem, p.Attr)
	}
	switch p.Kind {
	case Attr:
		return v, nil
	case JSString:
		return jsString(v)
	case JSURLString:
		rest, ok := strings.CutPrefix(v, "javascript:")
		if !ok {
			return "", fmt.Errorf("%q is no javascript: URL", v)
		}
		js, err := url.PathUnescape(rest)
		if err != nil {
			return "", err
		}
		return jsString(js)
	}
	u, err := url.Parse(v)
	if err != nil {
		return "", fmt.Errorf("URL %q: %w", v, err)
	}
	if u.Host != p.Host {
		return "", fmt.Errorf("URL %q has host %q, want %q", v, u.Host, p.Host)
	}
	switch p.Kind {
	case Query:
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return "", fmt.Errorf("query of %q: %w", v, err)
		}
		var keys []string
		for _, kv := range strings.Split(u.RawQuery, "&") {
			k, _, _ := strings.Cut(kv, "=")
			keys = append(keys, k)
		}
		if strings.Join(keys, ",") != strings.Join(p.Keys, ",") {
			return "", fmt.Errorf("query of %q has keys %q, want %q", v, keys, p.Keys)
		}
		if len(q[p.Param]) != 1 {
			return "", fmt.Errorf("query of %q has %d values of %s", v, len(q[p.Param]), p.Param)
		}
		return q.Get(p.Param), nil
	case Path:
		if u.Scheme != "" && p.Host == "" {
			return "", fmt.Errorf("URL %q gained the scheme %q", v, u.Scheme)
		}
		segs := strings.Split(u.EscapedPath(), "/")
		if len(segs) != p.Segs || p.Seg >= len(segs) {
			return "", fmt.Errorf("path of %q has %d segments, want %d", v, len(segs), p.Segs)
		}
		return url.PathUnescape(segs[p.Seg])
	case Fragment:
		return u.Fragment, nil
	}
	return "", fmt.Errorf("unknown probe kind %d", p.Kind)
}

func find(n *html.Node, tag string) *html.Node {
	if n.Type == html.ElementNode && n.Data == tag {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := find(c, tag); f != nil {
			return f
		}
	}
	return nil
}

func text(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(text(c))
	}
	return b.String()
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// jsString decodes the first JavaScript string literal ('...' or "...") in
// s, as a JavaScript engine does: \uXXXX (surrogate pairs joined), \xXX and
// a backslash before any other character.
func jsString(s string) (string, error) {
	i := strings.IndexAny(s, `'"`)
	if i < 0 {
		return "", fmt.Errorf("no string literal in %q", s)
	}
	q := s[i]
	var units []uint16
	var out strings.Builder
	flush := func() {
		out.WriteString(string(utf16.Decode(units)))
		units = units[:0]
	}
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == q:
			flush()
			return out.String(), nil
		case c == '\\' && j+1 < len(s):
			j++
			switch s[j] {
			case 'u':
				if j+4 >= len(s) {
					return "", fmt.Errorf("short \\u escape in %q", s)
				}
				v, err := strconv.ParseUint(s[j+1:j+5], 16, 16)
				if err != nil {
					return "", err
				}
				units = append(units, uint16(v))
				j += 4
			case 'x':
				v, err := strconv.ParseUint(s[j+1:j+3], 16, 8)
				if err != nil {
					return "", err
				}
				units = append(units, uint16(v))
				j += 2
			default:
				units = append(units, uint16(s[j]))
			}
		default:
			flush()
			out.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated string literal in %q", s)
}

// cssString decodes the first CSS string literal in s: a backslash and 1 to
// 6 hex digits (and one white space after them) is that code point, a
// backslash before any other character is that character.
func cssString(s string) (string, error) {
	i := strings.IndexAny(s, `'"`)
	if i < 0 {
		return "", fmt.Errorf("no string literal in %q", s)
	}
	q := s[i]
	var out strings.Builder
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == q:
			return out.String(), nil
		case c == '\\' && j+1 < len(s):
			k := j + 1
			for k < len(s) && k < j+7 && strings.IndexByte("0123456789abcdefABCDEF", s[k]) >= 0 {
				k++
			}
			if k == j+1 {
				out.WriteByte(s[k])
				j = k
				continue
			}
			v, _ := strconv.ParseUint(s[j+1:k], 16, 32)
			out.WriteRune(rune(v))
			if k < len(s) && strings.IndexByte(" \t\n", s[k]) >= 0 {
				k++
			}
			j = k - 1
		default:
			out.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated string literal in %q", s)
}
