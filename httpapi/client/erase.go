package client

import "context"

// EraseRecipient erases a recipient from every assignment of the tenant
// (admin): they keep their codes and show an erased form instead of the
// recipient, whose history is then empty. It answers how many assignments
// it erased. A repeat is harmless and answers 0, so after a retry the count
// may miss what the lost try erased.
func (c *Client) EraseRecipient(ctx context.Context, recipient string) (int, error) {
	var out struct {
		Erased int `json:"erased"`
	}
	cl, _ := jsonCall("DELETE", route("v1", "recipients", recipient), nil, retryAlways)
	_, err := c.doJSON(ctx, cl, &out)
	return out.Erased, err
}
