#!/usr/bin/env bash
# How fast `webhook-server copy-store` moves a SQLite file's events into
# PostgreSQL and into another SQLite file.
#
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
#       apps/webhook-server/bench/copy.sh
#
# Fills a SQLite file by running the server under wrk for FILL (20s) with
# signed Shopify products/create deliveries of PRODUCTS (1000) products in
# turn, the dispatcher on (log sink), so the file holds delivered and
# pending events as a live one does; stops it; then times copy-store into a
# fresh PostgreSQL schema (dropped after; skipped without
# BENCH_DATABASE_URL) and into a new SQLite file, and prints events a
# second. Needs wrk, python3 and psql. SERVER_BIN as in run.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
FILL="${FILL:-20s}"
PRODUCTS="${PRODUCTS:-1000}"
SERVER_BIN="${SERVER_BIN:-target/release/webhook-server}"
cd "$ROOT"

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
if [[ "$SERVER_BIN" == target/release/webhook-server ]]; then
    cargo build --release --quiet -p webhook-server
fi
SCRIPT="$ROOT/target/create-$PRODUCTS.lua"
python3 "$ROOT/apps/webhook-server/bench/mk_multi_product.py" benchsecret \
    "$SHARED/bench/products_create.json" "$SCRIPT" /webhooks/shopify/products/create "$PRODUCTS"

WORK="$(mktemp -d)"
PID=""
PG_SCHEMA="copy_bench_$$"
cleanup() {
    if [[ -n "$PID" ]]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    if [[ -n "${BENCH_DATABASE_URL:-}" ]]; then
        PGOPTIONS="-c client_min_messages=warning" psql -q "$BENCH_DATABASE_URL" \
            -c "DROP SCHEMA IF EXISTS \"$PG_SCHEMA\" CASCADE" >/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export CATALOG_DATABASE_URL="sqlite://$WORK/source.db" SHOPIFY_WEBHOOK_SECRET=benchsecret \
    CATALOG_RATE_LIMIT__ENABLED=false CATALOG_LOG__LEVEL=warn
APP_PORT=$PORT "$SERVER_BIN" >/dev/null 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "== filling $WORK/source.db for $FILL ($PRODUCTS products)" >&2
wrk -t1 -c32 -d"$FILL" -s "$SCRIPT" "http://127.0.0.1:$PORT" | grep -E 'Requests/sec' >&2
kill -TERM "$PID"; wait "$PID" || true; PID=""
printf '%s\n' "$(du -h "$WORK/source.db" | cut -f1) file"

copy() { # label, --to URL [args]
    local label=$1; shift
    local start end out
    start=$(date +%s.%N)
    out=$("$SERVER_BIN" copy-store "$@" 2>/dev/null)
    end=$(date +%s.%N)
    python3 - "$label" "$start" "$end" "$out" <<'EOF'
import re, sys
label, start, end, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
n = int(re.match(r"copied (\d+) events", out).group(1))
secs = end - start
print(f"{label:<12} {n:>9,} events in {secs:6.1f} s = {n / secs:>8,.0f} events/s   ({out.strip()})")
EOF
}
if [[ -n "${BENCH_DATABASE_URL:-}" ]]; then
    copy postgres --to "$BENCH_DATABASE_URL" --to-schema "$PG_SCHEMA"
else
    echo "postgres: skipped (BENCH_DATABASE_URL unset)"
fi
copy sqlite --to "sqlite://$WORK/target.db"
copy "sqlite again" --to "sqlite://$WORK/target.db"
