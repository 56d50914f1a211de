// Package recipjson parses the JSON body of an allocation,
// {"message_id"?: string, "on_shortage"?: string, "recipients": [string, ...]},
// or of a release, {"recipients": [...]}, without a heap object per
// recipient. It imports only the standard library, so its fuzz
// run builds in seconds.
package recipjson

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Parse reads {"message_id"?: string, "recipients": [string...]}
// without a heap object per recipient: an unescaped string is a slice of
// body. It refuses unknown fields, duplicate fields, other types, and
// trailing data, as the API's JSON rules say. max bounds the recipients.
func Parse(body []byte, max int) (message *string, recips [][]byte, err error) {
	r, err := ParseRequest(body, max, MessageID)
	return r.MessageID, r.Recipients, err
}

// Fields names the optional string fields a call takes beside
// "recipients"; any other field is refused.
type Fields uint8

const (
	MessageID  Fields = 1 << iota // "message_id" (allocation)
	OnShortage                    // "on_shortage" (allocation)
)

// Request is a parsed body. A string field that is absent or null is nil.
type Request struct {
	MessageID  *string
	OnShortage *string
	Recipients [][]byte // nil when absent
}

// ParseRequest reads {"recipients": [string...]} with the optional fields
// of optional, as Parse does: allocation takes MessageID|OnShortage, a
// release none.
func ParseRequest(body []byte, max int, optional Fields) (out Request, err error) {
	p := jsonScanner{b: body}
	if !p.consume('{') {
		return Request{}, p.fail("the body must be a JSON object")
	}
	var seen Fields
	seenRecips := false
	// optString reads an optional string field once.
	optString := func(f Fields, name string, dst **string) error {
		if optional&f == 0 {
			return p.fail("unknown field " + strconv.Quote(name))
		}
		if seen&f != 0 {
			return p.fail(name + " given twice")
		}
		seen |= f
		if p.literal("null") {
			return nil
		}
		s, err := p.str()
		if err != nil {
			return err
		}
		v := string(s)
		*dst = &v
		return nil
	}
	if !p.consume('}') {
		for {
			key, err := p.str()
			if err != nil {
				return Request{}, err
			}
			if !p.consume(':') {
				return Request{}, p.fail("expected ':'")
			}
			switch string(key) {
			case "message_id":
				err = optString(MessageID, "message_id", &out.MessageID)
			case "on_shortage":
				err = optString(OnShortage, "on_shortage", &out.OnShortage)
			case "recipients":
				if seenRecips {
					return Request{}, p.fail("recipients given twice")
				}
				seenRecips = true
				out.Recipients, err = p.strArray(max)
			default:
				err = p.fail("unknown field " + strconv.Quote(string(key)))
			}
			if err != nil {
				return Request{}, err
			}
			if p.consume(',') {
				continue
			}
			if p.consume('}') {
				break
			}
			return Request{}, p.fail("expected ',' or '}'")
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return Request{}, p.fail("unexpected data after the JSON object")
	}
	return out, nil
}

// ErrTooManyRecipients: the body holds more recipients than max.
var ErrTooManyRecipients = errors.New("too many recipients")

type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) fail(msg string) error {
	return errors.New(msg + " at byte " + strconv.Itoa(p.i))
}

func (p *jsonScanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonScanner) consume(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonScanner) literal(s string) bool {
	p.ws()
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

func (p *jsonScanner) strArray(max int) ([][]byte, error) {
	if !p.consume('[') {
		return nil, p.fail("recipients must be an array of strings")
	}
	// Each recipient takes at least 3 bytes ("x",), so the rest of the body
	// bounds the count: one-recipient requests do not pay for a big slice.
	out := make([][]byte, 0, min(1024, (len(p.b)-p.i)/3+1))
	if p.consume(']') {
		return out, nil
	}
	for {
		if len(out) == max {
			return nil, ErrTooManyRecipients
		}
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		if p.consume(',') {
			continue
		}
		if p.consume(']') {
			return out, nil
		}
		return nil, p.fail("expected ',' or ']'")
	}
}

// str reads a JSON string. Without escapes the result aliases the body.
func (p *jsonScanner) str() ([]byte, error) {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, p.fail("expected a string")
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch c := p.b[j]; {
		case c == '"':
			s := p.b[start:j]
			if !utf8.Valid(s) {
				return nil, p.fail("invalid UTF-8")
			}
			p.i = j + 1
			return s[:len(s):len(s)], nil
		case c == '\\':
			return p.slowStr(start)
		case c < 0x20:
			return nil, p.fail("control character in a string")
		}
	}
	return nil, p.fail("unterminated string")
}

func (p *jsonScanner) slowStr(start int) ([]byte, error) {
	out := make([]byte, 0, 64)
	j := start
	for j < len(p.b) {
		c := p.b[j]
		switch {
		case c == '"':
			if !utf8.Valid(out) {
				return nil, p.fail("invalid UTF-8")
			}
			p.i = j + 1
			return out, nil
		case c < 0x20:
			return nil, p.fail("control character in a string")
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(p.b) {
			break
		}
		e := p.b[j+1]
		j += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(p.b, j)
			if !ok {
				return nil, p.fail("bad \\u escape")
			}
			j += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if j+6 <= len(p.b) && p.b[j] == '\\' && p.b[j+1] == 'u' {
					r2, ok = hex4(p.b, j+2)
				}
				d := utf8.RuneError
				if ok {
					d = utf16.DecodeRune(r, r2)
				}
				if d == utf8.RuneError {
					// A lone surrogate names no character: refuse it rather
					// than fold different recipients into U+FFFD.
					return nil, p.fail("lone UTF-16 surrogate in a \\u escape")
				}
				r = d
				j += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, p.fail("bad escape")
		}
	}
	return nil, p.fail("unterminated string")
}

func hex4(b []byte, j int) (rune, bool) {
	if j+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[j:j+4]), 16, 32) // escapes are rare: the copy does not matter
	return rune(v), err == nil
}
