package client_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/coupond/coupond/httpapi/client"
	"github.com/coupond/coupond/httpapi/render/rendertest"
)

// csvLine quotes code as one CSV value, whatever it holds.
func csvLine(code string) string { return `"` + strings.ReplaceAll(code, `"`, `""`) + `"` + "\n" }

// counts are the numbers of a list a preview must leave alone.
func counts(t *testing.T, c *client.Client, id string) [6]uint64 {
	t.Helper()
	l := must[*client.ListDetail](t, "get list")(c.GetList(context.Background(), id))
	return [6]uint64{l.Added, l.Available, l.Reserved, l.Used, l.Withdrawn, l.Released}
}

// TestRenderCodeTable: the shared table through the client's renderer.
func TestRenderCodeTable(t *testing.T) {
	for _, c := range rendertest.Cases {
		out, err := client.RenderCode(c.Template, c.Code)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if err := rendertest.Check(c, out); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// TestPreviewTable: the same table through POST /v1/messages/{id}/preview
// on a real node, each case with a list whose next code is the case's
// code. The endpoint answers that code and exactly what RenderCode
// renders, and no count of the list moves.
func TestPreviewTable(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin
	tok := must[*client.NewToken](t, "sender token")(n.operator.CreateToken(ctx, "default", "sender", "engine"))
	sender := mustClient(t, n.addr, tok.Token)
	for i, tc := range rendertest.Cases {
		l := must[*client.CreatedList](t, "import")(c.CreateAndImport(ctx, fmt.Sprintf("l%d", i), nil,
			client.Upload{Body: strings.NewReader(csvLine(tc.Code) + "SECOND\n")}))
		msg := fmt.Sprintf("m%d", i)
		must[*client.Message](t, "message")(func() (*client.Message, error) {
			m, _, err := c.PutMessage(ctx, msg, client.MessageInput{Name: "n", CampaignType: "standard", Channel: "email"})
			return m, err
		}())
		must[*client.Message](t, "assign")(c.AssignList(ctx, msg, l.List.ID))
		before := counts(t, c, l.List.ID)
		who := c
		if i%2 == 1 {
			who = sender // senders preview too
		}
		p, err := who.Preview(ctx, msg, client.PreviewRequest{HTML: tc.Template})
		if err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		if p.Code != tc.Code || p.ListID != l.List.ID {
			t.Fatalf("%s: code %q of list %s, want %q of %s", tc.Name, p.Code, p.ListID, tc.Code, l.List.ID)
		}
		if err := rendertest.Check(tc, p.HTML); err != nil {
			t.Errorf("%s: %v", tc.Name, err)
		}
		if local, _ := client.RenderCode(tc.Template, tc.Code); local != p.HTML {
			t.Errorf("%s: the server rendered %q, RenderCode %q", tc.Name, p.HTML, local)
		}
		if after := counts(t, c, l.List.ID); after != before {
			t.Fatalf("%s: the preview changed the counts %v to %v", tc.Name, before, after)
		}
	}
}

// TestPreviewOfARecipient: with send_id and recipient the preview shows
// the code that recipient holds in the send; the error answers tell the
// cases apart.
func TestPreviewOfARecipient(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin
	l := must[*client.CreatedList](t, "import")(c.CreateAndImport(ctx, "l", nil, client.Upload{Body: strings.NewReader("A&1\nB+2\n")}))
	for _, id := range []string{"m", "other", "bare"} {
		if _, _, err := c.PutMessage(ctx, id, client.MessageInput{Name: "n", CampaignType: "standard", Channel: "email"}); err != nil {
			t.Fatal(err)
		}
	}
	must[*client.Message](t, "assign")(c.AssignList(ctx, "m", l.List.ID))
	must[*client.Message](t, "assign")(c.AssignList(ctx, "other", l.List.ID))
	tmpl := `<a href="https://x.example/?c=$code">$code</a>`
	preview := func(msg, send, r string) (*client.Preview, error) {
		return c.Preview(ctx, msg, client.PreviewRequest{HTML: tmpl, SendID: send, Recipient: r})
	}

	p := must[*client.Preview](t, "next code")(preview("m", "", ""))
	if p.Code != "A&1" || p.HTML != `<a href="https://x.example/?c=A%261">A&amp;1</a>` {
		t.Fatalf("next code preview %+v", p)
	}
	must[*client.Allocation](t, "allocate")(c.Allocate(ctx, "s1", "m", []string{"r@x", "q@x"}))
	p = must[*client.Preview](t, "recipient")(preview("m", "s1", "q@x"))
	if p.Code != "B+2" || p.ListID != l.List.ID || p.HTML != `<a href="https://x.example/?c=B%2B2">B+2</a>` {
		t.Fatalf("recipient preview %+v", p)
	}

	// Nothing left to hand out: what an allocation of a new recipient answers.
	_, err := preview("m", "", "")
	if ce := wantStatus(t, err, 409, "insufficient_codes"); ce.Details["needed"] != float64(1) || ce.Details["available"] != float64(0) {
		t.Fatalf("details %v", ce.Details)
	}
	_, err = preview("m", "s1", "nobody@x")
	wantStatus(t, err, 404, "not_found")
	_, err = preview("m", "nosuchsend", "r@x")
	wantStatus(t, err, 404, "not_found")
	_, err = preview("other", "s1", "r@x")
	wantStatus(t, err, 409, "send_message_mismatch")
	_, err = preview("bare", "", "")
	wantStatus(t, err, 422, "no_coupon_list")
	_, err = preview("nosuchmessage", "", "")
	wantStatus(t, err, 404, "not_found")
	_, err = preview("m", "s1", "")
	wantStatus(t, err, 400, "invalid_request")

	// A released recipient holds no code in the send until it gets one again.
	must[*client.ReleaseResult](t, "release")(c.Release(ctx, "s1", []string{"r@x"}))
	_, err = preview("m", "s1", "r@x")
	wantStatus(t, err, 404, "not_found")
	p = must[*client.Preview](t, "next code after the release")(preview("m", "", ""))
	if p.Code != "A&1" {
		t.Fatalf("after the release the next code is %q, want the released A&1", p.Code)
	}
}
