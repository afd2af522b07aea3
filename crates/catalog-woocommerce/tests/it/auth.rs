//! Basic, query-string and OAuth 1.0a authentication; bad credentials.

use std::time::Duration;

use catalog_core::{Catalog, CatalogError};
use catalog_woocommerce::{AuthMode, WooCommerceClient};
use futures::TryStreamExt;

use crate::fake::{Accept, FakeStore, KEY, SECRET};
use crate::support::{builder, client, start};

#[tokio::test]
async fn basic_auth_header() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    let c = client(&server, AuthMode::Basic);
    let p = c.get_product("794").await.unwrap();
    assert_eq!(p.platform_id, "794");
    let reqs = server.received_requests().await.unwrap();
    assert!(
        reqs.iter()
            .all(|r| r.headers.get("authorization").is_some())
    );
    assert!(reqs.iter().all(|r| !r.url.as_str().contains(SECRET)));
}

#[tokio::test]
async fn query_string_auth() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(794, "21.99");
    let c = client(&server, AuthMode::QueryString);
    c.get_product("794").await.unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert!(
        reqs.iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
    assert!(reqs.iter().all(|r| {
        r.url
            .query_pairs()
            .any(|(k, v)| k == "consumer_key" && v == KEY)
    }));
}

#[tokio::test]
async fn oauth1_is_chosen_for_http_and_verified_by_the_store() {
    let (server, store) = start(FakeStore::new(Accept::OAuth1)).await;
    for id in 1..=25 {
        store.add_simple(id, "1.00");
    }
    store.add_variable(30, 3);
    let c = builder(&server, AuthMode::Auto)
        .page_size(10)
        .concurrency(3)
        .build()
        .unwrap();
    assert_eq!(c.auth_mode(), AuthMode::OAuth1);
    let all: Vec<_> = c.stream_products().try_collect().await.unwrap();
    assert_eq!(all.len(), 26);
    // Every request carried a fresh nonce and a valid signature (the fake
    // refuses reused nonces and recomputes each signature), and the secret
    // never travelled.
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(store.nonces.lock().unwrap().len(), reqs.len());
    assert!(reqs.iter().all(|r| !r.url.as_str().contains(SECRET)));
    assert!(
        reqs.iter()
            .all(|r| r.headers.get("authorization").is_none())
    );
}

#[tokio::test]
async fn oauth1_with_a_wrong_secret_is_refused() {
    let (server, store) = start(FakeStore::new(Accept::OAuth1)).await;
    store.add_simple(1, "1.00");
    let wrong = "cs_wrong_but_secret_9999";
    let c = builder(&server, AuthMode::OAuth1)
        .credentials(KEY, wrong)
        .build()
        .unwrap();
    let err = c.get_product("1").await.unwrap_err();
    match &err {
        CatalogError::Unauthorized(m) => assert!(m.contains("signature does not match"), "{m}"),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(!err.to_string().contains(wrong) && !format!("{err:?}").contains(wrong));
}

#[tokio::test]
async fn bad_secret_gives_unauthorized_without_leaking_it() {
    let (server, store) = start(FakeStore::new(Accept::Https)).await;
    store.add_simple(1, "1.00");
    let wrong = "cs_wrong_but_secret_1234";
    for mode in [AuthMode::Basic, AuthMode::QueryString] {
        let c = builder(&server, mode)
            .credentials(KEY, wrong)
            .build()
            .unwrap();
        let err = c.get_product("1").await.unwrap_err();
        match &err {
            CatalogError::Unauthorized(m) => {
                assert!(m.contains("Consumer secret is invalid."), "{m}")
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!format!("{c:?}").contains(wrong));
    }
}

#[tokio::test]
async fn transport_errors_do_not_carry_query_credentials() {
    // Nothing listens on port 9 of localhost: connection refused.
    let c = WooCommerceClient::builder()
        .store_url("http://127.0.0.1:9")
        .credentials(KEY, SECRET)
        .auth_mode(AuthMode::QueryString)
        .currency(catalog_core::CurrencyCode::new("EUR").unwrap())
        .max_retries(1)
        .retry_backoff(Duration::from_millis(1), Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let err = c.get_product("1").await.unwrap_err();
    assert!(matches!(err, CatalogError::Transport(_)), "{err:?}");
    let mut shown = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        shown.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("consumer_secret"), "{shown}");
}

#[tokio::test]
async fn oauth1_retries_use_a_fresh_nonce() {
    let (server, store) = start(FakeStore::new(Accept::OAuth1)).await;
    store.add_simple(7, "1.00");
    // The store authenticates (and remembers the nonce of) the first two
    // attempts, then answers 503: a retry reusing the nonce would be refused.
    store
        .fail_next
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let c = client(&server, AuthMode::OAuth1);
    assert_eq!(c.get_product("7").await.unwrap().platform_id, "7");
    assert!(store.nonces.lock().unwrap().len() >= 3);
}

#[tokio::test]
async fn basic_or_query_keys_over_plain_http_are_refused_with_the_reason() {
    // A store that sees plain HTTP reads OAuth 1.0a only: Basic and query
    // keys are ignored, and the 401 says why and what to do.
    let (server, store) = start(FakeStore::new(Accept::OAuth1)).await;
    store.add_simple(1, "1.00");
    for mode in [AuthMode::Basic, AuthMode::QueryString] {
        let err = client(&server, mode).get_product("1").await.unwrap_err();
        match &err {
            CatalogError::Unauthorized(m) => {
                assert!(m.contains("only over HTTPS") && m.contains("oauth1"), "{m}")
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
        assert!(!format!("{err:?}").contains(SECRET));
    }
    // OAuth 1.0a (what `Auto` picks for http) is let in.
    client(&server, AuthMode::OAuth1)
        .get_product("1")
        .await
        .unwrap();
}
