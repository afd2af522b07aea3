//! "Insert if new" deduplication.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{CatalogEvent, EventId, PlatformId};

/// What identifies one event: platform, store and the platform's event key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// The platform.
    pub platform: PlatformId,
    /// The store.
    pub store: String,
    /// The platform's event key.
    pub event_id: EventId,
}

impl DedupKey {
    /// A key.
    pub fn new(platform: PlatformId, store: String, event_id: EventId) -> Self {
        Self {
            platform,
            store,
            event_id,
        }
    }

    /// A stable 128-bit digest of the key, as 32 hex characters: the same event
    /// gets the same id on every replica (used as our event id and as the
    /// broker's de-duplication id).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [self.platform.as_str(), &self.store, self.event_id.as_str()] {
            // Length-prefix each part so ("ab","c") and ("a","bc") differ.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = h.finalize();
        let mut id = String::with_capacity(32);
        for &b in &digest[..16] {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        id
    }
}

/// Whether an insert stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The event was new and is now stored.
    Inserted,
    /// An event with the same key was already there; nothing changed.
    Duplicate,
}

/// The inbox could not answer (storage failure). The delivery must not be
/// acknowledged, so the platform retries it.
#[derive(Debug, thiserror::Error)]
#[error("inbox unavailable: {0}")]
pub struct InboxError(#[source] pub crate::error::BoxError);

/// Stores events once per [`DedupKey`], atomically: of two concurrent inserts of
/// the same key exactly one gets [`InsertOutcome::Inserted`].
///
/// Implemented by [`MemoryInbox`], for services that embed the core; the webhook
/// server's stores (SQLite, PostgreSQL, memory) follow the same "insert if
/// new" rule through their own `EventStore` trait, which also keeps dispatch
/// state. Callers must verify a delivery before calling this, so that a
/// forged request can never occupy a real event's key.
#[async_trait::async_trait]
pub trait Inbox: Send + Sync + fmt::Debug {
    /// Inserts the event if its key is new.
    ///
    /// # Errors
    /// [`InboxError`] when the storage fails; nothing is known to be stored then.
    async fn insert_if_new(&self, event: &CatalogEvent) -> Result<InsertOutcome, InboxError>;
}

/// An in-memory inbox that remembers keys for a bounded retention window and up
/// to a bounded number of keys.
///
/// The cost of a call does not grow with history: keys expire from the front
/// of an insertion-ordered queue (amortised O(1)) and lookups are hash lookups.
/// When more than `capacity` keys are live, the oldest are forgotten first.
/// Keys only, no events: for tests and for processes that keep events elsewhere.
pub struct MemoryInbox {
    retention: Duration,
    capacity: usize,
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    seen: HashMap<DedupKey, Instant>,
    order: VecDeque<(Instant, DedupKey)>,
}

impl MemoryInbox {
    /// An inbox keeping keys for `retention`, and at most `capacity` of them.
    pub fn new(retention: Duration, capacity: usize) -> Self {
        Self {
            retention,
            capacity: capacity.max(1),
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// Records a key seen at `now`; `Inserted` when it was not live.
    /// Taking the time as an argument keeps expiry testable.
    pub fn insert_key_at(&self, key: &DedupKey, now: Instant) -> InsertOutcome {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let MemoryState { seen, order } = &mut *state;
        // Expire from the front: the queue is in insertion (= time) order.
        while let Some((at, _)) = order.front() {
            let expired = now.saturating_duration_since(*at) >= self.retention;
            if !expired && order.len() < self.capacity {
                break;
            }
            if let Some((at, old)) = order.pop_front() {
                // Only remove the map entry if it is this insertion's.
                if seen.get(&old) == Some(&at) {
                    seen.remove(&old);
                }
            }
        }
        if seen.contains_key(key) {
            return InsertOutcome::Duplicate;
        }
        seen.insert(key.clone(), now);
        order.push_back((now, key.clone()));
        InsertOutcome::Inserted
    }

    /// How many keys are remembered now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seen
            .len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryInbox {
    /// Keys kept for 24 hours (Shopify retries for 4 hours), at most one million.
    fn default() -> Self {
        Self::new(Duration::from_secs(24 * 3600), 1_000_000)
    }
}

impl fmt::Debug for MemoryInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryInbox")
            .field("retention", &self.retention)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl Inbox for MemoryInbox {
    async fn insert_if_new(&self, event: &CatalogEvent) -> Result<InsertOutcome, InboxError> {
        Ok(self.insert_key_at(&event.dedup_key(), Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> DedupKey {
        DedupKey::new(PlatformId::SHOPIFY, "s".into(), EventId::new(id))
    }

    #[test]
    fn duplicates_are_detected_within_retention() {
        let inbox = MemoryInbox::new(Duration::from_secs(60), 100);
        let t0 = Instant::now();
        assert_eq!(inbox.insert_key_at(&key("a"), t0), InsertOutcome::Inserted);
        assert_eq!(
            inbox.insert_key_at(&key("a"), t0 + Duration::from_secs(59)),
            InsertOutcome::Duplicate
        );
        assert_eq!(inbox.insert_key_at(&key("b"), t0), InsertOutcome::Inserted);
        // After the window the key is forgotten.
        assert_eq!(
            inbox.insert_key_at(&key("a"), t0 + Duration::from_secs(61)),
            InsertOutcome::Inserted
        );
    }

    #[test]
    fn capacity_bounds_memory() {
        let inbox = MemoryInbox::new(Duration::from_secs(3600), 3);
        let t0 = Instant::now();
        for i in 0..10 {
            inbox.insert_key_at(&key(&i.to_string()), t0);
        }
        assert_eq!(inbox.len(), 3);
        // The newest are kept, the oldest forgotten.
        assert_eq!(inbox.insert_key_at(&key("9"), t0), InsertOutcome::Duplicate);
        assert_eq!(inbox.insert_key_at(&key("0"), t0), InsertOutcome::Inserted);
    }

    #[test]
    fn keys_differ_by_platform_and_store() {
        let inbox = MemoryInbox::default();
        let t0 = Instant::now();
        let a = key("1");
        let mut b = a.clone();
        b.store = "other".into();
        let mut c = a.clone();
        c.platform = PlatformId::WOOCOMMERCE;
        for k in [&a, &b, &c] {
            assert_eq!(inbox.insert_key_at(k, t0), InsertOutcome::Inserted);
        }
    }

    #[test]
    fn fingerprint_is_stable_and_unambiguous() {
        let a = DedupKey::new(PlatformId::SHOPIFY, "ab".into(), EventId::new("c"));
        let b = DedupKey::new(PlatformId::SHOPIFY, "a".into(), EventId::new("bc"));
        assert_ne!(a.fingerprint(), b.fingerprint());
        let same = DedupKey::new(PlatformId::SHOPIFY, "ab".into(), EventId::new("c"));
        assert_eq!(a.fingerprint(), same.fingerprint());
        assert_eq!(a.fingerprint().len(), 32);
        // Stored ids must not change between versions: a known answer
        // (SHA-256 of the length-prefixed parts, first 16 bytes in hex).
        let known = DedupKey::new(
            PlatformId::SHOPIFY,
            "example.myshopify.com".into(),
            EventId::new("products/create:e-1"),
        );
        assert_eq!(known.fingerprint(), "75864dd63557624a2ca2b98e78e54f31");
    }
}
