//! The batching writer: deliveries that arrive together are inserted by one
//! statement in one transaction, so they share one round trip and one commit
//! (one WAL flush) instead of paying for one each.
//!
//! Each request hands its event to a queue and waits for its own answer,
//! which comes only after the batch's commit: acknowledgement still follows
//! durability. A few writer tasks take turns at the queue; each takes what is
//! waiting (up to [`MAX_BATCH`]) and inserts it with `catalog_insert_events`
//! (migration 6), which runs `catalog_insert_event` for each in turn. Under
//! light load a batch is one event and nothing waits; under load batches
//! grow while the previous ones commit, as in the SQLite writer.
//!
//! **Lock order.** An insert takes its product's advisory lock, and a
//! duplicate waits on the first copy's uncommitted row, which belongs to the
//! same product (the event id includes the product). Two replicas each
//! holding one product's lock while waiting for the other's would deadlock,
//! so every batch is sorted by product before it is sent: all transactions
//! take product locks in one order. The sort is stable, so a product's
//! events keep their order of arrival.
//!
//! **One bad row does not fail its batch.** When a batch fails with an error
//! that can belong to one row (a data or constraint error) or to the
//! batch's timing (a deadlock, after a hash collision of two products'
//! locks), each event is tried again alone and gets its own answer. Errors
//! of the database as a whole (unreachable, lock timeout) fail the batch at
//! once: trying each event again would only wait again.

use std::sync::Arc;

use catalog_core::InsertOutcome;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{StoreError, db_error, store_error};
use crate::store::NewEvent;

/// Most events one statement inserts: 64 bodies of a few KB make a statement
/// of a few hundred KB, and more per batch saves little once the commit is
/// shared.
pub(super) const MAX_BATCH: usize = 64;

/// Most bytes of event data one statement carries (a larger event goes
/// alone): bounds the statement's size and how long a batch holds its
/// products' locks, which other batches of those products wait for.
/// Batches of up to 64 bodies of 2.2 KB (140 KB) gave a p99 of 255 to 539 ms
/// where this cap gave 14 ms (tenth session, over a Unix socket).
const MAX_BATCH_BYTES: usize = 48 * 1024;

/// What an event adds to a statement, roughly: its body, its normalised
/// product and its other columns.
fn weight(e: &NewEvent) -> usize {
    e.raw_body.len() + e.product.as_ref().map_or(0, String::len) + 256
}

/// Events waiting for a writer, at most; further inserts wait for room
/// (bounded by the server's store timeout).
const QUEUE_CAPACITY: usize = 4096;

/// An event and where its answer goes.
struct Pending {
    event: NewEvent,
    reply: oneshot::Sender<Result<InsertOutcome, StoreError>>,
}

/// The queue in front of the writers.
pub(super) struct InsertQueue {
    sender: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    writers: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// What a batch did, for the store's counters.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Transactions committed.
    pub(super) commits: u64,
    /// Events inserted or found to be duplicates.
    pub(super) events: u64,
}

impl InsertQueue {
    /// Starts `writers` writer tasks on the current runtime (the store's).
    /// `on_written` is called after each batch.
    pub(super) fn start(
        pool: &PgPool,
        writers: usize,
        on_written: &Arc<dyn Fn(Written) + Send + Sync>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        let writers = (0..writers.max(1))
            .map(|_| {
                let (pool, receiver, on_written) =
                    (pool.clone(), Arc::clone(&receiver), Arc::clone(on_written));
                tokio::spawn(async move {
                    while let Some(batch) = next_batch(&receiver).await {
                        let written = write(&pool, batch).await;
                        on_written(written);
                    }
                })
            })
            .collect();
        Self {
            sender: std::sync::Mutex::new(Some(sender)),
            writers: std::sync::Mutex::new(writers),
        }
    }

    /// Inserts `event` with the next batch and answers once it is committed
    /// (or has failed).
    pub(super) async fn insert(&self, event: NewEvent) -> Result<InsertOutcome, StoreError> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Unavailable)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Pending { event, reply })
            .await
            .map_err(|_| StoreError::Unavailable)?;
        drop(sender);
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Stops taking events and waits until the writers have inserted (or
    /// failed) every event already queued.
    pub(super) async fn close(&self) {
        drop(
            self.sender
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        let writers = std::mem::take(
            &mut *self
                .writers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for writer in writers {
            let _ = writer.await;
        }
    }
}

/// Waits for the next event, then takes what else is queued, up to
/// [`MAX_BATCH`]. `None` once the queue is closed and empty. Events whose
/// request has already been answered (the store timeout ran out) are left
/// out: the platform retries them.
async fn next_batch(receiver: &Mutex<mpsc::Receiver<Pending>>) -> Option<Vec<Pending>> {
    let mut receiver = receiver.lock().await;
    let mut batch = Vec::new();
    let mut bytes = 0;
    while batch.is_empty() {
        let first = receiver.recv().await?;
        if !first.reply.is_closed() {
            bytes += weight(&first.event);
            batch.push(first);
        }
    }
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match receiver.try_recv() {
            Ok(next) if next.reply.is_closed() => {}
            Ok(next) => {
                bytes += weight(&next.event);
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Inserts a batch and answers each of its events.
async fn write(pool: &PgPool, mut batch: Vec<Pending>) -> Written {
    // One lock order for every transaction of every replica (see the module
    // docs); stable, so each product's events keep their order of arrival.
    batch.sort_by(|a, b| lock_order(&a.event).cmp(&lock_order(&b.event)));
    let events: Vec<&NewEvent> = batch.iter().map(|p| &p.event).collect();
    let mut result = insert_all(pool, &events).await;
    if result.as_ref().is_err_and(connection_lost) {
        // The connection died under the batch (a restarted or failed-over
        // database, a terminated backend): once more, on another. Safe
        // even if the first commit landed and only its answer was lost:
        // those events are then duplicates, acknowledged all the same.
        result = insert_all(pool, &events).await;
    }
    match result {
        Ok(inserted) => {
            let written = Written {
                commits: 1,
                events: events.len() as u64,
            };
            for (pending, inserted) in batch.into_iter().zip(inserted) {
                let _ = pending.reply.send(Ok(outcome(inserted)));
            }
            written
        }
        Err(e) if batch.len() > 1 && may_be_one_rows(&e) => {
            let mut written = Written::default();
            for pending in batch {
                let answer = insert_all(pool, &[&pending.event])
                    .await
                    .map_err(db_error)
                    .and_then(|inserted| {
                        inserted.first().copied().map(outcome).ok_or_else(|| {
                            StoreError::Corrupt("catalog_insert_events answered nothing".into())
                        })
                    });
                if answer.is_ok() {
                    written.commits += 1;
                    written.events += 1;
                }
                let _ = pending.reply.send(answer);
            }
            written
        }
        Err(e) => {
            for pending in batch {
                let _ = pending.reply.send(Err(store_error(&e)));
            }
            Written::default()
        }
    }
}

/// The key batches are sorted by: the product's lock (platform, store,
/// product key), as in `catalog_insert_event`.
fn lock_order(e: &NewEvent) -> (&str, &str, &str) {
    (&e.platform, &e.store, e.product_key())
}

fn outcome(inserted: bool) -> InsertOutcome {
    if inserted {
        InsertOutcome::Inserted
    } else {
        InsertOutcome::Duplicate
    }
}

/// Whether the connection failed rather than the statement.
fn connection_lost(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_))
        || matches!(e, sqlx::Error::Database(db)
            if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// Whether a failed batch is worth trying again event by event: data
/// exceptions (class 22) and integrity violations (23) name one row;
/// transaction rollbacks (40: deadlock, serialization) are about timing.
fn may_be_one_rows(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("40")),
        _ => false,
    }
}

/// One statement, one transaction: `catalog_insert_events` over the events
/// in the order given; whether each was inserted (else it was a duplicate).
async fn insert_all(pool: &PgPool, events: &[&NewEvent]) -> Result<Vec<bool>, sqlx::Error> {
    let column = |f: fn(&NewEvent) -> Option<String>| -> Vec<Option<String>> {
        events.iter().map(|e| f(e)).collect()
    };
    let inserted: Vec<bool> = sqlx::query_scalar(
        "SELECT catalog_insert_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15)",
    )
    .bind(column(|e| Some(e.id.clone())))
    .bind(column(|e| Some(e.platform.clone())))
    .bind(column(|e| Some(e.store.clone())))
    .bind(column(|e| Some(e.topic.clone())))
    .bind(column(|e| Some(e.raw_topic.clone())))
    .bind(column(|e| Some(e.event_id.clone())))
    .bind(column(|e| e.delivery_id.clone()))
    .bind(column(|e| e.product_id.clone()))
    .bind(column(|e| Some(e.product_key().to_owned())))
    .bind(
        events
            .iter()
            .map(|e| e.triggered_at)
            .collect::<Vec<Option<DateTime<Utc>>>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.received_at)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .bind(column(|e| e.product.clone()))
    .bind(
        events
            .iter()
            .map(|e| e.raw_body.to_vec())
            .collect::<Vec<Vec<u8>>>(),
    )
    .bind(column(|e| Some(e.status.as_str().to_owned())))
    .bind(column(|e| e.error.clone()))
    .fetch_one(pool)
    .await?;
    if inserted.len() == events.len() {
        Ok(inserted)
    } else {
        Err(sqlx::Error::Protocol(format!(
            "catalog_insert_events answered {} flags for {} events",
            inserted.len(),
            events.len()
        )))
    }
}
