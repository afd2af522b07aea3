#!/usr/bin/env bash
# Load benchmark of webhook-server against the ingest floor, same run, same machine.
#
#   apps/webhook-server/bench/run.sh          # throughput + latency table
#   apps/webhook-server/bench/run.sh rss      # also RSS after 1,000,000 deliveries per store
#
# Builds release binaries (the floor with its own --target-dir target/floor),
# starts each server in turn on a free port, runs wrk (-t1 -c32 -d10s, secret
# `benchsecret`, signed Shopify products/create with unique ids) and prints a
# table with ratios to the floor. Needs wrk (apt-get install -y wrk) and python3.
# Environment: DURATION (10s), CONNECTIONS (32), THREADS (1), SHARED (../shared),
# RSS_TARGET (1000000), PRODUCTS (1: the shared script, every delivery the same
# product; N: N products in turn, see mk_multi_product.py), SERVER_ENV (extra
# VAR=value settings for the webhook-server runs, space-separated, e.g.
# "CATALOG_DISPATCH__ENABLED=false" to measure ingestion alone),
# BENCH_DATABASE_URL (for the `postgres` store, which is not in the default
# list: STORES="floor postgres"; each run gets a fresh schema, dropped after),
# SERVER_BIN (the webhook-server binary to measure, default the one built
# here: a copy of an older build compares two versions in one run), BODY
# (the delivery body, default the shared 2.2 KB sample; `large` = 40 KB, see
# mk_large_body.py; with PRODUCTS=1 only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-1}"
RSS_TARGET="${RSS_TARGET:-1000000}"
# 1: every delivery is the same product (the shared script); N > 1: N products.
PRODUCTS="${PRODUCTS:-1}"
SERVER_ENV="${SERVER_ENV:-}"
SERVER_BIN="${SERVER_BIN:-target/release/webhook-server}"
MODE="${1:-}"
# sqlite = synchronous=FULL (fsync before each acknowledgement, the default);
# sqlite-normal = synchronous=NORMAL (survives a process crash, not power loss).
STORES="${STORES:-floor sqlite sqlite-normal memory}"
cd "$ROOT"

command -v wrk >/dev/null || { echo "wrk not found: apt-get update && apt-get install -y wrk" >&2; exit 1; }

echo "== building release binaries" >&2
cargo build --release --quiet --manifest-path "$SHARED/bench/floor/Cargo.toml" --target-dir target/floor
cargo build --release --quiet -p webhook-server --features shopify
[[ -x "$SERVER_BIN" ]] || { echo "SERVER_BIN $SERVER_BIN is not an executable" >&2; exit 1; }
SCRIPT="$ROOT/target/create.lua"
BODY_FILE="$SHARED/bench/products_create.json"
if [[ "${BODY:-}" == large ]]; then
    BODY_FILE="$ROOT/target/products_create_large.json"
    SCRIPT="$ROOT/target/create-large.lua"
    python3 "$ROOT/apps/webhook-server/bench/mk_large_body.py" "$SHARED/bench/products_create.json" "$BODY_FILE"
fi
if (( PRODUCTS > 1 )); then
    # PRODUCTS signed variants of the body, one product id each: dispatch
    # (in order per product) then runs that many products side by side.
    SCRIPT="$ROOT/target/create-$PRODUCTS.lua"
    python3 "$ROOT/apps/webhook-server/bench/mk_multi_product.py" benchsecret "$SHARED/bench/products_create.json" "$SCRIPT" /webhooks/shopify/products/create "$PRODUCTS"
else
    python3 "$SHARED/bench/mk_wrk_script.py" benchsecret "$BODY_FILE" "$SCRIPT" /webhooks/shopify/products/create
fi

WORK="$(mktemp -d)"
PID=""
cleanup() {
    stop
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_up() {
    local port=$1
    for _ in $(seq 1 200); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/webhooks/shopify/products/create" -X POST 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "server on port $port did not start" >&2; exit 1
}

PG_SCHEMA=""
stop() {
    if [[ -n "$PID" ]]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi
    if [[ -n "$PG_SCHEMA" ]]; then
        PGOPTIONS="-c client_min_messages=warning" psql -q "$BENCH_DATABASE_URL" -c "DROP SCHEMA IF EXISTS \"$PG_SCHEMA\" CASCADE" >/dev/null || true
        PG_SCHEMA=""
    fi
}

# Converts a wrk latency (850.00us, 1.23ms, 1.01s) to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'; }

# start NAME: starts the floor or the server (memory/sqlite) on $PORT.
start() {
    local name=$1
    PORT=$(free_port)
    case "$name" in
        floor)
            APP_PORT=$PORT target/floor/release/ingest-floor >"$WORK/$name.log" 2>&1 &
            ;;
        postgres)
            [[ -n "${BENCH_DATABASE_URL:-}" ]] || { echo "the postgres store needs BENCH_DATABASE_URL" >&2; exit 1; }
            PG_SCHEMA="bench_$$_$RANDOM"
            env -i PATH="$PATH" APP_PORT="$PORT" SHOPIFY_WEBHOOK_SECRET=benchsecret \
                CATALOG_DATABASE_URL="$BENCH_DATABASE_URL" CATALOG_DATABASE__SCHEMA="$PG_SCHEMA" \
                CATALOG_RATE_LIMIT__ENABLED=false \
                CATALOG_LOG__LEVEL=warn $SERVER_ENV \
                "$SERVER_BIN" >"$WORK/$name.log" 2>&1 &
            ;;
        memory|sqlite|sqlite-normal)
            local url="memory://" durability=power_loss
            [[ "$name" == sqlite* ]] && url="sqlite://$WORK/bench.db"
            [[ "$name" == sqlite-normal ]] && durability=process_crash
            rm -f "$WORK"/bench.db*
            env -i PATH="$PATH" APP_PORT="$PORT" SHOPIFY_WEBHOOK_SECRET=benchsecret \
                CATALOG_DATABASE_URL="$url" CATALOG_DATABASE__DURABILITY="$durability" \
                CATALOG_RATE_LIMIT__ENABLED=false \
                CATALOG_LOG__LEVEL=warn $SERVER_ENV \
                "$SERVER_BIN" >"$WORK/$name.log" 2>&1 &
            ;;
    esac
    PID=$!
    wait_up "$PORT"
}

declare -A RPS P50 P99 RSS CPU DISP WB
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
run_wrk() {
    local name=$1 out t0 t1 n w0 w1
    t0=$(cpu_ticks "$PID")
    w0=$(written "$PID")
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$SCRIPT" "http://127.0.0.1:$PORT")
    t1=$(cpu_ticks "$PID")
    w1=$(written "$PID")
    n=$(echo "$out" | awk '/requests in/ { print $1 }')
    # Server CPU time per request (user + system, all threads), microseconds:
    # less sensitive to what else runs on the machine than req/s.
    CPU[$name]=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", (b - a) / hz * 1e6 / n }')
    # Bytes the server caused to be written to the disk per request (WAL,
    # database, checkpoints; 0 for the floor and the memory store).
    WB[$name]=$(awk -v a="$w0" -v b="$w1" -v n="$n" 'BEGIN { printf "%.0f", (b - a) / n }')
    echo "$out" >"$WORK/$name.wrk"
    RPS[$name]=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
    P50[$name]=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
    P99[$name]=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
    local non2xx
    non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
    if [[ -n "$non2xx" ]]; then echo "WARNING: $name answered $non2xx non-2xx responses" >&2; fi
}

written() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

dispatched() {
    curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^webhook_dispatch_total\{result="delivered"\}/ { printf "%d", $2 }'
}

stored() {
    curl -s "http://127.0.0.1:$PORT/metrics" | awk -F' ' '/^webhook_deliveries_total.*outcome="stored"/ { s += $2 } END { printf "%d", s }'
}

echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for name in $STORES; do
    echo "== $name" >&2
    start "$name"
    # Short warm-up so connection set-up and first allocations are not measured.
    wrk -t1 -c"$CONNECTIONS" -d2s -s "$SCRIPT" "http://127.0.0.1:$PORT" >/dev/null
    run_wrk "$name"
    # Dispatch runs beside ingestion at a lower priority: how much of what
    # was stored had been handed to the sinks when the load stopped.
    if [[ "$name" != floor ]]; then DISP[$name]="$(dispatched)/$(stored)"; fi
    if [[ "$MODE" == rss && "$name" != floor ]]; then
        while (( $(stored) < RSS_TARGET )); do
            wrk -t1 -c"$CONNECTIONS" -d20s -s "$SCRIPT" "http://127.0.0.1:$PORT" >/dev/null
        done
        sleep 2
        RSS[$name]="$(rss_mib "$PID") MiB after $(stored) stored"
    fi
    stop
done

floor=${RPS[floor]}
printf '\n%-14s %10s %7s %8s %8s %12s %14s %17s  %s\n' store "req/s" ratio "p50 ms" "p99 ms" "cpu us/req" "disk B/req" "dispatched/stored" "RSS"
for name in $STORES; do
    ratio=$(awk -v a="${RPS[$name]}" -v b="$floor" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-14s %10s %7s %8s %8s %12s %14s %17s  %s\n' "$name" "${RPS[$name]}" "$ratio" "${P50[$name]}" "${P99[$name]}" "${CPU[$name]}" "${WB[$name]}" "${DISP[$name]:-}" "${RSS[$name]:-}"
done
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency${SERVER_ENV:+, server env: $SERVER_ENV}, load after: $(cut -d' ' -f1-3 /proc/loadavg)"
