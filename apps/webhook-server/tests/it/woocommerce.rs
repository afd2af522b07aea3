//! The real WooCommerce source wired through the server.

use actix_web::http::StatusCode;
use actix_web::{App, test};
use catalog_core::webhook::sign;
use webhook_server::configure;
use webhook_server::platforms::Platforms;
use webhook_server::settings::Settings;
use webhook_server::store::{EventFilter, EventStatus, EventStore};

use crate::support::*;

const PRODUCT: &str = include_str!("../fixtures/woocommerce_product_794.json");
const SITE: &str = "https://shop.example.com";

fn settings_with_stores() -> Settings {
    let mut s = settings();
    s.woocommerce = stores(&[(SITE, &["woo-new", "woo-old"])]);
    s.woocommerce.default_currency = Some("USD".into());
    s
}

fn woo(path: &str, topic: &str, body: &str, secret: &str, source: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri(path)
        .insert_header(("Content-Type", "application/json"))
        .insert_header(("X-WC-Webhook-Source", format!("{source}/")))
        .insert_header(("X-WC-Webhook-Topic", topic))
        .insert_header(("X-WC-Webhook-Resource", "product"))
        .insert_header(("X-WC-Webhook-Event", topic.trim_start_matches("product.")))
        .insert_header(("X-WC-Webhook-ID", "27"))
        .insert_header((
            "X-WC-Webhook-Delivery-ID",
            "039f3155b209b1c591c26f60004d889f",
        ))
        .insert_header((
            "X-WC-Webhook-Signature",
            sign(secret.as_bytes(), body.as_bytes()),
        ))
        .set_payload(body.to_owned())
}

#[actix_web::test]
async fn woocommerce_deliveries_pings_rotation_and_unknown_stores() {
    let s = settings_with_stores();
    let store = memory();
    let state =
        webhook_server::AppState::new(&s, Platforms::from_settings(&s).unwrap(), store.clone());
    let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;

    // Ping: unsigned form body, answered 200, nothing stored.
    let res = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/webhooks/woocommerce")
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
            .set_payload("webhook_id=27")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Signed with the old secret during a rotation: stored, product normalised.
    let res = test::call_service(
        &app,
        woo(
            "/webhooks/woocommerce/products/update",
            "product.updated",
            PRODUCT,
            "woo-old",
            SITE,
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(v["status"], "stored");
    // The same delivery again: duplicate.
    let res = test::call_service(
        &app,
        woo(
            "/webhooks/woocommerce",
            "product.updated",
            PRODUCT,
            "woo-new",
            SITE,
        )
        .to_request(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    assert_eq!(v["status"], "duplicate");
    // Restore route exists for WooCommerce.
    let restored = PRODUCT.replace("2017-03-23T17:01:14", "2017-03-24T10:00:00");
    let res = test::call_service(
        &app,
        woo(
            "/webhooks/woocommerce/products/restore",
            "product.restored",
            &restored,
            "woo-new",
            SITE,
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Unknown store, wrong secret, missing signature, topic mismatch.
    let other = PRODUCT.replace("Premium Quality", "Other");
    let res = test::call_service(
        &app,
        woo(
            "/webhooks/woocommerce",
            "product.updated",
            &other,
            "woo-new",
            "https://evil.example.com",
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = test::call_service(
        &app,
        woo(
            "/webhooks/woocommerce",
            "product.updated",
            &other,
            "nope",
            SITE,
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let mut req = woo(
        "/webhooks/woocommerce",
        "product.updated",
        &other,
        "woo-new",
        SITE,
    )
    .to_request();
    req.headers_mut().remove("x-wc-webhook-signature");
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = test::call_service(
        &app,
        woo(
            "/webhooks/woocommerce/products/delete",
            "product.updated",
            &other,
            "woo-new",
            SITE,
        )
        .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let events = store
        .list(&EventFilter::default(), None, 10)
        .await
        .unwrap()
        .events;
    assert_eq!(events.len(), 2);
    let updated = &events[1];
    assert_eq!(updated.event.platform, "woocommerce");
    assert_eq!(updated.event.store, SITE);
    assert_eq!(updated.event.topic, "product.updated");
    assert_eq!(updated.event.product_id.as_deref(), Some("794"));
    assert_eq!(updated.event.status, EventStatus::Pending);
    assert!(
        updated.event.product.is_none(),
        "derived from the stored body"
    );
    let platforms = Platforms::from_settings(&s).unwrap();
    let product = webhook_server::normalise::product_json(&platforms, &updated.event).unwrap();
    let product: serde_json::Value = serde_json::from_str(&product.unwrap()).unwrap();
    assert_eq!(product["title"], "Premium Quality");
    assert_eq!(events[0].event.topic, "product.restored");
}

#[actix_web::test]
async fn a_misconfigured_platform_stops_start_up() {
    let mut s = settings();
    s.woocommerce = stores(&[("https://shop.example.com", &["x"])]);
    s.woocommerce.default_currency = Some("dollars".into());
    let err = Settings::validate(&s).unwrap_err();
    assert!(
        err.to_string().contains("woocommerce.default_currency"),
        "{err}"
    );
}

#[actix_web::test]
async fn a_secret_configured_in_its_stored_html_encoded_form_still_verifies() {
    // WooCommerce stores `ab<c"d&e` as `ab&lt;c&quot;d&amp;e` and signs with
    // the decoded form; an operator copied the stored one. Both the
    // shared secret and a store's list are read that way.
    const STORED: &str = "ab&lt;c&quot;d&amp;e";
    const SIGNING: &str = "ab<c\"d&e";
    let mut shared = settings();
    shared.woocommerce.webhook_secret = Some(secrecy::SecretString::from(STORED));
    shared.woocommerce.default_currency = Some("USD".into());
    let mut listed = settings();
    listed.woocommerce = stores(&[(SITE, &[STORED])]);
    listed.woocommerce.default_currency = Some("USD".into());
    for s in [shared, listed] {
        let store = memory();
        let state =
            webhook_server::AppState::new(&s, Platforms::from_settings(&s).unwrap(), store.clone());
        let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
        let path = "/webhooks/woocommerce/products/update";
        for (secret, status) in [
            ("wrong", StatusCode::UNAUTHORIZED),
            (SIGNING, StatusCode::OK),
            (STORED, StatusCode::OK),
        ] {
            // A distinct body each time, so that none is a duplicate.
            let body = PRODUCT.replace("Premium Quality", &format!("Premium {secret}"));
            let res = test::call_service(
                &app,
                woo(path, "product.updated", &body, secret, SITE).to_request(),
            )
            .await;
            assert_eq!(res.status(), status, "signed with {secret}");
        }
        let page = store.list(&EventFilter::default(), None, 10).await.unwrap();
        assert_eq!(page.events.len(), 2);
    }
}

/// WooCommerce payload weights are bare numbers in the store's unit: a
/// store's `weight_unit` (or the platform's `default_weight_unit`) gives
/// the events' variants their weight; without one they have none. Units
/// WooCommerce does not have, or on a Shopify store, stop start-up.
#[actix_web::test]
async fn weights_take_the_configured_unit() {
    let mut body: serde_json::Value = serde_json::from_str(PRODUCT).unwrap();
    body["weight"] = "1.5".into();
    let body = body.to_string();
    let weight = |s: Settings| {
        let body = body.clone();
        async move {
            let store = memory();
            let platforms = Platforms::from_settings(&s).unwrap();
            let state = webhook_server::AppState::new(&s, platforms, store.clone());
            let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
            let res = test::call_service(
                &app,
                woo(
                    "/webhooks/woocommerce",
                    "product.updated",
                    &body,
                    "woo-new",
                    SITE,
                )
                .to_request(),
            )
            .await;
            assert_eq!(res.status(), StatusCode::OK);
            let stored = store.list(&EventFilter::default(), None, 1).await.unwrap();
            let event = &stored.events[0].event;
            let product = webhook_server::normalise::product_json(
                &Platforms::from_settings(&s).unwrap(),
                event,
            )
            .unwrap()
            .unwrap();
            let product: serde_json::Value = serde_json::from_str(&product).unwrap();
            product["variants"][0]["weight"].clone()
        }
    };
    assert!(weight(settings_with_stores()).await.is_null());
    let mut s = settings_with_stores();
    s.woocommerce.stores[0].weight_unit = Some("KG".into());
    s.woocommerce.default_weight_unit = Some("g".into());
    let w = weight(s).await;
    assert_eq!(
        (w["value"].as_str(), w["unit"].as_str()),
        (Some("1.5"), Some("kg")),
        "{w}"
    );
    let mut s = settings_with_stores();
    s.woocommerce.default_weight_unit = Some("oz".into());
    assert_eq!(weight(s).await["unit"], "oz");

    for (platform, key) in [
        ("woocommerce", "woocommerce.default_weight_unit"),
        ("shopify", "shopify.default_weight_unit"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let unit = if platform == "shopify" { "kg" } else { "stone" };
        std::fs::write(
            &path,
            format!("[{platform}]\ndefault_weight_unit = \"{unit}\"\n"),
        )
        .unwrap();
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(err.contains(key), "{err}");
    }
}
