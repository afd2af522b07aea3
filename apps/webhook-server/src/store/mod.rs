//! Event stores: one trait ([`EventStore`]), an embedded SQLite implementation,
//! a bounded in-memory one and (feature `postgres`) a shared PostgreSQL one.
//!
//! The trait is shaped for a shared database as well (PostgreSQL): inserts are
//! "insert if new" on a unique key, and dispatch claims events with a lease
//! ([`EventStore::claim_due`]) so several workers or replicas can share the
//! queue, an expired lease making the event claimable again.

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use catalog_core::webhook::{DeliveryMeta, PayloadError};
use catalog_core::{CatalogEvent, DedupKey, InsertOutcome};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;

/// A store failure: the delivery must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store is shut down or its writer is gone.
    #[error("store unavailable")]
    Unavailable,
    /// The store did not answer in time (`server.store_timeout_ms`); a
    /// write may still land (a retried delivery is then a duplicate).
    #[error("the store did not answer within {0} ms")]
    TimedOut(u64),
    /// A stored value could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// Another process owns the embedded database (see [`SqliteStore::open`]).
    #[error(
        "{0} is open in another webhook-server or copy-store (which holds {0}.lock): one SQLite file belongs to one process; run several replicas on PostgreSQL"
    )]
    InUse(String),
    /// This kind of store cannot do what was asked (the memory store keeps
    /// nothing to copy from, for one).
    #[error("this store cannot {0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// [`StoreError::TimedOut`] after `limit`.
    pub fn timed_out(limit: Duration) -> Self {
        Self::TimedOut(u64::try_from(limit.as_millis()).unwrap_or(u64::MAX))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Waiting to be dispatched (possibly after a failed attempt, see `attempts`).
    Pending,
    /// Handed to every sink.
    Delivered,
    /// Verified but unreadable: kept with its raw body, not dispatched.
    Failed,
    /// Dispatch gave up after the last retry.
    Dead,
}

impl EventStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// Reads the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// An event about to be stored.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct NewEvent {
    /// Our id: [`DedupKey::fingerprint`] of platform, store and event id.
    pub id: String,
    /// The platform.
    pub platform: String,
    /// The store.
    pub store: String,
    /// Canonical topic (`product.created`).
    pub topic: String,
    /// Topic as sent.
    pub raw_topic: String,
    /// The platform's deduplication key.
    pub event_id: String,
    /// The platform's delivery id.
    pub delivery_id: Option<String>,
    /// The product concerned.
    pub product_id: Option<String>,
    /// When the platform triggered it.
    pub triggered_at: Option<DateTime<Utc>>,
    /// When we received it.
    pub received_at: DateTime<Utc>,
    /// The normalised product as JSON text.
    pub product: Option<String>,
    /// The body exactly as received.
    pub raw_body: Bytes,
    /// `Pending` for events, `Failed` for unreadable deliveries.
    pub status: EventStatus,
    /// Why a `Failed` delivery could not be read.
    pub error: Option<String>,
}

impl NewEvent {
    /// A parsed event, pending dispatch.
    ///
    /// The product is stored without its `raw` copy of the payload: the raw
    /// body is stored beside it already, byte for byte.
    ///
    /// # Errors
    /// When the product cannot be serialised (it always can in practice).
    pub fn from_event(event: CatalogEvent, raw_body: Bytes) -> Result<Self, serde_json::Error> {
        let id = event.dedup_key().fingerprint();
        let product = event
            .product
            .map(|mut p| {
                p.raw = serde_json::Value::Null;
                serde_json::to_string(&p)
            })
            .transpose()?;
        Ok(Self {
            id,
            platform: event.platform.as_str().to_owned(),
            store: event.store,
            topic: event.topic.as_str().to_owned(),
            raw_topic: event.raw_topic,
            event_id: event.event_id.as_str().to_owned(),
            delivery_id: event.delivery_id,
            product_id: event.product_id,
            triggered_at: event.triggered_at,
            received_at: event.received_at,
            product,
            raw_body,
            status: EventStatus::Pending,
            error: None,
        })
    }

    /// A verified delivery as the receiver stores it before answering: the
    /// raw body and the product id from [`WebhookSource::triage`], pending;
    /// the product is derived from the body later ([`crate::normalise`]).
    ///
    /// [`WebhookSource::triage`]: catalog_core::webhook::WebhookSource::triage
    pub fn received(
        meta: &DeliveryMeta,
        raw_body: Bytes,
        product_id: Option<String>,
        received_at: DateTime<Utc>,
    ) -> Self {
        // The product the body names is part of the key. Shopify documents
        // X-Shopify-Event-Id as "shared across all deliveries produced by
        // the same merchant action": should one action update several
        // products under one Event-Id, a key of the Event-Id alone would
        // keep the first product's delivery and drop the others as
        // duplicates. A retry (the same body) and another subscription's
        // copy of the event (the same product) still get the same key.
        let keyed = match &product_id {
            Some(product) => catalog_core::EventId::new(format!(
                "{}\u{1f}product:{product}",
                meta.event_id.as_str()
            )),
            None => meta.event_id.clone(),
        };
        let key = DedupKey::new(meta.platform.clone(), meta.store.clone(), keyed);
        Self {
            id: key.fingerprint(),
            platform: meta.platform.as_str().to_owned(),
            store: meta.store.clone(),
            topic: meta.topic.as_str().to_owned(),
            raw_topic: meta.raw_topic.clone(),
            event_id: meta.event_id.as_str().to_owned(),
            delivery_id: meta.delivery_id.clone(),
            product_id,
            triggered_at: meta.triggered_at,
            received_at,
            product: None,
            raw_body,
            status: EventStatus::Pending,
            error: None,
        }
    }

    /// The delivery's meta back from what was stored: the inverse of
    /// [`NewEvent::received`] (the API version is not stored).
    pub fn meta(&self) -> DeliveryMeta {
        DeliveryMeta::new(
            catalog_core::PlatformId::new(self.platform.clone()),
            self.store.clone(),
            catalog_core::Topic::from_canonical(&self.topic),
            self.raw_topic.clone(),
            catalog_core::EventId::new(self.event_id.clone()),
        )
        .with_delivery_id(self.delivery_id.clone())
        .with_triggered_at(self.triggered_at)
    }

    /// A verified delivery that could not be parsed: kept as `Failed`.
    pub fn unparseable(
        meta: &DeliveryMeta,
        raw_body: Bytes,
        error: &PayloadError,
        received_at: DateTime<Utc>,
    ) -> Self {
        Self {
            status: EventStatus::Failed,
            error: Some(error.to_string()),
            ..Self::received(meta, raw_body, None, received_at)
        }
    }

    /// The key deliveries of one product are ordered by: the product id, or
    /// the event's own id when there is none.
    pub fn product_key(&self) -> &str {
        self.product_id.as_deref().unwrap_or(&self.id)
    }
}

/// A stored event with its dispatch state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Insertion order, unique within a store.
    pub seq: i64,
    /// The event as inserted.
    pub event: NewEvent,
    /// Dispatch attempts so far.
    pub attempts: u32,
    /// The last dispatch error.
    pub last_error: Option<String>,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
}

impl StoredEvent {
    /// The current status.
    pub fn status(&self) -> EventStatus {
        self.event.status
    }
}

/// Filters for [`EventStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct EventFilter {
    /// Platform.
    pub platform: Option<String>,
    /// Store.
    pub store: Option<String>,
    /// Canonical topic.
    pub topic: Option<String>,
    /// Status.
    pub status: Option<EventStatus>,
}

/// One page of [`EventStore::list`], newest first.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventPage {
    /// The events.
    pub events: Vec<StoredEvent>,
    /// Pass as `before` to get the next (older) page; `None` at the end.
    pub next: Option<i64>,
}

impl EventPage {
    /// A page from up to `limit + 1` events read newest first: the one
    /// past `limit` only says that an older page follows.
    pub fn from_overfetch(mut events: Vec<StoredEvent>, limit: usize) -> Self {
        let next = if events.len() > limit {
            events.truncate(limit);
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Self { events, next }
    }
}

/// How a dispatch attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// Every sink took it.
    Delivered,
    /// A sink failed; try again at `at`.
    Retry {
        /// Why.
        error: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The last attempt failed: dead-letter it.
    Dead {
        /// Why.
        error: String,
    },
    /// The stored body could not be normalised: the event becomes `failed`
    /// (kept with its raw body, not dispatched; replay it after a fix).
    Unreadable {
        /// Why, stored as the event's `error`.
        error: String,
    },
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Events stored (all statuses) as far as the store knows cheaply.
    pub events: u64,
    /// Events waiting for dispatch.
    pub pending: u64,
    /// Write transactions committed since start.
    pub commits: u64,
    /// Commands written since start (inserts and updates).
    pub writes: u64,
    /// Events dropped before they were delivered, to stay within a bound
    /// (the memory store's `memory_max_events`); always 0 for the durable
    /// stores, which never drop an event.
    pub dropped_undelivered: u64,
}

/// Which finished events [`EventStore::prune`] deletes: those received
/// before a cutoff, per kind of finish. Pending events are never pruned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrunePolicy {
    /// Delivered events received before this (`None`: kept).
    pub delivered_before: Option<DateTime<Utc>>,
    /// Failed (unreadable) and dead-lettered events received before this
    /// (`None`: kept).
    pub failed_before: Option<DateTime<Utc>>,
}

impl PrunePolicy {
    /// A policy with the two cutoffs.
    pub fn new(
        delivered_before: Option<DateTime<Utc>>,
        failed_before: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            delivered_before,
            failed_before,
        }
    }

    /// Whether the policy deletes anything at all.
    pub fn is_noop(&self) -> bool {
        self.delivered_before.is_none() && self.failed_before.is_none()
    }

    /// Whether an event with this status and arrival time falls under it.
    pub fn covers(&self, status: EventStatus, received_at: DateTime<Utc>) -> bool {
        let cutoff = match status {
            EventStatus::Delivered => self.delivered_before,
            EventStatus::Failed | EventStatus::Dead => self.failed_before,
            EventStatus::Pending => None,
        };
        cutoff.is_some_and(|c| received_at < c)
    }
}

/// Durable, deduplicating storage of events and their dispatch state.
///
/// Implementations must make [`EventStore::insert`] atomic per id (of two
/// concurrent inserts of one id exactly one is `Inserted`) and durable before
/// it returns `Ok`: the server acknowledges a delivery on that `Ok`.
/// What [`EventStore::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The event is pending again, due now.
    Queued,
    /// No event has this id.
    NotFound,
    /// A dispatcher holds the event (its lease has not run out): the attempt
    /// in progress ends first, and a replay can follow it.
    InFlight,
}

#[async_trait::async_trait]
pub trait EventStore: Send + Sync + fmt::Debug {
    /// A short description for logs (`sqlite ./data/catalog.db`).
    fn describe(&self) -> String;

    /// Whether the commands one task sends run in the order it sent them,
    /// even before it awaits their answers: then a claim sent right behind
    /// outcomes sees them, and the dispatcher sends both in one round trip.
    /// True for the embedded stores (one queue, or one lock taken at the
    /// first poll); false by default, as for a pool of connections.
    fn runs_commands_in_order(&self) -> bool {
        false
    }

    /// Stores the event unless one with the same id exists.
    ///
    /// # Errors
    /// [`StoreError`] when nothing is known to be stored.
    async fn insert(&self, event: NewEvent) -> Result<InsertOutcome, StoreError>;

    /// Claims up to `limit` due events for `worker_id` for `lease`: pending
    /// events whose next attempt is due and whose lease (if any) expired, and
    /// only the oldest pending event of each (platform, store, product), so
    /// events of one product are dispatched in order.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn claim_due(
        &self,
        worker_id: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Claims like [`EventStore::claim_due`], and with each claimed event up
    /// to `run - 1` of the pending events that follow it in its product's
    /// order (while they are due and not leased), leased to `worker_id` as
    /// well. Each product's events come together, in order. The caller
    /// hands a run over in order, records its outcomes in order, and
    /// [`EventStore::release`]s what it did not attempt.
    ///
    /// Why: a product with a backlog otherwise goes one event per store
    /// round trip, since only its oldest pending event is claimable. The
    /// default claims heads only (runs of one), which is always correct.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn claim_runs(
        &self,
        worker_id: &str,
        lease: Duration,
        limit: usize,
        run: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let _ = run;
        self.claim_due(worker_id, lease, limit).await
    }

    /// Gives up `worker_id`'s leases on these events (claimed in a run, not
    /// attempted), so they can be claimed again as soon as they are due.
    /// The default does nothing, which suits stores whose
    /// [`EventStore::claim_runs`] claims heads only.
    ///
    /// # Errors
    /// [`StoreError`]; the leases then run out on their own.
    async fn release(&self, ids: &[String], worker_id: &str) -> Result<(), StoreError> {
        let _ = (ids, worker_id);
        Ok(())
    }

    /// Records the outcome of a claimed event's dispatch. Returns `false` when
    /// the claim was lost (lease expired and taken by another worker) or the
    /// event is no longer there (the memory store drops its oldest events
    /// when full).
    ///
    /// # Errors
    /// [`StoreError`].
    async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        outcome: DispatchOutcome,
    ) -> Result<bool, StoreError>;

    /// Records the outcomes of a run's events (see
    /// [`EventStore::claim_runs`]), in the order given: as
    /// [`EventStore::complete`] for each, in one store call. Returns, for
    /// each, what `complete` would have.
    ///
    /// # Errors
    /// [`StoreError`]: then some first outcomes may be recorded and the
    /// rest not (those events go again, in order).
    async fn complete_run(
        &self,
        worker_id: &str,
        outcomes: Vec<(String, DispatchOutcome)>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (id, outcome) in outcomes {
            recorded.push(self.complete(&id, worker_id, outcome).await?);
        }
        Ok(recorded)
    }

    /// Lists events newest first, older than `before` (a `next` from a
    /// previous page) when given.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn list(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<EventPage, StoreError>;

    /// One event by id.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// Makes an event pending again, due now, clearing its attempts, unless
    /// a dispatcher holds it: an attempt in progress ([`ReplayOutcome::InFlight`],
    /// so that one event is never sent twice at once).
    ///
    /// It goes out in receipt order among its product's pending events,
    /// before the newer ones, so the product's newest event still goes last;
    /// except that the product's ready event keeps its turn while a
    /// dispatcher holds it or it has been tried (waiting for its retry):
    /// the replayed one then goes right after it.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn replay(&self, id: &str) -> Result<ReplayOutcome, StoreError>;

    /// Checks the store answers.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn ping(&self) -> Result<(), StoreError>;

    /// Deletes up to `limit` events that `policy` covers, oldest first, with
    /// their bodies and their deduplication entries (a delivery of a pruned
    /// event's id is stored again: the retention must outlast the
    /// platforms' retries). Returns how many were deleted; fewer than
    /// `limit` means none is left for now.
    ///
    /// # Errors
    /// [`StoreError`]; nothing was deleted then.
    async fn prune(&self, policy: &PrunePolicy, limit: usize) -> Result<usize, StoreError>;

    /// Figures for metrics.
    ///
    /// # Errors
    /// [`StoreError`].
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Stores events read from another store (see [`crate::copy_store`]) as
    /// they were there: their status, attempts, last error and next
    /// attempt time, and their order (each product's pending events are
    /// dispatched oldest first, the oldest being ready). An event whose id
    /// is here already is left as it is. Returns, for each event in turn,
    /// whether it was stored; the `seq` of the events given is not kept
    /// (this store numbers them in the order given).
    ///
    /// # Errors
    /// [`StoreError`]: then none of `events` is stored.
    /// [`StoreError::Unsupported`] by default.
    async fn import(&self, events: Vec<StoredEvent>) -> Result<Vec<bool>, StoreError> {
        let _ = events;
        Err(StoreError::Unsupported(
            "be copied to (it keeps nothing beyond its process)",
        ))
    }

    /// Whether this process may still hand events to the sinks. `false`
    /// once another server has taken the store over (SQLite: its lock file
    /// was removed and a second server locked the path): the dispatcher
    /// then sends nothing more of what it holds, which the other server
    /// sends. Checked before every attempt, so it must be cheap.
    fn may_dispatch(&self) -> bool {
        true
    }

    /// Finishes queued writes and stops accepting new ones.
    async fn close(&self);
}

/// Milliseconds since the epoch, as stored.
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Reads stored milliseconds back.
pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}
