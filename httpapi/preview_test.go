package httpapi_test

// SPEC §4, preview of $code: the shared template table through POST
// /v1/messages/{id}/preview on a real node (every answer validated against
// docs/openapi.yaml), and the endpoint's refusals.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coupond/coupond/httpapi/render/rendertest"
)

type previewAnswer struct {
	HTML   string `json:"html"`
	Code   string `json:"code"`
	ListID string `json:"list_id"`
}

func csvValue(code string) string { return `"` + strings.ReplaceAll(code, `"`, `""`) + `"` + "\n" }

func TestPreviewAPI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	_, sender := n.createToken(t, "default", "sender")
	n.createTenant(t, "other")
	_, otherAdmin := n.createToken(t, "other", "admin")

	t.Run("TableThroughTheEndpoint", func(t *testing.T) {
		for i, tc := range rendertest.Cases {
			id := n.newList(t, n.admin, fmt.Sprintf("table-%d", i))
			n.topUp(t, n.admin, id, csvValue(tc.Code)+"SECOND\n")
			msg := fmt.Sprintf("table-%d", i)
			n.putMessage(t, n.admin, msg, emailMsg(msg))
			n.assignList(t, n.admin, msg, id)
			before := n.getList(t, n.admin, id).counts()
			var p previewAnswer
			decode(t, n.do(t, "POST", "/v1/messages/"+msg+"/preview", sender, map[string]string{"html": tc.Template}), http.StatusOK, &p)
			fieldsOf(t, n.do(t, "POST", "/v1/messages/"+msg+"/preview", n.admin, map[string]string{"html": tc.Template}).body, "html", "code", "list_id")
			if p.Code != tc.Code || p.ListID != id {
				t.Fatalf("%s: code %q of %s, want %q of %s", tc.Name, p.Code, p.ListID, tc.Code, id)
			}
			if err := rendertest.Check(tc, p.HTML); err != nil {
				t.Errorf("%s: %v", tc.Name, err)
			}
			if after := n.getList(t, n.admin, id).counts(); after != before {
				t.Fatalf("%s: the preview changed the counts %+v to %+v", tc.Name, before, after)
			}
		}
	})

	t.Run("Refusals", func(t *testing.T) {
		id := n.newList(t, n.admin, "refusals")
		n.putMessage(t, n.admin, "ref", emailMsg("ref"))
		n.putMessage(t, n.admin, "ref-bare", emailMsg("ref-bare"))
		n.assignList(t, n.admin, "ref", id)
		post := func(token, msg string, body any) response {
			return n.do(t, "POST", "/v1/messages/"+msg+"/preview", token, body)
		}
		// An empty list: what the allocation of one new recipient answers.
		e := wantError(t, post(n.admin, "ref", map[string]string{"html": "$code"}), http.StatusConflict, "insufficient_codes")
		if e["needed"] != float64(1) || e["available"] != float64(0) {
			t.Fatalf("details %v", e)
		}
		wantError(t, post(n.admin, "ref-bare", map[string]string{"html": "$code"}), http.StatusUnprocessableEntity, "no_coupon_list")
		wantError(t, post(n.admin, "ref", rawJSON(`{"html": "$code", "colour": "red"}`)), http.StatusBadRequest, "invalid_json")
		wantError(t, post(n.admin, "ref", rawJSON(`{}`)), http.StatusBadRequest, "invalid_request")
		wantError(t, post(n.admin, "ref", map[string]string{"html": "x", "send_id": "s"}), http.StatusBadRequest, "invalid_request")
		wantError(t, post(n.admin, "ref", map[string]string{"html": "x", "send_id": "s", "recipient": "bad\x01"}), http.StatusBadRequest, "invalid_request")
		wantError(t, post(n.admin, "ref", map[string]string{"html": "x", "send_id": "nosuch", "recipient": "r"}), http.StatusNotFound, "not_found")
		wantError(t, post(n.admin, "nosuch", map[string]string{"html": "x"}), http.StatusNotFound, "not_found")
		wantError(t, post(otherAdmin, "ref", map[string]string{"html": "x"}), http.StatusNotFound, "not_found")
		wantError(t, post(n.operator, "ref", map[string]string{"html": "x"}), http.StatusForbidden, "forbidden")

		// A recipient's code in a send; the template without a placeholder
		// comes back as it was.
		n.topUp(t, n.admin, id, "R1\nR2\n")
		r := n.do(t, "POST", "/v1/sends/s-ref/codes", sender, map[string]any{"message_id": "ref", "recipients": []string{"a@x", "b@x"}})
		wantStatus(t, r, http.StatusOK)
		var p previewAnswer
		decode(t, post(sender, "ref", map[string]string{"html": "<p>$code</p><!-- $code -->", "send_id": "s-ref", "recipient": "b@x"}), http.StatusOK, &p)
		if p != (previewAnswer{HTML: "<p>R2</p><!-- $code -->", Code: "R2", ListID: id}) {
			t.Fatalf("recipient preview %+v", p)
		}
		// The HTML is written as it is, not as \u003c escapes.
		raw := post(n.admin, "ref", map[string]string{"html": `<a href="https://x.example/?c=$code">$code</a>`, "send_id": "s-ref", "recipient": "b@x"})
		if want := `{"code":"R2","html":"<a href=\"https://x.example/?c=R2\">R2</a>","list_id":"` + id + `"}` + "\n"; string(raw.body) != want {
			t.Fatalf("answer %s, want %s", raw.body, want)
		}
		wantError(t, post(sender, "ref", map[string]string{"html": "x", "send_id": "s-ref", "recipient": "c@x"}), http.StatusNotFound, "not_found")
		n.putMessage(t, n.admin, "ref-2", emailMsg("ref-2"))
		n.assignList(t, n.admin, "ref-2", id)
		wantError(t, post(sender, "ref-2", map[string]string{"html": "x", "send_id": "s-ref", "recipient": "a@x"}), http.StatusConflict, "send_message_mismatch")
	})
}
