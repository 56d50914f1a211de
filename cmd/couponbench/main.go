// Command couponbench is the load harness of coupond (SPEC §5).
//
//	couponbench SCENARIO [flags]
//
// Scenarios: import, big-send, small-sends, mixed, failover.
// Exit status: 0 ok, 1 failure (server error or failed verification),
// 2 usage error or a scenario that is not built yet.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/coupond/coupond/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "usage: couponbench SCENARIO [flags]")
	fmt.Fprintln(w, "\nscenarios:")
	for _, s := range bench.Scenarios() {
		note := ""
		if s.Run == nil {
			note = " (not built yet)"
		}
		fmt.Fprintf(w, "  %-12s %s%s\n", s.Name, s.Desc, note)
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg := bench.DefaultConfig()
	cfg.Stdout, cfg.Stderr = stdout, stderr

	fs := flag.NewFlagSet("couponbench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "HTTP address of the node to drive")
	fs.StringVar(&cfg.TokenFile, "token-file", cfg.TokenFile, "file holding the admin bearer token")
	fs.BoolVar(&cfg.Spawn, "spawn", false, "start a fresh single node from --bin in a temporary folder, and stop it at the end")
	fs.StringVar(&cfg.Bin, "bin", cfg.Bin, "coupond binary used by --spawn")
	fs.IntVar(&cfg.SpawnCluster, "spawn-cluster", 0, "start a fresh cluster of `N` nodes from --bin (node 1 bootstraps, the others join it), and stop it at the end")
	fs.StringVar(&cfg.Target, "target", cfg.Target, "with --spawn-cluster: drive the `leader`, a follower (node 2: every write is forwarded), or all nodes (connections round-robin)")
	fs.BoolVar(&cfg.Keep, "keep", false, "with --spawn or --spawn-cluster: leave the nodes' temporary folders (data, logs) in place")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "measure the memory of this server process (Linux /proc)")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object per scenario on stdout (the human summary goes to stderr)")
	fs.Var(bench.CountFlag{V: &cfg.Codes}, "codes", "import: `N` codes to upload. Send scenarios: codes imported before the run (unless given: big-send --recipients, small-sends 3M, mixed 2M). Accepts 10M, 1e7, 10_000_000")
	fs.IntVar(&cfg.CodeLen, "code-len", cfg.CodeLen, "length of the generated codes, [0-9A-Z]")
	fs.BoolVar(&cfg.Restart, "restart", false, "import with --spawn: restart the node afterwards and time it until the list reads back")
	fs.BoolVar(&cfg.Gzip, "gzip", false, "send CSV uploads (import, and the codes of the send scenarios) gzip-compressed")
	fs.Var(bench.CountFlag{V: &cfg.Recipients}, "recipients", "big-send: `N` recipients in all (shared by the --parallel sends); mixed: recipients of each big send")
	fs.IntVar(&cfg.Chunk, "chunk", cfg.Chunk, "big-send, mixed: recipients per allocation request (failover: 1 unless given)")
	fs.IntVar(&cfg.Parallel, "parallel", cfg.Parallel, "big-send: sends at once, each on its connection, --recipients split between them")
	fs.BoolVar(&cfg.ShortRcpt, "short-recipients", false, "big sends (big-send, mixed): recipients r0000000 (8 bytes, as peer scenario (a)) instead of u00.0000000@example.com (23 bytes)")
	fs.BoolVar(&cfg.Reserve, "reserve", false, "big-send: open each send with expected_recipients first (not timed)")
	fs.StringVar(&cfg.OnShortage, "on-shortage", "", "big-send, small-sends: the sends' shortage policy, `reject` or fallback (then the list gets the fallback code "+bench.FallbackCode+"); unset: the server's default")
	fs.IntVar(&cfg.History, "history-lookups", 0, "big-send: then time this many GET /v1/recipients/{r}/assignments of random recipients")
	fs.IntVar(&cfg.Conc, "conc", cfg.Conc, "small-sends, mixed: connections making one-recipient requests (failover: 8 unless given)")
	fs.IntVar(&cfg.Kills, "kills", cfg.Kills, "failover: `N` times the leader is killed (kill -9), timed, and restarted")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "small-sends, mixed: how long to run")
	fs.BoolVar(&cfg.NetHTTP, "net-http", false, "send scenarios: make the allocation requests with net/http instead of the lighter built-in HTTP/1.1 client")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of couponbench itself to `FILE`")
	fs.StringVar(&cfg.SendPer, "send-per", cfg.SendPer, "small sends: a new send id per `request` (as peer scenario (b)) or per conn")

	// The scenario comes first, but flags before it are accepted too.
	rest := args
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		cfg.Scenario, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, stdout)
			return 0
		}
		fmt.Fprintf(stderr, "couponbench: %v\n\n", err)
		usage(fs, stderr)
		return 2
	}
	if cfg.Scenario == "" && fs.NArg() > 0 {
		cfg.Scenario = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			fmt.Fprintf(stderr, "couponbench: %v\n", err)
			return 2
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "couponbench: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if cfg.Scenario == "" {
		usage(fs, stderr)
		return 2
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "codes":
			cfg.CodesSet = true
		case "conc":
			cfg.ConcSet = true
		case "chunk":
			cfg.ChunkSet = true
		}
	})

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "couponbench: %v\n", err)
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "couponbench: %v\n", err)
			return 2
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.Run(ctx, cfg); err != nil {
		var nb *bench.NotBuiltError
		switch {
		case errors.As(err, &nb):
			fmt.Fprintln(stderr, nb.Error())
			return 2
		case bench.IsUsage(err):
			fmt.Fprintf(stderr, "couponbench: %v\n", err)
			return 2
		default:
			fmt.Fprintf(stderr, "couponbench: %v\n", err)
			return 1
		}
	}
	return 0
}
