package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestHistoryErase(t *testing.T) {
	s := newScripted(t, func(r *http.Request, _ map[string]any) (int, string) {
		if strings.Contains(r.RequestURI, "sender") {
			return 403, `{"error":{"code":"forbidden","message":"no"}}`
		}
		return 200, `{"erased":2}`
	})
	out, errOut, code := s.ctl(t, "", "history", "erase", "a/b.c@x")
	if code != exitOK || out != "erased 2 assignments of a/b.c@x\n" {
		t.Fatalf("exit %d: %q %s", code, out, errOut)
	}
	got := s.requests()
	if len(got) != 1 || got[0].method != "DELETE" || got[0].uri != "/v1/recipients/a%2Fb.c@x" {
		t.Fatalf("sent %+v, want one DELETE of the escaped recipient", got)
	}
	out, _, code = s.ctl(t, "", "history", "erase", "..", "--json")
	var res map[string]int
	if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil || len(res) != 1 || res["erased"] != 2 {
		t.Fatalf("--json: exit %d, %q", code, out)
	}
	if uri := s.requests()[1].uri; uri != "/v1/recipients/%2E%2E" {
		t.Fatalf("sent %s, want the dot segment escaped", uri)
	}
	if _, _, code := s.ctl(t, "", "history", "erase", "sender"); code != exitAuth {
		t.Fatalf("a 403: exit %d, want %d", code, exitAuth)
	}
	if _, _, code := s.ctl(t, "", "history", "erase"); code != exitUsage {
		t.Fatalf("no recipient: exit %d, want %d", code, exitUsage)
	}
}
