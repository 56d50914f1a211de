package main

import (
	"os"
	"path/filepath"
	"testing"
)

// couponctl --gzip against a coupond process: the compressed import, top-up
// and withdrawal answer what the plain ones do.
func TestCouponctlGzipUploads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs coupond")
	}
	e := startE2E(t)
	work := t.TempDir()
	codesPath := filepath.Join(work, "codes.csv")
	writeLines(t, codesPath, 100_000, "GZ-%07d")

	type imported struct {
		List struct {
			ID        string `json:"id"`
			Available uint64 `json:"available"`
		} `json:"list"`
		Import struct {
			Imported   uint64 `json:"imported"`
			Duplicates uint64 `json:"duplicates"`
		} `json:"import"`
	}
	var plain, packed imported
	e.mustJSON(&plain, "lists", "import", "plain", codesPath)
	progress := e.mustJSON(&packed, "lists", "import", "packed", codesPath, "--gzip", "--progress")
	if packed.Import != plain.Import || packed.Import.Imported != 100_000 || packed.List.Available != 100_000 {
		t.Fatalf("gzip import %+v, plain %+v", packed, plain)
	}
	if progress == "" {
		t.Fatal("--progress with --gzip showed nothing")
	}

	small := filepath.Join(work, "small.csv")
	if err := os.WriteFile(small, []byte("code\nGZ-0000000\nEXTRA-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var top struct {
		Imported   uint64 `json:"imported"`
		Duplicates uint64 `json:"duplicates"`
		Size       uint64 `json:"size"`
	}
	e.mustJSON(&top, "lists", "top-up", packed.List.ID, small, "--gzip", "--header")
	if top.Imported != 1 || top.Duplicates != 1 || top.Size != 100_001 {
		t.Fatalf("gzip top-up %+v", top)
	}
	var wd struct {
		Withdrawn uint64 `json:"withdrawn"`
		NotFound  uint64 `json:"not_found"`
	}
	e.mustJSON(&wd, "lists", "withdraw", packed.List.ID, small, "--gzip") // "code" is no code of the list
	if wd.Withdrawn != 2 || wd.NotFound != 1 {
		t.Fatalf("gzip withdraw %+v", wd)
	}
}
