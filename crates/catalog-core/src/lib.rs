//! # catalog-core
//!
//! The platform-neutral heart of the catalog integration workspace:
//!
//! - [`Product`] and friends: one product model that every platform maps into,
//!   with money as exact decimals ([`Money`]) and ids as strings.
//! - [`Catalog`]: the object-safe trait each platform client implements
//!   (get one product, list one page, stream them all).
//! - [`webhook`]: framework-agnostic webhook verification (HMAC-SHA256 over the
//!   raw body, constant time, several secrets for rotation) and the
//!   [`WebhookSource`] trait that turns a verified delivery into a [`CatalogEvent`].
//! - [`Inbox`]: "insert if new" deduplication, with a bounded in-memory
//!   implementation ([`MemoryInbox`]).
//!
//! No HTTP framework type appears in this crate's API: headers are read through
//! the one-method [`HeaderLookup`] trait so that actix-web, reqwest or a plain map
//! can all be used.
//!
//! ```
//! use catalog_core::secrecy::SecretString;
//! use catalog_core::webhook::{sign, HmacVerifier};
//!
//! let body = br#"{"id":788032119674292922}"#;
//! let signature = sign(b"old-secret", body);
//! // During a rotation both the old and the new secret are accepted.
//! let verifier = HmacVerifier::new([
//!     SecretString::from("new-secret"),
//!     SecretString::from("old-secret"),
//! ])?;
//! verifier.verify(body, &signature)?;
//! // One changed byte is rejected.
//! assert!(verifier.verify(br#"{"id":788032119674292923}"#, &signature).is_err());
//! # Ok::<(), catalog_core::webhook::WebhookError>(())
//! ```
//!
//! ## Features
//!
//! - `catalog` (default): the catalog side, [`Catalog`], [`page`],
//!   [`retry`] and [`body`], with `futures` and `rand`. A webhook-only
//!   receiver leaves it out (`default-features = false`) and keeps the
//!   model, the event model, [`webhook`] verification and [`inbox`]; the
//!   platform crates ask for it only with their `client` feature.
#![warn(missing_docs)]
// Without the `catalog` feature the docs still name the catalog side,
// unlinked rather than a warning in every webhook-only user's `cargo doc`.
#![cfg_attr(not(feature = "catalog"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "catalog")]
pub mod body;
#[cfg(feature = "catalog")]
pub mod catalog;
pub mod error;
pub mod event;
mod excerpt;
pub mod inbox;
pub mod json;
pub mod model;
pub mod money;
#[cfg(feature = "catalog")]
pub mod page;
#[cfg(feature = "catalog")]
pub mod retry;
pub mod webhook;

pub use async_trait::async_trait;
#[cfg(feature = "catalog")]
pub use catalog::{Capabilities, Catalog};
pub use error::{CatalogError, Result};
pub use event::{CatalogEvent, EventId, Topic};
/// The stream traits that consume [`Catalog::stream_products`]
/// (`.next()`, `.try_collect()`), so callers need no `futures` dependency
/// of their own.
#[cfg(feature = "catalog")]
pub use futures::{StreamExt, TryStreamExt};
pub use inbox::{DedupKey, Inbox, InboxError, InsertOutcome, MemoryInbox};
pub use model::{
    Category, Image, PlatformId, Product, ProductOption, ProductStatus, SelectedOption, Variant,
    Weight, WeightUnit,
};
pub use money::{CurrencyCode, Money, MoneyError};
#[cfg(feature = "catalog")]
pub use page::{Cursor, Page, PageRequest, SkippedProduct};
pub use webhook::{HeaderLookup, WebhookError, WebhookSource};

/// The crates whose types this API takes and returns (`DateTime<Utc>` of
/// [`webhook::receive`], `SecretString` of [`webhook::HmacVerifier::new`],
/// `Decimal` of [`Money::amount`]), so that a user can name them without
/// depending on a matching version of each.
pub use chrono;
/// See [`chrono`].
pub use rust_decimal;
/// See [`chrono`].
pub use secrecy;
