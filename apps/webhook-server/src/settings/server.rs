//! `[server]`, `[log]`, `[admin]` and `[rate_limit]`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::refuse;
use super::secrets::is_placeholder;

/// Most request workers (`server.workers`): each is a thread with its own
/// runtime; past this a typo (`10000`) exhausts memory or threads at start.
const MAX_WORKERS: usize = 512;

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Address to bind (`APP_HOST`).
    pub host: String,
    /// Port to bind (`APP_PORT`).
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub port: u16,
    /// Worker threads; 0 = one per core.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub workers: usize,
    /// Largest accepted body in bytes (413 above).
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub body_limit: usize,
    /// Time allowed to receive the request head, in milliseconds.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub client_request_timeout_ms: u64,
    /// Time allowed to receive the whole body, in milliseconds (408 after).
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub body_timeout_ms: u64,
    /// Time a delivery waits for the store to make it durable, in
    /// milliseconds; then 503, which the platform retries. Also bounds the
    /// readiness probe and, with PostgreSQL, each statement's wait for a lock.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub store_timeout_ms: u64,
    /// Time allowed for in-flight requests and the dispatcher to finish at shutdown.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub shutdown_timeout_secs: u64,
}

impl ServerSettings {
    /// Refuses values the server cannot run with, naming the key.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        // A number in TOML reaches here as text (`host = 5` is "5"), and
        // the resolver reads "5" as the address 0.0.0.5: digits and dots
        // must make an IP address. A name is resolved at start-up.
        let host = self.host.trim();
        if host.is_empty()
            || (host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && host.parse::<std::net::IpAddr>().is_err())
        {
            return Err(refuse(
                "server.host",
                "must be an IP address (such as 127.0.0.1 or ::) or a host name",
            ));
        }
        if self.body_limit == 0 {
            return Err(refuse("server.body_limit", "must be greater than 0"));
        }
        if self.store_timeout_ms == 0 {
            return Err(refuse("server.store_timeout_ms", "must be greater than 0"));
        }
        if self.body_timeout_ms == 0 {
            return Err(refuse("server.body_timeout_ms", "must be greater than 0"));
        }
        // 0 would turn actix's head timeout off: a client trickling its
        // headers could hold a connection for ever.
        if self.client_request_timeout_ms == 0 {
            return Err(refuse(
                "server.client_request_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.workers > MAX_WORKERS {
            return Err(refuse(
                "server.workers",
                &format!("must be at most {MAX_WORKERS} (0 = one per CPU core)"),
            ));
        }
        Ok(())
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        catalog_config::strict::choice(d, &[("text", Self::Text), ("json", Self::Json)])
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `webhook_server=debug,info`); `RUST_LOG` wins when set.
    pub level: String,
}

/// `[admin]`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Bearer token; the admin API is off when unset (`CATALOG_ADMIN_TOKEN`).
    pub token: Option<SecretString>,
}

impl fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl AdminSettings {
    /// Refuses a short token or the example's placeholder.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if let Some(token) = &self.token {
            if token.expose_secret().trim().len() < 16 {
                return Err(refuse(
                    "admin.token",
                    "must be at least 16 characters (surrounding spaces not counted)",
                ));
            }
            if is_placeholder(token.expose_secret()) {
                return Err(refuse(
                    "admin.token",
                    "still holds the example file's placeholder (replace-me...): set a random token, e.g. openssl rand -hex 32",
                ));
            }
        }
        Ok(())
    }
}

/// `[rate_limit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitSettings {
    /// Whether to limit at all.
    #[serde(deserialize_with = "catalog_config::strict::boolean")]
    pub enabled: bool,
    /// Sustained requests per second per client address.
    pub per_second: f64,
    /// Burst size per client address.
    pub burst: f64,
    /// Reverse proxies whose `X-Forwarded-For` names the client (a list in
    /// TOML, comma-separated in the environment).
    pub trusted_proxies: crate::ratelimit::TrustedProxies,
}

impl RateLimitSettings {
    /// Refuses a rate or burst that is not a finite positive number.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        // NaN and infinity parse as floats; neither is a rate.
        if self.enabled && !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(refuse(
                "rate_limit.per_second",
                "must be a finite number greater than 0 when rate_limit.enabled",
            ));
        }
        if self.enabled && !(self.burst.is_finite() && self.burst >= 1.0) {
            return Err(refuse(
                "rate_limit.burst",
                "must be a finite number, at least 1",
            ));
        }
        Ok(())
    }
}
