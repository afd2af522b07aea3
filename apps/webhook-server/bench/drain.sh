#!/usr/bin/env bash
# How fast the dispatcher drains a backlog of one product once the load
# stops: 5 s of wrk (the shared signed products/create script, every
# delivery the same product), then the events delivered per second until
# every stored event is delivered (log sink, defaults; SQLite, or PostgreSQL
# in a fresh schema, dropped after, when BENCH_DATABASE_URL is set).
#
#   apps/webhook-server/bench/drain.sh [BIN]    # default target/release/webhook-server
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres apps/webhook-server/bench/drain.sh
#
# Needs wrk and the script run.sh writes (target/create.lua).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
BIN="${1:-target/release/webhook-server}"
SCRIPT="${SCRIPT:-target/create.lua}"
[[ -f "$SCRIPT" ]] || python3 "$ROOT/../shared/bench/mk_wrk_script.py" benchsecret "$ROOT/../shared/bench/products_create.json" "$SCRIPT" /webhooks/shopify/products/create
WORK="$(mktemp -d)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DB_URL="sqlite://$WORK/drain.db"
SCHEMA=""
if [[ -n "${BENCH_DATABASE_URL:-}" ]]; then
    DB_URL="$BENCH_DATABASE_URL"
    SCHEMA="drain_$$_$RANDOM"
fi
env -i PATH="$PATH" APP_PORT="$PORT" SHOPIFY_WEBHOOK_SECRET=benchsecret \
    CATALOG_DATABASE_URL="$DB_URL" ${SCHEMA:+CATALOG_DATABASE__SCHEMA="$SCHEMA"} \
    CATALOG_RATE_LIMIT__ENABLED=false CATALOG_LOG__LEVEL=warn "$BIN" >"$WORK/log" 2>&1 &
PID=$!
cleanup() {
    kill $PID 2>/dev/null || true
    wait $PID 2>/dev/null || true
    if [[ -n "$SCHEMA" ]]; then
        PGOPTIONS="-c client_min_messages=warning" psql -q "$BENCH_DATABASE_URL" \
            -c "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" >/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.05; done
wrk -t1 -c32 -d5s -s "$SCRIPT" "http://127.0.0.1:$PORT" | grep 'Requests/sec'
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | grep -F "$1" | awk '{ s += $2 } END { printf "%d", s }'; }
stored=$(metric 'outcome="stored"')
start=$(metric 'webhook_dispatch_total{result="delivered"}')
t0=$(date +%s.%N)
while (( $(metric 'webhook_dispatch_total{result="delivered"}') < stored )); do sleep 0.1; done
t1=$(date +%s.%N)
awk -v n=$((stored - start)) -v a="$t0" -v b="$t1" -v s="$stored" \
    'BEGIN { printf "stored %d, backlog %d drained at %.0f events/s\n", s, n, n / (b - a) }'
