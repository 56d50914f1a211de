package client_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/coupond/coupond/httpapi/client"
)

func TestOverlaps(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	c := n.admin
	a := must[*client.CreatedList](t, "import a")(c.CreateAndImport(ctx, "a", nil, client.Upload{Body: strings.NewReader("K1\nK2\nK3\nK4\n")}))
	b := must[*client.CreatedList](t, "import b")(c.CreateAndImport(ctx, "b", nil, client.Upload{Body: strings.NewReader("K4\nK2\nNEW\n")}))
	if b.Import.InOtherLists != 2 || a.Import.InOtherLists != 0 {
		t.Fatalf("in_other_lists: a %+v, b %+v", a.Import, b.Import)
	}
	top := must[*client.ImportResult](t, "top up")(c.TopUp(ctx, a.List.ID, client.Upload{Body: strings.NewReader("NEW\nK1\nMINE\n")}))
	if *top != (client.ImportResult{Imported: 2, Duplicates: 1, Size: 6, InOtherLists: 1}) {
		t.Fatalf("top-up %+v", top)
	}
	ov := must[[]client.Overlap](t, "overlaps")(c.Overlaps(ctx, a.List.ID))
	want := []client.Overlap{{ListID: b.List.ID, Name: "b", Codes: 3, Examples: []string{"K2", "K4", "NEW"}}}
	if !reflect.DeepEqual(ov, want) {
		t.Fatalf("overlaps %+v, want %+v", ov, want)
	}
	if _, err := c.Overlaps(ctx, "00000000000000ff"); !client.IsNotFound(err) {
		t.Fatalf("overlaps of an unknown list: %v", err)
	}
}
