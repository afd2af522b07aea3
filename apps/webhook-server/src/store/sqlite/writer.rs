//! The writer thread: commands queued by callers, run in batches, one
//! transaction and one sync per batch, answered after the commit.

use super::*;

pub(super) type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;

pub(super) enum Command {
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
    Import(
        Vec<(StoredEvent, Option<StoredBody>)>,
        oneshot::Sender<Result<Vec<bool>, StoreError>>,
    ),
    Prune {
        policy: PrunePolicy,
        limit: usize,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
    Ping(oneshot::Sender<Result<(), StoreError>>),
}

/// What the writer thread keeps between batches.
pub(super) struct WriterState {
    pub(super) ids: RecentIds,
    pub(super) sync: CommitSync,
    pub(super) health: Health,
}

pub(super) fn writer_loop(
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
pub(super) struct CommitSync {
    durability: Durability,
    syncing: bool,
}

impl CommitSync {
    pub(super) fn new(durability: Durability) -> Self {
        Self {
            durability,
            syncing: true,
        }
    }

    /// Sets `synchronous` for the coming batch, when it changes.
    ///
    /// # Errors
    /// When the setting could not be changed: the batch must not run.
    pub(super) fn prepare(&mut self, conn: &Connection, batch: &[Command]) -> rusqlite::Result<()> {
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
        matches!(self, Self::Insert(..) | Self::Import(..) | Self::Replay(..))
    }
}

pub(super) fn run_batch(
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

/// The batch's error for each of its commands. The same variant and text:
/// wrapped whole in `Database`, it read "database error: database error:
/// ..." (an outside audit).
pub(super) fn clone_err(err: &StoreError) -> StoreError {
    match err {
        StoreError::Database(m) => StoreError::Database(m.clone()),
        StoreError::Unavailable => StoreError::Unavailable,
        StoreError::TimedOut(ms) => StoreError::TimedOut(*ms),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::InUse(m) => StoreError::InUse(m.clone()),
        StoreError::Unsupported(what) => StoreError::Unsupported(what),
    }
}

pub(super) type Answer<T> = oneshot::Sender<Result<T, StoreError>>;

/// A command's answer given once the batch's fate is known (its value on
/// commit, the batch's error on rollback); a statement error is answered now
/// and aborts the batch.
pub(super) fn after_commit<T: Send + 'static>(
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
pub(super) fn take_write_lock(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE events SET seq = seq WHERE 0")?
        .execute([])?;
    Ok(())
}

pub(super) fn at_once<T>(
    reply: Answer<T>,
    result: Result<T, StoreError>,
) -> Result<Reply, StoreError> {
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
pub(super) fn execute(
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
        Command::Import(_, reply) if health.damaged => {
            let _ = reply.send(Err(health::damaged_error(health.path())));
            Ok(Box::new(|_| {}))
        }
        Command::Import(events, reply) => after_commit(reply, import(tx, &events, ids, changes)),
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
