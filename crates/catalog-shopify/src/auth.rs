//! Admin API access tokens: a static token, the client credentials grant
//! with a cached token renewed before it expires, or the app's own
//! [`AccessTokenSource`].
//!
//! Renewal is single-flight: the cache sits behind an async mutex that is held
//! while a grant is in flight, so any number of concurrent callers that find
//! the token stale cause exactly one `POST /admin/oauth/access_token`; the
//! others wait for it and reuse its result. A token is renewed when less than
//! a tenth of its lifetime (at most five minutes) is left, so requests never
//! go out with a token about to expire. When Shopify still answers 401, the
//! client drops that token ([`TokenProvider::invalidate`], which only drops it
//! if nobody renewed it in the meantime) and tries once more with a fresh one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use catalog_core::body::{CappedBodyError, MAX_RESPONSE_BYTES, collect_capped};
use catalog_core::{CatalogError, Result};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::AccessTokenSource;
use crate::client::{Http, transport, without_secret};

/// Renew when this fraction of the lifetime is left...
const RENEW_FRACTION: u32 = 10;
/// ...but never earlier than this before expiry.
const MAX_RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The one place this crate reads a secret's value.
fn reveal(secret: &SecretString) -> &str {
    secret.expose_secret()
}

/// A process-local fingerprint of a token, to tell apps apart in the cost
/// bucket registry (`throttle::bucket_for`) without keeping the token there.
pub(crate) fn fingerprint(token: &SecretString) -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut hasher = KEYS.get_or_init(Default::default).build_hasher();
    hasher.write(reveal(token).as_bytes());
    hasher.finish()
}

/// A token ready to send, with the generation it belongs to.
#[derive(Clone)]
pub(crate) struct Token {
    pub(crate) header: HeaderValue,
    pub(crate) generation: u64,
}

/// Builds the `X-Shopify-Access-Token` value, marked sensitive so that it is
/// never printed by reqwest/hyper debug output.
fn header_value(token: &SecretString) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(reveal(token)).map_err(|_| {
        CatalogError::Configuration("access token contains invalid characters".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

pub(crate) enum TokenProvider {
    Static(HeaderValue),
    Grant(Grant),
    Source(Arc<dyn AccessTokenSource>),
}

pub(crate) struct Grant {
    client_id: String,
    client_secret: SecretString,
    url: Url,
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    token: Option<(Token, Instant)>,
    generation: u64,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(_) => f.write_str("StaticToken([redacted])"),
            // The app's type may hold tokens in its own `Debug`: not shown.
            Self::Source(_) => f.write_str("AccessTokenSource([redacted])"),
            Self::Grant(g) => f
                .debug_struct("ClientCredentials")
                .field("client_id", &g.client_id)
                .field("client_secret", &"[redacted]")
                .field("token_url", &g.url.as_str())
                .finish(),
        }
    }
}

#[derive(Deserialize)]
struct GrantResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct GrantError {
    #[serde(default)]
    error: Option<String>,
}

impl TokenProvider {
    pub(crate) fn fixed(token: &SecretString) -> Result<Self> {
        if reveal(token).trim().is_empty() {
            return Err(CatalogError::Configuration("empty access token".into()));
        }
        Ok(Self::Static(header_value(token)?))
    }

    pub(crate) fn grant(client_id: String, client_secret: SecretString, url: Url) -> Result<Self> {
        if client_id.trim().is_empty() || reveal(&client_secret).trim().is_empty() {
            return Err(CatalogError::Configuration(
                "client credentials need a client id and a client secret".into(),
            ));
        }
        Ok(Self::Grant(Grant {
            client_id,
            client_secret,
            url,
            cache: tokio::sync::Mutex::default(),
        }))
    }

    /// Whether a 401 is worth one renewal.
    pub(crate) fn renewable(&self) -> bool {
        matches!(self, Self::Grant(_) | Self::Source(_))
    }

    /// A valid token, granting a new one when there is none or it is about to expire.
    pub(crate) async fn token(&self, http: &Http) -> Result<Token> {
        let grant = match self {
            Self::Static(header) => {
                return Ok(Token {
                    header: header.clone(),
                    generation: 0,
                });
            }
            Self::Grant(grant) => grant,
            Self::Source(source) => {
                let token = source.access_token().await?;
                if reveal(&token).trim().is_empty() {
                    return Err(CatalogError::Configuration(
                        "the access token source gave an empty token".into(),
                    ));
                }
                return Ok(Token {
                    header: header_value(&token)?,
                    generation: 0,
                });
            }
        };
        // Held across the grant request: this is what makes renewal single-flight.
        let mut cache = grant.cache.lock().await;
        if let Some((token, renew_at)) = &cache.token
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let (header, lifetime) = grant.request(http).await?;
        cache.generation += 1;
        let token = Token {
            header,
            generation: cache.generation,
        };
        // No expiry announced (or one beyond what an `Instant` holds): keep
        // it until Shopify refuses it.
        let now = Instant::now();
        let far = now
            .checked_add(Duration::from_secs(365 * 24 * 3600))
            .unwrap_or(now);
        let renew_at = match lifetime {
            Some(lifetime) => {
                let margin = (lifetime / RENEW_FRACTION).min(MAX_RENEW_MARGIN);
                now.checked_add(lifetime.saturating_sub(margin))
                    .unwrap_or(far)
            }
            None => far,
        };
        cache.token = Some((token.clone(), renew_at));
        tracing::debug!(
            generation = cache.generation,
            "obtained Shopify access token"
        );
        Ok(token)
    }

    /// Drops `token` after a 401, unless it was already renewed; an app's
    /// source is told (see [`AccessTokenSource::refused`]).
    pub(crate) async fn invalidate(&self, token: &Token) {
        match self {
            Self::Static(_) => {}
            Self::Grant(grant) => {
                let mut cache = grant.cache.lock().await;
                if cache.token.as_ref().map(|(t, _)| t.generation) == Some(token.generation) {
                    cache.token = None;
                }
            }
            Self::Source(source) => {
                if let Ok(value) = token.header.to_str() {
                    source.refused(&SecretString::from(value)).await;
                }
            }
        }
    }
}

impl Grant {
    async fn request(&self, http: &Http) -> Result<(HeaderValue, Option<Duration>)> {
        let body = serde_json::json!({
            "client_id": self.client_id,
            "client_secret": reveal(&self.client_secret),
            "grant_type": "client_credentials",
        });
        let mut retries = http.retries();
        let secret = reveal(&self.client_secret);
        let (status, bytes) = loop {
            let response = http
                .send(&mut retries, true, || {
                    http.client()
                        .post(self.url.clone())
                        .header(reqwest::header::ACCEPT, "application/json")
                        .json(&body)
                })
                .await
                .map_err(|e| without_secret(e, secret))?;
            let status = response.status();
            // A body cut off midway is retried like any transport failure:
            // asking for a token again is harmless.
            let declared = response.content_length();
            match collect_capped(response.bytes_stream(), declared, MAX_RESPONSE_BYTES).await {
                Ok(bytes) => break (status, bytes),
                Err(CappedBodyError::Read(e)) => {
                    let error = transport(e);
                    let Some(wait) = retries.next(None) else {
                        return Err(error);
                    };
                    tracing::debug!(%error, "retrying the client credentials grant");
                    tokio::time::sleep(wait).await;
                }
                Err(too_large) => return Err(too_large.into_catalog_error(transport)),
            }
        };
        if !status.is_success() {
            let code = serde_json::from_slice::<GrantError>(&bytes)
                .ok()
                .and_then(|e| e.error);
            let reason = code.map(|c| format!(": {c}")).unwrap_or_default();
            return Err(match status.as_u16() {
                400 | 401 | 403 => CatalogError::Unauthorized(format!(
                    "the client credentials grant was refused (HTTP {}{reason})",
                    status.as_u16()
                )),
                s => CatalogError::Http {
                    status: s,
                    code: None,
                    message: format!("client credentials grant failed{reason}"),
                },
            });
        }
        let grant: GrantResponse = catalog_core::json::decode(&bytes)?;
        let header = header_value(&grant.access_token)?;
        Ok((header, grant.expires_in.map(Duration::from_secs)))
    }
}
