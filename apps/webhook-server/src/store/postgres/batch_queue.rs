//! A queue in front of a few writer tasks that write what has queued up in
//! one transaction: group commit for the PostgreSQL store's writes.
//!
//! Each caller hands over an item and waits for its own answer, which comes
//! after the batch's transaction (or its failure). A writer waits for the
//! first item, then takes what else is queued, within the limits; under light
//! load a batch is one item and nothing waits, under load batches grow while
//! the previous ones commit. The writers take turns at the queue.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{StoreError, db_error, store_error};

/// Items waiting for a writer, at most; further callers wait for room
/// (bounded by the server's store timeout).
const QUEUE_CAPACITY: usize = 4096;

/// An item and where its answer goes.
pub(super) struct Pending<T, A> {
    pub(super) item: T,
    pub(super) reply: oneshot::Sender<Result<A, StoreError>>,
}

/// How much a batch may hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Most items.
    pub(super) items: usize,
    /// Most weight (see [`BatchQueue::start`]); an item heavier than this
    /// goes alone.
    pub(super) weight: usize,
}

/// What a batch did, for the store's counters.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Transactions committed.
    pub(super) commits: u64,
    /// Rows written.
    pub(super) rows: u64,
}

/// Writes one batch and answers each of its items.
pub(super) type WriteBatch<T, A> =
    Arc<dyn Fn(Vec<Pending<T, A>>) -> Pin<Box<dyn Future<Output = Written> + Send>> + Send + Sync>;

/// The queue and its writers.
pub(super) struct BatchQueue<T, A> {
    sender: std::sync::Mutex<Option<mpsc::Sender<Pending<T, A>>>>,
    writers: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl<T: Send + 'static, A: Send + 'static> BatchQueue<T, A> {
    /// Starts `writers` writer tasks on the current runtime (the store's),
    /// each calling `write` with batches within `limits` (`weight` measures
    /// an item) and then `on_written` with what it did.
    pub(super) fn start(
        writers: usize,
        limits: Limits,
        weight: fn(&T) -> usize,
        write: &WriteBatch<T, A>,
        on_written: &Arc<dyn Fn(Written) + Send + Sync>,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(Inbox {
            receiver,
            carried: None,
        }));
        let writers = (0..writers.max(1))
            .map(|_| {
                let (receiver, write, on_written) = (
                    Arc::clone(&receiver),
                    Arc::clone(write),
                    Arc::clone(on_written),
                );
                tokio::spawn(async move {
                    while let Some(batch) = next_batch(&receiver, limits, weight).await {
                        on_written(write(batch).await);
                    }
                })
            })
            .collect();
        Self {
            sender: std::sync::Mutex::new(Some(sender)),
            writers: std::sync::Mutex::new(writers),
        }
    }

    /// Writes `item` with the next batch and answers once that is committed
    /// (or has failed).
    pub(super) async fn submit(&self, item: T) -> Result<A, StoreError> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Unavailable)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Pending { item, reply })
            .await
            .map_err(|_| StoreError::Unavailable)?;
        drop(sender);
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Stops taking items and waits until the writers have written (or
    /// failed) every item already queued.
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

/// The writers' side of the queue, one writer at a time.
struct Inbox<T, A> {
    receiver: mpsc::Receiver<Pending<T, A>>,
    /// An item taken from the queue that did not fit the last batch: the
    /// next batch starts with it.
    carried: Option<Pending<T, A>>,
}

/// Waits for the next item, then takes what else is queued, within
/// `limits`: an item that would take the batch over its weight waits for
/// the next batch, unless it is the first (a heavy item goes alone). `None`
/// once the queue is closed and empty. Items whose caller has stopped
/// waiting (the store timeout ran out and the request was answered 503) are
/// left out: the platform retries them.
async fn next_batch<T, A>(
    inbox: &Mutex<Inbox<T, A>>,
    limits: Limits,
    weight: fn(&T) -> usize,
) -> Option<Vec<Pending<T, A>>> {
    let mut inbox = inbox.lock().await;
    let mut batch = Vec::new();
    let mut taken = 0;
    while batch.is_empty() {
        let first = match inbox.carried.take() {
            Some(first) => first,
            None => inbox.receiver.recv().await?,
        };
        if !first.reply.is_closed() {
            taken += weight(&first.item);
            batch.push(first);
        }
    }
    while batch.len() < limits.items && taken < limits.weight {
        match inbox.receiver.try_recv() {
            Ok(next) if next.reply.is_closed() => {}
            Ok(next) if taken + weight(&next.item) > limits.weight => {
                inbox.carried = Some(next);
                break;
            }
            Ok(next) => {
                taken += weight(&next.item);
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// One statement for some items: an answer for each, in order.
pub(super) type WriteAll<'a, A> =
    Pin<Box<dyn Future<Output = Result<Vec<A>, sqlx::Error>> + Send + 'a>>;

/// Writes a batch with `write_all` (one statement, one transaction) and
/// answers each item; `rows` counts an item's rows.
///
/// - The connection died under the batch (a restarted or failed-over
///   database, a terminated backend): once more, on another connection.
///   The batch statements are written to be safe to repeat: a delivery
///   whose first commit landed is then a duplicate, acknowledged all the
///   same; an outcome whose first commit landed answers `false`.
/// - An error that can belong to one row (a data or constraint error) or
///   to the batch's timing (a deadlock, or the batch's short lock timeout:
///   one product held up elsewhere): each item alone, with its own answer,
///   for the callers still waiting.
/// - Any other (unreachable, lock timeout): every item gets the error at
///   once; trying each again would only wait again.
pub(super) async fn write_each<T: Sync, A>(
    batch: Vec<Pending<T, A>>,
    rows: fn(&T) -> u64,
    write_all: impl for<'a> Fn(&'a [&'a T]) -> WriteAll<'a, A>,
) -> Written {
    let items: Vec<&T> = batch.iter().map(|p| &p.item).collect();
    let mut result = write_all(&items).await;
    if result.as_ref().is_err_and(connection_lost) {
        result = write_all(&items).await;
    }
    let total = items.iter().map(|item| rows(item)).sum();
    drop(items);
    match result {
        Ok(answers) if answers.len() == batch.len() => {
            for (pending, answer) in batch.into_iter().zip(answers) {
                let _ = pending.reply.send(Ok(answer));
            }
            Written {
                commits: 1,
                rows: total,
            }
        }
        Ok(answers) => {
            let reason = format!("{} answers for {} items", answers.len(), batch.len());
            for pending in batch {
                let _ = pending.reply.send(Err(StoreError::Corrupt(reason.clone())));
            }
            Written::default()
        }
        Err(e) if batch.len() > 1 && may_be_one_items(&e) => {
            let mut written = Written::default();
            // Callers that stopped waiting are left out: their platform
            // retries.
            for pending in batch.into_iter().filter(|p| !p.reply.is_closed()) {
                let answer = write_all(&[&pending.item])
                    .await
                    .map_err(db_error)
                    .and_then(|answers| {
                        answers
                            .into_iter()
                            .next()
                            .ok_or_else(|| StoreError::Corrupt("no answer for one item".into()))
                    });
                if answer.is_ok() {
                    written.commits += 1;
                    written.rows += rows(&pending.item);
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

/// Whether the connection failed rather than the statement: worth one more
/// try on another connection.
fn connection_lost(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_))
        || matches!(e, sqlx::Error::Database(db)
            if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}

/// Whether a failed batch is worth trying again item by item: data
/// exceptions (class 22) and integrity violations (23) name one row;
/// transaction rollbacks (40: deadlock, serialization) are about timing, as
/// is a lock timeout (55P03) under the batch's short one.
fn may_be_one_items(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("22") || c.starts_with("23") || c.starts_with("40") || c == "55P03"
        }),
        _ => false,
    }
}

/// The lock timeout a batch statement of `items` passes to PostgreSQL:
/// `batch_ms` for several, none (the connection's own, the store timeout)
/// for one, which waits for nothing but its own product.
pub(super) fn lock_timeout_for(items: usize, batch_ms: i32) -> Option<i32> {
    (items > 1).then_some(batch_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued item's answer, which these tests drop or ignore.
    type Answer = oneshot::Receiver<Result<(), StoreError>>;

    /// Items are their own weight.
    fn queue(weights: &[usize]) -> (Mutex<Inbox<usize, ()>>, Vec<Answer>) {
        let (sender, receiver) = mpsc::channel(16);
        let mut answers = Vec::new();
        for &w in weights {
            let (reply, answer) = oneshot::channel();
            sender.try_send(Pending { item: w, reply }).unwrap();
            answers.push(answer);
        }
        let inbox = Mutex::new(Inbox {
            receiver,
            carried: None,
        });
        (inbox, answers)
    }

    async fn batches(inbox: &Mutex<Inbox<usize, ()>>, limits: Limits, n: usize) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for _ in 0..n {
            let batch = next_batch(inbox, limits, |w| *w).await.unwrap();
            out.push(batch.into_iter().map(|p| p.item).collect());
        }
        out
    }

    #[tokio::test]
    async fn a_heavy_item_waits_for_the_next_batch_and_goes_alone() {
        let limits = Limits {
            items: 10,
            weight: 100,
        };
        let (inbox, _answers) = queue(&[10, 20, 500, 30, 40, 50]);
        assert_eq!(
            batches(&inbox, limits, 3).await,
            vec![vec![10, 20], vec![500], vec![30, 40]]
        );
    }

    #[tokio::test]
    async fn batches_stop_at_the_item_limit() {
        let limits = Limits {
            items: 2,
            weight: 1000,
        };
        let (inbox, _answers) = queue(&[1, 2, 3, 4, 5]);
        assert_eq!(
            batches(&inbox, limits, 3).await,
            vec![vec![1, 2], vec![3, 4], vec![5]]
        );
    }

    #[tokio::test]
    async fn items_whose_caller_gave_up_are_left_out() {
        let limits = Limits {
            items: 10,
            weight: 1000,
        };
        let (inbox, mut answers) = queue(&[1, 2, 3]);
        drop(answers.remove(1));
        drop(answers.remove(0));
        assert_eq!(batches(&inbox, limits, 1).await, vec![vec![3]]);
    }
}
