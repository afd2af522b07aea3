//! The PostgreSQL store against the shared contract, plus what only a shared
//! database has to get right: concurrent start-ups (migrations), inserts of
//! one event from two replicas, and lease expiry after a replica dies.
//!
//! Needs `TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test works in a schema of its own, dropped at the end, so tests run
//! in parallel. Without the variable every test prints why it skips.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catalog_core::InsertOutcome;
use sqlx::Connection as _;
use webhook_server::store::{
    DispatchOutcome, EventStatus, EventStore, PostgresOptions, PostgresStore,
};

use crate::suite::{event, retention_suite, runs_suite, suite};

/// A schema of its own on the test database, dropped (with everything in it)
/// when this goes out of scope, even when the test fails.
#[derive(Debug)]
pub(crate) struct TestDb {
    pub(crate) url: String,
    pub(crate) schema: String,
}

impl TestDb {
    /// A fresh schema name, or `None` (with the reason printed) when
    /// `TEST_DATABASE_URL` is unset.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!(
                "skipping {test}: TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
            );
            return None;
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!(
            "whs_{}_{}_{nanos:x}_{}",
            test.chars().take(20).collect::<String>(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Some(Self { url, schema })
    }

    /// Options for a store in this schema.
    pub(crate) fn options(&self, max_connections: u32) -> PostgresOptions {
        PostgresOptions::new(max_connections, Some(self.schema.clone()))
    }

    /// A store (one "replica") in this schema.
    pub(crate) async fn store(&self) -> Arc<PostgresStore> {
        Arc::new(
            PostgresStore::connect(&self.url, self.options(8))
                .await
                .unwrap(),
        )
    }

    /// Runs one scalar query in this schema on a connection of its own.
    pub(crate) async fn scalar(&self, sql: &str) -> i64 {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET search_path TO \"{}\"",
            self.schema
        )))
        .execute(&mut conn)
        .await
        .unwrap();
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await?;
                Ok::<_, sqlx::Error>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.schema);
        }
    }
}

#[tokio::test]
async fn postgres_store_contract() {
    let Some(db) = TestDb::new("contract") else {
        return;
    };
    let store = db.store().await;
    suite(store.clone()).await;
    assert!(store.describe().starts_with("postgres "));
    store.close().await;
}

#[tokio::test]
async fn postgres_store_retention() {
    let Some(db) = TestDb::new("retention") else {
        return;
    };
    let store = db.store().await;
    retention_suite(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_store_runs() {
    let Some(db) = TestDb::new("runs") else {
        return;
    };
    // Full runs even right after the inserts (the suite's claims follow
    // them at once); the cut while deliveries arrive is tested below.
    let mut options = db.options(8);
    options.run_while_ingesting = usize::MAX;
    let store = Arc::new(PostgresStore::connect(&db.url, options).await.unwrap());
    runs_suite(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn runs_are_cut_short_while_deliveries_arrive_and_go_in_full_after() {
    let Some(db) = TestDb::new("runs_cut") else {
        return;
    };
    let store = db.store().await;
    for i in 0..10 {
        store
            .insert(event(&format!("c{i}"), Some("pc")))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(60);
    let names = |events: &[webhook_server::store::StoredEvent]| -> Vec<String> {
        events
            .iter()
            .map(|e| e.event.event_id.as_str().to_owned())
            .collect()
    };
    let deliver = |events: Vec<webhook_server::store::StoredEvent>| {
        let store = Arc::clone(&store);
        async move {
            let outcomes = events
                .into_iter()
                .map(|e| (e.event.id, DispatchOutcome::Delivered))
                .collect();
            assert!(
                store
                    .complete_run("w", outcomes)
                    .await
                    .unwrap()
                    .into_iter()
                    .all(|r| r)
            );
        }
    };
    // Deliveries arrived a moment ago: the default run while ingesting.
    let claimed = store.claim_runs("w", lease, 10, 16).await.unwrap();
    assert_eq!(names(&claimed), ["c0", "c1"]);
    deliver(claimed).await;
    // None for a while: the rest in one run.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let claimed = store.claim_runs("w", lease, 10, 16).await.unwrap();
    assert_eq!(
        names(&claimed),
        ["c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]
    );
    deliver(claimed).await;
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE status = 'delivered'")
            .await,
        10
    );
    store.close().await;
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let Some(db) = TestDb::new("migrate") else {
        return;
    };
    // Four replicas start at the same moment on a schema that does not exist
    // yet: sqlx's migrator serialises them on its advisory lock.
    let mut starts = Vec::new();
    for _ in 0..4 {
        let (url, options) = (db.url.clone(), db.options(2));
        starts.push(tokio::spawn(async move {
            PostgresStore::connect(&url, options).await
        }));
    }
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().unwrap());
    }
    // Each migration applied once: as many rows as the highest version.
    assert_eq!(
        db.scalar(
            "SELECT (count(*) = max(version) AND count(*) >= 2)::int::int8 FROM _sqlx_migrations WHERE success"
        )
        .await,
        1
    );
    // Restarting on a migrated schema is a no-op.
    let again = db.store().await;
    again.ping().await.unwrap();
    for s in &stores {
        s.close().await;
    }
}

#[tokio::test]
async fn the_password_never_shows() {
    let Some(db) = TestDb::new("redact") else {
        return;
    };
    // The test user with a password (trust authentication ignores it).
    let rest = db.url.split_once("://").map_or(db.url.as_str(), |(_, r)| r);
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let url = format!("postgres://postgres:Sup3rSecretPw@{host_part}");
    match PostgresStore::connect(&url, db.options(1)).await {
        Ok(s) => {
            assert!(!s.describe().contains("Sup3rSecretPw"), "{}", s.describe());
            assert!(s.describe().contains("[redacted]"), "{}", s.describe());
            assert!(!format!("{s:?}").contains("Sup3rSecretPw"));
            s.close().await;
        }
        Err(e) => assert!(!e.to_string().contains("Sup3rSecretPw"), "{e}"),
    }
    // A server that is not there: the error names the address, not the password.
    let err = PostgresStore::connect("postgres://u:Sup3rSecretPw@127.0.0.1:1/x", db.options(1))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("Sup3rSecretPw"), "{err}");
    assert!(
        err.to_string()
            .contains("cannot connect to postgres://u:[redacted]@127.0.0.1:1/x"),
        "{err}"
    );
}

#[tokio::test]
async fn the_same_event_from_two_replicas_is_stored_once() {
    let Some(db) = TestDb::new("dedup") else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    for round in 0..40 {
        let e = event(&format!("dup-{round}"), Some("p"));
        let (ra, rb) = tokio::join!(a.insert(e.clone()), b.insert(e.clone()));
        let outcomes = [ra.unwrap(), rb.unwrap()];
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == InsertOutcome::Inserted)
                .count(),
            1,
            "round {round}: {outcomes:?}"
        );
    }
    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 40);
}

#[tokio::test]
async fn a_dead_replicas_lease_expires_and_another_takes_over() {
    let Some(db) = TestDb::new("lease") else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    let e = event("leased-1", Some("p1"));
    a.insert(e.clone()).await.unwrap();

    // Replica A claims the event and dies: it never completes.
    let lease = Duration::from_millis(1500);
    // Taken before the claim, so that its age is never less than the
    // lease's (the lease starts during the claim): read after, a slow
    // close below could let B claim legitimately while this said < 1.5 s.
    let claimed_at = std::time::Instant::now();
    let claimed = a.claim_due("replica-a", lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    a.close().await;
    drop(a);

    // Not before the lease expires (unless this machine was so busy that it
    // really has expired by now)...
    tokio::time::sleep(Duration::from_millis(700)).await;
    let early = b.claim_due("replica-b", lease, 10).await.unwrap();
    assert!(
        early.is_empty() || claimed_at.elapsed() >= lease,
        "claimed {:?} after replica A's claim",
        claimed_at.elapsed()
    );
    if !early.is_empty() {
        eprintln!("lease test: the machine is too slow to check 'not before'");
        return;
    }
    // ...but after it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let taken = b.claim_due("replica-b", lease, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].event.id, e.id);
    // A late completion by the dead replica would be refused.
    assert!(
        !b.complete(&e.id, "replica-a", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    assert!(
        b.complete(&e.id, "replica-b", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    assert_eq!(
        b.get(&e.id).await.unwrap().unwrap().status(),
        EventStatus::Delivered
    );
}

#[tokio::test]
async fn tls_connections_work_with_sslmode_require() {
    let Some(db) = TestDb::new("tls") else {
        return;
    };
    let Some(store) = tls_store(&db, "tls").await else {
        return;
    };
    store.ping().await.unwrap();
    store.close().await;
}

/// A store connected with `sslmode=require`, or `None` (with the reason
/// printed) when the test server has TLS off.
async fn tls_store(db: &TestDb, test: &str) -> Option<PostgresStore> {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    if ssl != "on" {
        eprintln!("skipping {test}: the test server has ssl = {ssl}");
        return None;
    }
    // rustls with the webpki roots; `require` encrypts without verifying
    // the (here self-signed) certificate, as libpq does.
    let sep = if db.url.contains('?') { '&' } else { '?' };
    Some(
        PostgresStore::connect(&format!("{}{sep}sslmode=require", db.url), db.options(2))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn a_long_queue_behind_a_waiting_product_does_not_hold_up_others() {
    let Some(db) = TestDb::new("backlog") else {
        return;
    };
    let store = db.store().await;
    // Product "slow": its head fails and waits for a retry, 300 more events
    // queue behind it; then one event of product "fast".
    for i in 0..301 {
        store
            .insert(event(&format!("slow-{i}"), Some("slow")))
            .await
            .unwrap();
    }
    store.insert(event("fast-0", Some("fast"))).await.unwrap();
    let head = store
        .claim_due("w", Duration::from_secs(60), 1)
        .await
        .unwrap();
    assert_eq!(head[0].event.event_id, "slow-0");
    let later = chrono::Utc::now() + chrono::Duration::seconds(3600);
    assert!(
        store
            .complete(
                &head[0].event.id,
                "w",
                DispatchOutcome::Retry {
                    error: "down".into(),
                    at: later
                }
            )
            .await
            .unwrap()
    );
    // Only one event per product is ever a candidate: the claim finds
    // "fast" without walking the 300 queued "slow" events.
    let got = store
        .claim_due("w", Duration::from_secs(60), 10)
        .await
        .unwrap();
    let ids: Vec<_> = got.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(ids, vec!["fast-0"]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE status = 'pending' AND ready")
            .await,
        2
    );
    // Dead-lettering the head hands the product to its next event.
    let head = store
        .get(&event("slow-0", Some("slow")).id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.replay(&head.event.id).await.unwrap(),
        webhook_server::store::ReplayOutcome::Queued
    );
    let again = store
        .claim_due("w2", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.event_id, "slow-0");
    assert!(
        store
            .complete(
                &again[0].event.id,
                "w2",
                DispatchOutcome::Dead { error: "x".into() }
            )
            .await
            .unwrap()
    );
    let next = store
        .claim_due("w2", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.event_id, "slow-1");
}

/// A table locked by hand (or by an ALTER, a VACUUM FULL) holds inserts
/// back: the delivery gets 503 within `server.store_timeout_ms`, in time for
/// the platform's retry, instead of a request left hanging past the
/// platform's own timeout; readiness says so; once the lock is gone the
/// retried delivery is stored. (Found by an outside audit: requests hung
/// for the whole 20 s of the lock, and /readyz stayed 200.)
#[actix_web::test]
async fn a_locked_events_table_is_a_timely_503_not_a_hanging_request() {
    use actix_web::{App, http::StatusCode, test};
    use webhook_server::configure;

    use crate::support::*;
    let Some(db) = TestDb::new("locked_table") else {
        return;
    };
    let mut options = db.options(4);
    options.lock_timeout = Some(Duration::from_millis(500));
    let store = Arc::new(PostgresStore::connect(&db.url, options).await.unwrap());
    let mut s = settings();
    s.server.store_timeout_ms = 800;
    let state = state_from(&s, store.clone(), &single_secret());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let send = || {
        delivery(
            "/webhooks/shopify/products/create",
            "products/create",
            "locked-1",
            &body(42),
            SECRET,
        )
        .to_request()
    };
    let ready = || test::TestRequest::get().uri("/readyz").to_request();
    assert_eq!(
        test::call_service(&app, ready()).await.status(),
        StatusCode::OK
    );

    let mut locker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        format!("SET search_path TO \"{}\"", db.schema),
        "BEGIN".to_owned(),
        "LOCK TABLE events IN ACCESS EXCLUSIVE MODE".to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut locker)
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    let res = test::call_service(&app, send()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "answered after {:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let res = test::call_service(&app, ready()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(3));

    sqlx::query("COMMIT").execute(&mut locker).await.unwrap();
    let _ = locker.close().await;
    assert_eq!(
        test::call_service(&app, ready()).await.status(),
        StatusCode::OK
    );
    let res = test::call_service(&app, send()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(answer["status"], "stored", "{answer}");
    store.close().await;
}

/// A role that may not create tables gets the database's reason and its
/// SQLSTATE at start-up, without the line of PostgreSQL's source that sqlx
/// appends ("at line 3655").
#[tokio::test]
async fn a_migration_the_role_may_not_run_is_named_with_its_sqlstate() {
    let Some(db) = TestDb::new("no_create") else {
        return;
    };
    let role = db.schema.replace("whs_", "whs_role_");
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        format!("CREATE SCHEMA \"{}\"", db.schema),
        format!("CREATE ROLE \"{role}\" LOGIN"),
        format!("GRANT USAGE ON SCHEMA \"{}\" TO \"{role}\"", db.schema),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let given: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let url = format!(
        "postgres://{role}@{}:{}/{}",
        given.get_host(),
        given.get_port(),
        given.get_database().unwrap_or("postgres")
    );
    let opened = PostgresStore::connect(&url, db.options(2)).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\"")))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    let message = opened.expect_err("no CREATE on the schema").to_string();
    assert!(message.contains("PostgreSQL migration failed"), "{message}");
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains("SQLSTATE 42501"), "{message}");
    assert!(!message.contains(" at line "), "{message}");
}

/// Products whose pending events do not have exactly one `ready` event, or
/// whose `ready` event is not the oldest pending one: 0 when the flag is
/// right.
const READY_WRONG: &str = "SELECT count(*) FROM (
        SELECT platform, store, product_key FROM events WHERE status = 'pending'
        GROUP BY 1, 2, 3
        HAVING count(*) FILTER (WHERE ready) <> 1
            OR min(seq) <> min(seq) FILTER (WHERE ready)) wrong";

/// Deadlocks PostgreSQL has broken in this database so far.
const DEADLOCKS: &str = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()";

/// `n` inserts of `events` on `store`, all at once; their outcomes in order.
async fn insert_all_at_once(
    store: &Arc<PostgresStore>,
    events: Vec<webhook_server::store::NewEvent>,
) -> Vec<Result<InsertOutcome, webhook_server::store::StoreError>> {
    let tasks: Vec<_> = events
        .into_iter()
        .map(|e| {
            let s = Arc::clone(store);
            tokio::spawn(async move { s.insert(e).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

#[tokio::test]
async fn concurrent_deliveries_share_commits_and_keep_one_ready_event_per_product() {
    let Some(db) = TestDb::new("batched") else {
        return;
    };
    let store = db.store().await;
    let events: Vec<_> = (0..400)
        .map(|i| event(&format!("b-{i}"), Some(&format!("p{}", i % 40))))
        .collect();
    let first = insert_all_at_once(&store, events.clone()).await;
    assert!(
        first
            .iter()
            .all(|o| matches!(o, Ok(InsertOutcome::Inserted))),
        "{first:?}"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.events, stats.writes), (400, 400));
    // Shared commits: without batching every insert is a transaction.
    assert!(
        stats.commits <= 100,
        "400 concurrent inserts took {} commits",
        stats.commits
    );
    assert_eq!(db.scalar(READY_WRONG).await, 0);

    // Every copy again, at once: all duplicates, nothing stored twice.
    let again = insert_all_at_once(&store, events).await;
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Ok(InsertOutcome::Duplicate))),
        "{again:?}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 400);
    assert_eq!(db.scalar(READY_WRONG).await, 0);
    store.close().await;
}

#[tokio::test]
async fn two_replicas_batching_the_same_deliveries_in_opposite_orders_do_not_deadlock() {
    let Some(db) = TestDb::new("batch_order") else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    let deadlocks_before = db.scalar(DEADLOCKS).await;
    for round in 0..5 {
        // 30 products, 10 events each; replica B gets them in reverse.
        let events: Vec<_> = (0..300)
            .map(|i| event(&format!("r{round}-{i}"), Some(&format!("p{}", i % 30))))
            .collect();
        let reversed: Vec<_> = events.iter().rev().cloned().collect();
        let (ra, rb) = tokio::join!(
            insert_all_at_once(&a, events),
            insert_all_at_once(&b, reversed)
        );
        // Exactly one replica stored each delivery, and both acknowledged.
        for (i, (oa, ob)) in ra.iter().zip(rb.iter().rev()).enumerate() {
            let outcomes = [oa.as_ref().unwrap(), ob.as_ref().unwrap()];
            assert_eq!(
                outcomes
                    .iter()
                    .filter(|o| ***o == InsertOutcome::Inserted)
                    .count(),
                1,
                "round {round}, event {i}: {outcomes:?}"
            );
        }
    }
    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 1500);
    assert_eq!(db.scalar(READY_WRONG).await, 0);
    // Batches are sorted by product, so the replicas take product locks in
    // one order; a deadlock (broken by PostgreSQL after a second, then each
    // event retried alone) would show here. The counter is flushed at the
    // end of each transaction.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(db.scalar(DEADLOCKS).await, deadlocks_before);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn an_event_the_database_refuses_fails_alone_not_its_batch() {
    let Some(db) = TestDb::new("batch_bad_row") else {
        return;
    };
    let store = db.store().await;
    // PostgreSQL text cannot hold NUL (SQLSTATE 22021): the library API lets
    // a caller hand one in, and only that event may fail.
    let mut events: Vec<_> = (0..60)
        .map(|i| event(&format!("g-{i}"), Some(&format!("p{}", i % 6))))
        .collect();
    events[30].raw_topic = "products/\0update".into();
    let outcomes = insert_all_at_once(&store, events).await;
    for (i, o) in outcomes.iter().enumerate() {
        if i == 30 {
            assert!(
                matches!(o, Err(webhook_server::store::StoreError::Database(m)) if m.contains("22021")),
                "{o:?}"
            );
        } else {
            assert!(matches!(o, Ok(InsertOutcome::Inserted)), "{i}: {o:?}");
        }
    }
    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 59);
    assert_eq!(db.scalar(READY_WRONG).await, 0);
    store.close().await;
}

#[tokio::test]
async fn closing_answers_every_queued_insert_and_acknowledges_only_what_is_stored() {
    let Some(db) = TestDb::new("batch_close") else {
        return;
    };
    let store = db.store().await;
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let s = Arc::clone(&store);
            let e = event(&format!("c-{i}"), Some(&format!("p{}", i % 10)));
            tokio::spawn(async move { (e.id.clone(), s.insert(e).await) })
        })
        .collect();
    tokio::task::yield_now().await;
    store.close().await;
    let mut acknowledged = Vec::new();
    for t in tasks {
        let (id, outcome) = t.await.unwrap();
        match outcome {
            Ok(InsertOutcome::Inserted) => acknowledged.push(id),
            Ok(other) => panic!("{id}: {other:?}"),
            Err(webhook_server::store::StoreError::Unavailable) => {}
            Err(e) => panic!("{id}: {e}"),
        }
    }
    let stored = db.scalar("SELECT count(*) FROM events").await;
    assert_eq!(usize::try_from(stored).unwrap(), acknowledged.len());
    // Something was queued when the store closed, and it was not dropped.
    assert!(!acknowledged.is_empty());
}

#[tokio::test]
async fn a_large_body_over_tls_is_stored_without_waiting_for_a_delayed_ack() {
    let Some(db) = TestDb::new("tls_large") else {
        return;
    };
    let Some(store) = tls_store(&db, "tls_large").await else {
        return;
    };
    // A 40 KB body is three TLS records, three writes to the socket. With
    // Nagle's algorithm on (sqlx-core 0.9.0 as published; see
    // vendor/README.md) each insert waited for PostgreSQL's delayed ACK:
    // 40 ms or more, every time. The median of 21 sequential inserts says
    // which, whatever else the machine is doing.
    let body = bytes::Bytes::from(vec![b'x'; 40_000]);
    let mut took = Vec::new();
    for i in 0..21 {
        let mut e = event(&format!("large-{i}"), Some("p"));
        e.raw_body = body.clone();
        let started = std::time::Instant::now();
        assert_eq!(store.insert(e).await.unwrap(), InsertOutcome::Inserted);
        took.push(started.elapsed());
    }
    took.sort();
    assert!(
        took[10] < Duration::from_millis(30),
        "median insert of a 40 KB body over TLS: {:?} (all: {took:?})",
        took[10]
    );
    store.close().await;
}

#[tokio::test]
async fn batched_inserts_and_completions_on_two_replicas_keep_order_without_deadlocks() {
    let Some(db) = TestDb::new("batch_mixed") else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    let deadlocks_before = db.scalar(DEADLOCKS).await;
    // Both replicas get every delivery (B in reverse) while both dispatch,
    // completing each claimed event on its own task so that completions
    // batch too: insert and completion batches of overlapping products run
    // side by side on both replicas.
    let inserting = {
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        tokio::spawn(async move {
            for round in 0..4 {
                let events: Vec<_> = (0..200)
                    .map(|i| event(&format!("m{round}-{i}"), Some(&format!("p{}", i % 40))))
                    .collect();
                let reversed: Vec<_> = events.iter().rev().cloned().collect();
                let (ra, rb) = tokio::join!(
                    insert_all_at_once(&a, events),
                    insert_all_at_once(&b, reversed)
                );
                assert!(ra.iter().chain(rb.iter()).all(Result::is_ok));
            }
        })
    };
    let claimed = Arc::new(std::sync::Mutex::new(Vec::<(String, i64)>::new()));
    let dispatch = |store: Arc<PostgresStore>, worker: &'static str| {
        let claimed = Arc::clone(&claimed);
        tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                let events = store
                    .claim_due(worker, Duration::from_secs(30), 64)
                    .await
                    .unwrap();
                if events.is_empty() {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                idle = 0;
                claimed.lock().unwrap().extend(
                    events
                        .iter()
                        .map(|e| (e.event.product_key().to_owned(), e.seq)),
                );
                let completions: Vec<_> = events
                    .into_iter()
                    .map(|e| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move {
                            store
                                .complete(&e.event.id, worker, DispatchOutcome::Delivered)
                                .await
                        })
                    })
                    .collect();
                for c in completions {
                    assert!(c.await.unwrap().unwrap(), "an outcome was not recorded");
                }
            }
        })
    };
    let (da, db_) = (
        dispatch(Arc::clone(&a), "wa"),
        dispatch(Arc::clone(&b), "wb"),
    );
    inserting.await.unwrap();
    da.await.unwrap();
    db_.await.unwrap();

    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 800);
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE status = 'delivered'")
            .await,
        800
    );
    // Each event claimed once, and each product's events in `seq` order.
    let claimed = claimed.lock().unwrap().clone();
    assert_eq!(claimed.len(), 800);
    let mut last = std::collections::HashMap::new();
    for (product, seq) in claimed {
        let previous = last.insert(product.clone(), seq).unwrap_or(i64::MIN);
        assert!(previous < seq, "{product}: {seq} claimed after {previous}");
    }
    // Completions and inserts share commits.
    let stats = a.stats().await.unwrap();
    assert!(stats.commits < stats.writes, "{stats:?}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(db.scalar(DEADLOCKS).await, deadlocks_before);
    a.close().await;
    b.close().await;
}

/// A session of its own holding one product's lock in `db`'s schema until
/// it is dropped (then the connection closes and the lock goes).
async fn hold_product_lock(db: &TestDb, product: &str) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET search_path TO \"{}\"",
        db.schema
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(catalog_product_lock('shopify', 's.myshopify.com', $1))",
    )
    .bind(product)
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

#[tokio::test]
async fn a_product_held_up_elsewhere_does_not_fail_the_other_products_of_its_batch() {
    let Some(db) = TestDb::new("batch_held") else {
        return;
    };
    let mut options = db.options(8);
    options.lock_timeout = Some(Duration::from_millis(2000));
    let store = Arc::new(PostgresStore::connect(&db.url, options).await.unwrap());
    // Some other session holds product p-held's lock (a long transaction).
    let holder = hold_product_lock(&db, "p-held").await;
    let mut events: Vec<_> = (0..60)
        .map(|i| event(&format!("h-{i}"), Some(&format!("p{}", i % 20))))
        .collect();
    events.insert(30, event("h-held", Some("p-held")));
    let started = std::time::Instant::now();
    let outcomes = insert_all_at_once(&store, events).await;
    for (i, o) in outcomes.iter().enumerate() {
        if i == 30 {
            // Its own wait ends at the connection's lock timeout.
            assert!(
                matches!(o, Err(webhook_server::store::StoreError::Database(m)) if m.contains("55P03")),
                "{o:?}"
            );
        } else {
            // The batch gave up on the lock after a quarter of it (500 ms)
            // and stored the others one by one.
            assert!(matches!(o, Ok(InsertOutcome::Inserted)), "{i}: {o:?}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 60);
    drop(holder);
    assert_eq!(
        store.insert(event("h-held", Some("p-held"))).await.unwrap(),
        InsertOutcome::Inserted
    );
    store.close().await;
}

#[tokio::test]
async fn product_locks_belong_to_their_schema() {
    let (Some(a), Some(b)) = (TestDb::new("lock_schema_a"), TestDb::new("lock_schema_b")) else {
        return;
    };
    let mut options = a.options(2);
    options.lock_timeout = Some(Duration::from_millis(1000));
    let store_a = Arc::new(PostgresStore::connect(&a.url, options).await.unwrap());
    let store_b = b.store().await;
    // The same product's lock, held in the other deployment's schema, does
    // not hold this one up.
    let holder = hold_product_lock(&b, "p-shared").await;
    assert_eq!(
        store_a
            .insert(event("shared-1", Some("p-shared")))
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
    drop(holder);
    store_a.close().await;
    store_b.close().await;
}

#[tokio::test]
async fn runs_claimed_by_two_replicas_go_out_in_order_once_each_across_failures() {
    let Some(db) = TestDb::new("runs_two") else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    // Deliveries keep arriving (on both replicas) while both dispatch in
    // runs of up to 8; every 7th attempt fails and is due again at once, so
    // runs are cut, their rest released, and the product's next claim
    // starts at the failed event.
    let inserting = {
        let (a, b) = (Arc::clone(&a), Arc::clone(&b));
        tokio::spawn(async move {
            for round in 0..6 {
                let events: Vec<_> = (0..100)
                    .map(|i| event(&format!("r{round}-{i}"), Some(&format!("p{}", i % 5))))
                    .collect();
                let (first, second) = events.split_at(50);
                let (ra, rb) = tokio::join!(
                    insert_all_at_once(&a, first.to_vec()),
                    insert_all_at_once(&b, second.to_vec())
                );
                assert!(ra.iter().chain(rb.iter()).all(Result::is_ok));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let attempts = Arc::new(AtomicU32::new(0));
    // (product, seq) of each delivered event, in the order it went out.
    let delivered = Arc::new(std::sync::Mutex::new(Vec::<(String, i64)>::new()));
    let longest_run = Arc::new(AtomicU32::new(0));
    let dispatch = |store: Arc<PostgresStore>, worker: &'static str| {
        let (attempts, delivered, longest_run) = (
            Arc::clone(&attempts),
            Arc::clone(&delivered),
            Arc::clone(&longest_run),
        );
        tokio::spawn(async move {
            let mut idle = 0;
            while idle < 20 {
                let events = store
                    .claim_runs(worker, Duration::from_secs(30), 3, 8)
                    .await
                    .unwrap();
                if events.is_empty() {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                idle = 0;
                // Each product's run, in order, as the dispatcher does.
                let mut runs: Vec<Vec<webhook_server::store::StoredEvent>> = Vec::new();
                for e in events {
                    match runs.last_mut() {
                        Some(run) if run[0].event.product_key() == e.event.product_key() => {
                            run.push(e);
                        }
                        _ => runs.push(vec![e]),
                    }
                }
                for run in runs {
                    longest_run.fetch_max(u32::try_from(run.len()).unwrap(), Ordering::Relaxed);
                    let mut outcomes = Vec::new();
                    let mut unattempted = Vec::new();
                    for e in run {
                        if !unattempted.is_empty()
                            || outcomes
                                .iter()
                                .any(|(_, o)| !matches!(o, DispatchOutcome::Delivered))
                        {
                            unattempted.push(e.event.id.clone());
                        } else if attempts.fetch_add(1, Ordering::Relaxed) % 7 == 6 {
                            outcomes.push((
                                e.event.id.clone(),
                                DispatchOutcome::Retry {
                                    error: "downstream 503".into(),
                                    at: chrono::Utc::now() - chrono::Duration::seconds(1),
                                },
                            ));
                        } else {
                            delivered
                                .lock()
                                .unwrap()
                                .push((e.event.product_key().to_owned(), e.seq));
                            outcomes.push((e.event.id.clone(), DispatchOutcome::Delivered));
                        }
                    }
                    let recorded = store.complete_run(worker, outcomes).await.unwrap();
                    assert!(recorded.iter().all(|r| *r), "an outcome was not recorded");
                    store.release(&unattempted, worker).await.unwrap();
                }
            }
        })
    };
    let (da, db_) = (
        dispatch(Arc::clone(&a), "wa"),
        dispatch(Arc::clone(&b), "wb"),
    );
    inserting.await.unwrap();
    da.await.unwrap();
    db_.await.unwrap();

    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE status = 'delivered'")
            .await,
        600
    );
    // Each event delivered once, and each product's in `seq` order.
    let delivered = delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 600);
    let mut last = std::collections::HashMap::new();
    for (product, seq) in delivered {
        let previous = last.insert(product.clone(), seq).unwrap_or(i64::MIN);
        assert!(
            previous < seq,
            "{product}: {seq} delivered after {previous}"
        );
    }
    assert!(
        longest_run.load(Ordering::Relaxed) > 1,
        "no run had followers: the test did not exercise runs"
    );
    assert_eq!(db.scalar(READY_WRONG).await, 0);
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE lease_owner IS NOT NULL")
            .await,
        0,
        "a lease was left behind"
    );
    a.close().await;
    b.close().await;
}
