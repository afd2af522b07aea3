//! Two real in-process servers ("replicas") on their own ports, each with its
//! own PostgreSQL pool, sharing one schema, as behind a load balancer.
//!
//! Needs `TEST_DATABASE_URL`; the dispatch test also publishes to JetStream
//! when `TEST_NATS_URL` is set. Skipped with a printed reason otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer};
use webhook_server::dispatch::{DispatchConfig, EventHandler, HandlerError};
use webhook_server::store::{EventStore, StoredEvent};
use webhook_server::{AppState, configure};

use crate::postgres::TestDb;
use crate::support::*;

const PATH: &str = "/webhooks/shopify/products/create";

fn start(state: AppState) -> (SocketAddr, actix_web::dev::ServerHandle) {
    let server = HttpServer::new(move || App::new().configure(|c| configure(c, state.clone())))
        .workers(2)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
}

async fn post(client: &reqwest::Client, addr: SocketAddr, event_id: &str, body: &str) -> u16 {
    let mut req = client.post(format!("http://{addr}{PATH}"));
    for (k, v) in shopify_headers(event_id, body.as_bytes(), SECRET) {
        req = req.header(k, v);
    }
    req.body(body.to_owned())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[actix_web::test]
async fn the_same_delivery_to_two_replicas_at_once_is_stored_once() {
    let Some(db) = TestDb::new("replicas_dup") else {
        return;
    };
    let (a, b) = (db.store().await, db.store().await);
    let (addr_a, stop_a) = start(state_with(a.clone(), &single_secret()));
    let (addr_b, stop_b) = start(state_with(b.clone(), &single_secret()));
    let client = reqwest::Client::new();

    // Every delivery goes out four times at the same moment, twice to each
    // replica, and 100 deliveries are in flight together.
    let rounds = 100;
    let mut sends = Vec::new();
    for round in 0..rounds {
        let event_id = format!("dup-{round}");
        let body = body(7_000 + round);
        for addr in [addr_a, addr_b, addr_a, addr_b] {
            let (client, event_id, body) = (client.clone(), event_id.clone(), body.clone());
            sends.push(async move { post(&client, addr, &event_id, &body).await });
        }
    }
    let statuses = futures::future::join_all(sends).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "not all 200: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM events").await,
        i64::try_from(rounds).unwrap()
    );
    assert_eq!(
        db.scalar("SELECT count(DISTINCT event_id) FROM events")
            .await,
        i64::try_from(rounds).unwrap()
    );
    stop_a.stop(true).await;
    stop_b.stop(true).await;
}

/// Counts what it is handed, by event id, and records the order per product.
#[derive(Debug, Default)]
struct Counting {
    counts: Mutex<HashMap<String, u32>>,
    order: Mutex<HashMap<String, Vec<i64>>>,
}

#[async_trait::async_trait]
impl EventHandler for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    async fn handle(&self, event: &StoredEvent) -> Result<(), HandlerError> {
        *self
            .counts
            .lock()
            .unwrap()
            .entry(event.event.id.clone())
            .or_default() += 1;
        self.order
            .lock()
            .unwrap()
            .entry(event.event.product_key().to_owned())
            .or_default()
            .push(event.seq);
        Ok(())
    }
}

#[actix_web::test]
async fn two_replicas_share_dispatch_and_each_event_goes_out_once() {
    let Some(db) = TestDb::new("replicas_dispatch") else {
        return;
    };
    #[cfg(feature = "nats")]
    let stream = crate::nats::TestStream::new("replicas_dispatch");
    let counted = Arc::new(Counting::default());
    let mut handles = Vec::new();
    let mut servers = Vec::new();
    let mut stores: Vec<Arc<dyn EventStore>> = Vec::new();
    for replica in ["a", "b"] {
        let store = db.store().await;
        let state = state_with(store.clone(), &single_secret());
        #[cfg_attr(not(feature = "nats"), allow(unused_mut))]
        let mut sinks: Vec<Arc<dyn EventHandler>> = vec![counted.clone()];
        #[cfg(feature = "nats")]
        if let Some(ts) = &stream {
            sinks.push(Arc::new(
                webhook_server::dispatch::nats::NatsSink::connect(&ts.settings)
                    .await
                    .unwrap(),
            ));
        }
        let mut config = DispatchConfig::from_settings(&settings().dispatch);
        config.worker_id = format!("replica-{replica}");
        config.poll_interval = Duration::from_millis(50);
        config.batch = 8;
        handles.push(state.dispatcher(config, sinks).spawn());
        servers.push(start(state));
        stores.push(store);
    }
    let client = reqwest::Client::new();
    // 30 products, 3 events each, every delivery sent to both replicas.
    let mut sends = Vec::new();
    for n in 0..90u64 {
        let event_id = format!("d-{n}");
        let body = body(9_000 + n % 30);
        for (addr, _) in &servers {
            let (client, event_id, body, addr) =
                (client.clone(), event_id.clone(), body.clone(), *addr);
            sends.push(async move { post(&client, addr, &event_id, &body).await });
        }
    }
    let statuses = futures::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // Wait for both dispatchers to drain the shared queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stores[0].stats().await.unwrap().pending > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "dispatch did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = counted.counts.lock().unwrap().clone();
    assert_eq!(counts.len(), 90);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // In order per product, whichever replica sent each one.
    let order = counted.order.lock().unwrap().clone();
    assert_eq!(order.len(), 30);
    for (product, seqs) in &order {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{product}: {seqs:?}");
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM events WHERE status = 'delivered'")
            .await,
        90
    );
    #[cfg(feature = "nats")]
    if let Some(ts) = &stream {
        assert_eq!(ts.messages().await, 90);
    }
    for h in handles {
        h.shutdown(Duration::from_secs(5)).await;
    }
    for (_, stop) in servers {
        stop.stop(true).await;
    }
}
