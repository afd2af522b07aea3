//! Property tests of Shopify header parsing (`ShopifyWebhookSource::inspect`):
//! arbitrary header values never panic it, and valid ones map as documented
//! (shop domains lower-cased, unknown topics kept raw, event ids derived from
//! `X-Shopify-Event-Id` or the webhook id, unreadable trigger times ignored).

use catalog_core::Topic;
use catalog_core::webhook::{Headers, Inbound, WebhookError, WebhookSource};
use catalog_shopify::ShopifyWebhookSource;
use catalog_shopify::webhook::*;
use chrono::{DateTime, TimeZone as _, Utc};
use proptest::prelude::*;

const NAMES: [&str; 7] = [
    HMAC_HEADER,
    TOPIC_HEADER,
    SHOP_DOMAIN_HEADER,
    WEBHOOK_ID_HEADER,
    EVENT_ID_HEADER,
    TRIGGERED_AT_HEADER,
    API_VERSION_HEADER,
];

/// Any string, weighted towards the shapes the parsers branch on.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t]{0,3}",
        "[a-z]{1,10}/[a-z_]{1,12}",
        "[A-Za-z0-9.-]{0,30}",
        "[0-9T:.Z+-]{0,30}",
        "[A-Za-z0-9+/=]{0,60}",
    ]
}

fn inspect(headers: &Headers) -> Result<Inbound, WebhookError> {
    ShopifyWebhookSource::new().inspect(headers, b"{}")
}

proptest! {
    #[test]
    fn arbitrary_headers_never_panic(
        values in prop::collection::vec(prop::option::of(value()), NAMES.len()),
        bare in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut headers = Headers::new();
        for (name, v) in NAMES.iter().zip(&values) {
            if let Some(v) = v {
                // Also the unprefixed names of "Events" deliveries.
                let name = if bare { name.trim_start_matches("X-") } else { name };
                headers.insert(name, v.clone());
            }
        }
        match ShopifyWebhookSource::new().inspect(&headers, &body) {
            Ok(Inbound::Delivery(d)) => {
                // Whatever was accepted is normalised and non-empty.
                prop_assert!(!d.meta.store.is_empty());
                prop_assert_eq!(d.meta.store.clone(), d.meta.store.to_ascii_lowercase());
                prop_assert!(!d.signature.trim().is_empty());
                prop_assert!(!d.meta.raw_topic.trim().is_empty());
            }
            Ok(Inbound::Ping(_)) => prop_assert!(false, "Shopify has no pings"),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_headers_map_as_documented(
        shop in "[a-zA-Z0-9][a-zA-Z0-9-]{0,20}",
        pad in "[ \t]{0,2}",
        trailing_dot in any::<bool>(),
        topic_pick in 0usize..4,
        unknown in "[a-z_]{1,10}/[a-z_]{1,12}",
        event in prop::option::of("[A-Za-z0-9-]{1,36}"),
        webhook in "[A-Za-z0-9-]{1,36}",
        secs in 0i64..4_102_444_800,
        bare in any::<bool>(),
    ) {
        let domain = format!(
            "{pad}{shop}.MyShopify.com{}{pad}",
            if trailing_dot { "." } else { "" }
        );
        let raw_topic = match topic_pick {
            0 => "products/create".to_owned(),
            1 => "products/update".to_owned(),
            2 => "products/delete".to_owned(),
            _ => unknown.clone(),
        };
        let at = Utc.timestamp_opt(secs, 0).single().unwrap_or_default();
        let name = |n: &'static str| if bare { n.trim_start_matches("X-") } else { n };
        let mut headers = Headers::new()
            .with(name(HMAC_HEADER), " c2lnbmF0dXJl ")
            .with(name(TOPIC_HEADER), format!(" {raw_topic} "))
            .with(name(SHOP_DOMAIN_HEADER), domain)
            .with(name(WEBHOOK_ID_HEADER), webhook.clone())
            .with(name(TRIGGERED_AT_HEADER), at.to_rfc3339());
        if let Some(e) = &event {
            headers.insert(name(EVENT_ID_HEADER), e.clone());
        }
        let Ok(Inbound::Delivery(d)) = inspect(&headers) else {
            return Err(TestCaseError::fail("a valid delivery was refused"));
        };
        prop_assert_eq!(&d.meta.store, &format!("{}.myshopify.com", shop.to_ascii_lowercase()));
        prop_assert_eq!(&d.meta.raw_topic, &raw_topic);
        let want = match topic_pick {
            0 => Topic::ProductCreated,
            1 => Topic::ProductUpdated,
            2 => Topic::ProductDeleted,
            _ => Topic::Other(unknown),
        };
        prop_assert_eq!(&d.meta.topic, &want);
        let id = match &event {
            // `inspect` reads the body `{}`: its XXH3-64.
            Some(e) => format!("{raw_topic}:{e}:1349cde127705c16"),
            None => format!("{raw_topic}:webhook-id:{webhook}"),
        };
        prop_assert_eq!(d.meta.event_id.as_str(), id.as_str());
        prop_assert_eq!(d.meta.delivery_id.as_deref(), Some(webhook.as_str()));
        prop_assert_eq!(d.meta.triggered_at, Some(at));
        prop_assert_eq!(d.signature.as_str(), "c2lnbmF0dXJl");
    }

    #[test]
    fn unreadable_trigger_times_are_ignored(t in any::<String>()) {
        let headers = Headers::new()
            .with(HMAC_HEADER, "c2ln")
            .with(TOPIC_HEADER, "products/update")
            .with(SHOP_DOMAIN_HEADER, "a.myshopify.com")
            .with(EVENT_ID_HEADER, "e")
            .with(TRIGGERED_AT_HEADER, t.clone());
        let Ok(Inbound::Delivery(d)) = inspect(&headers) else {
            return Err(TestCaseError::fail("a bad trigger time bounced the delivery"));
        };
        let parsed = DateTime::parse_from_rfc3339(t.trim()).ok().map(|t| t.with_timezone(&Utc));
        prop_assert_eq!(d.meta.triggered_at, parsed);
    }

    #[test]
    fn shop_domains_outside_the_hostname_alphabet_are_refused(
        shop in "[a-z0-9.-]{0,8}[^a-zA-Z0-9.\\-\\s][a-z0-9.-]{0,8}",
    ) {
        let headers = Headers::new()
            .with(HMAC_HEADER, "c2ln")
            .with(TOPIC_HEADER, "products/update")
            .with(SHOP_DOMAIN_HEADER, shop)
            .with(EVENT_ID_HEADER, "e");
        let refused = matches!(
            inspect(&headers),
            Err(WebhookError::InvalidHeader { name: SHOP_DOMAIN_HEADER, .. })
        );
        prop_assert!(refused);
    }
}
