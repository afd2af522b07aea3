//! Integration tests against an in-process fake WooCommerce store.

// Test helpers panic on purpose: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod auth;
mod errors;
mod fake;
mod header_props;
mod pagination;
mod php_json;
mod products;
mod support;
mod webhooks;
