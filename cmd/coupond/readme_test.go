package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestReadmeWalkthrough runs the README's walkthrough, line for line, against
// a fresh node started the way `make run` starts it (defaults, ./data in the
// working folder); only the HTTP port differs, so the test can run anywhere.
func TestReadmeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start := strings.Index(s, "<!-- walkthrough:start -->")
	end := strings.Index(s, "<!-- walkthrough:end -->")
	if start < 0 || end < start {
		t.Fatal("README has no walkthrough block")
	}
	block := s[start:end]
	block = block[strings.Index(block, "```sh")+len("```sh") : strings.LastIndex(block, "```")]
	script := "set -euo pipefail\n" + strings.ReplaceAll(block, "127.0.0.1:8080", "PORT_PLACEHOLDER")

	p := newProc(t)
	p.Data = p.Dir + "/data" // the README reads data/admin.token from the working folder
	p.Start()
	script = strings.ReplaceAll(script, "PORT_PLACEHOLDER", p.HTTPAddr)

	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = p.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if !strings.HasPrefix(lines[0], "list ") {
		t.Fatalf("first output line %q", lines[0])
	}
	want := []string{
		`{"imported":3,"duplicates":0,"size":3,"in_other_lists":0}`,
		`{"imported":1,"duplicates":1,"size":4,"in_other_lists":0}`,
		`{"already_used":0,"not_found":0,"withdrawn":1}`,
	}
	for i, w := range want {
		if lines[1+i] != w {
			t.Fatalf("output line %d: got %s, want %s", 2+i, lines[1+i], w)
		}
	}
	var list map[string]any
	if err := json.Unmarshal([]byte(lines[4]), &list); err != nil {
		t.Fatalf("counts line %q: %v", lines[4], err)
	}
	for k, v := range map[string]float64{"added": 4, "available": 3, "reserved": 0, "used": 0, "withdrawn": 1, "used_or_deleted": 1} {
		if list[k] != v {
			t.Fatalf("%s = %v, want %v (%s)", k, list[k], v, lines[4])
		}
	}
	var created struct {
		List   map[string]any `json:"list"`
		Import map[string]any `json:"import"`
	}
	if err := json.Unmarshal([]byte(lines[5]), &created); err != nil || created.Import["imported"] != float64(2) || created.List["name"] != "autumn" {
		t.Fatalf("create and import: %q %v", lines[5], err)
	}
	if want := `{"assignments":[{"recipient":"ann@example.com","code":"SPRING-0001"},{"recipient":"bob@example.com","code":"SPRING-0003"}],"available":1}`; lines[6] != want {
		t.Fatalf("allocation: got %s, want %s", lines[6], want)
	}
	var lookup struct {
		State      string            `json:"state"`
		Assignment map[string]string `json:"assignment"`
	}
	if err := json.Unmarshal([]byte(lines[7]), &lookup); err != nil || lookup.State != "assigned" ||
		lookup.Assignment["recipient"] != "bob@example.com" || lookup.Assignment["send_id"] != "send-1" {
		t.Fatalf("code lookup: %q %v", lines[7], err)
	}
}
