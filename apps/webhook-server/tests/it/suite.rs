//! The store contract every [`EventStore`] must meet, run against each
//! implementation: memory and SQLite in `store.rs`, PostgreSQL in
//! `postgres.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use catalog_core::webhook::{DeliveryMeta, PayloadError};
use catalog_core::{EventId, InsertOutcome, PlatformId, Topic};
use chrono::Utc;
use webhook_server::store::{
    DispatchOutcome, EventFilter, EventStatus, EventStore, NewEvent, PrunePolicy, ReplayOutcome,
};

/// Inserts each of `events`, asserting it is new.
async fn insert_new(store: &dyn EventStore, events: &[&NewEvent]) {
    for e in events {
        assert_eq!(
            store.insert((*e).clone()).await.unwrap(),
            InsertOutcome::Inserted,
            "{}",
            e.event_id
        );
    }
}

/// Inserts `e`, claims it as `worker` (it must be the only event due) and
/// records it delivered.
async fn deliver_alone(store: &dyn EventStore, worker: &str, e: &NewEvent) {
    insert_new(store, &[e]).await;
    let claimed = store
        .claim_due(worker, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].event.id, e.id);
    assert!(
        store
            .complete(&e.id, worker, DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
}

/// Claims in runs as `worker` and delivers until nothing is due; the event
/// ids in the order they went out.
async fn drain_in_runs(store: &dyn EventStore, worker: &str) -> Vec<String> {
    let mut order = Vec::new();
    loop {
        let run = store
            .claim_runs(worker, Duration::from_secs(60), 10, 16)
            .await
            .unwrap();
        if run.is_empty() {
            return order;
        }
        let outcomes = run
            .iter()
            .map(|e| (e.event.id.clone(), DispatchOutcome::Delivered))
            .collect();
        assert!(
            store
                .complete_run(worker, outcomes)
                .await
                .unwrap()
                .iter()
                .all(|ok| *ok)
        );
        order.extend(run.iter().map(|e| e.event.event_id.as_str().to_owned()));
    }
}

/// A pending event of product `product` (stores keep milliseconds).
pub(crate) fn event(event_id: &str, product: Option<&str>) -> NewEvent {
    let meta = DeliveryMeta::new(
        PlatformId::SHOPIFY,
        "s.myshopify.com",
        Topic::ProductUpdated,
        "products/update",
        EventId::new(event_id),
    );
    // Build through the unparseable constructor, then make it a normal event.
    let mut e = NewEvent::unparseable(
        &meta,
        Bytes::from_static(b"{}"),
        &PayloadError::new("", "x"),
        // Stores keep milliseconds.
        chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap(),
    );
    e.status = EventStatus::Pending;
    e.error = None;
    e.product_id = product.map(str::to_owned);
    e
}

/// The whole contract, on an empty store.
pub(crate) async fn suite(store: Arc<dyn EventStore>) {
    // Insert if new, atomically: concurrent inserts of one id, one winner.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            s.insert(event("same", Some("p0"))).await.unwrap()
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        if t.await.unwrap() == InsertOutcome::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1);
    let first = store
        .claim_due("w0", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        store
            .complete(&first[0].event.id, "w0", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );

    // Order per product: only the oldest pending event of a product is claimable.
    let a1 = event("a1", Some("pa"));
    let a2 = event("a2", Some("pa"));
    let b1 = event("b1", Some("pb"));
    insert_new(&*store, &[&a1, &a2, &b1]).await;
    let claimed = store
        .claim_due("w1", Duration::from_secs(60), 10)
        .await
        .unwrap();
    let ids: Vec<_> = claimed.iter().map(|e| e.event.event_id.clone()).collect();
    assert_eq!(ids, vec!["a1", "b1"]);
    // Leased: another worker gets nothing.
    assert!(
        store
            .claim_due("w2", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // a1 fails and is retried later: a2 must still wait behind it.
    let later = Utc::now() + chrono::Duration::milliseconds(150);
    assert!(
        store
            .complete(
                &a1.id,
                "w1",
                DispatchOutcome::Retry {
                    error: "boom".into(),
                    at: later
                }
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .complete(&b1.id, "w1", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_due("w2", Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = store
        .claim_due("w2", Duration::from_millis(100), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].event.event_id, "a1");
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("boom"));
    // The lease expires: a third worker takes it over, the second loses it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let taken = store
        .claim_due("w3", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        !store
            .complete(&a1.id, "w2", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    assert!(
        store
            .complete(
                &a1.id,
                "w3",
                DispatchOutcome::Dead {
                    error: "gave up".into()
                }
            )
            .await
            .unwrap()
    );
    // Now a2 goes.
    let next = store
        .claim_due("w3", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.event_id, "a2");
    // While a dispatcher holds it, a replay would send it a second time at
    // once: refused, and the attempt in progress is untouched.
    assert_eq!(store.replay(&a2.id).await.unwrap(), ReplayOutcome::InFlight);
    let held = store.get(&a2.id).await.unwrap().unwrap();
    assert_eq!(held.status(), EventStatus::Pending);
    assert!(
        store
            .complete(&a2.id, "w3", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );

    // Replay makes a dead event pending again.
    assert_eq!(
        store.get(&a1.id).await.unwrap().unwrap().status(),
        EventStatus::Dead
    );
    assert_eq!(store.replay(&a1.id).await.unwrap(), ReplayOutcome::Queued);
    let r = store.get(&a1.id).await.unwrap().unwrap();
    assert_eq!(r.status(), EventStatus::Pending);
    assert_eq!(r.attempts, 0);
    assert_eq!(store.replay("nope").await.unwrap(), ReplayOutcome::NotFound);

    // Listing: newest first, filters, cursor.
    let page = store.list(&EventFilter::default(), None, 2).await.unwrap();
    let ids: Vec<_> = page
        .events
        .iter()
        .map(|e| e.event.event_id.clone())
        .collect();
    assert_eq!(ids, vec!["b1", "a2"]);
    let rest = store
        .list(&EventFilter::default(), page.next, 10)
        .await
        .unwrap();
    let ids: Vec<_> = rest
        .events
        .iter()
        .map(|e| e.event.event_id.clone())
        .collect();
    assert_eq!(ids, vec!["a1", "same"]);
    assert_eq!(rest.next, None);
    let mut f = EventFilter::default();
    f.status = Some(EventStatus::Pending);
    let pending = store.list(&f, None, 10).await.unwrap();
    assert_eq!(pending.events.len(), 1);
    assert_eq!(store.stats().await.unwrap().pending, 1);

    // A verified but unreadable delivery is kept as failed, never claimed.
    let mut failed = event("f1", Some("pf"));
    failed.status = EventStatus::Failed;
    failed.error = Some("missing product id".into());
    assert_eq!(
        store.insert(failed.clone()).await.unwrap(),
        InsertOutcome::Inserted
    );
    // What comes back is what went in.
    let mut full = event("full", Some("pfull"));
    full.product = Some(r#"{"id":"1","title":"T"}"#.into());
    full.raw_body = Bytes::from_static(b"{\"id\":1,\"title\":\"T\"}");
    full.delivery_id = Some("d-1".into());
    full.triggered_at = Some(full.received_at - chrono::Duration::milliseconds(1500));
    assert_eq!(
        store.insert(full.clone()).await.unwrap(),
        InsertOutcome::Inserted
    );
    let got = store.get(&full.id).await.unwrap().unwrap();
    assert_eq!(got.event, full);
    assert_eq!(got.attempts, 0);
    assert_eq!(store.get(&failed.id).await.unwrap().unwrap().event, failed);
    // Due now: the replayed a1 and `full`; never the failed one.
    let claimed = store
        .claim_due("w4", Duration::from_secs(60), 10)
        .await
        .unwrap();
    let mut ids: Vec<_> = claimed.iter().map(|e| e.event.event_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec!["a1", "full"]);
    for e in &claimed {
        assert!(
            store
                .complete(&e.event.id, "w4", DispatchOutcome::Delivered)
                .await
                .unwrap()
        );
    }
    // Completing twice (or after someone else did) reports the lost claim.
    assert!(
        !store
            .complete(&full.id, "w4", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );

    // Concurrent claimers never share an event, and together take them all.
    let n = 24;
    for i in 0..n {
        store
            .insert(event(&format!("c{i}"), Some(&format!("pc{i}"))))
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let s = Arc::clone(&store);
        workers.push(tokio::spawn(async move {
            let worker = format!("cw{w}");
            let mut mine = Vec::new();
            loop {
                let batch = s
                    .claim_due(&worker, Duration::from_secs(60), 4)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                for e in batch {
                    assert!(
                        s.complete(&e.event.id, &worker, DispatchOutcome::Delivered)
                            .await
                            .unwrap()
                    );
                    mine.push(e.event.event_id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "an event was claimed twice");
    assert_eq!(all.len(), n, "{all:?}");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.pending, 0);
    // "As far as the store knows cheaply": SQLite reports its highest
    // sequence number, which duplicates may have advanced.
    assert!(stats.events >= 4 + 2 + n as u64, "{stats:?}");

    // Replaying the head of a product while another event of it is queued
    // must not stall the product: the replayed one goes, then the queued one.
    let h1 = event("h1", Some("ph"));
    let h2 = event("h2", Some("ph"));
    for e in [&h1, &h2] {
        store.insert(e.clone()).await.unwrap();
    }
    assert_eq!(store.replay(&h1.id).await.unwrap(), ReplayOutcome::Queued);
    for expected in ["h1", "h2"] {
        let heads = store
            .claim_due("wh", Duration::from_secs(60), 10)
            .await
            .unwrap();
        let ids: Vec<_> = heads.iter().map(|e| e.event.event_id.as_str()).collect();
        assert_eq!(ids, vec![expected]);
        assert!(
            store
                .complete(&heads[0].event.id, "wh", DispatchOutcome::Delivered)
                .await
                .unwrap()
        );
    }

    // A replayed event takes its place again by receipt order among its
    // product's pending events; only the event already scheduled (here one
    // waiting for its retry) goes before it. So the product's newest event
    // still goes last, claimed in runs or one by one.
    let r1 = event("r1", Some("pr"));
    let r2 = event("r2", Some("pr"));
    let r3 = event("r3", Some("pr"));
    deliver_alone(&*store, "wr", &r1).await;
    insert_new(&*store, &[&r2, &r3]).await;
    let second = store
        .claim_runs("wr", Duration::from_secs(60), 10, 1)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.event_id, "r2");
    let retry = DispatchOutcome::Retry {
        error: "downstream 500".into(),
        at: Utc::now(),
    };
    assert!(store.complete(&r2.id, "wr", retry).await.unwrap());
    assert_eq!(store.replay(&r1.id).await.unwrap(), ReplayOutcome::Queued);
    assert_eq!(drain_in_runs(&*store, "wr").await, ["r2", "r1", "r3"]);

    // A newer event that is only waiting (neither in hand nor tried) gives
    // way: the replayed older one goes first, the newest last.
    let s1 = event("s1", Some("ps"));
    let s2 = event("s2", Some("ps"));
    deliver_alone(&*store, "ws", &s1).await;
    insert_new(&*store, &[&s2]).await;
    assert_eq!(store.replay(&s1.id).await.unwrap(), ReplayOutcome::Queued);
    assert_eq!(drain_in_runs(&*store, "ws").await, ["s1", "s2"]);

    // A newer event in hand keeps its turn: the replayed one waits for it
    // (never two events of one product out at once), then goes.
    let t1 = event("t1", Some("pt"));
    let t2 = event("t2", Some("pt"));
    deliver_alone(&*store, "wt", &t1).await;
    insert_new(&*store, &[&t2]).await;
    let in_hand = store
        .claim_due("wt", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(in_hand.len(), 1);
    assert_eq!(in_hand[0].event.event_id, "t2");
    assert_eq!(store.replay(&t1.id).await.unwrap(), ReplayOutcome::Queued);
    assert!(
        store
            .claim_runs("wt", Duration::from_secs(60), 10, 16)
            .await
            .unwrap()
            .is_empty(),
        "a second event of the product went out while one was in hand"
    );
    assert!(
        store
            .complete(&t2.id, "wt", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    let next = store
        .claim_due("wt", Duration::from_secs(60), 10)
        .await
        .unwrap();
    let ids: Vec<_> = next.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(ids, ["t1"]);
    assert!(
        store
            .complete(&t1.id, "wt", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
}

/// Retention (`EventStore::prune`), on an empty store: finished events older
/// than the cutoff go, oldest first, with their deduplication entries;
/// pending and younger events stay.
pub(crate) async fn retention_suite(store: Arc<dyn EventStore>) {
    let now = chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let days = |n: i64| chrono::Duration::days(n);
    let aged = |id: &str, product: &str, age: chrono::Duration| {
        let mut e = event(id, Some(product));
        e.received_at = now - age;
        e
    };
    // Oldest first: d1 before d2 before d3.
    let (d1, d2, d3) = (
        aged("d1", "r1", days(12)),
        aged("d2", "r2", days(11)),
        aged("d3", "r3", days(10)),
    );
    let (x1, n1) = (aged("x1", "r4", days(10)), aged("n1", "r5", days(1)));
    insert_new(&*store, &[&d1, &d2, &d3, &x1, &n1]).await;
    let claimed = store
        .claim_due("wr", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    for c in &claimed {
        let outcome = if c.event.id == x1.id {
            DispatchOutcome::Dead {
                error: "gave up".into(),
            }
        } else {
            DispatchOutcome::Delivered
        };
        assert!(store.complete(&c.event.id, "wr", outcome).await.unwrap());
    }
    let mut f1 = aged("f1", "r6", days(10));
    f1.status = EventStatus::Failed;
    f1.error = Some("unreadable".into());
    let p1 = aged("p1", "r7", days(10));
    insert_new(&*store, &[&f1, &p1]).await;
    let exists = |id: String| {
        let store = Arc::clone(&store);
        async move { store.get(&id).await.unwrap().is_some() }
    };

    // Delivered only, older than 5 days: d1, d2, d3, oldest first, in chunks.
    let delivered = PrunePolicy::new(Some(now - days(5)), None);
    assert_eq!(store.prune(&delivered, 2).await.unwrap(), 2);
    assert!(!exists(d1.id.clone()).await && !exists(d2.id.clone()).await);
    assert!(exists(d3.id.clone()).await, "oldest first");
    assert_eq!(store.prune(&delivered, 10).await.unwrap(), 1);
    assert_eq!(store.prune(&delivered, 10).await.unwrap(), 0);
    assert!(!exists(d3.id.clone()).await);
    for e in [&n1, &x1, &f1, &p1] {
        assert!(exists(e.id.clone()).await, "{}", e.event_id);
    }
    let listed = store
        .list(&EventFilter::default(), None, 100)
        .await
        .unwrap();
    let mut ids: Vec<&str> = listed
        .events
        .iter()
        .map(|e| e.event.event_id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["f1", "n1", "p1", "x1"]);
    // A pruned event's id is forgotten; a kept one's is not.
    assert_eq!(
        store.insert(event("d1", Some("r1"))).await.unwrap(),
        InsertOutcome::Inserted
    );
    assert_eq!(
        store.insert(f1.clone()).await.unwrap(),
        InsertOutcome::Duplicate
    );
    assert_eq!(
        store.insert(n1.clone()).await.unwrap(),
        InsertOutcome::Duplicate
    );

    // Failed and dead: f1 and x1; the old pending p1 stays.
    let failed = PrunePolicy::new(None, Some(now - days(5)));
    assert_eq!(store.prune(&failed, 10).await.unwrap(), 2);
    assert!(!exists(f1.id.clone()).await && !exists(x1.id.clone()).await);
    assert!(exists(p1.id.clone()).await);

    // Everything finished, whatever its age: n1 goes; pending events never.
    let all = PrunePolicy::new(Some(now + days(1)), Some(now + days(1)));
    assert_eq!(store.prune(&all, 10).await.unwrap(), 1);
    assert!(!exists(n1.id.clone()).await);
    assert!(exists(p1.id.clone()).await);
    assert!(exists(d1.id.clone()).await, "the new d1 is pending");
    assert_eq!(store.prune(&PrunePolicy::default(), 10).await.unwrap(), 0);
}

/// Runs (`EventStore::claim_runs`, `EventStore::release`), for stores that
/// claim them (memory, SQLite, PostgreSQL): a product's head comes with the events
/// behind it, in order; a leased event stops a run; released events can be
/// claimed again at once.
pub(crate) async fn runs_suite(store: Arc<dyn EventStore>) {
    let lease = Duration::from_secs(60);
    let names = ["a1", "b1", "a2", "a3", "a4", "a5"];
    for id in names {
        let product = if id.starts_with('a') { "pa" } else { "pb" };
        assert_eq!(
            store.insert(event(id, Some(product))).await.unwrap(),
            InsertOutcome::Inserted
        );
    }
    let order = |events: &[webhook_server::store::StoredEvent]| -> Vec<String> {
        events
            .iter()
            .map(|e| e.event.event_id.as_str().to_owned())
            .collect()
    };
    let id_of = |name: &str| event(name, None).id;
    let claimed = store.claim_runs("w", lease, 10, 3).await.unwrap();
    assert_eq!(order(&claimed), ["a1", "a2", "a3", "b1"]);
    assert!(
        store
            .claim_runs("w", lease, 10, 3)
            .await
            .unwrap()
            .is_empty(),
        "all leased"
    );
    for name in ["a1", "a2"] {
        assert!(
            store
                .complete(&id_of(name), "w", DispatchOutcome::Delivered)
                .await
                .unwrap()
        );
    }
    // a3 failed and is due again at once; nothing else was left in its run.
    let retry_now = DispatchOutcome::Retry {
        error: "x".into(),
        at: Utc::now() - chrono::Duration::seconds(1),
    };
    assert!(
        store
            .complete(&id_of("a3"), "w", retry_now.clone())
            .await
            .unwrap()
    );
    let claimed = store.claim_runs("w", lease, 10, 3).await.unwrap();
    assert_eq!(order(&claimed), ["a3", "a4", "a5"], "b1 is still leased");
    // a3 fails again and its run is not released: a4 is leased, so the
    // next run is a3 alone (a4 must not be overtaken, nor taken twice).
    assert!(
        store
            .complete(&id_of("a3"), "w", retry_now.clone())
            .await
            .unwrap()
    );
    let claimed = store.claim_runs("w", lease, 10, 3).await.unwrap();
    assert_eq!(order(&claimed), ["a3"]);
    assert!(store.complete(&id_of("a3"), "w", retry_now).await.unwrap());
    // Released by their holder (another worker's release changes nothing):
    // the whole run again.
    store
        .release(&[id_of("a4"), id_of("a5")], "other")
        .await
        .unwrap();
    assert_eq!(
        order(&store.claim_runs("w", lease, 10, 3).await.unwrap()),
        ["a3"]
    );
    assert!(
        store
            .complete(
                &id_of("a3"),
                "w",
                DispatchOutcome::Retry {
                    error: "x".into(),
                    at: Utc::now() - chrono::Duration::seconds(1),
                }
            )
            .await
            .unwrap()
    );
    store
        .release(&[id_of("a4"), id_of("a5")], "w")
        .await
        .unwrap();
    store.insert(event("a6", Some("pa"))).await.unwrap();
    let claimed = store.claim_runs("w", lease, 10, 3).await.unwrap();
    assert_eq!(order(&claimed), ["a3", "a4", "a5"]);
    // A run's outcomes in one call, in order; the product's next event is
    // claimable after it.
    let recorded = store
        .complete_run(
            "w",
            ["a3", "a4", "a5", "b1", "nope"]
                .iter()
                .map(|n| (id_of(n), DispatchOutcome::Delivered))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(recorded, [true, true, true, true, false]);
    assert_eq!(
        order(&store.claim_runs("w", lease, 10, 3).await.unwrap()),
        ["a6"]
    );
    assert!(
        store
            .complete(&id_of("a6"), "w", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    // Runs of one are heads only, as `claim_due`.
    for id in ["c1", "c2"] {
        store.insert(event(id, Some("pc"))).await.unwrap();
    }
    assert_eq!(
        order(&store.claim_runs("w", lease, 10, 1).await.unwrap()),
        ["c1"]
    );
}
