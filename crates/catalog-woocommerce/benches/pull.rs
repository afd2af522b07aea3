//! Pull benchmark: 10,000 products (a fifth variable, with 5 variations each)
//! from an in-process fake WooCommerce store that answers every request after
//! a fixed 50 ms, sequentially and with the concurrent client.
//!
//! Run with `cargo bench -p catalog-woocommerce --bench pull`.
//! `WC_BENCH_CONCURRENCY=8,32` overrides the concurrent levels (default 8,16,32);
//! `WC_BENCH_SKIP_SEQUENTIAL=1` skips the (slow, ~2 min) sequential run.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

#[path = "../tests/it/fake.rs"]
mod fake;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use catalog_core::{Catalog, CurrencyCode};
use catalog_woocommerce::{AuthMode, WooCommerceClient};
use futures::TryStreamExt;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use fake::{Accept, FakeStore, KEY, SECRET};

const PRODUCTS: u64 = 10_000;
const LATENCY: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() {
    let store = FakeStore::new(Accept::Https).with_delay(LATENCY);
    for id in 1..=PRODUCTS {
        if id % 5 == 0 {
            store.add_variable(id, 5);
        } else {
            store.add_simple(id, "19.99");
        }
    }
    let store = Arc::new(store);
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(store.responder())
        .mount(&server)
        .await;

    let levels: Vec<usize> = std::env::var("WC_BENCH_CONCURRENCY")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![8, 16, 32]);
    println!(
        "pull {PRODUCTS} products ({} variable x 5 variations), {} ms per request",
        PRODUCTS / 5,
        LATENCY.as_millis()
    );
    let sequential = std::env::var_os("WC_BENCH_SKIP_SEQUENTIAL").is_none();
    for concurrency in sequential.then_some(1).into_iter().chain(levels) {
        let client = WooCommerceClient::builder()
            .store_url(server.uri())
            .credentials(KEY, SECRET)
            .auth_mode(AuthMode::Basic)
            .currency(CurrencyCode::new("EUR").unwrap())
            .concurrency(concurrency)
            .build()
            .unwrap();
        let before = store.requests.load(Ordering::SeqCst);
        let started = Instant::now();
        let (count, variants) = client
            .stream_products()
            .try_fold((0u64, 0u64), |(n, v), p| async move {
                Ok((n + 1, v + p.variants.len() as u64))
            })
            .await
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        let requests = store.requests.load(Ordering::SeqCst) - before;
        assert_eq!(count, PRODUCTS);
        let label = if concurrency == 1 {
            "sequential (concurrency 1)".to_owned()
        } else {
            format!("concurrent (concurrency {concurrency})")
        };
        println!(
            "{label:<28} {count} products, {variants} variants, {requests} requests in {secs:.2} s = {:.0} products/s",
            count as f64 / secs
        );
    }
}
