#!/usr/bin/env bash
# make demo: a tour of couponctl against a throwaway node. It starts one
# coupond on a temporary data folder and ports the system picks, imports
# CODES codes, opens a send and allocates RECIPIENTS recipients, shows the
# list's counts and one recipient's history, then stops the node and
# removes the folder. BIN (default bin) is where coupond and couponctl are.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
CODES=${CODES:-100000}
RECIPIENTS=${RECIPIENTS:-10000}
WAIT_S=30

work=$(mktemp -d "${TMPDIR:-/tmp}/coupond-demo.XXXXXX")
node=
stop_node() {
	if [ -n "$node" ] && kill -0 "$node" 2>/dev/null; then
		kill -TERM "$node"
		wait "$node" || true
	fi
	node=
}
cleanup() {
	stop_node
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }

step "starting coupond in $work"
# Port 0: the node takes free ports and logs the HTTP address it got.
"$BIN/coupond" --data "$work/data" --http 127.0.0.1:0 --raft 127.0.0.1:0 \
	--log-format json >"$work/coupond.log" 2>&1 &
node=$!
addr=
for _ in $(seq $((WAIT_S * 10))); do
	addr=$(grep '"coupond started"' "$work/coupond.log" 2>/dev/null | grep -o '"http":"[^"]*"' | cut -d'"' -f4 || true)
	[ -n "$addr" ] && break
	kill -0 "$node" 2>/dev/null || { cat "$work/coupond.log"; exit 1; }
	sleep 0.1
done
[ -n "$addr" ] || { echo "demo: coupond did not start within ${WAIT_S}s" >&2; cat "$work/coupond.log"; exit 1; }

# couponctl finds the node and its admin token through these (see README).
export COUPOND_ADDR=$addr COUPOND_DATA=$work/data
ctl() { "$BIN/couponctl" "$@"; }
ctl cluster ready --wait "${WAIT_S}s"
echo "node on $addr"

step "import $CODES codes"
awk -v n="$CODES" 'BEGIN { for (i = 1; i <= n; i++) printf "DEMO-%08d\n", i }' >"$work/codes.csv"
list=$(ctl lists create demo --low-stock 1000 --json | sed -n 's/^  "id": "\([0-9a-f]*\)",$/\1/p')
[ -n "$list" ] || { echo "demo: cannot read the new list's id" >&2; exit 1; }
ctl lists top-up "$list" "$work/codes.csv"

step "a message with the list, and a send of $RECIPIENTS recipients"
ctl messages put welcome --name "Welcome mail" --campaign spring >/dev/null
ctl messages assign welcome "$list"
ctl sends open send-1 --message welcome --expect "$RECIPIENTS"
awk -v n="$RECIPIENTS" 'BEGIN { for (i = 1; i <= n; i++) printf "user-%06d@example.com\n", i }' >"$work/recipients.txt"
ctl sends allocate send-1 --file "$work/recipients.txt" --out "$work/codes-sent.csv"
echo "first codes handed out:"
head -n 3 "$work/codes-sent.csv"

step "the list's counts"
ctl lists show "$list"

who=user-000042@example.com
step "history of $who"
ctl history recipient "$who"
code=$(grep "^$who," "$work/codes-sent.csv" | cut -d, -f2)
step "who got $code"
ctl history code "$list" "$code"

step "closing the send, stopping the node"
ctl sends close send-1 >/dev/null
stop_node
echo "done"
