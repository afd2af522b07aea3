//! Fetches one WooCommerce product and prints it as the unified JSON model.
//!
//! Run with
//! `WOOCOMMERCE_STORE_URL=https://shop.example.com WOOCOMMERCE_CONSUMER_KEY=ck_… WOOCOMMERCE_CONSUMER_SECRET=cs_… cargo run -p example-woocommerce-get-product -- 794`
//! (optional: `WOOCOMMERCE_CURRENCY=EUR` to skip reading the currency setting).
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use catalog_core::Catalog;

fn env(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(format!("missing environment variable {name} ({what})")),
    }
}

async fn run() -> Result<(), String> {
    let id = std::env::args()
        .nth(1)
        .ok_or_else(|| "usage: example-woocommerce-get-product <product id>".to_owned())?;
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
    let client = builder.build().map_err(|e| e.to_string())?;
    let product = client.get_product(&id).await.map_err(|e| e.to_string())?;
    let mut json = serde_json_pretty(&product)?;
    json.push('\n');
    print!("{json}");
    Ok(())
}

fn serde_json_pretty(p: &catalog_core::Product) -> Result<String, String> {
    // The model's JSON minus the platform's raw copy, which is long.
    let mut p = p.clone();
    p.raw = serde_json::Value::Null;
    serde_json::to_string_pretty(&p).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
