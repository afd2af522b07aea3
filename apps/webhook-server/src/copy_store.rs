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

use std::fmt;
use std::path::Path;

use anyhow::bail;

use crate::settings::{DatabaseSettings, Settings, StoreKind};
use crate::store::{EventStatus, EventStore, StoreError, StoredEvent};

/// Most events read from the source at a time.
pub const READ_BATCH: usize = 256;

/// Most bytes of bodies and products written to the target in one
/// transaction (an event larger than this goes alone): bodies may be up to
/// the server's body limit each, and a batch is held in memory twice (as
/// read, and as the statement's parameters).
pub const WRITE_BATCH_BYTES: usize = 8 * 1024 * 1024;

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
}

/// Copies every event of `from` into `to`, oldest first, `READ_BATCH`
/// at a time, calling `progress` after each batch.
///
/// # Errors
/// [`CopyError`] when a read or a write fails; what was written before
/// stays written.
pub async fn copy_store(
    from: &dyn EventStore,
    to: &dyn EventStore,
    mut progress: impl FnMut(&CopyReport),
) -> Result<CopyReport, CopyError> {
    let mut report = CopyReport::default();
    loop {
        let events = from
            .export(report.last_seq, READ_BATCH)
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
        report.read += events.len() as u64;
        for batch in by_weight(events) {
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
        }
        report.last_seq = last_seq;
        progress(&report);
    }
}

/// Splits `events` into batches of at most [`WRITE_BATCH_BYTES`] (one
/// event alone when it is larger), in order.
fn by_weight(events: Vec<StoredEvent>) -> Vec<Vec<StoredEvent>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    for e in events {
        let weight = e.event.raw_body.len() + e.event.product.as_ref().map_or(0, String::len);
        if !batch.is_empty() && bytes.saturating_add(weight) > WRITE_BATCH_BYTES {
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

/// The settings of the store to copy into: `settings` with `database.url`
/// set to `url` and `database.schema` to `schema`, checked as at start-up.
///
/// # Errors
/// When `url` is not a store to copy into (a memory store, or the
/// configured store itself) or the schema name is not valid, the message
/// naming `--to` or `--to-schema`; and when the configured store has
/// nothing to copy: the memory store, or a SQLite file that does not exist
/// (a mistyped `database.url` would otherwise be created empty and copy
/// nothing, successfully).
pub fn target_settings(
    settings: &Settings,
    url: String,
    schema: Option<String>,
) -> anyhow::Result<Settings> {
    let mut target = settings.clone();
    target.database.url = url;
    target.database.schema = schema;
    let kind = target
        .database
        .kind()
        .map_err(|e| anyhow::anyhow!("--to: {e:#}"))?;
    if kind == StoreKind::Memory {
        bail!(
            "--to: the memory store keeps nothing beyond its process: copy into sqlite://PATH or postgres://..."
        );
    }
    match settings.database.kind()? {
        StoreKind::Memory => bail!(
            "database.url is the memory store: it keeps nothing beyond its process, so there is nothing to copy"
        ),
        StoreKind::Sqlite(path) if !path.exists() => bail!(
            "database.url: there is no SQLite file at {}: nothing to copy (is this the server's configuration?)",
            path.display()
        ),
        _ => {}
    }
    target
        .validate()
        .map_err(|e| anyhow::anyhow!("--to / --to-schema: {e:#}"))?;
    if same_store(&settings.database, &target.database)? {
        bail!(
            "--to names the configured store itself (database.url): copy into another file or database"
        );
    }
    Ok(target)
}

/// Whether two settings name the same store: one SQLite file (by its
/// resolved path), or one PostgreSQL URL and schema.
fn same_store(a: &DatabaseSettings, b: &DatabaseSettings) -> anyhow::Result<bool> {
    Ok(match (a.kind()?, b.kind()?) {
        (StoreKind::Sqlite(a), StoreKind::Sqlite(b)) => {
            let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
            resolve(&a) == resolve(&b)
        }
        (StoreKind::Postgres, StoreKind::Postgres) => {
            a.url.trim() == b.url.trim() && a.schema == b.schema
        }
        _ => false,
    })
}
