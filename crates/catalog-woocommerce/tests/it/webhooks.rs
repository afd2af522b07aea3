//! Webhook deliveries encoded and signed the way WooCommerce sends them.

use catalog_core::webhook::{
    Headers, HmacVerifier, Inbound, Received, WebhookError, WebhookSource, receive, sign,
};
use catalog_core::{CatalogEvent, CurrencyCode, Topic};
use catalog_woocommerce::WooCommerceWebhookSource;
use catalog_woocommerce::webhook::{
    DELIVERY_ID_HEADER, EVENT_HEADER, RESOURCE_HEADER, SIGNATURE_HEADER, SOURCE_HEADER,
    TOPIC_HEADER, WEBHOOK_ID_HEADER,
};
use chrono::Utc;
use secrecy::SecretString;

use crate::php_json::php_json_encode;

const WEBHOOK_SECRET: &str = "wh-secret-&<>-fake";

fn verifier() -> HmacVerifier {
    HmacVerifier::new([SecretString::from(WEBHOOK_SECRET)]).unwrap()
}

fn source() -> WooCommerceWebhookSource {
    WooCommerceWebhookSource::new().with_store_currency(
        "https://shop.example.com",
        CurrencyCode::new("USD").unwrap(),
    )
}

/// Headers of a delivery as `WC_Webhook::deliver()` sets them.
fn headers(topic: &str, delivery_id: &str, body: &[u8]) -> Headers {
    let (resource, event) = topic.split_once('.').unwrap();
    Headers::new()
        .with("User-Agent", "WooCommerce/9.4.0 Hookshot (WordPress/6.7)")
        .with("Content-Type", "application/json")
        .with(SOURCE_HEADER, "https://Shop.Example.com/")
        .with(TOPIC_HEADER, topic)
        .with(RESOURCE_HEADER, resource)
        .with(EVENT_HEADER, event)
        .with(SIGNATURE_HEADER, sign(WEBHOOK_SECRET.as_bytes(), body))
        .with(WEBHOOK_ID_HEADER, "27")
        .with(DELIVERY_ID_HEADER, delivery_id)
}

fn deliver(topic: &str, delivery_id: &str, body: &[u8]) -> Result<Received, WebhookError> {
    let v = verifier();
    let src = source();
    receive(
        &src,
        &headers(topic, delivery_id, body),
        body,
        &|store| (store == "https://shop.example.com").then_some(&v),
        Utc::now(),
    )
}

fn event(r: Received) -> CatalogEvent {
    match r {
        Received::Event(e) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The docs sample 794 with a non-ASCII, slash-bearing name, PHP-encoded.
fn product_body() -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/product-794.docs-sample.json")).unwrap();
    v["name"] = "Crème brûlée T-shirt – S/M 😀".into();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    php_json_encode(&pretty).into_bytes()
}

#[test]
fn product_updated_from_php_encoded_sample() {
    let body = product_body();
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(
        text.contains(r#"https:\/\/example.com"#)
            && text.contains(r"Cr\u00e8me")
            && text.contains(r"\ud83d\ude00")
    );
    let e = event(deliver("product.updated", "039f3155b209b1c591c26f60004d889f", &body).unwrap());
    assert_eq!(e.topic, Topic::ProductUpdated);
    assert_eq!(e.store, "https://shop.example.com");
    assert_eq!(e.product_id.as_deref(), Some("794"));
    assert_eq!(
        e.delivery_id.as_deref(),
        Some("039f3155b209b1c591c26f60004d889f")
    );
    assert_eq!(
        e.raw_body.as_bytes(),
        &body[..],
        "raw body kept byte for byte"
    );
    let p = e.product.expect("currency known: full product");
    assert_eq!(p.title, "Crème brûlée T-shirt – S/M 😀");
    assert_eq!(p.id, "woocommerce:https://shop.example.com:794");
    assert_eq!(
        p.variants[0].price.as_ref().unwrap().to_string(),
        "21.99 USD"
    );
}

#[test]
fn reserialised_body_fails_verification() {
    let body = product_body();
    let reencoded =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap()).unwrap();
    let v = verifier();
    let err = receive(
        &source(),
        &headers("product.updated", "d1", &body),
        &reencoded,
        &|_| Some(&v),
        Utc::now(),
    )
    .unwrap_err();
    assert_eq!(err, WebhookError::SignatureMismatch);
}

#[test]
fn unknown_currency_gives_id_without_product() {
    let body = product_body();
    let v = verifier();
    let r = receive(
        &WooCommerceWebhookSource::new(),
        &headers("product.created", "d1", &body),
        &body,
        &|_| Some(&v),
        Utc::now(),
    )
    .unwrap();
    let e = event(r);
    assert_eq!(e.topic, Topic::ProductCreated);
    assert_eq!(e.product_id.as_deref(), Some("794"));
    assert!(e.product.is_none());
}

#[test]
fn ping_is_recognised_strictly() {
    let src = source();
    let ping_headers = Headers::new()
        .with("User-Agent", "WooCommerce/9.4.0 Hookshot (WordPress/6.7)")
        .with(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        );
    match src.inspect(&ping_headers, b"webhook_id=27").unwrap() {
        Inbound::Ping(p) => assert_eq!(p.subscription_id.as_deref(), Some("27")),
        other => panic!("{other:?}"),
    }
    for body in [
        &b"webhook_id=27&x=1"[..],
        b"webhook_id=",
        b"{\"id\":1}",
        b"",
    ] {
        // Not a ping, and unsigned: an authentication failure (401).
        let err = src.inspect(&ping_headers, body).unwrap_err();
        assert_eq!(err, WebhookError::MissingSignature(SIGNATURE_HEADER));
        assert!(err.is_authentication_failure());
    }
    // A ping body with a topic header is not a ping: it must be a full delivery.
    let h = ping_headers.clone().with(TOPIC_HEADER, "product.updated");
    assert_eq!(
        src.inspect(&h, b"webhook_id=27").unwrap_err(),
        WebhookError::MissingSignature(SIGNATURE_HEADER)
    );
    // A blank signature is as unsigned.
    let blank = h.with(SIGNATURE_HEADER, " ");
    let err = src.inspect(&blank, b"webhook_id=27").unwrap_err();
    assert_eq!(err, WebhookError::EmptySignature);
    assert!(err.is_authentication_failure());
    // A signature without a topic neither.
    let h = ping_headers.with(SIGNATURE_HEADER, "abc");
    assert_eq!(
        src.inspect(&h, b"webhook_id=27").unwrap_err(),
        WebhookError::MissingHeader(TOPIC_HEADER)
    );
}

#[test]
fn missing_and_invalid_headers() {
    let src = source();
    let body = br#"{"id":794}"#;
    let full = headers("product.deleted", "d1", body);
    for name in [SOURCE_HEADER, WEBHOOK_ID_HEADER, DELIVERY_ID_HEADER] {
        let mut h = Headers::new();
        for (n, v) in full.iter().filter(|(n, _)| !n.eq_ignore_ascii_case(name)) {
            h.insert(n, v);
        }
        assert_eq!(
            src.inspect(&h, body).unwrap_err(),
            WebhookError::MissingHeader(name)
        );
    }
    let mut h = Headers::new();
    for (n, v) in full.iter() {
        let v = if n == SOURCE_HEADER { "ftp://nope" } else { v };
        h.insert(n, v);
    }
    assert!(
        matches!(src.inspect(&h, body), Err(WebhookError::InvalidHeader { name, .. }) if name == SOURCE_HEADER)
    );
    let mut h = Headers::new();
    for (n, v) in full.iter() {
        let v = if n == EVENT_HEADER { "updated" } else { v };
        h.insert(n, v);
    }
    assert!(
        matches!(src.inspect(&h, body), Err(WebhookError::InvalidHeader { name, .. }) if name == EVENT_HEADER)
    );
}

#[test]
fn deleted_payload_is_only_the_id() {
    let e = event(deliver("product.deleted", "d1", br#"{"id":794}"#).unwrap());
    assert_eq!(e.topic, Topic::ProductDeleted);
    assert_eq!(e.product_id.as_deref(), Some("794"));
    assert!(e.product.is_none());
}

#[test]
fn restored_product() {
    let e = event(deliver("product.restored", "d1", &product_body()).unwrap());
    assert_eq!(e.topic, Topic::ProductRestored);
    assert!(e.product.is_some());
}

#[test]
fn variation_update_points_at_the_parent() {
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/variation-732.docs-sample.json")).unwrap();
    // The product.updated payload of a variation is GET /products/732: it
    // has type and parent_id.
    v["type"] = "variation".into();
    v["parent_id"] = 22.into();
    let body = php_json_encode(&serde_json::to_string(&v).unwrap()).into_bytes();
    let e = event(deliver("product.updated", "d1", &body).unwrap());
    assert_eq!(e.topic, Topic::ProductUpdated);
    assert_eq!(e.product_id.as_deref(), Some("22"), "the parent");
    assert!(e.product.is_none());
    assert!(
        e.raw_body.contains(r#""id":732,"#),
        "variation id stays visible"
    );
}

#[test]
fn other_topics_are_kept_verbatim() {
    let e = event(deliver("order.created", "d1", br#"{"id":5,"status":"processing"}"#).unwrap());
    assert_eq!(e.topic, Topic::Other("order.created".into()));
    assert!(e.product_id.is_none() && e.product.is_none());
}

#[test]
fn error_body_instead_of_product_is_unparseable() {
    let body = br#"{"code":"woocommerce_rest_product_invalid_id","message":"Invalid ID.","data":{"status":404}}"#;
    match deliver("product.updated", "d1", body).unwrap() {
        Received::Unparseable { error, .. } => assert!(
            error
                .to_string()
                .contains("woocommerce_rest_product_invalid_id")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dedup_keys() {
    let body = product_body();
    // WooCommerce's duplicate product.updated: same bytes, new delivery id.
    let a = event(deliver("product.updated", "aaaa", &body).unwrap());
    let b = event(deliver("product.updated", "bbbb", &body).unwrap());
    assert_eq!(a.event_id, b.event_id);
    assert_eq!(a.dedup_key(), b.dedup_key());
    // A real change has a new date_modified: new key even with a colliding delivery id.
    let changed = String::from_utf8(body.clone()).unwrap().replace(
        r#""date_modified_gmt":"2017-03-23T20:01:14""#,
        r#""date_modified_gmt":"2017-03-23T20:05:00""#,
    );
    assert_ne!(changed.as_bytes(), &body[..]);
    let c = event(deliver("product.updated", "aaaa", changed.as_bytes()).unwrap());
    assert_ne!(a.event_id, c.event_id);
    // Same body, other topic: different events.
    let d = event(deliver("product.restored", "aaaa", &body).unwrap());
    assert_ne!(a.event_id, d.event_id);
    // Id-only bodies: trash, restore, trash again are different deliveries
    // (different seconds, so different delivery ids)...
    let del1 = event(deliver("product.deleted", "1111", br#"{"id":794}"#).unwrap());
    let del2 = event(deliver("product.deleted", "2222", br#"{"id":794}"#).unwrap());
    assert_ne!(del1.event_id, del2.event_id);
    // ...while a duplicate within the same second collapses.
    let del1b = event(deliver("product.deleted", "1111", br#"{"id":794}"#).unwrap());
    assert_eq!(del1.event_id, del1b.event_id);
}

#[test]
fn config_builds_source_and_verifier() {
    let cfg: catalog_woocommerce::WooCommerceConfig = serde_json::from_str(&format!(
        r#"{{"store_url":"https://shop.example.com/","consumer_key":"ck","consumer_secret":"cs_hidden_value",
            "currency":"usd","webhook_secrets":["{WEBHOOK_SECRET}"]}}"#
    ))
    .unwrap();
    let body = product_body();
    let v = cfg.webhook_verifier().unwrap();
    let src = cfg.webhook_source().unwrap();
    let r = receive(
        &src,
        &headers("product.updated", "d", &body),
        &body,
        &|_| Some(&v),
        Utc::now(),
    )
    .unwrap();
    assert!(event(r).product.is_some());
    assert!(!format!("{cfg:?}").contains("cs_hidden_value"));
    assert!(!format!("{cfg:?}").contains(WEBHOOK_SECRET));
}

#[test]
fn triage_gives_the_product_id_parse_gives() {
    let src = source();
    let v = verifier();
    let variation = |kind: serde_json::Value, parent: serde_json::Value| {
        let mut p: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/variation-732.docs-sample.json"))
                .unwrap();
        p["type"] = kind;
        p["parent_id"] = parent;
        serde_json::to_vec(&p).unwrap()
    };
    let product = product_body();
    let text = std::str::from_utf8(&product).unwrap().trim();
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("product.updated", product.clone()),
        ("product.created", product.clone()),
        ("product.restored", product.clone()),
        ("product.updated", variation("variation".into(), 22.into())),
        ("product.updated", variation("variation".into(), 0.into())),
        (
            "product.updated",
            variation("variation".into(), serde_json::Value::Null),
        ),
        ("product.updated", variation(5.into(), 22.into())),
        ("product.updated", variation("simple".into(), 22.into())),
        // Repeated keys: the last one wins, as in the full parse.
        (
            "product.updated",
            format!("{{\"id\": 1, {}", &text[1..]).into_bytes(),
        ),
        (
            "product.updated",
            format!(
                "{{\"type\": \"variation\", \"parent_id\": 9, {}",
                &text[1..]
            )
            .into_bytes(),
        ),
        (
            "product.updated",
            br#"{"code":"woocommerce_rest_invalid_id","message":"x"}"#.to_vec(),
        ),
        ("product.updated", br#"{"id": -3}"#.to_vec()),
        ("product.updated", b"{\"id\": 3".to_vec()),
        ("product.updated", b"<html>".to_vec()),
        ("product.deleted", br#"{"id": 794}"#.to_vec()),
        ("product.deleted", product.clone()),
        ("order.created", br#"{"id": 5}"#.to_vec()),
    ];
    for (topic, body) in &bodies {
        let h = headers(topic, "d1", body);
        let Inbound::Delivery(d) = src.inspect(&h, body).unwrap() else {
            panic!("not a delivery")
        };
        let verified = d.verify(body, &v).unwrap();
        let what = format!("{topic} {}", String::from_utf8_lossy(body));
        if let Err(e) = catalog_core::webhook::check_triage(&src, &verified, body) {
            panic!("{what}: {e}");
        }
    }
}

/// WordPress names the site `http://` or `https://` depending on where the
/// delivery is sent from (`home_url` follows `is_ssl()`): both are one
/// store, with its secrets, its currency and one dedup space.
#[test]
fn http_and_https_deliveries_of_one_site_are_one_store() {
    let body = product_body();
    let v = verifier();
    let src = source();
    let mut stores = Vec::new();
    for site in ["https://Shop.Example.com/", "http://shop.example.com"] {
        let mut h = headers("product.updated", "1", &body);
        h = h.with(SOURCE_HEADER, site);
        let e = event(
            receive(
                &src,
                &h,
                &body,
                &|store| (store == "https://shop.example.com").then_some(&v),
                Utc::now(),
            )
            .unwrap(),
        );
        assert!(e.product.is_some(), "the store's currency applies");
        stores.push((e.store.clone(), e.dedup_key()));
    }
    assert_eq!(stores[0], stores[1]);
}

/// A variable product's payload lists its variations by id only: the event
/// names the product and carries none (a product without its variants,
/// upserted downstream, would wipe them). Plugin types with variations
/// (`variable-subscription`) are read the same way.
#[test]
fn variable_products_are_named_not_built_without_variants() {
    let mut v: serde_json::Value = serde_json::from_str(include_str!(
        "../fixtures/product-variable-799.docs-sample.json"
    ))
    .unwrap();
    v["variations"] = serde_json::json!([732, 733]);
    for kind in ["variable", "variable-subscription"] {
        v["type"] = kind.into();
        let body = serde_json::to_vec(&v).unwrap();
        let e = event(deliver("product.updated", "1", &body).unwrap());
        assert_eq!(e.product_id.as_deref(), Some("799"), "{kind}");
        assert!(
            e.product.is_none(),
            "{kind}: a product without its variants"
        );
    }
    // A simple product still arrives whole.
    let body = product_body();
    assert!(
        event(deliver("product.updated", "2", &body).unwrap())
            .product
            .is_some()
    );
}

/// Payload weights are bare numbers in the store's `woocommerce_weight_unit`:
/// a store's own unit wins over the source's default; with neither, no
/// weight (rather than a number of unknown unit).
#[test]
fn weights_take_the_store_unit_then_the_default() {
    use catalog_core::WeightUnit;
    let mut sample: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/product-794.docs-sample.json")).unwrap();
    sample["weight"] = "1.5".into();
    let body = serde_json::to_vec(&sample).unwrap();
    let v = verifier();
    let weight_with = |src: WooCommerceWebhookSource| {
        let r = receive(
            &src,
            &headers("product.updated", "w1", &body),
            &body,
            &|_| Some(&v),
            Utc::now(),
        )
        .unwrap();
        event(r).product.unwrap().variants[0].weight.clone()
    };
    assert_eq!(weight_with(source()), None);
    let w = weight_with(source().with_weight_unit(WeightUnit::Grams)).unwrap();
    assert_eq!(
        (w.value.to_string().as_str(), w.unit),
        ("1.5", WeightUnit::Grams)
    );
    let w = weight_with(
        source()
            .with_weight_unit(WeightUnit::Grams)
            .with_store_weight_unit("http://shop.example.com/", WeightUnit::Kilograms),
    )
    .unwrap();
    assert_eq!(w.unit, WeightUnit::Kilograms);
    let w = weight_with(
        source().with_store_weight_unit("https://other.example.com", WeightUnit::Pounds),
    );
    assert_eq!(w, None);
}

/// Another topic's body goes on as sent, so it must be JSON: a signed body
/// that is not is unparseable (kept, not passed on without its content).
#[test]
fn another_topic_with_a_body_that_is_not_json_is_unparseable() {
    for body in [
        &b"not json"[..],
        b"{\"id\":5,}",
        b"",
        b"{\"id\":1}{\"id\":2}",
    ] {
        match deliver("order.created", "d9", body).unwrap() {
            Received::Unparseable { .. } => {}
            other => panic!(
                "{:?}: expected unparseable, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
    let e = event(deliver("order.created", "d9", b"\xEF\xBB\xBF{\"id\":5}").unwrap());
    assert_eq!(e.topic, Topic::Other("order.created".into()));
}

/// A delete's body (`{"id": N}`) under another product topic is refused
/// (kept as unparseable), never a blank product: headers are not signed,
/// so a captured delete replayed as an update would otherwise wipe the
/// product downstream (an outside audit's case).
#[test]
fn an_id_alone_under_a_product_topic_other_than_delete_is_unparseable() {
    for topic in [
        "product.created",
        "product.updated",
        "product.restored",
        "product.price_drop",
    ] {
        match deliver(topic, "d7", br#"{"id":794}"#).unwrap() {
            Received::Unparseable { error, .. } => {
                assert!(
                    error.to_string().contains("product.deleted body"),
                    "{topic}: {error}"
                );
            }
            other => panic!("{topic}: expected unparseable, got {other:?}"),
        }
    }
    let e = event(deliver("product.deleted", "d7", br#"{"id":794}"#).unwrap());
    assert_eq!(e.product_id.as_deref(), Some("794"));
}
