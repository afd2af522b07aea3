//! Fetches one Shopify product and prints it as JSON in the unified model.
//!
//! Run with:
//!
//! ```text
//! SHOPIFY_STORE_URL=example.myshopify.com \
//! SHOPIFY_CLIENT_ID=... SHOPIFY_CLIENT_SECRET=... \
//!     cargo run -p example-shopify-get-product -- 788032119674292922
//! ```
//!
//! or with `SHOPIFY_ACCESS_TOKEN=shpat_...` instead of the client id and
//! secret. The id may be numeric or a GID (`gid://shopify/Product/...`).
//! `SHOPIFY_API_VERSION` is optional (default 2026-01).
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use catalog_core::{Catalog, CatalogError};

mod env;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(id) = std::env::args().nth(1) else {
        eprintln!("usage: example-shopify-get-product <product id or gid>");
        return ExitCode::from(2);
    };
    let client = match env::builder_from_env().and_then(|b| b.build().map_err(|e| e.to_string())) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match client.get_product(&id).await {
        Ok(product) => match serde_json::to_string_pretty(&product) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("could not print the product: {e}");
                ExitCode::FAILURE
            }
        },
        Err(CatalogError::NotFound(what)) => {
            eprintln!("not found: {what}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
