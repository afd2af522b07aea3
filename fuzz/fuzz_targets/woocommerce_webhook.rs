//! A WooCommerce request with an arbitrary body (signed, or unsigned like a
//! ping): inspect, verify and parse never panic; pings are never events.
#![no_main]

use catalog_core::webhook::{
    Headers, HmacVerifier, Inbound, Received, WebhookSource, check_triage, receive, sign,
};
use catalog_woocommerce::WooCommerceWebhookSource;
use catalog_woocommerce::webhook::{
    DELIVERY_ID_HEADER, EVENT_HEADER, RESOURCE_HEADER, SIGNATURE_HEADER, SOURCE_HEADER,
    TOPIC_HEADER, WEBHOOK_ID_HEADER,
};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

const TOPICS: [&str; 6] = [
    "product.created",
    "product.updated",
    "product.deleted",
    "product.restored",
    "order.created",
    "action.woocommerce_fuzz",
];

// Byte 0 picks the topic, byte 1 whether the request is unsigned (ping-like);
// the rest is the body, so the seeds are the documented samples behind two bytes.
fuzz_target!(|data: &[u8]| {
    let [topic_pick, flags, body @ ..] = data else {
        return;
    };
    let unsigned = flags & 1 == 1;
    let Ok(verifier) = HmacVerifier::new([SecretString::from("fuzz-secret")]) else {
        return;
    };
    let source = WooCommerceWebhookSource::new();
    let lookup = |_: &str| Some(&verifier);
    let headers = if unsigned {
        // What a ping looks like: no X-WC headers at all.
        Headers::new().with("Content-Type", "application/x-www-form-urlencoded")
    } else {
        let topic = TOPICS[usize::from(*topic_pick) % TOPICS.len()];
        let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
        Headers::new()
            .with(SIGNATURE_HEADER, sign(b"fuzz-secret", body))
            .with(TOPIC_HEADER, topic)
            .with(RESOURCE_HEADER, resource)
            .with(EVENT_HEADER, event)
            .with(SOURCE_HEADER, "https://shop.example.com/")
            .with(WEBHOOK_ID_HEADER, "27")
            .with(DELIVERY_ID_HEADER, "039f3155b209b1c591c26f60004d889f")
    };
    match receive(&source, &headers, body, &lookup, chrono::Utc::now()) {
        Ok(Received::Event(event)) => {
            assert!(!unsigned, "an unsigned request became an event");
            assert_eq!(event.store, "https://shop.example.com");
            if let Some(product) = &event.product {
                assert!(serde_json::to_string(product).is_ok());
            }
        }
        Ok(Received::Ping(_)) => assert!(unsigned, "a signed delivery was taken for a ping"),
        _ => {}
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
