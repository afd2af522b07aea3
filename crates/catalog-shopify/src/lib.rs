//! # catalog-shopify
//!
//! Reads a Shopify store's catalog through the GraphQL Admin API and turns
//! Shopify product webhooks into [`catalog_core::CatalogEvent`]s.
//!
//! - [`ShopifyClient`] implements [`catalog_core::Catalog`]: get one product
//!   (numeric id or GID), list a page, stream the catalog (cursor pages by
//!   default, or a [bulk export](ShopifyClient::bulk_export) with
//!   [`StreamMode::Bulk`]). Products with more variants or media than one page
//!   holds are completed with follow-up queries on their own connections.
//! - Authentication is a static Admin API token or the client credentials
//!   grant, whose 24-hour token is cached, renewed before it expires by a
//!   single request however many tasks need it, and renewed once more on 401.
//! - Throttling follows Shopify's cost bucket: every response's
//!   `extensions.cost` updates a bucket shared by all clients of the store;
//!   requests wait for the points they will need, `THROTTLED` answers are
//!   retried after `(requested - available) / restoreRate`, 429 after
//!   `Retry-After`, 5xx and transport failures with exponential backoff and
//!   jitter, all within one retry budget per call ([`ShopifyClientBuilder::max_retries`]).
//! - [`ShopifyWebhookSource`] implements [`catalog_core::WebhookSource`] for
//!   `products/create`, `products/update` and `products/delete`; see
//!   [`webhook`] for the deduplication key.
//!
//! The store identity in every [`Product::store`](catalog_core::Product::store)
//! is the shop domain (`example.myshopify.com`), from the store URL for reads
//! and from `X-Shopify-Shop-Domain` for webhooks, so both agree.
//!
//! ## Currency
//!
//! Shopify's `price` is a bare decimal. The client asks the shop for its
//! `currencyCode` once and caches it (or uses [`ShopifyClientBuilder::currency`]);
//! webhook payloads have no currency at all, so [`ShopifyWebhookSource`] uses
//! the currency configured per store, `USD` by default.
//!
//! Everything needed comes through this crate (`catalog_core` is re-exported,
//! and with it the stream traits):
//!
//! ```no_run
//! # #[cfg(feature = "client")]
//! use catalog_shopify::catalog_core::{Catalog, TryStreamExt};
//!
//! # #[cfg(feature = "client")]
//! # async fn run() -> catalog_shopify::catalog_core::Result<()> {
//! let client = catalog_shopify::ShopifyClient::builder()
//!     .store_url("example.myshopify.com")
//!     .client_credentials("client-id", "client-secret")
//!     .build()?;
//! let product = client.get_product("788032119674292922").await?;
//! println!("{} has {} variants", product.title, product.variants.len());
//! let all: Vec<_> = client.stream_products().try_collect().await?;
//! # let _ = all;
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//!
//! - `client` (default): the Admin API client ([`ShopifyClient`], [`bulk`],
//!   [`throttle`]), with reqwest and tokio. A service that only receives
//!   webhooks leaves it out, `catalog-shopify = { version = "0.1",
//!   default-features = false }`, and gets the webhook source alone:
//!   verification and payload mapping, 71 packages in `cargo tree -e normal` against 123.
//!   Build the source and the verifier directly, as below: [`ShopifyConfig`]
//!   is the client's and the server's configuration and asks for API
//!   credentials.
//!
//! ```
//! use catalog_shopify::catalog_core::webhook::{
//!     Headers, HmacVerifier, Received, receive, sign,
//! };
//! use catalog_shopify::webhook::{HMAC_HEADER, SHOP_DOMAIN_HEADER, TOPIC_HEADER, WEBHOOK_ID_HEADER};
//! use catalog_shopify::ShopifyWebhookSource;
//!
//! let body = br#"{"id":788032119674292922,"title":"Example T-Shirt","variants":[]}"#;
//! // What the HTTP framework hands over: the raw body and the headers.
//! let headers = Headers::new()
//!     .with(HMAC_HEADER, sign(b"app-client-secret", body))
//!     .with(TOPIC_HEADER, "products/update")
//!     .with(SHOP_DOMAIN_HEADER, "example.myshopify.com")
//!     .with(WEBHOOK_ID_HEADER, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
//! let verifier = HmacVerifier::new(["app-client-secret".to_owned().into()])?;
//! let received = receive(
//!     &ShopifyWebhookSource::new(),
//!     &headers,
//!     body,
//!     &|_store| Some(&verifier),
//!     catalog_shopify::catalog_core::chrono::Utc::now(),
//! )?;
//! let Received::Event(event) = received else { panic!("not a product event") };
//! assert_eq!(event.product_id.as_deref(), Some("788032119674292922"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
// Without the `client` feature the crate docs still name the client (it is
// there with the feature), unlinked rather than a warning in every
// webhook-only user's `cargo doc`.
#![cfg_attr(not(feature = "client"), allow(rustdoc::broken_intra_doc_links))]

mod access_token;
#[cfg(feature = "client")]
mod auth;
#[cfg(feature = "client")]
pub mod bulk;
#[cfg(feature = "client")]
mod client;
pub mod config;
mod convert;
#[cfg(feature = "client")]
mod graphql;
mod store_url;
#[cfg(feature = "client")]
pub mod throttle;
pub mod webhook;

pub use access_token::AccessTokenSource;
#[cfg(feature = "client")]
pub use client::{
    ACCESS_TOKEN_HEADER, MAX_PAGE_SIZE, ShopifyClient, ShopifyClientBuilder, StreamMode,
};
pub use config::{DEFAULT_API_VERSION, ShopifyAuth, ShopifyConfig};
#[cfg(feature = "client")]
pub use throttle::ThrottleStatus;
pub use webhook::ShopifyWebhookSource;

/// The core crate this one implements (the [`catalog_core::Catalog`] trait,
/// the product model, errors), so that depending on this crate alone is
/// enough: `use catalog_shopify::catalog_core::{Catalog, TryStreamExt};`.
pub use catalog_core;

/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use catalog_core::{CatalogError, CurrencyCode, Product};

    use crate::convert::{Context, product_from_graphql};
    use crate::graphql::ProductNode;

    /// Maps one GraphQL product node (the `data.product` of a read) exactly as
    /// the client does, minus the follow-up pages of variants and media.
    ///
    /// # Errors
    /// Whatever the mapping reports for malformed input.
    pub fn product_from_graphql_json(bytes: &[u8]) -> Result<Product, CatalogError> {
        let raw: serde_json::Value = catalog_core::json::decode(bytes)?;
        let mut node: ProductNode = catalog_core::json::decode_value_ref(&raw)?;
        let variants = node.variants.take().map(|c| c.nodes).unwrap_or_default();
        let media = node.media.take().map(|c| c.nodes).unwrap_or_default();
        let currency =
            CurrencyCode::new("USD").map_err(|e| CatalogError::Configuration(e.to_string()))?;
        let ctx = Context {
            store: "fuzz.myshopify.com",
            currency: &currency,
        };
        product_from_graphql(node, variants, media, raw, ctx)
    }
}
