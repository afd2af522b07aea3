//! Shared helpers: a fake Shopify-like source, signed requests, app state.

use std::sync::Arc;

use actix_web::test::TestRequest;
use catalog_core::webhook::{
    DeliveryMeta, HeaderLookup, Inbound, PayloadError, Ping, UnverifiedDelivery, VerifiedDelivery,
    WebhookError, WebhookSource, optional_header, required_header, sign,
};
use catalog_core::{CatalogEvent, EventId, PlatformId, Topic};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use webhook_server::AppState;
use webhook_server::platforms::{PlatformEntry, Platforms, SHOPIFY_ACTIONS, Verifiers};
use webhook_server::settings::{PlatformSettings, Settings, StoreSettings};
use webhook_server::store::{EventStore, MemoryStore};

/// A request to `uri` with `method` and nothing else.
pub(crate) fn with_method(method: actix_web::http::Method, uri: &str) -> TestRequest {
    TestRequest::default().method(method).uri(uri)
}

pub(crate) const SECRET: &str = "test-secret";
pub(crate) const STORE: &str = "test-shop.myshopify.com";
pub(crate) const SAMPLE: &str = include_str!("../fixtures/products_create.json");

/// A stand-in for the Shopify source with the same header names, so the
/// pipeline can be tested independently of the platform crate.
#[derive(Debug)]
pub(crate) struct FakeSource;

fn topic_of(raw: &str) -> Topic {
    match raw {
        "products/create" => Topic::ProductCreated,
        "products/update" => Topic::ProductUpdated,
        "products/delete" => Topic::ProductDeleted,
        other => Topic::Other(other.to_owned()),
    }
}

impl WebhookSource for FakeSource {
    fn platform(&self) -> PlatformId {
        PlatformId::SHOPIFY
    }

    fn inspect(&self, headers: &dyn HeaderLookup, body: &[u8]) -> Result<Inbound, WebhookError> {
        if headers.get("x-shopify-topic").is_none() && body.starts_with(b"webhook_id=") {
            return Ok(Inbound::Ping(Ping::new(PlatformId::SHOPIFY, None)));
        }
        let raw_topic = required_header(headers, "X-Shopify-Topic")?;
        let store = required_header(headers, "X-Shopify-Shop-Domain")?.to_ascii_lowercase();
        let signature = headers
            .get("X-Shopify-Hmac-Sha256")
            .ok_or(WebhookError::MissingHeader("X-Shopify-Hmac-Sha256"))?;
        let event_id = required_header(headers, "X-Shopify-Event-Id")?;
        let meta = DeliveryMeta::new(
            PlatformId::SHOPIFY,
            store,
            topic_of(raw_topic),
            raw_topic,
            EventId::new(format!("{raw_topic}:{event_id}")),
        )
        .with_delivery_id(optional_header(headers, "X-Shopify-Webhook-Id").map(str::to_owned));
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
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| PayloadError::new("", e.to_string()))?;
        let id = match v.get("id") {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(PayloadError::new("id", "missing product id")),
        };
        let meta = delivery.meta();
        Ok(CatalogEvent {
            platform: meta.platform.clone(),
            store: meta.store.clone(),
            topic: meta.topic.clone(),
            raw_topic: meta.raw_topic.clone(),
            event_id: meta.event_id.clone(),
            delivery_id: meta.delivery_id.clone(),
            triggered_at: meta.triggered_at,
            received_at,
            product_id: Some(id),
            product: None,
            raw_body: String::from_utf8_lossy(body).into_owned(),
        })
    }
}

/// Test settings: defaults, rate limiting off.
pub(crate) fn settings() -> Settings {
    let mut s = Settings::defaults();
    s.rate_limit.enabled = false;
    s
}

/// Platform settings with the seed's single secret.
pub(crate) fn single_secret() -> PlatformSettings {
    let mut p = PlatformSettings::default();
    p.webhook_secret = Some(SecretString::from(SECRET));
    p
}

/// Platform settings listing stores.
pub(crate) fn stores(list: &[(&str, &[&str])]) -> PlatformSettings {
    let mut p = PlatformSettings::default();
    p.stores = list
        .iter()
        .map(|(id, secrets)| {
            StoreSettings::new(
                *id,
                secrets.iter().map(|s| SecretString::from(*s)).collect(),
            )
        })
        .collect();
    p
}

/// State with the fake source as "shopify".
pub(crate) fn state_with(store: Arc<dyn EventStore>, platform: &PlatformSettings) -> AppState {
    state_from(&settings(), store, platform)
}

/// State with explicit settings.
pub(crate) fn state_from(
    settings: &Settings,
    store: Arc<dyn EventStore>,
    platform: &PlatformSettings,
) -> AppState {
    let entry = PlatformEntry::new(
        Arc::new(FakeSource),
        SHOPIFY_ACTIONS,
        webhook_server::platforms::SHOPIFY_SIGNATURE_HEADERS,
        webhook_server::platforms::SHOPIFY_IDENTITY_HEADERS,
        Verifiers::from_settings("shopify", platform).unwrap(),
    );
    AppState::new(settings, Platforms::new(vec![entry]), store)
}

/// A memory store.
pub(crate) fn memory() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new(10_000, 10_000))
}

/// A body with a given product id.
pub(crate) fn body(product_id: u64) -> String {
    SAMPLE.replace("788032119674292922", &product_id.to_string())
}

/// A signed delivery request.
pub(crate) fn delivery(
    path: &str,
    topic: &str,
    event_id: &str,
    body: &str,
    secret: &str,
) -> TestRequest {
    delivery_for(
        path,
        topic,
        STORE,
        event_id,
        body,
        &sign(secret.as_bytes(), body.as_bytes()),
    )
}

/// A delivery with explicit store and signature.
pub(crate) fn delivery_for(
    path: &str,
    topic: &str,
    store: &str,
    event_id: &str,
    body: &str,
    signature: &str,
) -> TestRequest {
    TestRequest::post()
        .uri(path)
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("X-Shopify-Topic", topic))
        .insert_header(("X-Shopify-Shop-Domain", store))
        .insert_header(("X-Shopify-Event-Id", event_id))
        .insert_header(("X-Shopify-Webhook-Id", format!("w-{event_id}")))
        .insert_header(("X-Shopify-Hmac-Sha256", signature))
        .set_payload(body.to_owned())
}

/// Shopify headers for a real-HTTP client.
pub(crate) fn shopify_headers(event_id: &str, body: &[u8], secret: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-Shopify-Topic".into(), "products/create".into()),
        ("X-Shopify-Shop-Domain".into(), STORE.into()),
        ("X-Shopify-Event-Id".into(), event_id.into()),
        ("X-Shopify-Webhook-Id".into(), format!("w-{event_id}")),
        ("X-Shopify-API-Version".into(), "2026-01".into()),
        (
            "X-Shopify-Triggered-At".into(),
            "2026-11-28T05:00:00.000Z".into(),
        ),
        (
            "X-Shopify-Hmac-Sha256".into(),
            sign(secret.as_bytes(), body),
        ),
    ]
}

/// A free TCP port on 127.0.0.1.
#[allow(dead_code)]
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
