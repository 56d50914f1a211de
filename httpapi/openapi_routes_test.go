package httpapi

import (
	"context"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// openAPIPath is the API's contract as a document (docs/openapi.yaml); the
// HTTP tests of httpapi_test validate every response against it too.
const openAPIPath = "../docs/openapi.yaml"

func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("cannot load %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openAPIPath, err)
	}
	return doc
}

// docAliases are documented operations that one route serves under another
// name. OpenAPI matches a concrete path before a template, so the lookup of
// the code named "withdraw" is an operation of the withdraw path in the
// document, while the server serves it with the route of every code.
var docAliases = map[string]string{"lists.code.withdraw": "lists.code"}

var pathParam = regexp.MustCompile(`\{[^{}/]+\}`)

// samplePath fills a pattern's parameters with a value no literal segment
// of the table has, so match must take the parameter's branch.
func samplePath(pattern string) []string {
	p := pathParam.ReplaceAllString(pattern, "p4r4m")
	return strings.Split(strings.TrimPrefix(p, "/"), "/")
}

// TestRouteTableMatchesOpenAPI checks the routing table against the
// document in both directions: every route is documented with the same
// path template, method and operationId (= route name), and needs a token
// exactly when the document says so; every documented operation is routed
// by match to the route of that name.
func TestRouteTableMatchesOpenAPI(t *testing.T) {
	doc := loadOpenAPI(t)

	for _, d := range routeTable {
		item := doc.Paths.Value(d.pattern)
		if item == nil {
			t.Errorf("route %s %s (%s) is not in %s", d.method, d.pattern, d.name, openAPIPath)
			continue
		}
		op := item.GetOperation(d.method)
		if op == nil {
			t.Errorf("route %s %s (%s): the document has no %s operation on this path", d.method, d.pattern, d.name, d.method)
			continue
		}
		if op.OperationID != d.name {
			t.Errorf("route %s %s: operationId %q, want the route name %q", d.method, d.pattern, op.OperationID, d.name)
		}
		public := op.Security != nil && len(*op.Security) == 0
		if public != (d.roles == nil) {
			t.Errorf("route %s %s: the document says public=%v, the route needs a token=%v", d.method, d.pattern, public, d.roles != nil)
		}
	}

	paths := doc.Paths.InMatchingOrder()
	sort.Strings(paths)
	documented := 0
	for _, p := range paths {
		for method, op := range doc.Paths.Value(p).Operations() {
			documented++
			rt, err := match(method, samplePath(p))
			if err != nil {
				t.Errorf("documented %s %s (%s) is not routed: %d %s", method, p, op.OperationID, err.status, err.code)
				continue
			}
			want := op.OperationID
			if a, ok := docAliases[want]; ok {
				want = a
			}
			if rt.name != want {
				t.Errorf("documented %s %s (%s) is routed to %s", method, p, op.OperationID, rt.name)
			}
		}
	}
	if documented != len(routeTable)+len(docAliases) {
		t.Errorf("%d documented operations, %d routes and %d aliases", documented, len(routeTable), len(docAliases))
	}
}
