//! Getting products, variable products with paged variations, currency.

use catalog_core::{Catalog, CatalogError, CurrencyCode, PageRequest, ProductStatus};
use catalog_woocommerce::AuthMode;

use crate::fake::{Accept, FakeStore};
use crate::support::{builder, client, start};

#[tokio::test]
async fn simple_product_from_docs_sample() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.insert(
        serde_json::from_str(include_str!("../fixtures/product-794.docs-sample.json")).unwrap(),
    );
    let c = client(&server, AuthMode::Basic);
    let p = c.get_product("794").await.unwrap();
    // The store's identity is its URL with https, as webhook deliveries
    // name it (`store_identity`), though calls go to the fake's http URL.
    let identity = server.uri().replacen("http://", "https://", 1);
    assert_eq!(p.store, identity);
    assert_eq!(p.id, format!("woocommerce:{identity}:794"));
    assert_eq!(p.title, "Premium Quality");
    assert_eq!(p.status, ProductStatus::Active);
    assert_eq!(p.variants.len(), 1);
    let price = p.variants[0].price.as_ref().unwrap();
    assert_eq!(price.amount().to_string(), "21.99");
    assert_eq!(
        price.currency().as_str(),
        "EUR",
        "read from the settings endpoint"
    );
    assert_eq!(
        p.raw["permalink"],
        "https://example.com/product/premium-quality-19/"
    );
}

#[tokio::test]
async fn configured_currency_skips_the_settings_call() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(5, "");
    let c = builder(&server, AuthMode::Basic)
        .currency(CurrencyCode::new("jpy").unwrap())
        .build()
        .unwrap();
    let p = c.get_product("5").await.unwrap();
    assert_eq!(p.variants[0].price, None, "empty price is no price");
    let reqs = server.received_requests().await.unwrap();
    assert!(reqs.iter().all(|r| !r.url.path().contains("settings")));
    assert_eq!(c.currency().await.unwrap().as_str(), "JPY");
}

#[tokio::test]
async fn variable_product_with_paged_variations() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_variable(799, 230);
    let c = client(&server, AuthMode::Basic);
    let p = c.get_product("799").await.unwrap();
    assert_eq!(p.product_type.as_deref(), Some("variable"));
    assert_eq!(p.variants.len(), 230);
    let ids: Vec<u64> = p.variants.iter().map(|v| v.id.parse().unwrap()).collect();
    assert_eq!(ids, (799_001..=799_230).collect::<Vec<_>>());
    assert_eq!(p.variants[0].sku.as_deref(), Some("SKU-799001"));
    assert_eq!(
        p.variants[0].price.as_ref().unwrap().amount().to_string(),
        "1.50"
    );
    assert_eq!(p.options[0].name, "Size");
    let pages: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/variations"))
        .filter_map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
}

/// A server (or a cache in front of it) that answers every variation page
/// with the first, and claims a million pages, is caught at the second
/// page: it used to be followed for 10,000 requests, every copy kept.
#[tokio::test]
async fn variation_pages_that_repeat_are_an_error_not_a_million_requests() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_variable(799, 230);
    store
        .repeat_variation_page
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let c = builder(&server, AuthMode::Basic)
        .concurrency(1)
        .build()
        .unwrap();
    let err = c.get_product("799").await.unwrap_err();
    assert!(matches!(err, CatalogError::Decode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("repeats or shuffles pages"),
        "{err}"
    );
    let variation_requests = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/variations"))
        .count();
    assert!(variation_requests <= 3, "{variation_requests} requests");
    // Without the header too (one page after another).
    store
        .hide_variation_pages
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = c.get_product("799").await.unwrap_err();
    assert!(
        err.to_string().contains("repeats or shuffles pages"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_product_is_not_found() {
    let (server, _store) = start(FakeStore::new(Accept::Https)).await;
    let c = client(&server, AuthMode::Basic);
    let err = c.get_product("12345").await.unwrap_err();
    assert!(
        matches!(&err, CatalogError::NotFound(m) if m.contains("Invalid ID.")),
        "{err:?}"
    );
    let err = c.get_product("abc").await.unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)));
}

#[tokio::test]
async fn variation_id_is_not_a_product() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/variation-732.docs-sample.json")).unwrap();
    v["type"] = "variation".into();
    v["parent_id"] = 22.into();
    store.insert(v);
    let c = client(&server, AuthMode::Basic);
    let err = c.get_product("732").await.unwrap_err();
    assert!(
        matches!(&err, CatalogError::NotFound(m) if m.contains("variation of product 22")),
        "{err:?}"
    );
}

/// Follows `list_page` cursors from the first page of `limit`, returning
/// the size of each page and every id in order. A last page that is empty
/// is left out of the sizes: a full window cannot tell that nothing follows.
async fn walk_pages(
    c: &catalog_woocommerce::WooCommerceClient,
    limit: u32,
) -> (Vec<usize>, Vec<u64>) {
    let mut req = PageRequest::first().with_limit(limit);
    let mut sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        let page = c.list_page(req.clone()).await.unwrap();
        assert_eq!(page.total, Some(57));
        sizes.push(page.items.len());
        seen.extend(
            page.items
                .iter()
                .map(|p| p.platform_id.parse::<u64>().unwrap()),
        );
        match page.next {
            Some(next) => req = PageRequest::first().after(next),
            None => break,
        }
    }
    if sizes.last() == Some(&0) {
        sizes.pop();
    }
    (sizes, seen)
}

#[tokio::test]
async fn list_page_gives_the_size_asked_reports_totals_and_follows_cursors() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    let all: Vec<u64> = (1..=57).map(|i| i * 7).collect();
    for &id in &all {
        store.add_simple(id, "3.00");
    }
    let c = client(&server, AuthMode::Basic);
    let (sizes, seen) = walk_pages(&c, 20).await;
    assert_eq!(seen, all);
    assert_eq!(sizes, [20, 20, 17]);
    let (sizes, seen) = walk_pages(&c, 1).await;
    assert_eq!(seen, all);
    assert_eq!(sizes, vec![1; 57]);
    // WooCommerce's largest page is 100; each window re-reads 5 products.
    let (sizes, seen) = walk_pages(&c, 500).await;
    assert_eq!(seen, all);
    assert_eq!(sizes, [57]);
    // Foreign cursors are refused.
    let bad = c
        .list_page(PageRequest::first().after(catalog_core::Cursor::new("nope")))
        .await
        .unwrap_err();
    assert!(matches!(bad, CatalogError::Configuration(_)));
}

/// Pages keep their size while products are deleted between them.
#[tokio::test]
async fn list_page_sizes_hold_while_products_are_deleted() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    for id in 1..=60 {
        store.add_simple(id, "3.00");
    }
    let c = client(&server, AuthMode::Basic);
    let mut req = PageRequest::first().with_limit(10);
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let page = c.list_page(req.clone()).await.unwrap();
        sizes.push(page.items.len());
        seen.extend(
            page.items
                .iter()
                .map(|p| p.platform_id.parse::<u64>().unwrap()),
        );
        // Between pages, 7 products already listed are deleted: more than
        // the 5 each window re-reads.
        let listed: Vec<u64> = seen.iter().rev().take(7).copied().collect();
        for id in listed {
            store.remove(id);
        }
        match page.next {
            Some(next) => req = PageRequest::first().after(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=60).collect::<Vec<u64>>());
    assert_eq!(sizes, vec![10; 6]);
}

#[tokio::test]
async fn reads_and_webhooks_share_the_store_identity() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    let c = builder(&server, AuthMode::Basic)
        .store_url("https://Shop.Example.com/")
        .base_url(server.uri())
        .build()
        .unwrap();
    let p = c.get_product("794").await.unwrap();
    assert_eq!(p.store, "https://shop.example.com");
    assert_eq!(p.id, "woocommerce:https://shop.example.com:794");
}

#[tokio::test]
async fn docs_list_sample_streams_in_id_order() {
    use futures::TryStreamExt;
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    let list: Vec<serde_json::Value> =
        serde_json::from_str(include_str!("../fixtures/products-list.docs-sample.json")).unwrap();
    for p in list {
        store.insert(p);
    }
    let variation: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/variation-732.docs-sample.json")).unwrap();
    store
        .variations
        .lock()
        .unwrap()
        .insert(799, vec![variation]);
    let c = client(&server, AuthMode::Basic);
    let products: Vec<_> = c.stream_products().try_collect().await.unwrap();
    let ids: Vec<&str> = products.iter().map(|p| p.platform_id.as_str()).collect();
    assert_eq!(ids, ["794", "799"]);
    let variable = &products[1];
    assert_eq!(variable.title, "Ship Your Idea");
    assert_eq!(variable.variants.len(), 1);
    assert_eq!(variable.variants[0].options[0].value, "Black");
    assert_eq!(
        variable.variants[0].price.as_ref().unwrap().to_string(),
        "9.00 EUR"
    );
}
