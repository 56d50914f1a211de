// Command coupond runs one node of the coupon code ledger (SPEC §3).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/coupond/coupond/daemon"
)

func main() {
	cfg, err := daemon.ParseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "coupond:", err)
		os.Exit(2)
	}
	log := daemon.NewLogger(cfg, os.Stderr)
	if err := daemon.Run(cfg, log); err != nil {
		log.Error().Err(err).Msg("coupond failed")
		os.Exit(1)
	}
}
