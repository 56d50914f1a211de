package client_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coupond/coupond/httpapi/client"
)

// Upload.Gzip against a real node: the compressed upload imports,
// de-duplicates and withdraws exactly as the plain one.
func TestGzipUploads(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin

	plain := must[*client.CreatedList](t, "plain import")(c.CreateAndImport(ctx, "plain", nil, client.Upload{Body: strings.NewReader(codes("G", 20_000))}))
	packed := must[*client.CreatedList](t, "gzip import")(c.CreateAndImport(ctx, "packed", nil,
		client.Upload{Body: strings.NewReader(codes("G", 20_000)), Size: 123, Gzip: true}))
	// The same codes as the plain list's: all of them stand in it already.
	if want := (client.ImportResult{Imported: 20_000, Size: 20_000, InOtherLists: 20_000}); packed.Import != want ||
		plain.Import.Imported != 20_000 || plain.Import.InOtherLists != 0 {
		t.Fatalf("gzip import %+v, plain %+v", packed.Import, plain.Import)
	}
	res := must[*client.ImportResult](t, "gzip top-up")(c.TopUp(ctx, packed.List.ID,
		client.Upload{Body: strings.NewReader("code\nG-00000\nNEW-1\n"), Header: true, Gzip: true}))
	if *res != (client.ImportResult{Imported: 1, Duplicates: 1, Size: 20_001}) {
		t.Fatalf("gzip top-up %+v", res)
	}
	wd := must[*client.WithdrawResult](t, "gzip withdraw")(c.Withdraw(ctx, packed.List.ID,
		client.Upload{Body: strings.NewReader("NEW-1\nnope\n"), Gzip: true}))
	if *wd != (client.WithdrawResult{Withdrawn: 1, NotFound: 1}) {
		t.Fatalf("gzip withdraw %+v", wd)
	}
	// The server's CSV errors come back through the compression.
	_, err := c.TopUp(ctx, packed.List.ID, client.Upload{Body: strings.NewReader("ok\nbad,two\n"), Gzip: true})
	if ce := wantStatus(t, err, 400, "invalid_csv"); ce.Details["line"] != float64(2) {
		t.Fatalf("invalid_csv details %v", ce.Details)
	}
}

// A gzip upload that is retried is compressed again from the rewound
// body; every try carries Content-Encoding: gzip and no Content-Length,
// and the compressing goroutine of the first try never reads the caller's
// file after the retry rewound it.
func TestGzipUploadRetries(t *testing.T) {
	body := codes("R", 50_000)
	var mu sync.Mutex
	var seenEnc, seenLen []string
	fk := newFake(t, func(try int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenEnc = append(seenEnc, r.Header.Get("Content-Encoding"))
		seenLen = append(seenLen, fmt.Sprint(r.ContentLength))
		mu.Unlock()
		if try == 1 {
			apiError(w, 503, "unavailable", "0")
			return
		}
		fmt.Fprint(w, `{"imported":50000,"duplicates":0,"size":50000}`)
	})
	path := filepath.Join(t.TempDir(), "codes.csv")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := fk.client(t).TopUp(context.Background(), "0000000000000001",
		client.Upload{Body: file, Size: int64(len(body)), Gzip: true}); err != nil {
		t.Fatal(err)
	}
	got := fk.seen()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].key == "" || got[0].key != got[1].key {
		t.Fatalf("%d tries, keys %v", len(got), got)
	}
	for i, s := range got {
		zr, err := gzip.NewReader(strings.NewReader(string(s.body)))
		if err != nil {
			t.Fatalf("try %d: not gzip: %v", i+1, err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || string(plain) != body {
			t.Fatalf("try %d: decoded %d bytes (%v), want the %d of the body", i+1, len(plain), err, len(body))
		}
		if len(s.body) >= len(body)/3 {
			t.Fatalf("try %d: %d bytes sent for %d: not compressed", i+1, len(s.body), len(body))
		}
		if seenEnc[i] != "gzip" || seenLen[i] != "-1" {
			t.Fatalf("try %d: Content-Encoding %q, Content-Length %s", i+1, seenEnc[i], seenLen[i])
		}
	}
}
