//! How the client authenticates (a setting of [`crate::WooCommerceConfig`],
//! so not behind the `client` feature).

use serde::Deserialize;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMode {
    /// HTTP Basic for `https` stores, OAuth 1.0a for `http` stores.
    #[default]
    Auto,
    /// HTTP Basic (`Authorization: Basic base64(ck:cs)`). HTTPS only in
    /// practice: WooCommerce ignores Basic credentials on plain HTTP.
    Basic,
    /// `consumer_key` and `consumer_secret` as query parameters, for servers
    /// that strip the `Authorization` header. The secret travels in the URL,
    /// so this client never lets a URL into an error or a log line.
    #[serde(alias = "query")]
    QueryString,
    /// One-legged OAuth 1.0a with HMAC-SHA256, parameters in the query string.
    /// The signature covers the method, the URL and every query parameter;
    /// a fresh nonce and timestamp are used for every attempt.
    #[serde(rename = "oauth1", alias = "oauth")]
    OAuth1,
}

impl AuthMode {
    /// The concrete mode for a store URL scheme (`Auto` resolved).
    #[cfg(feature = "client")]
    pub(crate) fn resolve(self, scheme: &str) -> AuthMode {
        match self {
            Self::Auto if scheme.eq_ignore_ascii_case("https") => Self::Basic,
            Self::Auto => Self::OAuth1,
            other => other,
        }
    }
}
