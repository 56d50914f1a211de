package httpapi_test

// Handler tests of the send lifecycle (SPEC §4: fallback code, expiry,
// release, forecast) against the fakes: what reaches the Writer or the
// Reader, what the client reads back, and docs/openapi.yaml on every
// answer. go test -run FakeLifecycle ./httpapi/

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// fallbackPair is one assignment of an allocation answer, with its flag.
type fallbackPair struct {
	Recipient string `json:"recipient"`
	Code      string `json:"code"`
	Fallback  *bool  `json:"fallback"` // nil: absent, as the API answers a code of the list
}

func TestFakeLifecycleLists(t *testing.T) {
	t.Run("create with fallback code and expiry", func(t *testing.T) {
		n := newFakeNode(t)
		r := n.json("POST", "/v1/lists", n.admin,
			`{"name":"x","fallback_code":"GENERIC-10","expires_at":"2030-01-02T03:04:05.5+02:00","expiry_warning_days":3}`)
		wantStatus(t, r, http.StatusCreated)
		l := checkListShape(t, r.body)
		c := n.takeWrite("Propose").arg.(*raftfsm.CreateList)
		at := time.Date(2030, 1, 2, 1, 4, 5, 5e8, time.UTC).UnixNano()
		if c.FallbackCode != "GENERIC-10" || !c.HasExpiry || c.ExpiresAt != at || !c.SetWarnDays || c.WarnDays != 3 {
			t.Fatalf("CreateList %+v, want fallback GENERIC-10, expiry %d, 3 warning days", c, at)
		}
		if l.FallbackCode == nil || *l.FallbackCode != "GENERIC-10" || l.ExpiresAt == nil ||
			*l.ExpiresAt != "2030-01-02T01:04:05.5Z" || l.ExpiryWarningDays != 3 || l.Expired {
			t.Fatalf("answered %s", r.body)
		}

		// Without them: no fallback, no expiry (null, not absent), 7 warning days.
		r = n.json("POST", "/v1/lists", n.admin, `{"name":"y","fallback_code":null,"expires_at":null}`)
		l = checkListShape(t, r.body)
		c = n.takeWrite("Propose").arg.(*raftfsm.CreateList)
		if c.FallbackCode != "" || c.HasExpiry || c.SetWarnDays {
			t.Fatalf("CreateList %+v, want no fallback, no expiry, default warning", c)
		}
		if l.FallbackCode != nil || l.ExpiresAt != nil || l.ExpiryWarningDays != raftfsm.DefaultWarnDays ||
			!strings.Contains(string(r.body), `"fallback_code":null`) || !strings.Contains(string(r.body), `"expires_at":null`) {
			t.Fatalf("answered %s", r.body)
		}
	})

	t.Run("create refused before any write", func(t *testing.T) {
		n := newFakeNode(t)
		for _, body := range []string{
			`{"name":"x","fallback_code":""}`,
			`{"name":"x","fallback_code":" LEADING"}`,
			`{"name":"x","fallback_code":"TRAILING\u00a0"}`,
			`{"name":"x","fallback_code":"A\tB"}`,
			`{"name":"x","fallback_code":"A\u2028B"}`,
			`{"name":"x","fallback_code":"` + strings.Repeat("x", 129) + `"}`,
			`{"name":"x","expires_at":"tomorrow"}`,
			`{"name":"x","expires_at":"2030-01-02"}`,
			`{"name":"x","expiry_warning_days":3651}`,
		} {
			wantError(t, n.json("POST", "/v1/lists", n.admin, body), http.StatusBadRequest, "invalid_request")
		}
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x","expiry_warning_days":-1}`), http.StatusBadRequest, "invalid_json")
		wantError(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x","fallback_code":5}`), http.StatusBadRequest, "invalid_json")
		wantError(t, n.json("POST", "/v1/lists", n.sender, `{"name":"x","fallback_code":"G"}`), http.StatusForbidden, "forbidden")
		n.noWrites()
		// A code may hold what a CSV must quote, as imported codes may.
		wantStatus(t, n.json("POST", "/v1/lists", n.admin, `{"name":"x","fallback_code":"A,B \"C\""}`), http.StatusCreated)
		if c := n.takeWrite("Propose").arg.(*raftfsm.CreateList); c.FallbackCode != `A,B "C"` {
			t.Fatalf("CreateList %+v", c)
		}
	})

	t.Run("update sets and clears", func(t *testing.T) {
		n := newFakeNode(t)
		id := n.addList("acme", 0x1234, 3)
		patch := func(body string) (*raftfsm.UpdateList, list) {
			t.Helper()
			r := n.json("PATCH", "/v1/lists/"+id, n.admin, body)
			wantStatus(t, r, http.StatusOK)
			return n.takeWrite("Propose").arg.(*raftfsm.UpdateList), checkListShape(t, r.body)
		}
		at := time.Date(2031, 5, 1, 0, 0, 0, 0, time.UTC).UnixNano()
		u, l := patch(`{"fallback_code":"G-1","expires_at":"2031-05-01T00:00:00Z","expiry_warning_days":0}`)
		want := raftfsm.UpdateList{Tenant: "acme", ID: 0x1234, SetFallback: true, FallbackCode: "G-1",
			SetExpiry: true, HasExpiry: true, ExpiresAt: at, SetWarnDays: true}
		if *u != want || l.FallbackCode == nil || *l.FallbackCode != "G-1" || l.ExpiresAt == nil || l.ExpiryWarningDays != 0 {
			t.Fatalf("UpdateList %+v answered %+v, want %+v", u, l, want)
		}
		// null clears; a field not given is not touched.
		u, l = patch(`{"fallback_code":null}`)
		if *u != (raftfsm.UpdateList{Tenant: "acme", ID: 0x1234, SetFallback: true}) || l.FallbackCode != nil || l.ExpiresAt == nil {
			t.Fatalf("UpdateList %+v answered %+v, want only the fallback cleared", u, l)
		}
		u, l = patch(`{"expires_at":null}`)
		if *u != (raftfsm.UpdateList{Tenant: "acme", ID: 0x1234, SetExpiry: true}) || l.ExpiresAt != nil {
			t.Fatalf("UpdateList %+v answered %+v, want the expiry cleared", u, l)
		}
		u, _ = patch(`{"low_stock_threshold":4}`)
		if u.SetFallback || u.SetExpiry || u.SetWarnDays {
			t.Fatalf("UpdateList %+v changes what the PATCH did not name", u)
		}

		for _, body := range []string{
			`{"fallback_code":""}`, `{"fallback_code":"x\n"}`, `{"expires_at":"31/12/2030"}`,
			`{"expiry_warning_days":99999}`, `{"expiry_warning_days":null}`,
		} {
			wantError(t, n.json("PATCH", "/v1/lists/"+id, n.admin, body), http.StatusBadRequest, "invalid_request")
		}
		wantError(t, n.json("PATCH", "/v1/lists/"+id, n.admin, `{"expires_at":5}`), http.StatusBadRequest, "invalid_json")
		wantError(t, n.json("PATCH", "/v1/lists/"+id, n.sender, `{"fallback_code":"G"}`), http.StatusForbidden, "forbidden")
		wantError(t, n.json("PATCH", "/v1/lists/"+id, n.otherAdmin, `{"fallback_code":"G"}`), http.StatusNotFound, "not_found")
		n.noWrites()
	})

	t.Run("views show the lifecycle counts", func(t *testing.T) {
		n := newFakeNode(t)
		past := time.Now().Add(-time.Hour).UnixNano()
		n.st.putList(raftfsm.ListView{ListMeta: raftfsm.ListMeta{ID: 0x99, Tenant: "acme", Name: "old", Dedupe: true,
			CreatedAt: time.Now().UnixNano(), FallbackCode: "G", HasExpiry: true, ExpiresAt: past, WarnDays: 7, Released: 4, FallbackUsed: 2},
			Added: 10, Available: 6, Used: 4})
		n.addList("acme", 0x98, 1)
		var all struct {
			Lists []list `json:"lists"`
		}
		decode(t, n.do(fakeReq{method: "GET", path: "/v1/lists", token: n.admin}), http.StatusOK, &all)
		byName := map[string]list{}
		for _, l := range all.Lists {
			byName[l.Name] = l
		}
		old, fresh := byName["old"], byName["list 152"]
		if !old.Expired || old.Released != 4 || old.FallbackUsed != 2 || old.FallbackCode == nil || *old.FallbackCode != "G" {
			t.Fatalf("the expired list reads %+v", old)
		}
		if fresh.Expired || fresh.ExpiresAt != nil || fresh.FallbackCode != nil {
			t.Fatalf("a list without expiry reads %+v", fresh)
		}
		r := n.do(fakeReq{method: "GET", path: "/v1/lists/0000000000000099", token: n.admin})
		if l := checkListShape(t, r.body, "assigned_messages"); !l.Expired || l.Released != 4 {
			t.Fatalf("GET list answered %s", r.body)
		}
	})
}

func TestFakeLifecycleSends(t *testing.T) {
	t.Run("open with on_shortage", func(t *testing.T) {
		n, _ := sendFixture(t)
		r := n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1","on_shortage":"fallback"}`)
		var o openResult
		decode(t, r, http.StatusCreated, &o)
		c := n.takeWrite("OpenSend").arg.(*raftfsm.OpenSend)
		if !c.SetOnShortage || c.OnShortage != raftfsm.ShortageFallback || o.OnShortage != "fallback" {
			t.Fatalf("OpenSend %+v answered %s", c, r.body)
		}
		var s sendObj
		decode(t, n.do(fakeReq{method: "GET", path: "/v1/sends/s1", token: n.sender}), http.StatusOK, &s)
		if s.OnShortage != "fallback" {
			t.Fatalf("GET send reads on_shortage %q", s.OnShortage)
		}
		// A PUT without it leaves the policy alone; with it, changes it.
		decode(t, n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1"}`), http.StatusOK, &o)
		if c := n.takeWrite("OpenSend").arg.(*raftfsm.OpenSend); c.SetOnShortage || o.OnShortage != "fallback" {
			t.Fatalf("OpenSend %+v answered %+v, want the policy untouched", c, o)
		}
		decode(t, n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1","on_shortage":"reject"}`), http.StatusOK, &o)
		if c := n.takeWrite("OpenSend").arg.(*raftfsm.OpenSend); !c.SetOnShortage || c.OnShortage != raftfsm.ShortageReject || o.OnShortage != "reject" {
			t.Fatalf("OpenSend %+v answered %+v, want reject", c, o)
		}

		wantError(t, n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1","on_shortage":"maybe"}`), http.StatusBadRequest, "invalid_request")
		wantError(t, n.json("PUT", "/v1/sends/s1", n.sender, `{"message_id":"m1","on_shortage":true}`), http.StatusBadRequest, "invalid_json")
		n.noWrites()

		n.w.onOpenSend = func(*raftfsm.OpenSend) (raftfsm.OpenResult, error) {
			return raftfsm.OpenResult{}, raftfsm.ErrListExpired
		}
		wantError(t, n.json("PUT", "/v1/sends/s2", n.sender, `{"message_id":"m1","expected_recipients":5}`), http.StatusConflict, "list_expired")
	})

	t.Run("allocate with on_shortage and fallbacks", func(t *testing.T) {
		n, _ := sendFixture(t)
		n.w.onAllocate = func(a propose.Allocation) (propose.Allocated, error) {
			return propose.Allocated{Codes: [][]byte{[]byte("C1"), []byte("GENERIC")}, Fallback: []bool{false, true}}, nil
		}
		r := n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","on_shortage":"fallback","recipients":["a","b"]}`)
		var res struct {
			Assignments []fallbackPair `json:"assignments"`
		}
		decode(t, r, http.StatusOK, &res)
		if a := n.takeWrite("Allocate").arg.(propose.Allocation); a.OnShortage != raftfsm.ShortageFallback {
			t.Fatalf("Allocation %+v, want the fallback policy", a)
		}
		yes := true
		if want := []fallbackPair{{"a", "C1", nil}, {"b", "GENERIC", &yes}}; !reflect.DeepEqual(res.Assignments, want) {
			t.Fatalf("answered %s: the fallback flag only on the fallback code", r.body)
		}
		// The CSV answer keeps its two columns.
		r = n.do(fakeReq{method: "POST", path: "/v1/sends/s1/codes?message_id=m1&on_shortage=fallback", token: n.sender,
			ctype: "text/plain", body: "a\nb\n", headers: []string{"Accept: text/csv"}})
		if got := parseCSVPairs(t, r); !reflect.DeepEqual(got, []pair{{"a", "C1"}, {"b", "GENERIC"}}) {
			t.Fatalf("CSV answer %v", got)
		}
		if a := n.takeWrite("Allocate").arg.(propose.Allocation); a.OnShortage != raftfsm.ShortageFallback || a.Message != "m1" {
			t.Fatalf("Allocation %+v, want ?on_shortage=fallback read", a)
		}
		// Not given: reject, the zero value.
		n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","recipients":["a"]}`)
		if a := n.takeWrite("Allocate").arg.(propose.Allocation); a.OnShortage != raftfsm.ShortageReject {
			t.Fatalf("Allocation %+v, want reject by default", a)
		}

		wantError(t, n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","on_shortage":"later","recipients":["a"]}`),
			http.StatusBadRequest, "invalid_request")
		wantError(t, n.do(fakeReq{method: "POST", path: "/v1/sends/s1/codes?message_id=m1&on_shortage=", token: n.sender,
			ctype: "text/plain", body: "a\n"}), http.StatusBadRequest, "invalid_request")
		n.noWrites()

		n.w.onAllocate = func(propose.Allocation) (propose.Allocated, error) {
			return propose.Allocated{}, raftfsm.ErrListExpired
		}
		e := wantError(t, n.json("POST", "/v1/sends/s1/codes", n.sender, `{"message_id":"m1","recipients":["a"]}`), http.StatusConflict, "list_expired")
		if !strings.Contains(fmt.Sprint(e["message"]), "expired") {
			t.Fatalf("list_expired says %v", e["message"])
		}
	})

	t.Run("history and export show fallback and release", func(t *testing.T) {
		n, _ := sendFixture(t)
		now := time.Now()
		at, rel := now.Add(-time.Minute).UnixNano(), now.UnixNano()
		n.st.putSend(raftfsm.Send{Tenant: "acme", ID: "s1", Message: "m1", List: 0x77, Assigned: 2, CreatedAt: at})
		n.st.assignments[fakeKey{"acme", "s1"}] = []raftfsm.Assignment{
			{Recipient: "a", Code: "C1", List: 0x77, Message: "m1", Send: "s1", At: at, ReleasedAt: rel},
			{Recipient: "a", Code: "C7", List: 0x77, Message: "m1", Send: "s1", At: rel},
			{Recipient: "b", Code: "GENERIC", List: 0x77, Message: "m1", Send: "s1", At: at, Fallback: true},
		}
		r := n.do(fakeReq{method: "GET", path: "/v1/sends/s1/assignments", token: n.sender})
		var out struct {
			Assignments []map[string]any `json:"assignments"`
		}
		decode(t, r, http.StatusOK, &out)
		if len(out.Assignments) != 3 {
			t.Fatalf("export %s", r.body)
		}
		if a := out.Assignments[0]; a["released_at"] != rfc(rel) || a["fallback"] != nil {
			t.Fatalf("released assignment %v, want released_at %s and no fallback", a, rfc(rel))
		}
		if a := out.Assignments[1]; a["released_at"] != nil || a["fallback"] != nil || len(a) != 3 {
			t.Fatalf("live assignment %v, want recipient, code and assigned_at only", a)
		}
		if a := out.Assignments[2]; a["fallback"] != true || a["released_at"] != nil {
			t.Fatalf("fallback assignment %v", a)
		}
		r = n.do(fakeReq{method: "GET", path: "/v1/sends/s1/assignments", token: n.sender, headers: []string{"Accept: text/csv"}})
		if got := parseCSVPairs(t, r); !reflect.DeepEqual(got, []pair{{"a", "C1"}, {"a", "C7"}, {"b", "GENERIC"}}) {
			t.Fatalf("CSV export %v", got)
		}

		r = n.do(fakeReq{method: "GET", path: "/v1/recipients/a/assignments", token: n.admin})
		decode(t, r, http.StatusOK, &out)
		if len(out.Assignments) != 2 || out.Assignments[0]["released_at"] != rfc(rel) || out.Assignments[1]["released_at"] != nil {
			t.Fatalf("history of a %s, want the released and the new assignment", r.body)
		}
		r = n.do(fakeReq{method: "GET", path: "/v1/recipients/b/assignments", token: n.admin})
		decode(t, r, http.StatusOK, &out)
		if len(out.Assignments) != 1 || out.Assignments[0]["fallback"] != true || out.Assignments[0]["code"] != "GENERIC" {
			t.Fatalf("history of b %s", r.body)
		}
		n.noWrites()
	})
}

// rfc formats unix ns as the API does.
func rfc(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func TestFakeLifecycleRelease(t *testing.T) {
	n, _ := sendFixture(t)
	n.st.putSend(raftfsm.Send{Tenant: "acme", ID: "s1", Message: "m1", List: 0x77, CreatedAt: time.Now().UnixNano()})
	n.w.onRelease = func(r propose.ReleaseRequest) (raftfsm.ReleaseResult, error) {
		return raftfsm.ReleaseResult{Released: 2, NotAssigned: 1, AlreadyReleased: 1}, nil
	}
	before := time.Now()
	r := n.json("POST", "/v1/sends/s1/release", n.sender, `{"recipients":["a","b","c","d"]}`)
	var res map[string]uint64
	decode(t, r, http.StatusOK, &res)
	if !reflect.DeepEqual(res, map[string]uint64{"released": 2, "not_assigned": 1, "already_released": 1}) {
		t.Fatalf("release answered %s", r.body)
	}
	rq := n.takeWrite("Release").arg.(propose.ReleaseRequest)
	if rq.Tenant != "acme" || rq.Send != "s1" || fmt.Sprintf("%s", rq.Recipients) != "[a b c d]" {
		t.Fatalf("ReleaseRequest %+v", rq)
	}
	stampedNow(t, "Release", rq.At, before)

	// text/plain, by an admin, on a send id that needs escaping.
	r = n.do(fakeReq{method: "POST", path: "/v1/sends/a%2Fb/release", token: n.admin, ctype: "text/plain",
		body: "\xef\xbb\xbfx\r\n\ny\n"})
	wantStatus(t, r, http.StatusOK)
	if rq := n.takeWrite("Release").arg.(propose.ReleaseRequest); rq.Send != "a/b" || fmt.Sprintf("%s", rq.Recipients) != "[x y]" {
		t.Fatalf("ReleaseRequest %+v", rq)
	}

	// Refused before any write.
	for _, c := range []struct {
		body, ctype string
		status      int
		code        string
	}{
		{`{"recipients":[]}`, "application/json", http.StatusBadRequest, "invalid_request"},
		{`{"message_id":"m1","recipients":["a"]}`, "application/json", http.StatusBadRequest, "invalid_json"},
		{`{"on_shortage":"fallback","recipients":["a"]}`, "application/json", http.StatusBadRequest, "invalid_json"},
		{`{"recipients":["a\u0001"]}`, "application/json", http.StatusBadRequest, "invalid_request"},
		{"\n\n", "text/plain", http.StatusBadRequest, "invalid_request"},
		{strings.Repeat("r\n", 100_001), "text/plain", http.StatusRequestEntityTooLarge, "too_many_recipients"},
	} {
		wantError(t, n.do(fakeReq{method: "POST", path: "/v1/sends/s1/release", token: n.sender, ctype: c.ctype, body: c.body}), c.status, c.code)
	}
	wantError(t, n.json("POST", "/v1/sends/s1/release", n.operator, `{"recipients":["a"]}`), http.StatusForbidden, "forbidden")
	wantError(t, n.json("POST", "/v1/sends/s1/release", "", `{"recipients":["a"]}`), http.StatusUnauthorized, "unauthorized")
	n.noWrites()

	// The proposer's answers: an unknown send (or another tenant's) is 404.
	n.w.onRelease = nil
	wantError(t, n.json("POST", "/v1/sends/s1/release", n.otherAdmin, `{"recipients":["a"]}`), http.StatusNotFound, "not_found")
	if rq := n.takeWrite("Release").arg.(propose.ReleaseRequest); rq.Tenant != "other" {
		t.Fatalf("ReleaseRequest %+v, want the caller's tenant", rq)
	}
	n.w.onRelease = func(propose.ReleaseRequest) (raftfsm.ReleaseResult, error) {
		return raftfsm.ReleaseResult{}, propose.ErrTimeout
	}
	wantError(t, n.json("POST", "/v1/sends/s1/release", n.sender, `{"recipients":["a"]}`), http.StatusServiceUnavailable, "unavailable")
}

func TestFakeLifecycleForecast(t *testing.T) {
	n := newFakeNode(t)
	list := n.addList("acme", 0x42, 600)
	now := time.Now()
	n.st.onForecast = func(tenant string, l uint64, recipients uint64, send string, at int64) (raftfsm.Forecast, error) {
		if tenant != "acme" || l != 0x42 || (send != "" && send != "s/1") {
			return raftfsm.Forecast{}, raftfsm.ErrNotFound
		}
		f := raftfsm.Forecast{Recipients: recipients, Needed: recipients, Available: 600, Reserved: 100,
			UsedLast7Days: 70, UsedPerDay: 10, RunsOutAt: at + 60*24*int64(time.Hour)}
		if send != "" {
			f.Needed -= 100
		}
		if f.Needed > f.Available {
			f.Shortfall = f.Needed - f.Available
		}
		f.Enough = f.Shortfall == 0
		return f, nil
	}
	before := time.Now()
	r := n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/forecast?recipients=1000&send_id=s%2F1", token: n.sender})
	var f map[string]any
	decode(t, r, http.StatusOK, &f)
	fieldsOf(t, r.body, "recipients", "needed", "available", "reserved", "shortfall", "enough",
		"used_last_7_days", "used_per_day", "runs_out_at", "expires_at", "expired")
	call := n.st.forecasts[len(n.st.forecasts)-1]
	if call.recipients != 1000 || call.send != "s/1" || call.tenant != "acme" {
		t.Fatalf("Forecast asked %+v", call)
	}
	stampedNow(t, "Forecast", call.now, before)
	if f["needed"] != 900.0 || f["shortfall"] != 300.0 || f["enough"] != false || f["used_per_day"] != 10.0 ||
		f["runs_out_at"] != rfc(call.now+60*24*int64(time.Hour)) || f["expires_at"] != nil || f["expired"] != false {
		t.Fatalf("forecast answered %s", r.body)
	}

	// No use: runs_out_at null; an expiry shows.
	exp := now.Add(48 * time.Hour).UnixNano()
	n.st.onForecast = func(string, uint64, uint64, string, int64) (raftfsm.Forecast, error) {
		return raftfsm.Forecast{Recipients: 5, Needed: 5, Available: 600, Enough: true, HasExpiry: true, ExpiresAt: exp}, nil
	}
	decode(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/forecast?recipients=5", token: n.admin}), http.StatusOK, &f)
	if f["runs_out_at"] != nil || f["expires_at"] != rfc(exp) || f["enough"] != true {
		t.Fatalf("forecast answered %v", f)
	}

	asked := len(n.st.forecasts)
	for _, q := range []string{"", "?recipients=", "?recipients=-1", "?recipients=ten", "?recipients=1.5", "?recipients=5&send_id="} {
		wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/forecast" + q, token: n.sender}),
			http.StatusBadRequest, "invalid_request")
	}
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/forecast?recipients=5", token: n.operator}),
		http.StatusForbidden, "forbidden")
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/nothex/forecast?recipients=5", token: n.sender}),
		http.StatusNotFound, "not_found")
	if len(n.st.forecasts) != asked {
		t.Fatal("a refused forecast reached the Reader")
	}
	n.st.onForecast = func(string, uint64, uint64, string, int64) (raftfsm.Forecast, error) {
		return raftfsm.Forecast{}, raftfsm.ErrNotFound
	}
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/forecast?recipients=5&send_id=nope", token: n.sender}),
		http.StatusNotFound, "not_found")
	wantError(t, n.do(fakeReq{method: "GET", path: "/v1/lists/" + list + "/forecast?recipients=5", token: n.otherAdmin}),
		http.StatusNotFound, "not_found")
	n.noWrites()
}
