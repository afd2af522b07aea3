//! Integration tests of webhook-server.
#![allow(clippy::unwrap_used, clippy::clone_on_ref_ptr)]

mod admin;
#[cfg(all(feature = "shopify", feature = "woocommerce"))]
mod bad_input;
mod config_errors;
mod copy_store;
mod dispatch;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "postgres")]
mod postgres;
mod process;
#[cfg(feature = "postgres")]
mod replicas;
#[cfg(all(feature = "shopify", feature = "woocommerce"))]
mod secrets;
#[cfg(feature = "shopify")]
mod shopify;
mod store;
mod suite;
mod support;
mod webhooks;
#[cfg(feature = "woocommerce")]
mod woocommerce;
