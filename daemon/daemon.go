// Package daemon wires one coupond node together and runs its lifecycle:
// Pebble, the state machine, Raft (bolt log, file snapshots, TCP
// transport), bootstrap, the HTTP API, signals and an ordered shutdown.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/coupond/coupond/httpapi"
	"github.com/coupond/coupond/raftfsm"
	"github.com/coupond/coupond/raftfsm/propose"
)

// Files and folders inside the data folder. Renaming one breaks existing data folders.
const (
	stateDir      = "state"
	raftLogFile   = "raft.db"
	snapshotsDir  = "snapshots"
	operatorToken = "operator.token"
	adminToken    = "admin.token"
	defaultTenant = "default"
)

// Timeouts of the lifecycle.
const (
	leaderWait      = 30 * time.Second
	shutdownHTTP    = 10 * time.Second
	streamingCutoff = 256 << 10 // bodies above this are streamed, never buffered whole
)

// historyReserve is the room the assignment index has from the start
// (16 MiB): a node's first 1,000,000 assignments never rehash it.
const historyReserve = 1 << 20

// Node is one running coupond.
type Node struct {
	cfg       Config
	log       zerolog.Logger
	db        *pebble.DB
	fsm       *raftfsm.FSM
	logStore  *raftboltdb.BoltStore // raft.db before Raft starts; then raftDB holds it
	raftDB    *raftDB               // raft.db as Raft uses it, swappable by a purge (purge.go)
	snaps     *stampedSnapshots
	purgeReq  chan struct{} // a purge asked for other than by an erasure (purge.go)
	transport *raft.NetworkTransport
	peerTLS   *tls.Config
	raft      *raft.Raft
	prop      *propose.Proposer // every write of the node goes through it
	api       *httpapi.Server
	metrics   *httpapi.Metrics // made before Raft, which applies entries from its start
	http      *fasthttp.Server
	httpLogs  *limitedLog // fasthttp's and the listener's warnings, rate-limited
	ln        net.Listener
	served    chan error
	done      chan struct{}  // closed when Close starts
	webhook   *webhook       // nil without --webhook-url
	expiry    *expiryTicker  // the leader's Tick rounds (expiry.go)
	lock      *os.File       // holds the data folder (lockDataDir); released last
	health    *stateHealth   // can the state be written (a full disk)
	workers   sync.WaitGroup // the background loops, stopped by done
}

// Start opens the node's state, joins or bootstraps Raft and serves HTTP.
// It returns once the API listens; a fresh single node has its leader and
// its token files by then.
func Start(cfg Config, log zerolog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, served: make(chan error, 1), done: make(chan struct{}), metrics: httpapi.NewMetrics(),
		purgeReq: make(chan struct{}, 1)}
	if err := n.start(); err != nil {
		n.abort()
		return nil, err
	}
	log.Info().Str("http", n.HTTPAddr()).Str("raft", cfg.RaftAddr).Str("data", cfg.DataDir).
		Uint64("applied_index", n.fsm.AppliedIndex()).Msg("coupond started")
	return n, nil
}

// background runs loops that stop when done is closed; Close waits for
// them before it closes the stores they use.
func (n *Node) background(loops ...func()) {
	for _, loop := range loops {
		n.workers.Add(1)
		go func() {
			defer n.workers.Done()
			loop()
		}()
	}
}

// abort undoes a failed start.
func (n *Node) abort() {
	close(n.done)
	if n.ln != nil {
		n.ln.Close()
	}
	if n.raft != nil {
		n.raft.Shutdown().Error()
	}
	if n.prop != nil {
		n.prop.Close() // its group commit's goroutines
	}
	n.workers.Wait()
	n.closeStores()
}

func (n *Node) start() error {
	cfg := n.cfg
	lock, err := prepareDataDir(cfg.DataDir, n.log)
	if err != nil {
		return err
	}
	n.lock = lock
	tc, err := peerTLS(cfg)
	if err != nil {
		return err
	}
	n.peerTLS = tc
	var joinToken string
	if cfg.Join != "" {
		if joinToken, err = readOperatorToken(cfg.TokenFile); err != nil {
			return err
		}
	}
	if err := n.openState(); err != nil {
		return err
	}
	fresh, err := n.startRaft()
	if err != nil {
		return err
	}
	joining := fresh && cfg.Join != ""
	if cfg.Join != "" && !fresh {
		n.log.Info().Msg("this node has state: --join is ignored, it restarts as the member it was")
	}
	if err := n.ensureBootstrapTokens(fresh && !joining); err != nil {
		return err
	}
	if err := n.serveHTTP(); err != nil {
		return err
	}
	if cfg.WebhookURL != "" {
		n.webhook = newWebhook(cfg, n.fsm, n.ackAlerts, n.log.With().Str("component", "webhook").Logger())
	}
	n.expiry = newExpiryTicker(func() bool { return n.raft.State() == raft.Leader }, n.fsm.TickDue, n.prop.Tick,
		n.log.With().Str("component", "expiry").Logger())
	n.background(n.onLeadership, n.watchCaughtUp, n.snapshotBySize, n.purgeLoop, func() { n.expiry.run(n.done) })
	if joining {
		n.background(func() { n.join(joinToken) })
		return nil // ready once added and caught up; Start does not wait for that
	}
	// A restarted node may still replay its log; callers of Start (and the
	// first clients) expect a node that answers.
	if err := n.waitReady(leaderWait); err != nil {
		n.log.Warn().Err(err).Msg("not ready yet; the API answers 503 until it is")
	}
	return nil
}

func (n *Node) openState() error {
	pebbleLog := n.log.With().Str("component", "pebble").Logger()
	n.health = newStateHealth(pebbleLog)
	opts := &pebble.Options{
		// The Raft log is the write-ahead log: Apply never syncs, and the
		// state machine flushes before Raft may drop log entries (raftfsm).
		DisableWAL: true,
		// A 64 MiB memtable (the --state-memtable-size default) holds a
		// whole 1,000,000-recipient send (~22 MB of history) with its
		// import, so a burst is flushed and compacted once, after it,
		// instead of several times under it; on 3 nodes sharing 2 cores
		// that was a third of each node's CPU during a big send. It costs
		// up to two memtables (128 MiB) of memory under sustained writes,
		// and a longer log replay after a crash.
		MemTableSize: uint64(n.cfg.MemTableSize),
		Logger:       newPebbleLogger(pebbleLog),
		// A failed flush makes the state unwritable (statehealth.go).
		EventListener: n.health.listener(),
		FS:            n.cfg.StateFS, // nil: the operating system's
	}
	path := filepath.Join(n.cfg.DataDir, stateDir)
	db, err := pebble.Open(path, opts)
	if err != nil {
		return fmt.Errorf("cannot open state %s: %w", path, err)
	}
	n.db = db
	start := time.Now()
	fsm, err := raftfsm.Open(db, raftfsm.Options{HistoryReserve: historyReserve})
	if err != nil {
		return fmt.Errorf("cannot load state %s: %w", path, err)
	}
	n.fsm = fsm
	// Rebuilding the pools leaves garbage of the size of the stored codes;
	// give it back now rather than carry it until the heap doubles.
	debug.FreeOSMemory()
	n.log.Info().Dur("took", time.Since(start)).Uint64("applied_index", fsm.AppliedIndex()).Msg("state loaded")
	return nil
}

// startRaft starts Raft on the log, snapshots and transport of the data
// folder; it reports whether it bootstrapped a new cluster.
func (n *Node) startRaft() (bool, error) {
	cfg := n.cfg
	// A purge's rewrite of raft.db that a crash cut off left a partial copy.
	if err := removeRaftDBCopy(filepath.Join(cfg.DataDir, raftLogFile)); err != nil {
		return false, err
	}
	logStore, err := openRaftLog(filepath.Join(cfg.DataDir, raftLogFile))
	if err != nil {
		return false, err
	}
	n.logStore = logStore
	hlog := raftLogger(n.log)
	if err := removeTempSnapshots(filepath.Join(cfg.DataDir, snapshotsDir)); err != nil {
		return false, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, snapshotsDir), 2, hlog)
	if err != nil {
		return false, fmt.Errorf("cannot open snapshot store: %w", err)
	}
	checked, err := n.checkIntegrity(logStore, snaps) // integrity.go
	if err != nil {
		return false, err
	}
	n.raftDB, n.snaps = checked.logs.bolt, checked.snaps
	if err := n.catchUpWithSnapshot(snaps); err != nil {
		return false, err
	}
	// With port 0 (tests) the transport advertises the port it was given.
	var advertise net.Addr
	if _, port, _ := net.SplitHostPort(cfg.RaftAddr); port != "0" {
		a, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
		if err != nil {
			return false, fmt.Errorf("cannot resolve --raft %q: %w", cfg.RaftAddr, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			return false, fmt.Errorf("--raft %q: peers dial this address, so it must name a host, not all interfaces", cfg.RaftAddr)
		}
		advertise = a
	}
	layer := cfg.RaftLayer
	if layer == nil {
		var tc *tls.Config // mutual TLS only with the cluster's CA
		if cfg.TLSCA != "" {
			tc = n.peerTLS
		}
		var err error
		layer, err = newStreamLayer(cfg.RaftAddr, advertise, tc)
		if err != nil {
			return false, fmt.Errorf("cannot listen for Raft on %s: %w", cfg.RaftAddr, err)
		}
	}
	trans := raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog)
	n.transport = trans

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	// A lease as long as the heartbeat: with a shorter one a busy 2-core
	// machine saw its leader step down under load.
	rc.LeaderLeaseTimeout = 500 * time.Millisecond
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	// The state machine keeps its own durable state in Pebble; Raft replays
	// only the entries after the last snapshot (see catchUpWithSnapshot).
	rc.NoSnapshotRestoreOnStart = true
	rc.SnapshotThreshold = cfg.SnapshotEntries
	rc.TrailingLogs = cfg.TrailingEntries
	// How often Raft checks --raft-snapshot-entries (it adds up to as much
	// again of jitter); the check is cheap, the snapshot is not.
	rc.SnapshotInterval = 5 * time.Second

	fresh, err := raft.HasExistingState(checked.logs, n.raftDB, checked.snaps)
	if err != nil {
		return false, fmt.Errorf("cannot read Raft state: %w", err)
	}
	fresh = !fresh
	r, err := raft.NewRaft(rc, timedFSM{n.fsm, n.metrics, n.log}, checked.logs, n.raftDB, checked.snaps, trans)
	if err != nil {
		return false, fmt.Errorf("cannot start Raft: %w", err)
	}
	n.raft = r
	n.prop = propose.New(r, n.fsm, propose.Config{StateErr: n.health.Err, Log: n.log.With().Str("component", "propose").Logger()})
	if fresh && cfg.Join == "" {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}})
		if err := f.Error(); err != nil {
			return false, fmt.Errorf("cannot bootstrap cluster: %w", err)
		}
		n.log.Info().Msg("bootstrapped a new single-node cluster")
	}
	return fresh, nil
}

// removeTempSnapshots drops the folders of snapshots that a crash cut off
// while they were written: Raft skips them but never deletes them, and
// each holds up to a whole copy of the state. Raft's file store writes
// into a "snapshots" folder of the folder it is given (dir/snapshots/
// *.tmp); dir/*.tmp is swept too, for what older versions looked for.
func removeTempSnapshots(dir string) error {
	var tmps []string
	for _, pattern := range []string{filepath.Join(dir, "snapshots", "*.tmp"), filepath.Join(dir, "*.tmp")} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			return fmt.Errorf("cannot look for unfinished snapshots: %w", err)
		}
		tmps = append(tmps, m...)
	}
	for _, t := range tmps {
		if err := os.RemoveAll(t); err != nil {
			return fmt.Errorf("cannot remove an unfinished snapshot: %w", err)
		}
	}
	return nil
}

// catchUpWithSnapshot covers the gap that an unsynced state machine can
// leave: if a crash lost Pebble writes below the newest snapshot's index,
// Raft will not replay them (they may be compacted away), so the state is
// rebuilt from that snapshot first. A restore that a crash cut off (at
// start or while a follower installed a snapshot) is done again the same way.
func (n *Node) catchUpWithSnapshot(snaps *raft.FileSnapshotStore) error {
	unfinished := n.fsm.RestoreUnfinished()
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("cannot list snapshots: %w", err)
	}
	if len(metas) == 0 {
		if unfinished {
			return fmt.Errorf("the state in %s is a snapshot restore that did not finish, and %s holds no snapshot to finish it from: restore the snapshots folder from a backup, or remove the data folder and join the node to its cluster again",
				filepath.Join(n.cfg.DataDir, stateDir), filepath.Join(n.cfg.DataDir, snapshotsDir))
		}
		return nil
	}
	// Raft's snapshot index may exceed the state's own applied index by
	// entries that never reach the state machine (no-ops, barriers), so the
	// snapshot's header tells how far its state reaches.
	if !unfinished && metas[0].Index <= n.fsm.AppliedIndex() {
		return nil
	}
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("cannot open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	sr, err := raftfsm.NewSnapshotReader(rc)
	if err != nil {
		return fmt.Errorf("cannot read snapshot %s: %w", metas[0].ID, err)
	}
	if !unfinished && sr.Applied <= n.fsm.AppliedIndex() {
		return nil
	}
	ev := n.log.Warn().Uint64("applied_index", n.fsm.AppliedIndex()).Uint64("snapshot_index", sr.Applied)
	if unfinished {
		ev.Msg("the state is a snapshot restore that did not finish; restoring the snapshot again")
	} else {
		ev.Msg("state is behind the newest snapshot; restoring it")
	}
	start := time.Now()
	if err := n.fsm.RestoreFrom(sr); err != nil {
		return fmt.Errorf("cannot restore snapshot %s: %w", metas[0].ID, err)
	}
	n.log.Info().Dur("took", time.Since(start)).Uint64("applied_index", n.fsm.AppliedIndex()).Msg("snapshot restored")
	return nil
}

// waitLeader polls until this node knows a leader.
func (n *Node) waitLeader(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, id := n.raft.LeaderWithID(); id != "" {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no leader after %s", timeout)
}

// waitReady polls until the API would answer (a leader, the log applied).
func (n *Node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !n.api.Ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func (n *Node) serveHTTP() error {
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("cannot listen for HTTP on %s: %w", n.cfg.HTTPAddr, err)
	}
	n.ln = ln
	n.api = httpapi.New(httpapi.Config{
		NodeID: n.cfg.NodeID, HTTPAddr: n.advertisedHTTPAddr(), MaxBody: n.cfg.MaxBody,
		Log: n.log.With().Str("component", "http").Logger(), PeerTLS: n.peerTLS, Metrics: n.metrics,
	}, n.prop, n.fsm)
	logs := newLimitedLog(n.log.With().Str("component", "fasthttp").Logger())
	n.httpLogs = logs
	conns := n.cfg.HTTPMaxConns
	if conns == 0 {
		conns = autoHTTPConns()
	}
	n.http = &fasthttp.Server{
		Handler:      n.api.Handler,
		ErrorHandler: httpapi.HandleParseError,
		// fasthttp's own error logs would otherwise quote request headers,
		// bearer tokens included (fasthttpLogger redacts the rest).
		SecureErrorLogMessage: true,
		Name:                  "coupond",
		StreamRequestBody:     true,
		MaxRequestBodySize:    streamingCutoff,
		// Timeouts and the cap: see httpserver.go.
		ReadTimeout: n.cfg.HTTPHeaderTimeout,
		IdleTimeout: n.cfg.HTTPIdleTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: noRequestDeadline}
		},
		ConnState:       trackIdle,
		Concurrency:     conns,
		ReadBufferSize:  16 << 10,
		NoDefaultDate:   true,
		CloseOnShutdown: true,
		Logger:          fasthttpLogger{logs},
	}
	hl := &httpListener{Listener: ln, body: n.cfg.HTTPBodyTimeout, log: logs}
	go func() {
		var err error
		if n.cfg.TLSCert != "" {
			err = n.http.ServeTLS(hl, n.cfg.TLSCert, n.cfg.TLSKey)
		} else {
			err = n.http.Serve(hl)
		}
		n.served <- err
	}()
	return nil
}

// HTTPAddr is the address the API listens on (useful with port 0).
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// advertisedHTTPAddr is where peers reach this node's API (the node
// directory, --join): the listening address, or, when --http listens on
// every interface, the host of --raft (which peers dial already) with the
// HTTP port. An unspecified host would make a peer dial itself.
func (n *Node) advertisedHTTPAddr() string {
	addr, ok := n.ln.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsUnspecified() {
		return n.ln.Addr().String()
	}
	host, _, err := net.SplitHostPort(string(n.transport.LocalAddr()))
	if err != nil {
		return n.ln.Addr().String()
	}
	return net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

// Raft exposes the node's Raft, for tests and tools.
func (n *Node) Raft() *raft.Raft { return n.raft }

// FSM exposes the node's state machine, for tests and tools.
func (n *Node) FSM() *raftfsm.FSM { return n.fsm }

// Close stops the node in order: HTTP (in-flight requests finish, bounded),
// Raft, then the stores, with Pebble flushed so a restart replays nothing.
func (n *Node) Close() error {
	close(n.done)
	var errs []error
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownHTTP)
		if err := n.http.ShutdownWithContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cannot stop HTTP: %w", err))
		}
		cancel()
		n.httpLogs.flush()
	}
	if n.prop != nil {
		n.prop.Close()
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("cannot stop Raft: %w", err))
		}
	}
	n.workers.Wait()
	if err := n.closeStores(); err != nil {
		errs = append(errs, err)
	}
	n.log.Info().Msg("coupond stopped")
	return errors.Join(errs...)
}

func (n *Node) closeStores() error {
	var errs []error
	if n.transport != nil {
		n.transport.Close()
		n.transport = nil
	}
	if n.db != nil {
		// A flush that cannot succeed (a full disk) would wait for space
		// forever; what it would write is in raft.db and replayed at start.
		if err := n.health.Err(); err != nil {
			errs = append(errs, fmt.Errorf("cannot flush state: %w", err))
		} else if err := n.db.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("cannot flush state: %w", err))
		}
		if err := n.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cannot close state: %w", err))
		}
		n.db = nil
	}
	if n.raftDB != nil {
		// The store it holds may be a purge's rewritten copy, not logStore.
		if err := n.raftDB.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cannot close Raft log: %w", err))
		}
		n.raftDB, n.logStore = nil, nil
	}
	if n.logStore != nil {
		if err := n.logStore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cannot close Raft log: %w", err))
		}
		n.logStore = nil
	}
	if n.lock != nil {
		n.lock.Close() // releases the data folder, after everything in it is closed
		n.lock = nil
	}
	return errors.Join(errs...)
}

// Run starts a node and stops it on SIGTERM or SIGINT; a second signal exits at once.
func Run(cfg Config, log zerolog.Logger) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	n, err := Start(cfg, log)
	if err != nil {
		return err
	}
	stopped := n.wait(sigs)
	go func() {
		sig := <-sigs
		log.Warn().Str("signal", sig.String()).Msg("second signal: exiting now")
		os.Exit(1)
	}()
	return errors.Join(stopped, n.Close())
}

// wait returns nil on a signal, and an error if the HTTP server stopped
// by itself: the process must then exit non-zero, so that a supervisor
// restarts it.
func (n *Node) wait(sigs <-chan os.Signal) error {
	select {
	case sig := <-sigs:
		n.log.Info().Str("signal", sig.String()).Msg("stopping")
		return nil
	case err := <-n.served:
		if err == nil {
			err = errors.New("its listener closed")
		}
		err = fmt.Errorf("cannot serve HTTP: %w", err)
		n.log.Error().Err(err).Msg("HTTP server stopped")
		return err
	}
}

// onLeadership runs each time this node becomes leader. A barrier of the
// new term tells when every earlier entry is applied: then the API may
// answer, and the staged chunks of uploads that no handler will ever commit
// (staged under an earlier leader, or before a crash) are dropped. Uploads
// this node is streaming itself are left alone. The alerts of the outbox
// are delivered from the barrier until the leadership ends, and the expiry
// ticker makes its first round of the term.
// await waits for a Raft future, or for Close: Raft leaves a future that
// is still queued when it shuts down unanswered, and a background loop
// waiting on one would hold up Close (and so a SIGTERM) for ever. The
// goroutine left waiting then ends with the process.
func (n *Node) await(f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-n.done:
		return raft.ErrRaftShutdown
	}
}

func (n *Node) onLeadership() {
	var alerts alertDelivery
	defer alerts.stop()
	check := func() {
		if err := n.await(n.raft.Barrier(10 * time.Second)); err != nil {
			return // not leader any more, or shutting down
		}
		if err := n.leaderDuties(); err != nil {
			n.log.Warn().Err(err).Msg("leader duties not done")
		}
		alerts.start(n.webhook)
		n.expiry.poke()
		dropped, err := n.prop.AbortAbandonedUploads(n.done)
		if err != nil && !errors.Is(err, propose.ErrStopped) {
			n.log.Warn().Err(err).Msg("cannot drop the staged chunks of abandoned uploads")
		}
		if dropped > 0 {
			n.log.Info().Int("uploads", dropped).Msg("dropped staged chunks of abandoned uploads")
		}
	}
	if n.raft.State() == raft.Leader {
		check()
	}
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			alerts.stop()
			if isLeader {
				check()
			}
		case <-n.done:
			return
		}
	}
}
