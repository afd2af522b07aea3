//! Bulk operation lifecycle, JSONL reassembly, failures.

use catalog_core::{Catalog, CatalogError, Product};
use catalog_shopify::StreamMode;
use futures::TryStreamExt;

use crate::fake::{FakeProduct, FakeShopify, Options};
use crate::support::{builder, products};

fn without_raw(mut products: Vec<Product>) -> Vec<Product> {
    for p in &mut products {
        p.raw = serde_json::Value::Null;
    }
    products
}

#[tokio::test]
async fn bulk_export_matches_paged_reads() {
    let mut catalog = products(30, 3, 2);
    catalog[4] = FakeProduct::numbered(5, 40, 9);
    let server = FakeShopify::start(Options {
        products: catalog,
        bulk_polls: 3,
        ..Options::default()
    })
    .await;
    let client = builder(&server)
        .bulk_window(1)
        .bulk_group_objects(true)
        .build()
        .unwrap();
    let bulk: Vec<_> = client.bulk_export().try_collect().await.unwrap();
    let paged: Vec<_> = client.stream_products().try_collect().await.unwrap();
    assert_eq!(bulk.len(), 30);
    assert_eq!(bulk[4].variants.len(), 40);
    assert_eq!(bulk[4].images.len(), 9);
    assert_eq!(without_raw(bulk), without_raw(paged));
    let c = server.fake.counters();
    assert_eq!(server.fake.op_count("RunBulkProductExport"), 1);
    assert_eq!(
        server.fake.op_count("BulkOperationStatus"),
        4,
        "RUNNING x3, then COMPLETED"
    );
    assert_eq!(c.downloads, 1);
    assert_eq!(
        c.download_tokens, 0,
        "the access token must not go to the download URL"
    );
}

#[tokio::test]
async fn children_after_later_products_are_reassembled_within_the_window() {
    let server = FakeShopify::start(Options {
        products: products(10, 2, 1),
        bulk_children_late: true,
        ..Options::default()
    })
    .await;
    // Children of product n arrive after product n+1: a window of 2 suffices.
    let client = builder(&server)
        .bulk_window(2)
        .stream_mode(StreamMode::Bulk)
        .build()
        .unwrap();
    assert!(client.capabilities().bulk_export);
    let all: Vec<_> = client.stream_products().try_collect().await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(
        all.iter()
            .all(|p| p.variants.len() == 2 && p.images.len() == 1)
    );
    let ids: Vec<_> = all.iter().map(|p| p.platform_id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "file order is kept");

    // A window of one product cannot hold them: an error, not a silent loss.
    let narrow = builder(&server).bulk_window(1).build().unwrap();
    let err = narrow
        .bulk_export()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CatalogError::Decode { message, .. } if message.contains("reassembly window")),
        "{err:?}"
    );
}

#[tokio::test]
async fn failed_operation_is_an_error() {
    for (status, code) in [
        ("FAILED", Some("INTERNAL_SERVER_ERROR")),
        ("CANCELED", None),
        ("EXPIRED", None),
    ] {
        let server = FakeShopify::start(Options {
            products: products(2, 1, 0),
            bulk_final_status: status,
            bulk_error_code: code,
            ..Options::default()
        })
        .await;
        let client = builder(&server).build().unwrap();
        let err = client
            .bulk_export()
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(status), "{text}");
        if let Some(code) = code {
            assert!(text.contains(code), "{text}");
        }
    }
}

#[tokio::test]
async fn completed_without_url_is_an_empty_stream() {
    let server = FakeShopify::start(Options::default()).await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let all: Vec<_> = client.bulk_export().try_collect().await.unwrap();
    assert!(all.is_empty());
    assert_eq!(server.fake.counters().downloads, 0);
}
