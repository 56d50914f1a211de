package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// result is what one scenario measured on one peer.
type result struct {
	scenario string // "import", "big-send" or "small-sends", as couponbench names them
	peer     string // "redis" or "postgres"
	config   string // the durability setting, e.g. "aof=always"
	codes    int64  // codes imported or handed out
	requests int64  // import: writes (a pipeline of RPUSHes, a COPY); sends: allocation calls
	elapsed  time.Duration
	lat      latencies
	extra    []field
	summary  string // the one-line human summary
}

// field is one JSON field after the fixed ones: a float64 is rounded to prec
// decimals; ints, strings and bools are written as they are.
type field struct {
	key   string
	value any
	prec  int
}

func (r *result) label() string { return r.peer + "[" + r.config + "]" }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fixedFields are couponbench's leading JSON fields, with the peer and its
// setting after the scenario, so one reader handles both programs' lines.
func (r *result) fixedFields() []field {
	return []field{
		{"scenario", r.scenario, 0},
		{"peer", r.peer, 0},
		{"config", r.config, 0},
		{"codes", r.codes, 0},
		{"requests", r.requests, 0},
		{"seconds", r.elapsed.Seconds(), 3},
		{"codes_per_s", perSecond(r.codes, r.elapsed), 1},
		{"requests_per_s", perSecond(r.requests, r.elapsed), 2},
		{"p50_ms", msOf(r.lat.percentile(50)), 3},
		{"p99_ms", msOf(r.lat.percentile(99)), 3},
		{"p999_ms", msOf(r.lat.percentile(99.9)), 3},
	}
}

// jsonLine renders the result as one JSON object, fields in a fixed order.
func (r *result) jsonLine() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range append(r.fixedFields(), r.extra...) {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		b.Write(k)
		b.WriteByte(':')
		switch v := f.value.(type) {
		case float64:
			b.WriteString(fmtFloat(v, f.prec))
		default:
			raw, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.key, err)
			}
			b.Write(raw)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// fmtFloat rounds x to prec decimals; JSON has no NaN or infinities.
func fmtFloat(x float64, prec int) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "null"
	}
	p := math.Pow10(prec)
	r := math.Round(x*p) / p
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// cpuFields are the CPU figures under couponbench's names.
func cpuFields(u cpuUse) []field {
	return []field{
		{"machine_busy_cores", u.machine, 2},
		{"harness_cpu_cores", u.self, 2},
		{"server_cpu_cores", u.server, 2},
	}
}

func (u cpuUse) String() string {
	return fmt.Sprintf("cpu: %.2f cores busy = peers %.2f + server %.2f + other %.2f", u.machine, u.self, u.server, u.machine-u.self-u.server)
}

// human formats large rates the way couponbench does (1.23M, 456.7k).
func human(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}
