#!/usr/bin/env bash
# Instructions the server executes per delivery, counted by valgrind's
# callgrind: repeatable for the same binary and input whatever else the
# machine does (unlike req/s on a shared VM), so a change's cost on the
# request path shows even when it is inside the noise of wrk runs.
#
#   apps/webhook-server/bench/instructions.sh                 # target/release/webhook-server
#   apps/webhook-server/bench/instructions.sh OLD_BIN NEW_BIN # compare builds
#
# Each binary runs under callgrind twice per store (memory, sqlite), with
# dispatch off and one worker, taking SMALL then LARGE deliveries from one
# sequential client (so every SQLite batch holds one insert); the figure is
# (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL): start-up and shutdown cancel
# out. Environment: SMALL (500), LARGE (2000), STORES ("memory sqlite"),
# SHARED (../shared). Needs valgrind and python3; takes about a minute a
# binary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
SMALL="${SMALL:-500}"
LARGE="${LARGE:-2000}"
STORES="${STORES:-memory sqlite}"
BINS=("$@")
if (( ${#BINS[@]} == 0 )); then
    (cd "$ROOT" && cargo build --release --quiet -p webhook-server)
    BINS=("$ROOT/target/release/webhook-server")
fi
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install -y valgrind" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ir BIN STORE N: total instructions of one run of N deliveries.
ir() {
    local bin=$1 store=$2 n=$3 work port pid url ok
    work=$(mktemp -d)
    port=$(free_port)
    url="memory://"
    [[ $store == sqlite ]] && url="sqlite://$work/bench.db"
    env -i PATH="$PATH" APP_PORT="$port" SHOPIFY_WEBHOOK_SECRET=benchsecret \
        CATALOG_DATABASE_URL="$url" CATALOG_RATE_LIMIT__ENABLED=false CATALOG_LOG__LEVEL=warn \
        CATALOG_DISPATCH__ENABLED=false CATALOG_SERVER__WORKERS=1 \
        valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" >"$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
        sleep 0.1
    done
    ok=$(python3 "$ROOT/apps/webhook-server/bench/send_sequential.py" "$port" "$n" "run$n" benchsecret "$SHARED/bench/products_create.json")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    (( ok == n )) || { echo "$bin $store: only $ok of $n answered 200" >&2; exit 1; }
    awk '/^(summary|totals):/ { print $2; exit }' "$work/cg.out"
    rm -rf "$work"
}

printf '%-40s %-8s %14s\n' binary store "instr/delivery"
for bin in "${BINS[@]}"; do
    for store in $STORES; do
        small=$(ir "$bin" "$store" "$SMALL")
        large=$(ir "$bin" "$store" "$LARGE")
        printf '%-40s %-8s %14.0f\n' "$bin" "$store" "$(awk -v a="$small" -v b="$large" -v s="$SMALL" -v l="$LARGE" 'BEGIN { print (b - a) / (l - s) }')"
    done
done
