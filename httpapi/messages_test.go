package httpapi_test

// Acceptance point (a), Messages: every Messages call of SPEC §2 over real
// HTTP with its success and error statuses, the eligibility rules of SPEC
// §1, the list's assigned_messages and the delete guard.

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestMessagesAPI covers PUT/GET /v1/messages/{id} and PUT/DELETE
// /v1/messages/{id}/coupon-list on one node; each subtest uses its own ids.
func TestMessagesAPI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	n.createTenant(t, "other")
	_, adminB := n.createToken(t, "other", "admin")

	t.Run("UpsertAnswers201OnCreateThen200OnUpdate", func(t *testing.T) {
		body := map[string]any{"name": "Spring mail", "campaign": "Spring 2026", "campaign_type": "standard", "channel": "email", "doi": false}
		r := n.do(t, "PUT", "/v1/messages/m-upsert", n.admin, body)
		m := decodeMessage(t, r, http.StatusCreated)
		want := message{ID: "m-upsert", Name: "Spring mail", Campaign: "Spring 2026", CampaignType: "standard", Channel: "email", Status: "draft"}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("created %+v, want %+v", m, want)
		}
		if !strings.Contains(string(r.body), `"coupon_list_id":null`) {
			t.Fatalf("coupon_list_id must be null without a list: %s", r)
		}
		if got := n.getMessage(t, n.admin, "m-upsert"); !reflect.DeepEqual(got, want) {
			t.Fatalf("GET %+v, want %+v", got, want)
		}

		// Update every field, status included.
		body = map[string]any{"name": "Spring mail v2", "campaign": "Spring 2026 b", "campaign_type": "auto", "channel": "sms", "doi": true, "status": "sent"}
		m = decodeMessage(t, n.do(t, "PUT", "/v1/messages/m-upsert", n.admin, body), http.StatusOK)
		want = message{ID: "m-upsert", Name: "Spring mail v2", Campaign: "Spring 2026 b", CampaignType: "auto", Channel: "sms", DOI: true, Status: "sent"}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("updated %+v, want %+v", m, want)
		}
		if got := n.getMessage(t, n.admin, "m-upsert"); !reflect.DeepEqual(got, want) {
			t.Fatalf("GET after update %+v, want %+v", got, want)
		}
		// status may be set back by the engine.
		body["status"] = "draft"
		if m := n.putMessage(t, n.admin, "m-upsert", body); m.Status != "draft" {
			t.Fatalf("status set to draft answered %q", m.Status)
		}

		// Every campaign type and channel is a valid message (eligibility
		// only matters for a coupon list).
		for _, ct := range []string{"standard", "auto", "tracking", "network_tracking"} {
			for _, ch := range []string{"email", "web_push", "app_push", "sms", "voice", "print"} {
				id := "m-" + ct + "-" + ch
				b := map[string]any{"name": id, "campaign": "", "campaign_type": ct, "channel": ch, "doi": false}
				m := decodeMessage(t, n.do(t, "PUT", "/v1/messages/"+id, n.admin, b), http.StatusCreated)
				if m.CampaignType != ct || m.Channel != ch || m.Campaign != "" {
					t.Fatalf("%s: %+v", id, m)
				}
			}
		}

		// Caller-chosen ids: 256 bytes, UTF-8, and a "/" or "." sent escaped.
		for _, c := range []struct{ path, id string }{
			{strings.Repeat("i", 256), strings.Repeat("i", 256)},
			{"%C3%A9t%C3%A9", "été"},
			{"a%2Fb", "a/b"},
			{"%2E", "."},
			{"%2E%2E", ".."},
		} {
			m := decodeMessage(t, n.do(t, "PUT", "/v1/messages/"+c.path, n.admin, emailMsg("escaped")), http.StatusCreated)
			if m.ID != c.id {
				t.Fatalf("PUT /v1/messages/%s made id %q, want %q", c.path, m.ID, c.id)
			}
			if got := n.getMessage(t, n.admin, c.path); got.ID != c.id {
				t.Fatalf("GET /v1/messages/%s answered id %q", c.path, got.ID)
			}
		}
	})

	t.Run("UpsertRefusesBadInputWith400AndCreatesNothing", func(t *testing.T) {
		full := `"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":false`
		for _, c := range []struct{ name, body, code string }{
			{"missing name", `{"campaign":"c","campaign_type":"standard","channel":"email","doi":false}`, "invalid_request"},
			{"missing campaign", `{"name":"n","campaign_type":"standard","channel":"email","doi":false}`, "invalid_request"},
			{"missing campaign_type", `{"name":"n","campaign":"c","channel":"email","doi":false}`, "invalid_request"},
			{"missing channel", `{"name":"n","campaign":"c","campaign_type":"standard","doi":false}`, "invalid_request"},
			{"missing doi", `{"name":"n","campaign":"c","campaign_type":"standard","channel":"email"}`, "invalid_request"},
			{"empty object", `{}`, "invalid_request"},
			{"empty name", `{"name":"","campaign":"c","campaign_type":"standard","channel":"email","doi":false}`, "invalid_request"},
			{"bad campaign_type", `{"name":"n","campaign":"c","campaign_type":"promo","channel":"email","doi":false}`, "invalid_request"},
			{"campaign_type in upper case", `{"name":"n","campaign":"c","campaign_type":"STANDARD","channel":"email","doi":false}`, "invalid_request"},
			{"bad channel", `{"name":"n","campaign":"c","campaign_type":"standard","channel":"fax","doi":false}`, "invalid_request"},
			{"bad status", `{` + full + `,"status":"archived"}`, "invalid_request"},
			{"empty status", `{` + full + `,"status":""}`, "invalid_request"},
			{"unknown field", `{` + full + `,"colour":"red"}`, "invalid_json"},
			{"coupon_list_id is not an upsert field", `{` + full + `,"coupon_list_id":null}`, "invalid_json"},
			{"doi not a bool", `{"name":"n","campaign":"c","campaign_type":"standard","channel":"email","doi":"no"}`, "invalid_json"},
			{"bad JSON", `{` + full, "invalid_json"},
			{"empty body", ``, "invalid_json"},
			{"trailing data", `{` + full + `} {}`, "invalid_json"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "PUT", "/v1/messages/m-bad", n.admin, rawJSON(c.body)), http.StatusBadRequest, c.code)
			})
		}
		wantError(t, n.do(t, "GET", "/v1/messages/m-bad", n.admin, nil), http.StatusNotFound, "not_found")

		// Bad ids: 257 bytes, control characters, empty.
		for _, id := range []string{strings.Repeat("i", 257), "a%01b", "a%7Fb", "a%C2%85b", "a%E2%80%A8b", "a%0Ab", ""} {
			r := n.do(t, "PUT", "/v1/messages/"+id, n.admin, emailMsg("bad id"))
			wantError(t, r, http.StatusBadRequest, "invalid_request")
		}
		wantError(t, n.do(t, "GET", "/v1/messages/"+strings.Repeat("i", 257), n.admin, nil), http.StatusNotFound, "not_found")
	})

	t.Run("GetAnswers404ForUnknownAndAnotherTenantsMessage", func(t *testing.T) {
		wantError(t, n.do(t, "GET", "/v1/messages/never-made", n.admin, nil), http.StatusNotFound, "not_found")
		n.putMessage(t, n.admin, "m-tenant-a", emailMsg("A's"))
		wantError(t, n.do(t, "GET", "/v1/messages/m-tenant-a", adminB, nil), http.StatusNotFound, "not_found")
		// The same id in tenant B is another message.
		mb := decodeMessage(t, n.do(t, "PUT", "/v1/messages/m-tenant-a", adminB, emailMsg("B's")), http.StatusCreated)
		if mb.Name != "B's" {
			t.Fatalf("B's message %+v", mb)
		}
		if ma := n.getMessage(t, n.admin, "m-tenant-a"); ma.Name != "A's" {
			t.Fatalf("B's upsert changed A's message: %+v", ma)
		}
	})

	t.Run("AssignAndUnassignACouponList", func(t *testing.T) {
		l1 := n.newList(t, n.admin, "assign-1")
		l2 := n.newList(t, n.admin, "assign-2")
		n.topUp(t, n.admin, l1, "AS1\nAS2\n")
		n.putMessage(t, n.admin, "m-as-b", map[string]any{"name": "B", "campaign": "Camp B", "campaign_type": "auto", "channel": "email", "doi": false})
		n.putMessage(t, n.admin, "m-as-a", map[string]any{"name": "A", "campaign": "Camp A", "campaign_type": "standard", "channel": "email", "doi": false})

		m := decodeMessage(t, n.do(t, "PUT", "/v1/messages/m-as-a/coupon-list", n.admin, map[string]string{"list_id": l1}), http.StatusOK)
		if m.CouponListID == nil || *m.CouponListID != l1 || m.ID != "m-as-a" || m.Name != "A" {
			t.Fatalf("assign answered %+v", m)
		}
		if got := n.getMessage(t, n.admin, "m-as-a"); got.CouponListID == nil || *got.CouponListID != l1 {
			t.Fatalf("GET after assign: %+v", got)
		}
		// Assigning again is fine; a list serves many messages.
		n.assignList(t, n.admin, "m-as-a", l1)
		n.assignList(t, n.admin, "m-as-b", l1)
		want := []assignedMessage{
			{ID: "m-as-a", Name: "A", Campaign: "Camp A", CampaignType: "standard", CampaignStatus: "draft"},
			{ID: "m-as-b", Name: "B", Campaign: "Camp B", CampaignType: "auto", CampaignStatus: "draft"},
		}
		if got := n.assignedMessages(t, l1); !reflect.DeepEqual(got, want) {
			t.Fatalf("assigned_messages of l1 %+v, want %+v", got, want)
		}
		if got := n.assignedMessages(t, l2); len(got) != 0 {
			t.Fatalf("assigned_messages of l2 %+v, want []", got)
		}
		// Re-assigning moves the message: a message has at most one list.
		n.assignList(t, n.admin, "m-as-b", l2)
		if got := n.assignedMessages(t, l1); !reflect.DeepEqual(got, want[:1]) {
			t.Fatalf("l1 after moving B: %+v", got)
		}
		if got := n.assignedMessages(t, l2); !reflect.DeepEqual(got, want[1:]) {
			t.Fatalf("l2 after moving B: %+v", got)
		}
		// The list's listing reflects an upsert of the message.
		n.putMessage(t, n.admin, "m-as-b", map[string]any{"name": "B2", "campaign": "Camp B2", "campaign_type": "standard", "channel": "email", "doi": false})
		if got := n.assignedMessages(t, l2); len(got) != 1 || got[0].Name != "B2" || got[0].Campaign != "Camp B2" || got[0].CampaignType != "standard" {
			t.Fatalf("l2 after renaming B: %+v", got)
		}
		if got := n.getMessage(t, n.admin, "m-as-b"); got.CouponListID == nil || *got.CouponListID != l2 {
			t.Fatalf("an upsert must keep the assigned list: %+v", got)
		}

		// Unassign: 204, no body, coupon_list_id null; again is fine.
		r := n.do(t, "DELETE", "/v1/messages/m-as-a/coupon-list", n.admin, nil)
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("unassign: %s, want 204 without a body", r)
		}
		got := n.do(t, "GET", "/v1/messages/m-as-a", n.admin, nil)
		if m := decodeMessage(t, got, http.StatusOK); m.CouponListID != nil || !strings.Contains(string(got.body), `"coupon_list_id":null`) {
			t.Fatalf("after unassign: %s", got)
		}
		if got := n.assignedMessages(t, l1); len(got) != 0 {
			t.Fatalf("l1 after unassign: %+v", got)
		}
		if r := n.do(t, "DELETE", "/v1/messages/m-as-a/coupon-list", n.admin, nil); r.status != http.StatusNoContent {
			t.Fatalf("second unassign: %s", r)
		}
		n.wantCounts(t, n.admin, l1, 2, 0, 0)
	})

	t.Run("AssignErrors", func(t *testing.T) {
		l := n.newList(t, n.admin, "assign-errors")
		lb := n.newList(t, adminB, "B's list")
		n.putMessage(t, n.admin, "m-ae", emailMsg("ae"))
		path := "/v1/messages/m-ae/coupon-list"
		for _, c := range []struct {
			name   string
			body   any
			status int
			code   string
		}{
			{"unknown list", map[string]string{"list_id": "00000000000000ff"}, 404, "not_found"},
			{"malformed list id", map[string]string{"list_id": "nope"}, 404, "not_found"},
			{"list id in upper case", map[string]string{"list_id": strings.ToUpper(l)}, 404, "not_found"},
			{"another tenant's list", map[string]string{"list_id": lb}, 404, "not_found"},
			{"missing list_id", rawJSON(`{}`), 400, "invalid_request"},
			{"unknown field", rawJSON(`{"list_id":"` + l + `","x":1}`), 400, "invalid_json"},
			{"list_id not a string", rawJSON(`{"list_id":5}`), 400, "invalid_json"},
			{"bad JSON", rawJSON(`{"list_id":`), 400, "invalid_json"},
		} {
			t.Run(c.name, func(t *testing.T) {
				wantError(t, n.do(t, "PUT", path, n.admin, c.body), c.status, c.code)
				if m := n.getMessage(t, n.admin, "m-ae"); m.CouponListID != nil {
					t.Fatalf("a refused assign changed the message: %+v", m)
				}
			})
		}
		wantError(t, n.do(t, "PUT", "/v1/messages/never-made/coupon-list", n.admin, map[string]string{"list_id": l}), 404, "not_found")
		wantError(t, n.do(t, "DELETE", "/v1/messages/never-made/coupon-list", n.admin, nil), 404, "not_found")
		// B can neither see A's message nor assign it.
		wantError(t, n.do(t, "PUT", path, adminB, map[string]string{"list_id": lb}), 404, "not_found")
		wantError(t, n.do(t, "DELETE", path, adminB, nil), 404, "not_found")
		if got := n.assignedMessages(t, l); len(got) != 0 {
			t.Fatalf("refused assigns listed on the list: %+v", got)
		}
	})

	t.Run("AssignIsRefused422ForIneligibleMessages", func(t *testing.T) {
		l := n.newList(t, n.admin, "eligibility")
		cases := map[string]map[string]any{
			"tracking":         {"campaign_type": "tracking"},
			"network_tracking": {"campaign_type": "network_tracking"},
			"doi":              {"doi": true},
			"web_push":         {"channel": "web_push"},
			"app_push":         {"channel": "app_push"},
			"sms":              {"channel": "sms"},
			"voice":            {"channel": "voice"},
			"print":            {"channel": "print"},
		}
		for name, change := range cases {
			t.Run(name, func(t *testing.T) {
				body := emailMsg("elig-" + name)
				for k, v := range change {
					body[k] = v
				}
				id := "m-elig-" + name
				n.putMessage(t, n.admin, id, body)
				e := wantError(t, n.do(t, "PUT", "/v1/messages/"+id+"/coupon-list", n.admin, map[string]string{"list_id": l}),
					http.StatusUnprocessableEntity, "not_eligible")
				if reason, _ := e["reason"].(string); reason == "" {
					t.Fatalf(`not_eligible without a "reason": %v`, e)
				}
				if m := n.getMessage(t, n.admin, id); m.CouponListID != nil {
					t.Fatalf("refused assign changed the message: %+v", m)
				}
			})
		}
		// Control: the standard and auto e-mail messages without DOI are eligible.
		for _, ct := range []string{"standard", "auto"} {
			body := emailMsg("elig-ok-" + ct)
			body["campaign_type"] = ct
			n.putMessage(t, n.admin, "m-elig-ok-"+ct, body)
			n.assignList(t, n.admin, "m-elig-ok-"+ct, l)
		}
		if got := n.assignedMessages(t, l); len(got) != 2 {
			t.Fatalf("assigned_messages %+v, want the two eligible ones", got)
		}
	})

	t.Run("UpsertingAnAssignedMessageIntoAnIneligibleOneIs422", func(t *testing.T) {
		l := n.newList(t, n.admin, "stay-eligible")
		n.putMessage(t, n.admin, "m-stay", emailMsg("stay"))
		n.assignList(t, n.admin, "m-stay", l)
		before := n.getMessage(t, n.admin, "m-stay")
		for name, change := range map[string]map[string]any{
			"tracking": {"campaign_type": "tracking"}, "network_tracking": {"campaign_type": "network_tracking"},
			"doi": {"doi": true}, "sms": {"channel": "sms"}, "print": {"channel": "print"},
		} {
			body := emailMsg("stay")
			for k, v := range change {
				body[k] = v
			}
			e := wantError(t, n.do(t, "PUT", "/v1/messages/m-stay", n.admin, body), http.StatusUnprocessableEntity, "not_eligible")
			if reason, _ := e["reason"].(string); reason == "" {
				t.Fatalf(`%s: not_eligible without a "reason": %v`, name, e)
			}
			if got := n.getMessage(t, n.admin, "m-stay"); !reflect.DeepEqual(got, before) {
				t.Fatalf("%s: a refused upsert changed the message: %+v, want %+v", name, got, before)
			}
		}
		// After unassigning, the same upsert is fine.
		if r := n.do(t, "DELETE", "/v1/messages/m-stay/coupon-list", n.admin, nil); r.status != http.StatusNoContent {
			t.Fatalf("unassign: %s", r)
		}
		body := emailMsg("stay")
		body["channel"] = "sms"
		if m := n.putMessage(t, n.admin, "m-stay", body); m.Channel != "sms" || m.CouponListID != nil {
			t.Fatalf("upsert after unassign: %+v", m)
		}
	})

	t.Run("CampaignStatusTurnsSentAtTheFirstAllocation", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		if got := n.assignedMessages(t, f.list); len(got) != 1 || got[0].CampaignStatus != "draft" {
			t.Fatalf("before allocation: %+v", got)
		}
		// Opening a send is not an allocation.
		n.openSend(t, n.admin, "s-status", map[string]any{"message_id": f.msg}, http.StatusCreated)
		if m := n.getMessage(t, n.admin, f.msg); m.Status != "draft" {
			t.Fatalf("status after PUT send: %q", m.Status)
		}
		n.alloc(t, n.admin, "s-status", "", "r1@example.com")
		if got := n.assignedMessages(t, f.list); len(got) != 1 || got[0].CampaignStatus != "sent" {
			t.Fatalf("after allocation: %+v", got)
		}
		if m := n.getMessage(t, n.admin, f.msg); m.Status != "sent" {
			t.Fatalf("message status after allocation: %q", m.Status)
		}
		// An upsert without status keeps "sent".
		if m := n.putMessage(t, n.admin, f.msg, emailMsg(f.msg)); m.Status != "sent" {
			t.Fatalf("upsert without status answered status %q", m.Status)
		}
	})

	t.Run("UnassigningChangesNoCodesOrHistory", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 5)
		a := n.alloc(t, n.admin, "s-unassign", f.msg, "u1@example.com", "u2@example.com")
		n.openSend(t, n.admin, "s-unassign", map[string]any{"message_id": f.msg, "expected_recipients": 3}, http.StatusOK)
		snapshot := func() string {
			l := n.getList(t, n.admin, f.list)
			var b strings.Builder
			json.NewEncoder(&b).Encode(l)
			for _, c := range f.codes {
				b.WriteString(c + "=" + string(n.do(t, "GET", "/v1/lists/"+f.list+"/codes/"+c, n.admin, nil).body))
			}
			b.Write(n.do(t, "GET", "/v1/sends/s-unassign", n.admin, nil).body)
			b.Write(n.do(t, "GET", "/v1/sends/s-unassign/assignments", n.admin, nil).body)
			for _, r := range []string{"u1@example.com", "u2@example.com"} {
				b.Write(n.do(t, "GET", "/v1/recipients/"+recipientPath(r)+"/assignments", n.admin, nil).body)
			}
			return b.String()
		}
		before := snapshot()
		if r := n.do(t, "DELETE", "/v1/messages/"+f.msg+"/coupon-list", n.admin, nil); r.status != http.StatusNoContent {
			t.Fatalf("unassign: %s", r)
		}
		if after := snapshot(); after != before {
			t.Fatalf("unassigning changed codes or history:\nbefore %s\nafter  %s", before, after)
		}
		// The open send keeps its list: retries answer the same codes and a
		// new recipient still draws from it (its hold first).
		if got := n.alloc(t, n.admin, "s-unassign", "", "u1@example.com", "u2@example.com"); !reflect.DeepEqual(got.codes(), a.codes()) {
			t.Fatalf("retry after unassign %v, want %v", got.codes(), a.codes())
		}
		if got := n.alloc(t, n.admin, "s-unassign", "", "u3@example.com"); got.Assignments[0].Code != f.codes[2] {
			t.Fatalf("new recipient after unassign got %q, want %q", got.Assignments[0].Code, f.codes[2])
		}
		// A new send of the message now has no list.
		wantError(t, n.do(t, "POST", "/v1/sends/s-unassign-2/codes", n.admin, map[string]any{"message_id": f.msg, "recipients": []string{"x"}}),
			http.StatusUnprocessableEntity, "no_coupon_list")
	})
}

// TestListDeleteGuard covers the 409 list_in_use rule of SPEC §1: a list
// assigned to a message (draft or sent) or held by an open send's
// reservation cannot be deleted unless available + reserved == 0.
func TestListDeleteGuard(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	del := func(t *testing.T, list string) response {
		t.Helper()
		return n.do(t, "DELETE", "/v1/lists/"+list, n.admin, nil)
	}
	wantInUse := func(t *testing.T, list string) {
		t.Helper()
		before := n.getListRaw(t, n.admin, list)
		wantError(t, del(t, list), http.StatusConflict, "list_in_use")
		if after := n.getListRaw(t, n.admin, list); after != before {
			t.Fatalf("a refused delete changed the list:\nbefore %s\nafter  %s", before, after)
		}
	}
	wantDeleted := func(t *testing.T, list string) {
		t.Helper()
		r := del(t, list)
		if r.status != http.StatusNoContent {
			t.Fatalf("delete: %s, want 204", r)
		}
		wantError(t, n.do(t, "GET", "/v1/lists/"+list, n.admin, nil), http.StatusNotFound, "not_found")
	}

	t.Run("AssignedToADraftMessage", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 2)
		wantInUse(t, f.list)
		// Unassigned, it can go.
		n.do(t, "DELETE", "/v1/messages/"+f.msg+"/coupon-list", n.admin, nil)
		wantDeleted(t, f.list)
	})
	t.Run("AssignedToASentMessage", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		n.alloc(t, n.admin, "s-guard-sent", f.msg, "g1")
		n.do(t, "POST", "/v1/sends/s-guard-sent/close", n.admin, nil)
		if m := n.getMessage(t, n.admin, f.msg); m.Status != "sent" {
			t.Fatalf("message status %q", m.Status)
		}
		wantInUse(t, f.list)
	})
	t.Run("AssignedButEmptyAfterWithdrawal", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 2)
		n.do(t, "POST", "/v1/lists/"+f.list+"/codes/withdraw", n.admin, strings.Join(f.codes, "\n"))
		n.wantCounts(t, n.admin, f.list, 0, 0, 0)
		wantDeleted(t, f.list)
	})
	t.Run("AssignedButEmptyAfterUse", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 2)
		n.alloc(t, n.admin, "s-guard-used", f.msg, "g1", "g2")
		n.do(t, "POST", "/v1/sends/s-guard-used/close", n.admin, nil)
		n.wantCounts(t, n.admin, f.list, 0, 0, 2)
		wantDeleted(t, f.list)
	})
	t.Run("AssignedAndNeverFilled", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 0)
		wantDeleted(t, f.list)
	})
	t.Run("AssignedWithEverythingReserved", func(t *testing.T) {
		// available == 0 but reserved > 0: still in use.
		f := n.newFixture(t, n.admin, 2)
		n.openSend(t, n.admin, "s-guard-all-held", map[string]any{"message_id": f.msg, "expected_recipients": 2}, http.StatusCreated)
		n.wantCounts(t, n.admin, f.list, 0, 2, 0)
		wantInUse(t, f.list)
	})
	t.Run("HeldByAnOpenSendOnly", func(t *testing.T) {
		f := n.newFixture(t, n.admin, 3)
		n.openSend(t, n.admin, "s-guard-held", map[string]any{"message_id": f.msg, "expected_recipients": 1}, http.StatusCreated)
		n.do(t, "DELETE", "/v1/messages/"+f.msg+"/coupon-list", n.admin, nil)
		if got := n.assignedMessages(t, f.list); len(got) != 0 {
			t.Fatalf("still assigned: %+v", got)
		}
		wantInUse(t, f.list)
		// Closing the send releases the hold; then the list can go.
		r := n.do(t, "POST", "/v1/sends/s-guard-held/close", n.admin, nil)
		if r.status != http.StatusOK {
			t.Fatalf("close: %s", r)
		}
		n.wantCounts(t, n.admin, f.list, 3, 0, 0)
		wantDeleted(t, f.list)
	})
}

// assignedMessage is one entry of a list's assigned_messages.
type assignedMessage struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Campaign       string `json:"campaign"`
	CampaignType   string `json:"campaign_type"`
	CampaignStatus string `json:"campaign_status"`
}

// assignedMessages answers GET /v1/lists/{id}'s assigned_messages, with
// the exact shape of each entry checked.
func (n *testNode) assignedMessages(t testing.TB, list string) []assignedMessage {
	t.Helper()
	r := n.do(t, "GET", "/v1/lists/"+list, n.admin, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET list: %s", r)
	}
	checkListShape(t, r.body, "assigned_messages")
	var out struct {
		AssignedMessages []json.RawMessage `json:"assigned_messages"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.AssignedMessages == nil {
		t.Fatalf(`assigned_messages must be a list: %s`, r)
	}
	ms := make([]assignedMessage, len(out.AssignedMessages))
	for i, raw := range out.AssignedMessages {
		fieldsOf(t, raw, "id", "name", "campaign", "campaign_type", "campaign_status")
		json.Unmarshal(raw, &ms[i])
	}
	return ms
}

// TestDeletingAnEmptyAssignedListUnassignsIt: an assigned list may be
// deleted once it is empty (SPEC §1); its messages then have no list, so
// they read coupon_list_id null and a new send of them is 422
// no_coupon_list (SPEC is silent; a reference to a deleted list would be a
// dangling one).
func TestDeletingAnEmptyAssignedListUnassignsIt(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	f := n.newFixture(t, n.admin, 0)
	if r := n.do(t, "DELETE", "/v1/lists/"+f.list, n.admin, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %s", r)
	}
	r := n.do(t, "GET", "/v1/messages/"+f.msg, n.admin, nil)
	if m := decodeMessage(t, r, http.StatusOK); m.CouponListID != nil {
		t.Fatalf("the message still names the deleted list: %s", r)
	}
	wantError(t, n.do(t, "PUT", "/v1/sends/s-dangling", n.admin, map[string]any{"message_id": f.msg}), http.StatusUnprocessableEntity, "no_coupon_list")
	wantError(t, n.do(t, "POST", "/v1/sends/s-dangling/codes", n.admin, map[string]any{"message_id": f.msg, "recipients": []string{"x"}}),
		http.StatusUnprocessableEntity, "no_coupon_list")
}
