//! A bounded in-memory store for tests and benchmarks. Not durable: a restart
//! forgets everything.
//!
//! Memory stays bounded whatever the traffic: at most `max_events` events are
//! kept (the oldest dropped first, preferring ones already delivered), and at
//! most `max_keys` deduplication keys (16 bytes each; the oldest forgotten
//! first, so a duplicate older than the last `max_keys` events is stored again).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use catalog_core::InsertOutcome;
use chrono::Utc;

use super::{
    DispatchOutcome, EventFilter, EventPage, EventStatus, EventStore, NewEvent, PrunePolicy,
    ReplayOutcome, StoreError, StoreStats, StoredEvent,
};

/// The in-memory store.
#[derive(Debug)]
pub struct MemoryStore {
    max_events: usize,
    max_keys: usize,
    state: Mutex<State>,
}

/// A product's queue key: platform, store and product key, joined by a
/// separator none of them contains (one allocation, one hash).
type Group = String;

#[derive(Debug, Default)]
struct State {
    next_seq: i64,
    events: BTreeMap<i64, Slot>,
    /// Our ids (see [`key_of`]) to insertion order.
    by_id: HashMap<u128, i64>,
    /// Pending events per product, in order.
    pending: HashMap<Group, BTreeSet<i64>>,
    /// The oldest pending event of each product: the only claimable ones.
    ready: BTreeSet<i64>,
    keys: HashSet<u128>,
    key_order: VecDeque<u128>,
    writes: u64,
    dropped_undelivered: u64,
}

#[derive(Debug)]
struct Slot {
    stored: StoredEvent,
    lease: Option<(String, chrono::DateTime<Utc>)>,
}

/// Our ids are 32 hex characters (128 bits); anything else is hashed down.
fn key_of(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or_else(|_| {
        use sha2::Digest;
        let d = sha2::Sha256::digest(id.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        u128::from_be_bytes(b)
    })
}

impl MemoryStore {
    /// A store keeping at most `max_events` events and `max_keys` keys.
    pub fn new(max_events: usize, max_keys: usize) -> Self {
        Self {
            max_events: max_events.max(1),
            max_keys: max_keys.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Events dropped before they were delivered because the store was full.
    pub fn dropped_undelivered(&self) -> u64 {
        self.lock().dropped_undelivered
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(10_000, 1_000_000)
    }
}

fn group_of(e: &NewEvent) -> Group {
    let key = e.product_key();
    let mut g = String::with_capacity(e.platform.len() + e.store.len() + key.len() + 2);
    for (i, part) in [e.platform.as_str(), &e.store, key].into_iter().enumerate() {
        if i > 0 {
            g.push('\u{1f}');
        }
        g.push_str(part);
    }
    g
}

impl State {
    /// Adds a pending event to its product's queue, in receipt order; it is
    /// ready only if the queue was empty (after a replay,
    /// [`State::settle_head`] decides whose turn it is).
    fn enqueue(&mut self, group: Group, seq: i64) {
        let queue = self.pending.entry(group).or_default();
        let was_empty = queue.is_empty();
        queue.insert(seq);
        if was_empty {
            self.ready.insert(seq);
        }
    }

    /// After a replay, the product's turn: its ready event keeps it while a
    /// dispatcher holds it or it has been tried (its retry goes first);
    /// otherwise the product's oldest pending event is ready, so that a
    /// replayed event goes before the newer ones in receipt order.
    fn settle_head(&mut self, group: &Group, now: chrono::DateTime<Utc>) {
        let Some(queue) = self.pending.get(group) else {
            return;
        };
        let head = queue.iter().copied().find(|seq| self.ready.contains(seq));
        let keeps_turn = head.and_then(|h| self.events.get(&h)).is_some_and(|slot| {
            slot.stored.attempts > 0 || slot.lease.as_ref().is_some_and(|(_, until)| *until > now)
        });
        if keeps_turn {
            return;
        }
        let Some(oldest) = queue.first().copied() else {
            return;
        };
        if let Some(h) = head {
            self.ready.remove(&h);
        }
        self.ready.insert(oldest);
    }

    /// Removes an event from its product's queue, promoting the next one.
    fn dequeue(&mut self, group: &Group, seq: i64) {
        let Some(queue) = self.pending.get_mut(group) else {
            return;
        };
        queue.remove(&seq);
        self.ready.remove(&seq);
        match queue.first().copied() {
            Some(next) => {
                self.ready.insert(next);
            }
            None => {
                self.pending.remove(group);
            }
        }
    }

    fn evict_events(&mut self, max: usize) {
        while self.events.len() > max {
            // Prefer the oldest finished event; else the oldest of all.
            let victim = self
                .events
                .iter()
                .take(64)
                .find(|(_, s)| {
                    matches!(
                        s.stored.event.status,
                        EventStatus::Delivered | EventStatus::Dead
                    )
                })
                .map(|(seq, _)| *seq)
                .or_else(|| self.events.keys().next().copied());
            let Some(seq) = victim else { break };
            if let Some(slot) = self.events.remove(&seq) {
                if slot.stored.event.status == EventStatus::Pending {
                    self.dropped_undelivered += 1;
                    self.dequeue(&group_of(&slot.stored.event), seq);
                }
                self.by_id.remove(&key_of(&slot.stored.event.id));
            }
        }
    }
}

#[async_trait::async_trait]
impl EventStore for MemoryStore {
    /// Each call does its work under the lock at its first poll.
    fn runs_commands_in_order(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!(
            "memory (not durable; at most {} events, {} dedup keys)",
            self.max_events, self.max_keys
        )
    }

    async fn insert(&self, mut event: NewEvent) -> Result<InsertOutcome, StoreError> {
        // The body may be a slice of a larger connection buffer: keep only
        // its own bytes, so memory stays proportional to what is stored.
        event.raw_body = bytes::Bytes::copy_from_slice(&event.raw_body);
        let mut s = self.lock();
        let key = key_of(&event.id);
        if !s.keys.insert(key) {
            return Ok(InsertOutcome::Duplicate);
        }
        s.key_order.push_back(key);
        while s.key_order.len() > self.max_keys {
            if let Some(old) = s.key_order.pop_front() {
                s.keys.remove(&old);
            }
        }
        s.next_seq += 1;
        let seq = s.next_seq;
        s.by_id.insert(key, seq);
        let next_attempt_at = event.received_at;
        if event.status == EventStatus::Pending {
            s.enqueue(group_of(&event), seq);
        }
        s.events.insert(
            seq,
            Slot {
                stored: StoredEvent {
                    seq,
                    event,
                    attempts: 0,
                    last_error: None,
                    next_attempt_at,
                },
                lease: None,
            },
        );
        s.writes += 1;
        s.evict_events(self.max_events);
        Ok(InsertOutcome::Inserted)
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
        let now = Utc::now();
        let until = crate::timestamp::after(now, lease);
        let mut s = self.lock();
        let State {
            events,
            ready,
            pending,
            ..
        } = &mut *s;
        let claimable = |slot: &Slot| {
            let leased = slot.lease.as_ref().is_some_and(|(_, until)| *until > now);
            !leased && slot.stored.next_attempt_at <= now
        };
        let mut out = Vec::new();
        let mut heads = 0;
        for &head in ready.iter() {
            if heads >= limit {
                break;
            }
            if !events.get(&head).is_some_and(&claimable) {
                continue;
            }
            heads += 1;
            // The head, then the product's next pending events while they
            // can be claimed (one that cannot must not be overtaken).
            let group = events.get(&head).map(|slot| group_of(&slot.stored.event));
            let queue = group.as_ref().and_then(|g| pending.get(g));
            // No followers while an older event (a replayed one) waits: it
            // goes right after the head.
            let followers = queue
                .filter(|q| q.first() == Some(&head))
                .into_iter()
                .flat_map(|q| q.range(head + 1..))
                .take(run.saturating_sub(1));
            for seq in std::iter::once(&head).chain(followers) {
                let Some(slot) = events.get_mut(seq) else {
                    break;
                };
                if *seq != head && !claimable(slot) {
                    break;
                }
                slot.lease = Some((worker_id.to_owned(), until));
                out.push(slot.stored.clone());
            }
        }
        s.writes += out.len() as u64;
        Ok(out)
    }

    async fn release(&self, ids: &[String], worker_id: &str) -> Result<(), StoreError> {
        let mut s = self.lock();
        for id in ids {
            let Some(seq) = s.by_id.get(&key_of(id)).copied() else {
                continue;
            };
            if let Some(slot) = s.events.get_mut(&seq)
                && slot.stored.event.status == EventStatus::Pending
                && slot.lease.as_ref().is_some_and(|(w, _)| w == worker_id)
            {
                slot.lease = None;
            }
        }
        Ok(())
    }

    async fn complete(
        &self,
        id: &str,
        worker_id: &str,
        outcome: DispatchOutcome,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let Some(seq) = s.by_id.get(&key_of(id)).copied() else {
            return Ok(false);
        };
        let Some(slot) = s
            .events
            .get_mut(&seq)
            .filter(|slot| slot.stored.event.id == id)
        else {
            return Ok(false);
        };
        let owned = slot.lease.as_ref().is_some_and(|(w, _)| w == worker_id);
        if !owned || slot.stored.event.status != EventStatus::Pending {
            return Ok(false);
        }
        slot.lease = None;
        slot.stored.attempts = slot.stored.attempts.saturating_add(1);
        let finished = match outcome {
            DispatchOutcome::Delivered => {
                slot.stored.event.status = EventStatus::Delivered;
                true
            }
            DispatchOutcome::Retry { error, at } => {
                slot.stored.last_error = Some(error);
                slot.stored.next_attempt_at = at;
                false
            }
            DispatchOutcome::Dead { error } => {
                slot.stored.last_error = Some(error);
                slot.stored.event.status = EventStatus::Dead;
                true
            }
            DispatchOutcome::Unreadable { error } => {
                slot.stored.event.error = Some(error);
                slot.stored.event.status = EventStatus::Failed;
                true
            }
        };
        if finished {
            let group = group_of(&slot.stored.event);
            s.dequeue(&group, seq);
        }
        s.writes += 1;
        Ok(true)
    }

    async fn list(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let s = self.lock();
        let upper = before.unwrap_or(i64::MAX);
        let events: Vec<StoredEvent> = s
            .events
            .range(..upper)
            .rev()
            .map(|(_, slot)| &slot.stored)
            .filter(|st| {
                let e = &st.event;
                filter.platform.as_ref().is_none_or(|p| *p == e.platform)
                    && filter.store.as_ref().is_none_or(|v| *v == e.store)
                    && filter.topic.as_ref().is_none_or(|v| *v == e.topic)
                    && filter.status.is_none_or(|v| v == e.status)
            })
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        Ok(EventPage::from_overfetch(events, limit))
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let s = self.lock();
        Ok(s.by_id
            .get(&key_of(id))
            .and_then(|seq| s.events.get(seq))
            .filter(|slot| slot.stored.event.id == id)
            .map(|slot| slot.stored.clone()))
    }

    async fn replay(&self, id: &str) -> Result<ReplayOutcome, StoreError> {
        let now = Utc::now();
        let mut s = self.lock();
        let Some(seq) = s.by_id.get(&key_of(id)).copied() else {
            return Ok(ReplayOutcome::NotFound);
        };
        let Some(slot) = s
            .events
            .get_mut(&seq)
            .filter(|slot| slot.stored.event.id == id)
        else {
            return Ok(ReplayOutcome::NotFound);
        };
        if slot.lease.as_ref().is_some_and(|(_, until)| *until > now) {
            return Ok(ReplayOutcome::InFlight);
        }
        slot.lease = None;
        slot.stored.attempts = 0;
        slot.stored.next_attempt_at = Utc::now();
        let was_pending = slot.stored.event.status == EventStatus::Pending;
        slot.stored.event.status = EventStatus::Pending;
        let group = group_of(&slot.stored.event);
        if !was_pending {
            s.enqueue(group.clone(), seq);
        }
        s.settle_head(&group, now);
        s.writes += 1;
        Ok(ReplayOutcome::Queued)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn prune(&self, policy: &PrunePolicy, limit: usize) -> Result<usize, StoreError> {
        let mut s = self.lock();
        let victims: Vec<i64> = s
            .events
            .iter()
            .filter(|(_, slot)| {
                policy.covers(slot.stored.event.status, slot.stored.event.received_at)
            })
            .map(|(seq, _)| *seq)
            .take(limit)
            .collect();
        let mut forgotten = HashSet::with_capacity(victims.len());
        for seq in &victims {
            if let Some(slot) = s.events.remove(seq) {
                let key = key_of(&slot.stored.event.id);
                s.by_id.remove(&key);
                s.keys.remove(&key);
                forgotten.insert(key);
            }
        }
        if !forgotten.is_empty() {
            // So that a later insert of the same id is not forgotten early
            // by the eviction of this stale entry.
            s.key_order.retain(|k| !forgotten.contains(k));
            s.writes += 1;
        }
        Ok(victims.len())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let s = self.lock();
        Ok(StoreStats {
            events: s.events.len() as u64,
            pending: s.pending.values().map(|q| q.len() as u64).sum(),
            commits: s.writes,
            writes: s.writes,
            dropped_undelivered: s.dropped_undelivered,
        })
    }

    async fn close(&self) {}
}
