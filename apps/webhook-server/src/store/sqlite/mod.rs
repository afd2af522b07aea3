//! The embedded store: SQLite in WAL mode, owned by one writer thread.
//!
//! Why rusqlite in a dedicated thread rather than sqlx-sqlite: SQLite allows one
//! writer at a time anyway, and what makes it fast is committing many inserts in
//! one transaction (one fsync for the lot). A single thread that owns the
//! connection, takes every command queued on its channel, runs them in one
//! transaction and answers each caller only after the commit does exactly that,
//! with no pool, no async driver and no lock contention. Callers await a
//! oneshot, so actix workers never block. Reads (admin, claims) go through the
//! same thread; they are rare and short.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use catalog_core::InsertOutcome;
use chrono::Utc;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    DispatchOutcome, EventFilter, EventPage, EventStatus, EventStore, NewEvent, PrunePolicy,
    ReplayOutcome, StoreError, StoreStats, StoredEvent, from_millis, to_millis,
};
use crate::log_budget::LogBudget;
use crate::settings::Durability;

mod health;
mod id_filter;
mod ownership;
mod recent_ids;
use health::Health;
use ownership::take_ownership;
use recent_ids::{IdChanges, IdPlace, RecentIds};

/// Schema migrations, applied in order at start-up; `PRAGMA user_version`
/// records how many ran. Only ever append.
const MIGRATIONS: &[&str] = &[
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

/// A body as written to `event_bodies.raw_body`.
///
/// Why compress: payloads are JSON, which LZ4 shrinks about 2.5 times for a
/// couple of microseconds (on the request worker, not the writer). Stored
/// as received, a 2 KB product takes a 4 KB page of its own (two do not fit
/// in one), so every delivery wrote a page of body to the WAL and again to
/// the database; compressed, four share a page. The bytes read back are
/// the received ones exactly.
struct StoredBody {
    codec: i64,
    bytes: Vec<u8>,
}

/// `codec` of an LZ4 block with the decompressed size in front.
const CODEC_LZ4: i64 = 1;
/// Bodies shorter than this are stored as received.
const COMPRESS_FROM: usize = 256;

impl StoredBody {
    fn encode(body: &[u8]) -> Option<Self> {
        if body.len() < COMPRESS_FROM {
            return None;
        }
        let bytes = lz4_flex::compress_prepend_size(body);
        // Only when it saves something worth a decompression on read.
        (bytes.len() < body.len() - body.len() / 8).then_some(Self {
            codec: CODEC_LZ4,
            bytes,
        })
    }

    fn decode(codec: i64, bytes: Vec<u8>) -> rusqlite::Result<Bytes> {
        match codec {
            0 => Ok(Bytes::from(bytes)),
            CODEC_LZ4 => {
                // The size in front is allocated before anything is read:
                // a damaged row must not ask for 4 GiB. LZ4 cannot expand
                // a block more than 255 times.
                let claimed = bytes
                    .first_chunk::<4>()
                    .map_or(0, |n| u64::from(u32::from_le_bytes(*n)));
                let most = (bytes.len() as u64).saturating_mul(255);
                if claimed > most {
                    return Err(corrupt(format!(
                        "compressed body: claims {claimed} bytes from {}",
                        bytes.len()
                    )));
                }
                lz4_flex::decompress_size_prepended(&bytes)
                    .map(Bytes::from)
                    .map_err(|e| corrupt(format!("compressed body: {e}")))
            }
            other => Err(corrupt(format!("unknown body codec {other}"))),
        }
    }
}

fn corrupt(message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        12,
        rusqlite::types::Type::Blob,
        Box::new(StoreError::Corrupt(message)),
    )
}

const COLUMNS: &str = "e.seq, e.id, e.platform, e.store, e.topic, e.raw_topic, e.event_id, \
     e.delivery_id, e.product_id, e.triggered_at, e.received_at, b.product, b.raw_body, \
     e.status, e.error, e.attempts, e.last_error, e.next_attempt_at, b.codec";

/// How many columns [`COLUMNS`] names (what [`read_row`] reads); a query
/// may select more after them.
const COLUMN_COUNT: usize = 19;

const FROM: &str = "events e JOIN event_bodies b ON b.seq = e.seq";

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

enum Command {
    Insert(
        Box<(NewEvent, Option<StoredBody>)>,
        oneshot::Sender<Result<InsertOutcome, StoreError>>,
    ),
    Claim {
        worker: String,
        lease: Duration,
        limit: usize,
        run: usize,
        reply: oneshot::Sender<Result<Vec<StoredEvent>, StoreError>>,
    },
    Release {
        ids: Vec<String>,
        worker: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Complete {
        id: String,
        worker: String,
        outcome: DispatchOutcome,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    CompleteRun {
        worker: String,
        outcomes: Vec<(String, DispatchOutcome)>,
        reply: oneshot::Sender<Result<Vec<bool>, StoreError>>,
    },
    List {
        filter: EventFilter,
        before: Option<i64>,
        limit: usize,
        reply: oneshot::Sender<Result<EventPage, StoreError>>,
    },
    Get(
        String,
        oneshot::Sender<Result<Option<StoredEvent>, StoreError>>,
    ),
    Replay(String, oneshot::Sender<Result<ReplayOutcome, StoreError>>),
    Prune {
        policy: PrunePolicy,
        limit: usize,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Ping(oneshot::Sender<Result<(), StoreError>>),
}

#[derive(Debug)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    /// Failed batches, logged at most every few seconds: a full disk fails
    /// every batch, many a second.
    failures: LogBudget,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            failures: LogBudget::new(FAILURE_LOG_EVERY),
        }
    }
}

/// At most one line per this long for failures that repeat while the disk
/// is full (failed batches, failed checkpoints), with the count since.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The SQLite store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    durability: Durability,
    sender: std::sync::Mutex<Option<mpsc::Sender<Command>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    // The checkpointer runs while this is held (see `checkpoint_loop`).
    alive: std::sync::Mutex<Option<Arc<()>>>,
    checkpointer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
    // Locked while the store is open; released by `close` (or on drop, and
    // by the kernel if the process dies).
    owner: std::sync::Mutex<Option<std::fs::File>>,
    // Read before each dispatch attempt (`may_dispatch`).
    owner_check: Arc<ownership::Owner>,
}

/// Held by the writer while it runs a batch; the checkpointer takes it for
/// the last, short pass of each checkpoint (see [`checkpoint_loop`]).
type WriterGate = Arc<std::sync::Mutex<()>>;

impl SqliteStore {
    /// Opens (creating if needed) the database, runs migrations and starts the
    /// writer thread.
    ///
    /// The store takes an exclusive lock on `<path>.lock` for as long as it
    /// is open: one process owns the file. SQLite itself would let a second
    /// server in, and the two would then dispatch each other's events
    /// (leases keep that rare, not impossible) and fight over the single
    /// writer; several replicas belong on PostgreSQL.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated, and [`StoreError::InUse`]
    /// when another store (in this process or another) has it open.
    ///
    /// Dispatch leases left in the file by a server that did not stop
    /// cleanly are released at once (see [`SqliteStore::open_for_dispatch`]
    /// to keep them for the time an attempt of it could still be open).
    pub fn open(path: &Path, durability: Durability, batch_max: usize) -> Result<Self, StoreError> {
        Self::open_with_generation(
            path,
            durability,
            batch_max,
            recent_ids::GENERATION,
            Duration::ZERO,
        )
    }

    /// [`SqliteStore::open`] for a server that dispatches with attempts of
    /// at most `attempt_budget` (the sinks' timeouts added up). The lock
    /// makes this the file's only server, so the leases a previous one left
    /// are a dead process's: they are cut to `attempt_budget` from now,
    /// instead of being waited out for the whole lease after every crash,
    /// and not dropped at once, since the dead server's last attempt may
    /// still be open at the receiver: the same wait a live server makes
    /// before it retries an attempt that timed out.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_for_dispatch(
        path: &Path,
        durability: Durability,
        batch_max: usize,
        attempt_budget: Duration,
    ) -> Result<Self, StoreError> {
        Self::open_with_generation(
            path,
            durability,
            batch_max,
            recent_ids::GENERATION,
            attempt_budget,
        )
    }

    /// [`SqliteStore::open`] with `generation` ids per in-memory generation
    /// (see `recent_ids`): small ones make tests go through merges.
    fn open_with_generation(
        path: &Path,
        durability: Durability,
        batch_max: usize,
        generation: usize,
        lease_grace: Duration,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let (owner, lock) = take_ownership(path)?;
        let mut conn = Connection::open(path)?;
        refuse_foreign_file(&conn)?;
        configure(&conn, durability)?;
        migrate(&mut conn)?;
        release_dead_leases(&conn, lease_grace)?;
        let mut ids = RecentIds::load(&conn, generation)?;
        let owner_check = lock.owner();
        let health = Health::of_file(path)?.with_lock(lock);
        // Closing the store drops `alive`: the checkpointer and any id
        // filter build stop.
        let alive = Arc::new(());
        // The id filter is read from the file beside the writer (see
        // id_filter.rs).
        ids.filter_from(path, Arc::downgrade(&alive));
        let (sender, rx) = mpsc::channel(8192);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let batch_max = batch_max.max(1);
        let gate: WriterGate = Arc::default();
        let writer_gate = Arc::clone(&gate);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let sync = CommitSync::new(durability);
                let state = WriterState { ids, sync, health };
                writer_loop(conn, rx, batch_max, state, &thread_counters, &writer_gate);
            })
            .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
        let weak = Arc::downgrade(&alive);
        let checkpoint_path = path.to_path_buf();
        let checkpointer = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoint_path, &weak, &gate))
            .map_err(|e| StoreError::Database(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Self {
            path: path.to_path_buf(),
            durability,
            sender: std::sync::Mutex::new(Some(sender)),
            writer: std::sync::Mutex::new(Some(writer)),
            alive: std::sync::Mutex::new(Some(alive)),
            checkpointer: std::sync::Mutex::new(Some(checkpointer)),
            counters,
            owner: std::sync::Mutex::new(Some(owner)),
            owner_check,
        })
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Unavailable)?;
        sender
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        rx.await.map_err(|_| StoreError::Unavailable)?
    }
}

/// What SQLite's error leaves out when a file cannot be opened: a full
/// disk reads "disk I/O error" at open (the WAL index cannot be created),
/// which sends an operator after the hardware. `None` when nothing is
/// plain to see.
pub(crate) fn open_failure_hint(path: &Path) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        /// Below this the disk is named as the likely cause: a busy WAL
        /// alone grows to several MiB between checkpoints.
        const LOW: u64 = 64 * 1024 * 1024;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let stat = rustix::fs::statvfs(dir).ok()?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        // A file system with no blocks at all (/sys, /proc) is not full:
        // it holds no files of ours, and the cause is another (an outside
        // audit got "0 KiB free" for a permission error under /sys).
        if stat.f_blocks > 0 && free < LOW {
            return Some(format!(
                "the disk holding {} has {} KiB free",
                dir.display(),
                free / 1024
            ));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
    None
}

/// Cuts the leases left in the file to `grace` from now (see
/// [`SqliteStore::open_for_dispatch`]): they are a process's that died
/// holding them (a crash, SIGKILL). Their events go again (at least once),
/// in order, once the dead server's last attempts cannot be open any more.
fn release_dead_leases(conn: &Connection, grace: Duration) -> Result<(), StoreError> {
    let until =
        to_millis(Utc::now()).saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    let released = conn.execute(
        "UPDATE events SET lease_until = ?1 \
         WHERE status = 'pending' AND lease_owner IS NOT NULL \
           AND (lease_until IS NULL OR lease_until > ?1)",
        params![until],
    )?;
    if released > 0 {
        tracing::info!(
            events = released,
            after_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "the previous server did not stop cleanly: its dispatch leases end once its last attempts cannot be open any more"
        );
    }
    Ok(())
}

/// `PRAGMA synchronous` for commits that acknowledge something.
fn synchronous(durability: Durability) -> &'static str {
    match durability {
        Durability::PowerLoss => "FULL",
        Durability::ProcessCrash => "NORMAL",
    }
}

/// Prepared statements kept per connection (see [`configure`]).
const STATEMENT_CACHE: usize = 64;

fn configure(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
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
fn refuse_foreign_file(conn: &Connection) -> Result<(), StoreError> {
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

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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

/// Checkpoints the WAL into the database every [`CHECKPOINT_PERIOD`],
/// without holding up the writer, until the store is closed or dropped.
///
/// Why in passes: SQLite starts the WAL over (instead of appending to it)
/// only when a checkpoint has copied every frame in it. A checkpoint that
/// runs beside a busy writer never does, since frames keep coming, and the
/// WAL would grow for as long as the load lasts (hundreds of MB of dirty
/// page cache, then the kernel's write-back stalls). So each round copies
/// what is there (PASSIVE: the writer keeps going), then the few frames
/// committed meanwhile, until little is left; the last pass takes the
/// writer's gate, so it copies a handful of frames with no writer running
/// and completes the checkpoint. The writer waits for that last pass only
/// (a few milliseconds), never for the bulk of the copying and syncing.
fn checkpoint_loop(path: &Path, alive: &std::sync::Weak<()>, gate: &WriterGate) {
    let conn = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "SQLite checkpoint thread could not open the database");
            return;
        }
    };
    let _ = conn.pragma_update(None, "busy_timeout", 1000);
    // The database file, to flush what the passes copied before the gated
    // pass (a sync covers every write to the file, through any descriptor).
    let db_file = match std::fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "SQLite checkpoint thread could not open the database file to sync it");
            None
        }
    };
    // Returns the WAL's frame count when the pass began (it copies those).
    let passive = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
    };
    let failures = LogBudget::new(FAILURE_LOG_EVERY);
    while alive.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_PERIOD);
        let round = (|| -> rusqlite::Result<()> {
            let mut seen = passive(&conn)?;
            // Catch up with what the writer committed during the last pass
            // while that is more than the final pass should copy.
            for _ in 0..MAX_PASSES {
                let now = passive(&conn)?;
                let fresh = now - seen;
                seen = now;
                if fresh <= FINAL_PASS_FRAMES {
                    break;
                }
            }
            // SQLite syncs the database file only in a pass that copies the
            // whole WAL: the gated one below. That sync would then flush
            // every page the passes above copied, with the writer waiting.
            // Those pages land all over the file once it is large (measured
            // with 3 M events, 4.4 GB: the writer waited up to 250 ms, p99
            // 60 to 250 ms). Flushed here, outside the gate, the gated pass
            // syncs only its own few pages.
            if let Some(file) = &db_file
                && let Err(e) = file.sync_data()
            {
                tracing::warn!(error = %e, "SQLite checkpoint could not sync the database file");
            }
            // No writer now: this pass copies the last frames, and the
            // writer's next transaction starts the WAL over.
            let _writer_paused = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            passive(&conn)?;
            Ok(())
        })();
        // Every period while the disk is full: one warning every few seconds.
        if let Err(e) = round
            && let Some(count) = failures.hit()
        {
            tracing::warn!(error = %e, failed_rounds = count, "SQLite checkpoint failed");
        }
    }
}

/// Most catch-up passes per round before the final one (when the writer
/// commits faster than a pass copies, the final pass gets what came in
/// during the last one: the writer waits that long, and no longer).
const MAX_PASSES: usize = 4;
/// Catch-up stops once a pass saw fewer new frames (pages) than this: about
/// what the final pass, the one the writer waits for, then copies.
const FINAL_PASS_FRAMES: i64 = 256;

/// Time between checkpoint rounds. Short, so that each round's database
/// sync has little to write: a commit's WAL sync queues behind whatever the
/// checkpointer's sync is flushing, and those waits made the p99. Measured
/// at saturation (`power_loss`, wrk -t1 -c32): every 100 ms, p99 5.9 to 7.2
/// ms; every second, 8.8 to 16.2 ms; every 3 s, 28 to 31 ms. The price is
/// within the noise: 0 to 7 % fewer deliveries a second on average over
/// alternated runs, and about 5 % more bytes written (the last, partly
/// filled page of each table is copied by several rounds). (Once a second paid off while every
/// delivery wrote a random page of a unique id index, copied once per round:
/// the id index no longer is written per delivery, see `recent_ids`.)
const CHECKPOINT_PERIOD: Duration = Duration::from_millis(100);

/// What the writer thread keeps between batches.
struct WriterState {
    ids: RecentIds,
    sync: CommitSync,
    health: Health,
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Command>,
    batch_max: usize,
    state: WriterState,
    counters: &Counters,
    gate: &WriterGate,
) {
    let WriterState {
        mut ids,
        mut sync,
        mut health,
    } = state;
    let mut batch = Vec::with_capacity(batch_max);
    let drain = |rx: &mut mpsc::Receiver<Command>, batch: &mut Vec<Command>| {
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(cmd) => batch.push(cmd),
                Err(_) => break,
            }
        }
    };
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        // Whatever queued up while the last batch ran goes in this one: no
        // waiting for company (a pause to grow batches cost more throughput
        // than the WAL it saved).
        drain(&mut rx, &mut batch);
        let _gate = gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = sync.prepare(&conn, &batch) {
            // Dropping the batch closes its reply channels: every caller
            // gets `Unavailable`; nothing is acknowledged unsynced.
            tracing::error!(error = %e, commands = batch.len(), "could not set SQLite synchronous; batch refused");
            batch.clear();
            continue;
        }
        ids.poll_filter();
        let prunes = batch.iter().any(|c| matches!(c, Command::Prune { .. }));
        run_batch(&mut conn, &mut batch, &mut ids, &mut health, counters);
        if prunes {
            ids.rebuild_filter_if_stale();
        }
    }
    // Channel closed: everything queued was committed. Checkpoint so the WAL
    // does not have to be replayed on the next start.
    if let Err(e) = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE") {
        tracing::warn!(error = %e, "WAL checkpoint at shutdown failed");
    }
}

/// Chooses, per batch, whether its commit waits for the disk.
///
/// Why: under power-loss durability every commit syncs the WAL, and the
/// dispatcher's bookkeeping (leases, outcomes) often comes alone in a batch:
/// handing over the events of one product goes one store round trip per
/// event, and each round trip waited for a sync (measured: 550 to 840
/// events a second for one product on an idle server). Nobody is answered on
/// those commits being durable: a lease or an outcome lost to a power cut
/// only means the event is dispatched again, which at-least-once allows. So
/// a batch with nothing to acknowledge commits without a sync
/// (`synchronous=NORMAL`), and the next batch that acknowledges something
/// syncs the WAL and every frame before it. WAL frames are checksummed in a
/// chain and replayed in order up to the first bad one, so a power cut can
/// lose the unsynced commits at the end, never one before a synced commit.
#[derive(Debug)]
struct CommitSync {
    durability: Durability,
    syncing: bool,
}

impl CommitSync {
    fn new(durability: Durability) -> Self {
        Self {
            durability,
            syncing: true,
        }
    }

    /// Sets `synchronous` for the coming batch, when it changes.
    ///
    /// # Errors
    /// When the setting could not be changed: the batch must not run.
    fn prepare(&mut self, conn: &Connection, batch: &[Command]) -> rusqlite::Result<()> {
        if self.durability != Durability::PowerLoss {
            return Ok(());
        }
        let acknowledges = batch.iter().any(Command::is_acknowledged);
        if acknowledges == self.syncing {
            return Ok(());
        }
        let mode = if acknowledges {
            synchronous(self.durability)
        } else {
            "NORMAL"
        };
        conn.pragma_update(None, "synchronous", mode)?;
        self.syncing = acknowledges;
        Ok(())
    }
}

impl Command {
    /// Whether the caller is told of this command's success only after the
    /// commit: the commits that must be durable.
    fn is_acknowledged(&self) -> bool {
        matches!(self, Self::Insert(..) | Self::Replay(..))
    }
}

fn run_batch(
    conn: &mut Connection,
    batch: &mut Vec<Command>,
    ids: &mut RecentIds,
    health: &mut Health,
    counters: &Counters,
) {
    let n = batch.len() as u64;
    let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
    // Ids this transaction inserted: taken back from `ids` if it rolls back.
    let mut changes = IdChanges::default();
    // Deliveries are being acknowledged: claims take no runs (see `claim`).
    let ingesting = batch.iter().any(Command::is_acknowledged);
    // After a failed commit, pings write a probe (see health.rs).
    let probing = health.failing && batch.iter().any(|c| matches!(c, Command::Ping(_)));
    let changes_before = conn.total_changes();
    let result = (|| -> Result<usize, StoreError> {
        let tx = conn.transaction()?;
        for cmd in batch.drain(..) {
            replies.push(execute(&tx, cmd, ids, &mut changes, ingesting, health)?);
        }
        let merged = ids.merge_slice(&tx, changes.added.len())?;
        if ingesting {
            // Nothing is acknowledged into a file that was removed.
            health.check_file()?;
        }
        tx.commit()?;
        Ok(merged)
    })();
    // Any failed commit marks the store failing (claims then wait for
    // their commit, see `execute`); only a commit that wrote something
    // acknowledged or a probe proves it healthy again.
    if let Err(err) = &result {
        health.failing = true;
        if health::reports_damage(err) && !health.damaged {
            health.damaged = true;
            tracing::error!(
                error = %health::damaged_error(health.path()),
                "the SQLite file is damaged: not ready until restarted on a sound file"
            );
        }
    } else if (ingesting || probing) && conn.total_changes() > changes_before {
        // Only a commit that wrote something proves the disk takes writes
        // again: a batch of duplicates alone writes nothing and commits
        // even on a full disk.
        health.failing = false;
    }
    match result {
        Ok(merged) => {
            ids.committed(merged);
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.writes.fetch_add(n, Ordering::Relaxed);
            for reply in replies {
                reply(None);
            }
        }
        Err(err) => {
            // The transaction rolled back: nobody in this batch is answered
            // with success. Commands not yet executed were dropped with the
            // drained iterator, which closes their reply channels
            // (Unavailable for the caller).
            if let Some(count) = counters.failures.hit() {
                tracing::error!(
                    error = %err,
                    commands = n,
                    failed_batches = count,
                    "SQLite batch failed; rolled back"
                );
            }
            ids.undo(changes);
            batch.clear();
            for reply in replies {
                reply(Some(&err));
            }
        }
    }
}

fn clone_err(err: &StoreError) -> StoreError {
    StoreError::Database(err.to_string())
}

type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

/// A command's answer given once the batch's fate is known (its value on
/// commit, the batch's error on rollback); a statement error is answered now
/// and aborts the batch.
fn after_commit<T: Send + 'static>(
    reply: Answer<T>,
    result: Result<T, StoreError>,
) -> Result<Reply, StoreError> {
    match result {
        Ok(value) => Ok(Box::new(move |err: Option<&StoreError>| {
            let _ = reply.send(match err {
                None => Ok(value),
                Some(e) => Err(clone_err(e)),
            });
        })),
        Err(e) => {
            let _ = reply.send(Err(clone_err(&e)));
            Err(e)
        }
    }
}

/// A command's answer given now, whatever the commit; a statement error
/// still aborts the batch.
/// Takes the database's write lock for this transaction without writing
/// anything: a write statement that changes no row. Nothing is written at
/// the commit; a lock held elsewhere makes it wait (`busy_timeout`) and
/// fail.
fn take_write_lock(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE events SET seq = seq WHERE 0")?
        .execute([])?;
    Ok(())
}

fn at_once<T>(reply: Answer<T>, result: Result<T, StoreError>) -> Result<Reply, StoreError> {
    match result {
        Ok(value) => {
            let _ = reply.send(Ok(value));
            Ok(Box::new(|_| {}))
        }
        Err(e) => {
            let _ = reply.send(Err(clone_err(&e)));
            Err(e)
        }
    }
}

/// Runs one command inside the batch transaction and returns how to answer it
/// once the transaction's fate is known. A statement error aborts the batch.
fn execute(
    tx: &Transaction<'_>,
    cmd: Command,
    ids: &mut RecentIds,
    changes: &mut IdChanges,
    ingesting: bool,
    health: &mut Health,
) -> Result<Reply, StoreError> {
    match cmd {
        // Nothing more is acknowledged into a file SQLite found damaged.
        Command::Insert(_, reply) if health.damaged => {
            let _ = reply.send(Err(health::damaged_error(health.path())));
            Ok(Box::new(|_| {}))
        }
        Command::Insert(event, reply) => {
            after_commit(reply, insert(tx, &event.0, event.1.as_ref(), ids, changes))
        }
        // Answered before the commit: a lease lost to a crash or a rollback
        // only means the event may be dispatched twice, which at-least-once
        // allows; waiting for the fsync would not. But not while commits
        // fail (a full disk): every claim would roll back, its events be
        // claimable again at once, and the dispatcher send them again and
        // again. Then a claim is answered after its commit, so it fails
        // like the commit and the dispatcher waits.
        Command::Claim {
            worker,
            lease,
            limit,
            run,
            reply,
        } => {
            // A server that lost its file to another dispatches no more
            // (see ownership.rs).
            if let Err(e) = health.check_owner() {
                let _ = reply.send(Err(e));
                return Ok(Box::new(|_| {}));
            }
            let run = if ingesting { 1 } else { run };
            let claimed = claim(tx, &worker, lease, limit, run);
            if health.failing {
                after_commit(reply, claimed)
            } else {
                at_once(reply, claimed)
            }
        }
        // A lost release only means the events wait for their leases.
        Command::Release {
            ids: which,
            worker,
            reply,
        } => at_once(reply, release(tx, &which, &worker, ids)),
        // Same reasoning: a lost completion means one more dispatch.
        Command::Complete {
            id,
            worker,
            outcome,
            reply,
        } => at_once(reply, complete(tx, &id, &worker, &outcome, ids)),
        Command::CompleteRun {
            worker,
            outcomes,
            reply,
        } => at_once(reply, complete_run(tx, &worker, &outcomes, ids)),
        // Reads: answer now, they do not depend on the commit. A read error
        // does not abort the other commands.
        Command::List {
            filter,
            before,
            limit,
            reply,
        } => {
            let _ = reply.send(list(tx, &filter, before, limit));
            Ok(Box::new(|_| {}))
        }
        Command::Get(id, reply) => {
            let _ = reply.send(get(tx, &id, ids));
            Ok(Box::new(|_| {}))
        }
        Command::Replay(id, reply) => after_commit(reply, replay(tx, &id, ids)),
        // Not acknowledged durably (a prune lost to a power cut runs again),
        // but answered after the commit, so a caller never counts a
        // deletion that rolled back.
        Command::Prune {
            policy,
            limit,
            reply,
        } => after_commit(reply, prune(tx, &policy, limit, ids, changes)),
        // Ready: the file is the one opened, the write lock can be had
        // (another process holding the file locked, say a backup tool's
        // `BEGIN EXCLUSIVE`, holds every delivery back) and, after a
        // failed commit, a write commits again (see health.rs).
        Command::Ping(reply) => match health.check_file() {
            Err(e) => {
                let _ = reply.send(Err(e));
                Ok(Box::new(|_| {}))
            }
            Ok(()) if health.damaged => {
                let _ = reply.send(Err(health::damaged_error(health.path())));
                Ok(Box::new(|_| {}))
            }
            Ok(()) if health.failing => after_commit(reply, write_probe(tx)),
            Ok(()) => after_commit(reply, take_write_lock(tx)),
        },
    }
}

fn insert(
    tx: &Transaction<'_>,
    e: &NewEvent,
    stored: Option<&StoredBody>,
    ids: &mut RecentIds,
    changes: &mut IdChanges,
) -> Result<InsertOutcome, StoreError> {
    // Atomic per id: this thread is the file's only writer (see
    // `take_ownership`), and `ids` sees every insert before the next.
    if ids.seq_of(tx, &e.id)?.is_some() {
        return Ok(InsertOutcome::Duplicate);
    }
    // `ready` when no other event of the product is pending: an index probe,
    // so the cost does not grow with the backlog.
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (id, platform, store, topic, raw_topic, event_id, delivery_id, \
         product_id, product_key, triggered_at, received_at, status, error, \
         next_attempt_at, ready) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
           ?12 = 'pending' AND NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' \
             AND o.platform = ?2 AND o.store = ?3 AND o.product_key = ?9) \
         WHERE true",
    )?;
    let changed = stmt.execute(params![
        e.id,
        e.platform,
        e.store,
        e.topic,
        e.raw_topic,
        e.event_id,
        e.delivery_id,
        e.product_id,
        e.product_key(),
        e.triggered_at.map(to_millis),
        to_millis(e.received_at),
        e.status.as_str(),
        e.error,
        to_millis(e.received_at),
    ])?;
    if changed != 1 {
        return Err(StoreError::Database(format!(
            "event insert changed {changed} rows"
        )));
    }
    let seq = tx.last_insert_rowid();
    let mut body = tx.prepare_cached(
        "INSERT INTO event_bodies (seq, product, raw_body, codec) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let (codec, bytes) = stored.map_or((0, &e.raw_body[..]), |s| (s.codec, &s.bytes[..]));
    body.execute(params![seq, e.product, bytes, codec])?;
    ids.add(&e.id, seq);
    changes.added.push(e.id.as_str().into());
    Ok(InsertOutcome::Inserted)
}

/// Room the readiness probe takes: a few deliveries' worth of new pages.
const PROBE_ROOM: i64 = 64 * 1024;

/// A write that proves commits go through again after one failed: it
/// takes new pages, as inserts do (a small update in place would succeed
/// on a full disk), and gives them back in the same transaction.
fn write_probe(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO readiness_probe (room) VALUES (zeroblob(?1))")?
        .execute(params![PROBE_ROOM])?;
    tx.prepare_cached("DELETE FROM readiness_probe")?
        .execute([])?;
    Ok(())
}

/// Makes the oldest pending event of the product of event `seq` ready.
fn promote_next(tx: &Transaction<'_>, seq: i64) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET ready = 1 WHERE seq = (SELECT MIN(o.seq) FROM events o, events e \
         WHERE e.seq = ?1 AND o.status = 'pending' AND o.platform = e.platform \
         AND o.store = e.store AND o.product_key = e.product_key)",
    )?;
    stmt.execute(params![seq])?;
    Ok(())
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let status: String = row.get(13)?;
    let raw_body = StoredBody::decode(row.get(18)?, row.get(12)?)?;
    Ok(StoredEvent {
        seq: row.get(0)?,
        event: NewEvent {
            id: row.get(1)?,
            platform: row.get(2)?,
            store: row.get(3)?,
            topic: row.get(4)?,
            raw_topic: row.get(5)?,
            event_id: row.get(6)?,
            delivery_id: row.get(7)?,
            product_id: row.get(8)?,
            triggered_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
            received_at: from_millis(row.get(10)?),
            product: row.get(11)?,
            raw_body,
            // Unknown text cannot be written by this code; treat as failed.
            status: EventStatus::parse(&status).unwrap_or(EventStatus::Failed),
            error: row.get(14)?,
        },
        attempts: row.get::<_, i64>(15)?.try_into().unwrap_or(u32::MAX),
        last_error: row.get(16)?,
        next_attempt_at: from_millis(row.get(17)?),
    })
}

fn claim(
    tx: &Transaction<'_>,
    worker: &str,
    lease: Duration,
    limit: usize,
    run: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let now = to_millis(Utc::now());
    let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    // Only ready events (one per product with pending events) are looked at.
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} \
         WHERE e.status = 'pending' AND e.ready = 1 AND e.next_attempt_at <= ?1 \
           AND (e.lease_until IS NULL OR e.lease_until <= ?1) \
         ORDER BY e.seq LIMIT ?2"
    ))?;
    let events = stmt
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            read_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Runs only when the writer is not acknowledging deliveries (the caller
    // passes `run` 1 then: under a burst answering comes first, and the
    // dispatcher catches up after it, in runs), and when few products are
    // due: with many, a claim is wide already, and looking for followers
    // behind every head costs more than it brings (measured with 1,000
    // products: 17 % fewer deliveries a second, even with the index-only
    // probe).
    let events = if run > 1 && events.len() <= limit / RUNS_BELOW_FRACTION {
        with_followers(tx, events, now, run)?
    } else {
        events
    };
    let mut lease_stmt =
        tx.prepare_cached("UPDATE events SET lease_owner = ?1, lease_until = ?2 WHERE seq = ?3")?;
    for e in &events {
        lease_stmt.execute(params![worker, until, e.seq])?;
    }
    Ok(events)
}

/// Followers are looked for when a claim found at most `limit` / this many
/// heads (see [`claim`]).
const RUNS_BELOW_FRACTION: usize = 4;

/// Each head followed by up to `run - 1` of the next pending events of its
/// product, in order, stopping at the first one that is not due or is
/// leased (it must not be overtaken).
///
/// Why a probe first: most heads have no followers when many products share
/// the traffic, and one query per head that joined the bodies cost about 2
/// ms a claim inside the writer (a third fewer deliveries a second with
/// 1,000 products). The probe reads the pending-per-product index alone
/// (it covers the query); full rows are read only for followers it finds.
fn with_followers(
    tx: &Transaction<'_>,
    heads: Vec<StoredEvent>,
    now: i64,
    run: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    // Followers only when the head is the product's oldest pending event:
    // an older one (replayed) goes right after the head, before them.
    let mut probe = tx.prepare_cached(
        "SELECT seq FROM events \
         WHERE status = 'pending' AND platform = ?1 AND store = ?2 \
           AND product_key = ?3 AND seq > ?4 \
           AND NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' \
             AND o.platform = ?1 AND o.store = ?2 AND o.product_key = ?3 AND o.seq < ?4) \
         ORDER BY platform, store, product_key, seq LIMIT ?5",
    )?;
    let mut row = tx.prepare_cached(&format!(
        "SELECT {COLUMNS}, e.lease_until FROM {FROM} WHERE e.seq = ?1"
    ))?;
    let mut out = Vec::with_capacity(heads.len());
    for head in heads {
        let followers = probe
            .query_map(
                params![
                    head.event.platform,
                    head.event.store,
                    head.event.product_key(),
                    head.seq,
                    i64::try_from(run - 1).unwrap_or(i64::MAX)
                ],
                |r| r.get::<_, i64>(0),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(head);
        for seq in followers {
            let Some((event, lease_until)) = row
                .query_row(params![seq], |r| {
                    let lease_until: Option<i64> = r.get(COLUMN_COUNT)?;
                    Ok((read_row(r)?, lease_until))
                })
                .optional()?
            else {
                break;
            };
            let due = to_millis(event.next_attempt_at) <= now;
            if !due || lease_until.is_some_and(|u| u > now) {
                break;
            }
            out.push(event);
        }
    }
    Ok(out)
}

/// Clears `worker`'s leases on pending events (see [`EventStore::release`]).
fn release(
    tx: &Transaction<'_>,
    which: &[String],
    worker: &str,
    ids: &RecentIds,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET lease_owner = NULL, lease_until = NULL \
         WHERE seq = ?1 AND lease_owner = ?2 AND status = 'pending'",
    )?;
    for id in which {
        if let Some(seq) = ids.seq_of(tx, id)? {
            stmt.execute(params![seq, worker])?;
        }
    }
    Ok(())
}

fn complete(
    tx: &Transaction<'_>,
    id: &str,
    worker: &str,
    outcome: &DispatchOutcome,
    ids: &RecentIds,
) -> Result<bool, StoreError> {
    Ok(match record_outcome(tx, id, worker, outcome, ids)? {
        Recorded::Finished(seq, _) => {
            promote_next(tx, seq)?;
            true
        }
        Recorded::Pending => true,
        Recorded::NotOwned => false,
    })
}

/// Records a run's outcomes in order (see [`EventStore::complete_run`]).
/// The product's next event is made ready once, after the run, instead of
/// after each event (where the next one would be made ready only to be
/// finished in the same transaction).
fn complete_run(
    tx: &Transaction<'_>,
    worker: &str,
    outcomes: &[(String, DispatchOutcome)],
    ids: &RecentIds,
) -> Result<Vec<bool>, StoreError> {
    let mut recorded = Vec::with_capacity(outcomes.len());
    // Per product, the last event that finished: its next one is made
    // ready after the run. (A product whose last outcome was a retry gets
    // that event back, already ready: harmless.)
    let mut promote: Vec<(ProductKey, i64)> = Vec::new();
    for (id, outcome) in outcomes {
        match record_outcome(tx, id, worker, outcome, ids)? {
            Recorded::Finished(seq, product) => {
                match promote.iter_mut().find(|(p, _)| *p == product) {
                    Some(entry) => entry.1 = seq,
                    None => promote.push((product, seq)),
                }
                recorded.push(true);
            }
            Recorded::Pending => recorded.push(true),
            Recorded::NotOwned => recorded.push(false),
        }
    }
    for (_, seq) in promote {
        promote_next(tx, seq)?;
    }
    Ok(recorded)
}

/// (platform, store, product key): the unit of ordering.
type ProductKey = (String, String, String);

/// What [`record_outcome`] did.
enum Recorded {
    /// The event left `pending`; its product's next event is to be made ready.
    Finished(i64, ProductKey),
    /// Still pending (a retry), and ready.
    Pending,
    /// No such pending event leased to this worker.
    NotOwned,
}

/// Records one outcome, without making the product's next event ready.
fn record_outcome(
    tx: &Transaction<'_>,
    id: &str,
    worker: &str,
    outcome: &DispatchOutcome,
    ids: &RecentIds,
) -> Result<Recorded, StoreError> {
    let Some(seq) = ids.seq_of(tx, id)? else {
        return Ok(Recorded::NotOwned);
    };
    let now = to_millis(Utc::now());
    let (status, error, next, unreadable) = match outcome {
        DispatchOutcome::Delivered => (EventStatus::Delivered, None, now, None),
        DispatchOutcome::Retry { error, at } => (
            EventStatus::Pending,
            Some(error.as_str()),
            to_millis(*at),
            None,
        ),
        DispatchOutcome::Dead { error } => (EventStatus::Dead, Some(error.as_str()), now, None),
        DispatchOutcome::Unreadable { error } => {
            (EventStatus::Failed, None, now, Some(error.as_str()))
        }
    };
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET status = ?1, attempts = attempts + 1, \
         last_error = COALESCE(?2, last_error), next_attempt_at = ?3, lease_owner = NULL, \
         lease_until = NULL, ready = (?1 = 'pending'), error = COALESCE(?6, error) \
         WHERE seq = ?4 AND lease_owner = ?5 AND status = 'pending' \
         RETURNING seq, platform, store, product_key",
    )?;
    let row: Option<(i64, ProductKey)> = stmt
        .query_row(
            params![status.as_str(), error, next, seq, worker, unreadable],
            |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
        )
        .optional()?;
    Ok(match row {
        None => Recorded::NotOwned,
        Some(_) if status == EventStatus::Pending => Recorded::Pending,
        Some((seq, product)) => Recorded::Finished(seq, product),
    })
}

fn list(
    tx: &Transaction<'_>,
    filter: &EventFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<EventPage, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE (?1 IS NULL OR e.platform = ?1) \
         AND (?2 IS NULL OR e.store = ?2) AND (?3 IS NULL OR e.topic = ?3) \
         AND (?4 IS NULL OR e.status = ?4) AND (?5 IS NULL OR e.seq < ?5) \
         ORDER BY e.seq DESC LIMIT ?6"
    ))?;
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut events = stmt
        .query_map(
            params![
                filter.platform,
                filter.store,
                filter.topic,
                filter.status.map(EventStatus::as_str),
                before,
                fetch
            ],
            read_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(EventPage { events, next })
}

fn get(tx: &Transaction<'_>, id: &str, ids: &RecentIds) -> Result<Option<StoredEvent>, StoreError> {
    let Some(seq) = ids.seq_of(tx, id)? else {
        return Ok(None);
    };
    let mut stmt = tx.prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE e.seq = ?1"))?;
    Ok(stmt.query_row(params![seq], read_row).optional()?)
}

/// Deletes up to `limit` events `policy` covers, oldest first (see
/// [`EventStore::prune`]), with their bodies and their ids.
fn prune(
    tx: &Transaction<'_>,
    policy: &PrunePolicy,
    limit: usize,
    ids: &mut RecentIds,
    changes: &mut IdChanges,
) -> Result<usize, StoreError> {
    // The statements read the age indexes of migration 5 (their WHERE
    // clauses must stay word for word those of the indexes).
    const OLDEST: [&str; 2] = [
        "SELECT seq, id FROM events WHERE status = 'delivered' AND received_at < ?1 \
         ORDER BY received_at LIMIT ?2",
        "SELECT seq, id FROM events WHERE status IN ('failed', 'dead') AND received_at < ?1 \
         ORDER BY received_at LIMIT ?2",
    ];
    let mut victims: Vec<(i64, String)> = Vec::new();
    for (sql, cutoff) in OLDEST
        .iter()
        .zip([policy.delivered_before, policy.failed_before])
    {
        let Some(cutoff) = cutoff else { continue };
        let left = limit.saturating_sub(victims.len());
        if left == 0 {
            break;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![to_millis(cutoff), i64::try_from(left).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for row in rows {
            victims.push(row?);
        }
    }
    let mut deleted = 0;
    for (seq, id) in victims {
        match ids.place(seq) {
            IdPlace::Merging => continue,
            IdPlace::Indexed => {
                tx.prepare_cached("DELETE FROM event_ids WHERE id = ?1")?
                    .execute(params![id])?;
                ids.unindexed();
            }
            IdPlace::Fresh => ids.remove(&id, changes),
        }
        tx.prepare_cached("DELETE FROM event_bodies WHERE seq = ?1")?
            .execute(params![seq])?;
        tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?
            .execute(params![seq])?;
        deleted += 1;
    }
    Ok(deleted)
}

fn replay(tx: &Transaction<'_>, id: &str, ids: &RecentIds) -> Result<ReplayOutcome, StoreError> {
    let Some(seq) = ids.seq_of(tx, id)? else {
        return Ok(ReplayOutcome::NotFound);
    };
    let now = to_millis(Utc::now());
    // A dispatcher holds it: the attempt in progress ends first.
    let held: bool = tx
        .prepare_cached(
            "SELECT status = 'pending' AND lease_until IS NOT NULL AND lease_until > ?1 \
             FROM events WHERE seq = ?2",
        )?
        .query_row(params![now, seq], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    if held {
        return Ok(ReplayOutcome::InFlight);
    }
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = ?1, \
         lease_owner = NULL, lease_until = NULL, \
         ready = CASE WHEN status = 'pending' THEN ready ELSE 0 END \
         WHERE seq = ?2",
    )?;
    if stmt.execute(params![now, seq])? != 1 {
        return Ok(ReplayOutcome::NotFound);
    }
    // The product's turn: its ready event keeps it while a dispatcher holds
    // it or it has been tried (its retry goes first); otherwise the oldest
    // pending event is ready, so the replayed one goes before newer ones.
    tx.prepare_cached(
        "UPDATE events SET ready = 0 \
         WHERE seq IN (SELECT o.seq FROM events o, events e \
             WHERE e.seq = ?2 AND o.status = 'pending' AND o.ready = 1 \
               AND o.platform = e.platform AND o.store = e.store \
               AND o.product_key = e.product_key) \
           AND attempts = 0 AND (lease_until IS NULL OR lease_until <= ?1)",
    )?
    .execute(params![now, seq])?;
    let has_head: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events o, events e \
             WHERE e.seq = ?1 AND o.status = 'pending' AND o.ready = 1 \
               AND o.platform = e.platform AND o.store = e.store \
               AND o.product_key = e.product_key)",
        )?
        .query_row(params![seq], |r| r.get(0))?;
    if !has_head {
        promote_next(tx, seq)?;
    }
    Ok(ReplayOutcome::Queued)
}

/// Figures read on a connection of their own: counting a large backlog of
/// pending events takes a while and must not hold up the writer (WAL readers
/// never block it).
fn stats(path: &Path) -> Result<StoreStats, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // MAX(seq) is a primary-key lookup; the count walks the partial index
    // of pending events.
    let events: Option<i64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
    let pending: i64 = conn.query_row(
        "SELECT COUNT(*) FROM events WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(StoreStats {
        events: u64::try_from(events.unwrap_or(0)).unwrap_or(0),
        pending: u64::try_from(pending).unwrap_or(0),
        commits: 0,
        writes: 0,
        dropped_undelivered: 0,
    })
}

#[async_trait::async_trait]
impl EventStore for SqliteStore {
    /// Every command goes through the writer's one queue, in order.
    fn runs_commands_in_order(&self) -> bool {
        true
    }

    /// A flag and a stat of the lock file (see `ownership.rs`).
    fn may_dispatch(&self) -> bool {
        self.owner_check.may_dispatch()
    }

    fn describe(&self) -> String {
        format!(
            "sqlite {} (WAL, synchronous={})",
            self.path.display(),
            synchronous(self.durability)
        )
    }

    async fn insert(&self, event: NewEvent) -> Result<InsertOutcome, StoreError> {
        // Compressed here, on the caller's thread: the writer is the one
        // thread every delivery waits for.
        let stored = StoredBody::encode(&event.raw_body);
        self.call(|r| Command::Insert(Box::new((event, stored)), r))
            .await
    }

    async fn claim_due(
        &self,
        worker_id: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.claim_runs(worker_id, lease, limit, 1).await
    }

    async fn claim_runs(
        &self,
        worker_id: &str,
        lease: Duration,
        limit: usize,
        run: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let worker = worker_id.to_owned();
        self.call(|reply| Command::Claim {
            worker,
            lease,
            limit,
            run,
            reply,
        })
        .await
    }

    async fn release(&self, ids: &[String], worker_id: &str) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (ids, worker) = (ids.to_vec(), worker_id.to_owned());
        self.call(|reply| Command::Release { ids, worker, reply })
            .await
    }

    async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        outcome: DispatchOutcome,
    ) -> Result<bool, StoreError> {
        let (id, worker) = (id.to_owned(), worker_id.to_owned());
        self.call(|reply| Command::Complete {
            id,
            worker,
            outcome,
            reply,
        })
        .await
    }

    async fn complete_run(
        &self,
        worker_id: &str,
        outcomes: Vec<(String, DispatchOutcome)>,
    ) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let worker = worker_id.to_owned();
        self.call(|reply| Command::CompleteRun {
            worker,
            outcomes,
            reply,
        })
        .await
    }

    async fn list(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let filter = filter.clone();
        self.call(|reply| Command::List {
            filter,
            before,
            limit,
            reply,
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let id = id.to_owned();
        self.call(|r| Command::Get(id, r)).await
    }

    async fn replay(&self, id: &str) -> Result<ReplayOutcome, StoreError> {
        let id = id.to_owned();
        self.call(|r| Command::Replay(id, r)).await
    }

    async fn prune(&self, policy: &PrunePolicy, limit: usize) -> Result<usize, StoreError> {
        if policy.is_noop() || limit == 0 {
            return Ok(0);
        }
        let policy = *policy;
        self.call(|reply| Command::Prune {
            policy,
            limit,
            reply,
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Through the writer: ready means it is alive and keeping up.
        self.call(Command::Ping).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        // A ping through the writer first: it runs after the batch in
        // progress has committed, so the figures include everything this
        // caller was already answered for (claims and completions are
        // answered before their commit).
        self.call(Command::Ping).await?;
        let path = self.path.clone();
        let mut s = tokio::task::spawn_blocking(move || stats(&path))
            .await
            .map_err(|_| StoreError::Unavailable)??;
        s.commits = self.counters.commits.load(Ordering::Relaxed);
        s.writes = self.counters.writes.load(Ordering::Relaxed);
        Ok(s)
    }

    async fn close(&self) {
        // Stop the checkpointer first, so the writer's final checkpoint does
        // not race it.
        drop(take_locked(&self.alive));
        let checkpointer = take_locked(&self.checkpointer);
        if let Some(handle) = checkpointer {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // Refuse new calls; the writer drains what is queued, commits it and
        // exits when the last sender (ours, or an in-flight call's) is gone.
        drop(take_locked(&self.sender));
        let handle = take_locked(&self.writer);
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // Everything is written and checkpointed: another store may open
        // the file now.
        drop(take_locked(&self.owner));
    }
}

/// A store dropped without [`EventStore::close`] shuts down the same way,
/// blocking: the file's lock is released only once the writer and the
/// checkpointer have stopped, so a store opened on the file next (in this
/// process) never meets their open connections ("database is locked").
impl Drop for SqliteStore {
    fn drop(&mut self) {
        drop(take_locked(&self.alive));
        if let Some(handle) = take_locked(&self.checkpointer) {
            let _ = handle.join();
        }
        drop(take_locked(&self.sender));
        if let Some(handle) = take_locked(&self.writer) {
            let _ = handle.join();
        }
        drop(take_locked(&self.owner));
    }
}

/// Takes what a shutdown-only slot holds (a poisoned lock still yields it:
/// closing must proceed whatever panicked before).
fn take_locked<T>(slot: &std::sync::Mutex<Option<T>>) -> Option<T> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo file system (no blocks at all) is not a full disk: no
    /// "0 KiB free" hint for a path under /sys or /proc, where the cause is
    /// another (permissions).
    #[cfg(target_os = "linux")]
    #[test]
    fn no_full_disk_hint_for_a_file_system_without_blocks() {
        for dir in ["/sys", "/proc"] {
            if Path::new(dir).is_dir() {
                assert_eq!(
                    open_failure_hint(&Path::new(dir).join("x.db")),
                    None,
                    "{dir}"
                );
            }
        }
    }

    #[test]
    fn a_compressed_body_claiming_more_than_lz4_can_hold_is_corrupt() {
        // The most compressible body there is reads back whole...
        let zeros = vec![0u8; 4 * 1024 * 1024];
        let stored = StoredBody::encode(&zeros).unwrap();
        let back = StoredBody::decode(CODEC_LZ4, stored.bytes.clone()).unwrap();
        assert_eq!(back.len(), zeros.len());
        // ...and a damaged size in front is an error, not a 4 GiB
        // allocation.
        let mut damaged = stored.bytes;
        damaged[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = StoredBody::decode(CODEC_LZ4, damaged).unwrap_err();
        assert!(err.to_string().contains("claims 4294967295 bytes"), "{err}");
    }

    #[tokio::test]
    async fn bodies_are_stored_compressed_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
        let json = include_bytes!("../../../tests/fixtures/products_create.json");
        // Incompressible: a pseudo-random sequence.
        let noise: Vec<u8> = (0u32..300)
            .scan(12345u32, |x, _| {
                *x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                Some(x.to_be_bytes()[1])
            })
            .collect();
        let bodies: [&[u8]; 3] = [json, b"{\"id\":1}", &noise];
        let mut ids = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            let mut e = NewEvent::unparseable(
                &catalog_core::webhook::DeliveryMeta::new(
                    catalog_core::PlatformId::SHOPIFY,
                    "s",
                    catalog_core::Topic::ProductCreated,
                    "products/create",
                    catalog_core::EventId::new(format!("e{i}")),
                ),
                Bytes::copy_from_slice(body),
                &catalog_core::webhook::PayloadError::new("", "x"),
                Utc::now(),
            );
            e.status = EventStatus::Pending;
            ids.push(e.id.clone());
            assert_eq!(store.insert(e).await.unwrap(), InsertOutcome::Inserted);
        }
        for (id, body) in ids.iter().zip(bodies) {
            let got = store.get(id).await.unwrap().unwrap();
            assert_eq!(&got.event.raw_body[..], body);
        }
        store.close().await;
        let conn = Connection::open(&path).unwrap();
        let rows: Vec<(i64, i64)> = conn
            .prepare("SELECT codec, length(raw_body) FROM event_bodies ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // The JSON sample shrinks; a tiny body and incompressible bytes do not.
        assert_eq!(rows[0].0, CODEC_LZ4);
        assert!(rows[0].1 < json.len() as i64 / 2, "{rows:?}");
        assert_eq!(rows[1], (0, 8));
        assert_eq!(rows[2], (0, 300));
    }

    fn numbered(n: usize) -> NewEvent {
        let mut e = NewEvent::unparseable(
            &catalog_core::webhook::DeliveryMeta::new(
                catalog_core::PlatformId::SHOPIFY,
                "s",
                catalog_core::Topic::ProductCreated,
                "products/create",
                catalog_core::EventId::new(format!("gen-{n}")),
            ),
            Bytes::from(format!("{{\"id\":{n}}}")),
            &catalog_core::webhook::PayloadError::new("", "x"),
            Utc::now(),
        );
        e.status = EventStatus::Pending;
        e
    }

    /// Events up to the watermark that the index lacks: must be none.
    fn unindexed_below_watermark(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM events e WHERE e.seq <= \
                 (SELECT value FROM store_state WHERE key = 'ids_merged_through') \
                 AND NOT EXISTS (SELECT 1 FROM event_ids i WHERE i.id = e.id AND i.seq = e.seq)",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Deduplication and lookups by id hold for ids in memory, in the
    /// generation being merged and in the index, across restarts and across
    /// a merge cut short (a crash between two slices).
    /// The store on `path` with generations of 16 ids: tests go through
    /// merges after a few inserts.
    fn small_generations(path: &Path) -> SqliteStore {
        SqliteStore::open_with_generation(path, Durability::ProcessCrash, 8, 16, Duration::ZERO)
            .unwrap()
    }

    #[tokio::test]
    async fn ids_stay_unique_through_merges_restarts_and_cut_merges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gen.db");
        let open = || small_generations(&path);
        let store = open();
        for n in 0..100 {
            assert_eq!(
                store.insert(numbered(n)).await.unwrap(),
                InsertOutcome::Inserted
            );
            // A copy right after, often in the same write batch.
            assert_eq!(
                store.insert(numbered(n)).await.unwrap(),
                InsertOutcome::Duplicate,
                "{n}"
            );
        }
        for n in 0..100 {
            assert_eq!(
                store.insert(numbered(n)).await.unwrap(),
                InsertOutcome::Duplicate,
                "{n}"
            );
            let got = store.get(&numbered(n).id).await.unwrap().unwrap();
            assert_eq!(got.event.event_id, numbered(n).event_id);
        }
        // Lookups by id for the index, and for the newest (in memory).
        for n in [3, 99] {
            assert_eq!(
                store.replay(&numbered(n).id).await.unwrap(),
                ReplayOutcome::Queued
            );
        }
        assert_eq!(
            store.replay("no-such-id").await.unwrap(),
            ReplayOutcome::NotFound
        );
        store.close().await;

        let watermark = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row(
                    "SELECT value FROM store_state WHERE key = 'ids_merged_through'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let merged = watermark(&path);
        assert!(merged >= 48, "merges ran: watermark {merged}");
        assert_eq!(unindexed_below_watermark(&path), 0);

        // A merge cut short: the watermark back at 20 and every other id
        // above it missing from the index, as after a crash mid-merge.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "UPDATE store_state SET value = 20 WHERE key = 'ids_merged_through'",
                [],
            )
            .unwrap();
            conn.execute("DELETE FROM event_ids WHERE seq > 20 AND seq % 2 = 0", [])
                .unwrap();
        }
        let store = open();
        for n in 0..100 {
            assert_eq!(
                store.insert(numbered(n)).await.unwrap(),
                InsertOutcome::Duplicate,
                "{n}"
            );
        }
        for n in 100..200 {
            assert_eq!(
                store.insert(numbered(n)).await.unwrap(),
                InsertOutcome::Inserted
            );
        }
        for n in 0..200 {
            assert_eq!(
                store.insert(numbered(n)).await.unwrap(),
                InsertOutcome::Duplicate,
                "{n}"
            );
            assert!(store.get(&numbered(n).id).await.unwrap().is_some(), "{n}");
        }
        store.close().await;
        assert!(
            watermark(&path) > merged,
            "the cut merge was redone and went on"
        );
        assert_eq!(unindexed_below_watermark(&path), 0);
        let count: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 200);
    }

    /// Pruning deletes an event's id wherever the id is kept (the index, the
    /// generation being merged, memory), leaves no index row behind, and
    /// holds across a restart.
    #[tokio::test]
    async fn pruning_forgets_ids_in_the_index_in_merges_and_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prune.db");
        let open = || small_generations(&path);
        let store = open();
        let now = Utc::now();
        let aged = |n: usize| {
            let mut e = numbered(n);
            // Even events are old, odd ones recent.
            if n.is_multiple_of(2) {
                e.received_at = now - chrono::Duration::days(10);
            }
            e
        };
        for n in 0..100 {
            store.insert(aged(n)).await.unwrap();
        }
        loop {
            let claimed = store
                .claim_due("w", Duration::from_secs(60), 200)
                .await
                .unwrap();
            if claimed.is_empty() {
                break;
            }
            for c in claimed {
                store
                    .complete(&c.event.id, "w", DispatchOutcome::Delivered)
                    .await
                    .unwrap();
            }
        }
        let policy = PrunePolicy::new(Some(now - chrono::Duration::days(5)), None);
        let mut pruned = 0;
        // Events whose id is being merged wait for the merge, which each
        // write batch (these prunes too) moves on.
        for _ in 0..100 {
            pruned += store.prune(&policy, 7).await.unwrap();
            if pruned == 50 {
                break;
            }
        }
        assert_eq!(pruned, 50);
        assert_eq!(store.prune(&policy, 7).await.unwrap(), 0);
        for n in 0..100usize {
            let expected = if n.is_multiple_of(2) {
                InsertOutcome::Inserted
            } else {
                InsertOutcome::Duplicate
            };
            assert_eq!(store.insert(aged(n)).await.unwrap(), expected, "{n}");
        }
        store.close().await;
        let stale_index_rows = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM event_ids i \
                     WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = i.seq)",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        assert_eq!(stale_index_rows(&path), 0);
        assert_eq!(unindexed_below_watermark(&path), 0);
        let store = open();
        for n in 0..100 {
            assert_eq!(
                store.insert(aged(n)).await.unwrap(),
                InsertOutcome::Duplicate,
                "{n}"
            );
        }
        store.close().await;
        let conn = Connection::open(&path).unwrap();
        let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(count("SELECT COUNT(*) FROM events"), 100);
        assert_eq!(count("SELECT COUNT(*) FROM event_bodies"), 100);
        // The prune statements read the age indexes, not the whole table.
        for (status, index) in [
            ("status = 'delivered'", "events_delivered_age"),
            ("status IN ('failed', 'dead')", "events_failed_age"),
        ] {
            let plan: String = conn
                .query_row(
                    &format!(
                        "EXPLAIN QUERY PLAN SELECT seq, id FROM events WHERE {status} \
                         AND received_at < 1 ORDER BY received_at LIMIT 5"
                    ),
                    [],
                    |r| r.get(3),
                )
                .unwrap();
            assert!(plan.contains(index), "{plan}");
        }
    }

    /// A database file set up as the store sets one up, and its recent ids
    /// with generations of `generation`, for tests that run the writer's
    /// steps one by one on one connection.
    fn steps_db(generation: usize) -> (tempfile::TempDir, PathBuf, Connection, RecentIds) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steps.db");
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn, Durability::ProcessCrash).unwrap();
        migrate(&mut conn).unwrap();
        let ids = RecentIds::load(&conn, generation).unwrap();
        (dir, path, conn, ids)
    }

    /// A claim of up to 10 events by worker `w` (runs of up to `run`), and
    /// where its answer arrives.
    fn claim_command(
        run: usize,
    ) -> (
        Command,
        oneshot::Receiver<Result<Vec<StoredEvent>, StoreError>>,
    ) {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Claim {
            worker: "w".into(),
            lease: Duration::from_secs(60),
            limit: 10,
            run,
            reply,
        };
        (cmd, rx)
    }

    /// A batch of one ping, as the writer runs it: its answer.
    fn ping_batch(
        conn: &mut Connection,
        ids: &mut RecentIds,
        health: &mut Health,
        counters: &Counters,
    ) -> Result<(), StoreError> {
        let (reply, mut rx) = oneshot::channel();
        run_batch(conn, &mut vec![Command::Ping(reply)], ids, health, counters);
        rx.try_recv().expect("answered")
    }

    /// One write batch that inserts `e`, as `run_batch` runs it.
    fn insert_batch(conn: &mut Connection, ids: &mut RecentIds, e: &NewEvent) {
        let tx = conn.transaction().unwrap();
        let mut changes = IdChanges::default();
        insert(&tx, e, None, ids, &mut changes).unwrap();
        let merged = ids.merge_slice(&tx, changes.added.len()).unwrap();
        tx.commit().unwrap();
        ids.committed(merged);
    }

    /// Pruning, step by step on one connection: an event whose id is in the
    /// generation being merged waits for the merge (else the merge would
    /// put the id of a deleted event into the index), and a prune that rolls
    /// back puts the ids it took back.
    #[test]
    fn pruning_waits_for_a_merge_and_undoes_on_rollback() {
        let (_dir, _path, mut conn, mut ids) = steps_db(4);
        // One write batch, as `run_batch` runs it; returns what `f` returned.
        let batch = |conn: &mut Connection,
                     ids: &mut RecentIds,
                     f: &dyn Fn(&Transaction<'_>, &mut RecentIds, &mut IdChanges) -> usize|
         -> usize {
            let mut changes = IdChanges::default();
            let tx = conn.transaction().unwrap();
            let out = f(&tx, ids, &mut changes);
            let merged = ids.merge_slice(&tx, changes.added.len()).unwrap();
            tx.commit().unwrap();
            ids.committed(merged);
            out
        };
        let old = |n: usize| {
            let mut e = numbered(n);
            e.status = EventStatus::Delivered;
            e.received_at = Utc::now() - chrono::Duration::days(10);
            e
        };
        let policy = PrunePolicy::new(Some(Utc::now() - chrono::Duration::days(5)), None);
        // Four ids fill a generation: after this batch they are all merging.
        batch(&mut conn, &mut ids, &|tx, ids, changes| {
            for n in 0..4 {
                insert(tx, &old(n), None, ids, changes).unwrap();
            }
            0
        });
        let first = batch(&mut conn, &mut ids, &|tx, ids, changes| {
            prune(tx, &policy, 10, ids, changes).unwrap()
        });
        assert_eq!(first, 0, "ids being merged wait");
        let mut pruned = 0;
        for _ in 0..20 {
            pruned += batch(&mut conn, &mut ids, &|tx, ids, changes| {
                prune(tx, &policy, 10, ids, changes).unwrap()
            });
        }
        assert_eq!(pruned, 4, "pruned once merged");
        let rows = |conn: &Connection, table: &str| -> i64 {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(rows(&conn, "event_ids"), 0);
        assert_eq!(rows(&conn, "events"), 0);

        // In memory (fresh): taken out by a prune, put back by its rollback.
        batch(&mut conn, &mut ids, &|tx, ids, changes| {
            insert(tx, &old(10), None, ids, changes).unwrap();
            0
        });
        let mut changes = IdChanges::default();
        {
            let tx = conn.transaction().unwrap();
            assert_eq!(prune(&tx, &policy, 10, &mut ids, &mut changes).unwrap(), 1);
            assert_eq!(ids.seq_of(&tx, &old(10).id).unwrap(), None);
            // Dropped: rolls back.
        }
        ids.undo(changes);
        assert!(ids.seq_of(&conn, &old(10).id).unwrap().is_some());
        assert_eq!(rows(&conn, "events"), 1);
    }

    /// The followers of a run come from the pending-per-product index, so
    /// claiming runs costs the same whatever the backlog.
    #[test]
    fn run_followers_read_the_pending_product_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT seq FROM events \
                 WHERE status = 'pending' AND platform = 'a' AND store = 'b' \
                   AND product_key = 'c' AND seq > 1 \
                 ORDER BY platform, store, product_key, seq LIMIT 15",
            )
            .unwrap()
            .query_map([], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.contains("COVERING INDEX events_pending_product")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
    }

    /// The id filter is built beside the writer while merges go on: it
    /// must still hold every id in the index when it is installed (those of
    /// the generation being merged when its snapshot was taken, and those
    /// frozen after), so no id stops being a duplicate; and it answers for
    /// new ids without the index.
    #[test]
    fn the_id_filter_never_hides_an_indexed_id() {
        let (_dir, path, mut conn, mut ids) = steps_db(16);
        let mut next = 0;
        // A slice of 2 ids merged a batch of one insert: a generation of 16
        // takes 8 batches.
        let mut one = |conn: &mut Connection, ids: &mut RecentIds| {
            insert_batch(conn, ids, &numbered(next));
            next += 1;
        };
        for _ in 0..19 {
            one(&mut conn, &mut ids);
        }
        assert!(ids.unmerged() > 0, "a merge is under way");
        assert_eq!(ids.filter_rules_out("x"), None, "no filter yet");
        let alive = Arc::new(());
        ids.filter_from(&path, Arc::downgrade(&alive));
        // The build's snapshot is taken by now (a few ids to read); these
        // merges and generations come after it.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..40 {
            one(&mut conn, &mut ids);
        }
        for _ in 0..200 {
            ids.poll_filter();
            if ids.filter_rules_out("x").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ids.filter_rules_out("x").is_some(), "the build finished");
        for _ in 0..40 {
            one(&mut conn, &mut ids);
        }
        let indexed: Vec<String> = conn
            .prepare("SELECT id FROM event_ids")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(indexed.len() >= 64, "{} ids in the index", indexed.len());
        for id in &indexed {
            assert_eq!(ids.filter_rules_out(id), Some(false), "{id}");
        }
        for n in 0..next {
            let id = numbered(n).id;
            assert!(ids.seq_of(&conn, &id).unwrap().is_some(), "id {n} lost");
        }
        let new = (1000..1100)
            .filter(|&n| ids.filter_rules_out(&numbered(n).id) == Some(true))
            .count();
        assert!(new >= 95, "{new} of 100 new ids ruled out");
    }

    /// Ids of pruned events stay in a Bloom filter: once they are most of
    /// it, a prune round has it rebuilt from the index (so it does not grow
    /// for as long as the process runs), and not before.
    #[test]
    fn the_id_filter_is_rebuilt_once_pruned_ids_dominate_it() {
        let (_dir, path, mut conn, mut ids) = steps_db(16);
        for n in 0..400 {
            insert_batch(&mut conn, &mut ids, &numbered(n));
        }
        let installed = |ids: &mut RecentIds| {
            for _ in 0..300 {
                ids.poll_filter();
                if !ids.filter_state().1 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            ids.filter_state()
        };
        let alive = Arc::new(());
        ids.filter_from(&path, Arc::downgrade(&alive));
        let (Some(before), false) = installed(&mut ids) else {
            panic!("the first build did not finish")
        };
        assert!(before >= 350, "{before} ids in the filter");
        // Not stale: no rebuild.
        ids.rebuild_filter_if_stale();
        assert_eq!(ids.filter_state(), (Some(before), false));
        // Prune most indexed ids, as `prune` does.
        let gone = conn
            .execute("DELETE FROM event_ids WHERE seq > 20", [])
            .unwrap();
        for _ in 0..gone {
            ids.unindexed();
        }
        ids.rebuild_filter_if_stale();
        let (Some(after), false) = installed(&mut ids) else {
            panic!("no rebuild")
        };
        assert!(
            after < before / 2,
            "{after} ids after the rebuild, {before} before"
        );
        // What is left in the index is still found.
        for n in 0..20 {
            assert!(ids.seq_of(&conn, &numbered(n).id).unwrap().is_some(), "{n}");
        }
    }

    /// A filter build for a store that has closed stops instead of holding
    /// a read transaction (the closing checkpoint would wait for it), and
    /// lookups go on through the index.
    #[test]
    fn an_id_filter_build_stops_when_the_store_closes() {
        let (_dir, path, mut conn, mut ids) = steps_db(4);
        for n in 0..40 {
            insert_batch(&mut conn, &mut ids, &numbered(n));
        }
        let alive = Arc::new(());
        let closed = Arc::downgrade(&alive);
        drop(alive);
        ids.filter_from(&path, closed);
        for _ in 0..300 {
            ids.poll_filter();
            if !ids.filter_state().1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ids.filter_state(), (None, false));
        for n in 0..40 {
            assert!(ids.seq_of(&conn, &numbered(n).id).unwrap().is_some(), "{n}");
        }
    }

    /// A cached statement runs as prepared whatever its parameters: without
    /// the planner stability setting, SQLite parses and plans a statement
    /// with `LIMIT ?` again on every call (the writer's claims did).
    #[test]
    fn statements_are_not_prepared_again_per_call() {
        use rusqlite::StatementStatus;
        let reprepares = |conn: &Connection| -> i32 {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq FROM events WHERE status = 'pending' AND ready = 1 \
                     AND next_attempt_at <= ?1 ORDER BY seq LIMIT ?2",
                )
                .unwrap();
            for (now, limit) in [(1_i64, 32_i64), (2, 32), (3, 16)] {
                stmt.query_map(params![now, limit], |r| r.get::<_, i64>(0))
                    .unwrap()
                    .for_each(drop);
            }
            stmt.get_status(StatementStatus::RePrepare)
        };
        let mut plain = Connection::open_in_memory().unwrap();
        migrate(&mut plain).unwrap();
        assert!(reprepares(&plain) > 0, "the control re-prepares");
        let mut configured = Connection::open_in_memory().unwrap();
        configure(&configured, Durability::PowerLoss).unwrap();
        migrate(&mut configured).unwrap();
        assert_eq!(reprepares(&configured), 0);
    }

    /// Under power-loss durability, only batches that acknowledge something
    /// wait for a sync; the dispatcher's bookkeeping does not.
    #[test]
    fn only_acknowledging_batches_sync() {
        let conn = Connection::open_in_memory().unwrap();
        configure(&conn, Durability::PowerLoss).unwrap();
        let level = |conn: &Connection| -> i64 {
            conn.pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(level(&conn), 2, "FULL to begin with");
        let mut sync = CommitSync::new(Durability::PowerLoss);
        let (ping, _rx) = oneshot::channel();
        let (complete, _rx2) = oneshot::channel();
        let bookkeeping = [
            Command::Ping(ping),
            Command::Complete {
                id: "x".into(),
                worker: "w".into(),
                outcome: DispatchOutcome::Delivered,
                reply: complete,
            },
        ];
        sync.prepare(&conn, &bookkeeping).unwrap();
        assert_eq!(level(&conn), 1, "NORMAL for leases and outcomes");
        let (insert, _rx3) = oneshot::channel();
        let with_insert = [
            Command::Insert(Box::new((numbered(1), None)), insert),
            Command::Ping(oneshot::channel().0),
        ];
        sync.prepare(&conn, &with_insert).unwrap();
        assert_eq!(level(&conn), 2, "FULL again before an acknowledged insert");
        let (replay, _rx4) = oneshot::channel();
        sync.prepare(&conn, &[Command::Replay("x".into(), replay)])
            .unwrap();
        assert_eq!(level(&conn), 2);
        // Process-crash durability never syncs commits: nothing changes.
        configure(&conn, Durability::ProcessCrash).unwrap();
        let mut relaxed = CommitSync::new(Durability::ProcessCrash);
        relaxed.prepare(&conn, &with_insert).unwrap();
        assert_eq!(level(&conn), 1);
    }

    /// After a commit fails (here the database is full, as on a full disk),
    /// pings are not ready until a probe write commits again; nothing was
    /// acknowledged meanwhile.
    #[test]
    fn readiness_follows_failed_commits_until_a_write_succeeds() {
        let (_dir, _path, mut conn, mut ids) = steps_db(1000);
        let counters = Counters::default();
        let mut health = Health::unchecked();
        let ping = |conn: &mut Connection, ids: &mut RecentIds, health: &mut Health| {
            ping_batch(conn, ids, health, &counters)
        };
        let insert = |conn: &mut Connection, ids: &mut RecentIds, health: &mut Health, n| {
            let (reply, mut rx) = oneshot::channel();
            let cmd = Command::Insert(Box::new((numbered(n), None)), reply);
            run_batch(conn, &mut vec![cmd], ids, health, &counters);
            rx.try_recv().expect("answered")
        };
        assert!(insert(&mut conn, &mut ids, &mut health, 1).is_ok());
        assert!(ping(&mut conn, &mut ids, &mut health).is_ok());
        // No room for another page.
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        let mut refused = 0;
        for n in 2..200 {
            refused += usize::from(insert(&mut conn, &mut ids, &mut health, n).is_err());
        }
        assert!(refused > 0, "the database never filled up");
        assert!(health.failing);
        let err = ping(&mut conn, &mut ids, &mut health)
            .unwrap_err()
            .to_string();
        assert!(err.contains("full"), "{err}");
        assert!(health.failing, "still failing: the probe could not commit");
        // Room again: the next ping's probe commits, and so do inserts.
        conn.pragma_update(None, "max_page_count", pages * 100)
            .unwrap();
        assert!(ping(&mut conn, &mut ids, &mut health).is_ok());
        assert!(!health.failing);
        assert!(insert(&mut conn, &mut ids, &mut health, 500).is_ok());
        // What was refused is not there; what was answered Ok is.
        let stored: i64 = conn
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(usize::try_from(stored).unwrap(), 1 + (198 - refused) + 1);
    }

    /// A damaged file (here an index page overwritten) fails deliveries
    /// while a probe write may still commit: once SQLite has reported the
    /// damage, pings stay not ready, naming the file.
    #[test]
    fn a_damaged_file_stays_not_ready() {
        let (dir, path, mut conn, mut ids) = steps_db(1000);
        for n in 0..300 {
            let mut e = numbered(n);
            e.product_id = Some(format!("p{n}"));
            insert_batch(&mut conn, &mut ids, &e);
        }
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'events_pending_product'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
        drop(conn);
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(
                u64::try_from((root - 1) * page_size).unwrap(),
            ))
            .unwrap();
            f.write_all(&vec![0xA5; usize::try_from(page_size).unwrap()])
                .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn, Durability::ProcessCrash).unwrap();
        let counters = Counters::default();
        let mut health = Health::unchecked();
        let ping = |conn: &mut Connection, ids: &mut RecentIds, health: &mut Health| {
            ping_batch(conn, ids, health, &counters)
        };
        assert!(
            ping(&mut conn, &mut ids, &mut health).is_ok(),
            "not known yet"
        );
        let (reply, mut rx) = oneshot::channel();
        let mut e = numbered(1000);
        e.product_id = Some("p1".into());
        let cmd = Command::Insert(Box::new((e, None)), reply);
        run_batch(&mut conn, &mut vec![cmd], &mut ids, &mut health, &counters);
        let err = rx.try_recv().expect("answered").unwrap_err().to_string();
        assert!(err.contains("malformed"), "{err}");
        assert!(health.damaged);
        for _ in 0..3 {
            let err = ping(&mut conn, &mut ids, &mut health)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("damaged") && err.contains("integrity_check"),
                "{err}"
            );
        }
        // And no delivery is acknowledged into it any more, whichever
        // pages it would touch.
        let (reply, mut rx) = oneshot::channel();
        let cmd = Command::Insert(Box::new((numbered(2000), None)), reply);
        run_batch(&mut conn, &mut vec![cmd], &mut ids, &mut health, &counters);
        let err = rx.try_recv().expect("answered").unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        drop(dir);
    }

    /// While commits fail, a claim fails with its batch instead of handing
    /// out events whose lease rolled back (the dispatcher would claim and
    /// send them again at once, in a loop, for as long as the disk is full).
    #[test]
    fn claims_wait_for_their_commit_while_commits_fail() {
        let (_dir, _path, mut conn, mut ids) = steps_db(1000);
        let counters = Counters::default();
        let mut health = Health::unchecked();
        let claim = || claim_command(1);
        let insert = |n| Command::Insert(Box::new((numbered(n), None)), oneshot::channel().0);
        let mut batch = vec![insert(1)];
        run_batch(&mut conn, &mut batch, &mut ids, &mut health, &counters);
        let pages: i64 = conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        conn.pragma_update(None, "max_page_count", pages).unwrap();
        // Fill the database: inserts start to fail.
        for n in 2..200 {
            run_batch(
                &mut conn,
                &mut vec![insert(n)],
                &mut ids,
                &mut health,
                &counters,
            );
        }
        assert!(health.failing, "the database never filled up");
        // A duplicate delivery writes nothing, so its batch commits even
        // on a full disk: that proves nothing, the store stays failing.
        run_batch(
            &mut conn,
            &mut vec![insert(1)],
            &mut ids,
            &mut health,
            &counters,
        );
        assert!(health.failing, "a batch of duplicates cleared the failure");
        // A claim, then an insert that fails: the batch rolls back, and the
        // claim says so rather than handing out event 1.
        let (cmd, mut rx) = claim();
        let mut batch = vec![cmd, insert(1000)];
        run_batch(&mut conn, &mut batch, &mut ids, &mut health, &counters);
        assert!(rx.try_recv().expect("answered").is_err());
        // Room again: claims commit and are answered at once as before.
        conn.pragma_update(None, "max_page_count", pages * 100)
            .unwrap();
        run_batch(
            &mut conn,
            &mut vec![insert(2000)],
            &mut ids,
            &mut health,
            &counters,
        );
        assert!(!health.failing);
        let (cmd, mut rx) = claim();
        run_batch(&mut conn, &mut vec![cmd], &mut ids, &mut health, &counters);
        let claimed = rx.try_recv().expect("answered").unwrap();
        assert!(claimed.iter().any(|e| e.event.id == numbered(1).id));
    }

    /// A claim in a batch that acknowledges deliveries takes heads only
    /// (ingestion first); alone, it takes runs.
    #[test]
    fn claims_take_runs_only_when_no_delivery_waits() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let mut ids = RecentIds::load(&conn, 1000).unwrap();
        let counters = Counters::default();
        let mut health = Health::unchecked();
        let mut run = |batch: &mut Vec<Command>| {
            run_batch(&mut conn, batch, &mut ids, &mut health, &counters);
        };
        let product = |n: usize, p: &str| {
            let mut e = numbered(n);
            e.product_id = Some(p.to_owned());
            e
        };
        let insert = |e: NewEvent| Command::Insert(Box::new((e, None)), oneshot::channel().0);
        let mut batch: Vec<Command> = (0..3).map(|n| insert(product(n, "p"))).collect();
        run(&mut batch);
        let claim = || claim_command(3);
        let names = |mut rx: oneshot::Receiver<Result<Vec<StoredEvent>, StoreError>>| {
            rx.try_recv()
                .unwrap()
                .unwrap()
                .iter()
                .map(|e| e.event.event_id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        let (cmd, rx) = claim();
        let mut batch = vec![insert(product(3, "q")), cmd];
        run(&mut batch);
        assert_eq!(names(rx), ["gen-0", "gen-3"], "heads only beside an insert");
        let (reply, _rx) = oneshot::channel();
        let mut batch = vec![Command::Release {
            ids: vec![numbered(0).id, product(3, "q").id],
            worker: "w".into(),
            reply,
        }];
        run(&mut batch);
        let (cmd, rx) = claim();
        run(&mut vec![cmd]);
        assert_eq!(
            names(rx),
            ["gen-0", "gen-1", "gen-2", "gen-3"],
            "runs when alone"
        );
    }

    #[tokio::test]
    async fn one_store_owns_the_file_until_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.db");
        let first = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
        let second = SqliteStore::open(&path, Durability::ProcessCrash, 8);
        match second {
            Err(StoreError::InUse(p)) => assert_eq!(p, path.display().to_string()),
            other => panic!("expected InUse, got {other:?}"),
        }
        // The refused open changed nothing: the owner still writes.
        first.ping().await.unwrap();
        first.close().await;
        let reopened = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
        reopened.ping().await.unwrap();
        drop(reopened);
        // Dropped without close: the lock goes with it.
        SqliteStore::open(&path, Durability::ProcessCrash, 8)
            .unwrap()
            .close()
            .await;
    }

    /// A symbolic link to the file, or to its folder, is the same file: the
    /// second open is refused as for the same name (else both servers
    /// store every delivery, once each).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_link_to_an_owned_file_is_refused_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned.db");
        let first = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
        let file_link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&path, &file_link).unwrap();
        let dir_link = dir.path().join("linked-dir");
        std::os::unix::fs::symlink(dir.path(), &dir_link).unwrap();
        for other in [file_link, dir_link.join("owned.db")] {
            match SqliteStore::open(&other, Durability::ProcessCrash, 8) {
                Err(StoreError::InUse(_)) => {}
                other_result => panic!("{}: expected InUse, got {other_result:?}", other.display()),
            }
        }
        first.close().await;
    }

    /// A link to a file not created yet: the first server creates the file
    /// through it, and a second one on the file's own name is refused.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_dangling_link_finds_the_lock_of_the_file_it_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let real = dir.path().join("data").join("new.db");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink("data/new.db", &link).unwrap();
        let first = SqliteStore::open(&link, Durability::ProcessCrash, 8).unwrap();
        assert!(real.exists());
        match SqliteStore::open(&real, Durability::ProcessCrash, 8) {
            Err(StoreError::InUse(p)) => {
                assert_eq!(
                    p,
                    std::fs::canonicalize(&real).unwrap().display().to_string()
                );
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        first.close().await;
    }

    /// A wrong `database.url` naming another program's database is refused
    /// before anything is written to it (an outside audit saw such a file
    /// adopted: our tables added, the file switched to WAL).
    #[tokio::test]
    async fn another_programs_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE customers (id INTEGER); CREATE TABLE orders (id INTEGER);
                 INSERT INTO customers VALUES (1);",
            )
            .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path, Durability::PowerLoss, 8)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("another program's tables (customers, orders)"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file was changed"
        );
        assert!(!dir.path().join("shop.db-wal").exists());

        // One that keeps a `user_version` of its own (a re-audit saw one at
        // version 5 migrated, and one at 2 switched to WAL before refused).
        for version in [2, 5] {
            let path = dir.path().join(format!("v{version}.db"));
            {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch("CREATE TABLE customers (id INTEGER);")
                    .unwrap();
                conn.pragma_update(None, "user_version", version).unwrap();
            }
            let before = std::fs::read(&path).unwrap();
            let err = SqliteStore::open(&path, Durability::PowerLoss, 8)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(err.contains("no events table"), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), before, "v{version} changed");
        }
    }

    /// Versions this build cannot have written are refused before any
    /// migration runs, with a message that says so.
    #[test]
    fn unknown_schema_versions_are_refused_clearly() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.pragma_update(None, "user_version", -1).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(
            err.contains("schema version -1 is not one this build knows"),
            "{err}"
        );
        conn.pragma_update(None, "user_version", 0).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("no schema version"), "{err}");
        // A middle version on a current file: the next migration's tables
        // exist already. Said plainly, without the migration's SQL.
        conn.pragma_update(None, "user_version", 3).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(
            err.contains("cannot migrate the database from schema version 3 to 4"),
            "{err}"
        );
        assert!(err.contains("already exists"), "{err}");
        assert!(!err.contains("CREATE"), "{err}");
        let future = i64::try_from(MIGRATIONS.len()).unwrap() + 1;
        conn.pragma_update(None, "user_version", future).unwrap();
        let err = migrate(&mut conn).unwrap_err().to_string();
        assert!(err.contains("is newer than this build"), "{err}");
    }

    #[tokio::test]
    async fn migrates_a_version_1_database_keeping_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO events (id, platform, store, topic, raw_topic, event_id, \
                 product_key, received_at, product, raw_body, status, next_attempt_at, ready) \
                 VALUES ('abc', 'shopify', 's', 'product.created', 'products/create', 'e1', \
                 'p1', 0, '{\"id\":\"p1\"}', x'7b7d', 'pending', 0, 1)",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let store = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
        let e = store.get("abc").await.unwrap().unwrap();
        assert_eq!(&e.event.raw_body[..], b"{}");
        // The migrated event deduplicates (its id went into event_ids).
        let mut again = e.event.clone();
        again.status = EventStatus::Pending;
        assert_eq!(store.insert(again).await.unwrap(), InsertOutcome::Duplicate);
        assert_eq!(e.event.product.as_deref(), Some("{\"id\":\"p1\"}"));
        assert_eq!(
            store
                .claim_due("w", Duration::from_secs(5), 5)
                .await
                .unwrap()
                .len(),
            1
        );
        store.close().await;
    }
}
