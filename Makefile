# coupond: see README.md. Every target fetches the modules it needs itself.
GO      ?= go
BIN     := bin
# Fuzz runs in make test are counted in executions, not seconds: a run cut
# by a time limit while the fuzzer minimises an input fails with "context
# deadline exceeded" (a known go test -fuzz behaviour), which is no finding.
FUZZRUNS ?= 200000x

.PHONY: all build run cluster test test-race check bench bench-cluster bench-peers deps fuzz clean chaos demo

all: build

deps:
	$(GO) mod download

build: deps
	mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

# One node on the defaults of SPEC §3 (data in ./data, HTTP on 127.0.0.1:8080).
run: build
	./$(BIN)/coupond

# Three local nodes (bench/cluster.sh): n1..n3, data in data/n1..n3, HTTP on
# 127.0.0.1:8080/8090/8100; run again to restart the same cluster. Ctrl-C
# stops all three.
cluster: build
	BIN=$(BIN) ./bench/cluster.sh

# The whole suite, with the race detector on (every package has concurrency
# or drives a concurrent server); then vet, the size-bound tests of pool
# and codecsv at full size without the detector (under it they run
# smaller), and counted fuzz runs of the CSV reader and the allocation
# JSON parser. The two run as parallel jobs: most of the race suite's time
# is process tests that keep one core busy. Output is synced by line.
# The Raft command decoder's fuzz target runs in the suite on its seeds
# and saved findings, beside a test of 100,000 random mutations; its
# coverage-guided run is in make fuzz, because a fuzz build instruments
# every package it links (Pebble and Raft: minutes from an empty cache).
# The process tests' binaries are built first, once (cmd/internal/proctest).
# -parallel 3: the parallel tests are mostly process tests that wait on
# their nodes (fsync, kills, elections), so a third one fits in 2 cores.
test: deps
	mkdir -p $(BIN)/test
	$(GO) build -o $(BIN)/test/ ./cmd/coupond ./cmd/couponctl
	$(GO) build -race -o $(BIN)/test/coupond-race ./cmd/coupond
	PROCTEST_BIN_DIR=$(CURDIR)/$(BIN)/test $(MAKE) --no-print-directory --output-sync=line -j2 test-suite test-checks

.PHONY: test-suite test-checks
test-suite:
	$(GO) test -race -count=1 -parallel 3 -timeout 15m ./...

test-checks:
	$(GO) vet ./...
	$(GO) test -count=1 ./pool ./httpapi/codecsv
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZRUNS) ./httpapi/codecsv
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 20000x ./httpapi/recipjson
	$(GO) test -run '^$$' -fuzz '^FuzzCode$$' -fuzztime 100000x ./httpapi/render

test-race: test

# Every test at its full size under the race detector (-tags long): what
# make test runs on less data, or at full size only without the detector.
.PHONY: test-long
test-long: deps
	$(GO) test -race -tags long -count=1 -timeout 60m ./...

# Longer coverage-guided runs of the three fuzz targets.
fuzz: deps
	$(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime 5m ./httpapi/codecsv
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 2m ./httpapi/recipjson
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 5m ./raftfsm
	$(GO) test -run '^$$' -fuzz '^FuzzCode$$' -fuzztime 2m ./httpapi/render

# gofmt, vet, then `promtool check metrics` on a live node's /metrics
# (bench/check-metrics.sh; it installs Debian's prometheus package for
# promtool when it is missing), and Redocly's lint of docs/openapi.yaml
# (npx fetches the pinned CLI from npm; 2.x runs on Node 20.19+ and 22.12+).
REDOCLY ?= npx --yes @redocly/cli@2.77.0
check: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(REDOCLY) lint --config docs/redocly.yaml docs/openapi.yaml
	GO=$(GO) ./bench/check-metrics.sh

# Micro-benchmarks (BenchmarkLedger10M builds 10M assignments: disk bytes
# per assignment and history lookup latency), then every scenario against
# a fresh node. Compare with a peer run back to back on the same machine
# (bench/README.md, "Comparing with peers").
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./raftfsm
	$(GO) test -run '^$$' -bench . -benchmem ./pool ./httpapi/codecsv
	./$(BIN)/couponbench import --spawn --codes 1000000
	./$(BIN)/couponbench import --spawn --codes 10000000 --restart
	./$(BIN)/couponbench big-send --spawn --short-recipients
	./$(BIN)/couponbench big-send --spawn
	./$(BIN)/couponbench small-sends --spawn --duration 20s
	./$(BIN)/couponbench mixed --spawn --duration 20s

# coupond against Redis 7 (AOF always, everysec) and PostgreSQL 15
# (synchronous_commit=on) on the peer scenarios, back to back, then the
# medians and coupond's ratios (bench/peers/run.sh; bench/README.md,
# "Comparing with peers"). It installs the peers from Debian's packages
# when missing and runs its own instances on other ports. Knobs: DUR,
# CONC, ROUNDS, PEERS (bench/peers/run.sh lists them all).
bench-peers: build
	BIN=$(BIN) GO=$(GO) ./bench/peers/run.sh

# One node beside three on this machine: big-send pairs (1M recipients,
# one node then a 3-node cluster, BENCH_ROUNDS times: compare the medians),
# small sends on each, then the failover time (leader kill -9 to the next
# acknowledged allocation, 5 kills).
BENCH_ROUNDS ?= 5
bench-cluster: build
	for i in $$(seq $(BENCH_ROUNDS)); do \
		./$(BIN)/couponbench big-send --spawn --short-recipients && \
		./$(BIN)/couponbench big-send --spawn-cluster 3 --short-recipients || exit 1; \
	done
	./$(BIN)/couponbench small-sends --spawn --duration 10s
	./$(BIN)/couponbench small-sends --spawn-cluster 3 --duration 10s
	./$(BIN)/couponbench failover --spawn-cluster 3 --kills 5

# The fault test at length (acceptance test (b), cmd/coupond/chaos_test.go):
# three nodes under load from 8 clients while the leader is killed with
# kill -9, nodes are paused and restarted; then the ledger invariants, the
# state digests and the history's linearizability are checked. make test
# runs a 25 s version. COUPOND_CHAOS_SEED, _KILLS, _CLIENTS and _KEEP=1 tune
# it; a failing run names the folder that keeps its logs and history.
COUPOND_CHAOS_DURATION ?= 3m
chaos: deps
	COUPOND_CHAOS_DURATION=$(COUPOND_CHAOS_DURATION) $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./cmd/coupond

# A tour of couponctl (bench/demo.sh): a throwaway node on a temporary data
# folder and free ports, 100,000 codes imported, a send of 10,000
# recipients, the counts and one recipient's history; then the node stops.
demo: build
	BIN=$(BIN) ./bench/demo.sh

clean:
	rm -rf $(BIN)
