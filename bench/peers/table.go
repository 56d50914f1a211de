package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
)

// A row of the comparison: one figure of one scenario.
type metric struct {
	title    string
	scenario string
	key      string
	lower    bool // lower is better (a latency)
}

var metrics = []metric{
	{"(c) import 1M codes, codes/s", "import", "codes_per_s", false},
	{"(a) big send 1M in calls of 10k, codes/s", "big-send", "codes_per_s", false},
	{"(b) small sends, 32 clients, req/s", "small-sends", "requests_per_s", false},
	{"(b) small sends, p99 ms", "small-sends", "p99_ms", true},
	{"(a) big send, server CPU µs per code", "big-send", "server_cpu_us_per_code", true},
	{"(b) small sends, server CPU µs per request", "small-sends", "server_cpu_us_per_code", true},
}

const coupondLabel = "coupond"

// samples holds every round's figure by column label, then scenario/key.
type samples struct {
	labels []string // columns in order of appearance, coupond first
	values map[string]map[string][]float64
}

func newSamples() *samples {
	return &samples{labels: []string{coupondLabel}, values: map[string]map[string][]float64{}}
}

// add reads JSON lines; a line without "peer" is credited to coupond
// (couponbench's lines), others to peer[config].
func (s *samples) add(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		scenario, _ := m["scenario"].(string)
		label := coupondLabel
		if p, ok := m["peer"].(string); ok {
			label = p
			if c, ok := m["config"].(string); ok && c != "" {
				label += "[" + c + "]"
			}
		}
		if !slices.Contains(s.labels, label) {
			s.labels = append(s.labels, label)
		}
		if s.values[label] == nil {
			s.values[label] = map[string][]float64{}
		}
		for k, v := range m {
			if f, ok := v.(float64); ok {
				s.values[label][scenario+"/"+k] = append(s.values[label][scenario+"/"+k], f)
			}
		}
		// The server's CPU per code handed out: on a shared machine a
		// server that gets fewer cores is slower without being costlier,
		// so this ratio moves less with the neighbours than the rates.
		cpu, ok1 := m["server_cpu_cores"].(float64)
		secs, ok2 := m["seconds"].(float64)
		codes, ok3 := m["codes"].(float64)
		if ok1 && ok2 && ok3 && codes > 0 {
			key := scenario + "/server_cpu_us_per_code"
			s.values[label][key] = append(s.values[label][key], cpu*secs/codes*1e6)
		}
	}
	return sc.Err()
}

// median of the rounds; ok is false when there is none.
func median(xs []float64) (float64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// ratio is how many times better coupond is than the peer: coupond/peer
// for a rate, peer/coupond for a latency.
func ratio(coupond, peer float64, lower bool) (float64, bool) {
	if coupond <= 0 || peer <= 0 {
		return 0, false
	}
	if lower {
		return peer / coupond, true
	}
	return coupond / peer, true
}

func formatValue(x float64, m metric) string {
	if m.lower {
		return fmt.Sprintf("%.2f", x) // milliseconds or microseconds
	}
	return human(x)
}

// write prints the table in Markdown: coupond's median, then each peer's
// median and coupond's ratio against it.
func (s *samples) write(w io.Writer) {
	rounds := 0
	for _, v := range s.values[coupondLabel] {
		rounds = max(rounds, len(v))
	}
	head := []string{"scenario", coupondLabel}
	for _, l := range s.labels[1:] {
		head = append(head, l, "coupond vs "+strings.SplitN(l, "[", 2)[0])
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	for _, m := range metrics {
		key := m.scenario + "/" + m.key
		c, cok := median(s.values[coupondLabel][key])
		row := []string{m.title, "–"}
		if cok {
			row[1] = formatValue(c, m)
		}
		for _, l := range s.labels[1:] {
			p, pok := median(s.values[l][key])
			if !pok {
				row = append(row, "–", "–")
				continue
			}
			rs := "–"
			if r, ok := ratio(c, p, m.lower); cok && ok {
				rs = fmt.Sprintf("%.2fx", r)
			}
			row = append(row, formatValue(p, m), rs)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
	}
	fmt.Fprintf(w, "\nMedians of %d round(s). Ratios above 1 favour coupond: rates are coupond/peer, p99 is peer/coupond.\n", rounds)
	s.writeCPU(w)
}

// writeCPU says how busy the machine was in each timed phase (medians):
// "other" is CPU that was neither the load generator's nor the server's,
// that is foreign load on a shared machine.
func (s *samples) writeCPU(w io.Writer) {
	fmt.Fprintf(w, "Busy cores of %d during the timed phases (other = neither the harness nor the server):\n", runtime.NumCPU())
	for _, l := range s.labels {
		var parts []string
		for _, sc := range []string{"import", "big-send", "small-sends"} {
			busy, ok := median(s.values[l][sc+"/machine_busy_cores"])
			if !ok {
				continue
			}
			h, _ := median(s.values[l][sc+"/harness_cpu_cores"])
			srv, _ := median(s.values[l][sc+"/server_cpu_cores"])
			parts = append(parts, fmt.Sprintf("%s %.2f (server %.2f, other %.2f)", sc, busy, srv, busy-h-srv))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "- %s: %s\n", l, strings.Join(parts, ", "))
		}
	}
}

func runTable(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	coupond := fs.String("coupond", "", "couponbench's JSON lines (import, big-send, small-sends)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	s := newSamples()
	for _, name := range append([]string{*coupond}, fs.Args()...) {
		if name == "" {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(stderr, "peers table:", err)
			return 1
		}
		err = s.add(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "peers table: %s: %v\n", name, err)
			return 1
		}
	}
	s.write(stdout)
	return 0
}
