#!/usr/bin/env bash
# Three local coupond nodes for trying the cluster by hand (make cluster).
#
#   node  data      HTTP            Raft            log
#   n1    data/n1   127.0.0.1:8080  127.0.0.1:8081  data/n1.log
#   n2    data/n2   127.0.0.1:8090  127.0.0.1:8091  data/n2.log
#   n3    data/n3   127.0.0.1:8100  127.0.0.1:8101  data/n3.log
#
# n1 bootstraps a new cluster unless data/n1 exists, n2 and n3 join it with
# data/n1/operator.token; run again with the same data, the same cluster
# restarts (a node with state ignores --join). Ctrl-C or SIGTERM stops all
# three. Paths are relative to the repository root; BIN (default bin) and
# DATA (default data) move them.
set -u -o pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DATA=${DATA:-data}
COUPOND=$BIN/coupond
TOKEN=$DATA/n1/operator.token
WAIT_S=60

ids=(n1 n2 n3)
http=(8080 8090 8100)
raft=(8081 8091 8101)
pids=()

log() { echo "cluster.sh: $*"; }

alive() { kill -0 "$1" 2>/dev/null; }

stop() {
	trap - INT TERM
	log "stopping ${ids[*]:0:${#pids[@]}} (SIGTERM)"
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for _ in $(seq 150); do # up to 15 s, then SIGKILL
		local left=0
		for p in "${pids[@]}"; do alive "$p" && left=1; done
		[ "$left" = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null && log "pid $p killed"; done
	wait 2>/dev/null
	exit "${1:-0}"
}
trap stop INT TERM

# fail MSG: print MSG and the last lines of every log, stop, exit 1.
fail() {
	log "$*"
	for id in "${ids[@]:0:${#pids[@]}}"; do
		echo "--- last lines of $DATA/$id.log ---"
		tail -n 15 "$DATA/$id.log" 2>/dev/null
	done
	stop 1
}

# start I [ARGS...]: start node I (0-based) in the background.
start() {
	local i=$1 id=${ids[$1]}
	shift
	# Job control on while starting: the node gets a process group of its
	# own, so a Ctrl-C reaches this script only, which then stops the nodes
	# with one SIGTERM each (coupond takes a second signal as "exit now").
	set -m
	"$COUPOND" --id "$id" --data "$DATA/$id" --http "127.0.0.1:${http[i]}" --raft "127.0.0.1:${raft[i]}" "$@" \
		>>"$DATA/$id.log" 2>&1 &
	pids+=($!)
	set +m
	log "started $id pid $! (HTTP 127.0.0.1:${http[i]}, Raft 127.0.0.1:${raft[i]}, log $DATA/$id.log)"
}

# check_alive: fail if a node has exited.
check_alive() {
	for i in "${!pids[@]}"; do
		alive "${pids[i]}" || fail "${ids[i]} exited during the start"
	done
}

[ -x "$COUPOND" ] || { log "no $COUPOND: build it first (make build)"; exit 1; }
command -v curl >/dev/null || { log "curl is needed"; exit 1; }
mkdir -p "$DATA"
if [ -d "$DATA/n1" ]; then
	log "restarting the cluster in $DATA/n1..n3"
else
	log "bootstrapping a new cluster in $DATA/n1..n3"
fi

start 0
for _ in $(seq $((WAIT_S * 10))); do
	[ -s "$TOKEN" ] && break
	check_alive
	sleep 0.1
done
[ -s "$TOKEN" ] || fail "no $TOKEN after ${WAIT_S}s"
start 1 --join 127.0.0.1:8080 --token-file "$TOKEN"
start 2 --join 127.0.0.1:8080 --token-file "$TOKEN"

# Every node ready, and n1 listing three voters.
deadline=$((SECONDS + WAIT_S))
for i in 0 1 2; do
	until curl -fs -o /dev/null "http://127.0.0.1:${http[i]}/readyz"; do
		check_alive
		[ "$SECONDS" -lt "$deadline" ] || fail "${ids[i]} not ready after ${WAIT_S}s"
		sleep 0.2
	done
done
cluster() { curl -s -H "Authorization: Bearer $(cat "$TOKEN")" http://127.0.0.1:8080/v1/cluster; }
until [ "$(cluster | grep -o '"suffrage": *"voter"' | wc -l)" -eq 3 ]; do
	check_alive
	[ "$SECONDS" -lt "$deadline" ] || fail "n1 does not list 3 voters after ${WAIT_S}s: $(cluster)"
	sleep 0.2
done

echo
echo "\$ curl -s -H \"Authorization: Bearer \$(cat $TOKEN)\" http://127.0.0.1:8080/v1/cluster"
cluster
echo
echo
log "running; Ctrl-C stops all three"

# Wait for a signal; report nodes that exit (killed by hand, say).
exited=()
while :; do
	sleep 1 &
	wait $! 2>/dev/null
	left=0
	for i in "${!pids[@]}"; do
		if alive "${pids[i]}"; then
			left=1
		elif [ -z "${exited[i]:-}" ]; then
			exited[i]=1
			log "${ids[i]} (pid ${pids[i]}) exited; see $DATA/${ids[i]}.log"
		fi
	done
	[ "$left" = 1 ] || { log "every node has exited"; exit 1; }
done
