#!/usr/bin/env bash
# Scale-out benchmark: two webhook-server replicas sharing one PostgreSQL
# schema and publishing to NATS JetStream, every delivery sent to BOTH
# replicas at the same moment (the worst case of a platform delivering one
# event to two replicas).
#
#   apps/webhook-server/bench/replicas.sh
#
# Builds the release binary (features shopify + the defaults postgres, nats)
# and the load generator (examples/replica_load.rs), starts both replicas at
# once on free ports (so their migrations race too), sends WARMUP untimed then
# DELIVERIES timed deliveries (signed Shopify products/create, event ids
# <run>-0, <run>-1, ..., product ids cycling over PRODUCTS), waits until
# dispatch has drained, then checks:
#   - every request was answered 200,
#   - stored events == unique deliveries (duplicates stored once),
#   - every stored event is delivered,
#   - JetStream stream messages == stored events (each event published once,
#     duplicates dropped by Nats-Msg-Id).
# Prints throughput, latency, the dispatch rate and the machine load; exits 1
# when a check fails. Uses a schema and a stream of its own, removed at exit.
#
# Environment: BENCH_DATABASE_URL (else TEST_DATABASE_URL, else
# postgres://postgres@127.0.0.1:5432/postgres), BENCH_NATS_URL (else
# TEST_NATS_URL, else nats://127.0.0.1:4222), DELIVERIES (20000), WARMUP
# (2000), CONCURRENCY (32 deliveries in flight, so 64 requests), PRODUCTS
# (500), POOL (16 connections per replica), SHARED (../shared), REPLICAS (2;
# 1 runs the same load against a single replica, each delivery sent once, as
# the baseline to compare with).
# Needs psql and python3 (for a free port).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
DATABASE_URL="${BENCH_DATABASE_URL:-${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}"
NATS_URL="${BENCH_NATS_URL:-${TEST_NATS_URL:-nats://127.0.0.1:4222}}"
DELIVERIES="${DELIVERIES:-20000}"
WARMUP="${WARMUP:-2000}"
CONCURRENCY="${CONCURRENCY:-32}"
PRODUCTS="${PRODUCTS:-500}"
POOL="${POOL:-16}"
REPLICAS="${REPLICAS:-2}"
cd "$ROOT"

command -v psql >/dev/null || { echo "psql not found (apt-get install -y postgresql-client)" >&2; exit 1; }
psql "$DATABASE_URL" -Atqc 'SELECT 1' >/dev/null || { echo "PostgreSQL not reachable" >&2; exit 1; }

RUN="r$$x$(date +%s)"
SCHEMA="bench_${RUN}"
STREAM="BENCH_${RUN^^}"
SUBJECTS="bench.${RUN}"
BODY="$SHARED/bench/products_create.json"

echo "== building release binaries" >&2
cargo build --release --quiet -p webhook-server --features shopify --bin webhook-server --example replica_load
SERVER="$ROOT/target/release/webhook-server"
LOAD="$ROOT/target/release/examples/replica_load"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    psql "$DATABASE_URL" -Atqc "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" >/dev/null 2>&1 || true
    "$LOAD" stream-count --nats-url "$NATS_URL" --stream "$STREAM" --delete >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_replica() {
    local name=$1 port=$2
    env -i PATH="$PATH" APP_PORT="$port" SHOPIFY_WEBHOOK_SECRET=benchsecret \
        CATALOG_DATABASE_URL="$DATABASE_URL" CATALOG_DATABASE__SCHEMA="$SCHEMA" \
        CATALOG_DATABASE__MAX_CONNECTIONS="$POOL" \
        CATALOG_RATE_LIMIT__ENABLED=false CATALOG_LOG__LEVEL=warn \
        CATALOG_DISPATCH__LOG=false CATALOG_DISPATCH__POLL_INTERVAL_MS=200 \
        CATALOG_NATS__URL="$NATS_URL" CATALOG_NATS__STREAM="$STREAM" \
        CATALOG_NATS__SUBJECT_PREFIX="$SUBJECTS" \
        "$SERVER" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}

wait_up() {
    local port=$1
    for _ in $(seq 1 300); do
        if curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "replica on port $port did not start:" >&2
    cat "$WORK"/*.log >&2
    exit 1
}

sql() { psql "$DATABASE_URL" -Atqc "SET search_path TO \"$SCHEMA\"; $1"; }

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
PORT_A=$(free_port)
PORT_B=$(free_port)
TARGETS="http://127.0.0.1:$PORT_A"
echo "== starting $REPLICAS replica(s) (schema $SCHEMA, stream $STREAM)" >&2
start_replica a "$PORT_A"
if [[ "$REPLICAS" == 2 ]]; then
    start_replica b "$PORT_B"
    TARGETS="$TARGETS,http://127.0.0.1:$PORT_B"
fi
wait_up "$PORT_A"
[[ "$REPLICAS" == 2 ]] && wait_up "$PORT_B"

echo "== load: $WARMUP warm-up + $DELIVERIES timed deliveries, each to all $REPLICAS replica(s), $CONCURRENCY in flight" >&2
T0=$(date +%s.%N)
"$LOAD" load --targets "$TARGETS" \
    --deliveries "$DELIVERIES" --warmup "$WARMUP" --concurrency "$CONCURRENCY" \
    --secret benchsecret --body "$BODY" --prefix "$RUN" --products "$PRODUCTS" | tee "$WORK/load.out" >&2
T1=$(date +%s.%N)
LOAD_DURING="$(cut -d' ' -f1-3 /proc/loadavg)"
get() { awk -F= -v k="$1" '$1 == k { print $2 }' "$WORK/load.out"; }

echo "== waiting for dispatch to drain" >&2
for _ in $(seq 1 3000); do
    [[ "$(sql "SELECT count(*) FROM events WHERE status = 'pending'")" == 0 ]] && break
    sleep 0.1
done
T2=$(date +%s.%N)

UNIQUE=$(get unique_deliveries)
STORED=$(sql "SELECT count(*) FROM events")
DISTINCT=$(sql "SELECT count(DISTINCT event_id) FROM events")
DELIVERED=$(sql "SELECT count(*) FROM events WHERE status = 'delivered'")
PENDING=$(sql "SELECT count(*) FROM events WHERE status = 'pending'")
MESSAGES=$("$LOAD" stream-count --nats-url "$NATS_URL" --stream "$STREAM" | awk -F= '/^stream_messages=/ { print $2 }')
RSS_A=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/${PIDS[0]}/status")
RSS_B=-
[[ "$REPLICAS" == 2 ]] && RSS_B=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/${PIDS[1]}/status")
DISPATCH_RATE=$(awk -v n="$STORED" -v a="$T0" -v b="$T2" 'BEGIN { printf "%.0f", n / (b - a) }')
DRAIN_AFTER=$(awk -v a="$T1" -v b="$T2" 'BEGIN { printf "%.1f", b - a }')

FAIL=0
check() { # name expected actual
    if [[ "$2" == "$3" ]]; then echo "PASS $1: $3"; else echo "FAIL $1: expected $2, got $3"; FAIL=1; fi
}
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); PostgreSQL $(psql "$DATABASE_URL" -Atqc 'SHOW server_version'); load average before $LOAD_BEFORE, after load $LOAD_DURING, after drain $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$REPLICAS replica(s), pool $POOL each; $CONCURRENCY deliveries in flight, each sent to every replica at once ($((CONCURRENCY * REPLICAS)) requests); DB URL $(echo "$DATABASE_URL" | sed -E 's#://([^:/@]+):[^@]*@#://\1:[redacted]@#')"
printf '%-34s %s\n' "timed requests ($REPLICAS per delivery)" "$(get timed_requests)"
printf '%-34s %s req/s (%s deliveries/s)\n' "ingest throughput" "$(get req_per_s)" "$(get deliveries_per_s)"
printf '%-34s p50 %s ms, p99 %s ms, max %s ms\n' "request latency" "$(get p50_ms)" "$(get p99_ms)" "$(get max_ms)"
printf '%-34s %s events/s (load start to queue empty; drained %s s after the load)\n' "dispatch to JetStream" "$DISPATCH_RATE" "$DRAIN_AFTER"
printf '%-34s A %s MiB, B %s MiB\n' "replica RSS at the end" "$RSS_A" "$RSS_B"
check "non-200 answers + transport errors" 0 "$(( $(get non_200) + $(get errors) ))"
check "stored events == unique deliveries" "$UNIQUE" "$STORED"
check "distinct event ids stored" "$UNIQUE" "$DISTINCT"
check "delivered == stored (pending $PENDING)" "$STORED" "$DELIVERED"
check "JetStream messages == stored events" "$STORED" "$MESSAGES"
exit "$FAIL"
