//! Integration tests against an in-process fake WooCommerce store.

// Test helpers panic on purpose: a panic is a failed test.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "client")]
mod auth;
#[cfg(feature = "client")]
mod errors;
#[cfg(feature = "client")]
mod fake;
mod header_props;
#[cfg(feature = "client")]
mod pagination;
mod php_json;
#[cfg(feature = "client")]
mod products;
#[cfg(feature = "client")]
mod support;
mod webhooks;
