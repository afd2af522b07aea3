//! Integration tests of catalog-core's public API.
#![allow(clippy::unwrap_used)]

mod catalog;
mod properties;
mod receive;
