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
    assert_eq!(create.event.event_id, "products/create:e-1");
    assert_eq!(
        create.event.product_id.as_deref(),
        Some("788032119674292922")
    );
    assert_eq!(create.event.status, EventStatus::Pending);
    assert!(create.event.triggered_at.is_some());
    let product: serde_json::Value =
        serde_json::from_str(create.event.product.as_deref().unwrap()).unwrap();
    assert_eq!(product["title"], "Example T-Shirt");
    // Stored without the raw copy of the payload (the raw body is beside it).
    assert!(product["raw"].is_null());
    assert_eq!(&create.event.raw_body[..], SAMPLE.as_bytes());
    assert_eq!(delete.event.topic, "product.deleted");
    assert!(delete.event.product.is_none());
    assert!(delete.event.product_id.is_some());
}
