package httpapi_test

// Every response the HTTP tests see is validated against docs/openapi.yaml
// (status, Content-Type, headers, body), so the document cannot drift from
// what the server answers. The request helpers (doRaw, send, sendAccept,
// rawExchange) call checkOpenAPI.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// maxValidatedBody bounds the bodies validated in full: a larger one (a big
// allocation, a streamed export) is checked for status and Content-Type
// only, which keeps the suite's time where it was.
const maxValidatedBody = 1 << 20

type openAPI struct {
	doc    *openapi3.T
	router routers.Router
	errSch *openapi3.Schema // the error shape every answer of an unrouted request has
}

var loadOpenAPI = sync.OnceValues(func() (*openAPI, error) {
	doc, err := openapi3.NewLoader().LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	// The document names the default address; test nodes listen elsewhere.
	doc.Servers = nil
	// kin-openapi decodes text/plain but not the other formats of
	// /metrics; the document treats them all as opaque.
	openapi3filter.RegisterBodyDecoder("application/openmetrics-text", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("application/vnd.google.protobuf", openapi3filter.PlainBodyDecoder)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &openAPI{doc: doc, router: router, errSch: doc.Components.Schemas["Error"].Value}, nil
})

// checkOpenAPI validates one answer and fails t (the test that saw it) when
// the document does not describe it. It uses Errorf, not Fatalf: the
// helpers run on the goroutines of concurrency tests too.
func checkOpenAPI(t testing.TB, method, path string, r response) {
	t.Helper()
	if r.err != nil {
		return // no answer to validate
	}
	api, err := loadOpenAPI()
	if err != nil {
		t.Errorf("cannot load docs/openapi.yaml: %v", err)
		return
	}
	if err := api.validate(method, path, r); err != nil {
		b := r.body
		if len(b) > 300 {
			b = append(b[:300:300], "..."...)
		}
		t.Errorf("OpenAPI: %s %s answered %d (Content-Type %q) %s, which docs/openapi.yaml does not allow: %v",
			method, path, r.status, r.header.Get("Content-Type"), b, err)
	}
}

func (api *openAPI) validate(method, path string, r response) error {
	// The router matches the escaped path, as the server does: a %2F
	// stays inside its segment.
	u, err := url.Parse(path)
	var hr *http.Request
	var route *routers.Route
	var params map[string]string
	if err == nil {
		hr = &http.Request{Method: method, URL: u, Header: http.Header{}}
		route, params, err = api.router.FindRoute(hr)
	}
	if err != nil {
		// No operation: the answers any request can get (SPEC §2 errors).
		return api.validateUnrouted(method, err, r)
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	if len(r.body) > maxValidatedBody {
		opts.ExcludeResponseBody = true
		resp := route.Operation.Responses.Status(r.status)
		if resp == nil || resp.Value == nil {
			return fmt.Errorf("status %d is not documented", r.status)
		}
		if ct := r.header.Get("Content-Type"); resp.Value.Content.Get(ct) == nil {
			return fmt.Errorf("Content-Type %q is not documented for %d", ct, r.status)
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: hr, PathParams: params, Route: route},
		Status:                 r.status,
		Header:                 r.header,
		Options:                opts,
	}
	in.SetBodyBytes(r.body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

// validateUnrouted checks the answer to a request that names no documented
// operation: 400 invalid_request (a path the server cannot decode), 404
// not_found (an unknown path), 405 method_not_allowed with Allow (a known
// path, another method), or 413 payload_too_large (fasthttp refused the
// body before routing), each in the error shape.
func (api *openAPI) validateUnrouted(method string, routeErr error, r response) error {
	want := map[int]string{400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}[r.status]
	if want == "" {
		return fmt.Errorf("no documented operation (%v), yet the status is %d", routeErr, r.status)
	}
	if method == http.MethodHead {
		return nil // no body to check
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("error answer with Content-Type %q", ct)
	}
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		return fmt.Errorf("error body is not JSON: %v", err)
	}
	if err := api.errSch.VisitJSON(v); err != nil {
		return fmt.Errorf("error body does not match #/components/schemas/Error: %v", err)
	}
	e := v.(map[string]any)["error"].(map[string]any)
	if e["code"] != want {
		return fmt.Errorf("error code %v, want %s for %d", e["code"], want, r.status)
	}
	if r.status == http.StatusMethodNotAllowed {
		if errors.Is(routeErr, routers.ErrPathNotFound) {
			return errors.New("405 for a path the document does not have")
		}
		if allow := r.header.Get("Allow"); allow == "" || e["allow"] != allow {
			return fmt.Errorf("405 with Allow %q and allow detail %v", allow, e["allow"])
		}
	}
	return nil
}
