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
	Bin          string // coupond binary for Spawn and SpawnCluster
	SpawnCluster int    // start a fresh cluster of this many nodes (0: none)
	Target       string // with SpawnCluster: TargetLeader, TargetFollower or TargetAll
	Keep         bool   // leave the spawned nodes' folders (data, logs) in place
	ServerPID    int    // measure this process's memory (0: none)
	JSON         bool   // print one JSON line per scenario on Stdout

	Codes    int64 // import: codes to upload; send scenarios: codes imported first
	CodesSet bool  // Codes was given (else the send scenarios pick their own)
	CodeLen  int   // length of generated codes
	Restart  bool  // import: restart the spawned node afterwards and time it
	Gzip     bool  // CSV uploads go gzip-compressed (Content-Encoding: gzip)

	// Send scenarios.
	Recipients int64         // big-send: recipients in all; mixed: per big send
	Chunk      int           // big-send, mixed: recipients per request
	Parallel   int           // big-send: sends at once
	Reserve    bool          // big-send: PUT each send with expected_recipients first
	Conc       int           // small-sends, mixed, failover: connections making small sends
	ConcSet    bool          // Conc was given (else failover uses DefaultFailoverConc)
	ChunkSet   bool          // Chunk was given (else failover sends 1 recipient a request)
	Kills      int           // failover: how many times the leader is killed
	Duration   time.Duration // small-sends, mixed
	SendPer    string        // small sends: a new send per "request" or per "conn"
	TopUpEvery time.Duration // mixed: admin interval (0: 1s)
	NetHTTP    bool          // send scenarios: allocate through net/http, not the raw client
	ShortRcpt  bool          // big sends: recipients r0000000 (8 bytes, as peer scenario (a)), not e-mail addresses
	History    int           // big-send: recipient-history lookups timed after the send (0: none)
	OnShortage string        // big-send, small-sends: the sends' on_shortage ("": not sent, the server's default)

	Timing Timings // waits of the cluster and failover scenarios; zero fields take their defaults

	Stdout io.Writer // results
	Stderr io.Writer // progress and diagnostics
}

// DefaultConfig returns the defaults of SPEC §5.
func DefaultConfig() Config {
	return Config{
		Addr:       "127.0.0.1:8080",
		TokenFile:  "./data/admin.token",
		Bin:        "bin/coupond",
		Target:     TargetLeader,
		Codes:      1_000_000,
		CodeLen:    12,
		Recipients: 1_000_000,
		Chunk:      10_000,
		Parallel:   1,
		Conc:       32,
		Kills:      DefaultKills,
		Duration:   20 * time.Second,
		SendPer:    SendPerRequest,
		TopUpEvery: time.Second,
		Timing:     DefaultTimings(),
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

// Proc is a server process whose memory and CPU are measured.
type Proc struct {
	Name string // node id
	PID  int
}

// Env is what a scenario runs against.
type Env struct {
	Cfg     *Config
	Client  *Client   // the target node: setup, admin, checks
	Clients []*Client // the targeted nodes (Client first): allocation connections go round-robin over them
	Node    *Node     // the spawned single node, nil otherwise
	Cluster *Cluster  // the spawned cluster, nil otherwise
	Procs   []Proc    // processes whose memory and CPU are measured (none: not measured)
	Log     io.Writer
}

// connClient is the client of allocation connection i: round-robin over
// the targeted nodes.
func (e *Env) connClient(i int) *Client {
	if len(e.Clients) == 0 {
		return e.Client
	}
	return e.Clients[i%len(e.Clients)]
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
		{Name: "failover", Desc: "with --spawn-cluster 3+: steady small sends over the live nodes while the leader is killed (kill -9) --kills times; times each kill to the next acknowledged allocation", Run: RunFailover},
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
	if c.SpawnCluster < 0 {
		return &UsageError{"--spawn-cluster must be >= 1"}
	}
	spawn := c.Spawn || c.SpawnCluster > 0
	if spawn && c.ServerPID != 0 {
		return &UsageError{"--spawn/--spawn-cluster and --server-pid exclude each other (a spawned node is measured anyway)"}
	}
	if c.ServerPID < 0 {
		return &UsageError{"--server-pid must be a process id"}
	}
	if c.Restart && (!c.Spawn || c.SpawnCluster > 0) {
		return &UsageError{"--restart needs --spawn, without --spawn-cluster (the harness must own the one server to restart it)"}
	}
	if c.Restart && c.Scenario != "import" {
		return &UsageError{"--restart is for the import scenario only"}
	}
	switch c.Target {
	case TargetLeader, TargetFollower, TargetAll:
	default:
		return &UsageError{fmt.Sprintf("--target %q: want %s, %s or %s", c.Target, TargetLeader, TargetFollower, TargetAll)}
	}
	if c.Target != TargetLeader && c.SpawnCluster == 0 {
		return &UsageError{"--target " + c.Target + " needs --spawn-cluster"}
	}
	if c.Target == TargetFollower && c.SpawnCluster < 2 {
		return &UsageError{"--target follower needs --spawn-cluster 2 or more"}
	}
	if c.Keep && !spawn {
		return &UsageError{"--keep needs --spawn or --spawn-cluster"}
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
	switch c.OnShortage {
	case "":
	case ShortageReject, ShortageFallback:
		if c.Scenario != "big-send" && c.Scenario != "small-sends" {
			return &UsageError{"--on-shortage is for the big-send and small-sends scenarios only"}
		}
	default:
		return &UsageError{fmt.Sprintf("--on-shortage %q: want %s or %s", c.OnShortage, ShortageReject, ShortageFallback)}
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
	if c.Scenario == "failover" {
		if c.SpawnCluster < 3 {
			return &UsageError{"failover needs --spawn-cluster 3 or more: it kills the leader, and the other nodes must still be a majority"}
		}
		if c.Kills < 1 {
			return &UsageError{"--kills must be >= 1"}
		}
		if c.Target == TargetFollower {
			return &UsageError{"failover spreads its load over every live node: --target follower does not apply"}
		}
	}
	if def := map[string]int64{"small-sends": DefaultSmallCodes, "mixed": DefaultMixedCodes, "failover": DefaultFailoverCodes}[c.Scenario]; def > 0 && !c.CodesSet && uint64(def) > g.Capacity() {
		return &UsageError{fmt.Sprintf("%s imports %d codes by default, more than exist at --code-len %d: pass --codes", c.Scenario, def, c.CodeLen)}
	}
	if c.Scenario != "import" && c.Codes > MaxRunCodes {
		return &UsageError{fmt.Sprintf("--codes %d: the send scenarios track at most %d codes", c.Codes, int64(MaxRunCodes))}
	}
	return nil
}

// The shortage policies of a send (SPEC §4, --on-shortage).
const (
	ShortageReject   = "reject"   // a request that needs more codes than the send can draw fails whole
	ShortageFallback = "fallback" // its last recipients get the list's fallback code instead
)

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
	if cfg.Target == "" {
		cfg.Target = TargetLeader
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	sc, _ := Lookup(cfg.Scenario)
	env := &Env{Cfg: &cfg, Log: cfg.Stderr}
	if cfg.ServerPID != 0 {
		env.Procs = []Proc{{Name: "coupond", PID: cfg.ServerPID}}
	}

	addrs := []string{cfg.Addr}
	var token string
	switch {
	case cfg.SpawnCluster > 0:
		cl, err := NewCluster(cfg.Bin, cfg.SpawnCluster)
		if err != nil {
			return err
		}
		cl.Timing = cfg.Timing
		cl.SetKeep(cfg.Keep)
		defer func() {
			if cerr := cl.Close(); cerr != nil {
				fmt.Fprintf(cfg.Stderr, "couponbench: stopping the cluster: %v\n", cerr)
				if err == nil {
					err = cerr
				}
			}
			if cfg.Keep {
				for _, n := range cl.Nodes {
					env.logf("couponbench: kept %s: %s (log %s)", n.ID, n.DataDir, n.LogPath)
				}
			}
		}()
		t0 := time.Now()
		env.logf("couponbench: spawning a cluster of %d nodes from %s", cfg.SpawnCluster, cl.Nodes[0].Bin)
		if err := cl.Start(ctx); err != nil {
			return err
		}
		addrs = addrs[:0]
		var ids []string
		target := cfg.Target
		if cfg.Scenario == "failover" {
			target = TargetAll // its load goes to every live node; setup and checks to n1
		}
		for _, i := range targetNodes(target, len(cl.Nodes), cl.Leader) {
			addrs = append(addrs, cl.Nodes[i].HTTPAddr)
			ids = append(ids, cl.Nodes[i].ID)
		}
		env.logf("couponbench: cluster of %d formed in %.2fs: %s; driving %s (--target %s)",
			len(cl.Nodes), time.Since(t0).Seconds(), cl.describe(), strings.Join(ids, ", "), target)
		token, env.Cluster, env.Procs = cl.AdminToken, cl, cl.Procs()
	case cfg.Spawn:
		node, err := NewNode(cfg.Bin)
		if err != nil {
			return err
		}
		node.Keep = cfg.Keep
		defer func() {
			if cerr := node.Close(); cerr != nil {
				fmt.Fprintf(cfg.Stderr, "couponbench: stopping coupond: %v\n", cerr)
				if err == nil {
					err = cerr
				}
			}
			if cfg.Keep {
				env.logf("couponbench: kept %s (log %s)", node.DataDir, node.LogPath)
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
		env.Procs = []Proc{{Name: node.ID, PID: node.PID()}}
		addrs[0] = node.HTTPAddr
	default:
		if token, err = ReadToken(cfg.TokenFile); err != nil {
			return fmt.Errorf("%w (pass --token-file, or --spawn to start a node)", err)
		}
	}
	for _, p := range env.Procs {
		if _, err := ReadMem(p.PID); err != nil {
			return fmt.Errorf("cannot read the memory of server pid %d: %w", p.PID, err)
		}
	}
	for _, a := range addrs {
		c := NewClient(a, token, max(cfg.Conc, cfg.Parallel)+4)
		c.NetHTTP = cfg.NetHTTP
		c.Gzip = cfg.Gzip
		c.Strong = true // the checks must see the run's own writes, on a follower too
		defer c.CloseIdle()
		env.Clients = append(env.Clients, c)
	}
	env.Client = env.Clients[0]

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
