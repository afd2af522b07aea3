//! Single product, pages, cursors, streaming, follow-up connections, not found.

use catalog_core::{Catalog, CatalogError, PageRequest, ProductStatus};
use futures::{StreamExt, TryStreamExt};

use crate::fake::{FakeProduct, FakeShopify, FollowUps, Options};
use crate::support::{STORE, builder, products};

#[tokio::test]
async fn product_maps_to_the_core_model() {
    let server = FakeShopify::start(Options {
        products: products(2, 2, 1),
        currency: "EUR",
        ..Options::default()
    })
    .await;
    let client = builder(&server).build().unwrap();
    let p = client.get_product("7000000000000000002").await.unwrap();
    assert_eq!(p.id, format!("shopify:{STORE}:7000000000000000002"));
    assert_eq!(p.platform_id, "7000000000000000002");
    assert_eq!(
        p.global_id.as_deref(),
        Some("gid://shopify/Product/7000000000000000002")
    );
    assert_eq!(p.title, "Product 2");
    assert_eq!(p.status, ProductStatus::Active);
    assert_eq!(p.tags, vec!["fake", "n2"]);
    assert_eq!(p.options[0].name, "Size");
    assert_eq!(p.variants.len(), 2);
    let v = &p.variants[0];
    assert_eq!(v.id, "8000000000000002000");
    assert_eq!(v.sku, None, "blank SKU is None");
    assert_eq!(p.variants[1].sku.as_deref(), Some("SKU-2-1"));
    let price = v.price.as_ref().unwrap();
    assert_eq!(price.amount().to_string(), "10.02");
    assert_eq!(price.currency().as_str(), "EUR");
    assert_eq!(p.images.len(), 1);
    assert_eq!(p.images[0].id.as_deref(), Some("9000000000000002000"));
    assert_eq!(p.images[0].width, Some(800));
    // The currency was asked once.
    client.get_product("7000000000000000001").await.unwrap();
    assert_eq!(server.fake.op_count("ShopCurrency"), 1);
}

#[tokio::test]
async fn product_null_is_not_found() {
    let server = FakeShopify::start(Options::default()).await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let err = client.get_product("42").await.unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");
    let err = client.get_product("not-an-id").await.unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");
    // The malformed id never reached the server.
    assert_eq!(server.fake.op_count("GetProduct"), 1);
}

#[tokio::test]
async fn pages_follow_cursors_to_the_end() {
    let server = FakeShopify::start(Options {
        products: products(5, 1, 0),
        ..Options::default()
    })
    .await;
    let client = builder(&server).build().unwrap();
    let first = client
        .list_page(PageRequest::first().with_limit(2))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    let cursor = first.next.clone().expect("more pages");
    let second = client
        .list_page(PageRequest::first().with_limit(2).after(cursor))
        .await
        .unwrap();
    assert_eq!(second.items[0].platform_id, "7000000000000000003");
    let last = client
        .list_page(
            PageRequest::first()
                .with_limit(2)
                .after(second.next.unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(last.items.len(), 1);
    assert!(last.next.is_none());
}

#[tokio::test]
async fn stream_reads_every_product_in_order() {
    let server = FakeShopify::start(Options {
        products: products(23, 2, 1),
        ..Options::default()
    })
    .await;
    let client = builder(&server).page_size(5).build().unwrap();
    let all: Vec<_> = client.stream_products().try_collect().await.unwrap();
    let ids: Vec<_> = all.iter().map(|p| p.platform_id.clone()).collect();
    let expected: Vec<_> = (1..=23)
        .map(|n| (7_000_000_000_000_000_000u64 + n).to_string())
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(server.fake.op_count("ListProducts"), 5);
}

#[tokio::test]
async fn large_products_are_completed_with_their_own_connections() {
    let mut catalog = products(3, 1, 1);
    catalog[1] = FakeProduct::numbered(2, 300, 7);
    let server = FakeShopify::start(Options {
        products: catalog,
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .variants_per_product(10)
        .media_per_product(2)
        .build()
        .unwrap();
    let all: Vec<_> = client.stream_products().try_collect().await.unwrap();
    let big = &all[1];
    assert_eq!(big.variants.len(), 300);
    let ids: Vec<_> = big.variants.iter().map(|v| v.id.clone()).collect();
    let expected: Vec<_> = (0..300u64)
        .map(|v| (8_000_000_000_000_000_000u64 + 2000 + v).to_string())
        .collect();
    assert_eq!(ids, expected, "variants complete and in order");
    assert_eq!(big.images.len(), 7);
    // 10 on the page, then 250 + 40 in two follow-ups; media 2 then 5 in one.
    assert_eq!(server.fake.op_count("ProductVariants"), 2);
    assert_eq!(server.fake.op_count("ProductMedia"), 1);
    assert_eq!(all[0].variants.len(), 1);
    assert_eq!(all[2].images.len(), 1);
}

/// A product whose variant or media pages never end, by a cycle of
/// cursors or by new ones without end, is an error after a bounded number
/// of requests, not a loop that holds memory for ever.
#[tokio::test]
async fn follow_up_pages_that_cycle_or_never_end_are_errors() {
    for (follow_ups, message) in [
        (
            FollowUps::Cycle,
            "product 7000000000000000001: Shopify repeated a cursor",
        ),
        (FollowUps::Endless, "more than 64 pages of variants"),
    ] {
        let server = FakeShopify::start(Options {
            products: vec![FakeProduct::numbered(1, 300, 1)],
            follow_ups,
            ..Options::default()
        })
        .await;
        let client = builder(&server).variants_per_product(10).build().unwrap();
        let all: Vec<_> = client.stream_products().collect().await;
        let err = all
            .iter()
            .find_map(|r| r.as_ref().err())
            .unwrap_or_else(|| panic!("{follow_ups:?}: no error"));
        assert!(err.to_string().contains(message), "{follow_ups:?}: {err}");
        assert!(
            server.fake.op_count("ProductVariants") <= 64,
            "{follow_ups:?}: {} requests",
            server.fake.op_count("ProductVariants")
        );
        let err = client.get_product("7000000000000000001").await.unwrap_err();
        assert!(err.to_string().contains(message), "{follow_ups:?}: {err}");
    }
}

/// A follow-up request the store cannot serve (a proxy's 502 after the
/// retries, a maintenance page) ends the listing, as any failed request
/// does, and the error names the product whose pages it was.
#[tokio::test]
async fn a_failed_follow_up_request_names_its_product() {
    for (follow_ups, says) in [
        (FollowUps::Unavailable, "HTTP 502"),
        (FollowUps::HtmlPage, "HTML"),
    ] {
        let server = FakeShopify::start(Options {
            products: vec![
                FakeProduct::numbered(1, 1, 1),
                FakeProduct::numbered(2, 30, 1),
            ],
            follow_ups,
            ..Options::default()
        })
        .await;
        let client = builder(&server)
            .variants_per_product(10)
            .max_retries(1)
            .build()
            .unwrap();
        let items: Vec<_> = client.stream_products().collect().await;
        let err = items
            .iter()
            .find_map(|r| r.as_ref().err())
            .unwrap_or_else(|| panic!("{follow_ups:?}: no error"));
        let shown = err.to_string();
        assert!(
            shown.contains(says)
                && shown.contains("product 7000000000000000002's variants follow-up page"),
            "{follow_ups:?}: {shown}"
        );
        assert!(
            !matches!(err, CatalogError::UnreadableProduct { .. }),
            "the store's failure, not the product's data: {err:?}"
        );
    }
}

/// One product whose price is not a number does not make the catalog
/// unreadable: paged and bulk streams yield `UnreadableProduct` in its
/// place and go on; `list_page` names it in `skipped`; `get_product` of it
/// is the decoding error itself.
#[tokio::test]
async fn an_unreadable_product_is_skipped_and_named_the_rest_is_read() {
    let mut catalog = products(5, 1, 1);
    catalog[2].variants[0].price = "12,50".into();
    let server = FakeShopify::start(Options {
        products: catalog,
        ..Options::default()
    })
    .await;
    let bad = "7000000000000000003";
    for mode in [
        catalog_shopify::StreamMode::Paged,
        catalog_shopify::StreamMode::Bulk,
    ] {
        let client = builder(&server)
            .page_size(2)
            .stream_mode(mode)
            .build()
            .unwrap();
        let items: Vec<_> = client.stream_products().collect().await;
        assert_eq!(items.len(), 5, "{mode:?}");
        let read = items.iter().filter(|r| r.is_ok()).count();
        assert_eq!(read, 4, "{mode:?}");
        let skipped: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            matches!(skipped[..], [CatalogError::UnreadableProduct { id, path, .. }]
                if id == bad && path.contains("price")),
            "{mode:?}: {skipped:?}"
        );
    }
    let client = builder(&server).build().unwrap();
    let page = client
        .list_page(PageRequest::first().with_limit(5))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 4);
    assert_eq!(page.skipped.len(), 1);
    assert_eq!(page.skipped[0].id, bad);
    let err = client.get_product(bad).await.unwrap_err();
    assert!(matches!(err, CatalogError::Decode { .. }), "{err:?}");
}

/// A node of a product's follow-up variant page that does not decode is
/// that product's data: the product is skipped, the listing goes on (as
/// for a bad variant on the product's own page).
#[tokio::test]
async fn a_bad_variant_on_a_follow_up_page_skips_its_product_only() {
    let mut catalog = products(3, 1, 1);
    catalog[1] = FakeProduct::numbered(2, 30, 1);
    let server = FakeShopify::start(Options {
        products: catalog,
        bad_follow_up_variant: true,
        ..Options::default()
    })
    .await;
    let client = builder(&server).variants_per_product(10).build().unwrap();
    let items: Vec<_> = client.stream_products().collect().await;
    let read: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|p| p.platform_id.clone()))
        .collect();
    assert_eq!(read, ["7000000000000000001", "7000000000000000003"]);
    let skipped: Vec<_> = items.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        matches!(skipped[..], [CatalogError::UnreadableProduct { id, path, .. }]
            if id == "7000000000000000002" && path.contains("variants.nodes[0].inventoryQuantity")),
        "{skipped:?}"
    );
    let err = client.get_product("7000000000000000002").await.unwrap_err();
    assert!(matches!(err, CatalogError::Decode { .. }), "{err:?}");
}

/// A product deleted between its page and its follow-up pages is left out
/// of the listing, as the WooCommerce client does; `get_product` of it is
/// `NotFound`.
#[tokio::test]
async fn a_product_deleted_before_its_follow_up_pages_is_left_out() {
    let mut catalog = products(3, 1, 1);
    catalog[1] = FakeProduct::numbered(2, 30, 1);
    let server = FakeShopify::start(Options {
        products: catalog,
        vanish_on_follow_up: Some(7_000_000_000_000_000_002),
        ..Options::default()
    })
    .await;
    let client = builder(&server).variants_per_product(10).build().unwrap();
    let all: Vec<_> = client.stream_products().try_collect().await.unwrap();
    let ids: Vec<_> = all.iter().map(|p| p.platform_id.as_str()).collect();
    assert_eq!(ids, ["7000000000000000001", "7000000000000000003"]);
    let err = client.get_product("7000000000000000002").await.unwrap_err();
    assert!(matches!(err, CatalogError::NotFound(_)), "{err:?}");
}
