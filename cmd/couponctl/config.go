package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coupond/coupond/httpapi/client"
)

// defaultAddr is coupond's default --http (SPEC §3).
const defaultAddr = "127.0.0.1:8080"

// Token files a node writes into its data folder (daemon/tokens.go).
// Renaming them there breaks couponctl's default lookup.
const (
	adminTokenFile    = "admin.token"
	operatorTokenFile = "operator.token"
)

// errNoToken means that no token was given and none was found (exit 3).
var errNoToken = errors.New("cannot find a token")

// globals are the flags every command takes.
type globals struct {
	addr       string
	token      string
	tokenFile  string
	json       bool
	progress   bool
	noProgress bool
	retries    int
	timeout    time.Duration
	ca         string
}

// register binds the global flags to fs. The current values are the
// defaults, so flags given before the command survive a second FlagSet.
func (g *globals) register(fs *flag.FlagSet) {
	if g.retries == 0 {
		g.retries = client.DefaultRetry.Attempts
	}
	fs.StringVar(&g.addr, "addr", g.addr, "node `address`: host:port or http(s)://host:port")
	fs.StringVar(&g.token, "token", g.token, "bearer `token`")
	fs.StringVar(&g.tokenFile, "token-file", g.tokenFile, "`file` holding the bearer token")
	fs.BoolVar(&g.json, "json", g.json, "print JSON instead of tables")
	fs.BoolVar(&g.progress, "progress", g.progress, "show progress even when stderr is not a terminal")
	fs.BoolVar(&g.noProgress, "no-progress", g.noProgress, "never show progress")
	fs.IntVar(&g.retries, "retries", g.retries, "tries of a call that is safe to repeat")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "give up after this `duration` (0: no limit)")
	fs.StringVar(&g.ca, "ca", g.ca, "PEM CA certificate `file` of an https node")
}

// resolveAddr picks the node's address: --addr, else $COUPOND_ADDR, else
// the daemon's default.
func resolveAddr(flagAddr string, getenv func(string) string) string {
	if flagAddr != "" {
		return flagAddr
	}
	if a := getenv("COUPOND_ADDR"); a != "" {
		return a
	}
	return defaultAddr
}

// resolveToken picks the token: --token, else --token-file, else
// $COUPOND_TOKEN, else the file a local node wrote into its data folder
// ($COUPOND_DATA, as coupond reads it, else ./data): admin.token, or
// operator.token for the operator's commands.
func resolveToken(g *globals, operator bool, getenv func(string) string, readFile func(string) ([]byte, error)) (string, error) {
	fromFile := func(path string) (string, error) {
		b, err := readFile(path)
		if err != nil {
			return "", err
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return t, nil
	}
	switch {
	case g.token != "":
		return g.token, nil
	case g.tokenFile != "":
		t, err := fromFile(g.tokenFile)
		if err != nil {
			return "", fmt.Errorf("%w: %v", errNoToken, err)
		}
		return t, nil
	case getenv("COUPOND_TOKEN") != "":
		return getenv("COUPOND_TOKEN"), nil
	}
	data := getenv("COUPOND_DATA")
	if data == "" {
		data = "data"
	}
	name := adminTokenFile
	if operator {
		name = operatorTokenFile
	}
	t, err := fromFile(filepath.Join(data, name))
	if err != nil {
		return "", fmt.Errorf("%w (give --token, --token-file or $COUPOND_TOKEN): %v", errNoToken, err)
	}
	return t, nil
}

// context makes what a command runs with: the client and the output settings.
func (g *globals) context(c *command, env *ioEnv) (*cmdCtx, error) {
	if g.retries < 1 {
		return nil, usagef("--retries must be at least 1")
	}
	token := ""
	if !c.noToken {
		var err error
		if token, err = resolveToken(g, c.operator, env.getenv, os.ReadFile); err != nil {
			return nil, err
		}
	}
	r := client.DefaultRetry
	r.Attempts = g.retries
	opts := []client.Option{client.WithRetry(r)}
	if g.ca != "" {
		pem, err := os.ReadFile(g.ca)
		if err != nil {
			return nil, fmt.Errorf("cannot read --ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cannot use --ca %s: no PEM certificate in it", g.ca)
		}
		opts = append(opts, client.WithTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	cl, err := client.New(resolveAddr(g.addr, env.getenv), token, opts...)
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	return &cmdCtx{c: cl, env: env, json: g.json,
		progress: g.progress || (env.stderrTTY && !g.noProgress)}, nil
}
