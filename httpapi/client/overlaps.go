package client

import "context"

// Overlap is another list of the tenant that holds codes of a list.
type Overlap struct {
	ListID   string   `json:"list_id"`
	Name     string   `json:"name"`
	Codes    uint64   `json:"codes"`    // distinct codes of the list the other one holds too
	Examples []string `json:"examples"` // up to 5 of them, in the list's order
}

// Overlaps answers the tenant's other lists that hold codes of a list, the
// most shared codes first (admins only).
func (c *Client) Overlaps(ctx context.Context, listID string) ([]Overlap, error) {
	out, err := callJSON[struct {
		Overlaps []Overlap `json:"overlaps"`
	}](ctx, c, "GET", route("v1", "lists", listID, "overlaps"), nil, retryAlways)
	if err != nil {
		return nil, err
	}
	return out.Overlaps, nil
}
