//! Webhook parsing against Shopify's documented sample payloads, and the
//! equality of webhook and GraphQL mappings of the same product.

use catalog_core::webhook::{
    HeaderLookup, Headers, HmacVerifier, Inbound, Received, WebhookError, WebhookSource, receive,
    sign,
};
use catalog_core::{ProductStatus, Topic};
use catalog_shopify::webhook::*;
use chrono::Utc;
use secrecy::SecretString;

const CREATE: &[u8] = include_bytes!("../fixtures/products_create.json");
const DELETE: &[u8] = include_bytes!("../fixtures/products_delete.json");
const SECRET: &str = "app-client-secret";

fn headers(topic: &str, body: &[u8]) -> Headers {
    Headers::new()
        .with(HMAC_HEADER, sign(SECRET.as_bytes(), body))
        .with(TOPIC_HEADER, topic)
        .with(SHOP_DOMAIN_HEADER, "Example.MyShopify.com")
        .with(WEBHOOK_ID_HEADER, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
        .with(EVENT_ID_HEADER, "98880550-7158-44d4-b7cd-2c97c8a091b5")
        .with(TRIGGERED_AT_HEADER, "2026-01-05T13:41:31.877041743Z")
        .with(API_VERSION_HEADER, "2026-01")
}

fn verifier() -> HmacVerifier {
    HmacVerifier::new([SecretString::from(SECRET)]).expect("secret")
}

fn event(headers: &Headers, body: &[u8]) -> catalog_core::CatalogEvent {
    let v = verifier();
    match receive(
        &ShopifyWebhookSource::new(),
        headers,
        body,
        &|_| Some(&v),
        Utc::now(),
    )
    .expect("accepted")
    {
        Received::Event(e) => *e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn create_sample_parses() {
    let e = event(&headers("products/create", CREATE), CREATE);
    assert_eq!(e.topic, Topic::ProductCreated);
    assert_eq!(e.raw_topic, "products/create");
    assert_eq!(e.store, "example.myshopify.com");
    assert_eq!(
        e.event_id.as_str(),
        "products/create:98880550-7158-44d4-b7cd-2c97c8a091b5:fd6d814d6c17228d"
    );
    assert_eq!(
        e.delivery_id.as_deref(),
        Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    );
    assert_eq!(
        e.triggered_at.unwrap().to_rfc3339(),
        "2026-01-05T13:41:31.877041743+00:00"
    );
    assert_eq!(e.product_id.as_deref(), Some("788032119674292922"));
    assert_eq!(e.raw_body.as_bytes(), CREATE);
    let p = e.product.unwrap();
    assert_eq!(p.id, "shopify:example.myshopify.com:788032119674292922");
    assert_eq!(
        p.global_id.as_deref(),
        Some("gid://shopify/Product/788032119674292922")
    );
    assert_eq!(p.status, ProductStatus::Active);
    assert_eq!(p.tags, vec!["example", "mens", "t-shirt"]);
    assert_eq!(p.description_html.as_deref(), Some("An example T-Shirt"));
    assert_eq!(p.variants[1].id, "757650484644203962");
    assert_eq!(
        p.variants[0].price.as_ref().unwrap().to_string(),
        "19.99 USD"
    );
    assert_eq!(
        p.variants[0]
            .compare_at_price
            .as_ref()
            .unwrap()
            .amount()
            .to_string(),
        "24.99"
    );
    assert_eq!(p.variants[0].inventory_quantity, Some(75));
    // 19-digit ids survive in the raw JSON too (no f64 on the way).
    assert_eq!(p.raw["id"].as_u64(), Some(788032119674292922));
}

#[test]
fn update_topic_and_other_topics() {
    let e = event(&headers("products/update", CREATE), CREATE);
    assert_eq!(e.topic, Topic::ProductUpdated);
    assert_eq!(
        e.event_id.as_str(),
        "products/update:98880550-7158-44d4-b7cd-2c97c8a091b5:fd6d814d6c17228d"
    );
    let body = br#"{"id": 1}"#;
    let e = event(&headers("orders/create", body), body);
    assert_eq!(e.topic, Topic::Other("orders/create".into()));
    assert_eq!((e.product_id, e.product), (None, None));
    // A header spelled like a canonical topic is that topic, never an
    // `Other` holding its text: stored, that text reads back as the
    // canonical topic, and the event had bypassed its product's order.
    let e = event(&headers("product.updated", CREATE), CREATE);
    assert_eq!(e.topic, Topic::ProductUpdated);
    assert_eq!(e.product_id.as_deref(), Some("788032119674292922"));
    assert_eq!(
        Topic::from_canonical(e.topic.as_str()),
        e.topic,
        "the stored text reads back as the same topic"
    );
}

#[test]
fn delete_sample_gives_the_id_only() {
    let e = event(&headers("products/delete", DELETE), DELETE);
    assert_eq!(e.topic, Topic::ProductDeleted);
    assert_eq!(e.product_id.as_deref(), Some("788032119674292922"));
    assert!(e.product.is_none());
}

#[test]
fn missing_hmac_and_missing_ids_are_refused() {
    let source = ShopifyWebhookSource::new();
    let mut h = Headers::new();
    for (name, value) in headers("products/create", CREATE).iter() {
        if !name.eq_ignore_ascii_case(HMAC_HEADER) {
            h.insert(name, value);
        }
    }
    // Unsigned: an authentication failure (401), not a malformed request.
    let err = source.inspect(&h, CREATE).unwrap_err();
    assert_eq!(err, WebhookError::MissingSignature(HMAC_HEADER));
    assert!(err.is_authentication_failure());
    h.insert(HMAC_HEADER, "  ");
    let err = source.inspect(&h, CREATE).unwrap_err();
    assert_eq!(err, WebhookError::EmptySignature);
    assert!(err.is_authentication_failure());
    let no_ids = Headers::new()
        .with(HMAC_HEADER, "x")
        .with(TOPIC_HEADER, "products/create")
        .with(SHOP_DOMAIN_HEADER, "a.myshopify.com");
    assert_eq!(
        source.inspect(&no_ids, CREATE).unwrap_err(),
        WebhookError::MissingHeader(EVENT_ID_HEADER)
    );
    for domain in ["", "evil.example/path", "a b.myshopify.com"] {
        let h = Headers::new()
            .with(HMAC_HEADER, "x")
            .with(TOPIC_HEADER, "products/create")
            .with(SHOP_DOMAIN_HEADER, domain)
            .with(EVENT_ID_HEADER, "e");
        assert!(
            matches!(
                source.inspect(&h, CREATE).unwrap_err(),
                WebhookError::InvalidHeader {
                    name: SHOP_DOMAIN_HEADER,
                    ..
                }
            ),
            "{domain:?}"
        );
    }
}

#[test]
fn webhook_id_is_the_fallback_dedup_key() {
    let mut h = Headers::new();
    for (name, value) in headers("products/update", CREATE).iter() {
        if !name.eq_ignore_ascii_case(EVENT_ID_HEADER) {
            h.insert(name, value);
        }
    }
    let Inbound::Delivery(d) = ShopifyWebhookSource::new().inspect(&h, CREATE).unwrap() else {
        panic!("not a delivery")
    };
    assert_eq!(
        d.meta.event_id.as_str(),
        "products/update:webhook-id:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    );
}

#[test]
fn two_subscriptions_of_one_event_share_the_key() {
    let a = headers("products/update", CREATE);
    let mut b = Headers::new();
    for (name, value) in a.iter() {
        let value = if name.eq_ignore_ascii_case(WEBHOOK_ID_HEADER) {
            "another-delivery"
        } else {
            value
        };
        b.insert(name, value);
    }
    assert_eq!(event(&a, CREATE).dedup_key(), event(&b, CREATE).dedup_key());
}

/// Shopify's delivery docs: deduplicate deliveries by Webhook-Id, only
/// correlate by Event-Id. Two subscriptions that shape the payload
/// differently (`includeFields`) send different bodies under one Event-Id:
/// both are kept, or the whole product would be dropped as a duplicate of
/// a trimmed one that arrived first (an outside audit's case).
#[test]
fn differently_shaped_deliveries_of_one_event_are_distinct() {
    let sample: serde_json::Value = serde_json::from_slice(CREATE).unwrap();
    let trimmed = serde_json::to_vec(&serde_json::json!({
        "id": sample["id"], "updated_at": sample["updated_at"]
    }))
    .unwrap();
    let whole = event(&headers("products/update", CREATE), CREATE);
    let mut h = Headers::new();
    for (name, value) in headers("products/update", &trimmed).iter() {
        let value = if name.eq_ignore_ascii_case(WEBHOOK_ID_HEADER) {
            "another-subscription"
        } else {
            value
        };
        h.insert(name, value);
    }
    let part = event(&h, &trimmed);
    assert!(part.product.is_none() && whole.product.is_some());
    assert_eq!(part.product_id, whole.product_id);
    assert_ne!(part.dedup_key(), whole.dedup_key());
}

#[test]
fn signatures_are_checked_with_rotation() {
    let h = Headers::new()
        .with(HMAC_HEADER, sign(b"old-secret", CREATE))
        .with(TOPIC_HEADER, "products/create")
        .with(SHOP_DOMAIN_HEADER, "example.myshopify.com")
        .with(EVENT_ID_HEADER, "e1");
    let rotated = HmacVerifier::new([
        SecretString::from("new-secret"),
        SecretString::from("old-secret"),
    ])
    .unwrap();
    let source = ShopifyWebhookSource::new();
    assert!(matches!(
        receive(&source, &h, CREATE, &|_| Some(&rotated), Utc::now()).unwrap(),
        Received::Event(_)
    ));
    let only_new = HmacVerifier::new([SecretString::from("new-secret")]).unwrap();
    assert_eq!(
        receive(&source, &h, CREATE, &|_| Some(&only_new), Utc::now()).unwrap_err(),
        WebhookError::SignatureMismatch
    );
    assert_eq!(h.get("x-shopify-topic"), Some("products/create"));
}

#[test]
fn store_currency_is_configurable() {
    let source = ShopifyWebhookSource::new()
        .with_store_currency("EXAMPLE.myshopify.com", "eur")
        .unwrap();
    let v = verifier();
    let h = headers("products/create", CREATE);
    let Received::Event(e) = receive(&source, &h, CREATE, &|_| Some(&v), Utc::now()).unwrap()
    else {
        panic!()
    };
    let price = e.product.unwrap().variants[0].price.clone().unwrap();
    assert_eq!(price.currency().as_str(), "EUR");
}

/// Needs the client (the `client` feature, on by default).
#[cfg(feature = "client")]
mod against_the_client {
    use catalog_core::{Catalog, Product};
    use catalog_shopify::ShopifyClient;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    const GRAPHQL: &str = include_str!("../fixtures/graphql_product_788032119674292922.json");

    /// The GraphQL read of the sample product (fixture: what the Admin API
    /// returns for it, mirroring the sample's values, including its `null`
    /// `created_at` and empty `options`) maps to the same Product as the webhook.
    #[tokio::test]
    async fn webhook_and_graphql_map_to_the_same_product() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/admin/api/2026-01/graphql.json"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(GRAPHQL, "application/json"))
            .mount(&server)
            .await;
        let client = ShopifyClient::builder()
            .store_url("example.myshopify.com")
            .base_url(server.uri())
            .access_token("t")
            .currency("USD".parse().unwrap())
            .build()
            .unwrap();
        let mut from_graphql: Product = client.get_product("788032119674292922").await.unwrap();
        let mut from_webhook = event(&headers("products/update", CREATE), CREATE)
            .product
            .unwrap();
        assert_ne!(from_graphql.raw, from_webhook.raw);
        from_graphql.raw = serde_json::Value::Null;
        from_webhook.raw = serde_json::Value::Null;
        assert_eq!(from_graphql, from_webhook);
    }
}

#[test]
fn events_deliveries_with_unprefixed_headers_are_read() {
    let h = Headers::new()
        .with("shopify-hmac-sha256", sign(SECRET.as_bytes(), DELETE))
        .with("shopify-topic", "products/delete")
        .with("shopify-shop-domain", "example.myshopify.com")
        .with("shopify-event-id", "ev-9");
    let e = event(&h, DELETE);
    assert_eq!(e.event_id.as_str(), "products/delete:ev-9:f1147e2f6bfdd087");
    assert_eq!(e.product_id.as_deref(), Some("788032119674292922"));
}

/// An Events delivery carries both names; where they disagree on the
/// signature, topic, shop or ids, the delivery is refused: a verifier that
/// reads the other name would see another delivery.
#[test]
fn prefixed_and_unprefixed_headers_must_agree() {
    let source = ShopifyWebhookSource::new();
    let sig = sign(SECRET.as_bytes(), DELETE);
    let pairs = [
        ("X-Shopify-Hmac-Sha256", sig.as_str()),
        ("shopify-hmac-sha256", sig.as_str()),
        ("X-Shopify-Topic", "products/delete"),
        ("shopify-topic", "products/delete"),
        ("X-Shopify-Shop-Domain", "example.myshopify.com"),
        ("shopify-shop-domain", "Example.myshopify.com"),
        ("X-Shopify-Event-Id", "ev-9"),
        ("shopify-event-id", "ev-9"),
        ("X-Shopify-Webhook-Id", "wh-1"),
    ];
    // The pairs, with `name` set to `value` (added when absent).
    let with = |name: &str, value: &str| {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h = h.with(n, if n == name { value } else { v });
        }
        if !name.is_empty() && !pairs.iter().any(|(n, _)| *n == name) {
            h = h.with(name, value);
        }
        h
    };
    let both = || with("", "");
    // Agreeing (the domain in another case): read as usual.
    let e = event(&both(), DELETE);
    assert_eq!(e.event_id.as_str(), "products/delete:ev-9:f1147e2f6bfdd087");
    for (name, value) in [
        ("shopify-hmac-sha256", "AAAA"),
        ("shopify-topic", "products/update"),
        ("shopify-shop-domain", "other.myshopify.com"),
        ("shopify-event-id", "ev-10"),
        ("shopify-webhook-id", "wh-2"),
    ] {
        let h = with(name, value);
        match source.inspect(&h, DELETE) {
            Err(WebhookError::InvalidHeader { reason, .. }) => {
                assert!(reason.contains(name), "{name}: {reason}");
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
    // Without `shopify-hmac-sha256` it is a traditional delivery: only the
    // prefixed names count (as for Shopify's own library).
    let traditional = Headers::new()
        .with("X-Shopify-Hmac-Sha256", sig.as_str())
        .with("X-Shopify-Topic", "products/delete")
        .with("shopify-topic", "products/update")
        .with("X-Shopify-Shop-Domain", "example.myshopify.com")
        .with("X-Shopify-Event-Id", "ev-9");
    assert_eq!(event(&traditional, DELETE).topic, Topic::ProductDeleted);
}

/// `parse_lean` gives `parse`'s event minus the copies (`raw_body`, the
/// product's `raw`), and `parse`'s outcome where the direct decode and the
/// `Value` path could differ: repeated fields, deep nesting, bad fields.
#[test]
fn lean_parse_matches_parse_without_the_copies() {
    let source = ShopifyWebhookSource::new();
    let v = verifier();
    let at = Utc::now();
    let mut sample: serde_json::Value = serde_json::from_slice(CREATE).unwrap();
    let mut deep = String::from("1");
    for _ in 0..200 {
        deep = format!("[{deep}]");
    }
    let nested = {
        let mut s = String::from(std::str::from_utf8(CREATE).unwrap().trim_end());
        s.pop(); // the closing brace
        format!("{s}, \"x_deep\": {deep}}}")
    };
    let repeated = {
        let s = std::str::from_utf8(CREATE).unwrap().trim_start();
        format!("{{\"title\": \"first\", {}", &s[1..])
    };
    sample["id"] = serde_json::json!("not digits");
    let bad_id = serde_json::to_vec(&sample).unwrap();
    let bodies: Vec<Vec<u8>> = vec![
        CREATE.to_vec(),
        nested.into_bytes(),
        repeated.into_bytes(),
        bad_id,
        b"[[[[1]]]]".to_vec(),
        b"{}".to_vec(),
        b"{\"id\": 1, \"title\": \"t\\\"[[\", \"status\": \"active\"}".to_vec(),
    ];
    for body in &bodies {
        let h = headers("products/create", body);
        let Inbound::Delivery(d) = source.inspect(&h, body).unwrap() else {
            panic!("not a delivery")
        };
        let verified = d.verify(body, &v).unwrap();
        let full = source.parse(&verified, body, at);
        let lean = source.parse_lean(&verified, body, at);
        match (full, lean) {
            (Ok(mut full), Ok(lean)) => {
                assert!(lean.raw_body.is_empty());
                full.raw_body = String::new();
                if let Some(p) = &mut full.product {
                    p.raw = serde_json::Value::Null;
                }
                assert_eq!(full, lean, "{}", String::from_utf8_lossy(body));
            }
            (Err(full), Err(lean)) => assert_eq!(full.to_string(), lean.to_string()),
            (full, lean) => panic!(
                "{}: parse {full:?}, parse_lean {lean:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
}

#[test]
fn triage_gives_the_product_id_parse_gives() {
    let source = ShopifyWebhookSource::new();
    let v = verifier();
    let text = std::str::from_utf8(CREATE).unwrap().trim();
    let tail = &text[1..];
    let mut deep = String::from("1");
    for _ in 0..200 {
        deep = format!("[{deep}]");
    }
    let mut bad_utf8 = br#"{"id": 5, "title": "x"#.to_vec();
    bad_utf8.extend_from_slice(&[0xff, b'"', b'}']);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("products/create", CREATE.to_vec()),
        ("products/update", CREATE.to_vec()),
        // A repeated id: the last one wins, as in the full parse.
        (
            "products/create",
            format!("{{\"id\": 1, {tail}").into_bytes(),
        ),
        (
            "products/create",
            format!("{{\"id\": \"77\", {tail}").into_bytes(),
        ),
        (
            "products/create",
            format!("{{\"id\": -1, {tail}").into_bytes(),
        ),
        (
            "products/create",
            format!("{text}, \"x\": {deep}}}").into_bytes(),
        ),
        (
            "products/create",
            format!("{{\"x\": {deep}, {tail}").into_bytes(),
        ),
        ("products/create", br#"{"id": 632910392}"#.to_vec()),
        (
            "products/create",
            br#"{"id": 1, "variants": [{"price": "abc"}]}"#.to_vec(),
        ),
        ("products/create", b"{\"id\": 1".to_vec()),
        ("products/create", b"not json".to_vec()),
        ("products/create", b"".to_vec()),
        ("products/create", bad_utf8),
        ("products/delete", br#"{"id": 632910392}"#.to_vec()),
        ("products/delete", CREATE.to_vec()),
    ];
    for (topic, body) in &bodies {
        let h = headers(topic, body);
        let Inbound::Delivery(d) = source.inspect(&h, body).unwrap() else {
            panic!("not a delivery")
        };
        let verified = d.verify(body, &v).unwrap();
        let what = format!("{topic} {}", String::from_utf8_lossy(body));
        if let Err(e) = catalog_core::webhook::check_triage(&source, &verified, body) {
            panic!("{what}: {e}");
        }
    }
    // The skim does the work on the common case; the fallbacks agree.
    let h = headers("products/create", CREATE);
    let Inbound::Delivery(d) = source.inspect(&h, CREATE).unwrap() else {
        panic!("not a delivery")
    };
    let verified = d.verify(CREATE, &v).unwrap();
    assert_eq!(
        source.triage(&verified, CREATE).unwrap().as_deref(),
        Some("788032119674292922")
    );
}

/// "Product webhooks will return a full variants payload for the first 100
/// records" and list every variant in `variant_gids`: a product past 100
/// variants arrives without its product (the id only), never as a product
/// cut to its first 100 variants that would overwrite the whole one.
#[test]
fn a_product_past_100_variants_is_named_not_truncated() {
    let mut sample: serde_json::Value = serde_json::from_slice(CREATE).unwrap();
    let variant = sample["variants"][0].clone();
    let gid = sample["variant_gids"][0].clone();
    sample["variants"] = serde_json::Value::Array(
        (0..100_u64)
            .map(|i| {
                let mut v = variant.clone();
                v["id"] = (1_000 + i).into();
                v
            })
            .collect(),
    );
    sample["variant_gids"] = serde_json::Value::Array(vec![gid; 150]);
    let body = serde_json::to_vec(&sample).unwrap();
    let e = event(&headers("products/update", &body), &body);
    assert_eq!(e.product_id.as_deref(), Some("788032119674292922"));
    assert!(e.product.is_none(), "a product cut to 100 of 150 variants");
    // All there (the documented sample lists as many as it carries): the product.
    let e = event(&headers("products/update", CREATE), CREATE);
    assert!(e.product.is_some());
}

/// "`include_fields` trims the payload": a subscription that leaves out any
/// field the model maps delivers a body that names the product but cannot
/// stand for it (a product built from it would carry blank images, tags or
/// options over the whole one downstream). The event names the product (no
/// product, not unparseable), so downstream refetches instead of storing
/// blanks. A full payload carries every such field, null when empty.
#[test]
fn a_payload_trimmed_by_include_fields_names_the_product() {
    let sample: serde_json::Value = serde_json::from_slice(CREATE).unwrap();
    let keep = |fields: &[&str]| {
        let mut trimmed = serde_json::Map::new();
        for f in fields {
            trimmed.insert((*f).to_owned(), sample[*f].clone());
        }
        serde_json::to_vec(&trimmed).unwrap()
    };
    let without = |field: &str| {
        let mut v = sample.clone();
        v.as_object_mut().unwrap().remove(field);
        serde_json::to_vec(&v).unwrap()
    };
    let named_only = |body: &[u8], case: &str| {
        let e = event(&headers("products/update", body), body);
        assert_eq!(
            e.product_id.as_deref(),
            Some("788032119674292922"),
            "{case}"
        );
        assert!(e.product.is_none(), "{case}: {:?}", e.product);
    };
    for fields in [
        &["id", "updated_at", "variants"][..],
        &["id", "title", "updated_at", "variants"],
        &["id", "title", "status", "updated_at"],
        &["id", "admin_graphql_api_id"],
        // A price-sync subscription (an outside audit's case): it used to
        // become a product with no images, tags, options or description.
        &["id", "title", "status", "variants", "updated_at"],
    ] {
        named_only(&keep(fields), &format!("{fields:?}"));
    }
    // Any one mapped field left out of an otherwise full payload.
    for field in [
        "title",
        "status",
        "variants",
        "handle",
        "body_html",
        "vendor",
        "product_type",
        "tags",
        "created_at",
        "updated_at",
        "options",
    ] {
        named_only(&without(field), &format!("without {field}"));
    }
    let mut no_images = sample.clone();
    no_images.as_object_mut().unwrap().remove("images");
    no_images.as_object_mut().unwrap().remove("media");
    named_only(
        &serde_json::to_vec(&no_images).unwrap(),
        "without images and media",
    );
    // A variant field left out (`includeFields` with a nested path).
    for field in [
        "price",
        "compare_at_price",
        "sku",
        "barcode",
        "inventory_quantity",
        "option1",
    ] {
        let mut v = sample.clone();
        for variant in v["variants"].as_array_mut().unwrap() {
            variant.as_object_mut().unwrap().remove(field);
        }
        named_only(
            &serde_json::to_vec(&v).unwrap(),
            &format!("variants without {field}"),
        );
    }
    // Fields the model does not map may be missing (older API versions
    // send `images` without `media`, and no `category`); null is a value.
    for field in [
        "media",
        "category",
        "template_suffix",
        "published_scope",
        "image",
    ] {
        let body = without(field);
        let e = event(&headers("products/update", &body), &body);
        assert!(e.product.is_some(), "without {field}");
    }
    let mut nulls = sample.clone();
    for field in ["body_html", "vendor", "product_type", "handle"] {
        nulls[field] = serde_json::Value::Null;
    }
    nulls["variants"][0]["barcode"] = serde_json::Value::Null;
    let body = serde_json::to_vec(&nulls).unwrap();
    let product = event(&headers("products/update", &body), &body)
        .product
        .expect("null fields are values: a product");
    assert_eq!(product.vendor, None);
    assert_eq!(
        product.variants.len(),
        sample["variants"].as_array().unwrap().len()
    );
    // Nothing but an id is what a delete looks like: under an update
    // topic (headers are not signed) it is refused, not a trimmed product.
    assert!(unparseable(&keep(&["id"])).contains("delete"));
    // Without an id it names nothing: kept as unparseable.
    assert!(unparseable(&keep(&["title", "status", "variants"])).contains("id"));
}

/// Without `variant_gids` (older API versions, or trimmed), a payload of
/// 100 variants may be the first 100 of more: it names the product only.
/// Fewer than 100 is the whole product.
#[test]
fn a_hundred_variants_without_variant_gids_may_be_cut_and_name_the_product() {
    let mut sample: serde_json::Value = serde_json::from_slice(CREATE).unwrap();
    sample.as_object_mut().unwrap().remove("variant_gids");
    let variant = sample["variants"][0].clone();
    for (count, whole) in [(100_u64, false), (99, true)] {
        sample["variants"] = serde_json::Value::Array(
            (0..count)
                .map(|i| {
                    let mut v = variant.clone();
                    v["id"] = (1_000 + i).into();
                    v
                })
                .collect(),
        );
        let body = serde_json::to_vec(&sample).unwrap();
        let e = event(&headers("products/update", &body), &body);
        assert_eq!(e.product_id.as_deref(), Some("788032119674292922"));
        assert_eq!(e.product.is_some(), whole, "{count} variants");
    }
}

/// Why a verified `products/update` delivery of `body` is unparseable.
fn unparseable(body: &[u8]) -> String {
    let v = verifier();
    match receive(
        &ShopifyWebhookSource::new(),
        &headers("products/update", body),
        body,
        &|_| Some(&v),
        Utc::now(),
    )
    .expect("verified")
    {
        Received::Unparseable { error, .. } => error.to_string(),
        other => panic!("expected unparseable, got {other:?}"),
    }
}

/// Another topic's body goes on as sent, so it must be JSON: a signed body
/// that is not is unparseable (kept, not passed on without its content).
#[test]
fn another_topic_with_a_body_that_is_not_json_is_unparseable() {
    let v = verifier();
    let outcome = |body: &[u8]| {
        receive(
            &ShopifyWebhookSource::new(),
            &headers("customers/redact", body),
            body,
            &|_| Some(&v),
            Utc::now(),
        )
        .expect("verified")
    };
    for body in [&b"not json"[..], b"{\"shop_id\":1,}", b"", b"NaN"] {
        assert!(
            matches!(outcome(body), Received::Unparseable { .. }),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        outcome(b"\xEF\xBB\xBF{\"shop_id\":1}"),
        Received::Event(_)
    ));
}

/// Images come from `media` (keyed by media id, as GraphQL reads are) when
/// it has an image ready, else from `images`: a new product's media are
/// still `PROCESSING`, without a preview, while `images` lists the uploads
/// (an outside audit: such a product went downstream with no images).
#[test]
fn images_come_from_media_when_ready_else_from_images() {
    let sample: serde_json::Value = serde_json::from_slice(CREATE).unwrap();
    let image = serde_json::json!({
        "id": 850703190,
        "src": "https://cdn.shopify.com/s/files/1/0005/4838/0009/products/ipod-nano.png?v=1",
        "alt": "front",
        "width": 123,
        "height": 456
    });
    let ready = serde_json::json!({
        "id": 20000000000000001u64,
        "media_content_type": "IMAGE",
        "alt": "front",
        "status": "READY",
        "preview_image": {"src": "https://cdn.shopify.com/media/front.png", "width": 1, "height": 2, "status": "READY"}
    });
    let processing = serde_json::json!({
        "id": 20000000000000002u64,
        "media_content_type": "IMAGE",
        "alt": "back",
        "status": "PROCESSING",
        "preview_image": null
    });
    let video = serde_json::json!({
        "id": 20000000000000003u64,
        "media_content_type": "VIDEO",
        "preview_image": {"src": "https://cdn.shopify.com/media/poster.png"}
    });
    let images_of = |media: Option<serde_json::Value>, images: serde_json::Value| {
        let mut v = sample.clone();
        let obj = v.as_object_mut().unwrap();
        match media {
            Some(m) => obj.insert("media".into(), m),
            None => obj.remove("media"),
        };
        obj.insert("images".into(), images);
        let body = serde_json::to_vec(&v).unwrap();
        event(&headers("products/update", &body), &body)
            .product
            .expect("a product")
            .images
            .into_iter()
            .map(|i| (i.id.unwrap_or_default(), i.url))
            .collect::<Vec<_>>()
    };
    let from_images = vec![(
        "850703190".to_owned(),
        "https://cdn.shopify.com/s/files/1/0005/4838/0009/products/ipod-nano.png?v=1".to_owned(),
    )];
    // Ready media win (a video is not an image; one still processing waits).
    assert_eq!(
        images_of(
            Some(serde_json::json!([ready, processing, video])),
            serde_json::json!([image])
        ),
        vec![(
            "20000000000000001".to_owned(),
            "https://cdn.shopify.com/media/front.png".to_owned()
        )]
    );
    // A preview without its file yet (no `src`, or null) is no image
    // either, and does not fail the payload.
    let mut no_src = processing.clone();
    no_src["preview_image"] = serde_json::json!({"status": "PROCESSING"});
    let mut null_src = processing.clone();
    null_src["preview_image"] = serde_json::json!({"src": null, "status": "FAILED"});
    // No image ready in `media`, or an empty or absent `media`: `images`.
    for media in [
        Some(serde_json::json!([processing])),
        Some(serde_json::json!([no_src, null_src])),
        Some(serde_json::json!([processing, video])),
        Some(serde_json::json!([])),
        None,
    ] {
        assert_eq!(
            images_of(media.clone(), serde_json::json!([image])),
            from_images,
            "{media:?}"
        );
    }
    // Neither has any: no images.
    assert!(images_of(Some(serde_json::json!([processing])), serde_json::json!([])).is_empty());
}
