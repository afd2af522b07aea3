//! Retries: 429 with Retry-After, 5xx, bounded attempts.

use std::time::{Duration, Instant};

use catalog_core::{Catalog, CatalogError};
use catalog_woocommerce::AuthMode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::fake::{Accept, FakeStore};
use crate::support::{builder, client, start};

const P: &str = "/wp-json/wc/v3/products/794";

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    Mock::given(method("GET"))
        .and(path(P))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    let started = Instant::now();
    let p = c.get_product("794").await.unwrap();
    assert_eq!(p.platform_id, "794");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited as asked"
    );
}

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    Mock::given(path(P))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    assert_eq!(c.get_product("794").await.unwrap().platform_id, "794");
}

#[tokio::test]
async fn retries_are_bounded() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    Mock::given(path(P))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            serde_json::json!({"code":"maintenance","message":"Down for maintenance","data":{"status":503}}),
        ))
        .expect(3)
        .mount(&server)
        .await;
    let c = builder(&server, AuthMode::Basic)
        .max_retries(2)
        .build()
        .unwrap();
    let err = c.get_product("794").await.unwrap_err();
    match err {
        CatalogError::Http {
            status,
            code,
            message,
        } => {
            assert_eq!(status, 503);
            assert_eq!(code.as_deref(), Some("maintenance"));
            assert_eq!(message, "Down for maintenance");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn persistent_429_becomes_rate_limited() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    Mock::given(path(P))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .expect(2)
        .mount(&server)
        .await;
    let c = builder(&server, AuthMode::Basic)
        .max_retries(1)
        .build()
        .unwrap();
    let err = c.get_product("794").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::RateLimited { retry_after: Some(d) } if d == Duration::ZERO),
        "{err:?}"
    );
}

#[tokio::test]
async fn retry_after_beyond_the_cap_is_not_waited_for() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    Mock::given(path(P))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    let started = Instant::now();
    let err = c.get_product("794").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::RateLimited { retry_after: Some(d) } if d.as_secs() == 3600)
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn other_errors_are_not_retried() {
    let (server, _store) = start(FakeStore::new(Accept::Https)).await;
    Mock::given(path("/wp-json/wc/v3/products/5"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            serde_json::json!({"code":"rest_invalid_param","message":"Invalid parameter(s): id","data":{"status":400}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    let err = c.get_product("5").await.unwrap_err();
    assert!(matches!(err, CatalogError::Http { status: 400, .. }));
}

#[tokio::test]
async fn long_retry_after_on_503_stays_an_http_error() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    Mock::given(path(P))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "600"))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    let err = c.get_product("794").await.unwrap_err();
    assert!(
        matches!(err, CatalogError::Http { status: 503, .. }),
        "{err:?}"
    );
}

/// A response declared longer than the client's ceiling (32 MiB) is
/// refused before its body is read.
#[tokio::test]
async fn a_response_declared_past_the_ceiling_is_refused() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .insert_header("content-type", "application/json")
                .set_body_bytes(vec![b' '; 33 * 1024 * 1024]),
        )
        .mount(&server)
        .await;
    let client = crate::support::client(&server, catalog_woocommerce::AuthMode::Basic);
    let err = catalog_core::Catalog::get_product(&client, "794")
        .await
        .unwrap_err();
    assert!(
        matches!(err, catalog_core::CatalogError::Decode { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("longer than 32768 KiB"), "{err}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );
}
