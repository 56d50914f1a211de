package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// keyed sends a CSV import with an Idempotency-Key and answers the status,
// the error code (for an error) and the body.
func (p *proc) keyed(path, token, key string, body []byte) (int, string, []byte) {
	p.T.Helper()
	req, err := http.NewRequest("POST", p.URL(path), bytes.NewReader(body))
	if err != nil {
		p.T.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.T.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.T.Fatalf("POST %s: %v", path, err)
	}
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if resp.StatusCode >= 400 {
		json.Unmarshal(b, &e)
	}
	return resp.StatusCode, e.Error.Code, b
}

// TestIdempotencyKeyBindingSurvivesKill9: imports under keys are answered,
// then the node is killed with kill -9 and started again; retries of the
// same requests get the first answers, other requests under those keys 409
// idempotency_key_reused, after a clean restart too. A retry of a
// create-and-import whose list was deleted (then kill -9) is 404 and
// creates nothing.
func TestIdempotencyKeyBindingSurvivesKill9(t *testing.T) {
	t.Parallel() // its own processes and folders; runs beside the other long ones
	p := newProc(t)
	p.Start()
	admin := p.Token("admin.token")
	var a listJSON
	p.must(201, &a, "POST", "/v1/lists", admin, "application/json", []byte(`{"name":"a"}`))

	// Over 1 MiB each: the digest spans several staged chunks.
	topUp, create := codesCSV("T", 0, 100_000), codesCSV("C", 0, 100_000)
	other := append(codesCSV("T", 0, 99_999), "OTHER\n"...)
	st, _, first := p.keyed("/v1/lists/"+a.ID+"/codes", admin, "key-top-up", topUp)
	if st != 200 {
		t.Fatalf("top-up: %d %s", st, first)
	}
	st, _, b := p.keyed("/v1/lists?name=c", admin, "key-create", create)
	var c1 struct {
		List   listJSON   `json:"list"`
		Import importJSON `json:"import"`
	}
	if st != 201 || json.Unmarshal(b, &c1) != nil {
		t.Fatalf("create and import: %d %s", st, b)
	}

	check := func(when string) {
		t.Helper()
		if st, _, b := p.keyed("/v1/lists/"+a.ID+"/codes", admin, "key-top-up", topUp); st != 200 || !bytes.Equal(b, first) {
			t.Fatalf("%s: retried top-up %d %s, first %s", when, st, b, first)
		}
		var c2 struct {
			List   listJSON   `json:"list"`
			Import importJSON `json:"import"`
		}
		st, _, b := p.keyed("/v1/lists?name=c", admin, "key-create", create)
		if st != 201 || json.Unmarshal(b, &c2) != nil || c2.List.ID != c1.List.ID || c2.Import != c1.Import {
			t.Fatalf("%s: retried create and import %d %s, first %+v", when, st, b, c1)
		}
		for _, r := range []struct {
			name, path, key string
			body            []byte
		}{
			{"top-up with another body", "/v1/lists/" + a.ID + "/codes", "key-top-up", other},
			{"create under the top-up's key", "/v1/lists?name=c", "key-top-up", topUp},
			{"top-up under the create's key", "/v1/lists/" + a.ID + "/codes", "key-create", create},
		} {
			if st, code, b := p.keyed(r.path, admin, r.key, r.body); st != 409 || code != "idempotency_key_reused" {
				t.Fatalf("%s: %s: %d %s, want 409 idempotency_key_reused", when, r.name, st, b)
			}
		}
		var got listJSON
		p.must(200, &got, "GET", "/v1/lists/"+a.ID, admin, "", nil)
		if got.Added != 100_000 {
			t.Fatalf("%s: list a holds %d codes, want 100000", when, got.Added)
		}
	}
	// The first requests were answered: a crash now, and every retry after it.
	p.Kill9()
	p.restart()
	check("after kill -9")
	p.Stop()
	p.restart()
	check("after a clean restart")

	p.must(204, nil, "DELETE", "/v1/lists/"+c1.List.ID, admin, "", nil)
	p.Kill9()
	p.restart()
	deleted := func(when string) {
		t.Helper()
		if st, code, b := p.keyed("/v1/lists?name=c", admin, "key-create", create); st != 404 || code != "not_found" {
			t.Fatalf("%s: retry of the deleted create and import: %d %s, want 404 not_found", when, st, b)
		}
		var lists struct {
			Lists []listJSON `json:"lists"`
		}
		p.must(200, &lists, "GET", "/v1/lists", admin, "", nil)
		if len(lists.Lists) != 1 || lists.Lists[0].ID != a.ID {
			t.Fatalf("%s: lists %+v, want only a", when, lists.Lists)
		}
	}
	deleted("after kill -9")
	p.Stop()
	p.restart()
	deleted("after a clean restart")
}
