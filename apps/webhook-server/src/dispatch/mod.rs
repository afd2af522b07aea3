//! Background dispatch: after a delivery is acknowledged, hand each stored
//! event to the configured sinks, at least once, in order per product.
//!
//! The dispatcher claims due events with a lease ([`EventStore::claim_due`]),
//! so several dispatchers (threads or replicas) can share one store; the
//! store only ever returns the oldest pending event of a product, so events of
//! one product go out in order. A failed attempt is retried with exponential
//! backoff; after `max_attempts` the event is marked `dead`. Every sink gets
//! every attempt (a retry may repeat an event to a sink that already took it:
//! at least once, not exactly once; the event id is stable for deduplication).

#[cfg(feature = "nats")]
pub mod nats;
pub mod sinks;
pub mod standard_webhooks;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt as _;
use futures::future::join_all;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinSet;

use crate::log_budget::LogBudget;
use crate::metrics::{DispatchResult, Metrics};
use crate::normalise;
use crate::platforms::Platforms;
use crate::settings::DispatchSettings;
use crate::store::{DispatchOutcome, EventStore, StoreError, StoredEvent};

/// The text of a caught panic (`panic!` with a literal or a format).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    // Stored as the event's last error: a panic may quote anything.
    text.chars().take(300).collect()
}

/// How long the dispatcher waits after being woken by an insert, to claim
/// the inserts that follow it in the same round.
const WAKE_COALESCE: Duration = Duration::from_millis(2);

/// How long a round may hold up the next claim. Runs still going then (a
/// slow or silent downstream for their product) go on in the background,
/// their products leased, and the dispatcher claims the other products'
/// events meanwhile: one product's slow sink does not stall the rest.
const SLOW_ROUND: Duration = Duration::from_millis(200);

/// A sink's failure; the event will be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
    retry_after: Option<Duration>,
}

impl HandlerError {
    /// An error with a message (never put secrets or bodies in it: it is
    /// stored as the event's `last_error` and logged).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Asks for the retry to wait at least this long (a downstream's
    /// `Retry-After`): the retry waits for the longer of it and the backoff,
    /// within `dispatch.backoff_max_secs`.
    #[must_use]
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// The wait asked for with [`HandlerError::with_retry_after`].
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// Something that takes dispatched events: the built-in sinks, or your own.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + fmt::Debug {
    /// A short name for logs.
    fn name(&self) -> &str;

    /// Handles one event. Must be idempotent by `event.event.id`: an event
    /// can be handed over more than once.
    ///
    /// # Errors
    /// [`HandlerError`] to have the event retried later.
    async fn handle(&self, event: &StoredEvent) -> Result<(), HandlerError>;
}

/// Dispatcher tuning.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// This dispatcher's id in leases.
    pub worker_id: String,
    /// How long a claim lasts.
    pub lease: Duration,
    /// The longest one attempt at every sink may take: the sum of the
    /// network sinks' timeouts (HTTP, NATS). A run starts an attempt only
    /// when it can end, and its outcome be recorded, within the lease.
    pub attempt_budget: Duration,
    /// Events claimed per round (products, each with its run).
    pub batch: usize,
    /// Most events of one product handed over per claim, in order (see
    /// [`EventStore::claim_runs`]); 1 = one per claim.
    pub run: usize,
    /// Poll interval when idle.
    pub poll_interval: Duration,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl DispatchConfig {
    /// From settings, with a fresh worker id.
    pub fn from_settings(s: &DispatchSettings) -> Self {
        Self {
            worker_id: format!("{}-{:08x}", std::process::id(), rand::random::<u32>()),
            lease: s.lease(),
            attempt_budget: s
                .http
                .as_ref()
                .map_or(Duration::ZERO, |h| Duration::from_millis(h.timeout_ms)),
            batch: s.batch,
            run: s.run.max(1),
            poll_interval: Duration::from_millis(s.poll_interval_ms.max(10)),
            max_attempts: s.max_attempts.max(1),
            backoff_base: Duration::from_millis(s.backoff_base_ms),
            backoff_max: Duration::from_secs(s.backoff_max_secs),
        }
    }

    /// The delay before attempt number `attempts + 1` (after `attempts` failures).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(31));
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }

    /// The wait before the retry after `attempts` failed: the backoff, or a
    /// downstream's `retry_after` when longer, plus up to a fifth more at
    /// random; never past `backoff_max`. Why the jitter: after an outage
    /// every product's waiting event fails at once, and without it all of
    /// them would retry in the same instant, attempt after attempt. Only
    /// ever added, so no retry comes before its backoff; at the cap the
    /// delays are equal, but by then each event carries the offsets its
    /// earlier delays drew.
    pub fn retry_delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        // Capped before the jitter too: a downstream's `Retry-After` is
        // anything it likes (u64::MAX seconds), and `mul_f64` panics on a
        // product past `Duration::MAX`.
        self.backoff(attempts)
            .max(retry_after.unwrap_or_default())
            .min(self.backoff_max)
            .mul_f64(1.0 + rand::random::<f64>() / 5.0)
            .min(self.backoff_max)
    }
}

/// Hands stored events to sinks.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Arc<dyn EventStore>,
    platforms: Arc<Platforms>,
    handlers: Arc<[Arc<dyn EventHandler>]>,
    config: DispatchConfig,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Outcomes the store refused, warned about at most every 10 s.
    unrecorded: Arc<LogBudget>,
    /// Store failures of claims and outcome records (a full disk fails
    /// every one), warned about at most every 10 s.
    store_failures: Arc<LogBudget>,
    /// Failed attempts that will be retried: a downstream that is down
    /// fails every waiting product's event on every round (an outside
    /// audit counted 38,230 lines in two minutes). One warning every 10 s,
    /// with the count; each one at debug.
    retries: Arc<LogBudget>,
    /// When the earliest retry this dispatcher scheduled falls due: the
    /// idle loop wakes for it rather than at the next poll, so retries keep
    /// their backoff schedule (the first one is shorter than the poll).
    next_retry: Arc<std::sync::Mutex<std::collections::BTreeSet<tokio::time::Instant>>>,
}

/// Most retry times the idle loop keeps: later ones wait for the poll.
const RETRY_TIMES_KEPT: usize = 256;

/// Margin after a retry's due time before claiming it: the store's clock
/// decides when it is due.
const RETRY_MARGIN: Duration = Duration::from_millis(5);

/// A running dispatcher.
#[derive(Debug)]
pub struct DispatcherHandle {
    shutdown: watch::Sender<bool>,
    // Resolves (or errors, if the loop panicked) when the loop has ended.
    done: oneshot::Receiver<()>,
    // Whether `done` has resolved (a oneshot receiver is not polled again).
    ended: bool,
}

impl DispatcherHandle {
    /// Resolves if the dispatcher's loop ends before it was asked to stop,
    /// which it does only on a panic; pending otherwise. The server stops
    /// then (see `main.rs`): a receiver that acknowledges events nobody
    /// dispatches any more should be restarted, not kept up looking ready.
    pub async fn ended(&mut self) {
        if self.ended {
            return;
        }
        let _ = (&mut self.done).await;
        self.ended = true;
    }

    /// Asks the dispatcher to stop after the round in progress and waits for
    /// it, at most `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        let _ = self.shutdown.send(true);
        if self.ended {
            return;
        }
        if tokio::time::timeout(timeout, self.done).await.is_err() {
            tracing::warn!(
                "dispatcher did not finish in time; unfinished events stay leased and will be retried"
            );
        }
    }
}

impl Dispatcher {
    /// A dispatcher; `wake` is notified after each insert. `platforms`
    /// normalise the stored bodies before the sinks see them.
    pub fn new(
        store: Arc<dyn EventStore>,
        platforms: Arc<Platforms>,
        handlers: Vec<Arc<dyn EventHandler>>,
        config: DispatchConfig,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            platforms,
            handlers: handlers.into(),
            config,
            wake,
            metrics,
            unrecorded: Arc::new(LogBudget::new(Duration::from_secs(10))),
            store_failures: Arc::new(LogBudget::new(Duration::from_secs(10))),
            retries: Arc::new(LogBudget::new(Duration::from_secs(10))),
            next_retry: Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new())),
        }
    }

    /// Remembers that a retry falls due after `delay`.
    fn note_retry(&self, delay: Duration) {
        let at = tokio::time::Instant::now() + delay + RETRY_MARGIN;
        if let Ok(mut times) = self.next_retry.lock() {
            times.insert(at);
            if times.len() > RETRY_TIMES_KEPT {
                times.pop_last();
            }
        }
    }

    /// How long the idle loop waits: the poll interval, or less when a
    /// retry this dispatcher scheduled falls due first; zero when one has
    /// fallen due since the last wait (each due time is used once).
    fn idle_wait(&self) -> Duration {
        let poll = self.config.poll_interval;
        let Ok(mut times) = self.next_retry.lock() else {
            return poll;
        };
        let now = tokio::time::Instant::now();
        let mut fell_due = false;
        while times.first().is_some_and(|at| *at <= now) {
            times.pop_first();
            fell_due = true;
        }
        if fell_due {
            return Duration::ZERO;
        }
        times.first().map_or(poll, |at| (*at - now).min(poll))
    }

    /// Runs in the background, as a task of the current Tokio runtime,
    /// until shut down.
    pub fn spawn(self) -> DispatcherHandle {
        let (shutdown, stop) = watch::channel(false);
        let (finished, done) = oneshot::channel();
        tokio::spawn(async move {
            Arc::new(self).run(stop).await;
            let _ = finished.send(());
        });
        DispatcherHandle {
            shutdown,
            done,
            ended: false,
        }
    }

    /// Runs in the background on a thread of its own (with its own Tokio
    /// runtime), at niceness `nice` on Linux (0 = unchanged).
    ///
    /// Why a thread of its own: the request workers then have the CPU first.
    /// Normalising and handing over an event costs about as much CPU as
    /// receiving it; under a burst, sharing the workers' threads would slow
    /// the answers the platforms wait for (and time out on) to do work
    /// nobody waits for. At a lower priority the dispatcher takes the CPU
    /// the workers leave, and catches up after the burst: events wait in the
    /// store, durably, meanwhile.
    ///
    /// # Errors
    /// When the thread or its runtime cannot be started.
    pub fn spawn_on_own_thread(self, nice: u8) -> std::io::Result<DispatcherHandle> {
        let (shutdown, stop) = watch::channel(false);
        let (finished, done) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || {
                lower_priority(nice);
                runtime.block_on(Arc::new(self).run(stop));
                let _ = finished.send(());
            })?;
        Ok(DispatcherHandle {
            shutdown,
            done,
            ended: false,
        })
    }

    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // The next batch, when claimed along with the last one's outcomes.
        let mut next: Option<Result<Claim, StoreError>> = None;
        // Runs in progress, this round's and slow ones of earlier rounds.
        let mut runs = JoinSet::new();
        // One slot per run claimed and not yet done sending: at most
        // `batch`. Claims take only free slots, so no claimed event waits
        // for a run to end (its lease running out meanwhile: claimed again,
        // sent twice, and out of order behind its product's next event).
        let slots = Arc::new(Semaphore::new(self.config.batch.max(1)));
        loop {
            while runs.try_join_next().is_some() {}
            if *stop.borrow() {
                // Claimed already: hand them over rather than leave them
                // leased until the lease runs out.
                if let Some(Ok(claim)) = next.take()
                    && !claim.events.is_empty()
                {
                    self.dispatch_claimed(claim.events, claim.claimed_at, false, &stop)
                        .await;
                }
                // Each stops after its delivery in progress.
                while runs.join_next().await.is_some() {}
                break;
            }
            let claimed = match next.take() {
                Some(Ok(claim)) if !claim.events.is_empty() => Ok(claim),
                // Nothing (or an error) from the claim sent with the last
                // outcomes: claim again now, before waiting. A store that
                // ran that claim before the outcomes did not see the events
                // they made due, and those must not wait for the poll
                // interval.
                Some(_) | None => self.claim_within(&slots).await,
            };
            match claimed {
                Ok(claim) if !claim.events.is_empty() => {
                    let pipelined = self.store.runs_commands_in_order();
                    next = self
                        .dispatch_round(claim, pipelined, &stop, &mut runs, &slots)
                        .await;
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(failures) = self.store_failures.hit() {
                        tracing::error!(error = %e, failures, "dispatcher could not claim events (at most one such line every 10 s, failures = how many since the last)");
                    }
                }
            }
            tokio::select! {
                // No slot free: only a run ending frees one (below).
                () = self.wake.notified(), if slots.available_permits() > 0 => {
                    // Let a few more inserts arrive: one claim for many
                    // events instead of one wake-up (a cross-thread
                    // syscall) and one claim per delivery.
                    tokio::time::sleep(WAKE_COALESCE).await;
                }
                () = tokio::time::sleep(self.idle_wait()) => {}
                _ = stop.changed() => {}
                // A slow run ended: a slot is free, and its product's next
                // event may be due.
                Some(_) = runs.join_next(), if !runs.is_empty() => {}
            }
        }
        tracing::info!("dispatcher stopped");
    }

    /// Claims one batch of due events and dispatches them; returns how many.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let claimed_at = Instant::now();
        let events = self.claim().await?;
        let n = events.len();
        if n > 0 {
            let (_keep, never) = watch::channel(false);
            self.dispatch_claimed(events, claimed_at, false, &never)
                .await;
        }
        Ok(n)
    }

    async fn claim(&self) -> Result<Vec<StoredEvent>, StoreError> {
        self.claim_up_to(self.config.batch).await
    }

    async fn claim_up_to(&self, runs: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.store
            .claim_runs(
                &self.config.worker_id,
                self.config.lease,
                runs,
                self.config.run,
            )
            .await
    }

    /// Claims as many runs as `slots` has free, each holding one slot until
    /// its outcomes are sent. Nothing when no slot is free.
    async fn claim_within(&self, slots: &Arc<Semaphore>) -> Result<Claim, StoreError> {
        let free = slots.available_permits().min(self.config.batch);
        let Some(mut held) = u32::try_from(free)
            .ok()
            .filter(|n| *n > 0)
            .and_then(|n| Arc::clone(slots).try_acquire_many_owned(n).ok())
        else {
            return Ok(Claim::default());
        };
        // The store returns at most `free` heads, each with its run.
        let claimed_at = Instant::now();
        let events = self.claim_up_to(free).await?;
        let runs = runs_of_count(&events);
        // Unused slots go back at once.
        drop(held.split(free.saturating_sub(runs)));
        Ok(Claim {
            events,
            slots: (runs > 0).then_some(held),
            claimed_at,
        })
    }

    /// As [`Dispatcher::dispatch_claimed`], each product's run a task of
    /// its own in `runs`: the round holds up the next claim until every
    /// outcome is sent (then claims with them, as there), or for
    /// [`SLOW_ROUND`] at most. Runs still going then go on in the
    /// background, their products leased (the store hands out none of
    /// their events meanwhile), and the loop claims the other products'
    /// events; `None` then, and the loop claims afresh.
    async fn dispatch_round(
        self: &Arc<Self>,
        claim: Claim,
        claim_next: bool,
        stop: &watch::Receiver<bool>,
        runs: &mut JoinSet<()>,
        slots: &Arc<Semaphore>,
    ) -> Option<Result<Claim, StoreError>> {
        let Claim {
            events,
            slots: mut held,
            claimed_at,
        } = claim;
        let n = events.len();
        self.metrics
            .dispatch_in_flight(i64::try_from(n).unwrap_or(0));
        let products = runs_of(events);
        let round = Arc::new(Round::new(n, products.len()));
        for run in products {
            let this = Arc::clone(self);
            let round = Arc::clone(&round);
            let stop = stop.clone();
            // This run's slot, freed once its outcomes are sent (not when
            // the store has recorded them: the claim that follows them
            // may use it).
            let slot = std::sync::Mutex::new(held.as_mut().and_then(|h| h.split(1)));
            runs.spawn(async move {
                // Counted finished however the task ends (a panic in a
                // sink included), so the round never waits for it forever.
                let _finished = RunFinished(Arc::clone(&round));
                let len = run.len();
                let unsent = AtomicUsize::new(len);
                let sent = |k: usize| {
                    round.sent(k);
                    if k > 0
                        && unsent.fetch_sub(k, Ordering::AcqRel) == k
                        && let Ok(mut slot) = slot.lock()
                    {
                        // Dropping the permit frees the slot.
                        slot.take();
                    }
                };
                this.dispatch_run(run, claimed_at, &sent, &stop).await;
                this.metrics
                    .dispatch_in_flight(-i64::try_from(len).unwrap_or(0));
            });
        }
        if tokio::time::timeout(SLOW_ROUND, round.all_sent.notified())
            .await
            .is_err()
        {
            return None;
        }
        // Every outcome is on its way: the claim rides behind them, and
        // the runs end with their replies.
        let next = if claim_next && !*stop.borrow() {
            Some(self.claim_within(slots).await)
        } else {
            None
        };
        round.all_finished.notified().await;
        next
    }

    /// Hands a claimed batch to the sinks and records each outcome as soon
    /// as it is known; with `claim_next` (for stores that run commands in
    /// order, see [`EventStore::runs_commands_in_order`]), claims the next
    /// batch in the same round trip as the last outcomes.
    ///
    /// Why together: the outcomes are what make the next events of the same
    /// products due (the oldest pending event of a product is the only one
    /// claimable), so a claim cannot usefully go before them; sent right
    /// behind them, it rides in the same store round trip (with SQLite, the
    /// same write batch: commands run in the order they were sent) instead
    /// of one of its own. A store that runs them out of order only returns
    /// fewer events this time; order per product is kept by the store.
    async fn dispatch_claimed(
        &self,
        events: Vec<StoredEvent>,
        claimed_at: Instant,
        claim_next: bool,
        stop: &watch::Receiver<bool>,
    ) -> Option<Result<Vec<StoredEvent>, StoreError>> {
        let n = events.len();
        self.metrics
            .dispatch_in_flight(i64::try_from(n).unwrap_or(0));
        let unsent = AtomicUsize::new(n);
        let all_sent = Notify::new();
        // Counts store commands sent; the claim goes out behind the last.
        let sent = |k: usize| {
            if k > 0 && unsent.fetch_sub(k, Ordering::AcqRel) == k {
                all_sent.notify_one();
            }
        };
        // One run per product in a batch, so the runs can go side by side.
        let finished = join_all(
            runs_of(events)
                .into_iter()
                .map(|run| self.dispatch_run(run, claimed_at, &sent, stop)),
        );
        let next = async {
            if !claim_next || *stop.borrow() {
                return None;
            }
            // A permit is stored if the last outcome went before this waits.
            all_sent.notified().await;
            Some(self.claim().await)
        };
        let (_, next) = futures::future::join(finished, next).await;
        self.metrics
            .dispatch_in_flight(-i64::try_from(n).unwrap_or(0));
        next
    }

    /// Hands one product's run to the sinks in order, then records the
    /// outcomes, in order, and releases the events it did not attempt.
    ///
    /// The run stops at the first attempt to be retried (the events behind
    /// it must wait for it), and, after its first attempt, before one that
    /// could outlive the claim's lease: one taking the whole [`DispatchConfig::attempt_budget`]
    /// must end, and its outcome be recorded (a tenth of the lease is kept
    /// for that), before the lease that started at `claimed_at` runs out.
    /// Otherwise the event would be claimed again, by this dispatcher or
    /// another, while the attempt is still open: sent twice at once, and the
    /// late outcome recorded against the new claim. Why the outcomes at the
    /// end and not one by one: the run then costs one store round trip, not
    /// one per event; and if they are lost (a crash, a failed write batch),
    /// the whole run goes again from its first event, in order. The store
    /// runs the commands in the order they were sent, so a failure can only
    /// lose a tail of them: redelivered in order too.
    async fn dispatch_run(
        &self,
        mut run: Vec<StoredEvent>,
        claimed_at: Instant,
        sent: &impl Fn(usize),
        stop: &watch::Receiver<bool>,
    ) {
        let last_start = claimed_at
            .checked_add(self.config.lease)
            .and_then(|end| end.checked_sub(self.config.lease / 10))
            .and_then(|end| end.checked_sub(self.config.attempt_budget));
        let mut outcomes = Vec::with_capacity(run.len());
        for event in &mut run {
            // Shutting down: the rest of the run is released, not sent
            // (a run of slow deliveries would hold the shutdown).
            // The first attempt always goes, right after the claim: with a
            // budget near the lease (start-up refuses one over half; a
            // library user may not check) a run would otherwise release its
            // head for ever, claim after claim.
            let late = last_start.is_none_or(|last| Instant::now() > last);
            if !outcomes.is_empty() && (*stop.borrow() || late) {
                break;
            }
            // Another server may have taken the store over (SQLite: its
            // lock file was removed, and is held by another server or not
            // yet locked again): nothing more of this run goes now, not
            // even the first. Taken over, the store says so itself (error);
            // merely removed, it locks the file again at its next write and
            // the run is claimed again.
            if !self.store.may_dispatch() {
                tracing::warn!(
                    "the store's lock file is missing or held by another server: the rest of this run is not sent now"
                );
                break;
            }
            let outcome = self.attempt(event).await;
            let retry = matches!(outcome, DispatchOutcome::Retry { .. });
            outcomes.push(outcome);
            if retry {
                break;
            }
        }
        let attempted = outcomes.len();
        let mut replies: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = Vec::new();
        let outcomes: Vec<(String, DispatchOutcome)> = run
            .iter()
            .zip(outcomes)
            .map(|(event, outcome)| (event.event.id.clone(), outcome))
            .collect();
        let run = &run;
        let mut record: Pin<Box<dyn Future<Output = ()> + Send + '_>> = Box::pin(async move {
            match self
                .store
                .complete_run(&self.config.worker_id, outcomes)
                .await
            {
                Ok(recorded) => {
                    for (event, _) in run.iter().zip(recorded).filter(|(_, ok)| !ok) {
                        // The store refused the outcome: the lease ran out and
                        // another worker claimed the event, or the event is
                        // gone (the bounded memory store drops its oldest
                        // events when full, one per delivery under a burst).
                        if let Some(unrecorded) = self.unrecorded.hit() {
                            tracing::warn!(id = %event.event.id, unrecorded, "dispatch outcome not recorded: this worker no longer holds the event (lease expired, or the event was dropped from the store); at most one such line every 10 s, unrecorded = how many since the last");
                        }
                    }
                }
                Err(e) => {
                    if let Some(failures) = self.store_failures.hit() {
                        tracing::error!(error = %e, events = attempted, failures, "could not record dispatch outcomes; the leases will expire and the events go again, in order (at most one such line every 10 s, failures = how many since the last)");
                    }
                }
            }
        });
        // The first poll sends the command to the store.
        if poll_once(record.as_mut()).await.is_pending() {
            replies.push(record);
        }
        sent(attempted);
        if let Some(unattempted) = run.get(attempted..).filter(|rest| !rest.is_empty()) {
            let ids: Vec<String> = unattempted.iter().map(|e| e.event.id.clone()).collect();
            let mut release: Pin<Box<dyn Future<Output = ()> + Send + '_>> = Box::pin(async move {
                if let Err(e) = self.store.release(&ids, &self.config.worker_id).await {
                    tracing::warn!(error = %e, events = ids.len(), "could not release unattempted events; they wait for their lease");
                }
            });
            if poll_once(release.as_mut()).await.is_pending() {
                replies.push(release);
            }
            sent(unattempted.len());
        }
        join_all(replies).await;
    }

    /// One attempt at handing `event` to every sink; returns what to record.
    async fn attempt(&self, event: &mut StoredEvent) -> DispatchOutcome {
        // The product from the stored body (crate::normalise); a body that
        // cannot be normalised is kept as `failed` and not sent.
        // A panic in a normaliser (a bug) counts as an unreadable body:
        // the event is kept, raw, as `failed`, not retried for ever.
        let normalised = std::panic::catch_unwind(AssertUnwindSafe(|| {
            normalise::product_json(&self.platforms, &event.event)
        }))
        .unwrap_or_else(|panic| {
            Err(catalog_core::webhook::PayloadError::new(
                "",
                format!("the normaliser panicked: {}", panic_message(&*panic)),
            ))
        });
        match normalised {
            Ok(product) => event.event.product = product,
            Err(e) => {
                let error = e.to_string();
                tracing::warn!(id = %event.event.id, error = %error, "stored delivery could not be normalised; kept as failed");
                self.metrics.record_dispatch(DispatchResult::Unreadable);
                return DispatchOutcome::Unreadable { error };
            }
        }
        let mut failure = None;
        let mut retry_after = None;
        for handler in self.handlers.iter() {
            // A handler that panics (yours, or a bug in ours) fails this
            // attempt like an error: the event is retried, then
            // dead-lettered, and its product's later events go on. Left to
            // unwind, it took the run's task down with the outcome unrecorded,
            // so the event went again after every lease, never counting an
            // attempt, and held its product's queue for good.
            let handled = AssertUnwindSafe(handler.handle(event))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    Err(HandlerError::new(format!(
                        "panicked: {}",
                        panic_message(&*panic)
                    )))
                });
            if let Err(e) = handled {
                // Named by the sink, once: the built-in sinks' messages
                // already start with their name ("nats: ...").
                let message = e.to_string();
                failure = Some(if message.starts_with(handler.name()) {
                    message
                } else {
                    format!("{}: {message}", handler.name())
                });
                retry_after = e.retry_after();
                break;
            }
        }
        let attempt = event.attempts.saturating_add(1);
        let (outcome, result) = match failure {
            None => (DispatchOutcome::Delivered, DispatchResult::Delivered),
            Some(error) if attempt >= self.config.max_attempts => {
                tracing::error!(id = %event.event.id, attempt, error = %error, "event dead-lettered");
                (DispatchOutcome::Dead { error }, DispatchResult::Dead)
            }
            Some(error) => {
                let delay = self.config.retry_delay(attempt, retry_after);
                self.note_retry(delay);
                let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                if let Some(failures) = self.retries.hit() {
                    tracing::warn!(id = %event.event.id, attempt, retry_in_ms, error = %error, failures, "dispatch failed; will retry (at most one such line every 10 s, failures = how many since the last; each one at debug)");
                } else {
                    tracing::debug!(id = %event.event.id, attempt, retry_in_ms, error = %error, "dispatch failed; will retry");
                }
                let at = crate::timestamp::after(Utc::now(), delay);
                (DispatchOutcome::Retry { error, at }, DispatchResult::Retry)
            }
        };
        self.metrics.record_dispatch(result);
        outcome
    }
}

/// One round's progress, shared by its runs.
#[derive(Debug)]
struct Round {
    /// Store commands (outcomes, releases) not yet sent, in events.
    unsent: AtomicUsize,
    all_sent: Notify,
    /// Runs not yet finished.
    unfinished: AtomicUsize,
    all_finished: Notify,
}

impl Round {
    fn new(events: usize, runs: usize) -> Self {
        Self {
            unsent: AtomicUsize::new(events),
            all_sent: Notify::new(),
            unfinished: AtomicUsize::new(runs),
            all_finished: Notify::new(),
        }
    }

    /// `k` events' commands were sent; the last wakes the claim behind them
    /// (a stored permit if it is not waiting yet).
    fn sent(&self, k: usize) {
        if k > 0 && self.unsent.fetch_sub(k, Ordering::AcqRel) == k {
            self.all_sent.notify_one();
        }
    }

    fn run_finished(&self) {
        if self.unfinished.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_finished.notify_one();
        }
    }
}

/// Marks its run finished when dropped.
struct RunFinished(Arc<Round>);

impl Drop for RunFinished {
    fn drop(&mut self) {
        self.0.run_finished();
    }
}

/// A claimed batch and the dispatcher's slots it holds, one per run.
#[derive(Debug)]
struct Claim {
    events: Vec<StoredEvent>,
    slots: Option<OwnedSemaphorePermit>,
    /// When the claim was sent: its leases run out `lease` after, at the
    /// latest (the store starts them when it runs the claim).
    claimed_at: Instant,
}

impl Default for Claim {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            slots: None,
            claimed_at: Instant::now(),
        }
    }
}

/// Whether two events belong to one product (one run, one order).
fn same_product(a: &StoredEvent, b: &StoredEvent) -> bool {
    a.event.platform == b.event.platform
        && a.event.store == b.event.store
        && a.event.product_key() == b.event.product_key()
}

/// How many runs [`runs_of`] makes of `events`.
fn runs_of_count(events: &[StoredEvent]) -> usize {
    events
        .iter()
        .enumerate()
        .filter(|(i, e)| *i == 0 || !same_product(&events[i - 1], e))
        .count()
}

/// Splits a claimed batch into runs: consecutive events of one product
/// (the store returns each product's events together and in order).
fn runs_of(events: Vec<StoredEvent>) -> Vec<Vec<StoredEvent>> {
    let mut runs: Vec<Vec<StoredEvent>> = Vec::new();
    for event in events {
        let same = runs
            .last()
            .and_then(|r| r.last())
            .is_some_and(|last| same_product(last, &event));
        match runs.last_mut() {
            Some(run) if same => run.push(event),
            _ => runs.push(vec![event]),
        }
    }
    runs
}

/// Polls a future once (sending what its first poll sends).
async fn poll_once<F: Future + ?Sized>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

/// Gives the calling thread niceness `nice` (Linux; a no-op elsewhere).
fn lower_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // On Linux a thread id names one thread for setpriority(2).
        let me = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(me), i32::from(nice)) {
            tracing::warn!(error = %e, nice, "could not lower the dispatcher's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut c = DispatchConfig::from_settings(&crate::settings::Settings::defaults().dispatch);
        c.backoff_base = Duration::from_millis(100);
        c.backoff_max = Duration::from_millis(1000);
        assert_eq!(c.backoff(1), Duration::from_millis(100));
        assert_eq!(c.backoff(2), Duration::from_millis(200));
        assert_eq!(c.backoff(3), Duration::from_millis(400));
        assert_eq!(c.backoff(5), Duration::from_millis(1000));
        assert_eq!(c.backoff(100), Duration::from_millis(1000));
    }

    #[test]
    fn retry_delays_keep_their_backoff_honour_retry_after_and_spread() {
        let mut c = DispatchConfig::from_settings(&crate::settings::Settings::defaults().dispatch);
        c.backoff_base = Duration::from_millis(100);
        c.backoff_max = Duration::from_secs(10);
        let delays: Vec<Duration> = (0..200).map(|_| c.retry_delay(2, None)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(240))
        );
        // Spread: not all the same.
        assert!(delays.iter().any(|d| *d != delays[0]));
        // A downstream's Retry-After longer than the backoff wins...
        let d = c.retry_delay(1, Some(Duration::from_secs(3)));
        assert!(
            d >= Duration::from_secs(3) && d <= Duration::from_millis(3600),
            "{d:?}"
        );
        // ...a shorter one does not shorten it...
        assert!(c.retry_delay(3, Some(Duration::from_millis(1))) >= Duration::from_millis(400));
        // ...and nothing goes past backoff_max, jitter included, not even
        // the longest wait a header can ask for (it used to panic).
        let d = c.retry_delay(1, Some(Duration::from_secs(3600)));
        assert_eq!(d, Duration::from_secs(10));
        assert_eq!(
            c.retry_delay(1, Some(Duration::from_secs(u64::MAX))),
            Duration::from_secs(10)
        );
        assert_eq!(
            c.retry_delay(1, Some(Duration::MAX)),
            Duration::from_secs(10)
        );
        assert!((0..200).all(|_| c.retry_delay(7, None) <= Duration::from_secs(10)));
    }
}
