#!/usr/bin/env bash
# How far below the ingest floor the issue's pipeline must sit on this
# machine, whoever implements it: runs the shared floor's work plus one
# mandated step at a time (ceiling/src/main.rs), then webhook-server's own
# stores, with the same wrk line as run.sh, ROUNDS times alternated, and
# prints each run's req/s, its ratio to the floor of the same round, and the
# server's CPU time per request.
#
#   apps/webhook-server/bench/ceiling.sh
#
# Environment: DURATION (8s), ROUNDS (2), CONNECTIONS (32), SHARED (../shared),
# STEPS (floor answer skim memory log log-nosync sqlite sqlite-normal server-memory server-memory-nodispatch server-sqlite server-sqlite-normal).
# server-memory-nodispatch is the memory store with the dispatcher off: the
# request path alone, to set beside the `memory` step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
DURATION="${DURATION:-8s}"
ROUNDS="${ROUNDS:-2}"
CONNECTIONS="${CONNECTIONS:-32}"
STEPS="${STEPS:-floor answer skim memory log log-nosync sqlite sqlite-normal server-memory server-memory-nodispatch server-sqlite server-sqlite-normal}"
cd "$ROOT"
command -v wrk >/dev/null || { echo "wrk not found: apt-get update && apt-get install -y wrk" >&2; exit 1; }

echo "== building release binaries" >&2
cargo build --release --quiet --manifest-path apps/webhook-server/bench/ceiling/Cargo.toml --target-dir target/floor
cargo build --release --quiet -p webhook-server --features shopify
SCRIPT="$ROOT/target/create.lua"
python3 "$SHARED/bench/mk_wrk_script.py" benchsecret "$SHARED/bench/products_create.json" "$SCRIPT" /webhooks/shopify/products/create

WORK="$(mktemp -d)"
PID=""
cleanup() {
    if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
    local step=$1
    PORT=$(free_port)
    rm -f "$WORK"/*.db*
    case "$step" in
        server-memory|server-memory-nodispatch|server-sqlite|server-sqlite-normal)
            local url="memory://" durability=power_loss dispatch=true
            [[ "$step" == server-memory-nodispatch ]] && dispatch=false
            [[ "$step" == server-sqlite* ]] && url="sqlite://$WORK/server.db"
            [[ "$step" == server-sqlite-normal ]] && durability=process_crash
            env -i PATH="$PATH" APP_PORT="$PORT" SHOPIFY_WEBHOOK_SECRET=benchsecret \
                CATALOG_DATABASE_URL="$url" CATALOG_DATABASE__DURABILITY="$durability" CATALOG_RATE_LIMIT__ENABLED=false \
                CATALOG_DISPATCH__ENABLED="$dispatch" CATALOG_LOG__LEVEL=warn target/release/webhook-server >"$WORK/log" 2>&1 &
            ;;
        *)
            STEP="$step" DB="$WORK/ceiling.db" APP_PORT="$PORT" target/floor/release/ingest-ceiling >"$WORK/log" 2>&1 &
            ;;
    esac
    PID=$!
    for _ in $(seq 1 200); do
        curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/webhooks/shopify/products/create" && return 0
        sleep 0.05
    done
    echo "$step did not start: $(cat "$WORK/log")" >&2; exit 1
}

echo "== machine: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf '%-6s %-25s %10s %7s %12s\n' round step "req/s" ratio "cpu us/req"
for round in $(seq 1 "$ROUNDS"); do
    floor=""
    for step in $STEPS; do
        start "$step"
        wrk -t1 -c"$CONNECTIONS" -d2s -s "$SCRIPT" "http://127.0.0.1:$PORT" >/dev/null
        t0=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
        out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$SCRIPT" "http://127.0.0.1:$PORT")
        t1=$(awk '{ print $14 + $15 }' "/proc/$PID/stat")
        kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
        rps=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
        n=$(echo "$out" | awk '/requests in/ { print $1 }')
        [[ "$step" == floor ]] && floor=$rps
        ratio=$(awk -v a="$rps" -v b="${floor:-$rps}" 'BEGIN { printf "%.2fx", a / b }')
        cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / n }')
        printf '%-6s %-25s %10s %7s %12s\n' "$round" "$step" "$rps" "$ratio" "$cpu"
    done
done
echo "wrk -t1 -c$CONNECTIONS -d$DURATION, load after: $(cut -d' ' -f1-3 /proc/loadavg)"
