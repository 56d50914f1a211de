package client_test

import (
	"testing"

	"github.com/coupond/coupond/httpapi/client"
)

// TestErrorDetailsFormat: the details of an error answer are decoded as
// JSON numbers (float64); whole numbers must print as integers, never in
// exponent form, because operators read counts of codes from them.
func TestErrorDetailsFormat(t *testing.T) {
	f := func(details map[string]any, want string) {
		t.Helper()
		e := &client.Error{Status: 409, Code: "insufficient_codes", Message: "not enough codes for this request", Details: details}
		if got := e.Error(); got != want {
			t.Fatalf("Error() = %q, want %q", got, want)
		}
	}
	f(map[string]any{"needed": float64(20000000), "available": float64(10000000)},
		"409 insufficient_codes: not enough codes for this request (available=10000000, needed=20000000)")
	f(map[string]any{"available": float64(0)}, "409 insufficient_codes: not enough codes for this request (available=0)")
	f(map[string]any{"line": float64(1 << 40)}, "409 insufficient_codes: not enough codes for this request (line=1099511627776)")
	f(map[string]any{"ratio": 0.5}, "409 insufficient_codes: not enough codes for this request (ratio=0.5)")
	f(map[string]any{"reason": "second column"}, "409 insufficient_codes: not enough codes for this request (reason=second column)")
	f(nil, "409 insufficient_codes: not enough codes for this request")
}
