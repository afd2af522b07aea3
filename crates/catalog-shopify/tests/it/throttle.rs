//! Cost extensions, the shared bucket, THROTTLED answers.

use std::time::{Duration, Instant};

use catalog_core::{Catalog, CatalogError, PageRequest};
use futures::TryStreamExt;

use crate::fake::{BucketSpec, FakeShopify, Options};
use crate::support::{builder, products};

fn bucket(maximum: f64, restore_rate: f64, initial: Option<f64>) -> Option<BucketSpec> {
    Some(BucketSpec {
        maximum,
        restore_rate,
        initial,
    })
}

#[tokio::test]
async fn cost_extensions_feed_the_client_bucket() {
    let server = FakeShopify::start(Options {
        products: products(3, 1, 0),
        bucket: bucket(2000.0, 100.0, None),
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    assert!(client.throttle_status().is_none());
    client.list_page(PageRequest::first()).await.unwrap();
    let status = client.throttle_status().unwrap();
    assert_eq!(status.maximum_available, 2000.0);
    assert_eq!(status.restore_rate, 100.0);
    assert!(status.currently_available < 2000.0);
}

#[tokio::test]
async fn throttled_is_retried_after_the_restore_time() {
    // Empty bucket: the first request (cost unknown to the client) is
    // THROTTLED; the retry waits (requested - available) / restoreRate.
    let server = FakeShopify::start(Options {
        products: products(3, 1, 0),
        bucket: bucket(200.0, 500.0, Some(0.0)),
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let t = Instant::now();
    let page = client
        .list_page(PageRequest::first().with_limit(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    // requested = 2 + 2 * (5 + 20 + 5) = 62 points at 500/s = 124 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(120),
        "{:?}",
        t.elapsed()
    );
    let c = server.fake.counters();
    assert_eq!(c.throttled, 1);
    assert_eq!(c.graphql, 2);
}

#[tokio::test]
async fn pacing_keeps_a_stream_out_of_throttled() {
    // 20 pages of 32 actual points (152 requested) through a 200-point bucket
    // at 1000/s: the client must wait ~0.44 s in total, and does so before
    // each request instead of being THROTTLED.
    let server = FakeShopify::start(Options {
        products: products(100, 1, 0),
        bucket: bucket(200.0, 1000.0, None),
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .page_size(5)
        .build()
        .unwrap();
    let t = Instant::now();
    let all: Vec<_> = client.stream_products().try_collect().await.unwrap();
    assert_eq!(all.len(), 100);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let c = server.fake.counters();
    assert_eq!(c.throttled, 0, "{c:?}");
    assert_eq!(c.graphql, 20);
}

#[tokio::test]
async fn clones_and_separate_clients_share_one_bucket() {
    let server = FakeShopify::start(Options {
        products: products(40, 1, 0),
        bucket: bucket(400.0, 1000.0, None),
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .page_size(5)
        .build()
        .unwrap();
    // A separately built client for the same store sees what the first learnt.
    let other = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    client.list_page(PageRequest::first()).await.unwrap();
    assert!(other.throttle_status().is_some());

    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                let v: Vec<_> = c.stream_products().try_collect().await?;
                Ok::<_, CatalogError>(v.len())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 40);
    }
    let c = server.fake.counters();
    // 33 page requests sharing 400 points: pacing, not THROTTLED, does the work.
    assert!(c.throttled <= 1, "{c:?}");
}

#[tokio::test]
async fn throttling_reaches_the_caller_only_when_the_budget_is_spent() {
    let server = FakeShopify::start(Options {
        products: products(3, 1, 0),
        bucket: bucket(1000.0, 10.0, Some(0.0)),
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .max_retries(0)
        .build()
        .unwrap();
    let err = client
        .list_page(PageRequest::first().with_limit(2))
        .await
        .unwrap_err();
    match err {
        CatalogError::RateLimited {
            retry_after: Some(wait),
        } => {
            // (62 - 0) / 10 = 6.2 s.
            assert!(wait >= Duration::from_secs(6), "{wait:?}");
        }
        other => panic!("{other:?}"),
    }
}
