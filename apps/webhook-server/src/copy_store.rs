//! Copying every event of one store into another: how an operator moves from
//! the embedded SQLite file to PostgreSQL shared by replicas (or back, or to
//! another file or database) without losing history, deduplication or
//! undelivered events. `webhook-server copy-store --to URL` runs it (see
//! `docs/deployment.md`).
//!
//! Events go over whole and as they were: raw body, normalised product,
//! status, attempts, last error and next attempt time, oldest first, so each
//! product's pending events are dispatched by the target in the order they
//! were received. Deduplication comes with them: the target keys events by
//! the same id, so a platform's retry of a copied event is a duplicate
//! there too. Leases do not: the source must not be dispatching (a SQLite
//! source is locked against its server while the copy reads it).
//!
//! A copy can be run again: events the target has already (by id) are left
//! as they are and counted, so an interrupted copy goes on where it stopped
//! and a second run after the first copies only what arrived between them.
//!
//! The source is only read: a SQLite file through [`SqliteReader`] (which
//! holds the file's lock, so no server runs on it meanwhile), a PostgreSQL
//! store opened without migrating it. A source that holds no store of this
//! build's schema version is refused rather than created empty.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;

use crate::settings::{DatabaseSettings, Settings, StoreKind};
use crate::store::sqlite::SqliteReader;
use crate::store::{EventStatus, EventStore, StoreError, StoredEvent};

/// Most events read from the source at a time.
pub const READ_BATCH: usize = 256;

/// Events read first, before any has been weighed.
const FIRST_READ: usize = 4;

/// About how many bytes of bodies and products one read and one write to
/// the target carry (one event larger than this goes alone). Bodies may be
/// up to the server's body limit each (1 MiB by default), and a batch is
/// held in memory a few times over (as read, as the statement's
/// parameters): reads shrink to what the last events weighed, so that 256
/// events of 1 MiB are not held at once.
pub const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Events counted by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusCounts {
    /// Waiting for dispatch.
    pub pending: u64,
    /// Handed to every sink.
    pub delivered: u64,
    /// Unreadable deliveries kept for inspection.
    pub failed: u64,
    /// Dispatch gave up.
    pub dead: u64,
}

impl StatusCounts {
    fn add(&mut self, status: EventStatus) {
        let slot = match status {
            EventStatus::Pending => &mut self.pending,
            EventStatus::Delivered => &mut self.delivered,
            EventStatus::Failed => &mut self.failed,
            EventStatus::Dead => &mut self.dead,
        };
        *slot += 1;
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.pending + self.delivered + self.failed + self.dead
    }
}

impl fmt::Display for StatusCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pending, {} delivered, {} failed, {} dead",
            self.pending, self.delivered, self.failed, self.dead
        )
    }
}

/// What a copy did so far (given to the progress callback after each
/// batch) or in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// Events read from the source.
    pub read: u64,
    /// Events stored in the target, by status.
    pub copied: StatusCounts,
    /// Events the target had already (the same id): left as they were.
    pub already_there: u64,
    /// The source's `seq` of the last event read: where a copy stopped.
    pub last_seq: i64,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The source could not be read.
    #[error("reading the source store: {0}")]
    Read(#[source] StoreError),
    /// The target refused a batch. Nothing of that batch was stored; what
    /// came before it was, and running the copy again goes on from there.
    #[error(
        "writing to the target store, after {copied} events copied: {source} (run the copy again to go on: events already copied are skipped)"
    )]
    Write {
        /// Events stored before the failure.
        copied: u64,
        /// The target's error.
        #[source]
        source: StoreError,
    },
    /// Asked to stop (the `stop` flag of [`copy_store_until`]): the write in
    /// progress was finished first, so the counts are exact.
    #[error(
        "stopped after {copied} events copied ({already_there} were in the target already); run the same copy again to go on"
    )]
    Stopped {
        /// Events stored.
        copied: u64,
        /// Events the target had already.
        already_there: u64,
    },
}

/// What a copy reads: a store's whole events in `seq` order.
#[async_trait::async_trait]
pub trait CopySource: Send + Sync {
    /// For the copy's first line (`sqlite ./data/catalog.db (read only)`).
    fn describe(&self) -> String;

    /// Up to `limit` whole events with `seq` above `after`, oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    async fn export(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// Why the source looks in use by servers right now (a PostgreSQL
    /// store's replicas still running), or `None`. A SQLite source cannot
    /// be: its reader holds the file's lock.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    async fn in_use(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

#[async_trait::async_trait]
impl CopySource for SqliteReader {
    fn describe(&self) -> String {
        SqliteReader::describe(self)
    }

    async fn export(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        SqliteReader::export(self, after, limit).await
    }
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl CopySource for crate::store::PostgresStore {
    fn describe(&self) -> String {
        format!("{} (read only)", EventStore::describe(self))
    }

    async fn export(&self, after: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        crate::store::PostgresStore::export(self, after, limit).await
    }

    async fn in_use(&self) -> Result<Option<String>, StoreError> {
        let (leased, recent) = self.activity(std::time::Duration::from_secs(60)).await?;
        Ok((leased || recent).then(|| {
            format!(
                "the source looks in use: {}{}{}",
                if leased {
                    "a dispatcher holds some of its events now"
                } else {
                    ""
                },
                if leased && recent { ", and " } else { "" },
                if recent {
                    "it stored a delivery within the last minute"
                } else {
                    ""
                },
            )
        }))
    }
}

/// Copies every event of `from` into `to`, oldest first, calling
/// `progress` after each batch.
///
/// # Errors
/// [`CopyError`] when a read or a write fails; what was written before
/// stays written.
pub async fn copy_store(
    from: &dyn CopySource,
    to: &dyn EventStore,
    progress: impl FnMut(&CopyReport),
) -> Result<CopyReport, CopyError> {
    copy_store_until(from, to, &AtomicBool::new(false), progress).await
}

/// [`copy_store`], stopping between two writes once `stop` is set (a
/// signal's handler sets it): a write in progress is finished, not
/// abandoned, since a store may complete it anyway, and the counts of
/// [`CopyError::Stopped`] are then what the target holds.
///
/// # Errors
/// As [`copy_store`], and [`CopyError::Stopped`].
pub async fn copy_store_until(
    from: &dyn CopySource,
    to: &dyn EventStore,
    stop: &AtomicBool,
    mut progress: impl FnMut(&CopyReport),
) -> Result<CopyReport, CopyError> {
    let stopped = |report: &CopyReport| CopyError::Stopped {
        copied: report.copied.total(),
        already_there: report.already_there,
    };
    let mut report = CopyReport::default();
    // Small at first: until the first events are weighed, they may each be
    // as large as the body limit.
    let mut read_limit = FIRST_READ;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(stopped(&report));
        }
        let events = from
            .export(report.last_seq, read_limit)
            .await
            .map_err(CopyError::Read)?;
        let Some(last) = events.last() else {
            return Ok(report);
        };
        let last_seq = last.seq;
        if last_seq <= report.last_seq {
            // A store answering out of order would loop for ever.
            return Err(CopyError::Read(StoreError::Corrupt(format!(
                "events came back out of order (seq {last_seq} after {})",
                report.last_seq
            ))));
        }
        let bytes: usize = events.iter().map(weight).sum();
        read_limit = next_read_limit(bytes, events.len());
        report.read += events.len() as u64;
        for batch in by_weight(events) {
            if stop.load(Ordering::Relaxed) {
                return Err(stopped(&report));
            }
            let statuses: Vec<EventStatus> = batch.iter().map(StoredEvent::status).collect();
            let stored = to.import(batch).await.map_err(|source| CopyError::Write {
                copied: report.copied.total(),
                source,
            })?;
            for (status, stored) in statuses.into_iter().zip(stored) {
                if stored {
                    report.copied.add(status);
                } else {
                    report.already_there += 1;
                }
            }
            // After each write, so that a copy stopped between two writes
            // reports what it wrote.
            progress(&report);
        }
        report.last_seq = last_seq;
        progress(&report);
    }
}

/// What an event weighs in a batch: its body and its product.
fn weight(e: &StoredEvent) -> usize {
    e.event.raw_body.len() + e.event.product.as_ref().map_or(0, String::len)
}

/// How many events to read next, from what the last `count` weighed: about
/// [`BATCH_BYTES`] of them, between 1 and [`READ_BATCH`].
fn next_read_limit(bytes: usize, count: usize) -> usize {
    let average = bytes / count.max(1);
    (BATCH_BYTES / average.max(1)).clamp(1, READ_BATCH)
}

/// Splits `events` into batches of at most [`BATCH_BYTES`] (one event
/// alone when it is larger), in order.
fn by_weight(events: Vec<StoredEvent>) -> Vec<Vec<StoredEvent>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    for e in events {
        let weight = weight(&e);
        if !batch.is_empty() && bytes.saturating_add(weight) > BATCH_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes = bytes.saturating_add(weight);
        batch.push(e);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// The configured store (`database.url`), opened to be copied from: read
/// only, and only if it holds a webhook-server store.
///
/// # Errors
/// When there is nothing to copy (a memory store, a missing or empty file,
/// a schema without a store), when a server holds the SQLite file, or when
/// the store cannot be read; each message names `database.url`.
pub async fn open_source(settings: &Settings) -> anyhow::Result<Arc<dyn CopySource>> {
    let db = &settings.database;
    match db.kind()? {
        StoreKind::Memory => bail!(
            "database.url is the memory store: it keeps nothing beyond its process, so there is nothing to copy"
        ),
        StoreKind::Sqlite(path) => match SqliteReader::open(&path) {
            Ok(reader) => Ok(Arc::new(reader)),
            Err(StoreError::InUse(file)) => bail!(
                "database.url: {file} is open in a running webhook-server (it holds {file}.lock): stop the server first (and keep it from restarting); a copy reads a stopped server's file"
            ),
            Err(StoreError::Database(why)) => bail!("database.url: {why}"),
            Err(e) => Err(anyhow::Error::new(e).context("database.url: cannot copy from it")),
        },
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => {
            let mut options = crate::store::PostgresOptions::new(2, db.schema.clone());
            options.migrate = false;
            match crate::store::PostgresStore::connect(&db.url, options).await {
                Ok(store) => Ok(Arc::new(store)),
                Err(StoreError::Database(why)) => {
                    bail!(
                        "database.url: {why}: nothing to copy (check database.url and database.schema)"
                    )
                }
                Err(e) => Err(anyhow::Error::new(e).context("database.url: cannot copy from it")),
            }
        }
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => bail!(
            "database.url is a PostgreSQL URL but webhook-server was built without the `postgres` feature"
        ),
    }
}

/// The store to copy into, from [`target_settings`]. Its errors name
/// `--to`, not the server's `database.url`.
///
/// # Errors
/// When the store cannot be opened: a SQLite file a server holds or
/// another program's file, a database that cannot be reached or migrated.
pub async fn open_target(target: &Settings) -> anyhow::Result<Arc<dyn EventStore>> {
    let db = &target.database;
    match db.kind()? {
        StoreKind::Sqlite(path) => {
            match crate::store::SqliteStore::open(&path, db.durability, db.batch_max) {
                Ok(store) => Ok(Arc::new(store)),
                Err(StoreError::InUse(file)) => bail!(
                    "--to: {file} is open in a running webhook-server or copy-store (it holds {file}.lock): copy into a file nothing else uses"
                ),
                Err(e) => bail!(
                    "--to: cannot open SQLite store at {}: {}",
                    path.display(),
                    e.to_string()
                        .replace("database.url (CATALOG_DATABASE_URL)", "--to")
                ),
            }
        }
        _ => crate::open_store(target).await.map_err(|e| {
            let shown = format!("{e:#}");
            anyhow::anyhow!(
                "--to: {}",
                shown.strip_prefix("database.url: ").unwrap_or(&shown)
            )
        }),
    }
}

/// The settings of the store to copy into: `settings` with `database.url`
/// set to `url`, and `database.schema` to `schema` when given (else the
/// configured `database.schema`, which is the replicas' schema when the
/// operator copies with their configuration), checked as at start-up.
///
/// # Errors
/// When `url` is not a store to copy into (a memory store, another scheme,
/// or the configured store itself), the schema name is not valid, or a
/// schema is given for a SQLite target; the message names `--to` or
/// `--to-schema`.
pub fn target_settings(
    settings: &Settings,
    url: String,
    schema: Option<String>,
) -> anyhow::Result<Settings> {
    let mut target = settings.clone();
    target.database.url = url;
    let kind = target.database.kind().map_err(|_| {
        anyhow::anyhow!(
            "--to: expected sqlite://PATH or postgres://USER@HOST/DB, got {}",
            crate::redact::redact_url(&target.database.url)
        )
    })?;
    match kind {
        StoreKind::Memory => bail!(
            "--to: the memory store keeps nothing beyond its process: copy into sqlite://PATH or postgres://..."
        ),
        StoreKind::Sqlite(_) if schema.is_some() => {
            bail!("--to-schema is for a PostgreSQL target; --to is a SQLite file")
        }
        _ => {}
    }
    if let Some(schema) = schema {
        #[cfg(feature = "postgres")]
        crate::store::postgres::validate_schema(&schema)
            .map_err(|e| anyhow::anyhow!("--to-schema: {e}"))?;
        target.database.schema = Some(schema);
    }
    target
        .validate()
        .map_err(|e| anyhow::anyhow!("--to / --to-schema: {e:#}"))?;
    if same_store(&settings.database, &target.database)? {
        bail!(
            "--to names the configured store itself (database.url{}): copy into another file, database or schema",
            if target.database.schema.is_some() {
                " and database.schema; --to-schema names another"
            } else {
                ""
            }
        );
    }
    Ok(target)
}

/// Whether two settings name the same store: one SQLite file (the same
/// file on disk, whatever the path: a link, `./`, another spelling), or one
/// PostgreSQL URL and schema.
fn same_store(a: &DatabaseSettings, b: &DatabaseSettings) -> anyhow::Result<bool> {
    Ok(match (a.kind()?, b.kind()?) {
        (StoreKind::Sqlite(a), StoreKind::Sqlite(b)) => same_file(&a, &b),
        (StoreKind::Postgres, StoreKind::Postgres) => {
            a.url.trim() == b.url.trim() && a.schema == b.schema
        }
        _ => false,
    })
}

/// Whether two paths name one file: by device and inode where both exist
/// (hard links too), else by their resolved paths.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    resolve(a) == resolve(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_shrink_to_about_batch_bytes_of_events() {
        // The 2.2 KB sample: full reads.
        assert_eq!(next_read_limit(256 * 2_200, 256), READ_BATCH);
        // Bodies at the 1 MiB limit: 8 at a time, not 256 MiB.
        assert_eq!(next_read_limit(256 << 20, 256), 8);
        // Larger than a batch: one at a time.
        assert_eq!(next_read_limit(3 * (16 << 20), 3), 1);
        // Nothing weighed (empty bodies): full reads.
        assert_eq!(next_read_limit(0, 10), READ_BATCH);
    }
}
