// Command peers runs coupond's peer scenarios against Redis and PostgreSQL,
// so that coupond's figures can be stated as ratios against the tools a
// team would otherwise use, on the same workload and machine:
//
//	(c) import: 1,000,000 codes;
//	(a) big-send: one send of 1,000,000 recipients in calls of 10,000;
//	(b) small-sends: one recipient per call, a new send each time, 32
//	    concurrent clients, 20 s.
//
// Each peer does the work coupond does: no code is handed out twice, a
// retry gets the same codes, and the history is kept by send, by code and
// by recipient. Every run checks itself and exits 1 when a check fails.
//
//	peers redis    -addr 127.0.0.1:6390 [-json] [flags]
//	peers postgres -dsn postgres://... [-json] [flags]
//	peers table    -coupond coupond.jsonl peers.jsonl
//
// The server is not started here: bench/peers/run.sh starts each peer on
// its own port, runs this and couponbench, and prints the table.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: peers redis|postgres [flags]   (run the scenarios)\n       peers table -coupond FILE FILE...   (medians and ratios)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "redis", "postgres":
		os.Exit(runPeer(os.Args[1], os.Args[2:], os.Stdout, os.Stderr))
	case "table":
		os.Exit(runTable(os.Args[2:], os.Stdout, os.Stderr))
	default:
		usage()
	}
}

func runPeer(peer string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(peer, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:6390", "redis: the server's address")
	dsn := fs.String("dsn", "postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable", "postgres: the connection string")
	asJSON := fs.Bool("json", false, "one JSON object per scenario on stdout; the summaries go to stderr")
	only := fs.String("scenarios", "import,big-send,small-sends", "the scenarios to run, in this order")
	cfg := config{}
	fs.IntVar(&cfg.importCodes, "import-codes", 1_000_000, "(c) import: codes imported")
	fs.IntVar(&cfg.recipients, "recipients", 1_000_000, "(a) big-send: recipients of the send")
	fs.IntVar(&cfg.chunk, "chunk", 10_000, "(a) big-send: recipients per call")
	fs.IntVar(&cfg.smallCodes, "small-codes", 0, "(b) small-sends: codes imported first, not timed (default: 2M for redis, 1M for postgres)")
	fs.IntVar(&cfg.conc, "conc", 32, "(b) small-sends: concurrent clients")
	fs.DurationVar(&cfg.duration, "dur", 20*time.Second, "(b) small-sends: how long")
	fs.IntVar(&cfg.retries, "retries", 1000, "(b) small-sends: requests sent again after the run to check they get the same code")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cfg.importCodes < 1 || cfg.recipients < 1 || cfg.chunk < 1 || cfg.conc < 1 || cfg.duration <= 0 {
		fmt.Fprintln(stderr, "peers: -import-codes, -recipients, -chunk, -conc and -dur must be positive")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	var (
		st          store
		setup, comm string
		closeStore  func() error
	)
	switch peer {
	case "redis":
		s, err := newRedisStore(ctx, *addr, cfg.conc+4)
		if err == nil {
			err = s.reset(ctx)
		}
		if err == nil {
			setup, err = s.appendfsync(ctx)
		}
		if err != nil {
			fmt.Fprintln(stderr, "peers:", err)
			return 1
		}
		st, comm, closeStore = s, "redis-server", s.close
		if cfg.smallCodes == 0 {
			cfg.smallCodes = 2_000_000
		}
	case "postgres":
		s, err := newPGStore(ctx, *dsn, cfg.conc)
		if err == nil {
			err = s.reset(ctx)
		}
		if err == nil {
			setup, err = s.syncCommit(ctx)
		}
		if err != nil {
			fmt.Fprintln(stderr, "peers:", err)
			return 1
		}
		st, comm, closeStore = s, "postgres", s.close
		if cfg.smallCodes == 0 {
			cfg.smallCodes = 1_000_000
		}
	}
	defer closeStore()

	r := newRunner(st, peer, setup, comm, cfg)
	summaries := stdout
	if *asJSON {
		summaries = stderr
	}
	for _, sc := range strings.Split(*only, ",") {
		var run func(context.Context) (*result, error)
		switch strings.TrimSpace(sc) {
		case "import":
			run = r.importScenario
		case "big-send":
			run = r.bigSend
		case "small-sends":
			run = r.smallSends
		default:
			fmt.Fprintf(stderr, "peers: unknown scenario %q\n", sc)
			return 2
		}
		res, err := run(ctx)
		if res != nil {
			fmt.Fprintln(summaries, res.summary)
		}
		if err != nil {
			fmt.Fprintf(stderr, "peers: %s %s: %v\n", r.peer+"["+r.setup+"]", sc, err)
			return 1
		}
		if *asJSON {
			line, err := res.jsonLine()
			if err != nil {
				fmt.Fprintln(stderr, "peers:", err)
				return 1
			}
			fmt.Fprintf(stdout, "%s\n", line)
		}
	}
	return 0
}
