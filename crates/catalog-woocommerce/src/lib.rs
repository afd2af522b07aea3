//! # catalog-woocommerce
//!
//! A WooCommerce REST API (`wc/v3`) catalog client and a WooCommerce webhook
//! source, both mapping into the platform-neutral model of [`catalog_core`].
//!
//! - [`WooCommerceClient`] implements [`catalog_core::Catalog`]: get one
//!   product, list a page, stream all products in id order with pages fetched
//!   concurrently (see [`pagination`] for how the stream neither skips nor
//!   repeats products while the catalog changes). Variable products get their
//!   variations as variants. Prices become exact [`catalog_core::Money`] in
//!   the store currency (configured, or read once from the store settings).
//! - Authentication ([`AuthMode`]): HTTP Basic over https, query-string keys
//!   for servers that drop `Authorization`, one-legged OAuth 1.0a
//!   (HMAC-SHA256) over plain http. Credentials never appear in errors, logs
//!   or `Debug` output: URLs are stripped from transport errors.
//! - Retries of 429/5xx/transport failures with exponential backoff, jitter
//!   and `Retry-After`, bounded and configurable.
//! - [`WooCommerceWebhookSource`] implements [`catalog_core::WebhookSource`]:
//!   ping detection, store identity, topics, a content-based dedup key, and
//!   payload parsing (see [`webhook`]).
//! - [`WooCommerceConfig`]: serde config for servers and tools.
//!
//! ```no_run
//! // `catalog_core` is re-exported: this crate alone is enough.
//! # #[cfg(feature = "client")]
//! use catalog_woocommerce::catalog_core::Catalog;
//! # #[cfg(feature = "client")]
//! # async fn run() -> catalog_woocommerce::catalog_core::Result<()> {
//! let client = catalog_woocommerce::WooCommerceClient::builder()
//!     .store_url("https://shop.example.com")
//!     .credentials("ck_…", "cs_…")
//!     .concurrency(8)
//!     .build()?;
//! let product = client.get_product("794").await?;
//! println!("{} has {} variants", product.title, product.variants.len());
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! - `client` (default): the REST API client ([`WooCommerceClient`],
//!   [`pagination`]), with reqwest and tokio. A service that only receives
//!   webhooks leaves it out, `catalog-woocommerce = { version = "0.1",
//!   default-features = false }`, and gets the webhook source alone:
//!   verification and payload mapping, 70 packages in `cargo tree -e normal` against 122.
//!   Build the source and the verifier directly, as below:
//!   [`WooCommerceConfig`] is the client's and the server's configuration
//!   and asks for API credentials.
//!
//! ```
//! use catalog_woocommerce::catalog_core::webhook::{
//!     Headers, HmacVerifier, Received, receive, sign,
//! };
//! use catalog_woocommerce::webhook::{
//!     DELIVERY_ID_HEADER, SIGNATURE_HEADER, SOURCE_HEADER, TOPIC_HEADER, WEBHOOK_ID_HEADER,
//! };
//! use catalog_woocommerce::WooCommerceWebhookSource;
//!
//! let body = br#"{"id":794,"name":"Premium Quality","type":"simple","status":"publish","price":"21.99"}"#;
//! // What the HTTP framework hands over: the raw body and the headers.
//! let headers = Headers::new()
//!     .with(SIGNATURE_HEADER, sign(b"webhook-secret", body))
//!     .with(TOPIC_HEADER, "product.updated")
//!     .with(SOURCE_HEADER, "https://shop.example.com/")
//!     .with(WEBHOOK_ID_HEADER, "27")
//!     .with(DELIVERY_ID_HEADER, "a8f5f167f44f4964e6c998dee827110c");
//! let verifier = HmacVerifier::new(["webhook-secret".to_owned().into()])?;
//! let source = WooCommerceWebhookSource::new().with_default_currency("EUR".parse()?);
//! let received = receive(
//!     &source,
//!     &headers,
//!     body,
//!     &|_store| Some(&verifier),
//!     catalog_woocommerce::catalog_core::chrono::Utc::now(),
//! )?;
//! let Received::Event(event) = received else { panic!("not a product event") };
//! assert_eq!(event.product_id.as_deref(), Some("794"));
//! let price = &event.product.as_ref().unwrap().variants[0].price;
//! assert_eq!(price.as_ref().unwrap().to_string(), "21.99 EUR");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
// Without the `client` feature the crate docs still name the client (it is
// there with the feature), unlinked rather than a warning in every
// webhook-only user's `cargo doc`.
#![cfg_attr(not(feature = "client"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "client")]
mod auth;
mod auth_mode;
#[cfg(feature = "client")]
mod client;
mod config;
mod convert;
#[cfg(feature = "client")]
pub mod pagination;
pub mod secret;
pub mod webhook;
mod wire;

pub use auth_mode::AuthMode;
#[cfg(feature = "client")]
pub use client::{MAX_PER_PAGE, WooCommerceClient, WooCommerceClientBuilder};
pub use config::{WooCommerceConfig, normalize_store_url, store_identity};
pub use secret::signing_secrets;
pub use webhook::WooCommerceWebhookSource;

/// The core crate this one implements (the [`catalog_core::Catalog`] trait,
/// the product model, errors), so that depending on this crate alone is
/// enough: `use catalog_woocommerce::catalog_core::{Catalog, TryStreamExt};`.
pub use catalog_core;

/// The platform id of this crate (`"woocommerce"`).
pub const PLATFORM: catalog_core::PlatformId = catalog_core::PlatformId::WOOCOMMERCE;

/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use catalog_core::{CatalogError, CurrencyCode, Product, WeightUnit};

    use crate::convert::{Units, product_from_wire};
    use crate::wire::{WireProduct, WireVariation};

    /// Maps a `GET /products/{id}` body exactly as the client does; when
    /// `variations` is given (a `GET /products/{id}/variations` body), the
    /// product is completed with them.
    ///
    /// # Errors
    /// Whatever decoding and mapping report for malformed input.
    pub fn product_from_api_json(
        product: &[u8],
        variations: Option<&[u8]>,
    ) -> Result<Product, CatalogError> {
        let raw: serde_json::Value = catalog_core::json::decode(product)?;
        let wire: WireProduct = catalog_core::json::decode_value(raw.clone())?;
        let variations: Option<Vec<WireVariation>> =
            variations.map(catalog_core::json::decode).transpose()?;
        let units = Units {
            currency: CurrencyCode::new("EUR")
                .map_err(|e| CatalogError::Configuration(e.to_string()))?,
            weight: Some(WeightUnit::Kilograms),
        };
        product_from_wire("https://fuzz.example", &units, wire, raw, variations)
    }
}
