//! The delivery pipeline through the actix app, in process.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, test};
use base64::Engine as _;
use catalog_core::InsertOutcome;
use catalog_core::webhook::sign;
use webhook_server::configure;
use webhook_server::store::memory::MemoryStore;
use webhook_server::store::{
    DispatchOutcome, EventFilter, EventPage, EventStatus, EventStore, NewEvent, StoreError,
    StoreStats, StoredEvent,
};

use crate::support::*;

const CREATE: &str = "/webhooks/shopify/products/create";

macro_rules! app {
    ($state:expr) => {{
        let state = $state;
        test::init_service(App::new().configure(move |c| configure(c, state.clone()))).await
    }};
}

async fn all(store: &dyn EventStore) -> Vec<StoredEvent> {
    store
        .list(&EventFilter::default(), None, 1000)
        .await
        .unwrap()
        .events
}

async fn json(res: actix_web::dev::ServiceResponse) -> serde_json::Value {
    serde_json::from_slice(&test::read_body(res).await).unwrap()
}

#[actix_web::test]
async fn valid_signature_is_stored_and_acknowledged() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(1);
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "e1", &b, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v = json(res).await;
    assert_eq!(v["status"], "stored");
    let events = all(&*store).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(v["id"], e.event.id.as_str());
    assert_eq!(e.event.platform, "shopify");
    assert_eq!(e.event.store, STORE);
    assert_eq!(e.event.topic, "product.created");
    assert_eq!(e.event.product_id.as_deref(), Some("1"));
    assert_eq!(e.event.status, EventStatus::Pending);
    assert_eq!(&e.event.raw_body[..], b.as_bytes());
}

#[actix_web::test]
async fn bad_signatures_are_refused_and_nothing_is_recorded() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(1);
    let b64 = base64::engine::general_purpose::STANDARD;
    let cases: Vec<(&str, Option<String>)> = vec![
        ("wrong secret", Some(sign(b"not-the-secret", b.as_bytes()))),
        ("not base64", Some("%%%not-base64%%%".into())),
        ("empty", Some(String::new())),
        ("blank", Some("   ".into())),
        ("wrong length", Some(b64.encode([7u8; 16]))),
        ("too long", Some(b64.encode([7u8; 33]))),
        ("missing", None),
    ];
    for (name, sig) in cases {
        let mut req = test::TestRequest::post()
            .uri(CREATE)
            .insert_header(("X-Shopify-Topic", "products/create"))
            .insert_header(("X-Shopify-Shop-Domain", STORE))
            .insert_header(("X-Shopify-Event-Id", "e1"))
            .set_payload(b.clone());
        if let Some(sig) = sig {
            req = req.insert_header(("X-Shopify-Hmac-Sha256", sig));
        }
        let res = test::call_service(&app, req.to_request()).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{name}");
        // The body is opaque: no detail about why.
        assert_eq!(
            json(res).await,
            serde_json::json!({"error": "unauthorized"})
        );
    }
    assert!(all(&*store).await.is_empty());
    // A tampered body with a signature of the original is refused too.
    let sig = sign(SECRET.as_bytes(), b.as_bytes());
    let tampered = b.replace("Example T-Shirt", "Example T-Shirt!");
    let res = test::call_service(
        &app,
        delivery_for(CREATE, "products/create", STORE, "e1", &tampered, &sig).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(all(&*store).await.is_empty());
}

#[actix_web::test]
async fn a_forged_delivery_cannot_suppress_the_real_one() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(42);
    // The forger knows the event id but not the secret.
    let forged = delivery(CREATE, "products/create", "evt-7", &b, "guessed-secret");
    let res = test::call_service(&app, forged.to_request()).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let real = delivery(CREATE, "products/create", "evt-7", &b, SECRET);
    let res = test::call_service(&app, real.to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["status"], "stored");
    assert_eq!(all(&*store).await.len(), 1);
}

#[actix_web::test]
async fn duplicates_are_acknowledged_but_stored_once() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(3);
    for expected in ["stored", "duplicate", "duplicate"] {
        let res = test::call_service(
            &app,
            delivery(CREATE, "products/create", "dup-1", &b, SECRET).to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(json(res).await["status"], expected);
    }
    // Same event id through the topic-from-header endpoint: still a duplicate.
    let res = test::call_service(
        &app,
        delivery("/webhooks/shopify", "products/create", "dup-1", &b, SECRET).to_request(),
    )
    .await;
    assert_eq!(json(res).await["status"], "duplicate");
    assert_eq!(all(&*store).await.len(), 1);
}

/// Once shutdown has begun, every answer closes its connection: a platform
/// on a kept-alive connection reconnects (elsewhere, or after the restart)
/// instead of keeping the server busy until the drain timeout cuts it off.
#[actix_web::test]
async fn answers_close_their_connection_once_draining() {
    use actix_web::http::ConnectionType;
    let state = state_with(memory(), &single_secret());
    let draining = state.clone();
    let app = app!(state);
    let send =
        |id: &'static str| delivery(CREATE, "products/create", id, &body(4), SECRET).to_request();
    let res = test::call_service(&app, send("k-1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_ne!(
        res.response().head().connection_type(),
        ConnectionType::Close
    );
    draining.begin_draining();
    let res = test::call_service(&app, send("k-2")).await;
    assert_eq!(res.status(), StatusCode::OK, "still served");
    assert_eq!(
        res.response().head().connection_type(),
        ConnectionType::Close
    );
}

/// Shopify shares X-Shopify-Event-Id "across all deliveries produced by the
/// same merchant action": deliveries of one Event-Id about other products
/// are stored, each once; a retry of any of them is still a duplicate.
#[actix_web::test]
async fn one_event_id_over_several_products_keeps_each_product() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    for (product, expected) in [
        (11, "stored"),
        (12, "stored"),
        (11, "duplicate"),
        (12, "duplicate"),
    ] {
        let res = test::call_service(
            &app,
            delivery(
                "/webhooks/shopify/products/update",
                "products/update",
                "bulk-edit-1",
                &body(product),
                SECRET,
            )
            .to_request(),
        )
        .await;
        assert_eq!(json(res).await["status"], expected, "product {product}");
    }
    let mut products: Vec<_> = all(&*store)
        .await
        .into_iter()
        .map(|e| e.event.product_id.unwrap_or_default())
        .collect();
    products.sort();
    assert_eq!(products, ["11", "12"]);
}

#[actix_web::test]
async fn rotated_secrets_and_store_lists() {
    let store = memory();
    let platform = stores(&[
        (STORE, &["new-secret", "old-secret"]),
        ("other.myshopify.com", &["other-secret"]),
    ]);
    let app = app!(state_with(store.clone(), &platform));
    let b = body(5);
    for (i, secret) in ["new-secret", "old-secret"].iter().enumerate() {
        let res = test::call_service(
            &app,
            delivery(CREATE, "products/create", &format!("rot-{i}"), &b, secret).to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{secret}");
    }
    // Another store's secret does not sign for this store.
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "rot-x", &b, "other-secret").to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // An unlisted store is refused even with a valid-looking signature.
    let sig = sign(b"new-secret", b.as_bytes());
    let res = test::call_service(
        &app,
        delivery_for(
            CREATE,
            "products/create",
            "intruder.myshopify.com",
            "rot-y",
            &b,
            &sig,
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(all(&*store).await.len(), 2);
}

#[actix_web::test]
async fn oversize_bodies_get_413() {
    let store = memory();
    let mut s = settings();
    s.server.body_limit = 1024;
    let app = app!(state_from(&s, store.clone(), &single_secret()));
    let big = format!("{{\"id\":1,\"pad\":\"{}\"}}", "x".repeat(2000));
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "big", &big, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A lying Content-Length does not help: the limit is on bytes read.
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "big2", &big, SECRET)
            .insert_header(("Content-Length", "10"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(all(&*store).await.is_empty());
}

#[actix_web::test]
async fn malformed_json_with_a_valid_signature_is_kept_as_failed() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = "{\"id\": 12, truncated";
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "bad-json", b, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["status"], "stored_unparseable");
    let events = all(&*store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.status, EventStatus::Failed);
    assert_eq!(&events[0].event.raw_body[..], b.as_bytes());
    assert!(
        events[0]
            .event
            .error
            .as_deref()
            .unwrap()
            .contains("unreadable")
    );
    // A retry of it is a duplicate, not a second copy.
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "bad-json", b, SECRET).to_request(),
    )
    .await;
    assert_eq!(json(res).await["status"], "duplicate");
}

#[actix_web::test]
async fn topic_mismatch_is_400_and_unknown_routes_404() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(9);
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/update", "mm", &b, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "topic_mismatch");
    // The header decides on the per-platform endpoint.
    let res = test::call_service(
        &app,
        delivery("/webhooks/shopify", "products/update", "mm", &b, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let events = all(&*store).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.topic, "product.updated");
    for path in [
        "/webhooks/shopify/products/restore",
        "/webhooks/shopify/products/explode",
        "/webhooks/no-such-platform/products/create",
    ] {
        let res = test::call_service(
            &app,
            delivery(path, "products/create", "nf", &b, SECRET).to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Another method on a webhook route: 405 with `Allow`, nothing stored.
    for path in [CREATE, "/webhooks/shopify"] {
        let res = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(res.headers().get("allow").unwrap(), "POST");
        assert_eq!(json(res).await["error"], "method_not_allowed");
    }
    // A path no platform has is 404 whatever the method: `Allow: POST`
    // would name a method that gets 404 too.
    for path in [
        "/webhooks/shopify/products/nope",
        "/webhooks/no-such-platform",
        "/webhooks/no-such-platform/products/create",
    ] {
        for method in [actix_web::http::Method::GET, actix_web::http::Method::PUT] {
            let res =
                test::call_service(&app, with_method(method.clone(), path).to_request()).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
    assert_eq!(all(&*store).await.len(), 1);
}

#[actix_web::test]
async fn pings_are_answered_and_not_stored() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let req = test::TestRequest::post()
        .uri("/webhooks/shopify")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload("webhook_id=27")
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["status"], "ping");
    assert!(all(&*store).await.is_empty());
}

#[actix_web::test]
async fn repeated_signature_headers_are_refused() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(1);
    let good = sign(SECRET.as_bytes(), b.as_bytes());
    let req = delivery(CREATE, "products/create", "rep", &b, SECRET)
        .append_header(("X-Shopify-Hmac-Sha256", good))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(all(&*store).await.is_empty());
}

/// An identity header whose value is not text is named as such, not as
/// missing (an outside audit got "missing header X-Shopify-Shop-Domain"
/// for a header that was there).
#[actix_web::test]
async fn an_identity_header_that_is_not_text_is_named() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(1);
    let value = actix_web::http::header::HeaderValue::from_bytes(b"caf\xe9.myshopify.com").unwrap();
    let req = delivery(CREATE, "products/create", "latin1", &b, SECRET)
        .insert_header(("X-Shopify-Shop-Domain", value))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = json(res).await;
    assert_eq!(
        body["message"], "the x-shopify-shop-domain header is not text (visible ASCII)",
        "{body}"
    );
    assert!(all(&*store).await.is_empty());
}

#[actix_web::test]
async fn a_platform_without_secret_refuses_deliveries() {
    let store = memory();
    let app = app!(state_with(
        store.clone(),
        &webhook_server::settings::PlatformSettings::default()
    ));
    let b = body(1);
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "nosecret", &b, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A ping says the URL works: not while deliveries would be refused, so
    // the mistake shows when the webhook is created, not after the platform
    // has disabled it.
    let ping = test::TestRequest::post()
        .uri("/webhooks/shopify")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload("webhook_id=27")
        .to_request();
    let res = test::call_service(&app, ping).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(all(&*store).await.is_empty());
}

/// A store whose every write fails.
#[derive(Debug)]
struct BrokenStore;

#[async_trait::async_trait]
impl EventStore for BrokenStore {
    fn describe(&self) -> String {
        "broken".into()
    }
    async fn insert(&self, _: NewEvent) -> Result<InsertOutcome, StoreError> {
        Err(StoreError::Database("disk I/O error".into()))
    }
    async fn claim_due(
        &self,
        _: &str,
        _: Duration,
        _: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn complete(&self, _: &str, _: &str, _: DispatchOutcome) -> Result<bool, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn list(
        &self,
        _: &EventFilter,
        _: Option<i64>,
        _: usize,
    ) -> Result<EventPage, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn get(&self, _: &str) -> Result<Option<StoredEvent>, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn replay(&self, _: &str) -> Result<webhook_server::store::ReplayOutcome, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn prune(
        &self,
        _: &webhook_server::store::PrunePolicy,
        _: usize,
    ) -> Result<usize, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Err(StoreError::Unavailable)
    }
    async fn close(&self) {}
}

#[actix_web::test]
async fn store_errors_are_503_never_200() {
    let app = app!(state_with(Arc::new(BrokenStore), &single_secret()));
    let b = body(1);
    let res = test::call_service(
        &app,
        delivery(CREATE, "products/create", "broken", &b, SECRET).to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(!text.contains("disk"), "store detail must not leak: {text}");
    let res = test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// The memory store keeps `memory_max_events`; what it drops before
/// delivery is counted in `/metrics`, so an operator sees the loss.
#[actix_web::test]
async fn memory_store_drops_show_in_metrics() {
    let store = Arc::new(MemoryStore::new(2, 100));
    let app = app!(state_with(store.clone(), &single_secret()));
    // No dispatcher runs here: all five stay undelivered, three are dropped.
    for i in 0..5u64 {
        let res = test::call_service(
            &app,
            delivery(
                CREATE,
                "products/create",
                &format!("drop{i}"),
                &body(i),
                SECRET,
            )
            .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(text.contains("webhook_store_events 2\n"), "{text}");
    assert!(
        text.contains("webhook_store_dropped_undelivered_total 3\n"),
        "{text}"
    );
    assert_eq!(store.dropped_undelivered(), 3);
}

#[actix_web::test]
async fn status_health_metrics_and_docs() {
    let store = memory();
    let app = app!(state_with(store.clone(), &single_secret()));
    let b = body(1);
    test::call_service(
        &app,
        delivery(CREATE, "products/create", "m1", &b, SECRET).to_request(),
    )
    .await;
    test::call_service(
        &app,
        delivery(CREATE, "products/create", "m2", &b, "wrong").to_request(),
    )
    .await;
    for path in ["/", "/healthz", "/readyz", "/openapi.json"] {
        let res = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    let v = json(res).await;
    assert_eq!(v["platforms"][0]["id"], "shopify");
    assert_eq!(
        v["platforms"][0]["stores"],
        "any store signed with the platform secret"
    );
    assert_eq!(v["store"], "memory");
    assert!(!v.to_string().contains(SECRET));
    let res = test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    let text = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(text.contains(
        "webhook_deliveries_total{platform=\"shopify\",topic=\"product.created\",outcome=\"stored\"} 1"
    ), "{text}");
    assert!(text.contains("outcome=\"unauthorized\"} 1"), "{text}");
    assert!(text.contains("webhook_dispatch_queue_pending 1"), "{text}");
    assert!(
        text.contains("webhook_store_dropped_undelivered_total 0\n"),
        "{text}"
    );
    assert!(
        text.contains("webhook_delivery_duration_seconds_count 2"),
        "{text}"
    );
    let res = test::call_service(
        &app,
        test::TestRequest::get().uri("/openapi.json").to_request(),
    )
    .await;
    let v = json(res).await;
    assert!(v["paths"]["/webhooks/shopify/products/create"].is_object());
    assert!(v["paths"]["/healthz"].is_object());
    // Only what this server serves: no admin API without a token, no
    // routes of a platform it does not have (a contract tester called
    // them and got 404s).
    let paths: Vec<&String> = v["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths
            .iter()
            .all(|p| !p.starts_with("/admin") && !p.starts_with("/webhooks/woocommerce")),
        "{paths:?}"
    );
    let mut with_admin = settings();
    with_admin.admin.token = Some(secrecy::SecretString::from(
        "an-admin-token-of-32-characters!",
    ));
    let admin_app = app!(state_from(&with_admin, memory(), &single_secret()));
    let res = test::call_service(
        &admin_app,
        test::TestRequest::get().uri("/openapi.json").to_request(),
    )
    .await;
    let v = json(res).await;
    assert!(v["paths"]["/admin/events"].is_object(), "{v}");
    // Its platform filter lists the platforms this server has.
    let platform = v["paths"]["/admin/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "platform")
        .unwrap();
    assert_eq!(
        platform["schema"]["enum"],
        serde_json::json!(["", "shopify"]),
        "{platform}"
    );
    let res = test::call_service(&app, test::TestRequest::get().uri("/docs/").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(html.to_lowercase().contains("swagger"));
    assert!(!html.contains("cdn"), "docs must be served from the binary");
    // No page of the docs talks to a third party: the online validator is
    // off (Swagger UI's default would send the document's address to it).
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/docs/swagger-initializer.js")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let js = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
    assert!(
        js.contains(r#""validatorUrl": "none""#) || js.contains(r#""validatorUrl":"none""#),
        "{js}"
    );
    assert!(js.contains("/openapi.json"), "{js}");
    // Every page answers HEAD as GET (probes, link checkers), and any
    // other method with 405 naming both, not a 404 that reads as "no such
    // route".
    use actix_web::http::Method;
    let pages = [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/",
        "/docs/swagger-initializer.js",
    ];
    for path in pages {
        let get = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        let head = test::call_service(&app, with_method(Method::HEAD, path).to_request()).await;
        assert!(
            get.status().is_success() || get.status().is_redirection(),
            "GET {path}: {}",
            get.status()
        );
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        for method in [Method::PUT, Method::DELETE, Method::TRACE, Method::OPTIONS] {
            let res =
                test::call_service(&app, with_method(method.clone(), path).to_request()).await;
            assert_eq!(
                res.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                res.headers().get("allow").unwrap(),
                "GET, HEAD",
                "{method} {path}"
            );
            assert_eq!(json(res).await["error"], "method_not_allowed");
        }
    }
    // A file the UI does not have is the API's 404.
    let res = test::call_service(
        &app,
        test::TestRequest::get().uri("/docs/nope.js").to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(res).await["error"], "not_found");
}

/// `GET /` is public: it says how stores are authenticated, never which
/// stores there are (the tenants), how many secrets each has (a rotation
/// in progress) or where the database is.
#[actix_web::test]
async fn the_public_status_names_no_store_secret_count_or_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.db");
    let store: Arc<dyn EventStore> = Arc::new(
        webhook_server::store::SqliteStore::open(
            &path,
            webhook_server::settings::Durability::PowerLoss,
            64,
        )
        .unwrap(),
    );
    let platform = stores(&[
        ("acme-tenant.myshopify.com", &[SECRET, "old-secret"]),
        ("beta-tenant.myshopify.com", &[SECRET]),
    ]);
    let state = state_with(store, &platform);
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v = json(res).await;
    assert_eq!(v["platforms"][0]["stores"], "2 configured stores");
    assert_eq!(v["store"], "sqlite");
    let text = v.to_string();
    for hidden in ["tenant", "secret", "tenants.db", SECRET] {
        assert!(!text.contains(hidden), "{hidden} in {text}");
    }
}

/// `/metrics` reads the store's figures at most once a second: a flood of
/// scrapes (the endpoint is open and not rate-limited) costs the store one
/// count of its backlog a second, not one a scrape.
#[actix_web::test]
async fn store_figures_are_read_at_most_once_a_second() {
    let store = memory();
    let state = state_with(store.clone(), &single_secret());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
    let pending = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("webhook_dispatch_queue_pending "))
            .map(str::to_owned)
    };
    let scrape = || async {
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
        String::from_utf8(test::read_body(res).await.to_vec()).unwrap()
    };
    let deliver = |n: u64| {
        delivery(
            CREATE,
            "products/create",
            &format!("m{n}"),
            &body(n),
            SECRET,
        )
        .to_request()
    };
    test::call_service(&app, deliver(1)).await;
    assert_eq!(pending(scrape().await).as_deref(), Some("1"));
    test::call_service(&app, deliver(2)).await;
    // Within the second: the figures read a moment ago.
    assert_eq!(pending(scrape().await).as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(pending(scrape().await).as_deref(), Some("2"));
}
