//! The schema, its migrations and the connection settings the store opens with.

use super::*;

/// Schema migrations, applied in order at start-up; `PRAGMA user_version`
/// records how many ran. Only ever append.
pub(super) const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    platform        TEXT    NOT NULL,
    store           TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    raw_topic       TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    delivery_id     TEXT,
    product_id      TEXT,
    product_key     TEXT    NOT NULL,
    triggered_at    INTEGER,
    received_at     INTEGER NOT NULL,
    product         TEXT,
    raw_body        BLOB    NOT NULL,
    status          TEXT    NOT NULL,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    -- 1 for the oldest pending event of its product (the only one that may
    -- be dispatched), 0 for the events queued behind it.
    ready           INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_ready ON events (seq) WHERE status = 'pending' AND ready = 1;
CREATE INDEX events_pending_product ON events (platform, store, product_key, seq)
    WHERE status = 'pending';
",
    r"
-- The bodies move to a table of their own: dispatch updates (lease, status,
-- ready) then rewrite a row of a hundred bytes, not one with kilobytes of
-- payload in overflow pages.
CREATE TABLE event_bodies (
    seq      INTEGER PRIMARY KEY,
    product  TEXT,
    raw_body BLOB NOT NULL
);
INSERT INTO event_bodies (seq, product, raw_body) SELECT seq, product, raw_body FROM events;
ALTER TABLE events DROP COLUMN product;
ALTER TABLE events DROP COLUMN raw_body;
",
    r"
-- How raw_body is stored: 0 as received, 1 LZ4-compressed (see StoredBody).
ALTER TABLE event_bodies ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
",
    r"
-- Deduplication moves from a unique index on events.id, written with every
-- insert, to event_ids, written in sorted slices (see recent_ids.rs): the
-- events table is rebuilt without the constraint.
CREATE TABLE events_v4 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL,
    platform        TEXT    NOT NULL,
    store           TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    raw_topic       TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    delivery_id     TEXT,
    product_id      TEXT,
    product_key     TEXT    NOT NULL,
    triggered_at    INTEGER,
    received_at     INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    ready           INTEGER NOT NULL DEFAULT 0
);
INSERT INTO events_v4 (seq, id, platform, store, topic, raw_topic, event_id, delivery_id,
    product_id, product_key, triggered_at, received_at, status, error, attempts, last_error,
    next_attempt_at, lease_owner, lease_until, ready)
SELECT seq, id, platform, store, topic, raw_topic, event_id, delivery_id,
    product_id, product_key, triggered_at, received_at, status, error, attempts, last_error,
    next_attempt_at, lease_owner, lease_until, ready FROM events;
DROP TABLE events;
ALTER TABLE events_v4 RENAME TO events;
CREATE INDEX events_ready ON events (seq) WHERE status = 'pending' AND ready = 1;
CREATE INDEX events_pending_product ON events (platform, store, product_key, seq)
    WHERE status = 'pending';
-- Every event up to ids_merged_through, by id; later ones are held by the
-- writer in memory and merged in sorted slices.
CREATE TABLE event_ids (
    id  TEXT    PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO event_ids (id, seq) SELECT id, seq FROM events ORDER BY id;
CREATE TABLE store_state (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO store_state (key, value)
    VALUES ('ids_merged_through', COALESCE((SELECT MAX(seq) FROM events), 0));
",
    r"
-- Finished events by age, for retention (EventStore::prune). A completion
-- adds an entry at the right edge (events finish in about arrival order).
CREATE INDEX events_delivered_age ON events (received_at) WHERE status = 'delivered';
CREATE INDEX events_failed_age ON events (received_at) WHERE status IN ('failed', 'dead');
",
    r"
-- Written and emptied by readiness probes after a failed commit (health.rs).
CREATE TABLE readiness_probe (room BLOB NOT NULL);
",
];

/// `PRAGMA synchronous` for commits that acknowledge something.
pub(super) fn synchronous(durability: Durability) -> &'static str {
    match durability {
        Durability::PowerLoss => "FULL",
        Durability::ProcessCrash => "NORMAL",
    }
}

/// Prepared statements kept per connection (see [`configure`]).
pub(super) const STATEMENT_CACHE: usize = 64;

pub(super) fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous(durability))?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // Keep the page cache small and bounded (KiB when negative).
    conn.pragma_update(None, "cache_size", -8192)?;
    // Every statement the writer runs is prepared once and cached. They are
    // more than rusqlite's default of 16 (inserts, the id index, claims,
    // outcomes, retention, the admin API's filter combinations); past the
    // capacity its LRU cache would evict statements still in use, and
    // SQLite would parse them again on their next call.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans fixed at prepare time. Without this, SQLite marks a statement
    // to be prepared again whenever a parameter it planned with is bound:
    // `LIMIT ?` (since 3.47 the planner reads the bound limit) and a
    // parameter compared with a partial index's WHERE. Every claim was
    // parsed and planned again inside the writer (profiled: 9 % of the
    // writer's time under load, the dispatch statements' cost several times
    // over). Every statement here names its partial index's terms as
    // literals, so no plan needs the bound values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Checkpoints run on their own thread and connection (PASSIVE, so they
    // never block the writer): a checkpoint inside the writer would stall
    // every delivery waiting for the commit. This high threshold is only a
    // safety net in case that thread cannot checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", 100_000)?;
    Ok(())
}

/// Refuses a file at schema version 0 (new, or not ours) that already
/// has tables: checked before anything is written to it, so that a wrong
/// path leaves another program's file as it was.
pub(super) fn refuse_foreign_file(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != 0 {
        // Every version of ours has the events table: a file with a
        // version and without it is another program's that sets
        // `user_version` too.
        let ours: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'",
            [],
            |r| r.get(0),
        )?;
        if ours == 0 {
            return Err(StoreError::Database(format!(
                "the file has schema version {version} but no events table: another program's \
                 database, not a webhook-server one; point database.url (CATALOG_DATABASE_URL) \
                 at a new or empty file"
            )));
        }
        return Ok(());
    }
    // Version 0 is a new file. One that already has tables is another
    // program's database (a wrong `database.url`: adopting it would
    // add our tables and switch it to WAL), or ours with its version
    // reset: migrating would fail half-way on `CREATE TABLE events`.
    let tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name LIMIT 4",
        )?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if tables.iter().any(|t| t == "events") {
        return Err(StoreError::Database(
            "the database has an events table but no schema version: not a webhook-server \
             database, or its version (PRAGMA user_version) was reset"
                .into(),
        ));
    }
    if !tables.is_empty() {
        let names: Vec<&str> = tables.iter().take(3).map(String::as_str).collect();
        return Err(StoreError::Database(format!(
            "the file holds another program's tables ({}{}) and no webhook-server schema: \
             point database.url (CATALOG_DATABASE_URL) at a new or empty file",
            names.join(", "),
            if tables.len() > 3 { ", ..." } else { "" }
        )));
    }
    Ok(())
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let Ok(done) = usize::try_from(version) else {
        return Err(StoreError::Database(format!(
            "database schema version {version} is not one this build knows (0 to {})",
            MIGRATIONS.len()
        )));
    };
    if done == 0 {
        refuse_foreign_file(conn)?;
    }
    if done > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "database schema version {done} is newer than this build ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).map_err(|e| {
            // rusqlite's text of a failing statement quotes the whole
            // migration; SQLite's own message says what went wrong.
            let message = match &e {
                rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
                other => other.to_string(),
            };
            StoreError::Database(format!(
                "cannot migrate the database from schema version {i} to {}: {message} \
                 (does PRAGMA user_version match the file? it may have been changed by hand)",
                i + 1
            ))
        })?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::debug!(version = i + 1, "applied SQLite migration");
    }
    // One line, so that the start-up summary stays among the first.
    if done == 0 {
        tracing::info!(
            version = MIGRATIONS.len(),
            "new SQLite database: no stored events and no deduplication history yet (if the server ran before, check database.url)"
        );
    } else if done < MIGRATIONS.len() {
        tracing::info!(from = done, to = MIGRATIONS.len(), "SQLite schema migrated");
    }
    Ok(())
}
