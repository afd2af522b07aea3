use std::sync::Arc;
use std::time::Duration;

use catalog_woocommerce::{AuthMode, WooCommerceClient, WooCommerceClientBuilder};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer};

use crate::fake::{FakeStore, KEY, SECRET};

/// Starts a server answering everything from `store` (at low priority, so
/// tests can mount scripted failures in front of it).
pub(crate) async fn start(store: FakeStore) -> (MockServer, Arc<FakeStore>) {
    let server = MockServer::start().await;
    let store = Arc::new(store);
    Mock::given(any())
        .respond_with(store.responder())
        .with_priority(10)
        .mount(&server)
        .await;
    (server, store)
}

/// A builder pointed at the fake with fast retries.
pub(crate) fn builder(server: &MockServer, mode: AuthMode) -> WooCommerceClientBuilder {
    WooCommerceClient::builder()
        .store_url(server.uri())
        .credentials(KEY, SECRET)
        .auth_mode(mode)
        .retry_backoff(Duration::from_millis(5), Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
}

pub(crate) fn client(server: &MockServer, mode: AuthMode) -> WooCommerceClient {
    builder(server, mode).build().expect("client")
}
