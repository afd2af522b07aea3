//! Property tests of WooCommerce header parsing
//! (`WooCommerceWebhookSource::inspect`): arbitrary header values and bodies
//! never panic it, and valid ones map as documented (source URLs normalised,
//! unknown topics kept raw, pings recognised only without topic and
//! signature, event ids deterministic).

use catalog_core::Topic;
use catalog_core::webhook::{Headers, Inbound, WebhookError, WebhookSource};
use catalog_woocommerce::WooCommerceWebhookSource;
use catalog_woocommerce::webhook::*;
use proptest::prelude::*;

const NAMES: [&str; 7] = [
    SIGNATURE_HEADER,
    TOPIC_HEADER,
    RESOURCE_HEADER,
    EVENT_HEADER,
    SOURCE_HEADER,
    WEBHOOK_ID_HEADER,
    DELIVERY_ID_HEADER,
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t]{0,3}",
        "[a-z_]{0,10}\\.[a-z_]{0,12}",
        "(https?|ftp|javascript)://[A-Za-z0-9.:@/?#%_-]{0,40}",
        "[0-9]{0,25}",
        "[A-Za-z0-9+/=]{0,60}",
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        "webhook_id=[0-9]{0,25}".prop_map(String::into_bytes),
        "\\{\"id\":[0-9]{1,5}(,\"date_modified\":\"[0-9T:-]{0,19}\")?\\}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn arbitrary_headers_and_bodies_never_panic(
        values in prop::collection::vec(prop::option::of(value()), NAMES.len()),
        body in body(),
    ) {
        let mut headers = Headers::new();
        for (name, v) in NAMES.iter().zip(&values) {
            if let Some(v) = v {
                headers.insert(*name, v.clone());
            }
        }
        let has_topic_or_sig = values[0].is_some() || values[1].is_some();
        match WooCommerceWebhookSource::new().inspect(&headers, &body) {
            Ok(Inbound::Ping(_)) => {
                prop_assert!(!has_topic_or_sig, "a request with a topic or signature is never a ping");
                prop_assert!(body.starts_with(b"webhook_id="));
            }
            Ok(Inbound::Delivery(d)) => {
                prop_assert!(d.meta.store.starts_with("http://") || d.meta.store.starts_with("https://"));
                prop_assert!(!d.meta.store.ends_with('/'));
                prop_assert_eq!(d.meta.event_id.as_str().len(), 64);
                prop_assert!(!d.signature.trim().is_empty());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_headers_map_as_documented(
        https in any::<bool>(),
        host in "[a-z0-9]{1,10}(\\.[a-z]{2,6}){1,2}",
        upper in prop::collection::vec(any::<bool>(), 0..24),
        port in prop::option::of(1024u16..65535),
        path in "(/[a-z0-9_-]{1,8}){0,2}",
        trailing_slash in any::<bool>(),
        pad in "[ \t]{0,2}",
        topic_pick in 0usize..5,
        unknown in "(order|coupon|customer|action)\\.[a-z_]{1,12}",
        subscription in "[0-9]{1,6}",
        delivery in "[0-9a-f]{32}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let scheme = if https { "https" } else { "http" };
        // Random upper case in the host: hosts are case-insensitive.
        let shown_host: String = host
            .chars()
            .zip(upper.iter().chain(std::iter::repeat(&false)))
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let port_text = port.map(|p| format!(":{p}")).unwrap_or_default();
        let source = format!(
            "{pad}{scheme}://{shown_host}{port_text}{path}{}{pad}",
            if trailing_slash { "/" } else { "" }
        );
        let raw_topic = match topic_pick {
            0 => "product.created".to_owned(),
            1 => "product.updated".to_owned(),
            2 => "product.deleted".to_owned(),
            3 => "product.restored".to_owned(),
            _ => unknown.clone(),
        };
        let (resource, event) = raw_topic.split_once('.').unwrap_or_default();
        let headers = Headers::new()
            .with(SIGNATURE_HEADER, "c2lnbmF0dXJl")
            .with(TOPIC_HEADER, raw_topic.clone())
            .with(RESOURCE_HEADER, resource)
            .with(EVENT_HEADER, event)
            .with(SOURCE_HEADER, source)
            .with(WEBHOOK_ID_HEADER, subscription.clone())
            .with(DELIVERY_ID_HEADER, delivery.clone());
        let source = WooCommerceWebhookSource::new();
        let Ok(Inbound::Delivery(d)) = source.inspect(&headers, &body) else {
            return Err(TestCaseError::fail("a valid delivery was refused"));
        };
        // One identity for http and https (see `store_identity`).
        prop_assert_eq!(&d.meta.store, &format!("https://{host}{port_text}{path}"));
        prop_assert_eq!(&d.meta.raw_topic, &raw_topic);
        let want = match topic_pick {
            0 => Topic::ProductCreated,
            1 => Topic::ProductUpdated,
            2 => Topic::ProductDeleted,
            3 => Topic::ProductRestored,
            _ => Topic::Other(unknown),
        };
        prop_assert_eq!(&d.meta.topic, &want);
        prop_assert_eq!(d.meta.delivery_id.as_deref(), Some(delivery.as_str()));
        prop_assert_eq!(
            &d.meta.event_id,
            &event_id(&subscription, &raw_topic, &delivery, &body)
        );
        // Deterministic: the same request gives the same dedup key.
        let Ok(Inbound::Delivery(again)) = source.inspect(&headers, &body) else {
            return Err(TestCaseError::fail("second inspection differs"));
        };
        prop_assert_eq!(again.meta.event_id, d.meta.event_id);
    }

    #[test]
    fn pings_are_only_unsigned_untopiced_webhook_id_bodies(
        id in "[0-9]{1,20}",
        with_sig in any::<bool>(),
    ) {
        let body = format!("webhook_id={id}");
        let mut headers = Headers::new();
        if with_sig {
            headers.insert(SIGNATURE_HEADER, "c2ln");
        }
        let got = WooCommerceWebhookSource::new().inspect(&headers, body.as_bytes());
        if with_sig {
            prop_assert!(got.is_err());
        } else {
            let is_ping = matches!(got, Ok(Inbound::Ping(_)));
            prop_assert!(is_ping);
        }
    }

    #[test]
    fn non_numeric_subscription_ids_are_refused(sub in "[0-9]{0,3}[^0-9\\s][0-9]{0,3}") {
        let headers = Headers::new()
            .with(SIGNATURE_HEADER, "c2ln")
            .with(TOPIC_HEADER, "product.updated")
            .with(SOURCE_HEADER, "https://shop.example.com/")
            .with(WEBHOOK_ID_HEADER, sub)
            .with(DELIVERY_ID_HEADER, "d");
        let refused = matches!(
            WooCommerceWebhookSource::new().inspect(&headers, b"{}"),
            Err(WebhookError::InvalidHeader { name: WEBHOOK_ID_HEADER, .. })
        );
        prop_assert!(refused);
    }
}
