//! Lists every product of a Shopify store.
//!
//! Run with:
//!
//! ```text
//! SHOPIFY_STORE_URL=example.myshopify.com \
//! SHOPIFY_CLIENT_ID=... SHOPIFY_CLIENT_SECRET=... \
//!     cargo run -p example-shopify-list-products
//! ```
//!
//! or with `SHOPIFY_ACCESS_TOKEN=shpat_...` instead of the client id and
//! secret. `SHOPIFY_API_VERSION` is optional (default 2026-01). Set
//! `SHOPIFY_BULK=1` to read the catalog with a bulk export instead of pages.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use catalog_core::Catalog;
use catalog_shopify::{ShopifyClient, StreamMode};
use futures::TryStreamExt;

#[path = "../../shopify-get-product/src/env.rs"]
mod env;

#[tokio::main]
async fn main() -> ExitCode {
    let builder = match env::builder_from_env() {
        Ok(b) => b,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let bulk = std::env::var("SHOPIFY_BULK").is_ok_and(|v| v == "1");
    let client: ShopifyClient = match builder
        .stream_mode(if bulk {
            StreamMode::Bulk
        } else {
            StreamMode::Paged
        })
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let started = std::time::Instant::now();
    let mut products = client.stream_products();
    let mut count = 0u64;
    loop {
        match products.try_next().await {
            Ok(Some(p)) => {
                count += 1;
                println!(
                    "{}\t{}\t{} variants\t{}",
                    p.platform_id,
                    p.status.as_str(),
                    p.variants.len(),
                    p.title
                );
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("error after {count} products: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "{count} products from {} in {:.1} s",
        client.store(),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
