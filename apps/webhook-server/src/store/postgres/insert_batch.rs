//! The batching writer: deliveries that arrive together are inserted by one
//! statement in one transaction, so they share one round trip and one commit
//! (one WAL flush) instead of paying for one each.
//!
//! Each request hands its event to a queue and waits for its own answer,
//! which comes only after the batch's commit: acknowledgement still follows
//! durability. A few writer tasks take turns at the queue; each takes what is
//! waiting (up to [`MAX_BATCH`] events and [`MAX_BATCH_BYTES`]) and inserts
//! it with `catalog_insert_events` (migration 6), which runs
//! `catalog_insert_event` for each in turn. Under light load a batch is one
//! event and nothing waits; under load batches grow while the previous ones
//! commit, as in the SQLite writer.
//!
//! **Lock order.** An insert takes its product's advisory lock, and a
//! duplicate waits on the first copy's uncommitted row. Two transactions
//! each holding one product's lock while waiting for the other's would
//! deadlock, so `catalog_insert_events` first takes the locks of every
//! product in the batch in ascending order of the lock key, as the batched
//! completions do (`complete_batch`): all these transactions, of every
//! replica, take their locks in one order. Events stored as failed take
//! their key's lock there too, so a duplicate of one waits at the lock, not
//! on the other's row while holding locks of its own. The batch is also
//! sorted by product (stably, so each product's events keep their order of
//! arrival), which keeps a product's events together in `seq`.
//!
//! **Failures.** A row the database refuses fails alone, and a batch whose
//! connection died is tried once more: see `batch_queue::write_each`.

use std::sync::Arc;

use catalog_core::InsertOutcome;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use super::batch_queue::{
    BatchQueue, Limits, Pending, WriteBatch, Written, lock_timeout_for, write_each,
};
use crate::store::NewEvent;

/// Most events one statement inserts. Fewer events a batch means fewer
/// products' locks held at once (which other batches of those products wait
/// for); 16 lost nothing against 32 or 64 (`docs/performance.md`, tenth
/// session).
const MAX_BATCH: usize = 16;

/// Most bytes of event data one statement carries; an event that would take
/// a batch over it waits for the next, and a larger one goes alone. With 40
/// KB bodies a cap of 48 KB (one body a batch) stored 1,078 a second, 256 KB
/// 1,912 to 2,001; with 2.2 KB bodies the cap makes no difference.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// What an event adds to a statement, roughly: its body, its normalised
/// product and its other columns.
fn weight(e: &NewEvent) -> usize {
    e.raw_body.len() + e.product.as_ref().map_or(0, String::len) + 256
}

/// The insert queue: `writers` writer tasks on the current runtime (the
/// store's), `on_written` called after each batch.
/// `batch_lock_ms` bounds a batch's wait for its products' locks.
pub(super) fn start(
    pool: &PgPool,
    writers: usize,
    batch_lock_ms: i32,
    on_written: &Arc<dyn Fn(Written) + Send + Sync>,
) -> BatchQueue<NewEvent, InsertOutcome> {
    let pool = pool.clone();
    let write: WriteBatch<NewEvent, InsertOutcome> = Arc::new(move |batch| {
        let pool = pool.clone();
        Box::pin(async move { write(&pool, batch, batch_lock_ms).await })
    });
    BatchQueue::start(
        writers,
        Limits {
            items: MAX_BATCH,
            weight: MAX_BATCH_BYTES,
        },
        weight,
        &write,
        on_written,
    )
}

/// Inserts a batch and answers each of its events.
async fn write(
    pool: &PgPool,
    mut batch: Vec<Pending<NewEvent, InsertOutcome>>,
    batch_lock_ms: i32,
) -> Written {
    // Each product's events together, in their order of arrival (stable).
    batch.sort_by(|a, b| lock_order(&a.item).cmp(&lock_order(&b.item)));
    write_each(
        batch,
        |_| 1,
        |events| {
            let pool = pool.clone();
            Box::pin(async move { insert_all(&pool, events, batch_lock_ms).await })
        },
    )
    .await
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

/// One statement, one transaction: `catalog_insert_events` over the events
/// in the order given; for each, inserted or a duplicate.
async fn insert_all(
    pool: &PgPool,
    events: &[&NewEvent],
    batch_lock_ms: i32,
) -> Result<Vec<InsertOutcome>, sqlx::Error> {
    let lock_timeout_ms = lock_timeout_for(events.len(), batch_lock_ms);
    let inserted = insert_events(pool, events, lock_timeout_ms).await?;
    Ok(inserted.into_iter().map(outcome).collect())
}

/// `catalog_insert_events` over the events in the order given, waiting at
/// most `lock_timeout_ms` for their products' locks (as long as it takes
/// when `None`); for each, whether it was inserted (else it was a
/// duplicate). On a pool, its own transaction; on a transaction's
/// connection, part of it (`import`).
pub(super) async fn insert_events<'c, E>(
    executor: E,
    events: &[&NewEvent],
    lock_timeout_ms: Option<i32>,
) -> Result<Vec<bool>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let column = |f: fn(&NewEvent) -> Option<String>| -> Vec<Option<String>> {
        events.iter().map(|e| f(e)).collect()
    };
    let inserted: Vec<bool> = sqlx::query_scalar(
        "SELECT catalog_insert_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16)",
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
    .bind(lock_timeout_ms)
    .fetch_one(executor)
    .await?;
    Ok(inserted)
}
