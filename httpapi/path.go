package httpapi

import (
	"bytes"
	"errors"
	"strings"
)

var errBadEscape = errors.New("invalid percent-encoding in path")

// splitPath cuts the raw request path (as sent, before any normalisation)
// into its segments, decoding each exactly once: %2F stays inside its
// segment and "." or ".." are ordinary values (SPEC §2). It appends the
// segments to out.
func splitPath(out []string, rawURI []byte) ([]string, error) {
	if i := bytes.IndexByte(rawURI, '?'); i >= 0 {
		rawURI = rawURI[:i]
	}
	if i := bytes.IndexByte(rawURI, '#'); i >= 0 {
		rawURI = rawURI[:i]
	}
	if len(rawURI) == 0 || rawURI[0] != '/' {
		return nil, errBadEscape
	}
	// One string for the whole path; segments without escapes are slices of it.
	path := string(rawURI[1:])
	for {
		seg, rest, more := strings.Cut(path, "/")
		s, err := unescapeSegment(seg)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		if !more {
			return out, nil
		}
		path = rest
	}
}

func unescapeSegment(p string) (string, error) {
	if strings.IndexByte(p, '%') < 0 {
		return p, nil
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			out = append(out, p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", errBadEscape
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", errBadEscape
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
