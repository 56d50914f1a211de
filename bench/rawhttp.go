package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

// rawConn is a minimal HTTP/1.1 client on one keep-alive connection, for
// the hot path of the send scenarios: one goroutine, no per-request
// goroutines, channels or header maps. net/http costs about 25 µs of CPU a
// request, as much as a small allocation on a 2-core machine's server
// side; this costs a few. It speaks plain http:// only, sends
// Content-Length bodies, and reads Content-Length, chunked, or
// close-delimited answers.
type rawConn struct {
	addr    string // host:port to dial
	head    []byte // the fixed request headers after the request line
	timeout time.Duration

	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

// rawTimeout bounds one request (a server that stops answering must not
// hang the harness).
const rawTimeout = 120 * time.Second

// newRawConn returns a client for base (an http:// URL) or nil when base
// is not plain http.
func newRawConn(base, token string) *rawConn {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil
	}
	host := u.Host
	addr := host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	var h []byte
	h = append(h, "Host: "...)
	h = append(h, host...)
	if token != "" {
		h = append(h, "\r\nAuthorization: Bearer "...)
		h = append(h, token...)
	}
	h = append(h, "\r\nUser-Agent: couponbench\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: "...)
	return &rawConn{addr: addr, head: h, timeout: rawTimeout}
}

func (r *rawConn) close() {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}

// errBeforeAnswer marks a failure on a reused connection before any byte of
// the answer came: the server had closed the idle connection, so the
// request may be sent again on a new one.
var errBeforeAnswer = errors.New("connection closed before the answer")

// post sends a JSON body and reads the whole answer into buf (grown as
// needed). It returns the status and the body. A request that fails on a
// reused connection before any answer is sent again once on a new one:
// allocation is idempotent per (send, recipient), so that is safe.
func (r *rawConn) post(ctx context.Context, path string, body []byte, buf []byte) (int, []byte, error) {
	if err := ctx.Err(); err != nil {
		return 0, buf, err
	}
	for attempt := 0; ; attempt++ {
		reused := r.conn != nil
		if !reused {
			d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
			c, err := d.DialContext(ctx, "tcp", r.addr)
			if err != nil {
				return 0, buf, err
			}
			r.conn = c
			if r.br == nil {
				r.br = bufio.NewReaderSize(c, 64<<10)
				r.bw = bufio.NewWriterSize(c, 64<<10)
			} else {
				r.br.Reset(c)
				r.bw.Reset(c)
			}
		}
		c := r.conn
		stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
		status, out, keep, err := r.roundTrip(path, body, buf)
		stop()
		if err == nil {
			if !keep {
				r.close()
			}
			return status, out, nil
		}
		r.close()
		if cerr := ctx.Err(); cerr != nil {
			return 0, buf, cerr
		}
		if !reused || attempt > 0 || !errors.Is(err, errBeforeAnswer) {
			return 0, buf, fmt.Errorf("POST %s: %w", path, err)
		}
	}
}

func (r *rawConn) roundTrip(path string, body []byte, buf []byte) (status int, out []byte, keep bool, err error) {
	if err := r.conn.SetDeadline(time.Now().Add(r.timeout)); err != nil {
		return 0, buf, false, err
	}
	w := r.bw
	w.WriteString("POST ")
	w.WriteString(path)
	w.WriteString(" HTTP/1.1\r\n")
	w.Write(r.head)
	var num [20]byte
	w.Write(strconv.AppendInt(num[:0], int64(len(body)), 10))
	w.WriteString("\r\n\r\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		return 0, buf, false, fmt.Errorf("%w: %v", errBeforeAnswer, err)
	}
	// Status line (skipping any 1xx answer).
	for {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			if len(line) == 0 && (err == io.EOF || isConnReset(err)) {
				return 0, buf, false, fmt.Errorf("%w: %v", errBeforeAnswer, err)
			}
			return 0, buf, false, fmt.Errorf("reading the status line: %w", err)
		}
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
			return 0, buf, false, fmt.Errorf("bad status line %q", line)
		}
		status, err = strconv.Atoi(string(line[9:12]))
		if err != nil {
			return 0, buf, false, fmt.Errorf("bad status line %q", line)
		}
		keep = line[7] == '1' // HTTP/1.1 keeps the connection by default
		length, chunked, err := r.headers(&keep)
		if err != nil {
			return status, buf, false, err
		}
		if status >= 100 && status < 200 {
			continue
		}
		out = buf[:0]
		switch {
		case status == 204 || status == 304:
		case chunked:
			out, err = r.readChunked(out)
		case length >= 0:
			out, err = readFull(r.br, out, length)
		default:
			keep = false
			out, err = readAll(r.br, out)
		}
		if err != nil {
			return status, out, false, fmt.Errorf("reading the body: %w", err)
		}
		return status, out, keep, nil
	}
}

// headers reads the header block: Content-Length (-1 when absent),
// chunked transfer coding, and Connection (which may change keep).
func (r *rawConn) headers(keep *bool) (length int64, chunked bool, err error) {
	length = -1
	for {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			return 0, false, fmt.Errorf("reading the headers: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return length, chunked, nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("bad header line %q", line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", v)
			}
			length = n
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			lv := bytes.ToLower(v)
			if bytes.Contains(lv, []byte("close")) {
				*keep = false
			} else if bytes.Contains(lv, []byte("keep-alive")) {
				*keep = true
			}
		}
	}
}

func (r *rawConn) readChunked(out []byte) ([]byte, error) {
	for {
		line, err := r.br.ReadSlice('\n')
		if err != nil {
			return out, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return out, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			// Trailers, up to the empty line.
			for {
				t, err := r.br.ReadSlice('\n')
				if err != nil {
					return out, err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return out, nil
				}
			}
		}
		if out, err = readFull(r.br, out, n); err != nil {
			return out, err
		}
		if _, err := r.br.Discard(2); err != nil { // CRLF after the data
			return out, err
		}
	}
}

// readFull appends exactly n bytes of rd to out.
func readFull(rd io.Reader, out []byte, n int64) ([]byte, error) {
	need := len(out) + int(n)
	if cap(out) < need {
		out = append(out[:cap(out)], make([]byte, need-cap(out))...)
	}
	out = out[:need]
	_, err := io.ReadFull(rd, out[need-int(n):])
	return out, err
}

// readAll appends all of rd to out.
func readAll(rd io.Reader, out []byte) ([]byte, error) {
	for {
		if len(out) == cap(out) {
			out = append(out, 0)[:len(out)]
		}
		n, err := rd.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
