// Command couponctl drives a coupond node from the command line: lists and
// their codes, messages, sends, history, tenants, tokens and the cluster.
//
//	couponctl [global flags] GROUP COMMAND [flags] [args]
//
// It prints human tables, or with --json the server's objects. Its exit
// codes (exitCode) let scripts tell a missing object from a refused one or
// from a server that is down. See the README's couponctl section.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/coupond/coupond/httpapi/client"
)

// Exit codes. Scripts rely on them: never renumber one.
const (
	exitOK       = 0
	exitOther    = 1 // local I/O, input the server refused as invalid (400, 413), anything else
	exitUsage    = 2 // the command line is wrong
	exitAuth     = 3 // no token, or the server said 401 or 403
	exitNotFound = 4 // 404
	exitConflict = 5 // 409 (state) or 422 (rule): the call was refused as it stands
	exitServer   = 6 // 5xx, or the server could not be reached or did not answer in time
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &ioEnv{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.Getenv, stderrTTY: isTerminal(os.Stderr),
	})
	stop()
	os.Exit(code)
}

// ioEnv is what a run sees of the process, so tests can run it in-process.
type ioEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	stderrTTY      bool
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// usageError is a wrong command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// run executes one command line and answers the exit code.
func run(ctx context.Context, args []string, env *ioEnv) int {
	err := dispatch(ctx, args, env)
	code := exitCode(err)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case code == exitUsage:
		fmt.Fprintf(env.stderr, "couponctl: %v\nRun 'couponctl help' for usage.\n", err)
	default:
		fmt.Fprintf(env.stderr, "couponctl: %v\n", err)
	}
	return code
}

// exitCode maps an error to the exit code documented above.
func exitCode(err error) int {
	var ue *usageError
	var ce *client.Error
	var ue2 *url.Error
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, errNoToken):
		return exitAuth
	case errors.As(err, &ce):
		switch s := ce.Status; {
		case s == 401 || s == 403:
			return exitAuth
		case s == 404:
			return exitNotFound
		case s == 409 || s == 422:
			return exitConflict
		case s >= 500:
			return exitServer
		}
		return exitOther
	case errors.As(err, &ue2), errors.Is(err, context.DeadlineExceeded):
		return exitServer // no answer: refused connection, reset, timeout
	}
	return exitOther
}

// dispatch parses the command line and runs the command it names.
func dispatch(ctx context.Context, args []string, env *ioEnv) error {
	var g globals
	top := flag.NewFlagSet("couponctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	if err := top.Parse(args); err != nil {
		return flagError(err, env, "")
	}
	rest := top.Args()
	if len(rest) == 0 {
		printUsage(env.stderr, nil)
		return usagef("no command given")
	}
	if rest[0] == "help" {
		printUsage(env.stdout, rest)
		return flag.ErrHelp
	}
	cmd, err := findCommand(rest)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("couponctl "+cmd.group+" "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	var runCmd runFunc = cmd.run
	if cmd.setup != nil {
		runCmd = cmd.setup(fs)
	}
	pos, err := parseInterspersed(fs, rest[2:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandUsage(env.stdout, cmd, fs)
			return err
		}
		return flagError(err, env, cmd.group+" "+cmd.name)
	}
	if len(pos) < cmd.minArgs || (cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs) {
		return usagef("usage: couponctl %s %s %s", cmd.group, cmd.name, cmd.args)
	}
	x, err := g.context(cmd, env)
	if err != nil {
		return err
	}
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	if err := runCmd(ctx, x, pos); err != nil {
		// Name the command and what it was about; the rest of a long
		// list of recipients tells nothing more.
		what := cmd.group + " " + cmd.name
		if len(pos) > 0 {
			what += " " + pos[0]
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func flagError(err error, env *ioEnv, cmd string) error {
	if errors.Is(err, flag.ErrHelp) {
		if cmd == "" {
			printUsage(env.stdout, nil)
		}
		return err
	}
	return &usageError{err.Error()}
}

// parseInterspersed parses flags anywhere among the arguments, as in
// "lists import spring codes.csv --header"; after "--" every argument is
// positional (a recipient that starts with "-", say).
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func findCommand(args []string) (*command, error) {
	group := args[0]
	var names []string
	for i := range commands {
		c := &commands[i]
		if c.group != group {
			continue
		}
		names = append(names, c.name)
		if len(args) > 1 && c.name == args[1] {
			return c, nil
		}
	}
	switch {
	case names == nil:
		return nil, usagef("unknown command %q", group)
	case len(args) == 1:
		return nil, usagef("%s needs a command: %s", group, strings.Join(names, ", "))
	}
	return nil, usagef("unknown command %q %q; %s has: %s", group, args[1], group, strings.Join(names, ", "))
}

func printUsage(w io.Writer, args []string) {
	if len(args) > 1 {
		if c, err := findCommand(args[1:]); err == nil {
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			var g globals
			g.register(fs)
			if c.setup != nil {
				c.setup(fs)
			}
			printCommandUsage(w, c, fs)
			return
		}
	}
	fmt.Fprint(w, `couponctl drives a coupond node.

Usage: couponctl [global flags] GROUP COMMAND [flags] [args]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-40s %s\n", c.group+" "+c.name+" "+c.args, c.summary)
	}
	fmt.Fprint(w, `
Global flags (also after the command):
  --addr HOST:PORT|URL  node to call (else $COUPOND_ADDR, else 127.0.0.1:8080)
  --token SECRET        bearer token (else --token-file, else $COUPOND_TOKEN,
  --token-file FILE      else ${COUPOND_DATA:-./data}/admin.token, or operator.token
                         for tenants, tokens and cluster commands)
  --json                print JSON instead of tables
  --progress            show the progress bar of imports and exports even when
                         stderr is not a terminal (--no-progress hides it)
  --retries N           tries of a call that is safe to repeat (default 6)
  --timeout DURATION    give up after this long (default: no limit)
  --ca FILE             PEM CA certificate of an https node

Exit codes: 0 ok, 1 other error (local I/O, input refused as invalid),
2 usage, 3 auth (no token, 401, 403), 4 not found (404),
5 conflict or refused (409, 422), 6 server error or unreachable (5xx, no answer).

'couponctl help GROUP COMMAND' shows a command's flags.
`)
}

func printCommandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: couponctl %s %s [flags] %s\n\n%s\n\nFlags:\n", c.group, c.name, c.args, c.summary)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
