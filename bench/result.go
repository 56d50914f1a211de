package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Result is what one scenario measured.
type Result struct {
	Scenario string
	Codes    int64 // codes imported or handed out
	Requests int64 // HTTP requests measured
	Elapsed  time.Duration
	Lat      *Latencies // per-request durations (may be nil when Requests == 0)

	// PeakRSS is the server's peak resident set in bytes; it is reported only
	// when HasPeakRSS (the server was spawned or --server-pid was given).
	PeakRSS    int64
	HasPeakRSS bool

	// Extra fields, written after the fixed ones, in this order.
	Extra []Field

	// Summary is the one-line human summary.
	Summary string
}

// Field is one extra JSON field. Value is a float64 (rounded to Prec
// decimals), an integer, a string or a bool.
type Field struct {
	Key   string
	Value any
	Prec  int
}

// JSONFields are the fixed leading fields of a JSON result line, in order
// (SPEC §5). server_peak_rss_mib is present only with a measured server.
var JSONFields = []string{
	"scenario", "codes", "requests", "seconds", "codes_per_s", "requests_per_s",
	"p50_ms", "p99_ms", "p999_ms", "server_peak_rss_mib",
}

// MiB converts bytes to mebibytes.
func MiB(b int64) float64 { return float64(b) / (1 << 20) }

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func durMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtNum formats x with at most prec decimals, as JSON allows (no NaN/Inf).
func fmtNum(x float64, prec int) string {
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

// JSONLine renders the result as one JSON object (no trailing newline) with
// the fields of JSONFields first, in that order, then the extra fields.
func (r *Result) JSONLine() ([]byte, error) {
	var b bytes.Buffer
	first := true
	put := func(key, raw string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		k, _ := json.Marshal(key)
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(raw)
	}
	lat := r.Lat
	if lat == nil {
		lat = &Latencies{}
	}
	b.WriteByte('{')
	s, _ := json.Marshal(r.Scenario)
	put("scenario", string(s))
	put("codes", strconv.FormatInt(r.Codes, 10))
	put("requests", strconv.FormatInt(r.Requests, 10))
	put("seconds", fmtNum(r.Elapsed.Seconds(), 6))
	put("codes_per_s", fmtNum(perSecond(r.Codes, r.Elapsed), 1))
	put("requests_per_s", fmtNum(perSecond(r.Requests, r.Elapsed), 2))
	put("p50_ms", fmtNum(durMS(lat.Percentile(50)), 3))
	put("p99_ms", fmtNum(durMS(lat.Percentile(99)), 3))
	put("p999_ms", fmtNum(durMS(lat.Percentile(99.9)), 3))
	if r.HasPeakRSS {
		put("server_peak_rss_mib", fmtNum(MiB(r.PeakRSS), 1))
	}
	seen := map[string]bool{}
	for _, k := range JSONFields {
		seen[k] = true
	}
	for _, f := range r.Extra {
		if seen[f.Key] {
			return nil, fmt.Errorf("extra field %q repeats a field", f.Key)
		}
		seen[f.Key] = true
		var raw string
		switch v := f.Value.(type) {
		case float64:
			raw = fmtNum(v, f.Prec)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("extra field %q: %w", f.Key, err)
			}
			raw = string(j)
		}
		put(f.Key, raw)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// humanRate formats a per-second rate as 3.11M, 45.2k or 812.
func humanRate(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e4:
		return fmt.Sprintf("%.1fk", x/1e3)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}
