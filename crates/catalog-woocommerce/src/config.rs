//! Configuration read from files or the environment, and store identity.

#[cfg(feature = "client")]
use std::time::Duration;

use catalog_core::webhook::{HmacVerifier, WebhookError};
use catalog_core::{CatalogError, CurrencyCode, Result, WeightUnit};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

#[cfg(feature = "client")]
use crate::WooCommerceClient;
use crate::{AuthMode, WooCommerceWebhookSource};

/// Settings for one WooCommerce store, as the webhook server and CLI read them
/// (TOML, env). Secrets deserialize into [`SecretString`], which has no
/// `Serialize` and a redacting `Debug`, so the config cannot be echoed back.
///
/// ```
/// let cfg: catalog_woocommerce::WooCommerceConfig = serde_json::from_str(r#"{
///     "store_url": "shop.example.com",
///     "consumer_key": "ck_x", "consumer_secret": "cs_x",
///     "auth_mode": "query_string", "currency": "EUR",
///     "webhook_secrets": ["new", "old"]
/// }"#)?;
/// assert_eq!(cfg.store_id()?, "https://shop.example.com");
/// assert!(!format!("{cfg:?}").contains("cs_x"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct WooCommerceConfig {
    /// The store's site URL (`https://shop.example.com`, or a bare domain,
    /// which means https). Also the store identity webhooks are matched by.
    pub store_url: String,
    /// REST API consumer key (`ck_…`).
    pub consumer_key: SecretString,
    /// REST API consumer secret (`cs_…`). Not the webhook secret.
    pub consumer_secret: SecretString,
    /// How to authenticate; `auto` (default) is Basic over https and
    /// OAuth 1.0a over http.
    #[serde(default)]
    pub auth_mode: Option<AuthMode>,
    /// The store currency (ISO 4217). When absent the client reads it once
    /// from `/wp-json/wc/v3/settings/general/woocommerce_currency`.
    #[serde(default)]
    pub currency: Option<String>,
    /// The store weight unit (`kg`, `g`, `lbs`, `oz`), for variant weights.
    #[serde(default)]
    pub weight_unit: Option<String>,
    /// Webhook secrets (the "Secret" field of each webhook; several during a
    /// rotation). Only needed to receive webhooks.
    #[serde(default)]
    pub webhook_secrets: Vec<SecretString>,
    /// Where API requests go, when not the store URL itself (a proxy).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Whole-request timeout in seconds (default 30).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Requests in flight at once while streaming (default 8).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Retries of 429/5xx/transport failures (default 3).
    #[serde(default)]
    pub max_retries: Option<u32>,
}

impl WooCommerceConfig {
    /// A config with the required fields; the rest default.
    pub fn new(
        store_url: impl Into<String>,
        consumer_key: impl Into<SecretString>,
        consumer_secret: impl Into<SecretString>,
    ) -> Self {
        Self {
            store_url: store_url.into(),
            consumer_key: consumer_key.into(),
            consumer_secret: consumer_secret.into(),
            auth_mode: None,
            currency: None,
            weight_unit: None,
            webhook_secrets: Vec::new(),
            base_url: None,
            timeout_secs: None,
            concurrency: None,
            max_retries: None,
        }
    }

    /// The store identity (see [`store_identity`]).
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] when `store_url` is not a usable URL.
    pub fn store_id(&self) -> Result<String> {
        store_identity(&self.store_url).map_err(CatalogError::Configuration)
    }

    /// The store currency, if configured and valid.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] when `currency` is not an ISO 4217 code.
    pub fn currency_code(&self) -> Result<Option<CurrencyCode>> {
        self.currency
            .as_deref()
            .map(|c| {
                CurrencyCode::new(c)
                    .map_err(|e| CatalogError::Configuration(format!("currency: {e}")))
            })
            .transpose()
    }

    /// Builds a client from this config.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] for a bad URL, currency or blank credentials.
    #[cfg(feature = "client")]
    pub fn client(&self) -> Result<WooCommerceClient> {
        let mut b = WooCommerceClient::builder()
            .store_url(&self.store_url)
            .credentials(self.consumer_key.clone(), self.consumer_secret.clone())
            .auth_mode(self.auth_mode.unwrap_or_default());
        if let Some(c) = self.currency_code()? {
            b = b.currency(c);
        }
        if let Some(w) = &self.weight_unit {
            b = b.weight_unit(WeightUnit::from_platform(w));
        }
        if let Some(u) = &self.base_url {
            b = b.base_url(u);
        }
        if let Some(t) = self.timeout_secs {
            b = b.timeout(Duration::from_secs(t));
        }
        if let Some(c) = self.concurrency {
            b = b.concurrency(c);
        }
        if let Some(r) = self.max_retries {
            b = b.max_retries(r);
        }
        b.build()
    }

    /// A verifier holding the configured webhook secrets, each also in the
    /// form WooCommerce signs with when it holds HTML entities (see
    /// [`crate::secret`]).
    ///
    /// # Errors
    /// [`WebhookError::NoSecret`] when none is configured or one is empty.
    pub fn webhook_verifier(&self) -> Result<HmacVerifier, WebhookError> {
        HmacVerifier::new(crate::secret::signing_secrets(
            self.webhook_secrets.iter().cloned(),
        ))
    }

    /// A webhook source that knows this store's currency (if configured), so
    /// that product payloads become full [`catalog_core::Product`]s.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] for a bad URL or currency.
    pub fn webhook_source(&self) -> Result<WooCommerceWebhookSource> {
        let mut source = WooCommerceWebhookSource::new();
        if let Some(w) = &self.weight_unit {
            source = source.with_weight_unit(WeightUnit::from_platform(w));
        }
        Ok(match self.currency_code()? {
            Some(c) => source.with_store_currency(&self.store_id()?, c),
            None => source,
        })
    }
}

/// Normalises a store URL into the store identity shared by API reads
/// (`Product::store`) and webhooks (`X-WC-Webhook-Source`): lower-case scheme
/// and host, default port dropped, path kept (WordPress in a sub-directory)
/// without trailing slash, no query. A bare domain means `https`.
///
/// ```
/// use catalog_woocommerce::normalize_store_url;
/// assert_eq!(normalize_store_url("HTTPS://Shop.Example.com/").unwrap(), "https://shop.example.com");
/// assert_eq!(normalize_store_url("shop.example.com").unwrap(), "https://shop.example.com");
/// assert_eq!(normalize_store_url("http://x.test:8080/blog/").unwrap(), "http://x.test:8080/blog");
/// assert!(normalize_store_url("ftp://x.test").is_err());
/// ```
///
/// # Errors
/// A message when the text is not an http(s) URL with a host, or carries
/// user info, a query or a fragment.
pub fn normalize_store_url(input: &str) -> std::result::Result<String, String> {
    let url = parse_store_url(input)?;
    let mut s = format!("{}://", url.scheme());
    s.push_str(url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        s.push_str(&format!(":{port}"));
    }
    s.push_str(url.path().trim_end_matches('/'));
    Ok(s)
}

/// The identity of a WooCommerce store in webhook deliveries: its
/// [normalised URL](normalize_store_url), always with `https://`.
///
/// Why the scheme is set: `X-WC-Webhook-Source` is WordPress's
/// `home_url('/')`, whose scheme follows the request the delivery is sent
/// from (`https` under TLS, else the one stored in the site's settings), so
/// one site can name itself with either, for instance in a delivery sent
/// from an admin page over TLS and in one sent by WP-Cron. Both are the
/// same store: one set of secrets, one order per product, one dedup space.
/// (Client calls keep the scheme: [`normalize_store_url`].)
///
/// ```
/// use catalog_woocommerce::store_identity;
/// assert_eq!(store_identity("http://Shop.Example.com/").unwrap(), "https://shop.example.com");
/// assert_eq!(store_identity("shop.example.com").unwrap(), "https://shop.example.com");
/// assert_eq!(store_identity("http://x.test:8080/blog/").unwrap(), "https://x.test:8080/blog");
/// ```
///
/// # Errors
/// As [`normalize_store_url`].
pub fn store_identity(input: &str) -> std::result::Result<String, String> {
    let url = normalize_store_url(input)?;
    Ok(match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url,
    })
}

/// Parses a store URL (bare domain means https) and checks its shape.
pub(crate) fn parse_store_url(input: &str) -> std::result::Result<Url, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("store URL is empty".into());
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("https://{trimmed}")
    };
    // Never echo the input: it could carry user info.
    let url =
        Url::parse(&with_scheme).map_err(|e| format!("store URL is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "store URL scheme must be http or https, not {}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("store URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("store URL must not carry user info; use consumer_key/consumer_secret".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("store URL must not have a query or fragment".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_webhook_source() {
        for (i, o) in [
            ("https://shop.example.com/", "https://shop.example.com"),
            ("https://SHOP.example.com", "https://shop.example.com"),
            ("https://shop.example.com:443/", "https://shop.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("  shop.example.com  ", "https://shop.example.com"),
            ("https://example.com/shop/", "https://example.com/shop"),
        ] {
            assert_eq!(normalize_store_url(i).unwrap(), o, "{i}");
        }
        for bad in [
            "",
            "ftp://x",
            "https://u:p@x.test",
            "https://x.test/?a=1",
            "https://",
        ] {
            assert!(normalize_store_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_do_not_echo_user_info() {
        let e = normalize_store_url("https://ck_1:cs_secret@x.test").unwrap_err();
        assert!(!e.contains("cs_secret"));
    }
}
