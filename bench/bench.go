// Package bench is the load harness of coupond (SPEC §5): it drives a running
// node, or one it spawns, through a scenario, verifies what it measured, and
// reports throughput, latency percentiles and the server's memory.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Config is everything a run needs; cmd/couponbench fills it from flags.
type Config struct {
	Scenario string

	Addr      string // host:port (or URL) of the node to drive
	TokenFile string // bearer token file (ignored with Spawn)

	Spawn        bool   // start a fresh node from Bin in a temporary folder
	Bin          string // coupond binary for Spawn
	SpawnCluster int    // nodes to spawn (only 1 is built)
	ServerPID    int    // measure this process's memory (0: none)
	JSON         bool   // print one JSON line per scenario on Stdout

	Codes    int64 // import: codes to upload; send scenarios: codes imported first
	CodesSet bool  // Codes was given (else the send scenarios pick their own)
	CodeLen  int   // length of generated codes
	Restart  bool  // import: restart the spawned node afterwards and time it

	// Send scenarios.
	Recipients int64         // big-send: recipients in all; mixed: per big send
	Chunk      int           // big-send, mixed: recipients per request
	Parallel   int           // big-send: sends at once
	Reserve    bool          // big-send: PUT each send with expected_recipients first
	Conc       int           // small-sends, mixed: connections making small sends
	Duration   time.Duration // small-sends, mixed
	SendPer    string        // small sends: a new send per "request" or per "conn"
	TopUpEvery time.Duration // mixed: admin interval (0: 1s)
	NetHTTP    bool          // send scenarios: allocate through net/http, not the raw client
	ShortRcpt  bool          // big sends: recipients r0000000 (8 bytes, as anchor (a)), not e-mail addresses
	History    int           // big-send: recipient-history lookups timed after the send (0: none)

	Stdout io.Writer // results
	Stderr io.Writer // progress and diagnostics
}

// DefaultConfig returns the defaults of SPEC §5.
func DefaultConfig() Config {
	return Config{
		Addr:       "127.0.0.1:8080",
		TokenFile:  "./data/admin.token",
		Bin:        "bin/coupond",
		Codes:      1_000_000,
		CodeLen:    12,
		Recipients: 1_000_000,
		Chunk:      10_000,
		Parallel:   1,
		Conc:       32,
		Duration:   20 * time.Second,
		SendPer:    SendPerRequest,
		TopUpEvery: time.Second,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
	}
}

// UsageError is a bad command line (exit status 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// NotBuiltError is a scenario or option registered but not implemented yet
// (exit status 2).
type NotBuiltError struct{ What string }

func (e *NotBuiltError) Error() string { return e.What + ": not built yet" }

// CheckError is a failed verification of what was measured (exit status 1).
type CheckError struct {
	Scenario string
	Problems []string
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("%s: verification failed:\n  - %s", e.Scenario, strings.Join(e.Problems, "\n  - "))
}

// Env is what a scenario runs against.
type Env struct {
	Cfg    *Config
	Client *Client
	Node   *Node // the spawned node, nil when driving an external one
	PID    int   // process whose memory is measured, 0 when none
	Log    io.Writer
}

func (e *Env) logf(format string, a ...any) {
	fmt.Fprintf(e.Log, format+"\n", a...)
}

// Scenario is one registered scenario. A nil Run means "not built yet".
type Scenario struct {
	Name string
	Desc string
	Run  func(ctx context.Context, env *Env) (*Result, error)
}

// Scenarios lists the scenarios of SPEC §5 in order.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "import", Desc: "create a list and stream --codes generated codes in one upload", Run: RunImport},
		{Name: "big-send", Desc: "import enough codes (untimed), then one send of --recipients in requests of --chunk (--parallel sends at once, sharing them)", Run: RunBigSend},
		{Name: "small-sends", Desc: "one recipient per request from --conc connections for --duration", Run: RunSmallSends},
		{Name: "mixed", Desc: "small and big sends while admins top up and read counts, for --duration", Run: RunMixed},
	}
}

// Lookup finds a scenario by name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

func scenarioNames() string {
	var names []string
	for _, s := range Scenarios() {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// Validate checks the configuration without touching the network.
func (c *Config) Validate() error {
	sc, ok := Lookup(c.Scenario)
	if !ok {
		if c.Scenario == "" {
			return &UsageError{"no scenario given (one of: " + scenarioNames() + ")"}
		}
		return &UsageError{fmt.Sprintf("unknown scenario %q (one of: %s)", c.Scenario, scenarioNames())}
	}
	if sc.Run == nil {
		return &NotBuiltError{"scenario " + sc.Name}
	}
	if c.SpawnCluster > 1 {
		return &NotBuiltError{fmt.Sprintf("--spawn-cluster %d", c.SpawnCluster)}
	}
	if c.SpawnCluster < 0 {
		return &UsageError{"--spawn-cluster must be >= 1"}
	}
	if c.Spawn && c.ServerPID != 0 {
		return &UsageError{"--spawn and --server-pid exclude each other (a spawned node is measured anyway)"}
	}
	if c.ServerPID < 0 {
		return &UsageError{"--server-pid must be a process id"}
	}
	if c.Restart && !c.Spawn {
		return &UsageError{"--restart needs --spawn (the harness must own the server to restart it)"}
	}
	if c.Restart && c.Scenario != "import" {
		return &UsageError{"--restart is for the import scenario only"}
	}
	if c.Codes < 1 {
		return &UsageError{"--codes must be >= 1"}
	}
	g, err := NewCodeGen(c.CodeLen)
	if err != nil {
		return &UsageError{"--code-len: " + err.Error()}
	}
	if uint64(c.Codes) > g.Capacity() {
		return &UsageError{fmt.Sprintf("--codes %d: only %d distinct codes of length %d exist", c.Codes, g.Capacity(), c.CodeLen)}
	}
	if c.Recipients < 1 || c.Chunk < 1 || c.Parallel < 1 || c.Conc < 1 || c.Duration <= 0 {
		return &UsageError{"--recipients, --chunk, --parallel, --conc and --duration must be positive"}
	}
	if c.Chunk > MaxRecipientsPerRequest {
		return &UsageError{fmt.Sprintf("--chunk %d: the server takes at most %d recipients a request", c.Chunk, MaxRecipientsPerRequest)}
	}
	if c.SendPer != SendPerRequest && c.SendPer != SendPerConn {
		return &UsageError{fmt.Sprintf("--send-per %q: want %s or %s", c.SendPer, SendPerRequest, SendPerConn)}
	}
	if c.Reserve && c.Scenario != "big-send" {
		return &UsageError{"--reserve is for the big-send scenario only"}
	}
	if c.Scenario == "big-send" {
		if int64(c.Parallel) > c.Recipients {
			return &UsageError{"--parallel must be <= --recipients"}
		}
		if c.CodesSet && c.Codes < c.Recipients {
			return &UsageError{fmt.Sprintf("--codes %d < --recipients %d: big-send imports at least one code per recipient", c.Codes, c.Recipients)}
		}
		if c.Recipients > MaxRunCodes || uint64(c.Recipients) > g.Capacity() {
			return &UsageError{fmt.Sprintf("--recipients %d: more codes than the harness can generate or track", c.Recipients)}
		}
	}
	if def := map[string]int64{"small-sends": DefaultSmallCodes, "mixed": DefaultMixedCodes}[c.Scenario]; def > 0 && !c.CodesSet && uint64(def) > g.Capacity() {
		return &UsageError{fmt.Sprintf("%s imports %d codes by default, more than exist at --code-len %d: pass --codes", c.Scenario, def, c.CodeLen)}
	}
	if c.Scenario != "import" && c.Codes > MaxRunCodes {
		return &UsageError{fmt.Sprintf("--codes %d: the send scenarios track at most %d codes", c.Codes, int64(MaxRunCodes))}
	}
	return nil
}

// MaxRecipientsPerRequest is the server's limit (SPEC §2).
const MaxRecipientsPerRequest = 100_000

// MaxRunCodes bounds the codes of a send scenario: they are tracked as
// 32-bit indexes.
const MaxRunCodes = 1<<32 - 1

// Run validates cfg, prepares the server (spawning one if asked), runs the
// scenario and prints its result.
func Run(ctx context.Context, cfg Config) (err error) {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	sc, _ := Lookup(cfg.Scenario)
	env := &Env{Cfg: &cfg, Log: cfg.Stderr, PID: cfg.ServerPID}

	addr := cfg.Addr
	var token string
	if cfg.Spawn {
		node, err := NewNode(cfg.Bin)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := node.Close(); cerr != nil {
				fmt.Fprintf(cfg.Stderr, "couponbench: stopping coupond: %v\n", cerr)
				if err == nil {
					err = cerr
				}
			}
		}()
		t0 := time.Now()
		if err := node.Start(); err != nil {
			return err
		}
		if err := node.WaitReady(ctx, ReadyTimeout); err != nil {
			return err
		}
		if token, err = node.WaitToken(5 * time.Second); err != nil {
			return fmt.Errorf("spawned coupond is ready but: %w", err)
		}
		env.logf("couponbench: spawned %s pid %d on %s (raft %s, data %s), ready in %.2fs",
			node.Bin, node.PID(), node.HTTPAddr, node.RaftAddr, node.DataDir, time.Since(t0).Seconds())
		env.Node = node
		env.PID = node.PID()
		addr = node.HTTPAddr
	} else {
		if token, err = ReadToken(cfg.TokenFile); err != nil {
			return fmt.Errorf("%w (pass --token-file, or --spawn to start a node)", err)
		}
	}
	if env.PID != 0 {
		if _, err := ReadMem(env.PID); err != nil {
			return fmt.Errorf("cannot read the memory of server pid %d: %w", env.PID, err)
		}
	}
	env.Client = NewClient(addr, token, max(cfg.Conc, cfg.Parallel)+4)
	env.Client.NetHTTP = cfg.NetHTTP
	defer env.Client.CloseIdle()

	res, err := sc.Run(ctx, env)
	if res != nil {
		if cfg.JSON {
			fmt.Fprintln(cfg.Stderr, res.Summary)
			if err == nil {
				line, jerr := res.JSONLine()
				if jerr != nil {
					return jerr
				}
				fmt.Fprintf(cfg.Stdout, "%s\n", line)
			}
		} else {
			fmt.Fprintln(cfg.Stdout, res.Summary)
		}
	}
	return err
}

// IsUsage reports whether err should end the program with status 2.
func IsUsage(err error) bool {
	var u *UsageError
	var nb *NotBuiltError
	return errors.As(err, &u) || errors.As(err, &nb)
}
