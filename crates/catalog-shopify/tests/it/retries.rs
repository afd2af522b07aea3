//! 429 with Retry-After, 5xx with backoff, and what happens when the budget runs out.

use std::time::{Duration, Instant};

use catalog_core::{Catalog, CatalogError};

use crate::fake::{FakeShopify, Fault, Options};
use crate::support::{builder, products};

fn opts() -> Options {
    Options {
        products: products(2, 1, 0),
        ..Options::default()
    }
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([
        Fault::Status(429, Some("0.2")),
        Fault::Status(429, Some("0.2")),
    ]);
    let client = builder(&server).currency("USD").build().unwrap();
    let t = Instant::now();
    client.get_product("7000000000000000001").await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(server.fake.counters().graphql, 3);
}

#[tokio::test]
async fn retries_5xx_with_backoff() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([
        Fault::Status(503, None),
        Fault::Status(500, None),
        Fault::Status(502, None),
    ]);
    let client = builder(&server).currency("USD").build().unwrap();
    let p = client.get_product("7000000000000000001").await.unwrap();
    assert_eq!(p.title, "Product 1");
    assert_eq!(server.fake.counters().graphql, 4);
}

#[tokio::test]
async fn exhausted_budget_reaches_the_caller() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([
        Fault::Status(429, Some("0.05")),
        Fault::Status(429, Some("0.05")),
    ]);
    let client = builder(&server)
        .currency("USD")
        .max_retries(1)
        .build()
        .unwrap();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    match err {
        CatalogError::RateLimited { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_millis(50)));
        }
        other => panic!("{other:?}"),
    }

    server
        .fake
        .push_faults([Fault::Status(503, None), Fault::Status(503, None)]);
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Http { status: 503, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = FakeShopify::start(opts()).await;
    server.fake.push_faults([Fault::Status(404, None)]);
    let client = builder(&server).currency("USD").build().unwrap();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(server.fake.counters().graphql, 1);
}

#[tokio::test]
async fn transport_errors_do_not_leak_the_url() {
    // Nothing listens on this port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = catalog_shopify::ShopifyClient::builder()
        .store_url(format!("http://127.0.0.1:{port}/secret-path-segment"))
        .access_token("shpat_never_shown")
        .max_retries(1)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .currency("USD")
        .build()
        .unwrap();
    let err = client.get_product("1").await.unwrap_err();
    assert!(matches!(err, CatalogError::Transport(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("secret-path-segment"), "{text}");
    assert!(!text.contains("shpat_never_shown"), "{text}");
}
