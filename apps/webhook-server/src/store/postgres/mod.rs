//! The shared store: PostgreSQL through a pooled sqlx connection, for several
//! replicas behind a load balancer.
//!
//! Every replica talks to the same tables, and the database does the
//! coordination the SQLite store gets from its single writer thread:
//!
//! - **Deduplication across replicas.** `INSERT ... ON CONFLICT (id) DO
//!   NOTHING` on the unique event id: when two replicas store the same
//!   delivery at the same moment, the second insert waits for the first to
//!   commit and then affects no row, so exactly one is `Inserted` and both
//!   acknowledge.
//! - **Dispatch shared across replicas.** [`EventStore::claim_due`] selects due
//!   rows `FOR UPDATE SKIP LOCKED` and leases them in the same statement, so
//!   two replicas never claim one event at once; a replica that dies leaves its
//!   lease to expire, after which another claims the event. Only the oldest
//!   pending event of each (platform, store, product) is claimable, as in
//!   SQLite, so events of one product go out in order: a `ready` flag marks
//!   it, moved from one event to the next under a per-product advisory
//!   transaction lock by insert, completion and replay (SQL functions of
//!   migration 2, keyed by schema since migration 6, one round trip each). Claims read only ready rows, so their
//!   cost does not grow with the backlog queued behind them: with 200,000
//!   pending events behind 1,000 products waiting for a retry, a claim that
//!   finds nothing takes 3 ms instead of the 1.1 s a `NOT EXISTS` scan took.
//!   [`EventStore::claim_runs`] leases, in the same statement, the due events
//!   behind each head (a run, sent in order by one dispatcher), cut to
//!   [`PostgresOptions::run_while_ingesting`] events while this replica takes
//!   deliveries.
//! - **Clocks.** Leases and due times are computed with the database's clock
//!   (`statement_timestamp()`), never a replica's, so replicas with skewed
//!   clocks cannot steal leases early. A retry time handed in by the
//!   dispatcher is turned into a delay and added to the database's clock.
//! - **Migrations** are embedded and run at start-up by sqlx's migrator, which
//!   holds a PostgreSQL advisory lock (keyed on the database name) while it
//!   creates the schema and applies migrations: replicas starting together
//!   wait for each other instead of racing. The migration runs on a dedicated
//!   connection that is closed afterwards, so the session-level lock can never
//!   stay behind in the pool.
//! - **Batched writes.** Deliveries that arrive together are inserted in
//!   one statement and one transaction by a few writer tasks (half the pool,
//!   at most 8), and dispatch outcomes that arrive together are recorded the
//!   same way (two writers). Each batch takes its products' locks in
//!   ascending key order first, so batches of any replica cannot deadlock:
//!   see `insert_batch`, `complete_batch` and `batch_queue`.
//!
//! Durability: an insert is acknowledged after PostgreSQL commits it
//! (`synchronous_commit` as configured on the server, `on` by default).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use catalog_core::InsertOutcome;
use chrono::{DateTime, Utc};
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection as _, Row as _, SqlSafeStr as _};
use tokio::runtime::{Handle, Runtime};

use super::{
    DispatchOutcome, EventFilter, EventPage, EventStatus, EventStore, NewEvent, PrunePolicy,
    ReplayOutcome, StoreError, StoreStats, StoredEvent,
};
use crate::redact::redact_url;

mod batch_queue;
mod complete_batch;
mod import;
mod insert_batch;
mod schema;

use batch_queue::{BatchQueue, Written};
use schema::{check_current, migrate};

/// The columns [`read_row`] expects, in order.
macro_rules! columns {
    () => {
        "seq, id, platform, store, topic, raw_topic, event_id, delivery_id, product_id, \
         triggered_at, received_at, product, raw_body, status, error, attempts, last_error, \
         next_attempt_at"
    };
}

/// The due heads a claim takes, locked: `$2` most, oldest first.
macro_rules! claim_heads {
    () => {
        "SELECT e.seq, e.platform, e.store, e.product_key FROM events e
        WHERE e.status = 'pending' AND e.ready
          AND e.next_attempt_at <= statement_timestamp()
          AND (e.lease_until IS NULL OR e.lease_until <= statement_timestamp())
        ORDER BY e.seq
        LIMIT $2
        FOR UPDATE OF e SKIP LOCKED"
    };
}

/// Claims heads: `$1` worker, `$2` most heads, `$3` lease in ms.
///
/// Select and lease in one statement: rows another replica is leasing right
/// now are skipped (SKIP LOCKED), rows it leased a moment ago fail the
/// re-checked lease condition. Only `ready` events (the oldest pending event
/// of each product, maintained under a product lock by insert, complete and
/// replay) are candidates, which keeps every product's events in order and
/// the scan as short as the number of products with work, whatever the
/// backlog behind them.
const CLAIM_HEADS: &str = concat!(
    "WITH heads AS (",
    claim_heads!(),
    "), leased AS (
        UPDATE events u SET lease_owner = $1,
            lease_until = statement_timestamp() + $3 * interval '1 millisecond'
        FROM heads WHERE u.seq = heads.seq
        RETURNING u.*
    )
    SELECT ",
    columns!(),
    " FROM leased ORDER BY seq"
);

/// Claims heads as [`CLAIM_HEADS`], each with up to `$4` of the pending
/// events behind it in its product's order (see [`EventStore::claim_runs`]).
///
/// A follower is taken only while every event before it in the run is: one
/// not due, leased, or locked by another transaction right now (a replay, a
/// late completion) ends the run there, since the events behind it must not
/// overtake it. Followers are read from the pending-per-product index, and
/// only when the head is its product's oldest pending event: an older one
/// (replayed while the head was in flight) goes right after the head, before
/// them. Rows are locked (SKIP LOCKED) and their conditions re-checked on
/// their latest version before the run is cut, so two claims never lease
/// one event.
const CLAIM_RUNS: &str = concat!(
    "WITH heads AS (",
    claim_heads!(),
    "), behind AS (
        SELECT h.seq AS head, f.seq,
            row_number() OVER (PARTITION BY h.seq ORDER BY f.seq) AS pos
        FROM heads h
        CROSS JOIN LATERAL (
            SELECT o.seq FROM events o
            WHERE o.status = 'pending' AND o.platform = h.platform AND o.store = h.store
              AND o.product_key = h.product_key AND o.seq > h.seq
            ORDER BY o.seq
            LIMIT $4
        ) f
        WHERE NOT EXISTS (SELECT 1 FROM events p WHERE p.status = 'pending'
            AND p.platform = h.platform AND p.store = h.store
            AND p.product_key = h.product_key AND p.seq < h.seq)
    ), free AS (
        SELECT e.seq FROM events e
        WHERE e.seq IN (SELECT seq FROM behind)
          AND e.status = 'pending' AND NOT e.ready
          AND e.next_attempt_at <= statement_timestamp()
          AND (e.lease_until IS NULL OR e.lease_until <= statement_timestamp())
        FOR UPDATE OF e SKIP LOCKED
    ), runs AS (
        SELECT head, seq FROM (
            SELECT b.head, b.seq, b.pos,
                min(b.pos) FILTER (WHERE f.seq IS NULL) OVER (PARTITION BY b.head) AS gap
            FROM behind b LEFT JOIN free f ON f.seq = b.seq
        ) cut
        WHERE gap IS NULL OR pos < gap
    ), claimed AS (
        SELECT seq AS head, seq FROM heads
        UNION ALL
        SELECT head, seq FROM runs
    ), leased AS (
        UPDATE events u SET lease_owner = $1,
            lease_until = statement_timestamp() + $3 * interval '1 millisecond'
        FROM claimed c WHERE u.seq = c.seq
        RETURNING c.head, u.*
    )
    SELECT ",
    columns!(),
    " FROM leased ORDER BY head, seq"
);

/// Above this many rows (PostgreSQL's estimate) `stats` reports the estimate
/// instead of counting every row on each metrics scrape.
const EXACT_COUNT_BELOW: f32 = 1_000_000.0;

/// How to connect.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// Most pooled connections of this replica.
    pub max_connections: u32,
    /// Schema holding the tables (created if missing); `None` = the
    /// connection's default `search_path` (usually `public`).
    pub schema: Option<String>,
    /// How long a caller waits for a pooled connection before the store
    /// reports itself unavailable.
    pub acquire_timeout: Duration,
    /// PostgreSQL's `lock_timeout` on the pooled connections: a statement
    /// that waits longer for a lock (a table locked by hand or by a
    /// migration) fails instead of holding its connection; `None` = the
    /// server's setting. Not applied to migrations, which wait for each
    /// other's lock.
    pub lock_timeout: Option<Duration>,
    /// Most events of one product a claim hands over (see
    /// [`EventStore::claim_runs`]) while this replica is taking deliveries
    /// (one within the last 250 ms): answering them comes first, as a run's
    /// outcomes are recorded under its product's lock, which that product's
    /// deliveries wait for. Default 2 (measured in `docs/performance.md`,
    /// eleventh session); full runs once deliveries stop.
    pub run_while_ingesting: usize,
    /// Whether connecting creates the schema and applies migrations (a
    /// replica, the default), or only opens a store that is already there
    /// at this build's schema version and fails otherwise, writing nothing
    /// (the source of a copy, `webhook-server copy-store`).
    pub migrate: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            schema: None,
            acquire_timeout: Duration::from_secs(5),
            lock_timeout: None,
            run_while_ingesting: RUN_WHILE_INGESTING,
            migrate: true,
        }
    }
}

impl PostgresOptions {
    /// Options with a pool size and an optional schema.
    pub fn new(max_connections: u32, schema: Option<String>) -> Self {
        Self {
            max_connections: max_connections.max(1),
            schema,
            ..Self::default()
        }
    }
}

/// Checks a schema name: letters, digits and `_`, not starting with a digit,
/// at most 63 bytes (PostgreSQL's limit). It is quoted where used, but a
/// plain name avoids surprises with case and `search_path`.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_schema(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "schema name {name:?} must be 1-63 characters of a-z, 0-9 and _, not starting with a digit"
        ))
    }
}

/// The PostgreSQL store. Cheap to share behind an `Arc`.
///
/// Queries run on a small runtime owned by the store (two threads), not on
/// the caller's: actix runs one single-threaded runtime per worker, and a
/// pooled connection opened on one worker's runtime would otherwise be driven
/// by that worker's I/O loop while another worker uses it (and die with it).
/// The hop costs a few microseconds per query; the SQLite store makes the
/// same trade with its writer thread.
pub struct PostgresStore {
    pool: PgPool,
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
    /// The URL with its password redacted.
    shown_url: String,
    schema: Option<String>,
    /// The schema the `search_path` resolved to at connect (`None` when it
    /// names no existing schema).
    current_schema: Option<String>,
    max_connections: u32,
    counters: Arc<Counters>,
    inserts: BatchQueue<NewEvent, InsertOutcome>,
    completions: BatchQueue<complete_batch::Run, Vec<bool>>,
    /// When this replica last took a delivery (see [`RUN_WHILE_INGESTING`]).
    ingesting: Ingesting,
    /// [`PostgresOptions::run_while_ingesting`], at least 1.
    run_while_ingesting: usize,
}

/// The default [`PostgresOptions::run_while_ingesting`]: runs are cut to
/// this many events while this replica is taking deliveries, so that
/// answering them comes first. A run's outcomes are
/// recorded under its product's lock, which that product's deliveries wait
/// for: with every delivery for one product (`bench/run.sh`, 2-core VM),
/// runs of 16 during the load gave 8 times the dispatch of heads alone but
/// half the deliveries a second and a p99 of 120 ms; runs of 2 kept
/// deliveries at the heads-only rate and p99 (3,743 req/s, 13.6 ms) and
/// still doubled dispatch. With 1,000 products runs of 2 took dispatch from
/// 40-55 % of the stored events to 80-90 %. Once deliveries stop, a backlog
/// goes out in full runs.
const RUN_WHILE_INGESTING: usize = 2;

/// A delivery within this long counts as taking deliveries.
const INGESTING_WINDOW: Duration = Duration::from_millis(250);

/// When the last delivery arrived, as milliseconds since the store started.
#[derive(Debug)]
struct Ingesting {
    start: std::time::Instant,
    last_ms: AtomicU64,
}

impl Ingesting {
    fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a delivery (now).
    fn delivery(&self) {
        // Saturates at least 1 ms in, so a delivery at start-up counts.
        self.last_ms.store(self.now_ms().max(1), Ordering::Relaxed);
    }

    /// Whether a delivery arrived within [`INGESTING_WINDOW`].
    fn recently(&self) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        last > 0 && self.now_ms().saturating_sub(last) < millis_u64(INGESTING_WINDOW)
    }
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Write counters for [`EventStore::stats`].
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    fn add(&self, commits: u64, writes: u64) {
        self.commits.fetch_add(commits, Ordering::Relaxed);
        self.writes.fetch_add(writes, Ordering::Relaxed);
    }
}

/// How long a batch statement waits for its products' locks: a quarter of
/// the connections' lock timeout (the store timeout), at most a second. Far
/// above the few milliseconds a product's lock is held by another batch;
/// short enough that a product held up elsewhere (a long transaction, a
/// stuck session) delays the batch's other deliveries by that much, not by
/// the whole store timeout, before each is tried alone.
fn batch_lock_timeout_ms(lock_timeout: Option<Duration>) -> i32 {
    let quarter = lock_timeout.map_or(i64::MAX, |t| millis(t) / 4);
    i32::try_from(quarter.clamp(1, 1000)).unwrap_or(1000)
}

/// Completion writers: dispatch outcomes arrive at the rate events are sent,
/// and two batches in flight keep up with it (`docs/performance.md`, tenth
/// session).
const COMPLETION_WRITERS: usize = 2;

/// Batch writers for a pool of `max_connections`: half the pool, 1 to 8,
/// leaving the rest to dispatch and the admin API. Each writer has one
/// batch in flight; PostgreSQL's own group commit then shares WAL flushes
/// between them. Measured with the default pool of 16 (`docs/performance.md`,
/// tenth session): 4 writers 6,163 deliveries a second, 8 writers 7,240, 12
/// and 16 writers 6,874 and 7,079.
fn insert_writers(max_connections: u32) -> usize {
    usize::try_from(max_connections / 2)
        .unwrap_or(1)
        .clamp(1, 8)
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.shown_url)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Allowed in async contexts, unlike dropping the runtime itself.
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            rt.shutdown_background();
        }
    }
}

// By value: it is passed to `map_err`.
#[allow(clippy::needless_pass_by_value)]
fn db_error(e: sqlx::Error) -> StoreError {
    store_error(&e)
}

/// [`db_error`] for an error several callers share (a failed batch).
fn store_error(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => StoreError::Unavailable,
        // sqlx's messages carry no connection credentials.
        other => StoreError::Database(describe(other)),
    }
}

/// An error as an operator reads it: for one the database reported, its
/// message and SQLSTATE (sqlx's own text adds where in PostgreSQL's C source
/// it was raised, `at line 948`, which says nothing to anyone here).
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects, creates the schema if needed, runs migrations and opens the
    /// pool. Safe to call from several replicas at once.
    ///
    /// # Errors
    /// When the URL is invalid, the database cannot be reached or a migration
    /// fails. Messages never contain the password.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let shown_url = redact_url(url);
        if let Some(schema) = &options.schema {
            validate_schema(schema).map_err(StoreError::Database)?;
        }
        let mut connect = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Database(format!("invalid PostgreSQL URL {shown_url}: {e}"))
        })?;
        connect = connect.application_name("webhook-server");
        if let Some(schema) = &options.schema {
            // Every pooled connection resolves `events` in this schema only.
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Database(format!("cannot start the store runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let max_connections = options.max_connections.max(1);
        let schema = options.schema.clone();
        let shown = shown_url.clone();
        let pooled = match options.lock_timeout {
            Some(t) => connect
                .clone()
                .options([("lock_timeout", format!("{}ms", t.as_millis().max(1)))]),
            None => connect.clone(),
        };
        let opened = handle
            .spawn(async move {
                if options.migrate {
                    migrate(&connect, schema.as_deref(), &shown).await?;
                } else {
                    check_current(&connect, schema.as_deref(), &shown).await?;
                }
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .min_connections(0)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(pooled)
                    .await
                    .map_err(|e| {
                        StoreError::Database(format!("cannot connect to {shown}: {}", describe(&e)))
                    })?;
                // The schema `events` resolves to, for `describe` when none
                // is configured: what an operator compares with the
                // replicas' `database.schema`.
                let current: Option<String> = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&pool)
                    .await
                    .ok()
                    .flatten();
                Ok((pool, current))
            })
            .await;
        let (pool, current_schema) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                runtime.shutdown_background();
                return Err(e);
            }
            Err(_) => {
                runtime.shutdown_background();
                return Err(StoreError::Unavailable);
            }
        };
        let counters = Arc::new(Counters::default());
        let batch_lock_ms = batch_lock_timeout_ms(options.lock_timeout);
        let (inserts, completions) = {
            let _runtime = handle.enter();
            let counted = Arc::clone(&counters);
            let on_written: Arc<dyn Fn(Written) + Send + Sync> =
                Arc::new(move |w: Written| counted.add(w.commits, w.rows));
            (
                insert_batch::start(
                    &pool,
                    insert_writers(max_connections),
                    batch_lock_ms,
                    &on_written,
                ),
                complete_batch::start(&pool, COMPLETION_WRITERS, batch_lock_ms, &on_written),
            )
        };
        Ok(Self {
            pool,
            handle,
            runtime: Mutex::new(Some(runtime)),
            shown_url,
            schema: options.schema,
            current_schema,
            max_connections,
            counters,
            inserts,
            completions,
            ingesting: Ingesting::new(),
            run_while_ingesting: options.run_while_ingesting.max(1),
        })
    }

    /// Up to `limit` whole events (raw bodies and normalised products
    /// included) with `seq` above `after`, oldest first: how a copy
    /// (`webhook-server copy-store`) reads this store. Leases are not part
    /// of them.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub async fn export(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |pool| async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .bind(after)
            .bind(limit)
            .fetch_all(&pool)
            .await
            .map_err(db_error)?;
            read_rows(&rows)
        })
        .await
    }

    /// Signs of replicas at work on this store: whether a dispatcher holds
    /// a pending event now, and whether a delivery was stored within
    /// `within` (among the last 1,000 events). For a copy
    /// (`webhook-server copy-store`), whose source should be stopped.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot be read.
    pub async fn activity(&self, within: Duration) -> Result<(bool, bool), StoreError> {
        let within_ms = millis(within);
        self.run(move |pool| async move {
            sqlx::query_as::<_, (bool, bool)>(
                "SELECT EXISTS (SELECT 1 FROM events WHERE status = 'pending' \
                   AND lease_until > statement_timestamp()), \
                 EXISTS (SELECT 1 FROM events WHERE seq > (SELECT coalesce(max(seq), 0) - 1000 \
                   FROM events) AND received_at > statement_timestamp() - $1 * interval '1 millisecond')",
            )
            .bind(within_ms)
            .fetch_one(&pool)
            .await
            .map_err(db_error)
        })
        .await
    }

    /// Runs `f` with the pool on the store's runtime.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(PgPool) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.handle
            .spawn(f(self.pool.clone()))
            .await
            .map_err(|_| StoreError::Unavailable)?
    }

    /// Counts one transaction of `n` row writes (none when `n` is 0).
    fn count_writes(&self, n: u64) {
        self.counters.add(u64::from(n > 0), n);
    }
}

fn read_row(row: &PgRow) -> Result<StoredEvent, StoreError> {
    let get = |e: sqlx::Error| StoreError::Corrupt(e.to_string());
    let status: String = row.try_get("status").map_err(get)?;
    let raw_body: Vec<u8> = row.try_get("raw_body").map_err(get)?;
    let attempts: i32 = row.try_get("attempts").map_err(get)?;
    Ok(StoredEvent {
        seq: row.try_get("seq").map_err(get)?,
        event: NewEvent {
            id: row.try_get("id").map_err(get)?,
            platform: row.try_get("platform").map_err(get)?,
            store: row.try_get("store").map_err(get)?,
            topic: row.try_get("topic").map_err(get)?,
            raw_topic: row.try_get("raw_topic").map_err(get)?,
            event_id: row.try_get("event_id").map_err(get)?,
            delivery_id: row.try_get("delivery_id").map_err(get)?,
            product_id: row.try_get("product_id").map_err(get)?,
            triggered_at: row.try_get("triggered_at").map_err(get)?,
            received_at: row.try_get("received_at").map_err(get)?,
            product: row.try_get("product").map_err(get)?,
            raw_body: Bytes::from(raw_body),
            // The CHECK constraint admits only known values.
            status: EventStatus::parse(&status).unwrap_or(EventStatus::Failed),
            error: row.try_get("error").map_err(get)?,
        },
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_error: row.try_get("last_error").map_err(get)?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(get)?,
    })
}

fn read_rows(rows: &[PgRow]) -> Result<Vec<StoredEvent>, StoreError> {
    rows.iter().map(read_row).collect()
}

/// A retry time from the dispatcher (its clock) as a delay from now.
fn delay_until(at: DateTime<Utc>) -> i64 {
    (at - Utc::now()).num_milliseconds().max(0)
}

#[async_trait::async_trait]
impl EventStore for PostgresStore {
    fn describe(&self) -> String {
        let schema = match (&self.schema, &self.current_schema) {
            (Some(configured), _) => configured.clone(),
            (None, Some(current)) => format!("{current}, from search_path"),
            (None, None) => "from search_path".to_owned(),
        };
        format!(
            "postgres {} (schema {schema}, pool {})",
            self.shown_url, self.max_connections
        )
    }

    async fn insert(&self, e: NewEvent) -> Result<InsertOutcome, StoreError> {
        // With whatever else arrives meanwhile, in one transaction: see
        // `insert_batch`. Each event as `catalog_insert_event` (migration
        // 2): the product's lock, then the insert (ON CONFLICT (id) DO
        // NOTHING), ready when the product has no other pending event.
        self.ingesting.delivery();
        self.inserts.submit(e).await
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let run = if self.ingesting.recently() {
            run.min(self.run_while_ingesting)
        } else {
            run
        };
        let behind = i64::try_from(run.saturating_sub(1)).unwrap_or(i64::MAX);
        let lease = millis(lease).max(1);
        let events = self
            .run(move |pool| async move {
                let query = sqlx::query(if behind == 0 { CLAIM_HEADS } else { CLAIM_RUNS })
                    .bind(&worker)
                    .bind(limit)
                    .bind(lease);
                let query = if behind == 0 {
                    query
                } else {
                    query.bind(behind)
                };
                let rows = query.fetch_all(&pool).await.map_err(db_error)?;
                read_rows(&rows)
            })
            .await?;
        self.count_writes(events.len() as u64);
        Ok(events)
    }

    async fn release(&self, ids: &[String], worker_id: &str) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let (ids, worker) = (ids.to_vec(), worker_id.to_owned());
        // Followers only: they are not ready, so no product lock is needed
        // (claims lock rows, and only ever lease a follower behind its
        // product's head).
        let released = self
            .run(move |pool| async move {
                sqlx::query(
                    "UPDATE events SET lease_owner = NULL, lease_until = NULL \
                     WHERE id = ANY($1) AND lease_owner = $2 AND status = 'pending'",
                )
                .bind(&ids)
                .bind(&worker)
                .execute(&pool)
                .await
                .map_err(db_error)
            })
            .await?;
        self.count_writes(released.rows_affected());
        Ok(())
    }

    async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        outcome: DispatchOutcome,
    ) -> Result<bool, StoreError> {
        let recorded = self
            .complete_run(worker_id, vec![(id.to_owned(), outcome)])
            .await?;
        Ok(recorded.first().copied().unwrap_or(false))
    }

    async fn complete_run(
        &self,
        worker_id: &str,
        outcomes: Vec<(String, DispatchOutcome)>,
    ) -> Result<Vec<bool>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // With the outcomes of other runs that finish meanwhile, in one
        // transaction: see `complete_batch`. Each as
        // `catalog_complete_event` (migration 2): under the product's lock,
        // the outcome if the lease is still the worker's, and when the event
        // left `pending`, the product's next pending event made ready.
        self.completions
            .submit(complete_batch::Run {
                worker: worker_id.to_owned(),
                outcomes,
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
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let events = self
            .run(move |pool| async move {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM events WHERE ($1::text IS NULL OR platform = $1) \
                     AND ($2::text IS NULL OR store = $2) AND ($3::text IS NULL OR topic = $3) \
                     AND ($4::text IS NULL OR status = $4) AND ($5::bigint IS NULL OR seq < $5) \
                     ORDER BY seq DESC LIMIT $6"
                ))
                .bind(&filter.platform)
                .bind(&filter.store)
                .bind(&filter.topic)
                .bind(filter.status.map(EventStatus::as_str))
                .bind(before)
                .bind(fetch)
                .fetch_all(&pool)
                .await
                .map_err(db_error)?;
                read_rows(&rows)
            })
            .await?;
        Ok(EventPage::from_overfetch(events, limit))
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let id = id.to_owned();
        self.run(move |pool| async move {
            let row = sqlx::query(concat!("SELECT ", columns!(), " FROM events WHERE id = $1"))
                .bind(&id)
                .fetch_optional(&pool)
                .await
                .map_err(db_error)?;
            row.as_ref().map(read_row).transpose()
        })
        .await
    }

    async fn import(&self, events: Vec<StoredEvent>) -> Result<Vec<bool>, StoreError> {
        let stored = self
            .run(move |pool| async move { import::import(&pool, &events).await.map_err(db_error) })
            .await?;
        self.count_writes(u64::try_from(stored.iter().filter(|&&s| s).count()).unwrap_or(u64::MAX));
        Ok(stored)
    }

    async fn replay(&self, id: &str) -> Result<ReplayOutcome, StoreError> {
        let id = id.to_owned();
        let outcome: String = self
            .run(move |pool| async move {
                sqlx::query_scalar("SELECT catalog_replay($1)")
                    .bind(&id)
                    .fetch_one(&pool)
                    .await
                    .map_err(db_error)
            })
            .await?;
        self.count_writes(1);
        Ok(match outcome.as_str() {
            "queued" => ReplayOutcome::Queued,
            "in_flight" => ReplayOutcome::InFlight,
            _ => ReplayOutcome::NotFound,
        })
    }

    async fn prune(&self, policy: &PrunePolicy, limit: usize) -> Result<usize, StoreError> {
        // Oldest first through the age indexes; SKIP LOCKED so replicas
        // pruning at the same time take different rows.
        const DELETE: [&str; 2] = [
            "WITH doomed AS (SELECT seq FROM events WHERE status = 'delivered' \
                 AND received_at < $1 ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 DELETE FROM events e USING doomed d WHERE e.seq = d.seq",
            "WITH doomed AS (SELECT seq FROM events WHERE status IN ('failed', 'dead') \
                 AND received_at < $1 ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 DELETE FROM events e USING doomed d WHERE e.seq = d.seq",
        ];
        let mut deleted = 0usize;
        for (sql, cutoff) in DELETE
            .into_iter()
            .zip([policy.delivered_before, policy.failed_before])
        {
            let Some(cutoff) = cutoff else { continue };
            let left = limit.saturating_sub(deleted);
            if left == 0 {
                break;
            }
            let left = i64::try_from(left).unwrap_or(i64::MAX);
            let done = self
                .run(move |pool| async move {
                    sqlx::query(sql)
                        .bind(cutoff)
                        .bind(left)
                        .execute(&pool)
                        .await
                        .map(|r| r.rows_affected())
                        .map_err(db_error)
                })
                .await?;
            deleted += usize::try_from(done).unwrap_or(usize::MAX);
        }
        self.count_writes(deleted as u64);
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|pool| async move {
            // Touches the events table: a lock that holds inserts back (an
            // ALTER, a VACUUM FULL, a LOCK TABLE) makes the probe wait and,
            // past `lock_timeout`, fail, where `SELECT 1` would answer.
            sqlx::query("SELECT 1 FROM events LIMIT 0")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(db_error)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        // The pending count uses the partial index; the total is exact while
        // the table is small and PostgreSQL's estimate once it is large.
        let (events, pending) = self
            .run(|pool| async move {
                let row = sqlx::query(
                    "SELECT (SELECT count(*) FROM events WHERE status = 'pending') AS pending, \
                     (SELECT reltuples FROM pg_class WHERE oid = 'events'::regclass) AS estimate",
                )
                .fetch_one(&pool)
                .await
                .map_err(db_error)?;
                let pending: i64 = row.try_get("pending").map_err(db_error)?;
                let estimate: f32 = row.try_get("estimate").map_err(db_error)?;
                let events: i64 = if estimate < EXACT_COUNT_BELOW {
                    sqlx::query_scalar("SELECT count(*) FROM events")
                        .fetch_one(&pool)
                        .await
                        .map_err(db_error)?
                } else {
                    // It is an estimate: truncation is fine.
                    #[allow(clippy::cast_possible_truncation)]
                    let n = estimate as i64;
                    n
                };
                Ok((events, pending))
            })
            .await?;
        Ok(StoreStats {
            events: u64::try_from(events).unwrap_or(0),
            pending: u64::try_from(pending).unwrap_or(0),
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            dropped_undelivered: 0,
        })
    }

    async fn close(&self) {
        // Queued deliveries and outcomes are written (and answered) before
        // the pool goes.
        self.inserts.close().await;
        self.completions.close().await;
        let _ = self
            .run(|pool| async move {
                pool.close().await;
                Ok(())
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::validate_schema;

    #[test]
    fn schema_names() {
        assert!(validate_schema("catalog").is_ok());
        assert!(validate_schema("t_123_abc").is_ok());
        for bad in [
            "",
            "1abc",
            "Catalog",
            "a-b",
            "a\"b",
            "a;drop",
            &"x".repeat(64),
        ] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}
