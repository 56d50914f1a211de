package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestListsOverlaps(t *testing.T) {
	answer := `{"overlaps":[{"list_id":"00000000000000bb","name":"summer","codes":3,"examples":["A","B C","D"]}]}`
	s := newScripted(t, func(r *http.Request, _ map[string]any) (int, string) {
		if strings.HasSuffix(r.URL.Path, "/00000000000000cc/overlaps") {
			return 200, `{"overlaps":[]}`
		}
		if !strings.HasSuffix(r.URL.Path, "/00000000000000aa/overlaps") {
			return 404, `{"error":{"code":"not_found","message":"no such resource"}}`
		}
		return 200, answer
	})
	out, errOut, code := s.ctl(t, "", "lists", "overlaps", "00000000000000aa")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := s.requests()
	if len(got) != 1 || got[0].method != "GET" || got[0].uri != "/v1/lists/00000000000000aa/overlaps" {
		t.Fatalf("sent %+v", got)
	}
	for _, want := range []string{"LIST", "00000000000000bb", "summer", "3", "A B C D"} {
		if !strings.Contains(out, want) {
			t.Fatalf("overlaps lack %q:\n%s", want, out)
		}
	}
	out, _, code = s.ctl(t, "", "lists", "overlaps", "00000000000000aa", "--json")
	var js []map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &js) != nil || len(js) != 1 || js[0]["codes"] != 3.0 {
		t.Fatalf("--json: exit %d: %s", code, out)
	}
	if out, _, code := s.ctl(t, "", "lists", "overlaps", "00000000000000cc"); code != exitOK || !strings.Contains(out, "no other list") {
		t.Fatalf("no overlaps: exit %d: %s", code, out)
	}
	if out, _, code := s.ctl(t, "", "lists", "overlaps", "00000000000000cc", "--json"); code != exitOK || strings.TrimSpace(out) != "[]" {
		t.Fatalf("no overlaps as JSON: exit %d: %s", code, out)
	}
	if _, _, code := s.ctl(t, "", "lists", "overlaps", "00000000000000dd"); code != exitNotFound {
		t.Fatalf("an unknown list: exit %d, want %d", code, exitNotFound)
	}
	if _, _, code := s.ctl(t, "", "lists", "overlaps"); code != exitUsage {
		t.Fatalf("no list: exit %d, want %d", code, exitUsage)
	}
}
