//! WooCommerce webhooks: header names, ping detection, dedup keys, parsing.
//!
//! A delivery (`WC_Webhook::deliver()`) is a POST of `trim(wp_json_encode($payload))`
//! with these headers, signed with base64(HMAC-SHA256(body, webhook secret)).
//! The body is PHP `json_encode` output (`\/` and `\uXXXX` escapes): the
//! signature is checked over the raw bytes by the core
//! ([`catalog_core::webhook::HmacVerifier`]); never re-serialise a body.
//!
//! # Event id (deduplication key)
//!
//! WooCommerce sends no reliable unique id: `X-WC-Webhook-ID` is the
//! subscription (constant), and `X-WC-Webhook-Delivery-ID` is
//! `wp_hash(webhook_id . time())`, so two deliveries of one webhook in the
//! same second share it, while a duplicate `product.updated` (WooCommerce fires
//! them, seconds apart, identical) gets a new one. Failed deliveries are never
//! retried. So the [`EventId`] is a SHA-256 digest (hex) of, length-prefixed:
//!
//! - the subscription id, the topic and the raw body, when the body carries
//!   `date_modified` / `date_modified_gmt` (a product, a restore): identical
//!   bytes are the same state of the same product, so duplicates collapse,
//!   while any real change (new `date_modified`, new stock) gives a new key;
//! - the same **plus the Delivery-ID** for every other body, notably
//!   `product.deleted`'s `{"id":794}`: the body cannot tell a trash → restore →
//!   trash sequence from a duplicate, so the (per-second) delivery id does.
//!
//! Trade-offs: two deletes of the same product within one second collapse
//! (harmless: same outcome); a duplicate delete delivered in a different
//! second is kept twice (deletes are idempotent for receivers). Two updates
//! whose bodies are byte-identical collapse even if the shop saved twice —
//! nothing changed, so nothing is lost. The key is computed in
//! [`WebhookSource::inspect`], before verification; it is only trusted once the
//! signature (which covers the body) is verified.
//!
//! # Variations
//!
//! A variation change arrives as `product.updated` (or `product.created`) with
//! `"type":"variation"` and the variation's id. The event carries the
//! **parent** id as `product_id` and **no product** (`product: None`): the
//! payload describes one variant, not the product, and a partial product
//! would overwrite the full one downstream. Receivers should refetch the
//! parent. The variation id stays visible in `raw_body`.

use std::collections::HashMap;

use catalog_core::webhook::{
    DeliveryMeta, HeaderLookup, Inbound, PayloadError, Ping, UnverifiedDelivery, VerifiedDelivery,
    WebhookError, WebhookSource, optional_header, required_header, signature_header,
};
use catalog_core::{CatalogEvent, CurrencyCode, EventId, PlatformId, Topic, WeightUnit};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::store_identity;
use crate::convert::{Units, product_from_wire};
use crate::wire::WireProduct;

/// `X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the raw body.
pub const SIGNATURE_HEADER: &str = "X-WC-Webhook-Signature";
/// `X-WC-Webhook-Topic`: `resource.event`, e.g. `product.updated`.
pub const TOPIC_HEADER: &str = "X-WC-Webhook-Topic";
/// `X-WC-Webhook-Resource`: e.g. `product`.
pub const RESOURCE_HEADER: &str = "X-WC-Webhook-Resource";
/// `X-WC-Webhook-Event`: e.g. `updated`.
pub const EVENT_HEADER: &str = "X-WC-Webhook-Event";
/// `X-WC-Webhook-Source`: the store's `home_url('/')`.
pub const SOURCE_HEADER: &str = "X-WC-Webhook-Source";
/// `X-WC-Webhook-ID`: the webhook (subscription) id, constant across deliveries.
pub const WEBHOOK_ID_HEADER: &str = "X-WC-Webhook-ID";
/// `X-WC-Webhook-Delivery-ID`: per-delivery hash, one-second resolution.
pub const DELIVERY_ID_HEADER: &str = "X-WC-Webhook-Delivery-ID";

/// Turns WooCommerce deliveries into [`CatalogEvent`]s.
///
/// Prices in payloads are strings without a currency: a store whose currency
/// is known (see [`Self::with_store_currency`] / [`Self::with_default_currency`])
/// gets events with a full [`catalog_core::Product`]; otherwise `product` is
/// `None` and `product_id` plus `raw_body` carry the change.
#[derive(Debug, Clone, Default)]
pub struct WooCommerceWebhookSource {
    currencies: HashMap<String, CurrencyCode>,
    default_currency: Option<CurrencyCode>,
    weight_unit: Option<WeightUnit>,
    weight_units: HashMap<String, WeightUnit>,
}

impl WooCommerceWebhookSource {
    /// A source that knows no currency yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the currency of one store (identity as [`crate::store_identity`] gives it).
    #[must_use]
    pub fn with_store_currency(mut self, store: &str, currency: CurrencyCode) -> Self {
        let key = store_identity(store).unwrap_or_else(|_| store.to_owned());
        self.currencies.insert(key, currency);
        self
    }

    /// Sets the currency of stores without their own.
    #[must_use]
    pub fn with_default_currency(mut self, currency: CurrencyCode) -> Self {
        self.default_currency = Some(currency);
        self
    }

    /// Sets the weight unit of product payloads of stores without their own
    /// (without one, no weights: payloads carry bare numbers).
    #[must_use]
    pub fn with_weight_unit(mut self, unit: WeightUnit) -> Self {
        self.weight_unit = Some(unit);
        self
    }

    /// Sets the weight unit of one store (identity as
    /// [`crate::store_identity`] gives it): WooCommerce's
    /// `woocommerce_weight_unit` setting, which payloads do not carry.
    #[must_use]
    pub fn with_store_weight_unit(mut self, store: &str, unit: WeightUnit) -> Self {
        let key = store_identity(store).unwrap_or_else(|_| store.to_owned());
        self.weight_units.insert(key, unit);
        self
    }

    fn currency_for(&self, store: &str) -> Option<&CurrencyCode> {
        self.currencies
            .get(store)
            .or(self.default_currency.as_ref())
    }

    fn weight_unit_for(&self, store: &str) -> Option<&WeightUnit> {
        self.weight_units.get(store).or(self.weight_unit.as_ref())
    }
}

/// Whether `body` is exactly a WooCommerce ping: `webhook_id=<digits>`.
fn ping_id(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(b"webhook_id=")?;
    if rest.is_empty() || rest.len() > 20 || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(String::from_utf8_lossy(rest).into_owned())
}

/// The dedup key (see the module docs).
pub fn event_id(subscription_id: &str, topic: &str, delivery_id: &str, body: &[u8]) -> EventId {
    let mut h = Sha256::new();
    let mut part = |p: &[u8]| {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    };
    part(subscription_id.as_bytes());
    part(topic.as_bytes());
    part(body);
    if !carries_modification_date(body) {
        part(delivery_id.as_bytes());
    }
    let digest = h.finalize();
    EventId::new(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn carries_modification_date(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Dated {
        date_modified: Option<serde_json::Value>,
        date_modified_gmt: Option<serde_json::Value>,
    }
    serde_json::from_slice::<Dated>(body).is_ok_and(|d| {
        [d.date_modified, d.date_modified_gmt]
            .iter()
            .flatten()
            .any(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    })
}

fn invalid(name: &'static str, reason: impl Into<String>) -> WebhookError {
    WebhookError::InvalidHeader {
        name,
        reason: reason.into(),
    }
}

fn map_topic(raw: &str) -> Topic {
    match raw {
        "product.created" => Topic::ProductCreated,
        "product.updated" => Topic::ProductUpdated,
        "product.deleted" => Topic::ProductDeleted,
        "product.restored" => Topic::ProductRestored,
        // Never a canonical name in `Other` (see `Topic::Other`).
        other => Topic::from_canonical(other),
    }
}

impl WebhookSource for WooCommerceWebhookSource {
    fn platform(&self) -> PlatformId {
        PlatformId::WOOCOMMERCE
    }

    /// Pings (`webhook_id=N` and neither topic nor signature header) give
    /// [`Inbound::Ping`]; anything else must carry the source, topic,
    /// signature, webhook id and delivery id headers.
    fn inspect(&self, headers: &dyn HeaderLookup, body: &[u8]) -> Result<Inbound, WebhookError> {
        if headers.get(TOPIC_HEADER).is_none() && headers.get(SIGNATURE_HEADER).is_none() {
            if let Some(id) = ping_id(body) {
                return Ok(Inbound::Ping(Ping::new(PlatformId::WOOCOMMERCE, Some(id))));
            }
            // Not a ping, and unsigned.
            return Err(WebhookError::MissingSignature(SIGNATURE_HEADER));
        }
        // The signature first: an unsigned request is refused as such
        // (401), whatever else it lacks.
        let signature = signature_header(headers, SIGNATURE_HEADER)?;
        let raw_topic = required_header(headers, TOPIC_HEADER)?;
        let source = required_header(headers, SOURCE_HEADER)?;
        let subscription = required_header(headers, WEBHOOK_ID_HEADER)?;
        let delivery_id = required_header(headers, DELIVERY_ID_HEADER)?;

        let Some((resource, event)) = raw_topic.split_once('.') else {
            return Err(invalid(TOPIC_HEADER, "expected resource.event"));
        };
        if resource.is_empty() || event.is_empty() {
            return Err(invalid(TOPIC_HEADER, "expected resource.event"));
        }
        // Custom `action.*` topics carry whatever; for the standard ones the
        // resource/event headers must agree with the topic.
        if resource != "action" {
            if let Some(r) = optional_header(headers, RESOURCE_HEADER)
                && r != resource
            {
                return Err(invalid(RESOURCE_HEADER, "does not match the topic"));
            }
            if let Some(e) = optional_header(headers, EVENT_HEADER)
                && e != event
            {
                return Err(invalid(EVENT_HEADER, "does not match the topic"));
            }
        }
        if !subscription.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(WEBHOOK_ID_HEADER, "expected a number"));
        }
        let store = store_identity(source).map_err(|reason| invalid(SOURCE_HEADER, reason))?;
        let topic = map_topic(raw_topic);
        let meta = DeliveryMeta::new(
            PlatformId::WOOCOMMERCE,
            store,
            topic,
            raw_topic,
            event_id(subscription, raw_topic, delivery_id, body),
        )
        .with_delivery_id(Some(delivery_id.to_owned()));
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
        let meta = delivery.meta();
        let raw_body = std::str::from_utf8(body)
            .map_err(|e| PayloadError::new("", format!("body is not UTF-8: {e}")))?
            .to_owned();
        let mut event = CatalogEvent {
            platform: PlatformId::WOOCOMMERCE,
            store: meta.store.clone(),
            topic: meta.topic.clone(),
            raw_topic: meta.raw_topic.clone(),
            event_id: meta.event_id.clone(),
            delivery_id: meta.delivery_id.clone(),
            triggered_at: meta.triggered_at,
            received_at,
            product_id: None,
            product: None,
            raw_body,
        };
        let is_product = meta.raw_topic.starts_with("product.");
        if !is_product {
            // No product (an order, an action), and the body goes on as
            // sent; it must be JSON all the same, or the event is kept as
            // unparseable rather than passed on empty.
            catalog_core::json::decode::<serde::de::IgnoredAny>(body)
                .map_err(PayloadError::from)?;
            return Ok(event);
        }
        let value: serde_json::Value =
            catalog_core::json::decode(body).map_err(PayloadError::from)?;
        // The payload is built at delivery time: if the product is gone by
        // then, WooCommerce sends the REST error object instead.
        if value.get("id").is_none()
            && let Some(code) = value.get("code").and_then(|c| c.as_str())
        {
            return Err(PayloadError::new(
                "",
                format!("the store sent an error instead of the product: {code}"),
            ));
        }
        if meta.topic == Topic::ProductDeleted {
            // Headers are not signed: a captured product body replayed under
            // `X-WC-Webhook-Topic: product.deleted` must not become a delete.
            // Real delete payloads are `{"id": N}`.
            if let Some(key) = ["name", "type", "date_created"]
                .into_iter()
                .find(|k| value.get(k).is_some())
            {
                return Err(PayloadError::new(
                    key,
                    "a product.deleted delivery carrying a product: the topic header does not match the body",
                ));
            }
            #[derive(serde::Deserialize)]
            struct Deleted {
                id: u64,
            }
            let d: Deleted = catalog_core::json::decode_value(value).map_err(PayloadError::from)?;
            event.product_id = Some(d.id.to_string());
            return Ok(event);
        }
        // Headers are not signed either way: a captured `product.deleted`
        // body (`{"id": N}`) replayed under an update topic must not become
        // a product with no name, status or price, which upserted
        // downstream would blank the real one. Every product payload has
        // these.
        if ["name", "type", "date_created"]
            .iter()
            .all(|k| value.get(k).is_none())
        {
            return Err(PayloadError::new(
                "",
                format!(
                    "a {} delivery with no name, type or date_created (a product.deleted body?): the topic header does not match the body",
                    meta.raw_topic
                ),
            ));
        }
        let wire: WireProduct = crate::wire::decode_listed(&value).map_err(PayloadError::from)?;
        if wire.kind == "variation" {
            let parent = wire.parent_id.filter(|&p| p != 0).ok_or_else(|| {
                PayloadError::new("parent_id", "a variation without its parent id")
            })?;
            event.product_id = Some(parent.to_string());
            return Ok(event);
        }
        event.product_id = Some(wire.id.to_string());
        if crate::convert::has_variations(&wire) {
            // The payload lists its variations by id only: a product built
            // from it would have no variants and, upserted downstream, wipe
            // them. The event names the product; its consumer reads it
            // (variations included) from the API.
            return Ok(event);
        }
        if let Some(currency) = self.currency_for(&meta.store) {
            let units = Units {
                currency: *currency,
                weight: self.weight_unit_for(&meta.store).cloned(),
            };
            event.product = Some(
                product_from_wire(&meta.store, &units, wire, value, None)
                    .map_err(PayloadError::from)?,
            );
        }
        Ok(event)
    }

    fn triage(
        &self,
        delivery: &VerifiedDelivery,
        body: &[u8],
    ) -> Result<Option<String>, PayloadError> {
        // Product bodies: check the syntax and read `id`, `type` and
        // `parent_id` only. The full parse decides for anything this skim
        // does not accept plainly (a repeated key, a `type` that is not a
        // string, a variation without its parent, error objects, deletes,
        // other resources), so the id is always the one `parse` would give.
        let meta = delivery.meta();
        if meta.raw_topic.starts_with("product.")
            && meta.topic != Topic::ProductDeleted
            && std::str::from_utf8(body).is_ok()
            && let Ok(skim) = serde_json::from_slice::<ProductSkim>(body)
        {
            match (skim.kind.as_deref(), skim.parent_id) {
                (Some("variation"), Some(parent)) if parent != 0 => {
                    return Ok(Some(parent.to_string()));
                }
                // Without a `type` (every product payload has one), the
                // full parse decides: an id alone is a delete's body.
                (Some("variation"), _) | (None, _) => {}
                _ => return Ok(Some(skim.id.to_string())),
            }
        }
        Ok(self
            .parse(delivery, body, DateTime::<Utc>::UNIX_EPOCH)?
            .product_id)
    }
}

/// The fields [`WebhookSource::triage`] reads from a product body.
#[derive(serde::Deserialize)]
struct ProductSkim {
    id: u64,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    parent_id: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_is_strict() {
        assert_eq!(ping_id(b"webhook_id=27").as_deref(), Some("27"));
        for bad in [
            &b"webhook_id="[..],
            b"webhook_id=27&x=1",
            b"webhook_id=abc",
            b" webhook_id=1",
            b"{}",
            b"",
        ] {
            assert_eq!(ping_id(bad), None);
        }
    }

    #[test]
    fn modification_date_detection() {
        assert!(carries_modification_date(
            br#"{"id":1,"date_modified":"2017-03-23T17:01:14"}"#
        ));
        assert!(!carries_modification_date(br#"{"id":794}"#));
        assert!(!carries_modification_date(b"not json"));
    }

    #[test]
    fn event_id_rules() {
        let dated = br#"{"id":1,"date_modified_gmt":"2017-03-23T20:01:14"}"#;
        assert_eq!(
            event_id("27", "product.updated", "a", dated),
            event_id("27", "product.updated", "b", dated)
        );
        assert_ne!(
            event_id("27", "product.deleted", "a", br#"{"id":1}"#),
            event_id("27", "product.deleted", "b", br#"{"id":1}"#)
        );
        assert_ne!(
            event_id("27", "product.updated", "a", dated),
            event_id("28", "product.updated", "a", dated)
        );
    }
}
