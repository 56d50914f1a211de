package bench

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// jsonKeys returns the top-level keys of a JSON object, in order.
func jsonKeys(t *testing.T, line []byte) ([]string, map[string]any) {
	t.Helper()
	if bytes.ContainsAny(line, "\n\r") {
		t.Fatalf("JSON line has a line break: %s", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, line)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %v", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys, m
}

func TestJSONLineFields(t *testing.T) {
	lat := &Latencies{}
	lat.Add(1500 * time.Millisecond)
	r := &Result{
		Scenario: "import", Codes: 3_000_000, Requests: 1, Elapsed: 1500 * time.Millisecond, Lat: lat,
		PeakRSS: 300 << 20, HasPeakRSS: true,
	}
	line, err := r.JSONLine()
	if err != nil {
		t.Fatal(err)
	}
	keys, m := jsonKeys(t, line)
	if !slices.Equal(keys, JSONFields) {
		t.Fatalf("keys %v, want exactly %v", keys, JSONFields)
	}
	want := map[string]float64{
		"codes": 3e6, "requests": 1, "seconds": 1.5, "codes_per_s": 2e6, "requests_per_s": 0.67,
		"p50_ms": 1500, "p99_ms": 1500, "p999_ms": 1500, "server_peak_rss_mib": 300,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if m["scenario"] != "import" {
		t.Errorf("scenario = %v", m["scenario"])
	}

	// Without a measured server the peak is left out; extras come last, in order.
	r.HasPeakRSS = false
	r.Extra = []Field{
		{Key: "server_rss_growth_bytes_per_code", Value: 28.123, Prec: 1},
		{Key: "restart_ready_s", Value: 1.23456, Prec: 3},
		{Key: "note", Value: "x"},
	}
	line, err = r.JSONLine()
	if err != nil {
		t.Fatal(err)
	}
	keys, m = jsonKeys(t, line)
	wantKeys := append(slices.Clone(JSONFields[:len(JSONFields)-1]), "server_rss_growth_bytes_per_code", "restart_ready_s", "note")
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys %v, want %v", keys, wantKeys)
	}
	if m["server_rss_growth_bytes_per_code"] != 28.1 || m["restart_ready_s"] != 1.235 {
		t.Errorf("extras: %s", line)
	}

	r.Extra = []Field{{Key: "codes", Value: 1}}
	if _, err := r.JSONLine(); err == nil {
		t.Error("an extra field repeating a fixed one was accepted")
	}
}

func TestJSONLineZeroTime(t *testing.T) {
	r := &Result{Scenario: "import"}
	line, err := r.JSONLine()
	if err != nil {
		t.Fatal(err)
	}
	_, m := jsonKeys(t, line)
	if m["codes_per_s"] != 0.0 || m["p99_ms"] != 0.0 {
		t.Errorf("zero result: %s", line)
	}
}
