//! Integration tests against a fake Shopify (see `fake.rs`).

mod auth;
mod bulk;
mod fake;
mod header_props;
mod reads;
mod retries;
mod support;
mod throttle;
mod webhooks;
