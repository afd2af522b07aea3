//! Integration tests of webhook-server.
#![allow(clippy::unwrap_used, clippy::clone_on_ref_ptr)]

mod admin;
mod dispatch;
mod process;
mod store;
mod support;
mod webhooks;
#[cfg(feature = "woocommerce")]
mod woocommerce;
