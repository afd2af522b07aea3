//! Pulls 10,000 products from an in-process fake Shopify, paged (through a
//! realistic cost bucket) and by bulk export (not rate-limited), and reports
//! throughput against the best the rate limit allows.
//!
//! Run with: `cargo bench -p catalog-shopify --bench pull`
//!
//! Bucket: 40,000 points restored at 2,000 points/s. 2,000/s is Shopify's
//! documented restore rate for the "Shopify for enterprise" tier; bucket sizes
//! are not published, and 40,000 is the 20x-the-restore-rate ratio observed on
//! the other tiers. It is also the Standard tier (2,000 points, 100/s) scaled
//! 20x in both, i.e. Standard with time running 20x faster per point, which
//! keeps the run near 25 s. The optimum for Standard itself is printed too
//! (computed, not run: its smaller burst makes it less than 1/20 of this one).
//!
//! Cost model (the fake's; see tests/it/fake.rs): an object costs 1, a
//! connection 2 plus `first` times its node cost, the actual cost counts the
//! nodes returned. Each product has 3 variants and 1 image, so with the client's
//! defaults (25 products per page, variants(first: 20), media(first: 5)) a
//! page requests 2 + 25 * (1 + 22 + 7) = 752 points and actually costs
//! 2 + 25 * (1 + 5 + 3) = 227, 9 points per product plus 2 per page.
#![allow(clippy::print_stdout, clippy::unwrap_used, unreachable_pub)]

#[path = "../tests/it/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use catalog_core::Catalog;
use catalog_shopify::ShopifyClient;
use fake::{BucketSpec, FakeProduct, FakeShopify, Options, STATIC_TOKEN};
use futures::StreamExt;

const PRODUCTS: u64 = 10_000;
const VARIANTS: u64 = 3;
const IMAGES: u64 = 1;
const BUCKET: f64 = 40_000.0;
const RESTORE: f64 = 2_000.0;
const PAGE: u64 = 25;
const TIME_SCALE: f64 = 20.0;

fn catalog() -> Vec<FakeProduct> {
    (1..=PRODUCTS)
        .map(|n| FakeProduct::numbered(n, VARIANTS, IMAGES))
        .collect()
}

struct Run {
    products: u64,
    errors: u64,
    elapsed: Duration,
}

async fn drain(
    stream: futures::stream::BoxStream<'_, catalog_core::Result<catalog_core::Product>>,
) -> Run {
    let t = Instant::now();
    let mut products = 0;
    let mut errors = 0;
    let mut stream = stream;
    while let Some(item) = stream.next().await {
        match item {
            Ok(p) => {
                assert_eq!(p.variants.len() as u64, VARIANTS);
                products += 1;
            }
            Err(e) => {
                println!("  error reaching the caller: {e}");
                errors += 1;
            }
        }
    }
    Run {
        products,
        errors,
        elapsed: t.elapsed(),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // ---- paged, rate-limited ------------------------------------------
        let server = FakeShopify::start(Options {
            products: catalog(),
            bucket: Some(BucketSpec {
                maximum: BUCKET,
                restore_rate: RESTORE,
                initial: None,
            }),
            ..Options::default()
        })
        .await;
        let client = ShopifyClient::builder()
            .store_url("bench.myshopify.com")
            .base_url(server.uri())
            .access_token(STATIC_TOKEN)
            .build()
            .unwrap();
        let per_product = 1.0 + (2 + VARIANTS) as f64 + (2 + IMAGES) as f64;
        let pages = PRODUCTS.div_ceil(PAGE) as f64;
        let total_cost = PRODUCTS as f64 * per_product + pages * 2.0;
        let optimum_secs = ((total_cost - BUCKET) / RESTORE).max(f64::MIN_POSITIVE);
        let optimum = PRODUCTS as f64 / optimum_secs;

        println!("paged pull: {PRODUCTS} products, {VARIANTS} variants + {IMAGES} image each");
        println!(
            "  bucket {BUCKET} points, restore {RESTORE}/s (Standard 2000/100 scaled x{TIME_SCALE})"
        );
        let run = drain(client.stream_products()).await;
        let c = server.fake.counters();
        let achieved = run.products as f64 / run.elapsed.as_secs_f64();
        println!(
            "  {} products in {:.2} s: {achieved:.0} products/s",
            run.products,
            run.elapsed.as_secs_f64()
        );
        println!(
            "  optimum for paged reads: {optimum:.0} products/s \
             ({total_cost:.0} points, {per_product} per product + 2 per page, \
             first {BUCKET} free, then {RESTORE}/s: {optimum_secs:.2} s)"
        );
        println!("  ratio: {:.1}% of optimum", 100.0 * achieved / optimum);
        println!(
            "  THROTTLED: {} of {} requests ({:.2}%)",
            c.throttled,
            c.graphql,
            100.0 * c.throttled as f64 / c.graphql.max(1) as f64
        );
        println!("  errors reaching the caller: {}", run.errors);
        let standard_secs = (total_cost - BUCKET / TIME_SCALE) / (RESTORE / TIME_SCALE);
        let standard = PRODUCTS as f64 / standard_secs;
        println!(
            "  for comparison, the optimum on Standard (2000 points, 100/s) for the same pull: \
             {standard:.1} products/s ({standard_secs:.0} s)"
        );

        // ---- bulk export -------------------------------------------------
        let server = FakeShopify::start(Options {
            products: catalog(),
            bulk_polls: 1,
            ..Options::default()
        })
        .await;
        let client = ShopifyClient::builder()
            .store_url("bench.myshopify.com")
            .base_url(server.uri())
            .access_token(STATIC_TOKEN)
            .bulk_poll_interval(Duration::from_millis(10))
            .build()
            .unwrap();
        let run = drain(client.bulk_export()).await;
        println!("bulk export: {PRODUCTS} products (JSONL, children as separate rows)");
        println!(
            "  {} products in {:.2} s: {:.0} products/s (start + 1 poll + download + reassembly; \
             excludes Shopify's own export time)",
            run.products,
            run.elapsed.as_secs_f64(),
            run.products as f64 / run.elapsed.as_secs_f64()
        );
        println!("  errors reaching the caller: {}", run.errors);
    });
}
