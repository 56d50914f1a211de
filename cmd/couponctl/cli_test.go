package main

// The command line's parts that need no server: where the address and the
// token come from, which exit code an error gets, how arguments are cut.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/coupond/coupond/cmd/internal/proctest"
	"github.com/coupond/coupond/httpapi/client"
)

func TestResolveAddr(t *testing.T) {
	f := func(flagAddr, env, want string) {
		t.Helper()
		got := resolveAddr(flagAddr, func(k string) string {
			if k == "COUPOND_ADDR" {
				return env
			}
			return ""
		})
		if got != want {
			t.Fatalf("resolveAddr(%q) with COUPOND_ADDR=%q = %q, want %q", flagAddr, env, got, want)
		}
	}
	f("", "", "127.0.0.1:8080")
	f("", "10.0.0.1:80", "10.0.0.1:80")
	f("h:1", "10.0.0.1:80", "h:1")
}

func TestResolveToken(t *testing.T) {
	files := map[string]string{
		"data/admin.token":      "admin-secret\n",
		"data/operator.token":   "op-secret\n",
		"elsewhere/admin.token": "other-admin\n",
		"my.token":              "  from-file \n",
		"empty.token":           "\n",
	}
	readFile := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
	}
	f := func(g globals, operator bool, env map[string]string, want string, wantErr bool) {
		t.Helper()
		got, err := resolveToken(&g, operator, func(k string) string { return env[k] }, readFile)
		if wantErr {
			if !errors.Is(err, errNoToken) || exitCode(err) != exitAuth {
				t.Fatalf("%+v: got %q, %v; want errNoToken", g, got, err)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("%+v operator=%v env=%v: got %q, %v; want %q", g, operator, env, got, err, want)
		}
	}
	env := map[string]string{"COUPOND_TOKEN": "env-secret"}
	// --token, then --token-file, then $COUPOND_TOKEN, then the data folder.
	f(globals{token: "flag-secret", tokenFile: "my.token"}, false, env, "flag-secret", false)
	f(globals{tokenFile: "my.token"}, false, env, "from-file", false)
	f(globals{}, false, env, "env-secret", false)
	f(globals{}, false, nil, "admin-secret", false)
	f(globals{}, true, nil, "op-secret", false)
	f(globals{}, false, map[string]string{"COUPOND_DATA": "elsewhere"}, "other-admin", false)
	// An operator's command in a folder without operator.token.
	f(globals{}, true, map[string]string{"COUPOND_DATA": "elsewhere"}, "", true)
	f(globals{tokenFile: "missing.token"}, false, env, "", true)
	f(globals{tokenFile: "empty.token"}, false, nil, "", true)
}

func TestExitCode(t *testing.T) {
	f := func(err error, want int) {
		t.Helper()
		if got := exitCode(err); got != want {
			t.Fatalf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
	api := func(status int) error {
		return fmt.Errorf("cannot do it: %w", &client.Error{Status: status, Code: "x"})
	}
	f(nil, exitOK)
	f(flag.ErrHelp, exitOK)
	f(usagef("bad"), exitUsage)
	f(fmt.Errorf("%w: none", errNoToken), exitAuth)
	f(api(401), exitAuth)
	f(api(403), exitAuth)
	f(api(404), exitNotFound)
	f(api(409), exitConflict)
	f(api(422), exitConflict)
	f(api(400), exitOther)
	f(api(413), exitOther)
	f(api(500), exitServer)
	f(api(503), exitServer)
	f(&url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{Op: "dial", Err: errors.New("refused")}}, exitServer)
	f(fmt.Errorf("cannot GET: %w", context.DeadlineExceeded), exitServer)
	f(errors.New("cannot read the input: no such file"), exitOther)
}

func TestParseInterspersed(t *testing.T) {
	f := func(args []string, wantPos []string, wantHeader bool, wantKey string) {
		t.Helper()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		header := fs.Bool("header", false, "")
		key := fs.String("key", "", "")
		pos, err := parseInterspersed(fs, args)
		if err != nil || !slices.Equal(pos, wantPos) || *header != wantHeader || *key != wantKey {
			t.Fatalf("%q: pos %q header %v key %q err %v", args, pos, *header, *key, err)
		}
	}
	f(nil, nil, false, "")
	f([]string{"a", "b"}, []string{"a", "b"}, false, "")
	f([]string{"a", "--header", "b", "--key", "k"}, []string{"a", "b"}, true, "k")
	f([]string{"--key=k", "a"}, []string{"a"}, false, "k")
	// After "--" a leading dash is a value, not a flag.
	f([]string{"a", "--", "-r", "--header"}, []string{"a", "-r", "--header"}, false, "")
}

func TestUsageErrors(t *testing.T) {
	f := func(args ...string) {
		t.Helper()
		var out, errOut bytes.Buffer
		env := &ioEnv{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }}
		if code := run(context.Background(), args, env); code != exitUsage {
			t.Fatalf("%q: exit %d, want %d; stderr %s", args, code, exitUsage, errOut.String())
		}
		if !strings.Contains(errOut.String(), "couponctl:") {
			t.Fatalf("%q: stderr %q tells nothing", args, errOut.String())
		}
	}
	f()
	f("frob")
	f("lists")
	f("lists", "frob")
	f("lists", "show")                               // too few arguments
	f("lists", "show", "a", "b")                     // too many
	f("lists", "create", "x", "--low-stock", "many") // a flag's bad value
	f("lists", "ls", "--nope")                       // an unknown flag
	f("sends", "allocate", "s1", "--token", "t")     // no recipients
	f("sends", "allocate", "s1", "r", "--chunk", "0", "--token", "t")
	f("sends", "open", "s1", "--token", "t") // no --message
	f("sends", "export", "s1", "--format", "xml", "--token", "t")
	f("lists", "ls", "--retries", "0", "--token", "t")
	f("lists", "ls", "--addr", "ftp://h:1", "--token", "t")
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	env := &ioEnv{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	if code := run(context.Background(), []string{"help"}, env); code != exitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), c.group+" "+c.name) {
			t.Fatalf("help does not name %s %s", c.group, c.name)
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"lists", "import", "-h"}, env); code != exitOK || !strings.Contains(out.String(), "-header") {
		t.Fatalf("lists import -h: exit %d: %s", code, out.String())
	}
}

func TestLineChunks(t *testing.T) {
	next := lineChunks(strings.NewReader("a\r\nb\n\nc\nd"), 2)
	var got [][]string
	for {
		c, err := next()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) == 0 {
			break
		}
		got = append(got, c)
	}
	if fmt.Sprint(got) != "[[a b] [c d]]" {
		t.Fatalf("chunks %q", got)
	}
}

func TestMain(m *testing.M) {
	// A developer's own settings must not leak into the tests.
	for _, k := range []string{"COUPOND_ADDR", "COUPOND_TOKEN", "COUPOND_DATA"} {
		os.Unsetenv(k)
	}
	proctest.Main(m) // removes the binaries of e2e_test.go
}
