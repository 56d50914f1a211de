package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/coupond/coupond/httpapi/client"
)

// maxTemplate is the server's bound of a JSON body (1 MiB), less room for
// the JSON around the template.
const maxTemplate = 1<<20 - 4096

// messagesPreview renders a template file with a message's code. The HTML
// goes to stdout alone, so it can be redirected to a file and opened; the
// code and list go to stderr (with --json, all of it to stdout).
func messagesPreview(fs *flag.FlagSet) runFunc {
	send := fs.String("send", "", "with --recipient: use the code this `send` gave the recipient")
	recipient := fs.String("recipient", "", "with --send: the `recipient` whose code to use")
	return func(ctx context.Context, x *cmdCtx, a []string) error {
		if (*send == "") != (*recipient == "") {
			return usagef("--send and --recipient go together")
		}
		r, closeIn, err := x.open(a[1])
		if err != nil {
			return err
		}
		defer closeIn()
		tmpl, err := io.ReadAll(io.LimitReader(r, maxTemplate+1))
		if err != nil {
			return fmt.Errorf("cannot read the template: %w", err)
		}
		if len(tmpl) > maxTemplate {
			return fmt.Errorf("the template is larger than the server accepts (about 1 MiB)")
		}
		p, err := x.c.Preview(ctx, a[0], client.PreviewRequest{HTML: string(tmpl), SendID: *send, Recipient: *recipient})
		if err != nil {
			return err
		}
		if x.json {
			return x.emit(p, nil)
		}
		fmt.Fprintf(x.env.stderr, "code %s of list %s\n", p.Code, p.ListID)
		// Not through emit's tabwriter, which would turn the template's
		// tabs into spaces.
		if _, err := io.WriteString(x.env.stdout, p.HTML); err != nil {
			return fmt.Errorf("cannot write the output: %w", err)
		}
		return nil
	}
}
