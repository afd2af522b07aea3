//! Batched completions: the outcomes of dispatch runs that finish together
//! are recorded by one statement in one transaction
//! (`catalog_complete_events`, migration 6), where each cost a transaction
//! of its own. With many products a dispatcher has up to `dispatch.batch`
//! runs in flight, and their outcomes arrive close together.
//!
//! Each run's outcomes stay together and in order (a product's later
//! outcome must not be recorded before its earlier one). The statement takes
//! the locks of every product it touches in one order first, as the batched
//! inserts do, so these transactions cannot deadlock with each other or
//! with insert batches (see `insert_batch`).

use std::sync::Arc;

use sqlx::postgres::PgPool;

use super::batch_queue::{
    BatchQueue, Limits, Pending, WriteBatch, Written, lock_timeout_for, write_each,
};
use super::delay_until;
use crate::store::{DispatchOutcome, EventStatus};

/// Most outcomes one statement records.
const MAX_OUTCOMES: usize = 64;

/// One dispatch run's outcomes, in order, and the worker that holds them.
pub(super) struct Run {
    pub(super) worker: String,
    pub(super) outcomes: Vec<(String, DispatchOutcome)>,
}

/// The completion queue: `writers` writer tasks on the current runtime (the
/// store's), `on_written` called after each batch.
/// `batch_lock_ms` bounds a batch's wait for its products' locks.
pub(super) fn start(
    pool: &PgPool,
    writers: usize,
    batch_lock_ms: i32,
    on_written: &Arc<dyn Fn(Written) + Send + Sync>,
) -> BatchQueue<Run, Vec<bool>> {
    let pool = pool.clone();
    let write: WriteBatch<Run, Vec<bool>> = Arc::new(move |batch| {
        let pool = pool.clone();
        Box::pin(async move { write(&pool, batch, batch_lock_ms).await })
    });
    BatchQueue::start(
        writers,
        Limits {
            items: MAX_OUTCOMES,
            weight: MAX_OUTCOMES,
        },
        |run| run.outcomes.len(),
        &write,
        on_written,
    )
}

/// Records a batch of runs and answers each.
async fn write(pool: &PgPool, batch: Vec<Pending<Run, Vec<bool>>>, batch_lock_ms: i32) -> Written {
    write_each(
        batch,
        |run| run.outcomes.len() as u64,
        |runs| {
            let pool = pool.clone();
            Box::pin(async move { complete_all(&pool, runs, batch_lock_ms).await })
        },
    )
    .await
}

/// An outcome as the columns `catalog_complete_event` takes: status, the
/// attempt's error, the retry delay in ms, and the reason an event is
/// unreadable (its `error`).
fn columns(outcome: &DispatchOutcome) -> (EventStatus, Option<String>, i64, Option<String>) {
    match outcome {
        DispatchOutcome::Delivered => (EventStatus::Delivered, None, 0, None),
        DispatchOutcome::Retry { error, at } => (
            EventStatus::Pending,
            Some(error.clone()),
            delay_until(*at),
            None,
        ),
        DispatchOutcome::Dead { error } => (EventStatus::Dead, Some(error.clone()), 0, None),
        DispatchOutcome::Unreadable { error } => {
            (EventStatus::Failed, None, 0, Some(error.clone()))
        }
    }
}

/// One statement, one transaction: every run's outcomes in the order given;
/// for each run, whether each of its outcomes was recorded.
async fn complete_all(
    pool: &PgPool,
    runs: &[&Run],
    batch_lock_ms: i32,
) -> Result<Vec<Vec<bool>>, sqlx::Error> {
    let (mut ids, mut workers, mut statuses, mut errors, mut delays, mut unreadable) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in runs {
        for (id, outcome) in &run.outcomes {
            let (status, error, delay, reason) = columns(outcome);
            ids.push(id.clone());
            workers.push(run.worker.clone());
            statuses.push(status.as_str().to_owned());
            errors.push(error);
            delays.push(delay);
            unreadable.push(reason);
        }
    }
    let count = ids.len();
    let recorded: Vec<bool> =
        sqlx::query_scalar("SELECT catalog_complete_events($1, $2, $3, $4, $5, $6, $7)")
            .bind(ids)
            .bind(workers)
            .bind(statuses)
            .bind(errors)
            .bind(delays)
            .bind(unreadable)
            .bind(lock_timeout_for(count, batch_lock_ms))
            .fetch_one(pool)
            .await?;
    if recorded.len() != count {
        return Err(sqlx::Error::Protocol(format!(
            "catalog_complete_events answered {} flags for {count} outcomes",
            recorded.len()
        )));
    }
    let mut recorded = recorded.into_iter();
    Ok(runs
        .iter()
        .map(|run| recorded.by_ref().take(run.outcomes.len()).collect())
        .collect())
}
