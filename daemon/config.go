package daemon

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// Config is the whole configuration of one node. ParseConfig is the one place
// that defines flags and their COUPOND_* environment variables.
type Config struct {
	DataDir   string
	HTTPAddr  string
	RaftAddr  string
	NodeID    string
	Join      string
	TokenFile string
	MaxBody   int64
	TLSCert   string
	TLSKey    string
	TLSCA     string // CA of the peers: turns on mutual TLS between nodes
	LogLevel  string
	LogFormat string // "json" or "console"

	// HTTP connections (httpserver.go): a request's header must be in
	// within HTTPHeaderTimeout of its first byte (of the connection, for
	// the first request), a body may pause at most HTTPBodyTimeout between
	// bytes, a keep-alive connection waits HTTPIdleTimeout for its next
	// request. At most HTTPMaxConns connections are served at once; 0
	// derives the cap from the open-file limit.
	HTTPIdleTimeout   time.Duration
	HTTPHeaderTimeout time.Duration
	HTTPBodyTimeout   time.Duration
	HTTPMaxConns      int

	// Raft log compaction: a snapshot every SnapshotEntries entries or
	// SnapshotBytes bytes of commands, whichever comes first, keeping
	// TrailingEntries entries after it for followers that lag a little.
	SnapshotEntries uint64
	SnapshotBytes   int64
	TrailingEntries uint64

	// MemTableSize is the size of one Pebble memtable; Pebble stops
	// writes while two of them wait for a flush (see openState).
	MemTableSize int64

	// The low-stock webhook (webhook.go): the leader POSTs each alert of
	// the outbox to WebhookURL, signed with WebhookSecret. The secret is
	// never logged; WebhookSecretFile, when set, is read by Validate and
	// replaces it. WebhookTimeout bounds one attempt; failed attempts are
	// retried after WebhookRetryMin, doubling up to WebhookRetryMax (no
	// flags: tests shorten them).
	WebhookURL        string
	WebhookSecret     string
	WebhookSecretFile string
	WebhookTimeout    time.Duration
	WebhookRetryMin   time.Duration
	WebhookRetryMax   time.Duration

	// RaftLayer, when set, carries Raft instead of a TCP listener on
	// RaftAddr (tests inject faults with it); its Addr must be RaftAddr.
	RaftLayer raft.StreamLayer
	// StateFS, when set, is the file system under Pebble instead of the
	// operating system's (tests inject disk faults with it).
	StateFS vfs.FS
}

// Defaults of the Raft log compaction. A snapshot costs a Pebble flush and
// a stream of the whole state, so it waits for enough log: imports write
// entries of about 1 MiB, bounded by the byte trigger; group-committed
// small allocations write a few KiB per entry (about 1,400 entries/s at
// full load on 2 cores), bounded by the entry count, a snapshot every 10 to
// 20 s at most. The trailing entries let a follower that paused for a
// second or two catch up from the log instead of a snapshot.
const (
	DefaultSnapshotEntries = 16384
	DefaultSnapshotBytes   = 256 << 20
	DefaultTrailingEntries = 2048
)

// Bounds of --state-memtable-size: Pebble takes a batch of half a
// memtable or more aside, and refuses memtables of 4 GiB.
const (
	DefaultMemTableSize = 64 << 20
	minMemTableSize     = 1 << 20
	maxMemTableSize     = 1 << 30
)

// DefaultMaxBody is the request body limit when none is given (SPEC §3).
const DefaultMaxBody = 1 << 30

// ParseConfig reads flags from args, with each flag's default taken from its
// environment variable when set (getenv is os.Getenv in production).
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	var maxBody, snapEntries, snapBytes, trailing, webhookTimeout, memTable string
	var httpIdle, httpHeader, httpBody, httpConns string
	fs := flag.NewFlagSet("coupond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, def, usage string) {
		if v := getenv(envName(name)); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+envName(name)+")")
	}
	str(&c.DataDir, "data", "./data", "data folder: Raft log, snapshots, Pebble state")
	str(&c.HTTPAddr, "http", "127.0.0.1:8080", "HTTP API address")
	str(&c.RaftAddr, "raft", "127.0.0.1:8081", "Raft transport address (also the address peers dial)")
	str(&c.NodeID, "id", "node1", "Raft server id")
	str(&c.Join, "join", "", "HTTP address of a node of the cluster to join")
	str(&c.TokenFile, "token-file", "", "operator token file used by --join")
	str(&maxBody, "max-body", strconv.Itoa(DefaultMaxBody), "request body limit in bytes (suffixes KiB, MiB, GiB allowed)")
	str(&c.TLSCert, "tls-cert", "", "TLS certificate file: serve HTTPS")
	str(&c.TLSKey, "tls-key", "", "TLS key file")
	str(&c.TLSCA, "tls-ca", "", "CA certificate file of the cluster: Raft and forwarded calls use mutual TLS verified against it (needs --tls-cert and --tls-key)")
	str(&snapEntries, "raft-snapshot-entries", strconv.Itoa(DefaultSnapshotEntries), "Raft entries between snapshots")
	str(&snapBytes, "raft-snapshot-bytes", "256MiB", "bytes of Raft entries between snapshots (suffixes KiB, MiB, GiB allowed)")
	str(&trailing, "raft-trailing-entries", strconv.Itoa(DefaultTrailingEntries), "Raft entries kept after a snapshot, for followers that lag")
	str(&httpIdle, "http-idle-timeout", DefaultHTTPIdleTimeout.String(), "how long a keep-alive HTTP connection waits for its next request")
	str(&httpHeader, "http-header-timeout", DefaultHTTPHeaderTimeout.String(), "time limit for a request's header, from its first byte (from the connection, for the first request)")
	str(&httpBody, "http-body-timeout", DefaultHTTPBodyTimeout.String(), "longest pause between bytes of a request body; a slow body that keeps moving has no time limit")
	str(&httpConns, "http-max-conns", "0", "HTTP connections served at once, more are refused with 503 (0: half the open-file limit, at most 4096)")
	str(&memTable, "state-memtable-size", "64MiB", "size of one memtable of the Pebble state (suffixes KiB, MiB, GiB allowed)")
	str(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	str(&c.LogFormat, "log-format", "", "log format: json or console (default console on a terminal, else json)")
	str(&c.WebhookURL, "webhook-url", "", "http(s) URL the leader POSTs alerts (low stock, expiry) to")
	str(&c.WebhookSecretFile, "webhook-secret-file", "", "file holding the webhook's HMAC secret")
	str(&webhookTimeout, "webhook-timeout", DefaultWebhookTimeout.String(), "time limit of one webhook delivery attempt")
	// The secret's environment variable is read after parsing, never used
	// as the flag's default: usage text prints defaults.
	fs.StringVar(&c.WebhookSecret, "webhook-secret", "", "HMAC-SHA256 secret that signs webhook deliveries (visible to ps: prefer env "+
		envName("webhook-secret")+" or --webhook-secret-file)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if c.WebhookSecret == "" {
		c.WebhookSecret = getenv(envName("webhook-secret"))
	}
	if c.WebhookSecret != "" && c.WebhookSecretFile != "" {
		return Config{}, errors.New("--webhook-secret (or " + envName("webhook-secret") + ") and --webhook-secret-file exclude each other")
	}
	d, err := time.ParseDuration(strings.TrimSpace(webhookTimeout))
	if err != nil || d <= 0 {
		return Config{}, errors.New("--webhook-timeout: must be a positive duration such as 10s")
	}
	c.WebhookTimeout = d
	for _, f := range []struct {
		name, s string
		p       *time.Duration
	}{{"--http-idle-timeout", httpIdle, &c.HTTPIdleTimeout}, {"--http-header-timeout", httpHeader, &c.HTTPHeaderTimeout}, {"--http-body-timeout", httpBody, &c.HTTPBodyTimeout}} {
		d, err := time.ParseDuration(strings.TrimSpace(f.s))
		if err != nil || d <= 0 {
			return Config{}, fmt.Errorf("%s: must be a positive duration such as 30s", f.name)
		}
		*f.p = d
	}
	if c.HTTPMaxConns, err = strconv.Atoi(strings.TrimSpace(httpConns)); err != nil || c.HTTPMaxConns < 0 {
		return Config{}, errors.New("--http-max-conns: must be 0 (automatic) or a positive number")
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	n, err := parseBytes(maxBody)
	if err != nil {
		return Config{}, fmt.Errorf("--max-body: %w", err)
	}
	c.MaxBody = n
	if c.SnapshotBytes, err = parseBytes(snapBytes); err != nil {
		return Config{}, fmt.Errorf("--raft-snapshot-bytes: %w", err)
	}
	if c.MemTableSize, err = parseBytes(memTable); err != nil {
		return Config{}, fmt.Errorf("--state-memtable-size: %w", err)
	}
	for _, f := range []struct {
		name string
		s    string
		p    *uint64
	}{{"--raft-snapshot-entries", snapEntries, &c.SnapshotEntries}, {"--raft-trailing-entries", trailing, &c.TrailingEntries}} {
		v, err := strconv.ParseUint(strings.TrimSpace(f.s), 10, 64)
		if err != nil || v == 0 {
			return Config{}, fmt.Errorf("%s: must be a positive number", f.name)
		}
		*f.p = v
	}
	return c, c.Validate()
}

func envName(flag string) string {
	return "COUPOND_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, errors.New("must be a positive number of bytes")
	}
	return n * mult, nil
}

// Validate fills defaults and checks fields against each other.
func (c *Config) Validate() error {
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = DefaultSnapshotEntries
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = DefaultSnapshotBytes
	}
	if c.TrailingEntries == 0 {
		c.TrailingEntries = DefaultTrailingEntries
	}
	if c.HTTPIdleTimeout <= 0 {
		c.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	if c.HTTPHeaderTimeout <= 0 {
		c.HTTPHeaderTimeout = DefaultHTTPHeaderTimeout
	}
	if c.HTTPBodyTimeout <= 0 {
		c.HTTPBodyTimeout = DefaultHTTPBodyTimeout
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = DefaultMemTableSize
	}
	if c.LogFormat == "" {
		c.LogFormat = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			c.LogFormat = "console"
		}
	}
	switch {
	case c.DataDir == "":
		return errors.New("--data must not be empty")
	case c.NodeID == "":
		return errors.New("--id must not be empty")
	case c.LogFormat != "json" && c.LogFormat != "console":
		return fmt.Errorf("--log-format must be json or console, not %q", c.LogFormat)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.TLSCA != "" && c.TLSCert == "":
		return errors.New("--tls-ca needs --tls-cert and --tls-key: the nodes prove who they are with them")
	case c.HTTPMaxConns < 0:
		return errors.New("--http-max-conns must be 0 (automatic) or a positive number")
	case c.Join != "" && c.TokenFile == "":
		return errors.New("--join needs --token-file with an operator token")
	case c.MemTableSize < minMemTableSize || c.MemTableSize > maxMemTableSize:
		return fmt.Errorf("--state-memtable-size must be between %d MiB and %d MiB", minMemTableSize>>20, maxMemTableSize>>20)
	}
	for _, a := range []struct{ flag, addr string }{{"--http", c.HTTPAddr}, {"--raft", c.RaftAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q is not host:port: %w", a.flag, a.addr, err)
		}
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return c.validateWebhook()
}

// validateWebhook checks the webhook settings, reads --webhook-secret-file
// and fills the delivery defaults. No message quotes the secret.
func (c *Config) validateWebhook() error {
	if c.WebhookSecretFile != "" {
		b, err := os.ReadFile(c.WebhookSecretFile)
		if err != nil {
			return fmt.Errorf("cannot read --webhook-secret-file: %w", err)
		}
		c.WebhookSecret = strings.TrimSpace(string(b))
		if c.WebhookSecret == "" {
			return errors.New("--webhook-secret-file is empty")
		}
	}
	if c.WebhookURL == "" {
		if c.WebhookSecret != "" {
			return errors.New("a webhook secret is set but --webhook-url is not")
		}
		return nil
	}
	u, err := url.Parse(c.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("--webhook-url must be an absolute http:// or https:// URL")
	}
	if c.WebhookSecret == "" {
		return errors.New("--webhook-url needs a secret: " + envName("webhook-secret") + ", --webhook-secret-file or --webhook-secret")
	}
	if c.WebhookTimeout <= 0 {
		c.WebhookTimeout = DefaultWebhookTimeout
	}
	if c.WebhookRetryMin <= 0 {
		c.WebhookRetryMin = DefaultWebhookRetryMin
	}
	if c.WebhookRetryMax <= 0 {
		c.WebhookRetryMax = DefaultWebhookRetryMax
	}
	if c.WebhookRetryMax < c.WebhookRetryMin {
		return errors.New("the webhook's longest retry wait is shorter than its first")
	}
	return nil
}
