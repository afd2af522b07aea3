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
//!
//! Here: the store, its opening and shutdown. Beside it: `writer` (the
//! thread, its batches and syncs), `events` (the statements it runs),
//! `schema` (migrations, connection settings), `body` (compression),
//! `checkpoint` (the WAL's checkpoint thread), `recent_ids` and
//! `id_filter` (the duplicate check without the id index's pages),
//! `health` (readiness) and `ownership` (one process per file).

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

mod body;
mod checkpoint;
mod events;
mod health;
mod id_filter;
mod ownership;
mod reader;
mod recent_ids;
mod schema;
#[cfg(test)]
mod tests;
mod writer;
use body::StoredBody;
use checkpoint::checkpoint_loop;
use events::{
    claim, complete, complete_run, get, import, insert, list, prune, release, replay, stats,
    write_probe,
};
use health::Health;
use ownership::take_ownership;
pub use reader::SqliteReader;
use recent_ids::{IdChanges, IdPlace, RecentIds};
use schema::{configure, migrate, refuse_foreign_file, synchronous};
use writer::{Command, CommitSync, WriterState, writer_loop};

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
        let lock_path = ownership::lock_path(path);
        let new_lock = !lock_path.exists();
        let (owner, lock) = take_ownership(path)?;
        let mut conn = Connection::open(path)?;
        if let Err(refused) = refuse_foreign_file(&conn) {
            // Another program's file is left as it was, without a lock
            // file of ours beside it (removed while still locked, so that
            // nobody else takes it meanwhile).
            if new_lock {
                let _ = std::fs::remove_file(&lock_path);
            }
            drop(owner);
            return Err(refused);
        }
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

    async fn import(&self, events: Vec<StoredEvent>) -> Result<Vec<bool>, StoreError> {
        // Compressed here, as `insert` does, not on the writer's thread.
        let events = events
            .into_iter()
            .map(|e| {
                let body = StoredBody::encode(&e.event.raw_body);
                (e, body)
            })
            .collect();
        self.call(|reply| Command::Import(events, reply)).await
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
