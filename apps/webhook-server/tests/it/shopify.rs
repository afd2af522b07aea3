//! The real Shopify source wired through the server.

use actix_web::http::StatusCode;
use actix_web::{App, test};
use catalog_core::webhook::sign;
use webhook_server::configure;
use webhook_server::platforms::Platforms;
use webhook_server::store::{EventFilter, EventStatus, EventStore};

use crate::support::*;

const DELETE: &str = include_str!("../fixtures/products_delete.json");

fn shopify(path: &str, topic: &str, event_id: &str, body: &str, secret: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("X-Shopify-Topic", topic))
        .insert_header(("X-Shopify-Shop-Domain", "Example-Shop.myshopify.com"))
        .insert_header(("X-Shopify-Event-Id", event_id))
        .insert_header(("X-Shopify-Webhook-Id", format!("w-{event_id}")))
        .insert_header(("X-Shopify-API-Version", "2026-01"))
        .insert_header(("X-Shopify-Triggered-At", "2026-11-28T05:00:00.000Z"))
        .insert_header((
            "X-Shopify-Hmac-Sha256",
            sign(secret.as_bytes(), body.as_bytes()),
        ))
        .set_payload(body.to_owned())
}

#[actix_web::test]
async fn shopify_create_and_delete_are_normalised_and_stored() {
    let mut s = settings();
    s.shopify = stores(&[("example-shop.myshopify.com", &["new-secret", "old-secret"])]);
    s.shopify.default_currency = Some("EUR".into());
    let store = memory();
    let state =
        webhook_server::AppState::new(&s, Platforms::from_settings(&s).unwrap(), store.clone());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;

    for (path, topic, id, body) in [
        (
            "/webhooks/shopify/products/create",
            "products/create",
            "e-1",
            SAMPLE,
        ),
        ("/webhooks/shopify", "products/delete", "e-2", DELETE),
    ] {
        let res = test::call_service(
            &app,
            shopify(path, topic, id, body, "old-secret").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{topic}");
    }
    // A retry of the create: duplicate.
    let res = test::call_service(
        &app,
        shopify(
            "/webhooks/shopify/products/create",
            "products/create",
            "e-1",
            SAMPLE,
            "new-secret",
        )
        .to_request(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(v["status"], "duplicate");

    let events = store
        .list(&EventFilter::default(), None, 10)
        .await
        .unwrap()
        .events;
    assert_eq!(events.len(), 2);
    let (delete, create) = (&events[0], &events[1]);
    assert_eq!(create.event.store, "example-shop.myshopify.com");
    assert_eq!(create.event.topic, "product.created");
    // The topic, the Event-Id and the body's XXH3-64.
    assert_eq!(
        create.event.event_id,
        "products/create:e-1:fd6d814d6c17228d"
    );
    assert_eq!(
        create.event.product_id.as_deref(),
        Some("788032119674292922")
    );
    assert_eq!(create.event.status, EventStatus::Pending);
    assert!(create.event.triggered_at.is_some());
    // Stored as received; the product is derived from the stored body.
    assert!(create.event.product.is_none());
    let platforms = Platforms::from_settings(&s).unwrap();
    let product = webhook_server::normalise::product_json(&platforms, &create.event).unwrap();
    let product: serde_json::Value = serde_json::from_str(&product.unwrap()).unwrap();
    assert_eq!(product["title"], "Example T-Shirt");
    assert_eq!(product["platform_id"], "788032119674292922");
    // Without the raw copy of the payload (the raw body is beside it).
    assert!(product["raw"].is_null());
    assert_eq!(&create.event.raw_body[..], SAMPLE.as_bytes());
    assert_eq!(delete.event.topic, "product.deleted");
    assert!(delete.event.product.is_none());
    assert!(delete.event.product_id.is_some());
}

/// A body that is JSON with a product id but cannot be normalised is stored
/// and answered like any other; the dispatcher then keeps it as `failed`
/// (with why, raw body intact) and the product's next event still goes out.
/// The admin API shows the product derived from each stored body.
#[actix_web::test]
async fn a_body_that_cannot_be_normalised_is_kept_as_failed_and_skipped() {
    use std::sync::Arc;
    use webhook_server::dispatch::sinks::JsonlSink;
    use webhook_server::dispatch::{DispatchConfig, EventHandler};

    const TOKEN: &str = "admin-token-0123456789";
    let mut s = settings();
    s.shopify = stores(&[("example-shop.myshopify.com", &["new-secret"])]);
    s.admin.token = Some(secrecy::SecretString::from(TOKEN));
    let store = memory();
    let state =
        webhook_server::AppState::new(&s, Platforms::from_settings(&s).unwrap(), store.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let dispatcher = state.dispatcher(
        DispatchConfig::from_settings(&s.dispatch),
        vec![Arc::new(JsonlSink::new(file.clone())) as Arc<dyn EventHandler>],
    );
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let bad = SAMPLE.replacen(
        r#""19.99""#,
        r#""99999999999999999999999999999999999999.99""#,
        1,
    );
    assert_ne!(bad, SAMPLE, "the sample has the price to break");
    let mut ids = Vec::new();
    for (event, text) in [("n1", bad.as_str()), ("n2", SAMPLE)] {
        let res = test::call_service(
            &app,
            shopify(
                "/webhooks/shopify",
                "products/update",
                event,
                text,
                "new-secret",
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_eq!(v["status"], "stored");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // One product: the second event waits for the first, which fails.
    for _ in 0..20 {
        if dispatcher.run_once().await.unwrap() == 0 {
            break;
        }
    }
    let failed = store.get(&ids[0]).await.unwrap().unwrap();
    assert_eq!(failed.event.status, EventStatus::Failed);
    assert!(
        failed.event.error.as_deref().unwrap().contains("price"),
        "{:?}",
        failed.event.error
    );
    assert_eq!(
        &failed.event.raw_body[..],
        bad.as_bytes(),
        "kept as received"
    );
    let sent = store.get(&ids[1]).await.unwrap().unwrap();
    assert_eq!(sent.event.status, EventStatus::Delivered);
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), 1, "only the readable event went out");
    let line: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(line["id"], ids[1]);
    assert_eq!(line["product"]["title"], "Example T-Shirt");
    assert_eq!(line["product"]["platform_id"], "788032119674292922");

    for (id, title) in [
        (&ids[0], serde_json::Value::Null),
        (&ids[1], "Example T-Shirt".into()),
    ] {
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&format!("/admin/events/{id}"))
                .insert_header(("Authorization", format!("Bearer {TOKEN}")))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_eq!(v["product"]["title"], title, "{v}");
    }
}

/// Topics without a product model (Shopify's mandatory compliance requests)
/// are stored and reach the sinks with the platform's JSON as `payload`:
/// nothing else carries what they ask for. Product events do not repeat
/// their body.
#[actix_web::test]
async fn compliance_topics_reach_the_sinks_with_their_payload() {
    use std::sync::Arc;
    use webhook_server::dispatch::sinks::JsonlSink;
    use webhook_server::dispatch::{DispatchConfig, EventHandler};

    let mut s = settings();
    s.shopify = stores(&[("example-shop.myshopify.com", &["new-secret"])]);
    s.shopify.default_currency = Some("EUR".into());
    let store = memory();
    let state =
        webhook_server::AppState::new(&s, Platforms::from_settings(&s).unwrap(), store.clone());
    let dispatching = state.clone();
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    // The documented payloads of the three compliance topics.
    let redact = r#"{"shop_id":954889,"shop_domain":"example-shop.myshopify.com","customer":{"id":191167,"email":"john@example.com","phone":"555-625-1199"},"orders_to_redact":[299938,280263,220458]}"#;
    let data_request = r#"{"shop_id":954889,"shop_domain":"example-shop.myshopify.com","orders_requested":[299938,280263,220458],"customer":{"id":191167,"email":"john@example.com","phone":"555-625-1199"},"data_request":{"id":9999}}"#;
    // With values a re-encoding would change: a number beyond f64, a
    // trailing zero, an escaped slash, key order.
    let shop_redact = r#"{"shop_id":954889,"shop_domain":"example-shop.myshopify.com","z":123456789012345678901234567890,"a":10.50,"u":"\/x"}"#;
    let deliveries = [
        ("customers/redact", "c-1", redact),
        ("customers/data_request", "c-2", data_request),
        ("shop/redact", "c-3", shop_redact),
        ("products/create", "c-4", SAMPLE),
    ];
    for (topic, id, body) in deliveries {
        let res = test::call_service(
            &app,
            shopify("/webhooks/shopify", topic, id, body, "new-secret").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{topic}");
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_eq!(v["status"], "stored", "{topic}");
    }
    // A compliance request with a wrong signature: 401, as Shopify requires.
    let res = test::call_service(
        &app,
        shopify(
            "/webhooks/shopify",
            "shop/redact",
            "c-5",
            shop_redact,
            "wrong",
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Signed but not JSON: kept as unparseable (failed, not dispatched),
    // not passed on as an event without its payload. A byte order mark
    // before JSON is no reason to refuse it, nor to drop its payload.
    let bom_redact = format!("\u{feff}{redact}");
    // Pretty-printed, as a platform may send it: still one line in the file.
    let pretty_redact = "{\n  \"shop_id\": 954889,\r\n  \"note\": \"a\\nb\"\n}\n";
    for (id, body, status) in [
        ("c-6", "not json", "stored_unparseable"),
        ("c-7", "{\"shop_id\":1,}", "stored_unparseable"),
        ("c-8", bom_redact.as_str(), "stored"),
        ("c-9", pretty_redact, "stored"),
    ] {
        let res = test::call_service(
            &app,
            shopify(
                "/webhooks/shopify",
                "customers/redact",
                id,
                body,
                "new-secret",
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{id}");
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_eq!(v["status"], status, "{id}: {v}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let handlers: Vec<Arc<dyn EventHandler>> = vec![Arc::new(JsonlSink::new(file.clone()))];
    let mut dispatch = s.dispatch.clone();
    dispatch.poll_interval_ms = 10;
    let handle = dispatching
        .dispatcher(DispatchConfig::from_settings(&dispatch), handlers)
        .spawn();
    let mut delivered = EventFilter::default();
    delivered.status = Some(EventStatus::Delivered);
    for _ in 0..300 {
        if store.list(&delivered, None, 10).await.unwrap().events.len() == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    handle.shutdown(std::time::Duration::from_secs(2)).await;
    let text = std::fs::read_to_string(&file).unwrap();
    // The payload is the body as sent, byte for byte.
    assert!(text.contains(shop_redact), "{text}");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    let pretty = lines
        .iter()
        .find(|l| l["event_id"].as_str().is_some_and(|e| e.contains(":c-9:")))
        .unwrap();
    assert_eq!(pretty["payload"]["note"], "a\nb");
    let with_bom = lines
        .iter()
        .find(|l| l["event_id"].as_str().is_some_and(|e| e.contains(":c-8:")))
        .unwrap();
    assert_eq!(
        with_bom["payload"],
        serde_json::from_str::<serde_json::Value>(redact).unwrap()
    );
    let mut failed = EventFilter::default();
    failed.status = Some(EventStatus::Failed);
    assert_eq!(store.list(&failed, None, 10).await.unwrap().events.len(), 2);
    for (topic, _, body) in &deliveries[..3] {
        let line = lines.iter().find(|l| l["topic"] == *topic).unwrap();
        assert_eq!(line["product"], serde_json::Value::Null);
        assert_eq!(
            line["payload"],
            serde_json::from_str::<serde_json::Value>(body).unwrap(),
            "{topic}"
        );
    }
    let product = lines
        .iter()
        .find(|l| l["topic"] == "product.created")
        .unwrap();
    assert!(product["product"].is_object());
    assert!(product.get("payload").is_none(), "{product}");
}

/// A webhook address saved with a trailing slash is served like the one
/// without (each delivery a 404 would cost the subscription); other paths
/// and methods keep their answers.
#[actix_web::test]
async fn a_trailing_slash_on_a_webhook_address_is_served() {
    let mut s = settings();
    s.shopify = stores(&[("example-shop.myshopify.com", &["secret"])]);
    let store = memory();
    let state =
        webhook_server::AppState::new(&s, Platforms::from_settings(&s).unwrap(), store.clone());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    for (path, topic, id) in [
        (
            "/webhooks/shopify/products/create/",
            "products/create",
            "s-1",
        ),
        (
            "/webhooks/shopify/products/update/",
            "products/update",
            "s-2",
        ),
        ("/webhooks/shopify/", "products/update", "s-3"),
    ] {
        let res = test::call_service(
            &app,
            shopify(path, topic, id, SAMPLE, "secret").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        assert_eq!(v["status"], "stored", "{path}: {v}");
    }
    // The route's topic still has to match the header's.
    let res = test::call_service(
        &app,
        shopify(
            "/webhooks/shopify/products/delete/",
            "products/update",
            "s-4",
            SAMPLE,
            "secret",
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A wrong signature is refused there as anywhere.
    let res = test::call_service(
        &app,
        shopify(
            "/webhooks/shopify/products/update/",
            "products/update",
            "s-5",
            SAMPLE,
            "wrong",
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Unknown platforms and actions stay 404, other methods 405.
    for path in [
        "/webhooks/bogus/",
        "/webhooks/bogus/products/create/",
        "/webhooks/shopify/products/rename/",
        "/webhooks/shopify/products/create//",
    ] {
        let res = test::call_service(
            &app,
            shopify(path, "products/create", "s-6", SAMPLE, "secret").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = test::call_service(
        &app,
        with_method(
            actix_web::http::Method::GET,
            "/webhooks/shopify/products/create/",
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let stored = store
        .list(&EventFilter::default(), None, 10)
        .await
        .unwrap()
        .events;
    assert_eq!(
        stored.len(),
        3,
        "the three accepted deliveries, nothing else"
    );
}
