//! A signed Shopify delivery with an arbitrary body and topic: inspect, verify
//! and parse never panic; a parsed event is consistent with its headers.
#![no_main]

use catalog_core::webhook::{
    Headers, HmacVerifier, Inbound, Received, WebhookSource, check_triage, receive, sign,
};
use catalog_shopify::ShopifyWebhookSource;
use catalog_shopify::webhook::{
    API_VERSION_HEADER, EVENT_ID_HEADER, HMAC_HEADER, SHOP_DOMAIN_HEADER, TOPIC_HEADER,
    TRIGGERED_AT_HEADER, WEBHOOK_ID_HEADER,
};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

const TOPICS: [&str; 5] = [
    "products/create",
    "products/update",
    "products/delete",
    "orders/create",
    "",
];

const TRIGGERED: [&str; 4] = [
    "2026-11-28T05:00:00.000Z",
    "2026-11-28T05:00:00-04:00",
    "yesterday",
    "",
];

// Byte 0 picks the topic, byte 1 the trigger time; the rest is the body, so the
// seeds are the documented samples behind two bytes.
fuzz_target!(|data: &[u8]| {
    let [topic_pick, time_pick, body @ ..] = data else {
        return;
    };
    let topic = TOPICS[usize::from(*topic_pick) % TOPICS.len()];
    let triggered_at = TRIGGERED[usize::from(*time_pick) % TRIGGERED.len()];
    let Ok(verifier) = HmacVerifier::new([SecretString::from("fuzz-secret")]) else {
        return;
    };
    let headers = Headers::new()
        .with(HMAC_HEADER, sign(b"fuzz-secret", body))
        .with(TOPIC_HEADER, topic)
        .with(SHOP_DOMAIN_HEADER, "fuzz.myshopify.com")
        .with(WEBHOOK_ID_HEADER, "w-1")
        .with(EVENT_ID_HEADER, "e-1")
        .with(TRIGGERED_AT_HEADER, triggered_at)
        .with(API_VERSION_HEADER, "2026-01");
    let source = ShopifyWebhookSource::default();
    let lookup = |_: &str| Some(&verifier);
    if let Ok(Received::Event(event)) =
        receive(&source, &headers, body, &lookup, chrono::Utc::now())
    {
        assert_eq!(event.store, "fuzz.myshopify.com");
        assert_eq!(event.raw_body.as_bytes(), body);
        if let Some(product) = &event.product {
            assert_eq!(Some(&product.platform_id), event.product_id.as_ref());
            // The unified model always serialises.
            assert!(serde_json::to_string(product).is_ok());
        }
    }

    // The receiver stores by the product id triage reads before it answers:
    // it must be the id the full parse gives whenever the parse succeeds.
    if let Ok(Inbound::Delivery(d)) = source.inspect(&headers, body) {
        if let Ok(verified) = d.verify(body, &verifier) {
            if let Err(e) = check_triage(&source, &verified, body) {
                panic!("{e}");
            }
        }
    }
});
