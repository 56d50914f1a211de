package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/coupond/coupond/httpapi/client"
)

// listsOverlaps shows the other lists that hold codes of a list.
func listsOverlaps(ctx context.Context, x *cmdCtx, a []string) error {
	ov, err := x.c.Overlaps(ctx, a[0])
	if err != nil {
		return err
	}
	if ov == nil {
		ov = []client.Overlap{}
	}
	return x.emit(ov, func(w io.Writer) {
		if len(ov) == 0 {
			fmt.Fprintln(w, "no other list holds a code of this list")
			return
		}
		table(w, []string{"LIST", "NAME", "CODES", "EXAMPLES"}, len(ov), func(i int) []string {
			o := ov[i]
			return []string{o.ListID, o.Name, num(o.Codes), strings.Join(o.Examples, " ")}
		})
	})
}
