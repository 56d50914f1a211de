package client

import (
	"context"

	"github.com/coupond/coupond/httpapi/render"
)

// RenderCode returns the HTML template html with every `$code` replaced by
// code, escaped for where it stands (SPEC §4): HTML-escaped in text and
// attribute values, percent-encoded inside URL attributes (href, src, ...),
// JavaScript- or CSS-escaped inside scripts and styles; everything else,
// comments included, is kept byte for byte. It is the server's own
// renderer, so a send renders what the preview showed. It fails only for
// an empty or non-UTF-8 code, or a tag it cannot read the way the HTML
// tokenizer does.
func RenderCode(html, code string) (string, error) { return render.Code(html, code) }

// PreviewRequest is a template to preview. With SendID and Recipient the
// preview uses the code that recipient holds in that send; without them,
// the code the message's list hands out next.
type PreviewRequest struct {
	HTML      string `json:"html"`
	SendID    string `json:"send_id,omitempty"`
	Recipient string `json:"recipient,omitempty"`
}

// Preview is a rendered template and the code in it.
type Preview struct {
	HTML   string `json:"html"`
	Code   string `json:"code"`
	ListID string `json:"list_id"`
}

// Preview renders a template with a message's code; nothing is taken, so
// the call is repeated safely. A list with nothing to hand out answers 409
// insufficient_codes (list_expired once expired), a message without a list
// 422 no_coupon_list, a recipient without a code in the send 404.
func (c *Client) Preview(ctx context.Context, messageID string, p PreviewRequest) (*Preview, error) {
	return callJSON[Preview](ctx, c, "POST", route("v1", "messages", messageID, "preview"), p, retryAlways)
}
