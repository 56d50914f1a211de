package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestMessagesPreview: the template goes to the server as it is (a file
// or stdin), the HTML comes back on stdout byte for byte (tabs too), the
// code on stderr; --send and --recipient go together.
func TestMessagesPreview(t *testing.T) {
	const html = "<p>\tA&amp;1</p>\n"
	s := newScripted(t, func(*http.Request, map[string]any) (int, string) {
		return 200, `{"html":"<p>\tA&amp;1</p>\n","code":"A&1","list_id":"00000000000000aa"}`
	})
	tmpl := "<p>\t$code</p>\n"
	file := filepath.Join(t.TempDir(), "t.html")
	if err := os.WriteFile(file, []byte(tmpl), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := s.ctl(t, "", "messages", "preview", "m/1", file)
	if code != exitOK || out != html || errOut != "code A&1 of list 00000000000000aa\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = s.ctl(t, tmpl, "messages", "preview", "m/1", "-", "--send", "s1", "--recipient", "r@x", "--json")
	var got map[string]string
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil || got["code"] != "A&1" || got["html"] != html {
		t.Fatalf("--json: exit %d, stdout %q", code, out)
	}
	seen := s.requests()
	want := []recorded{
		{"POST", "/v1/messages/m%2F1/preview", map[string]any{"html": tmpl}},
		{"POST", "/v1/messages/m%2F1/preview", map[string]any{"html": tmpl, "send_id": "s1", "recipient": "r@x"}},
	}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("requests %+v, want %+v", seen, want)
	}
	if _, _, code := s.ctl(t, "", "messages", "preview", "m", file, "--send", "s1"); code != exitUsage {
		t.Fatalf("--send alone: exit %d, want %d", code, exitUsage)
	}
}
