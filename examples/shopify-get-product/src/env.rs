//! Builds a client from the environment (shared by the Shopify examples).

use catalog_shopify::{ShopifyClient, ShopifyClientBuilder};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `SHOPIFY_STORE_URL`, `SHOPIFY_API_VERSION` (optional), and either
/// `SHOPIFY_CLIENT_ID` + `SHOPIFY_CLIENT_SECRET` or `SHOPIFY_ACCESS_TOKEN`.
pub(crate) fn builder_from_env() -> Result<ShopifyClientBuilder, String> {
    let store = var("SHOPIFY_STORE_URL")
        .ok_or("missing environment variable SHOPIFY_STORE_URL (e.g. example.myshopify.com)")?;
    let mut builder = ShopifyClient::builder().store_url(store);
    if let Some(version) = var("SHOPIFY_API_VERSION") {
        builder = builder.api_version(version);
    }
    let id = var("SHOPIFY_CLIENT_ID");
    let secret = var("SHOPIFY_CLIENT_SECRET");
    let token = var("SHOPIFY_ACCESS_TOKEN");
    Ok(match (id, secret, token) {
        (Some(id), Some(secret), _) => builder.client_credentials(id, secret),
        (None, None, Some(token)) => builder.access_token(token),
        (Some(_), None, _) => {
            return Err(
                "missing environment variable SHOPIFY_CLIENT_SECRET (SHOPIFY_CLIENT_ID is set)"
                    .into(),
            );
        }
        (None, Some(_), _) => {
            return Err(
                "missing environment variable SHOPIFY_CLIENT_ID (SHOPIFY_CLIENT_SECRET is set)"
                    .into(),
            );
        }
        (None, None, None) => {
            return Err("missing environment variable SHOPIFY_CLIENT_ID and SHOPIFY_CLIENT_SECRET, or SHOPIFY_ACCESS_TOKEN".into());
        }
    })
}
