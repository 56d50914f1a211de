package bench

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Client talks to one coupond node with one bearer token.
type Client struct {
	base  string // scheme://host:port, no trailing slash
	token string
	hc    *http.Client

	// NetHTTP makes the allocation requests of the send scenarios go
	// through net/http too (by default they use rawConn on http:// URLs).
	NetHTTP bool

	// Strong makes every GET of the API ask ?consistency=strong: a follower
	// of a cluster then has the leader answer (its own reads may lag
	// behind the writes it forwarded).
	Strong bool

	// Gzip sends CSV uploads gzip-compressed, as they are generated.
	Gzip bool

	mu  sync.Mutex
	raw []*rawConn // every raw connection made, closed by CloseIdle
}

// BaseURL turns "host:port" (or a full http(s) URL) into a base URL.
func BaseURL(addr string) string {
	addr = strings.TrimRight(strings.TrimSpace(addr), "/")
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return addr
}

// NewClient returns a client for addr keeping up to conns idle connections.
func NewClient(addr, token string, conns int) *Client {
	conns = max(conns, 2)
	tr := &http.Transport{
		Proxy:               nil, // never route a benchmark through a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      64 << 10,
		ForceAttemptHTTP2:   false,
	}
	return &Client{base: BaseURL(addr), token: token, hc: &http.Client{Transport: tr}}
}

// CloseIdle closes the idle connections of the client.
func (c *Client) CloseIdle() {
	c.hc.CloseIdleConnections()
	c.mu.Lock()
	for _, r := range c.raw {
		r.close()
	}
	c.raw = nil
	c.mu.Unlock()
}

// rawConn returns a new raw connection for the hot path, or nil when
// net/http is to be used (NetHTTP, or not a plain http:// URL).
func (c *Client) rawConn() *rawConn {
	if c.NetHTTP {
		return nil
	}
	r := newRawConn(c.base, c.token)
	if r != nil {
		c.mu.Lock()
		c.raw = append(c.raw, r)
		c.mu.Unlock()
	}
	return r
}

// ReadToken reads a bearer token file, trimming white space.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}

// APIError is a non-2xx answer (or an unexpected status) of the server.
type APIError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *APIError) Error() string {
	body := strings.TrimSpace(e.Body)
	if body == "" {
		body = "(empty body)"
	}
	return fmt.Sprintf("%s %s: HTTP %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), body)
}

// maxErrBody bounds how much of an error body is kept.
const maxErrBody = 64 << 10

func apiError(req *http.Request, resp *http.Response) *APIError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
	return &APIError{Method: req.Method, Path: req.URL.RequestURI(), Status: resp.StatusCode, Body: string(b)}
}

// newRequest builds an authenticated request. A body with size >= 0 is sent
// with that Content-Length; size < 0 means chunked.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader, size int64, contentType string) (*http.Request, error) {
	if c.Strong && method == http.MethodGet && strings.HasPrefix(path, "/v1/") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "consistency=strong"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// doJSON sends a request and decodes a 2xx JSON answer into out (if not
// nil). wantStatus, when not 0, is the only status accepted.
func (c *Client) doJSON(req *http.Request, wantStatus int, out any) (int, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 || (wantStatus != 0 && resp.StatusCode != wantStatus) {
		e := apiError(req, resp)
		if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			return resp.StatusCode, fmt.Errorf("expected HTTP %d: %w", wantStatus, e)
		}
		return resp.StatusCode, e
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: decoding the answer: %w", req.Method, req.URL.RequestURI(), err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// List is a code list as the server shows it (SPEC §2).
type List struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	Dedupe            bool   `json:"dedupe"`
	LowStockThreshold int64  `json:"low_stock_threshold"`
	LowStock          bool   `json:"low_stock"`
	Added             int64  `json:"added"`
	Available         int64  `json:"available"`
	Reserved          int64  `json:"reserved"`
	Used              int64  `json:"used"`
	Withdrawn         int64  `json:"withdrawn"`
	UsedOrDeleted     int64  `json:"used_or_deleted"`
	CreatedAt         string `json:"created_at"`
	// SPEC §4; left out by the test fake when unset.
	FallbackCode *string `json:"fallback_code,omitempty"`
	FallbackUsed int64   `json:"fallback_used,omitempty"`
}

// ImportResult is the answer part of an import or top-up.
type ImportResult struct {
	Imported   int64 `json:"imported"`
	Duplicates int64 `json:"duplicates"`
	Size       int64 `json:"size"`
}

// CreateImportReply is the answer of POST /v1/lists?name=... with a CSV.
type CreateImportReply struct {
	List   List         `json:"list"`
	Import ImportResult `json:"import"`
}

// Lists answers GET /v1/lists.
func (c *Client) Lists(ctx context.Context) ([]List, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/lists", nil, 0, "")
	if err != nil {
		return nil, err
	}
	var out struct {
		Lists []List `json:"lists"`
	}
	if _, err := c.doJSON(req, 0, &out); err != nil {
		return nil, err
	}
	return out.Lists, nil
}

// GetList answers GET /v1/lists/{id}.
func (c *Client) GetList(ctx context.Context, id string) (List, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/lists/"+url.PathEscape(id), nil, 0, "")
	if err != nil {
		return List{}, err
	}
	var out List
	_, err = c.doJSON(req, 0, &out)
	return out, err
}

// CreateWithCSV creates a list named name and imports the CSV body of size
// bytes (-1: unknown, sent chunked) in one request. It returns the reply and
// the time from sending the request to the end of the answer.
func (c *Client) CreateWithCSV(ctx context.Context, name string, body io.Reader, size int64) (CreateImportReply, time.Duration, error) {
	var out CreateImportReply
	if c.Gzip {
		body, size = gzipReader(body), -1 // the compressed length is known at the end only
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/lists?name="+url.QueryEscape(name), body, size, "text/csv")
	if err != nil {
		return out, 0, err
	}
	if c.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	t0 := time.Now()
	_, err = c.doJSON(req, http.StatusCreated, &out)
	return out, time.Since(t0), err
}

// Ready reports whether GET /readyz answers 200.
func (c *Client) Ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// gzipReader compresses r as it is read (BestSpeed: the harness measures
// the server, not its own compressor). The goroutine ends when the request
// has read it all, or when the transport closes the body early.
func gzipReader(r io.Reader) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		_, err := io.Copy(zw, r)
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}
