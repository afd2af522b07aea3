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
    let client = usd(&server).build().unwrap();
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
    let client = usd(&server).build().unwrap();
    let t = Instant::now();
    let page = client
        .list_page(PageRequest::first().with_limit(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    // requested = 3 + 2 * 60 (default variants and media) = 123 points at
    // 500/s = 246 ms.
    assert!(
        t.elapsed() >= Duration::from_millis(240),
        "{:?}",
        t.elapsed()
    );
    let c = server.fake.counters();
    assert_eq!(c.throttled, 1);
    assert_eq!(c.graphql, 2);
}

#[tokio::test]
async fn pacing_keeps_a_stream_out_of_throttled() {
    // 20 pages of 32 actual points (73 requested: 3 + 5 * 14 with one
    // variant and one medium a product) through a 200-point bucket at
    // 1000/s: the client must wait ~0.44 s in total, and does so before
    // each request instead of being THROTTLED.
    let server = FakeShopify::start(Options {
        products: products(100, 1, 0),
        bucket: bucket(200.0, 1000.0, None),
        ..Options::default()
    })
    .await;
    let client = usd(&server)
        .page_size(5)
        .variants_per_product(1)
        .media_per_product(1)
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
    let client = usd(&server).page_size(5).build().unwrap();
    // A separately built client for the same store sees what the first learnt.
    let other = usd(&server).build().unwrap();
    // Another app on the same store has a bucket of its own ("the limit
    // applies per app and store pair").
    let other_app = builder(&server)
        .client_credentials(crate::fake::CLIENT_ID, crate::fake::CLIENT_SECRET)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    client.list_page(PageRequest::first()).await.unwrap();
    assert!(other.throttle_status().is_some());
    assert!(other_app.throttle_status().is_none());

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
    let client = usd(&server).max_retries(0).build().unwrap();
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

/// Every product's platform id, in the order streamed.
/// The fake's client, prices in USD (the fake's products carry no currency).
#[allow(clippy::unwrap_used)]
fn usd(server: &crate::fake::Running) -> catalog_shopify::ShopifyClientBuilder {
    builder(server).currency("USD".parse().unwrap())
}

#[allow(clippy::unwrap_used)]
async fn streamed_ids(client: &catalog_shopify::ShopifyClient) -> Vec<String> {
    client
        .stream_products()
        .map_ok(|p| p.platform_id)
        .try_collect()
        .await
        .unwrap()
}

#[test]
fn the_fake_prices_queries_by_the_documented_rules() {
    use crate::fake::query_cost::requested_cost;
    use serde_json::json;
    // Shopify's example: 2 + 10 * (1 + (2 + 5 * 1)) = 82.
    let q = "query { products(first: 10) { edges { node { title variants(first: 5) { edges { node { price } } } } } } }";
    assert_eq!(requested_cost(q, &json!({})), 82.0);
    // An object 1, pageInfo 1, an inline fragment its selections, a
    // variable `first`.
    let q = "query Q($n: Int!) { shop { name } products(first: $n) { pageInfo { hasNextPage } nodes { id category { id } ... on Product { options { name } } } } }";
    assert_eq!(
        requested_cost(q, &json!({"n": 3})),
        1.0 + 2.0 + 1.0 + 3.0 * 3.0
    );
}

#[tokio::test]
async fn default_pages_fit_the_cost_shopify_computes_from_the_query() {
    // The fake prices the query text the client sends by the documented
    // rules (every object the fragment selects) and refuses > 1000 points.
    let server = FakeShopify::start(Options {
        products: products(40, 3, 1),
        ..Options::default()
    })
    .await;
    let client = usd(&server).build().unwrap();
    assert_eq!(client.capabilities().max_page_size, 16);
    assert_eq!(streamed_ids(&client).await.len(), 40);
    let c = server.fake.counters();
    assert!(c.cost_refused.is_empty(), "{c:?}");
    assert!(c.highest_cost <= 1000.0, "{c:?}");
    // As large as variants and media allow: 100 variants a product.
    let client = usd(&server)
        .variants_per_product(100)
        .page_size(250)
        .build()
        .unwrap();
    assert_eq!(streamed_ids(&client).await.len(), 40);
    let c = server.fake.counters();
    assert!(c.cost_refused.is_empty(), "{c:?}");
    assert!(c.highest_cost > 800.0, "pages as large as fit: {c:?}");
}

#[tokio::test]
async fn a_page_shopify_prices_higher_is_retried_smaller_and_the_listing_completes() {
    // Shopify may price fields by hand: 40 more points a product than the
    // documented rules give, so the estimated 16 a page cost 1603.
    let server = FakeShopify::start(Options {
        products: products(40, 1, 0),
        manual_product_cost: 40.0,
        ..Options::default()
    })
    .await;
    let client = usd(&server).build().unwrap();
    let ids = streamed_ids(&client).await;
    let expected: Vec<String> = products(40, 1, 0)
        .iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(ids, expected, "every product once, in order");
    // One refusal, then pages of 16 * 900 / 1603 = 8 for the client's life.
    let c = server.fake.counters();
    assert_eq!(c.cost_refused, [16], "{c:?}");
    assert_eq!(client.capabilities().max_page_size, 8);
    assert_eq!(c.ops["ListProducts"], 1 + 5);
}

#[tokio::test]
async fn a_single_product_over_the_limit_is_a_configuration_error() {
    let server = FakeShopify::start(Options {
        products: products(3, 1, 0),
        manual_product_cost: 2000.0,
        ..Options::default()
    })
    .await;
    let client = usd(&server).build().unwrap();
    let err = client.list_page(PageRequest::first()).await.unwrap_err();
    assert!(
        matches!(&err, CatalogError::Configuration(m) if m.contains("exceeds the single query max cost")),
        "{err:?}"
    );
    // Smaller pages were tried down to one product, then it gave up.
    let refused = server.fake.counters().cost_refused;
    assert_eq!(refused.first(), Some(&16));
    assert_eq!(refused.last(), Some(&1));
}
