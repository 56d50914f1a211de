package main

import (
	"io"
	"net/http"
	"testing"

	"github.com/coupond/coupond/cmd/internal/proctest"
)

// The coupond binaries of this package's tests, each built once. raceBin is
// the default: a node under the race detector reports races of the real
// process. fastBin is for the tests whose subject is the disk, not
// concurrency, and that move millions of codes: under the race detector a
// restore of 5M codes takes ten times as long.
var (
	raceBin = &proctest.Binary{Pkg: ".", Race: true}
	fastBin = &proctest.Binary{Pkg: "."}
)

func TestMain(m *testing.M) { proctest.Main(m) }

func fastBinary(t *testing.T) string { return fastBin.Path(t) }

// proc is a real coupond process on loopback ports, with this package's
// request helpers.
type proc struct {
	*proctest.Node
}

// newProc prepares a node of raceBin in a fresh folder; Start runs it.
func newProc(t *testing.T, extra ...string) *proc {
	t.Helper()
	return newProcOf(t, raceBin.Path(t), extra...)
}

// newProcOf is newProc with the binary bin.
func newProcOf(t *testing.T, bin string, extra ...string) *proc {
	t.Helper()
	return &proc{proctest.New(t, bin, extra...)}
}

// do sends one request and returns the status and body.
func (p *proc) do(method, path, token, contentType string, body io.Reader) (int, []byte) {
	p.T.Helper()
	req, err := http.NewRequest(method, p.URL(path), body)
	if err != nil {
		p.T.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
