//! Serde configuration shared by the webhook server, the CLI and [`ShopifyClient::from_config`].
//!
//! ```toml
//! [shopify]
//! store_url = "example.myshopify.com"     # or a full URL: "http://127.0.0.1:8080"
//! api_version = "2026-01"                 # optional, this is the default
//! currency = "EUR"                        # optional, see "Currency" in the crate docs
//! auth = { client_id = "…", client_secret = "…" }   # client credentials grant
//! # auth = { access_token = "shpat_…" }             # or a static Admin API token
//! webhook_secrets = ["new-secret", "old-secret"]     # optional, see below
//! ```
//!
//! [`ShopifyClient::from_config`]: crate::ShopifyClient::from_config

use std::fmt;

use catalog_core::webhook::{HmacVerifier, WebhookError};
use catalog_core::{CatalogError, CurrencyCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

#[cfg(feature = "client")]
use crate::ShopifyClient;
use crate::ShopifyWebhookSource;

/// The Admin API version used when none is configured.
pub const DEFAULT_API_VERSION: &str = "2026-01";

/// How a store is reached and authenticated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ShopifyConfig {
    /// The store: a bare `example.myshopify.com` (HTTPS is implied) or a full
    /// URL with scheme (`http://127.0.0.1:8080` for a fake server or a proxy).
    pub store_url: String,
    /// Admin API version, `2026-01` by default.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// How to authenticate Admin API calls.
    pub auth: ShopifyAuth,
    /// The store's currency. Shopify prices carry no currency: when this is
    /// unset the client asks the store once (`shop { currencyCode }`), while
    /// webhook parsing falls back to `USD`. Set it so both always agree.
    #[serde(default)]
    pub currency: Option<CurrencyCode>,
    /// Secrets that sign this store's webhooks, newest first. Empty means "the
    /// app's client secret" (client-credentials auth). Give two during a
    /// secret rotation.
    #[serde(default)]
    pub webhook_secrets: Vec<SecretString>,
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

impl ShopifyConfig {
    /// A configuration with the default API version and no currency.
    pub fn new(store_url: impl Into<String>, auth: ShopifyAuth) -> Self {
        Self {
            store_url: store_url.into(),
            api_version: default_api_version(),
            auth,
            currency: None,
            webhook_secrets: Vec::new(),
        }
    }

    /// The shop domain (store identity) this configuration names.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] when `store_url` is not a valid URL or host.
    pub fn store(&self) -> Result<String, CatalogError> {
        crate::store_url::store_identity(&crate::store_url::parse_base(&self.store_url)?)
    }

    /// A catalog client with default tuning (see [`ShopifyClient::from_config`]).
    ///
    /// # Errors
    /// As [`ShopifyClient::from_config`].
    #[cfg(feature = "client")]
    pub fn client(&self) -> Result<ShopifyClient, CatalogError> {
        ShopifyClient::from_config(self)
    }

    /// A webhook source that prices this store's payloads in
    /// [`ShopifyConfig::currency`] (`USD` when unset).
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] when `store_url` is invalid.
    pub fn webhook_source(&self) -> Result<ShopifyWebhookSource, CatalogError> {
        let source = ShopifyWebhookSource::new();
        match &self.currency {
            None => Ok(source),
            Some(currency) => source
                .with_store_currency(&self.store()?, currency.as_str())
                .map_err(|e| CatalogError::Configuration(e.to_string())),
        }
    }

    /// The webhook verifier for this store: [`ShopifyConfig::webhook_secrets`]
    /// when given, otherwise the client secret.
    ///
    /// Secrets are used trimmed: Shopify's are base64-like text without
    /// spaces, so surrounding whitespace is a paste or a file's trailing
    /// newline, and kept it would fail every delivery's signature.
    ///
    /// # Errors
    /// [`WebhookError::NoSecret`] when neither is configured (a static-token
    /// store without `webhook_secrets`) or a secret is empty.
    pub fn webhook_verifier(&self) -> Result<HmacVerifier, WebhookError> {
        let trimmed = |s: &SecretString| SecretString::from(s.expose_secret().trim());
        if !self.webhook_secrets.is_empty() {
            return HmacVerifier::new(self.webhook_secrets.iter().map(trimmed));
        }
        match &self.auth {
            ShopifyAuth::ClientCredentials { client_secret, .. } => {
                HmacVerifier::new([trimmed(client_secret)])
            }
            ShopifyAuth::AccessToken { .. } | ShopifyAuth::Source(_) => Err(WebhookError::NoSecret),
        }
    }
}

/// Admin API authentication.
///
/// In configuration this is a table with either `client_id` and
/// `client_secret`, or `access_token`; anything else is refused with a message
/// that says which keys are expected.
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawAuth")]
#[non_exhaustive]
pub enum ShopifyAuth {
    /// The client credentials grant (`POST /admin/oauth/access_token`): a
    /// 24-hour token is obtained, cached and renewed before it expires.
    ClientCredentials {
        /// The app's client id (not a secret).
        client_id: String,
        /// The app's client secret.
        client_secret: SecretString,
    },
    /// A static Admin API access token (`shpat_…`), sent as `X-Shopify-Access-Token`.
    AccessToken {
        /// The token.
        access_token: SecretString,
    },
    /// Tokens the app obtains and renews itself (the authorization-code
    /// grant, expiring offline tokens): see [`crate::AccessTokenSource`].
    /// Not readable from a configuration file.
    Source(std::sync::Arc<dyn crate::AccessTokenSource>),
}

impl ShopifyAuth {
    /// Client credentials.
    pub fn client_credentials(
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        Self::ClientCredentials {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }

    /// A static access token.
    pub fn access_token(token: impl Into<SecretString>) -> Self {
        Self::AccessToken {
            access_token: token.into(),
        }
    }
}

impl fmt::Debug for ShopifyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientCredentials { client_id, .. } => f
                .debug_struct("ClientCredentials")
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .finish(),
            Self::AccessToken { .. } => f
                .debug_struct("AccessToken")
                .field("access_token", &"[redacted]")
                .finish(),
            Self::Source(_) => f.write_str("Source([redacted])"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    access_token: Option<SecretString>,
}

impl TryFrom<RawAuth> for ShopifyAuth {
    type Error = String;

    fn try_from(raw: RawAuth) -> Result<Self, Self::Error> {
        match (raw.client_id, raw.client_secret, raw.access_token) {
            (Some(client_id), Some(client_secret), None) => Ok(Self::ClientCredentials {
                client_id,
                client_secret,
            }),
            (None, None, Some(access_token)) => Ok(Self::AccessToken { access_token }),
            (Some(_), None, None) => Err("shopify auth: `client_id` needs `client_secret`".into()),
            (None, Some(_), None) => Err("shopify auth: `client_secret` needs `client_id`".into()),
            (None, None, None) => Err(
                "shopify auth: give either `client_id` and `client_secret`, or `access_token`"
                    .into(),
            ),
            _ => Err(
                "shopify auth: give either `client_id` and `client_secret`, or `access_token`, not both"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_auth_forms_deserialize_and_debug_redacts() {
        let cfg: ShopifyConfig = serde_json::from_str(
            r#"{"store_url":"Example.myshopify.com","auth":{"client_id":"cid","client_secret":"hunter2"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.api_version, "2026-01");
        assert!(matches!(cfg.auth, ShopifyAuth::ClientCredentials { .. }));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("cid"));
        cfg.webhook_verifier().unwrap();

        let cfg: ShopifyConfig = serde_json::from_str(
            r#"{"store_url":"s","api_version":"2025-10","currency":"eur","auth":{"access_token":"shpat_secret"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.currency.as_ref().map(CurrencyCode::as_str), Some("EUR"));
        assert!(!format!("{cfg:?}").contains("shpat_secret"));
        assert_eq!(cfg.webhook_verifier().unwrap_err(), WebhookError::NoSecret);
    }

    #[test]
    fn ambiguous_or_incomplete_auth_is_refused_clearly() {
        for (auth, needle) in [
            (r#"{"client_id":"a"}"#, "needs `client_secret`"),
            (r#"{}"#, "give either"),
            (
                r#"{"client_id":"a","client_secret":"b","access_token":"c"}"#,
                "not both",
            ),
            (r#"{"token":"c"}"#, "unknown field"),
        ] {
            let json = format!(r#"{{"store_url":"s","auth":{auth}}}"#);
            let err = serde_json::from_str::<ShopifyConfig>(&json).unwrap_err();
            assert!(err.to_string().contains(needle), "{auth}: {err}");
        }
    }

    #[test]
    fn webhook_secrets_override_and_rotate() {
        let cfg: ShopifyConfig = serde_json::from_str(
            r#"{"store_url":"s","auth":{"access_token":"t"},"webhook_secrets":["new","old"]}"#,
        )
        .unwrap();
        let v = cfg.webhook_verifier().unwrap();
        assert_eq!(v.secret_count(), 2);
        v.verify(b"{}", &catalog_core::webhook::sign(b"old", b"{}"))
            .unwrap();
    }

    #[test]
    fn secrets_are_used_trimmed() {
        let cfg: ShopifyConfig = serde_json::from_str(
            r#"{"store_url":"s","auth":{"client_id":"i","client_secret":"app-secret\n"}}"#,
        )
        .unwrap();
        let v = cfg.webhook_verifier().unwrap();
        v.verify(b"{}", &catalog_core::webhook::sign(b"app-secret", b"{}"))
            .unwrap();
        let cfg: ShopifyConfig = serde_json::from_str(
            r#"{"store_url":"s","auth":{"access_token":"t"},"webhook_secrets":[" pasted "]}"#,
        )
        .unwrap();
        let v = cfg.webhook_verifier().unwrap();
        v.verify(b"{}", &catalog_core::webhook::sign(b"pasted", b"{}"))
            .unwrap();
    }

    #[test]
    fn builds_client_and_webhook_source_for_the_same_store() {
        let cfg: ShopifyConfig = serde_json::from_str(
            r#"{"store_url":"https://Shop-1.myshopify.com/","currency":"CAD","auth":{"access_token":"t"}}"#,
        )
        .unwrap();
        assert_eq!(cfg.store().unwrap(), "shop-1.myshopify.com");
        #[cfg(feature = "client")]
        assert_eq!(cfg.client().unwrap().store(), "shop-1.myshopify.com");
        let source = cfg.webhook_source().unwrap();
        assert_eq!(source.currency_for("shop-1.myshopify.com").as_str(), "CAD");
        assert_eq!(source.currency_for("other.myshopify.com").as_str(), "USD");
    }
}
