//! Integration tests against a fake Shopify (see `fake.rs`).

#[cfg(feature = "client")]
mod auth;
#[cfg(feature = "client")]
mod bulk;
#[cfg(feature = "client")]
mod fake;
mod header_props;
#[cfg(feature = "client")]
mod reads;
#[cfg(feature = "client")]
mod retries;
#[cfg(feature = "client")]
mod support;
#[cfg(feature = "client")]
mod throttle;
mod webhooks;
