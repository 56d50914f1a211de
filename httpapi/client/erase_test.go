package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/coupond/coupond/httpapi/client"
)

func TestEraseRecipient(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin
	l := must[*client.CreatedList](t, "import")(c.CreateAndImport(ctx, "l", nil, client.Upload{Body: strings.NewReader(codes("C", 10))}))
	in := client.MessageInput{Name: "Welcome", Campaign: "spring", CampaignType: "standard", Channel: "email"}
	if _, _, err := c.PutMessage(ctx, "welcome", in); err != nil {
		t.Fatal(err)
	}
	must[*client.Message](t, "assign")(c.AssignList(ctx, "welcome", l.List.ID))
	const r = "../a b/c@example.com" // a path segment that needs care
	a := must[*client.Allocation](t, "allocate")(c.Allocate(ctx, "s1", "welcome", []string{r}))

	if k := must[int](t, "erase")(c.EraseRecipient(ctx, r)); k != 1 {
		t.Fatalf("erased %d, want 1", k)
	}
	if h := must[[]client.HistoryEntry](t, "history")(c.RecipientHistory(ctx, r)); len(h) != 0 {
		t.Fatalf("history after the erasure: %+v", h)
	}
	ci := must[*client.CodeInfo](t, "lookup")(c.LookupCode(ctx, l.List.ID, a.Assignments[0].Code))
	if ci.Assignment == nil || !strings.HasPrefix(ci.Assignment.Recipient, "erased:") || len(ci.Assignment.Recipient) != len("erased:")+32 {
		t.Fatalf("code lookup after the erasure: %+v", ci.Assignment)
	}
	if k := must[int](t, "erase again")(c.EraseRecipient(ctx, r)); k != 0 {
		t.Fatalf("second erasure: %d, want 0", k)
	}
	_, err := n.operator.EraseRecipient(ctx, r)
	wantStatus(t, err, 403, "forbidden")
}
