#!/usr/bin/env bash
# Lints the /metrics exposition with `promtool check metrics` (format,
# names, HELP, counter and unit suffixes), from `make check`: it builds
# coupond, starts one fresh node on a temporary data folder and free ports,
# imports two codes and allocates one so the counters and the per-list
# gauge have values, scrapes, lints, and stops the node. promtool comes
# from Debian's prometheus package, installed here when it is missing.
set -eu -o pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
GO=${GO:-go}

tmp=$(mktemp -d)
pid=
stop() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap stop EXIT

if ! command -v promtool >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "check-metrics: promtool is missing: install Debian's prometheus package (needs root)" >&2
		exit 1
	fi
	echo "check-metrics: installing promtool (Debian package prometheus)"
	# apt's output is shown only when it fails.
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } \
		>"$tmp/apt.log" 2>&1; then
		cat "$tmp/apt.log" >&2
		exit 1
	fi
fi

"$GO" build -o "$tmp/coupond" ./cmd/coupond
# Port 0 picks free ports; the node logs its HTTP address once it answers.
"$tmp/coupond" --data "$tmp/data" --http 127.0.0.1:0 --raft 127.0.0.1:0 \
	--log-format json >"$tmp/log" 2>&1 &
pid=$!
addr=
for _ in $(seq 300); do
	addr=$(sed -n 's/.*"http":"\([^"]*\)".*"message":"coupond started".*/\1/p' "$tmp/log" | head -n 1)
	[ -n "$addr" ] && break
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "check-metrics: coupond exited:" >&2
		cat "$tmp/log" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "check-metrics: coupond did not start in 30 s" >&2
	exit 1
fi

api=http://$addr/v1
auth="Authorization: Bearer $(cat "$tmp/data/admin.token")"
list=$(printf 'CHECK-1\nCHECK-2\n' | curl -sf -X POST "$api/lists?name=metrics-check" -H "$auth" \
	-H 'Content-Type: text/csv' --data-binary @- | sed -E 's/.*"id":"([0-9a-f]+)".*/\1/')
curl -sf -X PUT "$api/messages/m1" -H "$auth" -o /dev/null \
	-d '{"name": "m1", "campaign": "c", "campaign_type": "standard", "channel": "email", "doi": false}'
curl -sf -X PUT "$api/messages/m1/coupon-list" -H "$auth" -o /dev/null -d "{\"list_id\": \"$list\"}"
curl -sf -X POST "$api/sends/s1/codes" -H "$auth" -o /dev/null \
	-d '{"message_id": "m1", "recipients": ["ann@example.com"]}'

curl -sf "http://$addr/metrics" -o "$tmp/metrics"
# A lint of an empty or partial scrape proves nothing: the values the calls
# above must have moved are there first.
for want in 'coupond_codes_imported_total 2' 'coupond_codes_allocated_total 1' \
	"coupond_list_available_codes{list=\"$list\",tenant=\"default\"} 1" \
	'coupond_http_requests_total{code="200",route="sends.allocate"} 1'; do
	if ! grep -qxF "$want" "$tmp/metrics"; then
		echo "check-metrics: /metrics lacks the line: $want" >&2
		exit 1
	fi
done
promtool check metrics <"$tmp/metrics"
echo "check-metrics: promtool check metrics passed ($(grep -c '^# TYPE ' "$tmp/metrics") metric families)"
