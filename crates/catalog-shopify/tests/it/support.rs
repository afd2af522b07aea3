//! Client builders pointed at a fake server, with short waits.

use std::time::Duration;

use catalog_shopify::{ShopifyClient, ShopifyClientBuilder};

use crate::fake::{CLIENT_ID, CLIENT_SECRET, FakeProduct, Running, STATIC_TOKEN};

pub(crate) const STORE: &str = "example.myshopify.com";

/// A builder for the fake server with a static token and test-sized waits.
pub(crate) fn builder(server: &Running) -> ShopifyClientBuilder {
    ShopifyClient::builder()
        .store_url(STORE)
        .base_url(server.uri())
        .access_token(STATIC_TOKEN)
        .retry_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .timeout(Duration::from_secs(10))
        .bulk_poll_interval(Duration::from_millis(5))
}

/// The same with the client credentials grant.
pub(crate) fn grant_builder(server: &Running) -> ShopifyClientBuilder {
    builder(server).client_credentials(CLIENT_ID, CLIENT_SECRET)
}

pub(crate) fn products(n: u64, variants: u64, images: u64) -> Vec<FakeProduct> {
    (1..=n)
        .map(|i| FakeProduct::numbered(i, variants, images))
        .collect()
}
