//! Token grant, caching, renewal before expiry, single-flight, 401 handling.

use std::time::Duration;

use catalog_core::{Catalog, CatalogError};
use catalog_shopify::ShopifyClient;

use crate::fake::{CLIENT_ID, FakeShopify, Options};
use crate::support::{STORE, builder, grant_builder, products};

fn opts() -> Options {
    Options {
        products: products(3, 1, 0),
        ..Options::default()
    }
}

#[tokio::test]
async fn grant_is_cached_across_calls_and_clones() {
    let server = FakeShopify::start(opts()).await;
    let client = grant_builder(&server).build().unwrap();
    let clone = client.clone();
    let a = client.get_product("7000000000000000001").await.unwrap();
    let b = clone
        .get_product("gid://shopify/Product/7000000000000000002")
        .await
        .unwrap();
    assert_eq!(a.platform_id, "7000000000000000001");
    assert_eq!(b.store, STORE);
    let c = server.fake.counters();
    assert_eq!(c.grants, 1);
    assert_eq!(c.unauthorized, 0);
}

#[tokio::test]
async fn concurrent_callers_cause_exactly_one_grant() {
    let server = FakeShopify::start(Options {
        grant_delay: Duration::from_millis(150),
        currency: "EUR",
        ..opts()
    })
    .await;
    let client = grant_builder(&server)
        .currency("EUR".parse().unwrap())
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .get_product(&format!("700000000000000000{}", 1 + i % 3))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(server.fake.counters().grants, 1);
}

#[tokio::test]
async fn token_is_renewed_before_it_expires() {
    // A one-second token: the client renews when a tenth of it is left, so a
    // call at 950 ms gets a fresh token and the server never sees an expired one.
    let server = FakeShopify::start(Options {
        token_lifetime: Duration::from_secs(1),
        ..opts()
    })
    .await;
    let client = grant_builder(&server).build().unwrap();
    client.get_product("7000000000000000001").await.unwrap();
    tokio::time::sleep(Duration::from_millis(950)).await;
    client.get_product("7000000000000000001").await.unwrap();
    let c = server.fake.counters();
    assert_eq!(c.grants, 2);
    assert_eq!(
        c.unauthorized, 0,
        "a request went out with an expired token"
    );
}

#[tokio::test]
async fn revoked_token_is_renewed_once_on_401() {
    let server = FakeShopify::start(opts()).await;
    let client = grant_builder(&server).build().unwrap();
    client.get_product("7000000000000000001").await.unwrap();
    server.fake.revoke_tokens();
    client.get_product("7000000000000000001").await.unwrap();
    let c = server.fake.counters();
    assert_eq!(c.grants, 2);
    assert_eq!(c.unauthorized, 1);
}

#[tokio::test]
async fn persistent_401_renews_once_then_fails() {
    let server = FakeShopify::start(Options {
        reject_all_tokens: true,
        ..opts()
    })
    .await;
    let client = grant_builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let err = client.get_product("7000000000000000001").await.unwrap_err();
    assert!(matches!(err, CatalogError::Unauthorized(_)), "{err:?}");
    let c = server.fake.counters();
    assert_eq!(c.grants, 2, "one grant, one renewal");
    assert_eq!(c.unauthorized, 2);
    assert_eq!(c.graphql, 2);
}

#[tokio::test]
async fn static_token_401_fails_without_grant() {
    let server = FakeShopify::start(Options {
        reject_all_tokens: true,
        ..opts()
    })
    .await;
    let client = builder(&server)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap();
    let err = client.list_page(Default::default()).await.unwrap_err();
    assert!(matches!(err, CatalogError::Unauthorized(_)), "{err:?}");
    let c = server.fake.counters();
    assert_eq!((c.grants, c.graphql), (0, 1));
}

#[tokio::test]
async fn refused_grant_is_unauthorized_and_never_shows_the_secret() {
    let server = FakeShopify::start(opts()).await;
    let client = ShopifyClient::builder()
        .store_url(STORE)
        .base_url(server.uri())
        .client_credentials(CLIENT_ID, "wrong-secret-value")
        .build()
        .unwrap();
    let err = client.get_product("1").await.unwrap_err();
    let text = format!("{err} {err:?} {client:?}");
    assert!(matches!(err, CatalogError::Unauthorized(_)), "{err:?}");
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
}

/// An app's token store: hands out `current`, and on a refusal "refreshes"
/// to `next` (what an app does with its refresh token), counting both.
#[derive(Debug)]
struct AppTokens {
    current: std::sync::Mutex<String>,
    next: String,
    refused: std::sync::Mutex<Vec<String>>,
    asked: std::sync::atomic::AtomicU32,
}

impl AppTokens {
    fn new(current: &str, next: &str) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            current: std::sync::Mutex::new(current.to_owned()),
            next: next.to_owned(),
            refused: std::sync::Mutex::default(),
            asked: std::sync::atomic::AtomicU32::new(0),
        })
    }
}

#[async_trait::async_trait]
impl catalog_shopify::AccessTokenSource for AppTokens {
    async fn access_token(&self) -> catalog_core::Result<secrecy::SecretString> {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(secrecy::SecretString::from(token))
    }

    async fn refused(&self, token: &secrecy::SecretString) {
        use secrecy::ExposeSecret;
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token.expose_secret().to_owned());
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = self.next.clone();
    }
}

/// A client for the fake store with its tokens from `tokens`.
#[allow(clippy::unwrap_used)]
fn sourced(server: &crate::fake::Running, tokens: &std::sync::Arc<AppTokens>) -> ShopifyClient {
    ShopifyClient::builder()
        .store_url(STORE)
        .base_url(server.uri())
        .token_source(std::sync::Arc::clone(tokens) as _)
        .currency("USD".parse().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_apps_token_source_is_asked_each_request_and_told_of_a_refusal() {
    let server = FakeShopify::start(opts()).await;
    // The app's token expired: Shopify refuses it, the app refreshes, the
    // request goes again with the new one.
    let tokens = AppTokens::new("shpua_expired", crate::fake::STATIC_TOKEN);
    let client = sourced(&server, &tokens);
    let page = client.list_page(Default::default()).await.unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(*tokens.refused.lock().unwrap(), ["shpua_expired"]);
    client.get_product("7000000000000000001").await.unwrap();
    assert_eq!(
        tokens.asked.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "once a request, the retry included"
    );
    let c = server.fake.counters();
    assert_eq!((c.grants, c.unauthorized, c.graphql), (0, 1, 3));
    // A source whose refreshed token is refused too: Unauthorized after
    // one retry, never the token in the error.
    let tokens = AppTokens::new("shpua_old", "shpua_also_revoked");
    let client = sourced(&server, &tokens);
    let err = client.list_page(Default::default()).await.unwrap_err();
    assert!(matches!(&err, CatalogError::Unauthorized(_)), "{err:?}");
    assert!(!err.to_string().contains("shpua_"), "{err}");
    assert_eq!(*tokens.refused.lock().unwrap(), ["shpua_old"]);
    assert!(!format!("{client:?}").contains("shpua_"));
}
