//! The schema: its migrations, run by sqlx's migrator under its advisory
//! lock, so that replicas starting together do not race.

use super::*;

/// Schema migrations, applied in order at start-up and recorded in
/// `_sqlx_migrations` (in the store's schema). Only ever append: sqlx refuses
/// to start when an applied migration's text changed.
pub(super) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "events",
        r"
CREATE TABLE events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              TEXT        NOT NULL UNIQUE,
    platform        TEXT        NOT NULL,
    store           TEXT        NOT NULL,
    topic           TEXT        NOT NULL,
    raw_topic       TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    delivery_id     TEXT,
    product_id      TEXT,
    product_key     TEXT        NOT NULL,
    triggered_at    TIMESTAMPTZ,
    received_at     TIMESTAMPTZ NOT NULL,
    product         TEXT,
    raw_body        BYTEA       NOT NULL,
    status          TEXT        NOT NULL
        CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    error           TEXT,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ
);
CREATE INDEX events_pending ON events (seq) WHERE status = 'pending';
CREATE INDEX events_pending_product ON events (platform, store, product_key, seq)
    WHERE status = 'pending';
",
    ),
    (
        2,
        "ready heads",
        r"
-- `ready` marks the one claimable event of each product: its oldest pending
-- event. Claims then read only ready rows, so their cost no longer grows with
-- the events queued behind them (a downstream outage with a large backlog
-- made every claim scan the whole backlog).
ALTER TABLE events ADD COLUMN ready BOOLEAN NOT NULL DEFAULT false;
UPDATE events e SET ready = true
    WHERE e.status = 'pending'
      AND NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending'
          AND o.platform = e.platform AND o.store = e.store
          AND o.product_key = e.product_key AND o.seq < e.seq);
CREATE INDEX events_ready ON events (seq) WHERE status = 'pending' AND ready;

-- Every change to a product's pending events (insert, completion, replay)
-- first takes the product's advisory transaction lock (released at commit),
-- so the flag moves from one event to the next without races between
-- replicas. Statements inside these (volatile, PL/pgSQL: plans cached per
-- connection) functions each take a fresh snapshot, so after the lock they
-- see everything the previous holder committed.
CREATE FUNCTION catalog_insert_event(
    p_id text, p_platform text, p_store text, p_topic text, p_raw_topic text,
    p_event_id text, p_delivery_id text, p_product_id text, p_product_key text,
    p_triggered_at timestamptz, p_received_at timestamptz, p_product text,
    p_raw_body bytea, p_status text, p_error text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF p_status = 'pending' THEN
        PERFORM pg_advisory_xact_lock(
            hashtextextended(p_platform || chr(31) || p_store || chr(31) || p_product_key, 20261128));
    END IF;
    INSERT INTO events (id, platform, store, topic, raw_topic, event_id, delivery_id,
        product_id, product_key, triggered_at, received_at, product, raw_body, status,
        error, next_attempt_at, ready)
    VALUES (p_id, p_platform, p_store, p_topic, p_raw_topic, p_event_id, p_delivery_id,
        p_product_id, p_product_key, p_triggered_at, p_received_at, p_product, p_raw_body,
        p_status, p_error, statement_timestamp(),
        p_status = 'pending' AND NOT EXISTS (SELECT 1 FROM events o
            WHERE o.status = 'pending' AND o.platform = p_platform AND o.store = p_store
              AND o.product_key = p_product_key))
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n = 1;
END
$$;

CREATE FUNCTION catalog_complete_event(
    p_id text, p_worker text, p_status text, p_error text, p_delay_ms bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    k record;
    was_ready boolean;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(
        hashtextextended(k.platform || chr(31) || k.store || chr(31) || k.product_key, 20261128));
    SELECT ready INTO was_ready FROM events WHERE id = p_id;
    UPDATE events SET status = p_status, attempts = attempts + 1,
        last_error = COALESCE(p_error, last_error),
        next_attempt_at = statement_timestamp() + p_delay_ms * interval '1 millisecond',
        lease_owner = NULL, lease_until = NULL,
        ready = ready AND p_status = 'pending'
    WHERE id = p_id AND lease_owner = p_worker AND status = 'pending';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The product's ready event left `pending`: its oldest pending one is next.
    IF was_ready AND p_status <> 'pending' THEN
        UPDATE events SET ready = true
        WHERE seq = (SELECT min(seq) FROM events WHERE status = 'pending'
            AND platform = k.platform AND store = k.store AND product_key = k.product_key);
    END IF;
    RETURN true;
END
$$;

CREATE FUNCTION catalog_replay_event(p_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(
        hashtextextended(k.platform || chr(31) || k.store || chr(31) || k.product_key, 20261128));
    -- Ready at once unless another event of the product is (it goes first,
    -- then this one, as the oldest pending).
    UPDATE events SET status = 'pending', attempts = 0,
        next_attempt_at = statement_timestamp(), lease_owner = NULL, lease_until = NULL,
        ready = NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' AND o.ready
            AND o.platform = k.platform AND o.store = k.store
            AND o.product_key = k.product_key AND o.id <> p_id)
    WHERE id = p_id;
    RETURN true;
END
$$;
",
    ),
    (
        3,
        "retention",
        r"
-- Finished events by age, for retention (EventStore::prune): deleting the
-- oldest reads these instead of scanning the table. IF NOT EXISTS: on a
-- large table an operator may build them beforehand with CREATE INDEX
-- CONCURRENTLY (same names and definitions), which does not block writes.
CREATE INDEX IF NOT EXISTS events_delivered_age ON events (received_at)
    WHERE status = 'delivered';
CREATE INDEX IF NOT EXISTS events_failed_age ON events (received_at)
    WHERE status IN ('failed', 'dead');
",
    ),
    (
        4,
        "replay waits for the attempt in flight",
        r"
-- As catalog_replay_event, but an event a dispatcher holds (lease not run
-- out) is left alone: 'in_flight'. Else 'queued', or 'not_found'. The old
-- function stays for replicas of the previous version during an upgrade.
CREATE FUNCTION catalog_replay(p_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    PERFORM pg_advisory_xact_lock(
        hashtextextended(k.platform || chr(31) || k.store || chr(31) || k.product_key, 20261128));
    UPDATE events SET status = 'pending', attempts = 0,
        next_attempt_at = statement_timestamp(), lease_owner = NULL, lease_until = NULL,
        ready = NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' AND o.ready
            AND o.platform = k.platform AND o.store = k.store
            AND o.product_key = k.product_key AND o.id <> p_id)
    WHERE id = p_id
        AND NOT (status = 'pending' AND lease_until IS NOT NULL
            AND lease_until > statement_timestamp());
    IF FOUND THEN
        RETURN 'queued';
    END IF;
    RETURN 'in_flight';
END
$$;
",
    ),
    (
        5,
        "replay in receipt order",
        r"
-- As in migration 4, but the replayed event takes its place by receipt
-- order: the product's ready event keeps its turn only while a dispatcher
-- holds it or it has been tried (its retry goes first); otherwise the
-- product's oldest pending event becomes ready, so a replayed event goes
-- before the newer ones and the product's newest event still goes last.
-- Replaced in place: same signature and answers for every replica.
CREATE OR REPLACE FUNCTION catalog_replay(p_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    PERFORM pg_advisory_xact_lock(
        hashtextextended(k.platform || chr(31) || k.store || chr(31) || k.product_key, 20261128));
    UPDATE events SET status = 'pending', attempts = 0,
        next_attempt_at = statement_timestamp(), lease_owner = NULL, lease_until = NULL,
        ready = ready AND status = 'pending'
    WHERE id = p_id
        AND NOT (status = 'pending' AND lease_until IS NOT NULL
            AND lease_until > statement_timestamp());
    IF NOT FOUND THEN
        RETURN 'in_flight';
    END IF;
    -- Row locks settle a race with a claim: a head leased meanwhile fails
    -- the lease condition here and keeps its turn; one unreadied here is
    -- skipped by claims (SKIP LOCKED, then no longer ready).
    UPDATE events SET ready = false
    WHERE status = 'pending' AND ready
        AND platform = k.platform AND store = k.store AND product_key = k.product_key
        AND attempts = 0
        AND (lease_until IS NULL OR lease_until <= statement_timestamp());
    IF NOT EXISTS (SELECT 1 FROM events WHERE status = 'pending' AND ready
            AND platform = k.platform AND store = k.store AND product_key = k.product_key) THEN
        UPDATE events SET ready = true
        WHERE seq = (SELECT min(seq) FROM events WHERE status = 'pending'
            AND platform = k.platform AND store = k.store AND product_key = k.product_key);
    END IF;
    RETURN 'queued';
END
$$;
",
    ),
    (
        6,
        "batched writes, product locks per schema",
        r"
-- Product locks are per schema: two deployments in two schemas of one
-- database no longer share them (a lock held in one held up the same
-- product in the other). The functions that take them are replaced in
-- place, same signatures and answers, so replicas of every version agree.
CREATE FUNCTION catalog_product_lock(p_platform text, p_store text, p_product_key text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT hashtextextended(current_schema() || chr(31) || p_platform || chr(31) || p_store
        || chr(31) || p_product_key, 20261128)
$$;

CREATE OR REPLACE FUNCTION catalog_insert_event(
    p_id text, p_platform text, p_store text, p_topic text, p_raw_topic text,
    p_event_id text, p_delivery_id text, p_product_id text, p_product_key text,
    p_triggered_at timestamptz, p_received_at timestamptz, p_product text,
    p_raw_body bytea, p_status text, p_error text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF p_status = 'pending' THEN
        PERFORM pg_advisory_xact_lock(
            catalog_product_lock(p_platform, p_store, p_product_key));
    END IF;
    INSERT INTO events (id, platform, store, topic, raw_topic, event_id, delivery_id,
        product_id, product_key, triggered_at, received_at, product, raw_body, status,
        error, next_attempt_at, ready)
    VALUES (p_id, p_platform, p_store, p_topic, p_raw_topic, p_event_id, p_delivery_id,
        p_product_id, p_product_key, p_triggered_at, p_received_at, p_product, p_raw_body,
        p_status, p_error, statement_timestamp(),
        p_status = 'pending' AND NOT EXISTS (SELECT 1 FROM events o
            WHERE o.status = 'pending' AND o.platform = p_platform AND o.store = p_store
              AND o.product_key = p_product_key))
    ON CONFLICT (id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n = 1;
END
$$;

CREATE OR REPLACE FUNCTION catalog_complete_event(
    p_id text, p_worker text, p_status text, p_error text, p_delay_ms bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    k record;
    was_ready boolean;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(
        catalog_product_lock(k.platform, k.store, k.product_key));
    SELECT ready INTO was_ready FROM events WHERE id = p_id;
    UPDATE events SET status = p_status, attempts = attempts + 1,
        last_error = COALESCE(p_error, last_error),
        next_attempt_at = statement_timestamp() + p_delay_ms * interval '1 millisecond',
        lease_owner = NULL, lease_until = NULL,
        ready = ready AND p_status = 'pending'
    WHERE id = p_id AND lease_owner = p_worker AND status = 'pending';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The product's ready event left `pending`: its oldest pending one is next.
    IF was_ready AND p_status <> 'pending' THEN
        UPDATE events SET ready = true
        WHERE seq = (SELECT min(seq) FROM events WHERE status = 'pending'
            AND platform = k.platform AND store = k.store AND product_key = k.product_key);
    END IF;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION catalog_replay_event(p_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(
        catalog_product_lock(k.platform, k.store, k.product_key));
    -- Ready at once unless another event of the product is (it goes first,
    -- then this one, as the oldest pending).
    UPDATE events SET status = 'pending', attempts = 0,
        next_attempt_at = statement_timestamp(), lease_owner = NULL, lease_until = NULL,
        ready = NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' AND o.ready
            AND o.platform = k.platform AND o.store = k.store
            AND o.product_key = k.product_key AND o.id <> p_id)
    WHERE id = p_id;
    RETURN true;
END
$$;

CREATE OR REPLACE FUNCTION catalog_replay(p_id text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    SELECT platform, store, product_key INTO k FROM events WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    PERFORM pg_advisory_xact_lock(
        catalog_product_lock(k.platform, k.store, k.product_key));
    UPDATE events SET status = 'pending', attempts = 0,
        next_attempt_at = statement_timestamp(), lease_owner = NULL, lease_until = NULL,
        ready = ready AND status = 'pending'
    WHERE id = p_id
        AND NOT (status = 'pending' AND lease_until IS NOT NULL
            AND lease_until > statement_timestamp());
    IF NOT FOUND THEN
        RETURN 'in_flight';
    END IF;
    -- Row locks settle a race with a claim: a head leased meanwhile fails
    -- the lease condition here and keeps its turn; one unreadied here is
    -- skipped by claims (SKIP LOCKED, then no longer ready).
    UPDATE events SET ready = false
    WHERE status = 'pending' AND ready
        AND platform = k.platform AND store = k.store AND product_key = k.product_key
        AND attempts = 0
        AND (lease_until IS NULL OR lease_until <= statement_timestamp());
    IF NOT EXISTS (SELECT 1 FROM events WHERE status = 'pending' AND ready
            AND platform = k.platform AND store = k.store AND product_key = k.product_key) THEN
        UPDATE events SET ready = true
        WHERE seq = (SELECT min(seq) FROM events WHERE status = 'pending'
            AND platform = k.platform AND store = k.store AND product_key = k.product_key);
    END IF;
    RETURN 'queued';
END
$$;

-- Batched writes: several deliveries, or several dispatch outcomes, in one
-- transaction. Each first takes the advisory locks of every product it
-- touches, in ascending order of the lock key, so that any two of these
-- transactions (of any replica) take their locks in one order and cannot
-- deadlock; the per-event functions then find their product's lock held
-- (advisory locks are re-entrant within a transaction). Events stored as
-- failed take their key's lock too: a duplicate of one then waits at the
-- lock rather than on the other transaction's uncommitted row while
-- holding locks of its own. A batch waits for locks at most
-- p_lock_timeout_ms (when given): one product held up elsewhere must not
-- hold up the batch's other products, or other batches waiting for the
-- locks this one has taken, for long; the writer then retries each event
-- alone.
CREATE FUNCTION catalog_lock_products(p_keys bigint[], p_lock_timeout_ms integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    IF p_lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
    END IF;
    FOR k IN SELECT DISTINCT u FROM unnest(p_keys) AS u ORDER BY u LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

-- Several deliveries, each inserted as catalog_insert_event does, in the
-- order given. Answers whether each was inserted (else it was a
-- duplicate), in the same order. The arrays have one element per event.
CREATE FUNCTION catalog_insert_events(
    p_id text[], p_platform text[], p_store text[], p_topic text[], p_raw_topic text[],
    p_event_id text[], p_delivery_id text[], p_product_id text[], p_product_key text[],
    p_triggered_at timestamptz[], p_received_at timestamptz[], p_product text[],
    p_raw_body bytea[], p_status text[], p_error text[], p_lock_timeout_ms integer)
RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    inserted boolean[] := '{}';
BEGIN
    PERFORM catalog_lock_products(ARRAY(
        SELECT catalog_product_lock(pl, st, pk)
        FROM unnest(p_platform, p_store, p_product_key) AS t(pl, st, pk)), p_lock_timeout_ms);
    FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
        inserted := inserted || catalog_insert_event(p_id[i], p_platform[i], p_store[i],
            p_topic[i], p_raw_topic[i], p_event_id[i], p_delivery_id[i], p_product_id[i],
            p_product_key[i], p_triggered_at[i], p_received_at[i], p_product[i],
            p_raw_body[i], p_status[i], p_error[i]);
    END LOOP;
    RETURN inserted;
END
$$;

-- Several dispatch outcomes, each recorded as catalog_complete_event does,
-- in the order given; p_unreadable, when set, becomes the event's error
-- (an event the normaliser could not read). Answers, for each, whether it
-- was recorded (the lease was still the worker's).
CREATE FUNCTION catalog_complete_events(
    p_id text[], p_worker text[], p_status text[], p_error text[], p_delay_ms bigint[],
    p_unreadable text[], p_lock_timeout_ms integer)
RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    done boolean[] := '{}';
    ok boolean;
BEGIN
    PERFORM catalog_lock_products(ARRAY(
        SELECT catalog_product_lock(platform, store, product_key)
        FROM events WHERE id = ANY(p_id)), p_lock_timeout_ms);
    FOR i IN 1 .. coalesce(array_length(p_id, 1), 0) LOOP
        ok := catalog_complete_event(p_id[i], p_worker[i], p_status[i], p_error[i],
            p_delay_ms[i]);
        IF ok AND p_unreadable[i] IS NOT NULL THEN
            UPDATE events SET error = p_unreadable[i] WHERE id = p_id[i];
        END IF;
        done := done || ok;
    END LOOP;
    RETURN done;
END
$$;
",
    ),
];

/// Checks, writing nothing, that `schema` (or the `search_path`) holds a
/// store of this build's schema version: the source of a copy must come
/// out of it unchanged, and a mistyped schema must not be created empty
/// and copied from successfully.
pub(super) async fn check_current(
    connect: &PgConnectOptions,
    schema: Option<&str>,
    shown_url: &str,
) -> Result<(), StoreError> {
    let mut connect = connect.clone();
    if let Some(schema) = schema {
        connect = connect.options([("search_path", schema)]);
    }
    let mut conn = PgConnection::connect_with(&connect).await.map_err(|e| {
        StoreError::Database(format!("cannot connect to {shown_url}: {}", describe(&e)))
    })?;
    let place = match schema {
        Some(schema) => format!("schema {schema} of {shown_url}"),
        None => format!("the search_path of {shown_url}"),
    };
    let found: Result<(bool, Option<i64>), sqlx::Error> = async {
        let ours: bool = sqlx::query_scalar(
            "SELECT to_regclass('events') IS NOT NULL AND to_regclass('_sqlx_migrations') IS NOT NULL",
        )
        .fetch_one(&mut conn)
        .await?;
        if !ours {
            return Ok((false, None));
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await?;
        Ok((true, version))
    }
    .await;
    let _ = conn.close().await;
    let (ours, version) = found
        .map_err(|e| StoreError::Database(format!("cannot read {place}: {}", describe(&e))))?;
    let current = MIGRATIONS.last().map_or(0, |m| m.0);
    if !ours {
        return Err(StoreError::Database(format!(
            "there is no webhook-server store in {place}"
        )));
    }
    match version {
        Some(v) if v == current => Ok(()),
        Some(v) if v > current => Err(StoreError::Database(format!(
            "the store in {place} is at schema version {v}, newer than this build's ({current})"
        ))),
        v => Err(StoreError::Database(format!(
            "the store in {place} is at schema version {}, this build's is {current}: start a \
             replica of this build on it once (replicas migrate at start-up), then copy",
            v.unwrap_or(0)
        ))),
    }
}

pub(super) async fn migrate(
    connect: &PgConnectOptions,
    schema: Option<&str>,
    shown_url: &str,
) -> Result<(), StoreError> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    if let Some(schema) = schema {
        // Created under the migrator's advisory lock: concurrent start-ups
        // do not race on CREATE SCHEMA.
        migrator.create_schema(format!("\"{schema}\""));
    }
    // A dedicated connection: the migrator's advisory lock is session-level,
    // and closing the session releases it even when a migration fails.
    let mut conn = PgConnection::connect_with(connect).await.map_err(|e| {
        StoreError::Database(format!("cannot connect to {shown_url}: {}", describe(&e)))
    })?;
    let result = migrator.run_direct(None, &mut conn, false).await;
    let _ = conn.close().await;
    // The database's own message and SQLSTATE, as for connections: sqlx's
    // text of a database error ends with the line of PostgreSQL's C source
    // that raised it, which says nothing to anyone here.
    result.map_err(|e| {
        let reason = match &e {
            MigrateError::Execute(db) => format!("while executing migrations: {}", describe(db)),
            MigrateError::ExecuteMigration(db, version) => {
                format!("while executing migration {version}: {}", describe(db))
            }
            other => other.to_string(),
        };
        StoreError::Database(format!("PostgreSQL migration failed: {reason}"))
    })
}
