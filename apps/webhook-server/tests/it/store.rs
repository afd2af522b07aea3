//! Memory and SQLite against the shared contract ([`crate::suite`]); SQLite
//! across a restart.

use std::sync::Arc;

use catalog_core::InsertOutcome;
use webhook_server::settings::Durability;
use webhook_server::store::{EventStore, MemoryStore, SqliteStore};

use crate::suite::{event, suite};

fn sqlite(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("events.db"), Durability::PowerLoss, 64).unwrap()
}

#[tokio::test]
async fn memory_store_contract() {
    suite(Arc::new(MemoryStore::new(100, 100))).await;
}

#[tokio::test]
async fn sqlite_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(sqlite(&dir))).await;
}

#[tokio::test]
async fn sqlite_events_and_dedup_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let e = event("persist-1", Some("p"));
    {
        let store = sqlite(&dir);
        assert_eq!(
            store.insert(e.clone()).await.unwrap(),
            InsertOutcome::Inserted
        );
        store.close().await;
        // Closed: writes are refused, never silently dropped.
        assert!(store.insert(event("after-close", None)).await.is_err());
    }
    let store = sqlite(&dir);
    assert_eq!(
        store.insert(e.clone()).await.unwrap(),
        InsertOutcome::Duplicate
    );
    let got = store.get(&e.id).await.unwrap().unwrap();
    assert_eq!(got.event, e);
    assert_eq!(store.stats().await.unwrap().events, 1);
    store.close().await;
}

#[tokio::test]
async fn memory_store_stays_bounded() {
    let store = MemoryStore::new(10, 50);
    for i in 0..200 {
        store.insert(event(&format!("m{i}"), None)).await.unwrap();
    }
    assert_eq!(store.stats().await.unwrap().events, 10);
    // Recent keys are remembered, old ones forgotten.
    assert_eq!(
        store.insert(event("m199", None)).await.unwrap(),
        InsertOutcome::Duplicate
    );
    assert_eq!(
        store.insert(event("m0", None)).await.unwrap(),
        InsertOutcome::Inserted
    );
}
