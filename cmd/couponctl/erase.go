package main

import (
	"context"
	"fmt"
	"io"
)

// historyErase erases a recipient from the tenant's assignments (SPEC §4):
// their codes stay, their recipient becomes an erased form.
func historyErase(ctx context.Context, x *cmdCtx, a []string) error {
	n, err := x.c.EraseRecipient(ctx, a[0])
	if err != nil {
		return err
	}
	return x.emit(map[string]int{"erased": n}, func(w io.Writer) {
		fmt.Fprintf(w, "erased %d assignments of %s\n", n, a[0])
	})
}
