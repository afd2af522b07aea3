//! Integration tests of catalog-core's public API.
#![allow(clippy::unwrap_used)]

// These two need the catalog side (the default `catalog` feature);
// `receive` is the webhook side, tested in both builds.
#[cfg(feature = "catalog")]
mod catalog;
#[cfg(feature = "catalog")]
mod properties;
mod receive;
