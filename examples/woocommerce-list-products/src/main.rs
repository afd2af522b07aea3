//! Streams every product of a WooCommerce store and prints one line each.
//!
//! Run with
//! `WOOCOMMERCE_STORE_URL=https://shop.example.com WOOCOMMERCE_CONSUMER_KEY=ck_… WOOCOMMERCE_CONSUMER_SECRET=cs_… cargo run -p example-woocommerce-list-products`
//! (optional: `WOOCOMMERCE_CURRENCY=EUR` to skip reading the currency setting,
//! `WOOCOMMERCE_CONCURRENCY=8`).
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use catalog_core::Catalog;
use futures::TryStreamExt;

fn env(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!("missing environment variable {name} ({what})")),
    }
}

fn client() -> Result<catalog_woocommerce::WooCommerceClient, String> {
    let mut builder = catalog_woocommerce::WooCommerceClient::builder()
        .store_url(env(
            "WOOCOMMERCE_STORE_URL",
            "the store URL, e.g. https://shop.example.com",
        )?)
        .credentials(
            env(
                "WOOCOMMERCE_CONSUMER_KEY",
                "the REST API consumer key, ck_…",
            )?,
            env(
                "WOOCOMMERCE_CONSUMER_SECRET",
                "the REST API consumer secret, cs_…",
            )?,
        );
    if let Ok(c) = std::env::var("WOOCOMMERCE_CURRENCY") {
        let code = catalog_core::CurrencyCode::new(&c)
            .map_err(|e| format!("WOOCOMMERCE_CURRENCY: {e}"))?;
        builder = builder.currency(code);
    }
    if let Ok(c) = std::env::var("WOOCOMMERCE_CONCURRENCY") {
        let n = c
            .parse()
            .map_err(|_| "WOOCOMMERCE_CONCURRENCY must be a number".to_owned())?;
        builder = builder.concurrency(n);
    }
    builder.build().map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut products = client.stream_products();
    let mut count = 0u64;
    loop {
        match products.try_next().await {
            Ok(Some(p)) => {
                count += 1;
                let price = p
                    .variants
                    .first()
                    .and_then(|v| v.price.as_ref())
                    .map_or_else(|| "-".to_owned(), ToString::to_string);
                let (id, status, variants, title) = (
                    &p.platform_id,
                    p.status.as_str(),
                    p.variants.len(),
                    &p.title,
                );
                println!("{id:>8}  {status:<10} {variants:>3} variant(s)  {price:>14}  {title}");
            }
            Ok(None) => break,
            Err(e) => {
                eprintln!("error after {count} products: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{count} products from {}", client.store());
    ExitCode::SUCCESS
}
