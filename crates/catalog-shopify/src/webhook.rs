//! Shopify webhooks: header names and the [`WebhookSource`] for product topics.
//!
//! # Deduplication key
//!
//! The [`EventId`] of a delivery is `"{topic}:{X-Shopify-Event-Id}:{digest}"`,
//! for example `products/update:7d5b…:3f1c…`, where `digest` is the body's
//! XXH3-64 in hex. `X-Shopify-Event-Id` identifies the
//! merchant action: Shopify repeats it on every retry of a delivery *and* on
//! the deliveries of the same event to other subscriptions of the same app,
//! whereas `X-Shopify-Webhook-Id` differs between those subscriptions.
//!
//! Why the body too: a retry sends "the original payload from trigger time",
//! byte for byte, and so does a second subscription configured like the
//! first; both collapse into one event. But subscriptions that shape the
//! payload differently (one trimmed by `includeFields`, one whole) send
//! different bodies under one Event-Id, and Shopify's delivery docs say to
//! deduplicate deliveries by Webhook-Id and only *correlate* by Event-Id:
//! keyed on the Event-Id alone, whichever arrived first (the trimmed one,
//! say) would be kept and the whole product dropped as a duplicate.
//!
//! The topic is part of the key because one merchant action can produce
//! several topics (creating a product can trigger `products/create` and
//! `products/update`), and those are distinct events. Deliveries without an
//! Event-Id (older API versions) fall back to
//! `"{topic}:webhook-id:{X-Shopify-Webhook-Id}"`, which still catches retries.
//!
//! # Currency
//!
//! Webhook payloads carry prices without a currency. The source maps them with
//! the currency configured for the store ([`ShopifyWebhookSource::with_store_currency`]),
//! or the default currency, `USD` unless changed. Configure it to match the
//! catalog client (which asks the shop), so both produce equal products.

use std::collections::HashMap;

use catalog_core::webhook::{
    DeliveryMeta, HeaderLookup, Inbound, PayloadError, UnverifiedDelivery, VerifiedDelivery,
    WebhookError, WebhookSource, optional_header, required_header, signature_header,
};
use catalog_core::{CatalogEvent, CurrencyCode, EventId, MoneyError, PlatformId, Topic};
use chrono::{DateTime, Utc};

use crate::convert::{Context, RestDeleted, RestProduct, product_from_rest};

/// Base64 HMAC-SHA256 of the raw body, keyed with the app's client secret.
pub const HMAC_HEADER: &str = "X-Shopify-Hmac-Sha256";
/// The topic, e.g. `products/update`.
pub const TOPIC_HEADER: &str = "X-Shopify-Topic";
/// The `myshopify.com` domain of the store.
pub const SHOP_DOMAIN_HEADER: &str = "X-Shopify-Shop-Domain";
/// Unique per delivery (differs between subscriptions of the same event).
pub const WEBHOOK_ID_HEADER: &str = "X-Shopify-Webhook-Id";
/// Shared by all deliveries of one merchant action: the deduplication key.
pub const EVENT_ID_HEADER: &str = "X-Shopify-Event-Id";
/// When Shopify triggered the delivery (RFC 3339).
pub const TRIGGERED_AT_HEADER: &str = "X-Shopify-Triggered-At";
/// The API version the payload was serialised with.
pub const API_VERSION_HEADER: &str = "X-Shopify-API-Version";

/// "Events" deliveries (Shopify's newer delivery type) also send unprefixed
/// headers (`shopify-hmac-sha256`, `shopify-topic`, ...) next to the
/// `X-Shopify-*` ones; the prefixed names are read first, the unprefixed ones
/// are the fallback. Where an Events delivery (one with `shopify-hmac-sha256`)
/// carries both for the signature, topic, shop or ids, they must agree: a
/// verifier reading the other name (Shopify's own library reads the
/// unprefixed ones on Events deliveries) would otherwise see another
/// delivery than this one.
const EVENTS_PREFIX_FALLBACK: &str = "X-";

/// The currency used for stores without one configured.
pub const DEFAULT_CURRENCY: &str = "USD";

/// Turns Shopify product webhooks into [`CatalogEvent`]s.
///
/// Topics `products/create`, `products/update` and `products/delete` become
/// [`Topic::ProductCreated`], [`Topic::ProductUpdated`] and
/// [`Topic::ProductDeleted`]; any other topic is kept as [`Topic::Other`] with
/// the product fields left empty.
///
/// ```
/// use catalog_shopify::catalog_core::webhook::{receive, sign, Headers, HmacVerifier, Received};
/// use catalog_shopify::catalog_core::{chrono, secrecy::SecretString, Topic};
/// use catalog_shopify::webhook::*;
///
/// let body = br#"{"id": 788032119674292922}"#;
/// let headers = Headers::new()
///     .with(HMAC_HEADER, sign(b"app-secret", body))
///     .with(TOPIC_HEADER, "products/delete")
///     .with(SHOP_DOMAIN_HEADER, "Example.myshopify.com")
///     .with(EVENT_ID_HEADER, "e-1")
///     .with(WEBHOOK_ID_HEADER, "w-1");
/// let verifier = HmacVerifier::new([SecretString::from("app-secret")])?;
/// let source = ShopifyWebhookSource::new();
/// let Received::Event(event) =
///     receive(&source, &headers, body, &|_store| Some(&verifier), chrono::Utc::now())?
/// else { unreachable!() };
/// assert_eq!(event.topic, Topic::ProductDeleted);
/// assert_eq!(event.store, "example.myshopify.com");
/// // The topic, the Event-Id and the body's XXH3-64.
/// assert_eq!(event.event_id.as_str(), "products/delete:e-1:8d2818d5a129a51b");
/// assert_eq!(event.product_id.as_deref(), Some("788032119674292922"));
/// # Ok::<(), catalog_shopify::catalog_core::WebhookError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ShopifyWebhookSource {
    default_currency: CurrencyCode,
    currencies: HashMap<String, CurrencyCode>,
}

impl Default for ShopifyWebhookSource {
    fn default() -> Self {
        Self::new()
    }
}

impl ShopifyWebhookSource {
    /// A source that prices every store in `USD` until told otherwise.
    pub fn new() -> Self {
        Self {
            default_currency: CurrencyCode::new(DEFAULT_CURRENCY)
                .unwrap_or_else(|_| unreachable!("USD is a valid code")),
            currencies: HashMap::new(),
        }
    }

    /// Sets the currency for stores without their own.
    ///
    /// # Errors
    /// [`MoneyError::InvalidCurrency`] when `code` is not three letters.
    pub fn with_default_currency(mut self, code: &str) -> Result<Self, MoneyError> {
        self.default_currency = CurrencyCode::new(code)?;
        Ok(self)
    }

    /// Sets the currency of one store (shop domain, any case).
    ///
    /// # Errors
    /// [`MoneyError::InvalidCurrency`] when `code` is not three letters.
    pub fn with_store_currency(mut self, store: &str, code: &str) -> Result<Self, MoneyError> {
        let store = shop_domain(store).unwrap_or_else(|_| normalise_domain(store));
        self.currencies.insert(store, CurrencyCode::new(code)?);
        Ok(self)
    }

    /// The currency used for a store.
    pub fn currency_for(&self, store: &str) -> &CurrencyCode {
        self.currencies.get(store).unwrap_or(&self.default_currency)
    }
}

/// A header by its `X-Shopify-*` name, or its unprefixed Events-delivery name.
fn lookup<'h>(headers: &'h dyn HeaderLookup, name: &'static str) -> Option<&'h str> {
    optional_header(headers, name).or_else(|| {
        name.strip_prefix(EVENTS_PREFIX_FALLBACK)
            .and_then(|bare| optional_header(headers, bare))
    })
}

/// The unprefixed signature header: only "Events" deliveries send it, so
/// its presence marks one (as in Shopify's own library).
const EVENTS_HMAC_HEADER: &str = "shopify-hmac-sha256";

/// As [`lookup`], refusing an "Events" delivery (`events`) whose prefixed
/// and unprefixed headers both carry `name` with different values (shop
/// domains compared without case). A traditional delivery costs one lookup.
fn lookup_agreed<'h>(
    headers: &'h dyn HeaderLookup,
    name: &'static str,
    events: bool,
) -> Result<Option<&'h str>, WebhookError> {
    let prefixed = optional_header(headers, name);
    if !events && prefixed.is_some() {
        return Ok(prefixed);
    }
    let Some(bare_name) = name.strip_prefix(EVENTS_PREFIX_FALLBACK) else {
        return Ok(prefixed);
    };
    let bare = optional_header(headers, bare_name);
    match (prefixed, bare) {
        (Some(p), Some(b)) => {
            let (p, b) = (p.trim(), b.trim());
            let same = if name == SHOP_DOMAIN_HEADER {
                normalise_domain(p) == normalise_domain(b)
            } else {
                p == b
            };
            if same {
                Ok(Some(p))
            } else {
                Err(WebhookError::InvalidHeader {
                    name,
                    reason: format!("differs from {}", bare_name.to_ascii_lowercase()),
                })
            }
        }
        (p, b) => Ok(p.or(b)),
    }
}

/// As [`lookup_agreed`], for headers that must be there.
fn require<'h>(
    headers: &'h dyn HeaderLookup,
    name: &'static str,
    events: bool,
) -> Result<&'h str, WebhookError> {
    match lookup_agreed(headers, name, events)? {
        Some(v) => Ok(v),
        // Reports the classic name (or "empty" when it is blank).
        None => required_header(headers, name),
    }
}

/// The body's XXH3-64 (seed 0), in hex: what tells apart the differently
/// shaped deliveries of one event (see the module docs).
///
/// Why not a cryptographic digest: the key matters only once the delivery's
/// signature has been checked, so the bodies it tells apart are Shopify's,
/// a handful per Event-Id and topic, never an attacker's chosen ones;
/// XXH3 is a published, stable algorithm (stored keys do not change between
/// versions) and costs a fraction of a SHA-256 (measured with callgrind on
/// the 2.2 KB sample: SHA-256 without the CPU's SHA instructions added 127 k
/// instructions to a delivery, half again the request path).
fn body_digest(body: &[u8]) -> String {
    format!("{:016x}", twox_hash::XxHash3_64::oneshot_with_seed(0, body))
}

fn normalise_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A configured store as deliveries name it: the shop domain of
/// `X-Shopify-Shop-Domain`, in lower case, from a domain or a URL written
/// any way (`Example.myshopify.com`, `https://example.myshopify.com/`,
/// `example.myshopify.com:443`).
///
/// ```
/// use catalog_shopify::webhook::shop_domain;
/// assert_eq!(shop_domain("https://Example.myshopify.com/").unwrap(), "example.myshopify.com");
/// assert_eq!(shop_domain("example.myshopify.com:443").unwrap(), "example.myshopify.com");
/// assert!(shop_domain("ftp://example.myshopify.com").is_err());
/// // The admin's address names a shop by its path: not a shop domain.
/// assert!(shop_domain("https://admin.shopify.com/store/example").is_err());
/// ```
///
/// # Errors
/// When the input names no host that a delivery could carry (empty, another
/// scheme, a path, query or user, characters other than letters, digits,
/// `.` and `-`, Shopify's admin address); the message does not quote it.
pub fn shop_domain(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| "not a shop domain".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("not a shop domain: the scheme, if any, must be https".into());
    }
    if !matches!(url.path(), "" | "/")
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(
            "not a shop domain: give the host alone (such as example.myshopify.com), without a path"
                .into(),
        );
    }
    let host = normalise_domain(url.host_str().unwrap_or_default());
    if host == "admin.shopify.com" {
        return Err(
            "admin.shopify.com is Shopify's admin, not a shop: admin.shopify.com/store/NAME is NAME.myshopify.com"
                .into(),
        );
    }
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err("not a shop domain (such as example.myshopify.com)".into());
    }
    Ok(host)
}

/// Maps a Shopify topic.
pub fn topic(raw: &str) -> Topic {
    match raw {
        "products/create" => Topic::ProductCreated,
        "products/update" => Topic::ProductUpdated,
        "products/delete" => Topic::ProductDeleted,
        // Not `Topic::Other(other)`: a header spelled like a canonical topic
        // (`product.updated`, which Shopify never sends, but the header is
        // not signed) would be stored as that text and read back as the
        // canonical topic, a product event that bypassed per-product
        // ordering. Read as the canonical topic here too, it is one.
        other => Topic::from_canonical(other),
    }
}

impl WebhookSource for ShopifyWebhookSource {
    fn platform(&self) -> PlatformId {
        PlatformId::SHOPIFY
    }

    fn inspect(&self, headers: &dyn HeaderLookup, body: &[u8]) -> Result<Inbound, WebhookError> {
        let events = optional_header(headers, EVENTS_HMAC_HEADER).is_some();
        let signature = match lookup_agreed(headers, HMAC_HEADER, events)? {
            Some(v) => v,
            // Absent or blank: an unsigned request (401), not a malformed one.
            None => signature_header(headers, HMAC_HEADER)?,
        };
        let raw_topic = require(headers, TOPIC_HEADER, events)?;
        let domain = require(headers, SHOP_DOMAIN_HEADER, events)?;
        let store = normalise_domain(domain);
        if store.is_empty()
            || !store
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(WebhookError::InvalidHeader {
                name: SHOP_DOMAIN_HEADER,
                reason: "not a shop domain".into(),
            });
        }
        let webhook_id = lookup_agreed(headers, WEBHOOK_ID_HEADER, events)?;
        let event_id = match (lookup_agreed(headers, EVENT_ID_HEADER, events)?, webhook_id) {
            (Some(event), _) => EventId::new(format!("{raw_topic}:{event}:{}", body_digest(body))),
            (None, Some(delivery)) => EventId::new(format!("{raw_topic}:webhook-id:{delivery}")),
            (None, None) => return Err(WebhookError::MissingHeader(EVENT_ID_HEADER)),
        };
        let triggered_at = lookup(headers, TRIGGERED_AT_HEADER).and_then(|t| {
            let parsed = DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc));
            if parsed.is_err() {
                // Informational only: a format change must not bounce
                // deliveries. Debug, and cut: this runs before the signature
                // is checked, so anyone could fill the log with it (an
                // outside audit wrote 2 MB with 20 unsigned requests).
                let shown: String = t.chars().take(40).collect();
                tracing::debug!(value = %shown, "unreadable {TRIGGERED_AT_HEADER}; ignored");
            }
            parsed.ok()
        });
        let meta = DeliveryMeta::new(
            PlatformId::SHOPIFY,
            store,
            topic(raw_topic),
            raw_topic,
            event_id,
        )
        .with_delivery_id(webhook_id.map(str::to_owned))
        .with_triggered_at(triggered_at)
        .with_api_version(lookup(headers, API_VERSION_HEADER).map(str::to_owned));
        Ok(Inbound::Delivery(UnverifiedDelivery {
            meta,
            signature: signature.to_owned(),
        }))
    }

    fn parse(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<CatalogEvent, PayloadError> {
        self.parse_with(delivery, body, received_at, true)
    }

    fn parse_lean(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
    ) -> Result<CatalogEvent, PayloadError> {
        self.parse_with(delivery, body, received_at, false)
    }

    fn triage(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
    ) -> Result<Option<String>, PayloadError> {
        // Product bodies: check the syntax and read the top-level id only
        // (a third of the cost of decoding the product). The full parse
        // decides for anything this skim does not accept plainly (a
        // repeated `id`, deep nesting, deletes, other topics), so the id is
        // always the one `parse` would give.
        if matches!(
            delivery.meta().topic,
            Topic::ProductCreated | Topic::ProductUpdated
        ) && std::str::from_utf8(body).is_ok()
            && !nesting_reaches(body, LEAN_MAX_DEPTH)
            && let Ok(skim) = serde_json::from_slice::<IdOnly>(body)
        {
            return Ok(Some(skim.id.0));
        }
        Ok(self
            .parse_with(delivery, body, DateTime::<Utc>::UNIX_EPOCH, false)?
            .product_id)
    }
}

/// The one field [`WebhookSource::triage`] reads from a product body.
#[derive(serde::Deserialize)]
struct IdOnly {
    id: crate::convert::RestId,
}

/// Deepest nesting of arrays and objects in `body` (strings skipped), stopping
/// once it reaches `limit`.
fn nesting_reaches(body: &[u8], limit: usize) -> bool {
    // Fewer opening brackets than the limit, anywhere: cannot reach it. A
    // branch-free count (vectorised), where the exact walk below goes byte
    // by byte.
    let opening = body
        .iter()
        .map(|&b| usize::from(b == b'[' || b == b'{'))
        .sum::<usize>();
    if opening < limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Nesting from which the lean parse takes the `Value` path (whose parser
/// refuses documents nested 128 deep, where typed decoding skips unknown
/// fields at any depth): well below that limit.
const LEAN_MAX_DEPTH: usize = 64;

impl ShopifyWebhookSource {
    /// [`WebhookSource::parse`] (`keep_raw`) or [`WebhookSource::parse_lean`].
    ///
    /// Lean, a product body is decoded straight into the wire type, without a
    /// `serde_json::Value` of the payload. When that fails (or the body is
    /// deeply nested) it falls back to the `Value` path, so the outcome and
    /// the error are the same as `parse`'s: where both succeed they decode the
    /// same fields, and the direct decode refuses what the `Value` path would
    /// read differently (a repeated field: last one wins in a `Value`).
    fn parse_with(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
        received_at: DateTime<Utc>,
        keep_raw: bool,
    ) -> Result<CatalogEvent, PayloadError> {
        let meta = delivery.meta();
        let raw_body = std::str::from_utf8(body)
            .map_err(|e| PayloadError::new("", format!("body is not UTF-8: {e}")))?;
        let raw_body = if keep_raw {
            raw_body.to_owned()
        } else {
            String::new()
        };
        let (product_id, product) = match meta.topic {
            Topic::ProductCreated | Topic::ProductUpdated => {
                let ctx = Context {
                    store: &meta.store,
                    currency: self.currency_for(&meta.store),
                };
                let direct = if keep_raw || nesting_reaches(body, LEAN_MAX_DEPTH) {
                    None
                } else {
                    serde_json::from_slice::<RestProduct>(body).ok()
                };
                let (wire, raw) = match direct {
                    Some(wire) => (wire, serde_json::Value::Null),
                    None => {
                        let raw: serde_json::Value = catalog_core::json::decode(body)?;
                        let wire: RestProduct = catalog_core::json::decode_value_ref(&raw)?;
                        let raw = if keep_raw {
                            raw
                        } else {
                            serde_json::Value::Null
                        };
                        (wire, raw)
                    }
                };
                if wire.only_an_id() {
                    return Err(PayloadError::new(
                        "",
                        "a product payload with nothing but an id (a products/delete body?) under a create or update topic",
                    ));
                }
                if wire.variants_truncated() || wire.trimmed() {
                    // Product webhooks carry the first 100 variants in full
                    // and list all of them in `variant_gids`, and a
                    // subscription's `includeFields` trims the payload: a
                    // product built from either would overwrite the whole
                    // one downstream. The event names the product; its
                    // consumer reads it from the API.
                    (Some(wire.id.0), None)
                } else {
                    let product = product_from_rest(wire, raw, ctx)?;
                    (Some(product.platform_id.clone()), Some(product))
                }
            }
            Topic::ProductDeleted => {
                // Headers are not signed: a captured products/create body
                // replayed under `X-Shopify-Topic: products/delete` must not
                // become a delete. Real delete payloads are `{"id": N}`.
                let raw: serde_json::Value = catalog_core::json::decode(body)?;
                if let Some(key) = ["title", "variants", "handle"]
                    .into_iter()
                    .find(|k| raw.get(k).is_some())
                {
                    return Err(PayloadError::new(
                        key,
                        "a products/delete delivery carrying a product: the topic header does not match the body",
                    ));
                }
                let wire: RestDeleted = catalog_core::json::decode_value(raw)?;
                (Some(wire.id.0), None)
            }
            _ => {
                // Another topic (a compliance request, an order): no
                // product, and the body goes on as sent; it must be JSON
                // all the same, or the event is kept as unparseable rather
                // than passed on empty (an outside audit saw `not json`
                // marked delivered with no payload).
                catalog_core::json::decode::<serde::de::IgnoredAny>(body)?;
                (None, None)
            }
        };
        Ok(CatalogEvent {
            platform: PlatformId::SHOPIFY,
            store: meta.store.clone(),
            topic: meta.topic.clone(),
            raw_topic: meta.raw_topic.clone(),
            event_id: meta.event_id.clone(),
            delivery_id: meta.delivery_id.clone(),
            triggered_at: meta.triggered_at,
            received_at,
            product_id,
            product,
            raw_body,
        })
    }
}
