//! Streaming every product: concurrency, order, catalog changes mid-listing.

use std::sync::atomic::Ordering;

use catalog_core::Catalog;
use catalog_woocommerce::AuthMode;
use futures::TryStreamExt;

use crate::fake::{Accept, FakeStore};
use crate::support::{builder, start};

fn ids(products: &[catalog_core::Product]) -> Vec<u64> {
    products
        .iter()
        .map(|p| p.platform_id.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn concurrent_stream_returns_every_product_once_in_id_order() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    // Insert in scrambled order; the store orders by id.
    let mut all: Vec<u64> = (1..=1000).map(|i| i * 3 + 1).collect();
    all.reverse();
    for &id in &all {
        if id % 10 == 0 {
            store.add_variable(id, 2);
        } else {
            store.add_simple(id, "9.99");
        }
    }
    all.sort_unstable();
    let c = builder(&server, AuthMode::Basic)
        .concurrency(6)
        .build()
        .unwrap();
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    assert_eq!(ids(&products), all);
    let variable = products
        .iter()
        .filter(|p| p.product_type.as_deref() == Some("variable"));
    assert!(variable.clone().count() > 0);
    assert!(variable.clone().all(|p| p.variants.len() == 2));
    // 1000 products, windows of 100 stepping by 95: 11 list requests.
    assert_eq!(store.list_requests.load(Ordering::SeqCst), 11);
}

#[tokio::test]
async fn empty_catalog_streams_nothing() {
    let (server, _store) = start(FakeStore::new(Accept::Https)).await;
    let c = builder(&server, AuthMode::Basic).build().unwrap();
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    assert!(products.is_empty());
}

#[tokio::test]
async fn deletions_during_the_listing_skip_no_survivor() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    let initial: Vec<u64> = (1..=300).collect();
    for &id in &initial {
        store.add_simple(id, "1.00");
    }
    // After each list request, trash the 8 lowest ids (more than the
    // overlap): with plain pages this skips products.
    *store.after_list.lock().unwrap() = Some(Box::new(|_, s: &FakeStore| {
        let low: Vec<u64> = s
            .products
            .lock()
            .unwrap()
            .iter()
            .take(8)
            .filter_map(|p| p["id"].as_u64())
            .collect();
        for id in low {
            s.remove(id);
        }
    }));
    let c = builder(&server, AuthMode::Basic)
        .page_size(20)
        .page_overlap(2)
        .concurrency(1)
        .build()
        .unwrap();
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    let got = ids(&products);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "id order, no repeats");
    // 300 products in windows of 20 stepping by 18 plan 17 requests; the
    // extra ones are the re-reads that recovered from the shifts.
    assert!(store.list_requests.load(Ordering::SeqCst) > 17);
    let survivors: Vec<u64> = store
        .products
        .lock()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    assert!(survivors.len() < 300);
    for s in survivors {
        assert!(got.contains(&s), "survivor {s} skipped");
    }
}

#[tokio::test]
async fn restores_and_additions_during_the_listing_repeat_nothing() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in (1..=200).map(|i| i * 2) {
        store.add_simple(id, "1.00");
    }
    // After each list request, restore an old (odd) id and add a new one.
    *store.after_list.lock().unwrap() = Some(Box::new(|n, s: &FakeStore| {
        s.add_simple(2 * n as u64 + 1, "1.00");
        s.add_simple(10_000 + n as u64, "1.00");
    }));
    let c = builder(&server, AuthMode::Basic)
        .page_size(25)
        .concurrency(4)
        .build()
        .unwrap();
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    let got = ids(&products);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: no repeats"
    );
    for id in (1..=200).map(|i| i * 2) {
        assert!(got.contains(&id), "{id} skipped");
    }
    assert!(got.contains(&10_000), "products added at the end are read");
}

#[tokio::test]
async fn concurrency_is_used_and_bounded() {
    use std::time::{Duration, Instant};
    let (server, store) =
        start(FakeStore::new(Accept::Https).with_delay(Duration::from_millis(100))).await;
    for id in 1..=30 {
        store.add_simple(id, "1.00");
    }
    // Windows of 2 stepping by 1: 30 list requests of 100 ms each.
    let c = builder(&server, AuthMode::Basic)
        .currency(catalog_core::CurrencyCode::new("EUR").unwrap())
        .page_size(2)
        .page_overlap(1)
        .concurrency(4)
        .build()
        .unwrap();
    let started = Instant::now();
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(ids(&products), (1..=30).collect::<Vec<_>>());
    assert_eq!(store.list_requests.load(Ordering::SeqCst), 30);
    // At most 4 in flight: the first window, then 29 in rounds of 4 (8 rounds).
    assert!(
        elapsed >= Duration::from_millis(850),
        "{elapsed:?}: more than 4 requests in flight"
    );
    // Sequential would take 3 s.
    assert!(
        elapsed < Duration::from_millis(2500),
        "{elapsed:?}: requests not concurrent"
    );
}

/// `X-WP-Total` is the server's word: a wildly wrong one (a proxy, a
/// plugin) neither plans a trillion offsets up front nor loses products;
/// the walk ends at the first short window.
#[tokio::test]
async fn an_absurd_total_header_is_not_trusted() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=250 {
        store.add_simple(id, "1.00");
    }
    *store.list_total.lock().unwrap() = Some("99999999999999".into());
    let c = builder(&server, AuthMode::Basic)
        .concurrency(2)
        .build()
        .unwrap();
    let products: Vec<_> = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        c.stream_products().try_collect::<Vec<_>>(),
    )
    .await
    .expect("the listing ended")
    .unwrap();
    assert_eq!(ids(&products), (1..=250).collect::<Vec<u64>>());
    assert!(
        store.list_requests.load(Ordering::SeqCst) < 20,
        "{} list requests",
        store.list_requests.load(Ordering::SeqCst)
    );
}

/// A store whose plugin imposes its own product order cannot be listed
/// without skips: the stream says so instead of ending early with a few
/// products, and `list_page` does too.
#[tokio::test]
async fn a_store_that_ignores_the_id_order_is_an_error_not_a_short_listing() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=250 {
        store.add_simple(id, "1.00");
    }
    store.own_order.store(true, Ordering::SeqCst);
    let c = builder(&server, AuthMode::Basic).build().unwrap();
    let err = c
        .stream_products()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, catalog_core::CatalogError::Decode { message, .. } if message.contains("id order")),
        "{err:?}"
    );
    let err = c
        .list_page(catalog_core::PageRequest::first())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("id order"), "{err}");
}

/// A cache that answers every offset with the first page must not make the
/// stream walk offsets forever.
#[tokio::test]
async fn a_store_that_repeats_its_first_page_is_an_error_not_an_endless_walk() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=250 {
        store.add_simple(id, "1.00");
    }
    store.first_page_only.store(true, Ordering::SeqCst);
    let c = builder(&server, AuthMode::Basic)
        .concurrency(2)
        .build()
        .unwrap();
    let results: Vec<_> = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures::StreamExt::collect::<Vec<_>>(c.stream_products()),
    )
    .await
    .expect("the listing ended");
    let listed: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|p| p.platform_id.parse().unwrap())
        .collect();
    assert_eq!(listed, (1..=100).collect::<Vec<u64>>(), "no repeats");
    match results.last() {
        Some(Err(catalog_core::CatalogError::Decode { message, .. })) => {
            assert!(message.contains("already listed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.list_requests.load(Ordering::SeqCst) < 12);
}

/// Without `X-WP-TotalPages` on variation pages (a proxy dropped it), every
/// variation is still read: pages follow until a short one.
#[tokio::test]
async fn variations_without_a_page_count_are_read_to_the_end() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_variable(7, 250);
    store.hide_variation_pages.store(true, Ordering::SeqCst);
    let c = builder(&server, AuthMode::Basic).build().unwrap();
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    assert_eq!(products.len(), 1);
    assert_eq!(products[0].variants.len(), 250);
}

/// One product whose price is not a number is `UnreadableProduct` in its
/// place and the listing goes on, in the stream and in `list_page`'s
/// `skipped`.
#[tokio::test]
async fn an_unreadable_product_is_skipped_and_named_the_rest_is_read() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=250 {
        store.add_simple(id, if id == 120 { "12,50" } else { "1.00" });
    }
    let c = builder(&server, AuthMode::Basic).build().unwrap();
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(c.stream_products()).await;
    assert_eq!(items.len(), 250);
    let skipped: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        matches!(skipped[..], [catalog_core::CatalogError::UnreadableProduct { id, .. }] if id == "120"),
        "{skipped:?}"
    );
    let mut request = catalog_core::PageRequest::first().with_limit(50);
    let mut named = Vec::new();
    let mut read = 0;
    loop {
        let page = c.list_page(request.clone()).await.unwrap();
        read += page.items.len();
        named.extend(page.skipped.iter().map(|s| s.id.clone()));
        match page.next {
            Some(next) => request = request.after(next),
            None => break,
        }
    }
    assert_eq!((read, named), (249, vec!["120".to_owned()]));
}

/// A store-wide failure is not every product's: the currency endpoint (or
/// the variations one) answering a maintenance page ends the listing with
/// one error, where every product used to be reported unreadable.
#[tokio::test]
async fn a_store_wide_failure_ends_the_listing_not_skips_every_product() {
    for path in ["/settings/general/woocommerce_currency", "/variations"] {
        let (server, store) = start(FakeStore::new(Accept::Https)).await;
        for id in 1..=150 {
            store.add_simple(id, "1.00");
        }
        store.add_variable(151, 3);
        wiremock::Mock::given(wiremock::matchers::path_regex(format!(
            "{}$",
            regex_escape(path)
        )))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string("<html><title>Maintenance</title></html>"),
        )
        .with_priority(1)
        .mount(&server)
        .await;
        let c = builder(&server, AuthMode::Basic).build().unwrap();
        let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(c.stream_products()).await;
        let errors: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            matches!(errors[..], [catalog_core::CatalogError::Decode { .. }]),
            "{path}: {errors:?}"
        );
        assert!(
            matches!(items.last(), Some(Err(_))),
            "{path}: the error ends it"
        );
        let err = c
            .list_page(catalog_core::PageRequest::first())
            .await
            .map(|p| p.skipped.len());
        if path.contains("currency") {
            assert!(err.is_err(), "{path}: {err:?}");
        }
    }
}

fn regex_escape(path: &str) -> String {
    path.replace('/', "\\/")
}

/// A listed product with a field of the wrong type (a price object, a
/// stock quantity as text) is skipped by id, not the window it came in.
#[tokio::test]
async fn a_listed_product_that_does_not_decode_is_skipped_by_id() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=130 {
        let mut p = crate::fake::simple_product(id, "1.00");
        match id {
            7 => p["price"] = serde_json::json!({"a": 1}),
            100 => p["stock_quantity"] = serde_json::json!("5"),
            _ => {}
        }
        store.insert(p);
    }
    let c = builder(&server, AuthMode::Basic).build().unwrap();
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(c.stream_products()).await;
    let read = items.iter().filter(|r| r.is_ok()).count();
    let skipped: Vec<String> = items
        .iter()
        .filter_map(|r| match r {
            // The field named, though serde reads it through a flatten.
            Err(catalog_core::CatalogError::UnreadableProduct { id, path, .. }) => {
                assert!(
                    path.ends_with(".price") || path.ends_with(".stock_quantity"),
                    "{path}"
                );
                Some(id.clone())
            }
            Err(other) => panic!("{other}"),
            Ok(_) => None,
        })
        .collect();
    assert_eq!(
        (read, skipped),
        (128, vec!["7".to_owned(), "100".to_owned()])
    );
}

/// A variation that does not decode is its product's data: that product is
/// skipped, the listing goes on.
#[tokio::test]
async fn a_variation_that_does_not_decode_skips_its_product_only() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=20 {
        store.add_simple(id, "1.00");
    }
    store.add_variable(21, 3);
    for id in 22..=30 {
        store.add_simple(id, "1.00");
    }
    if let Some(vs) = store.variations.lock().unwrap().get_mut(&21) {
        vs[1]["price"] = serde_json::json!({"a": 1});
    }
    let c = builder(&server, AuthMode::Basic).build().unwrap();
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(c.stream_products()).await;
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 29);
    let skipped: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        matches!(skipped[..], [catalog_core::CatalogError::UnreadableProduct { id, path, .. }]
            if id == "21" && path == "variation 21002: price"),
        "{skipped:?}"
    );
    let err = c.get_product("21").await.unwrap_err();
    assert!(
        matches!(err, catalog_core::CatalogError::Decode { .. }),
        "{err:?}"
    );
}
