//! `[dispatch]`, `[dispatch.http]` and `[nats]`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::refuse;
use super::secrets::{PUBLISHED_WHSEC, is_placeholder};

/// Longest dispatch lease, seconds (a day).
const MAX_LEASE_SECS: u64 = 86_400;
/// Longest retry delay (`dispatch.backoff_max_secs`, and `backoff_base_ms`
/// in milliseconds): a week.
const MAX_BACKOFF_SECS: u64 = 7 * 86_400;
/// Longest NATS duplicate window we create a stream with: 30 days.
const MAX_DUPLICATE_WINDOW_SECS: u64 = 30 * 86_400;

/// `[dispatch]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DispatchSettings {
    /// Whether the background dispatcher runs.
    #[serde(deserialize_with = "catalog_config::strict::boolean")]
    pub enabled: bool,
    /// How long a claim is held before another worker may take the event, seconds.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub lease_secs: u64,
    /// Events claimed per round.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub batch: usize,
    /// Most events of one product handed over per claim, in order.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub run: usize,
    /// How often to look for due events when not woken by an insert, milliseconds.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub poll_interval_ms: u64,
    /// Attempts before an event is dead-lettered.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub max_attempts: u32,
    /// First retry delay, milliseconds; doubled each attempt.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub backoff_base_ms: u64,
    /// Longest retry delay, seconds.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub backoff_max_secs: u64,
    /// Niceness of the dispatcher's thread, 0 to 19 (Linux; 0 = the request
    /// workers' priority): under a burst, answering comes first.
    #[serde(default)]
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub nice: u8,
    /// Log sink: one structured log line per event.
    #[serde(deserialize_with = "catalog_config::strict::boolean")]
    pub log: bool,
    /// JSON-lines file sink: path of the file to append to.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// HTTP forwarding sink.
    #[serde(default)]
    pub http: Option<HttpSinkSettings>,
}

impl DispatchSettings {
    /// [`DispatchSettings::lease_secs`] as a duration.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}

impl DispatchSettings {
    /// Refuses retry, lease and batch settings the dispatcher cannot run with.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.run == 0 {
            return Err(refuse("dispatch.run", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(refuse("dispatch.batch", "must be greater than 0"));
        }
        if self.nice > 19 {
            return Err(refuse("dispatch.nice", "must be between 0 and 19"));
        }
        if self.max_attempts == 0 {
            return Err(refuse("dispatch.max_attempts", "must be at least 1"));
        }
        if self.lease_secs == 0 || self.lease_secs > MAX_LEASE_SECS {
            return Err(refuse(
                "dispatch.lease_secs",
                &format!("must be between 1 and {MAX_LEASE_SECS} (a day)"),
            ));
        }
        if self.backoff_max_secs > MAX_BACKOFF_SECS {
            return Err(refuse(
                "dispatch.backoff_max_secs",
                &format!("must be at most {MAX_BACKOFF_SECS} (a week)"),
            ));
        }
        if self.backoff_base_ms > MAX_BACKOFF_SECS * 1000 {
            return Err(refuse(
                "dispatch.backoff_base_ms",
                &format!("must be at most {} (a week)", MAX_BACKOFF_SECS * 1000),
            ));
        }
        if self
            .file
            .as_ref()
            .is_some_and(|f| f.to_string_lossy().trim().is_empty())
        {
            return Err(refuse(
                "dispatch.file",
                "must be a file path when set (not blank)",
            ));
        }
        Ok(())
    }
}

/// `[dispatch.http]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSinkSettings {
    /// Downstream URL.
    pub url: String,
    /// Standard Webhooks secret, `whsec_<base64>`.
    pub secret: SecretString,
    /// Request timeout, milliseconds.
    #[serde(default = "default_http_timeout_ms")]
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub timeout_ms: u64,
}

fn default_http_timeout_ms() -> u64 {
    10_000
}

impl fmt::Debug for HttpSinkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSinkSettings")
            // A downstream URL may carry credentials (`user:pass@`,
            // `?token=`), as database and NATS URLs do.
            .field("url", &catalog_config::redact::redact_url(&self.url))
            .field("secret", &"[redacted]")
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl HttpSinkSettings {
    /// Refuses a URL that is not http(s), a zero timeout, and a published or malformed key.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let url_ok = reqwest::Url::parse(&self.url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        if !url_ok {
            return Err(refuse(
                "dispatch.http.url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(refuse("dispatch.http.timeout_ms", "must be greater than 0"));
        }
        if is_placeholder(self.secret.expose_secret())
            || self.secret.expose_secret().trim() == PUBLISHED_WHSEC
        {
            return Err(refuse(
                "dispatch.http.secret",
                "is a published example (the example file's, the Standard Webhooks test vector): anyone could sign events your consumers accept; generate your own, e.g. whsec_$(openssl rand -base64 32)",
            ));
        }
        crate::dispatch::standard_webhooks::Signer::new(&self.secret).map_err(|e| {
            refuse("dispatch.http.secret", "must be whsec_<base64>").context(e.to_string())
        })?;
        Ok(())
    }
}

/// `[nats]`: the NATS JetStream sink (feature `nats`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsSettings {
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`); may carry
    /// `user:password@` or `token@` (redacted in logs).
    pub url: String,
    /// Subject prefix: events go to `<prefix>.<platform>.<store>.<topic>`.
    #[serde(default = "default_nats_subject_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream that captures `<prefix>.>`.
    #[serde(default = "default_nats_stream")]
    pub stream: String,
    /// Create the stream at start-up when it does not exist (an existing
    /// stream is used as it is). Turn off where streams are managed elsewhere.
    #[serde(default = "default_true")]
    #[serde(deserialize_with = "catalog_config::strict::boolean")]
    pub create_stream: bool,
    /// Duplicate window of a stream we create, seconds: a republished event
    /// (same `Nats-Msg-Id`) within it is dropped by JetStream.
    #[serde(default = "default_nats_duplicate_window_secs")]
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub duplicate_window_secs: u64,
    /// How long to wait for JetStream's publish acknowledgement, milliseconds.
    #[serde(default = "default_nats_timeout_ms")]
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub timeout_ms: u64,
    /// Authentication token, when not in the URL (`CATALOG_NATS__TOKEN`).
    #[serde(default)]
    pub token: Option<SecretString>,
}

fn default_nats_subject_prefix() -> String {
    "catalog.events".to_owned()
}

fn default_nats_stream() -> String {
    "CATALOG_EVENTS".to_owned()
}

fn default_true() -> bool {
    true
}

fn default_nats_duplicate_window_secs() -> u64 {
    300
}

fn default_nats_timeout_ms() -> u64 {
    5000
}

impl NatsSettings {
    /// Settings for `url` with every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            subject_prefix: default_nats_subject_prefix(),
            stream: default_nats_stream(),
            create_stream: true,
            duplicate_window_secs: default_nats_duplicate_window_secs(),
            timeout_ms: default_nats_timeout_ms(),
            token: None,
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.url.trim().is_empty() {
            return Err(refuse("nats.url", "must not be empty"));
        }
        let prefix_ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !prefix_ok {
            return Err(refuse(
                "nats.subject_prefix",
                "must be dot-separated tokens of letters, digits, _ and - (no wildcards or spaces)",
            ));
        }
        let stream_ok = !self.stream.is_empty()
            && self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !stream_ok {
            return Err(refuse(
                "nats.stream",
                "must be letters, digits, _ and - only",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(refuse("nats.timeout_ms", "must be greater than 0"));
        }
        if self.duplicate_window_secs == 0 || self.duplicate_window_secs > MAX_DUPLICATE_WINDOW_SECS
        {
            return Err(refuse(
                "nats.duplicate_window_secs",
                &format!("must be between 1 and {MAX_DUPLICATE_WINDOW_SECS} (30 days)"),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .field("create_stream", &self.create_stream)
            .field("duplicate_window_secs", &self.duplicate_window_secs)
            .field("timeout_ms", &self.timeout_ms)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}
