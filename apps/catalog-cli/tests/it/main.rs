//! End-to-end tests: the `catalog` binary against fake stores (wiremock, in
//! this process) and against the webhook server (its library, in-process on
//! 127.0.0.1:0).
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The platform crates' own fakes, shared rather than copied.
#[path = "../../../../crates/catalog-shopify/tests/it/fake.rs"]
mod shopify_fake;
#[path = "../../../../crates/catalog-woocommerce/tests/it/fake.rs"]
mod woo_fake;

mod errors;
mod export;
mod products;
mod server;
mod support;
mod webhooks;
