#!/usr/bin/env bash
# Load benchmark of the SQLite store on a large file: millions of delivered
# events, as a store with 30 days of retention holds.
#
#   apps/webhook-server/bench/large-store.sh [BIN...]
#
# Fills a snapshot once (EVENTS deliveries of 1,000 products through the
# server, then marked delivered, as the dispatcher would have; kept in
# SNAPSHOT for the next runs), then for each binary (default: the release
# build of this tree) starts the server with its defaults (fsync before each
# answer, dispatch on) on a fresh copy of the snapshot and prints the time to
# ready, then req/s, p99 and bytes written per request for WINDOWS windows of
# wrk -t1 -c32 -d8s with the 1,000-product script, and RSS at the end.
# Needs wrk, python3 and about three times the snapshot's size in free disk
# (3 M events: 4.3 GB).
# Environment: EVENTS (3000000), WINDOWS (3), SNAPSHOT (target/large-store/snap.db).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
EVENTS="${EVENTS:-3000000}"
WINDOWS="${WINDOWS:-3}"
SNAPSHOT="${SNAPSHOT:-$ROOT/target/large-store/snap.db}"
cd "$ROOT"
command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }

if (( $# == 0 )); then
    cargo build --release --quiet -p webhook-server --features shopify
    set -- "$ROOT/target/release/webhook-server"
fi
SCRIPT="$ROOT/target/create-1000.lua"
python3 "$ROOT/apps/webhook-server/bench/mk_multi_product.py" benchsecret \
    "$SHARED/bench/products_create.json" "$SCRIPT" /webhooks/shopify/products/create 1000

DIR="$(dirname "$SNAPSHOT")"
mkdir -p "$DIR"
DB="$DIR/run.db"
PORT=18590
PID=""
cleanup() {
    if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -f "$DB" "$DB-wal" "$DB-shm"
}
trap cleanup EXIT

wait_up() {
    for _ in $(seq 1 1500); do
        if curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/webhooks/shopify/products/create"; then return 0; fi
        sleep 0.02
    done
    echo "server did not start" >&2; exit 1
}
stored() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^webhook_store_events /{ print $2 }'; }

if [[ ! -f "$SNAPSHOT" ]]; then
    echo "== filling $SNAPSHOT with $EVENTS events (once)" >&2
    rm -f "$DB" "$DB-wal" "$DB-shm"
    env -i PATH="$PATH" APP_PORT="$PORT" SHOPIFY_WEBHOOK_SECRET=benchsecret \
        CATALOG_DATABASE_URL="sqlite://$DB" CATALOG_DATABASE__DURABILITY=process_crash \
        CATALOG_DISPATCH__ENABLED=false CATALOG_RATE_LIMIT__ENABLED=false CATALOG_LOG__LEVEL=warn \
        "$1" >/dev/null 2>&1 &
    PID=$!
    wait_up
    while (( $(stored) < EVENTS )); do
        wrk -t1 -c32 -d15s -s "$SCRIPT" "http://127.0.0.1:$PORT" >/dev/null
    done
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
    python3 - "$DB" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE events SET status = 'delivered', ready = 0 WHERE status = 'pending'")
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print("snapshot:", c.execute("SELECT COUNT(*) FROM events").fetchone()[0], "events", file=sys.stderr)
PY
    mv "$DB" "$SNAPSHOT"
    rm -f "$DB-wal" "$DB-shm"
fi

echo "== machine: $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg), snapshot $(du -h "$SNAPSHOT" | cut -f1)" >&2
for bin in "$@"; do
    cp "$SNAPSHOT" "$DB"
    rm -f "$DB-wal" "$DB-shm"
    # The copy's gigabytes are written back before the server starts, not
    # in its first window.
    sync
    t0=$(date +%s.%N)
    env -i PATH="$PATH" APP_PORT="$PORT" SHOPIFY_WEBHOOK_SECRET=benchsecret \
        CATALOG_DATABASE_URL="sqlite://$DB" CATALOG_RATE_LIMIT__ENABLED=false CATALOG_LOG__LEVEL=warn \
        "$bin" >/dev/null 2>&1 &
    PID=$!
    wait_up
    t1=$(date +%s.%N)
    line="$(basename "$bin") ready in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
    for _ in $(seq 1 "$WINDOWS"); do
        w0=$(awk '/^write_bytes:/ { print $2 }' "/proc/$PID/io")
        out=$(wrk -t1 -c32 -d8s --latency -s "$SCRIPT" "http://127.0.0.1:$PORT")
        w1=$(awk '/^write_bytes:/ { print $2 }' "/proc/$PID/io")
        n=$(echo "$out" | awk '/requests in/ { print $1 }')
        line="$line | $(echo "$out" | awk -v wb=$(( (w1 - w0) / n )) \
            '/^Requests\/sec/ { r = $2 } $1 == "99%" { p = $2 } END { printf "%d req/s, p99 %s, %d B/req", r, p, wb }')"
    done
    echo "$line | RSS $(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$PID/status") MiB"
    kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
