#!/usr/bin/env bash
# make bench-peers: coupond against Redis and PostgreSQL on the peer
# scenarios, back to back on this machine, then a table of the medians and
# of coupond's ratio against each peer (bench/README.md, "Comparing with
# peers").
#
# Each peer runs as its own instance on a non-default port in a temporary
# folder (never the system service), installed from Debian's packages when
# missing. Before each phase the script waits, at most QUIET_WAIT seconds,
# for the machine to be quiet, and says how busy it was.
#
# Knobs (environment):
#   DUR=20s CONC=32       small sends: duration and concurrent clients
#   ROUNDS=1              rounds of peers and coupond, alternating which goes
#                         first; the table shows the medians
#   PEERS="redis postgres"
#   REDIS_MODES="always everysec"   appendfsync settings to run
#   REDIS_PORT=6390 PG_PORT=55432
#   QUIET_WAIT=60 QUIET_BELOW=0.3   wait up to this long for fewer busy cores
#   BIN=bin               where coupond and couponbench are (make build)
#   OUT=                  folder for the results (default: a new temporary one, kept)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin}
DUR=${DUR:-20s}
CONC=${CONC:-32}
ROUNDS=${ROUNDS:-1}
PEERS=${PEERS:-redis postgres}
REDIS_MODES=${REDIS_MODES:-always everysec}
REDIS_PORT=${REDIS_PORT:-6390}
PG_PORT=${PG_PORT:-55432}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_BELOW=${QUIET_BELOW:-0.3}
GO=${GO:-go}

for b in coupond couponbench; do
	[ -x "$BIN/$b" ] || { echo "bench-peers: $BIN/$b is missing: run make build" >&2; exit 1; }
done
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-peers.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=$(mktemp -d "${TMPDIR:-/tmp}/bench-peers-data.XXXXXX")
LOG=$OUT/run.log
: >"$OUT/coupond.jsonl"
: >"$OUT/peers.jsonl"

redis_pid=
pg_dir=
pg_data=
as_pg=()
stop_redis() {
	if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
		kill -TERM "$redis_pid"
		wait "$redis_pid" || true
	fi
	redis_pid=
}
stop_pg() {
	if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
		"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null || true
	fi
	pg_data=
}
cleanup() {
	stop_redis
	stop_pg
	rm -rf "$DATA" ${pg_dir:+"$pg_dir"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "bench-peers: failed at line $LINENO; the log is $LOG" >&2' ERR

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }

# busy_cores SECONDS: cores busy over the interval, machine-wide (/proc/stat).
busy_cores() {
	local u n s i w x y z b1 t1
	read -r _ u n s i w x y z _ </proc/stat
	b1=$((u + n + s + x + y + z)); t1=$((b1 + i + w))
	sleep "$1"
	read -r _ u n s i w x y z _ </proc/stat
	awk -v db=$((u + n + s + x + y + z - b1)) -v dt=$((u + n + s + x + y + z + i + w - t1)) -v c="$(nproc)" \
		'BEGIN { printf "%.2f", (dt > 0 ? db / dt * c : 0) }'
}

# wait_quiet PHASE: wait for fewer than QUIET_BELOW busy cores, at most
# QUIET_WAIT seconds; a shared machine may never get there, so go on and
# say so (the figures of that phase are then noisier).
wait_quiet() {
	local t0=$SECONDS busy
	while :; do
		busy=$(busy_cores 2)
		if awk -v b="$busy" -v q="$QUIET_BELOW" 'BEGIN { exit !(b < q) }'; then
			say "# $1: machine quiet ($busy busy cores) after $((SECONDS - t0))s"
			return
		fi
		if ((SECONDS - t0 >= QUIET_WAIT)); then
			say "# $1: machine still busy ($busy of $(nproc) cores) after ${QUIET_WAIT}s; going on, figures are noisier"
			return
		fi
		sleep 1
	done
}

# install PACKAGE: from Debian's packages (root, or through sudo).
install() {
	local sudo=()
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null || { echo "bench-peers: $1 is missing and this is not root: apt-get install $1" >&2; exit 1; }
		sudo=(sudo)
	fi
	say "# installing $1 (apt-get)"
	"${sudo[@]}" apt-get update -qq >>"$LOG" 2>&1
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$1" >>"$LOG" 2>&1
	# The package may start its own service on the default port; this
	# script starts its own instance on another port and leaves that alone.
}

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

for p in $PEERS; do
	case $p in
	redis) command -v redis-server >/dev/null || install redis-server ;;
	postgres) [ -n "$(pg_bindir)" ] || install postgresql ;;
	*) echo "bench-peers: unknown peer $p (redis, postgres)" >&2; exit 2 ;;
	esac
done
PGBIN=$(pg_bindir)

say "# building the peers' load generator (bench/peers)"
(cd bench/peers && $GO build -o "$DATA/peers" .)
PEERS_BIN=$DATA/peers

say "# $(date -u '+%Y-%m-%d %H:%M UTC') | $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB | $(uname -r) | data in $DATA on $(df -T "$DATA" | awk 'NR == 2 {print $2}')"
say "# coupond $(git rev-parse --short HEAD 2>/dev/null || echo '?') | $(command -v redis-server >/dev/null && redis-server --version | cut -d' ' -f1-3) | $([ -n "$PGBIN" ] && "$PGBIN/postgres" --version)"
say "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

run_redis() {
	local mode=$1 dir=$DATA/redis-$1
	wait_quiet "redis aof=$mode"
	rm -rf "$dir"; mkdir -p "$dir"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --logfile "$dir/redis.log" \
		--daemonize no --save "" --appendonly yes --appendfsync "$mode" &
	redis_pid=$!
	for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
	"$PEERS_BIN" redis -addr "127.0.0.1:$REDIS_PORT" -json -dur "$DUR" -conc "$CONC" >>"$OUT/peers.jsonl" 2> >(tee -a "$LOG" >&2)
	stop_redis
	rm -rf "$dir"
}

run_postgres() {
	# A folder of its own: as root, the server runs as postgres, which
	# could not reach into DATA (mode 0700).
	pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/bench-peers-pg.XXXXXX")
	local dir=$pg_dir
	as_pg=()
	if [ "$(id -u)" = 0 ]; then
		# PostgreSQL will not run as root.
		chown postgres:postgres "$dir"
		as_pg=(runuser -u postgres --)
	fi
	"${as_pg[@]}" "$PGBIN/initdb" -D "$dir/data" --auth=trust -U postgres -E UTF8 --locale=C.UTF-8 >>"$LOG" 2>&1
	wait_quiet "postgres"
	# Durable commits (synchronous_commit, fsync and full-page writes on);
	# a large WAL and checkpoint interval so that no checkpoint lands in
	# the middle of a scenario.
	"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -w -l "$dir/pg.log" -o "-p $PG_PORT -k $dir \
-c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on -c full_page_writes=on \
-c shared_buffers=1GB -c max_wal_size=8GB -c checkpoint_timeout=15min -c max_connections=100" start >/dev/null
	pg_data=$dir/data
	"$PEERS_BIN" postgres -dsn "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable" -json -dur "$DUR" -conc "$CONC" \
		>>"$OUT/peers.jsonl" 2> >(tee -a "$LOG" >&2)
	stop_pg
	rm -rf "$dir"
	pg_dir=
}

run_peers() {
	local p m
	for p in $PEERS; do
		case $p in
		redis) for m in $REDIS_MODES; do run_redis "$m"; done ;;
		postgres) run_postgres ;;
		esac
	done
}

# coupond's side: the same scenarios with couponbench, each on a fresh node.
run_coupond() {
	wait_quiet "coupond"
	local cb=("$BIN/couponbench")
	{
		"${cb[@]}" import --spawn --bin "$BIN/coupond" --codes 1000000 --json
		"${cb[@]}" big-send --spawn --bin "$BIN/coupond" --short-recipients --json
		"${cb[@]}" small-sends --spawn --bin "$BIN/coupond" --duration "$DUR" --conc "$CONC" --json
	} >>"$OUT/coupond.jsonl" 2> >(tee -a "$LOG" >&2)
}

for r in $(seq "$ROUNDS"); do
	say "# round $r of $ROUNDS"
	if ((r % 2)); then
		run_peers
		run_coupond
	else
		run_coupond
		run_peers
	fi
done

say "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$PEERS_BIN" table -coupond "$OUT/coupond.jsonl" "$OUT/peers.jsonl" | tee "$OUT/table.md"
echo
echo "results: $OUT (coupond.jsonl, peers.jsonl, table.md, run.log)"
