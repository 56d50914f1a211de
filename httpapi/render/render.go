// Package render puts a coupon code where an HTML template says `$code`
// (SPEC §4, "Preview of $code"). The server's preview and the Go client's
// RenderCode both call Code, so the engine renders exactly what an admin
// previewed.
//
// The template is cut into tokens by golang.org/x/net/html's tokenizer, the
// same rules a browser's tokenizer follows, and each token is copied as its
// raw bytes: only the `$code` placeholders change, everything else (comments,
// the doctype, entity spelling, attribute quoting, white space) stays byte
// for byte. Where a placeholder stands decides how the code is written:
//
//   - text, and attribute values in general: HTML-escaped (& < > " ');
//     in an unquoted attribute value white space, = and ` are escaped too,
//     so the code cannot end the value;
//   - a URL attribute (href, src, action, ...; see urlAttrs): every byte but
//     the unreserved ones (A-Z a-z 0-9 - . _ ~) is percent-encoded, so the
//     code is one query value or one path segment whatever it holds (&, +,
//     #, ", /, space), and can never become a scheme such as "javascript:".
//     Inside a javascript: URL the code is JavaScript-escaped first, because
//     the browser percent-decodes such a URL before running it;
//   - <script> contents and on* event attributes (JavaScript), <style>
//     contents and style attributes (CSS): every character but ASCII letters
//     and digits is written as the language's escape (\uXXXX, \XXXXXX). The
//     code then stays inside the string literal the template puts it in, and
//     can never end the string, a comment or the element; outside a literal
//     it is a syntax error, never code that runs;
//   - the other raw-text elements (title, textarea, and the rare iframe,
//     noembed, noframes, noscript, xmp, plaintext): HTML-escaped, so no `<`
//     can end the element.
//
// A placeholder in a comment (Outlook's `<!--[if mso]>` blocks included),
// a tag or attribute name, or spelt with an entity (`&#36;code`) is left as
// it is.
package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// Placeholder is what a template writes where the code goes.
const Placeholder = "$code"

var placeholder = []byte(Placeholder)

// ErrInvalidCode refuses a code that is empty or not UTF-8: it could not be
// escaped faithfully.
var ErrInvalidCode = errors.New("the code must be non-empty UTF-8")

// urlAttrs are the attributes whose value is a URL (or a list of them).
var urlAttrs = map[string]bool{
	"href": true, "src": true, "action": true, "formaction": true, "cite": true,
	"poster": true, "background": true, "longdesc": true, "usemap": true,
	"codebase": true, "classid": true, "data": true, "archive": true,
	"manifest": true, "profile": true, "icon": true, "srcset": true, "ping": true,
	"lowsrc": true, "dynsrc": true, "xlink:href": true, "xml:base": true,
}

// context is where a placeholder stands; it picks the escaping.
type context uint8

const (
	ctxHTML     context = iota // text and ordinary quoted attribute values
	ctxUnquoted                // an unquoted attribute value
	ctxURL                     // a URL attribute
	ctxJSURL                   // a URL attribute holding a javascript: URL
	ctxJS                      // <script> contents, on* attributes
	ctxCSS                     // <style> contents, style attributes

	// ctxAfterMarkup + ctxHTML or ctxUnquoted: the same, right after a '<'
	// or '&' of the template.
	ctxAfterMarkup
)

// Code returns tmpl with every `$code` replaced by code, escaped for where
// it stands. A template without a placeholder comes back unchanged.
func Code(tmpl, code string) (string, error) {
	if code == "" || !utf8.ValidString(code) {
		return "", ErrInvalidCode
	}
	if !strings.Contains(tmpl, Placeholder) {
		return tmpl, nil
	}
	var enc [ctxAfterMarkup + ctxUnquoted + 1]string // each context's form of the code, made once
	encoded := func(c context) string {
		if enc[c] == "" {
			enc[c] = encode(c, code)
		}
		return enc[c]
	}
	var out strings.Builder
	out.Grow(len(tmpl) + 4*len(code))
	z := html.NewTokenizer(strings.NewReader(tmpl))
	raw := "" // the raw-text element whose contents come next, if any
	for {
		tt := z.Next()
		tok := z.Raw()
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); err != io.EOF {
				return "", fmt.Errorf("cannot read the template: %w", err)
			}
			// An unfinished tag at the end is copied as it came.
			out.Write(tok)
			return out.String(), nil
		case html.TextToken:
			c := ctxHTML
			switch raw {
			case "script":
				c = ctxJS
			case "style":
				c = ctxCSS
			}
			replaceIn(&out, tok, c, encoded)
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			attrs := tokenizerAttrs(z)
			if err := writeTag(&out, tok, attrs, encoded); err != nil {
				return "", err
			}
			// The tokenizer reads the next token as raw text after these
			// start tags, self-closing or not (token.go, readStartTag).
			if rawText[string(name)] {
				raw = string(name)
			} else {
				raw = ""
			}
			continue
		default:
			out.Write(tok)
		}
		raw = ""
	}
}

// rawText are the elements whose contents the tokenizer reads as one text
// token, without looking for tags.
var rawText = map[string]bool{
	"iframe": true, "noembed": true, "noframes": true, "noscript": true, "plaintext": true,
	"script": true, "style": true, "textarea": true, "title": true, "xmp": true,
}

// replaceIn writes b with every placeholder replaced by the code as
// encoded gives it for context c.
func replaceIn(out *strings.Builder, b []byte, c context, encoded func(context) string) {
	for {
		i := bytes.Index(b, placeholder)
		if i < 0 {
			out.Write(b)
			return
		}
		out.Write(b[:i])
		if i > 0 && (b[i-1] == '<' || b[i-1] == '&') && (c == ctxHTML || c == ctxUnquoted) {
			// After '<' a letter, '!', '?' or '/' would start markup that
			// the template did not have; after '&' letters or '#' would
			// make an entity. The first character as a reference can do
			// neither.
			out.WriteString(encoded(c + ctxAfterMarkup))
		} else {
			out.WriteString(encoded(c))
		}
		b = b[i+len(Placeholder):]
	}
}

// tokenizerAttrs returns the attribute keys and unescaped values the
// tokenizer found in the current tag.
func tokenizerAttrs(z *html.Tokenizer) [][2]string {
	var out [][2]string
	for more := true; more; {
		var k, v []byte
		k, v, more = z.TagAttr()
		if k == nil && !more {
			break
		}
		out = append(out, [2]string{string(k), string(v)})
	}
	return out
}

// attrSpan is one attribute of a raw tag: the key and the value as offsets
// into it (vs == ve for an attribute without a value), and the value's quote
// (0 when unquoted).
type attrSpan struct {
	ks, ke, vs, ve int
	quote          byte
}

// scanTag finds the attributes of a raw start tag ("<a href=x ...>") as the
// tokenizer does (x/net/html token.go: readTag, readTagName,
// readTagAttrKey, readTagAttrVal), but keeps their offsets.
func scanTag(t []byte) []attrSpan {
	i := 1 // past '<'
	n := len(t)
	isSpace := func(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' }
	skip := func() {
		for i < n && isSpace(t[i]) {
			i++
		}
	}
	// The tag name: up to white space, '/' or '>'.
	for i < n && !isSpace(t[i]) && t[i] != '/' && t[i] != '>' {
		i++
	}
	skip()
	var out []attrSpan
	for i < n && t[i] != '>' {
		a := attrSpan{ks: i}
		// The key (readTagAttrKey): a leading '/' ends it at once (empty);
		// otherwise its first byte ('=' included) and then up to white
		// space, '/', '>' or '='.
		if t[i] != '/' {
			for i++; i < n; i++ {
				if c := t[i]; isSpace(c) || c == '/' || c == '>' || c == '=' {
					break
				}
			}
		}
		a.ke = i
		a.vs, a.ve = i, i
		// The value (readTagAttrVal).
		skip()
		if i < n {
			c := t[i]
			i++
			switch {
			case c == '/':
			case c != '=':
				i--
			default:
				skip()
				switch {
				case i >= n:
				case t[i] == '>':
				case t[i] == '"' || t[i] == '\'':
					a.quote = t[i]
					i++
					a.vs = i
					for i < n && t[i] != a.quote {
						i++
					}
					a.ve = i
					if i < n {
						i++
					}
				default:
					a.vs = i
					for i < n && !isSpace(t[i]) && t[i] != '>' {
						i++
					}
					a.ve = i
				}
			}
		}
		out = append(out, a)
		skip()
	}
	return out
}

// writeTag writes the raw start tag t with the placeholders in its
// attribute values replaced. attrs are the tokenizer's own attributes: the
// scan must agree with them, or the tag is refused rather than guessed at.
func writeTag(out *strings.Builder, t []byte, attrs [][2]string, encoded func(context) string) error {
	if !bytes.Contains(t, placeholder) {
		out.Write(t)
		return nil
	}
	spans := scanTag(t)
	seen := map[string]bool{}
	k := 0
	last := 0
	for _, a := range spans {
		key := asciiLower(t[a.ks:a.ke])
		// The tokenizer drops empty keys (a solidus) and keeps the first of
		// repeated keys only.
		if key != "" && !seen[key] {
			seen[key] = true
			// TagAttr answers NULs as U+FFFD.
			if k >= len(attrs) || attrs[k][0] != strings.ReplaceAll(key, "\x00", "\ufffd") {
				return fmt.Errorf("cannot read the attributes of the tag %.40q", t)
			}
			k++
		}
		v := t[a.vs:a.ve]
		if key == "" || !bytes.Contains(v, placeholder) {
			continue
		}
		out.Write(t[last:a.vs])
		replaceIn(out, v, attrContext(key, a.quote, string(v)), encoded)
		last = a.ve
	}
	if k != len(attrs) {
		return fmt.Errorf("cannot read the attributes of the tag %.40q", t)
	}
	out.Write(t[last:])
	return nil
}

// asciiLower lowers A-Z only, as the tokenizer does with keys.
func asciiLower(b []byte) string {
	out := []byte(string(b))
	for i, c := range out {
		if 'A' <= c && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}

// attrContext is the context of a placeholder in the value v (raw) of the
// attribute key.
func attrContext(key string, quote byte, v string) context {
	switch {
	case urlAttrs[key]:
		if isJSURL(html.UnescapeString(v)) {
			return ctxJSURL
		}
		return ctxURL
	case strings.HasPrefix(key, "on"):
		return ctxJS
	case key == "style":
		return ctxCSS
	case quote == 0:
		return ctxUnquoted
	}
	return ctxHTML
}

// isJSURL reports a javascript: URL as a browser reads it: leading control
// characters and spaces are skipped, tabs and newlines inside the scheme
// are dropped, the scheme is case-insensitive.
func isJSURL(u string) bool {
	u = strings.TrimLeft(u, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f"+
		"\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f ")
	u = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(u)
	return len(u) >= 11 && strings.EqualFold(u[:11], "javascript:")
}

// encode writes code for context c.
func encode(c context, code string) string {
	if c >= ctxAfterMarkup {
		r, n := utf8.DecodeRuneInString(code)
		return "&#" + strconv.Itoa(int(r)) + ";" + encode(c-ctxAfterMarkup, code[n:])
	}
	switch c {
	case ctxURL:
		return percentEncode(code)
	case ctxJSURL:
		return percentEncode(jsEscape(code))
	case ctxJS:
		return jsEscape(code)
	case ctxCSS:
		return cssEscape(code)
	case ctxUnquoted:
		return escapeUnquoted(html.EscapeString(code))
	}
	return html.EscapeString(code)
}

func isAlnum(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// percentEncode encodes every byte but the unreserved ones of RFC 3986, so
// the result is one path segment or one query value. Its output needs no
// HTML escaping.
func percentEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(rune(c)) || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// jsEscape writes every character but ASCII letters and digits as \uXXXX
// (UTF-16, a surrogate pair beyond the BMP). The output holds only letters,
// digits and backslashes.
func jsEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if isAlnum(r) {
			b.WriteRune(r)
			continue
		}
		if r > 0xffff {
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04X\u%04X`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			continue
		}
		fmt.Fprintf(&b, `\u%04X`, r)
	}
	return b.String()
}

// cssEscape writes every character but ASCII letters and digits as a CSS
// escape of six hex digits (six, so no space is needed to end it).
func cssEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if isAlnum(r) {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\%06X`, r)
	}
	return b.String()
}

// escapeUnquoted escapes, after HTML escaping, what would end or confuse an
// unquoted attribute value.
var escapeUnquoted = strings.NewReplacer(
	" ", "&#32;", "\t", "&#9;", "\n", "&#10;", "\r", "&#13;", "\f", "&#12;",
	"=", "&#61;", "`", "&#96;",
).Replace
