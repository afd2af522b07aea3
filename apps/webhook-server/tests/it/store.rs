//! Memory and SQLite against the shared contract ([`crate::suite`]); SQLite
//! across a restart.

use std::sync::Arc;

use catalog_core::InsertOutcome;
use webhook_server::settings::Durability;
use webhook_server::store::{EventStore, MemoryStore, SqliteStore};

use crate::suite::{event, retention_suite, runs_suite, suite};

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
async fn memory_store_runs() {
    runs_suite(Arc::new(MemoryStore::new(100, 100))).await;
}

#[tokio::test]
async fn sqlite_store_runs() {
    let dir = tempfile::tempdir().unwrap();
    runs_suite(Arc::new(sqlite(&dir))).await;
}

#[tokio::test]
async fn memory_store_retention() {
    retention_suite(Arc::new(MemoryStore::new(100, 100))).await;
}

#[tokio::test]
async fn sqlite_store_retention() {
    let dir = tempfile::tempdir().unwrap();
    retention_suite(Arc::new(sqlite(&dir))).await;
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

/// A retention round deletes in chunks until nothing is left, counts what it
/// deleted in `/metrics`, and keeps what the settings keep.
#[tokio::test]
async fn a_retention_round_deletes_in_chunks_and_counts() {
    use webhook_server::metrics::Metrics;
    use webhook_server::retention::{CHUNK, Pruner};
    use webhook_server::settings::Settings;
    use webhook_server::store::EventStatus;

    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn EventStore>; 2] = [
        Arc::new(MemoryStore::new(10_000, 10_000)),
        Arc::new(sqlite(&dir)),
    ];
    for store in stores {
        let old = CHUNK * 2 + 17;
        let aged = |id: String, days: i64, status: EventStatus| {
            let mut e = event(&id, Some(&id));
            e.received_at -= chrono::Duration::days(days);
            e.status = status;
            e
        };
        for i in 0..old {
            let e = aged(format!("old-{i}"), 40, EventStatus::Delivered);
            store.insert(e).await.unwrap();
        }
        for i in 0..3 {
            let e = aged(format!("young-{i}"), 2, EventStatus::Delivered);
            store.insert(e).await.unwrap();
            let e = aged(format!("dead-{i}"), 40, EventStatus::Dead);
            store.insert(e).await.unwrap();
        }
        let settings = Settings::load_from(
            None,
            &[("CATALOG_RETENTION__DELIVERED_DAYS".into(), "30".into())],
        )
        .unwrap();
        let metrics = Arc::new(Metrics::new());
        let pruner = Pruner::new(Arc::clone(&store), settings.retention, Arc::clone(&metrics));
        assert_eq!(
            pruner.run_once().await.unwrap(),
            old as u64,
            "{}",
            store.describe()
        );
        assert_eq!(pruner.run_once().await.unwrap(), 0);
        assert!(
            metrics
                .render(None)
                .contains(&format!("webhook_store_pruned_total {old}\n")),
            "{}",
            metrics.render(None)
        );
        let left = store
            .list(&webhook_server::store::EventFilter::default(), None, 100)
            .await
            .unwrap();
        assert_eq!(left.events.len(), 6, "young delivered and old dead stay");
        store.close().await;
    }
}

/// The data directory removed under a running server: SQLite would go on
/// committing into the unlinked file, so nothing may be acknowledged
/// (insert refused, not ready), and a restart on the path starts afresh.
#[tokio::test]
async fn sqlite_refuses_writes_once_its_file_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("events.db");
    let store = SqliteStore::open(&path, Durability::PowerLoss, 64).unwrap();
    assert_eq!(
        store.insert(event("before", Some("p"))).await.unwrap(),
        InsertOutcome::Inserted
    );
    store.ping().await.unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let err = store
        .insert(event("after", Some("p")))
        .await
        .expect_err("acknowledged into a removed file")
        .to_string();
    assert!(err.contains("removed or replaced"), "{err}");
    let err = store
        .ping()
        .await
        .expect_err("ready on a removed file")
        .to_string();
    assert!(err.contains("removed or replaced"), "{err}");
    store.close().await;
}

/// The lock file removed under a running server (a clean-up of "stale"
/// lock files): the store locks the path again before its next commit, so a
/// second server is still refused (an outside audit ran two on one file and
/// got every delivery stored twice).
#[tokio::test]
async fn a_removed_lock_file_is_taken_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let lock = dir.path().join("events.db.lock");
    let first = SqliteStore::open(&path, Durability::ProcessCrash, 64).unwrap();
    std::fs::remove_file(&lock).unwrap();
    // The dispatcher does not send while the path names no lock...
    assert!(!first.may_dispatch());
    assert_eq!(
        first.insert(event("after", Some("p"))).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert!(lock.exists());
    // ... and goes on once the writer has locked it again.
    assert!(first.may_dispatch());
    match SqliteStore::open(&path, Durability::ProcessCrash, 64) {
        Err(webhook_server::store::StoreError::InUse(_)) => {}
        other => panic!("a second store opened: {other:?}"),
    }
    first.ping().await.unwrap();
    first.close().await;
}

/// The lock file removed, and a second server started before the first
/// noticed: the first refuses every write from then on and is not ready,
/// so each delivery is stored once, by the second.
#[tokio::test]
async fn a_store_whose_lock_another_took_refuses_writes_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let first = SqliteStore::open(&path, Durability::ProcessCrash, 64).unwrap();
    std::fs::remove_file(dir.path().join("events.db.lock")).unwrap();
    let second = SqliteStore::open(&path, Durability::ProcessCrash, 64).unwrap();
    for _ in 0..2 {
        let err = first
            .insert(event("both", Some("p")))
            .await
            .expect_err("stored by a server that lost its file")
            .to_string();
        assert!(err.contains("another webhook-server holds it"), "{err}");
    }
    let err = first.ping().await.expect_err("ready").to_string();
    assert!(err.contains("another webhook-server holds it"), "{err}");
    // Nor does it send what its dispatcher already holds (a re-audit saw
    // both servers send the same runs).
    assert!(!first.may_dispatch());
    assert!(second.may_dispatch());
    assert_eq!(
        second.insert(event("both", Some("p"))).await.unwrap(),
        InsertOutcome::Inserted
    );
    second.ping().await.unwrap();
    first.close().await;
    second.close().await;
}

/// A server killed while dispatching leaves its leases in the file; the
/// next one on the file owns it alone, so it takes those events at once
/// instead of waiting out the dead one's lease (an outside audit saw every
/// crash hold the products back for the whole lease).
#[tokio::test]
async fn leases_left_by_a_dead_server_are_released_at_open() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, Durability::PowerLoss, 64).unwrap();
    store.insert(event("leased", Some("p"))).await.unwrap();
    let claimed = store
        .claim_due("dead", Duration::from_secs(3600), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Dropped, not closed: what a killed process leaves.
    drop(store);
    let store = SqliteStore::open(&path, Durability::PowerLoss, 64).unwrap();
    let claimed = store
        .claim_due("next", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the dead server's lease still held");
    assert_eq!(claimed[0].event.event_id.as_str(), "leased");
    store.close().await;
}

/// A server that dispatches keeps a dead predecessor's leases only for as
/// long as one of its attempts could still be open at the receiver (the
/// sinks' timeouts), not for the whole lease, nor not at all (a re-audit
/// saw the restarted server send an event the receiver was still handling
/// from the killed one).
#[tokio::test]
async fn leases_left_by_a_dead_server_end_after_one_attempt_budget() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path, Durability::PowerLoss, 64).unwrap();
    store.insert(event("leased", Some("p"))).await.unwrap();
    assert_eq!(
        store
            .claim_due("dead", Duration::from_secs(3600), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    drop(store);
    let budget = Duration::from_millis(600);
    let opened = Instant::now();
    let store = SqliteStore::open_for_dispatch(&path, Durability::PowerLoss, 64, budget).unwrap();
    let claim = || store.claim_due("next", Duration::from_secs(60), 10);
    let early = claim().await.unwrap();
    if opened.elapsed() < budget {
        assert!(early.is_empty(), "claimed within the attempt budget");
    }
    tokio::time::sleep(budget).await;
    let late = claim().await.unwrap();
    assert_eq!(late.len(), 1, "still held after the attempt budget");
    store.close().await;
}

/// Another process holding the SQLite file's write lock (a backup tool's
/// `BEGIN EXCLUSIVE`) holds every delivery back: readiness says so within
/// the store timeout even while the writer is idle (its probe used to read
/// nothing but the writer's own state), a delivery gets 503 in time, and
/// both recover once the lock is gone, without a restart.
#[actix_web::test]
async fn a_file_locked_by_another_process_is_not_ready() {
    use actix_web::{App, http::StatusCode, test};
    use std::time::{Duration, Instant};
    use webhook_server::configure;

    use crate::support::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let store = Arc::new(SqliteStore::open(&path, Durability::PowerLoss, 64).unwrap());
    let mut s = settings();
    s.server.store_timeout_ms = 800;
    let state = state_from(&s, store.clone(), &single_secret());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let ready = || test::TestRequest::get().uri("/readyz").to_request();
    let send = || {
        delivery(
            "/webhooks/shopify/products/create",
            "products/create",
            "locked-sqlite",
            &body(7),
            SECRET,
        )
        .to_request()
    };
    assert_eq!(
        test::call_service(&app, ready()).await.status(),
        StatusCode::OK
    );

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // `/metrics` too answers within the store timeout, the store down
    // (a scrape used to wait out SQLite's 5 s busy timeout).
    let started = Instant::now();
    let res = test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(text.contains("webhook_store_up 0"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for (what, request) in [("readiness", ready()), ("delivery", send())] {
        let started = Instant::now();
        assert_eq!(
            test::call_service(&app, request).await.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    other.execute_batch("COMMIT").unwrap();
    drop(other);

    let deadline = Instant::now() + Duration::from_secs(15);
    while test::call_service(&app, ready()).await.status() != StatusCode::OK {
        assert!(Instant::now() < deadline, "not ready again after the lock");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = test::call_service(&app, send()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    // Stored once: by this retry, or by the first attempt's late commit.
    assert!(
        answer["status"] == "stored" || answer["status"] == "duplicate",
        "{answer}"
    );
    assert_eq!(store.stats().await.unwrap().events, 1);
    store.close().await;
}
