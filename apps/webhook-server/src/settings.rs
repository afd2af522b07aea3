//! Configuration: built-in defaults, then an optional TOML file, then the
//! environment (`CATALOG_<SECTION>__<KEY>`, plus the seed's names such as
//! `APP_PORT` and `SHOPIFY_WEBHOOK_SECRET`). See `docs/configuration.md`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Levels a log filter may name on their own.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// A refusal of `key`'s value: the key, the variables that set it, and
/// what is wrong, never the value (configuration holds secrets).
fn refuse(key: &str, problem: &str) -> anyhow::Error {
    let vars = catalog_config::env_names(key);
    if vars.is_empty() {
        anyhow::anyhow!("{key} {problem}")
    } else {
        anyhow::anyhow!("{key} ({}) {problem}", vars.join(" or "))
    }
}

/// A weight unit as WooCommerce's settings name it (`kg`, `g`, `lbs`, `oz`,
/// in any case), or `None` for anything else.
pub fn weight_unit(unit: &str) -> Option<catalog_core::WeightUnit> {
    catalog_core::WeightUnit::known(unit)
}

/// The Standard Webhooks specification's test vector secret, which example
/// files tend to carry: a signing key anyone can read.
const PUBLISHED_WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Whether a secret is still the placeholder of the example files
/// (`deploy/webhook-server.env.example`, the docs): copied as is, it would
/// be a secret anyone can read.
fn is_placeholder(secret: &str) -> bool {
    secret.to_ascii_lowercase().contains("replace-me")
}

/// Refuses a webhook secret that cannot be the platform's: empty (in the
/// file or a `CATALOG_*` variable; an empty seed variable counts as unset),
/// blank, or the example files' placeholder. The message names the key,
/// never the value.
fn check_secret(key: &str, secret: &SecretString) -> anyhow::Result<()> {
    let value = secret.expose_secret();
    if value.is_empty() {
        return Err(refuse(
            key,
            "is empty: set the secret, or remove the key to leave it unset",
        ));
    }
    if value.trim().is_empty() {
        return Err(refuse(key, "is blank (whitespace only)"));
    }
    if is_placeholder(value) {
        return Err(refuse(
            key,
            "still holds the example file's placeholder (replace-me): set the platform's secret",
        ));
    }
    Ok(())
}

/// Most request workers (`server.workers`): each is a thread with its own
/// runtime; past this a typo (`10000`) exhausts memory or threads at start.
const MAX_WORKERS: usize = 512;
/// Longest dispatch lease, seconds (a day).
const MAX_LEASE_SECS: u64 = 86_400;
/// Longest retry delay (`dispatch.backoff_max_secs`, and `backoff_base_ms`
/// in milliseconds): a week.
const MAX_BACKOFF_SECS: u64 = 7 * 86_400;
/// Longest NATS duplicate window we create a stream with: 30 days.
const MAX_DUPLICATE_WINDOW_SECS: u64 = 30 * 86_400;

/// Checks a `tracing` filter (`info`, `webhook_server=debug,warn`).
///
/// Why stricter than `EnvFilter`: it takes a lone word as a target name
/// (`verbose`, `inof`: "everything from target `inof`"), which silences
/// every other line, start-up errors included, without a word. Here each
/// comma-separated part must be a level or `target=level` (or a span
/// filter, `target[span]=level`).
///
/// # Errors
/// What is wrong, without the value (it is not secret, but the message
/// format is the configuration's: keys, not values).
pub fn check_log_filter(filter: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = filter.split(',').map(str::trim).collect();
    if parts.iter().all(|p| p.is_empty()) {
        bail!("it is empty; use one of {}", LOG_LEVELS.join(", "));
    }
    for (i, part) in parts.iter().enumerate() {
        let level = match part.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level.trim(),
            Some(_) => bail!("part {} has no target before `=`", i + 1),
            None => part,
        };
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            bail!(
                "part {} does not end in a level ({}); write `level` or `target=level`",
                i + 1,
                LOG_LEVELS.join(", ")
            );
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The built-in defaults, also the reference for every key.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Seed-compatible environment variables and the keys they set (shared
/// with the CLI, see [`catalog_config::ENV_ALIASES`]).
pub use catalog_config::ENV_ALIASES;

/// All settings. An unknown section (a misspelt `[rate_limt]`) stops
/// start-up: its settings would otherwise be silently off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Settings {
    /// HTTP listener and request limits.
    pub server: ServerSettings,
    /// Logging.
    pub log: LogSettings,
    /// The event store.
    pub database: DatabaseSettings,
    /// The admin API.
    #[serde(default)]
    pub admin: AdminSettings,
    /// Per-address rate limiting.
    pub rate_limit: RateLimitSettings,
    /// Background dispatch to sinks.
    pub dispatch: DispatchSettings,
    /// How long finished events are kept.
    pub retention: RetentionSettings,
    /// Shopify stores and secrets.
    #[serde(default)]
    pub shopify: PlatformSettings,
    /// WooCommerce stores and secrets.
    #[serde(default)]
    pub woocommerce: PlatformSettings,
    /// NATS JetStream sink; off when the section is absent, and `nats.url`
    /// is required when it is present.
    #[serde(default)]
    pub nats: Option<NatsSettings>,
}

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

/// What an acknowledged event survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced before a delivery is acknowledged.
    PowerLoss,
    /// `synchronous=NORMAL` in WAL mode: survives a process crash, not a power cut.
    ProcessCrash,
}

impl<'de> Deserialize<'de> for Durability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        catalog_config::strict::choice(
            d,
            &[
                ("power_loss", Self::PowerLoss),
                ("process_crash", Self::ProcessCrash),
            ],
        )
    }
}

/// `[database]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseSettings {
    /// `sqlite://PATH` (or a plain path), `memory://` or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (`CATALOG_DATABASE_URL`).
    /// Shown with its password redacted in logs and `Debug`.
    pub url: String,
    /// `power_loss` or `process_crash` (SQLite only).
    pub durability: Durability,
    /// Most commands the SQLite writer commits in one transaction.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub batch_max: usize,
    /// Memory store: most events kept (oldest dropped first).
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub memory_max_events: usize,
    /// Memory store: most deduplication keys kept (oldest forgotten first).
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub memory_max_keys: usize,
    /// PostgreSQL: most pooled connections per replica.
    #[serde(default = "default_max_connections")]
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub max_connections: u32,
    /// PostgreSQL: schema holding the tables, created if missing; unset =
    /// the connection's `search_path` (usually `public`).
    #[serde(default)]
    pub schema: Option<String>,
}

fn default_max_connections() -> u32 {
    16
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("durability", &self.durability)
            .field("batch_max", &self.batch_max)
            .field("memory_max_events", &self.memory_max_events)
            .field("memory_max_keys", &self.memory_max_keys)
            .field("max_connections", &self.max_connections)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Where events are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// Process memory (tests, benchmarks).
    Memory,
    /// A PostgreSQL database shared by replicas; the URL stays in
    /// [`DatabaseSettings::url`] (it may hold a password).
    Postgres,
}

impl DatabaseSettings {
    /// Parses [`DatabaseSettings::url`].
    ///
    /// # Errors
    /// When the scheme is not `sqlite:`, `memory:`, `postgres:` or `postgresql:`.
    pub fn kind(&self) -> anyhow::Result<StoreKind> {
        let url = self.url.trim();
        if url == "memory://" || url == "memory:" || url == "memory" {
            return Ok(StoreKind::Memory);
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreKind::Postgres);
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.trim().is_empty() {
            bail!(
                "database.url (CATALOG_DATABASE_URL or CATALOG_DATABASE__URL): sqlite:// needs a file path, e.g. sqlite://data/catalog.db"
            );
        }
        if path.contains("://") {
            bail!(
                "database.url (CATALOG_DATABASE_URL or CATALOG_DATABASE__URL): expected sqlite://PATH, memory:// or postgres://..., got a URL with another scheme"
            );
        }
        Ok(StoreKind::Sqlite(PathBuf::from(path)))
    }
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

/// `[retention]`: finished events are deleted this many days after they
/// were received (pending events never are). A deleted event's id is
/// forgotten too, so a platform's retry of it would be stored again: keep
/// them longer than the platforms retry (Shopify: 4 hours; WooCommerce: no
/// retries).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetentionSettings {
    /// Delivered events, days; 0 keeps them forever.
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub delivered_days: u32,
    /// Failed (unreadable) and dead-lettered events, days; 0 keeps them
    /// forever (the default: they are there to be inspected and replayed).
    #[serde(deserialize_with = "catalog_config::strict::uint")]
    pub failed_days: u32,
}

/// Longest retention accepted, days (a hundred years).
const MAX_RETENTION_DAYS: u32 = 36_500;

impl RetentionSettings {
    /// What to delete at `now`.
    pub fn policy(&self, now: chrono::DateTime<chrono::Utc>) -> crate::store::PrunePolicy {
        let before = |days: u32| {
            (days > 0)
                .then(|| now - chrono::Duration::days(i64::from(days.min(MAX_RETENTION_DAYS))))
        };
        crate::store::PrunePolicy::new(before(self.delivered_days), before(self.failed_days))
    }

    /// Whether anything is ever deleted.
    pub fn enabled(&self) -> bool {
        self.delivered_days > 0 || self.failed_days > 0
    }

    /// For logs: `delivered 30 days, failed and dead kept`.
    pub fn describe(&self) -> String {
        let part = |days: u32| {
            if days == 0 {
                "kept".to_owned()
            } else {
                format!("{days} days")
            }
        };
        format!(
            "delivered {}, failed and dead {}",
            part(self.delivered_days),
            part(self.failed_days)
        )
    }
}

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

/// `[shopify]` / `[woocommerce]`. Unknown keys are refused, here and in
/// store entries: a misspelt `[[shopify.store]]` would otherwise drop the
/// store list, and with it the refusal of unlisted stores. Store entries
/// also hold the `catalog` CLI's keys (API credentials), which the CLI
/// reads from the same file: a key the CLI adds must be added here too.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PlatformSettings {
    /// The seed's single secret (`SHOPIFY_WEBHOOK_SECRET` / `SHOPIFY_CLIENT_SECRET`,
    /// `WOOCOMMERCE_WEBHOOK_SECRET`). When no store is listed, any store signed
    /// with it is accepted; listed stores without secrets of their own use it.
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// Stores accepted, each with its own secrets (several during a rotation).
    /// When non-empty, deliveries from any other store are refused.
    #[serde(default)]
    pub stores: Vec<StoreSettings>,
    /// ISO 4217 currency of stores without their own `currency` (payload
    /// prices carry none). Shopify defaults to USD; WooCommerce events have
    /// no normalised product without a currency.
    #[serde(default)]
    pub default_currency: Option<String>,
    /// WooCommerce: the weight unit of stores without their own
    /// (`kg`, `g`, `lbs`, `oz`: the store's `woocommerce_weight_unit`).
    /// Payload weights are bare numbers; without a unit, variants carry no
    /// weight.
    #[serde(default)]
    pub default_weight_unit: Option<String>,
}

impl PlatformSettings {
    /// Whether anything is configured for this platform.
    pub fn is_configured(&self) -> bool {
        self.webhook_secret
            .as_ref()
            .is_some_and(|s| !s.expose_secret().is_empty())
            || !self.stores.is_empty()
    }
}

impl fmt::Debug for PlatformSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformSettings")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("stores", &self.stores)
            .field("default_currency", &self.default_currency)
            .field("default_weight_unit", &self.default_weight_unit)
            .finish()
    }
}

/// One `[[shopify.stores]]` / `[[woocommerce.stores]]` entry (unknown keys
/// refused, see [`PlatformSettings`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreSettings {
    /// The store as the platform names it: Shopify shop domain
    /// (`example.myshopify.com`), WooCommerce site URL (`https://shop.example.com`).
    pub id: String,
    /// Accepted secrets, newest first; empty = the platform's `webhook_secret`
    /// and (Shopify) the entry's `client_secret`.
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// The store's ISO 4217 currency, for the prices of its products
    /// (Shopify's and WooCommerce's webhook payloads carry none).
    #[serde(default)]
    pub currency: Option<String>,
    /// WooCommerce: the store's weight unit (`kg`, `g`, `lbs`, `oz`), for
    /// the weights of its products (payloads carry bare numbers).
    #[serde(default)]
    pub weight_unit: Option<String>,
    /// Catalog API access, read by the `catalog` CLI and ignored by the
    /// server (see `docs/cli.md`): the name `--store` picks.
    #[serde(default)]
    pub name: Option<String>,
    /// CLI: where the API is when not at `id` (a bare domain means https).
    #[serde(default)]
    pub store_url: Option<String>,
    /// CLI, Shopify: Admin API version (default 2026-01).
    #[serde(default)]
    pub api_version: Option<String>,
    /// CLI, Shopify: the app's client id (client credentials grant).
    #[serde(default)]
    pub client_id: Option<String>,
    /// CLI, Shopify: the app's client secret.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// CLI, Shopify: a static Admin API token, instead of client credentials.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// CLI, WooCommerce: REST API consumer key.
    #[serde(default)]
    pub consumer_key: Option<SecretString>,
    /// CLI, WooCommerce: REST API consumer secret.
    #[serde(default)]
    pub consumer_secret: Option<SecretString>,
    /// CLI, WooCommerce: `auto`, `basic`, `query_string` or `oauth1`.
    #[serde(default)]
    pub auth: Option<String>,
}

impl StoreSettings {
    /// A store entry.
    pub fn new(id: impl Into<String>, secrets: Vec<SecretString>) -> Self {
        Self {
            id: id.into(),
            secrets,
            currency: None,
            weight_unit: None,
            name: None,
            store_url: None,
            api_version: None,
            client_id: None,
            client_secret: None,
            access_token: None,
            consumer_key: None,
            consumer_secret: None,
            auth: None,
        }
    }
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("id", &self.id)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .finish()
    }
}

impl Settings {
    /// The longest one dispatch attempt can take: the timeouts of the
    /// network sinks configured (HTTP, NATS) added up.
    pub fn attempt_budget(&self) -> std::time::Duration {
        let http = self.dispatch.http.as_ref().map_or(0, |h| h.timeout_ms);
        let nats = self.nats.as_ref().map_or(0, |n| n.timeout_ms);
        std::time::Duration::from_millis(http.saturating_add(nats))
    }

    /// Loads settings: defaults, then `file` (if any), then the environment.
    /// Reads `.env` first when present.
    ///
    /// # Errors
    /// When the file is missing or unreadable, or a key has a bad value (the
    /// message names the key).
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        // A missing .env is normal; a malformed one is worth a failure,
        // named by its line only (dotenvy quotes the line, which may be a
        // secret's).
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(dotenvy::Error::LineParse(text, index)) => {
                // dotenvy gives the offending text (not shown) and where in
                // it the parse failed: find the line it starts on.
                let line = std::fs::read_to_string(".env").ok().and_then(|all| {
                    let first = text.lines().next().unwrap_or_default();
                    all.lines().position(|l| l == first).map(|i| i + 1)
                });
                match line {
                    Some(line) => bail!(
                        "failed to read .env: cannot parse line {line} (character {index} of the entry; check its quoting)"
                    ),
                    None => bail!(
                        "failed to read .env: cannot parse it at character {index} of an entry (check quoting)"
                    ),
                }
            }
            Err(e) => return Err(e).context("failed to read .env"),
        }
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Loads settings with an explicit environment (for tests).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Self> {
        let layers = catalog_config::Layers {
            defaults: Some(DEFAULTS),
            file,
            env,
        };
        let settings: Self = catalog_config::load(&layers).map_err(|e| match e {
            catalog_config::LoadError::Syntax(_) => {
                anyhow::Error::new(e).context("failed to load configuration")
            }
            catalog_config::LoadError::Invalid(_) => {
                anyhow::Error::new(e).context("invalid configuration")
            }
            other => anyhow::Error::new(other),
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that parse but make no sense.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        check_log_filter(&self.log.level)
            .with_context(|| "log.level (CATALOG_LOG__LEVEL) is not a log filter")?;
        // A number in TOML reaches here as text (`host = 5` is "5"), and
        // the resolver reads "5" as the address 0.0.0.5: digits and dots
        // must make an IP address. A name is resolved at start-up.
        let host = self.server.host.trim();
        if host.is_empty()
            || (host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && host.parse::<std::net::IpAddr>().is_err())
        {
            return Err(refuse(
                "server.host",
                "must be an IP address (such as 127.0.0.1 or ::) or a host name",
            ));
        }
        if self.server.body_limit == 0 {
            return Err(refuse("server.body_limit", "must be greater than 0"));
        }
        if self.server.store_timeout_ms == 0 {
            return Err(refuse("server.store_timeout_ms", "must be greater than 0"));
        }
        if self.server.body_timeout_ms == 0 {
            return Err(refuse("server.body_timeout_ms", "must be greater than 0"));
        }
        // 0 would turn actix's head timeout off: a client trickling its
        // headers could hold a connection for ever.
        if self.server.client_request_timeout_ms == 0 {
            return Err(refuse(
                "server.client_request_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.server.workers > MAX_WORKERS {
            return Err(refuse(
                "server.workers",
                &format!("must be at most {MAX_WORKERS} (0 = one per CPU core)"),
            ));
        }
        for (key, days) in [
            ("retention.delivered_days", self.retention.delivered_days),
            ("retention.failed_days", self.retention.failed_days),
        ] {
            if days > MAX_RETENTION_DAYS {
                return Err(refuse(
                    key,
                    &format!("must be at most {MAX_RETENTION_DAYS} days; 0 keeps events forever"),
                ));
            }
        }
        if self.database.batch_max == 0 {
            return Err(refuse("database.batch_max", "must be greater than 0"));
        }
        let store = self.database.kind()?;
        if self.database.max_connections == 0 {
            return Err(refuse("database.max_connections", "must be greater than 0"));
        }
        for (key, value) in [
            (
                "database.memory_max_events",
                self.database.memory_max_events,
            ),
            ("database.memory_max_keys", self.database.memory_max_keys),
        ] {
            // Read by the memory store only.
            if value == 0 && store == StoreKind::Memory {
                return Err(refuse(key, "must be greater than 0"));
            }
        }
        if let Some(schema) = &self.database.schema {
            let ok = !schema.is_empty()
                && schema.len() <= 63
                && schema
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && !schema.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(refuse(
                    "database.schema",
                    "must be 1-63 characters of a-z, 0-9 and _, not starting with a digit",
                ));
            }
        }
        if let Some(nats) = &self.nats {
            nats.validate()?;
            // The stream drops a repeated message id only within the
            // window; a redelivery comes at the earliest when a lease ran
            // out. Only the window of a stream the server creates is ours
            // to set (an existing stream keeps its own).
            if nats.create_stream
                && self.dispatch.enabled
                && nats.duplicate_window_secs < self.dispatch.lease_secs
            {
                return Err(refuse(
                    "nats.duplicate_window_secs",
                    "(300 unless set) must be at least dispatch.lease_secs (CATALOG_DISPATCH__LEASE_SECS) for the stream the server creates: an event sent again after its lease ran out would be a second message",
                ));
            }
        }
        // NaN and infinity parse as floats; neither is a rate.
        if self.rate_limit.enabled
            && !(self.rate_limit.per_second.is_finite() && self.rate_limit.per_second > 0.0)
        {
            return Err(refuse(
                "rate_limit.per_second",
                "must be a finite number greater than 0 when rate_limit.enabled",
            ));
        }
        if self.rate_limit.enabled
            && !(self.rate_limit.burst.is_finite() && self.rate_limit.burst >= 1.0)
        {
            return Err(refuse(
                "rate_limit.burst",
                "must be a finite number, at least 1",
            ));
        }
        if self.dispatch.run == 0 {
            return Err(refuse("dispatch.run", "must be at least 1"));
        }
        if self.dispatch.batch == 0 {
            return Err(refuse("dispatch.batch", "must be greater than 0"));
        }
        if self.dispatch.nice > 19 {
            return Err(refuse("dispatch.nice", "must be between 0 and 19"));
        }
        if self.dispatch.max_attempts == 0 {
            return Err(refuse("dispatch.max_attempts", "must be at least 1"));
        }
        if self.dispatch.lease_secs == 0 || self.dispatch.lease_secs > MAX_LEASE_SECS {
            return Err(refuse(
                "dispatch.lease_secs",
                &format!("must be between 1 and {MAX_LEASE_SECS} (a day)"),
            ));
        }
        if self.dispatch.backoff_max_secs > MAX_BACKOFF_SECS {
            return Err(refuse(
                "dispatch.backoff_max_secs",
                &format!("must be at most {MAX_BACKOFF_SECS} (a week)"),
            ));
        }
        if self.dispatch.backoff_base_ms > MAX_BACKOFF_SECS * 1000 {
            return Err(refuse(
                "dispatch.backoff_base_ms",
                &format!("must be at most {} (a week)", MAX_BACKOFF_SECS * 1000),
            ));
        }
        if self
            .dispatch
            .file
            .as_ref()
            .is_some_and(|f| f.to_string_lossy().trim().is_empty())
        {
            return Err(refuse(
                "dispatch.file",
                "must be a file path when set (not blank)",
            ));
        }
        // A delivery attempt (every network sink in turn) must end well
        // within its lease: a run starts an attempt only when the whole
        // budget and the outcome's write fit in what is left of the lease,
        // so a budget near the lease would leave runs of one event, or none.
        // Under half, with room for the claim and the write.
        let half_lease_ms = self.dispatch.lease_secs.saturating_mul(1000) / 2;
        let http = self.dispatch.http.as_ref().map(|h| h.timeout_ms);
        let nats = self.nats.as_ref().map(|n| n.timeout_ms);
        for (key, env, timeout_ms) in [
            (
                "dispatch.http.timeout_ms",
                "CATALOG_DISPATCH__HTTP__TIMEOUT_MS",
                http,
            ),
            ("nats.timeout_ms", "CATALOG_NATS__TIMEOUT_MS", nats),
        ] {
            if let Some(timeout_ms) = timeout_ms
                && timeout_ms >= half_lease_ms
            {
                bail!(
                    "{key} ({env}) must be under half of dispatch.lease_secs (CATALOG_DISPATCH__LEASE_SECS): an attempt outliving the lease is claimed and sent again while it is still open"
                );
            }
        }
        if let (Some(http), Some(nats)) = (http, nats)
            && http.saturating_add(nats) >= half_lease_ms
        {
            bail!(
                "dispatch.http.timeout_ms (CATALOG_DISPATCH__HTTP__TIMEOUT_MS) and nats.timeout_ms (CATALOG_NATS__TIMEOUT_MS) together must be under half of dispatch.lease_secs (CATALOG_DISPATCH__LEASE_SECS): an attempt goes to both sinks in turn, and one outliving the lease is claimed and sent again while it is still open"
            );
        }
        if let Some(http) = &self.dispatch.http {
            let url_ok = reqwest::Url::parse(&http.url).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty())
            });
            if !url_ok {
                return Err(refuse(
                    "dispatch.http.url",
                    "must be an http:// or https:// URL with a host",
                ));
            }
            if http.timeout_ms == 0 {
                return Err(refuse("dispatch.http.timeout_ms", "must be greater than 0"));
            }
            if is_placeholder(http.secret.expose_secret())
                || http.secret.expose_secret().trim() == PUBLISHED_WHSEC
            {
                return Err(refuse(
                    "dispatch.http.secret",
                    "is a published example (the example file's, the Standard Webhooks test vector): anyone could sign events your consumers accept; generate your own, e.g. whsec_$(openssl rand -base64 32)",
                ));
            }
            crate::dispatch::standard_webhooks::Signer::new(&http.secret).map_err(|e| {
                refuse("dispatch.http.secret", "must be whsec_<base64>").context(e.to_string())
            })?;
        }
        if let Some(token) = &self.admin.token {
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
        for (name, p) in [
            ("shopify", &self.shopify),
            ("woocommerce", &self.woocommerce),
        ] {
            if let Some(secret) = &p.webhook_secret {
                check_secret(&format!("{name}.webhook_secret"), secret)?;
            }
            for (i, store) in p.stores.iter().enumerate() {
                if store.id.trim().is_empty() {
                    bail!("{name}.stores[{i}].id must not be empty");
                }
                if store.secrets.iter().any(|s| s.expose_secret().is_empty()) {
                    bail!("{name}.stores[{i}].secrets must not contain an empty secret");
                }
                for secret in &store.secrets {
                    check_secret(&format!("{name}.stores[{i}].secrets"), secret)?;
                }
                if let Some(secret) = &store.client_secret {
                    check_secret(&format!("{name}.stores[{i}].client_secret"), secret)?;
                }
                if let Some(c) = &store.currency {
                    catalog_core::CurrencyCode::new(c).map_err(|_| {
                        refuse(
                            &format!("{name}.stores[{i}].currency"),
                            "must be a three-letter ISO 4217 code such as EUR",
                        )
                    })?;
                }
            }
            let weight_units = p
                .stores
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    s.weight_unit
                        .as_deref()
                        .map(|u| (format!("{name}.stores[{i}].weight_unit"), u))
                })
                .chain(
                    p.default_weight_unit
                        .as_deref()
                        .map(|u| (format!("{name}.default_weight_unit"), u)),
                );
            for (key, unit) in weight_units {
                if name != "woocommerce" {
                    return Err(refuse(
                        &key,
                        "is for WooCommerce stores only (their payloads carry weights without a unit)",
                    ));
                }
                if weight_unit(unit).is_none() {
                    return Err(refuse(
                        &key,
                        "must be kg, g, lbs or oz (WooCommerce's weight units)",
                    ));
                }
            }
            if let Some(c) = &p.default_currency {
                catalog_core::CurrencyCode::new(c).map_err(|_| {
                    refuse(
                        &format!("{name}.default_currency"),
                        "must be a three-letter ISO 4217 code such as EUR",
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The defaults alone, for tests.
    ///
    /// # Panics
    /// Never: the embedded defaults are tested to parse.
    #[allow(clippy::expect_used)]
    pub fn defaults() -> Self {
        Self::load_from(None, &[]).expect("embedded defaults parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn dispatch_run_defaults_and_zero_names_the_key() {
        assert_eq!(Settings::load_from(None, &[]).unwrap().dispatch.run, 16);
        let err = format!(
            "{:#}",
            Settings::load_from(None, &env(&[("CATALOG_DISPATCH__RUN", "0")])).unwrap_err()
        );
        assert!(err.contains("dispatch.run"), "{err}");
    }

    #[test]
    fn retention_defaults_env_and_bounds() {
        let s = Settings::load_from(None, &[]).unwrap();
        assert_eq!(
            (s.retention.delivered_days, s.retention.failed_days),
            (30, 0)
        );
        let now = chrono::Utc::now();
        let policy = s.retention.policy(now);
        assert_eq!(
            policy.delivered_before,
            Some(now - chrono::Duration::days(30))
        );
        assert_eq!(policy.failed_before, None, "failed and dead are kept");
        let off = Settings::load_from(
            None,
            &env(&[
                ("CATALOG_RETENTION__DELIVERED_DAYS", "0"),
                ("CATALOG_RETENTION__FAILED_DAYS", "0"),
            ]),
        )
        .unwrap();
        assert!(!off.retention.enabled());
        assert!(off.retention.policy(now).is_noop());
        let both =
            Settings::load_from(None, &env(&[("CATALOG_RETENTION__FAILED_DAYS", "90")])).unwrap();
        assert_eq!(
            both.retention.policy(now).failed_before,
            Some(now - chrono::Duration::days(90))
        );
        for (key, value) in [
            ("CATALOG_RETENTION__DELIVERED_DAYS", "40000"),
            ("CATALOG_RETENTION__DELIVERED_DAYS", "-1"),
            ("CATALOG_RETENTION__FAILED_DAYS", "a week"),
        ] {
            let err = format!(
                "{:#}",
                Settings::load_from(None, &env(&[(key, value)])).unwrap_err()
            );
            let named = if key.contains("FAILED") {
                "retention.failed_days"
            } else {
                "retention.delivered_days"
            };
            assert!(err.contains(named), "{value}: {err}");
        }
    }

    #[test]
    fn the_example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        // Its secrets are placeholders, refused as they stand.
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(err.contains("secret"), "{err}");
        // With them replaced, it loads.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("replace-me-", "real-")
            .replace(
                "whsec_replace-me",
                "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
            );
        let dir = tempfile::tempdir().unwrap();
        let replaced = dir.path().join("example.toml");
        std::fs::write(&replaced, text).unwrap();
        let s = Settings::load_from(Some(&replaced), &[]).unwrap();
        assert_eq!(s.shopify.stores.len(), 2);
        assert_eq!(s.woocommerce.stores.len(), 1);
        assert!(s.dispatch.http.is_some());
        assert_eq!(
            (s.retention.delivered_days, s.retention.failed_days),
            (14, 90)
        );
    }

    #[test]
    fn trusted_proxies_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[rate_limit]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
        )
        .unwrap();
        let from_file = Settings::load_from(Some(&path), &[]).unwrap();
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let proxies = &from_file.rate_limit.trusted_proxies;
        assert_eq!(
            proxies.client(ip("10.2.3.4"), &["198.51.100.4"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            proxies.client(ip("::1"), &["198.51.100.4"]),
            ip("198.51.100.4")
        );
        let from_env = Settings::load_from(
            None,
            &env(&[("CATALOG_RATE_LIMIT__TRUSTED_PROXIES", "10.0.0.0/8, ::1")]),
        )
        .unwrap();
        assert_eq!(&from_env.rate_limit.trusted_proxies, proxies);
        assert!(
            Settings::load_from(None, &[])
                .unwrap()
                .rate_limit
                .trusted_proxies
                .is_empty()
        );
        // A bad entry stops start-up naming the key and the entry's place.
        let err = Settings::load_from(
            None,
            &env(&[(
                "CATALOG_RATE_LIMIT__TRUSTED_PROXIES",
                "10.0.0.0/8,lb.internal",
            )]),
        )
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("rate_limit.trusted_proxies"), "{err}");
        assert!(
            err.contains("entry 2 ") && !err.contains("lb.internal"),
            "{err}"
        );
    }

    #[test]
    fn defaults_parse() {
        let s = Settings::load_from(None, &[]).unwrap();
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.server.port, 8050);
        assert_eq!(s.server.body_limit, 1024 * 1024);
        assert!(matches!(s.database.kind().unwrap(), StoreKind::Sqlite(_)));
        assert!(s.admin.token.is_none());
        assert!(!s.shopify.is_configured());
    }

    #[test]
    fn seed_variables_and_catalog_prefix() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("APP_PORT", "9001"),
                ("APP_HOST", "0.0.0.0"),
                ("SHOPIFY_CLIENT_SECRET", "shh"),
                ("WOOCOMMERCE_WEBHOOK_SECRET", "woo"),
                ("CATALOG_DATABASE_URL", "memory://"),
                ("CATALOG_ADMIN_TOKEN", "0123456789abcdef"),
                ("CATALOG_DISPATCH__MAX_ATTEMPTS", "3"),
                ("CATALOG_LOG__FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9001);
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(
            s.shopify.webhook_secret.as_ref().unwrap().expose_secret(),
            "shh"
        );
        assert!(s.woocommerce.is_configured());
        assert_eq!(s.database.kind().unwrap(), StoreKind::Memory);
        assert!(s.admin.token.is_some());
        assert_eq!(s.dispatch.max_attempts, 3);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn webhook_secret_wins_over_client_secret() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("SHOPIFY_CLIENT_SECRET", "client"),
                ("SHOPIFY_WEBHOOK_SECRET", "webhook"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.shopify.webhook_secret.as_ref().unwrap().expose_secret(),
            "webhook"
        );
    }

    #[test]
    fn a_misspelt_section_or_log_level_stops_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[rate_limt]\nenabled = false\n").unwrap();
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(err.contains("rate_limt"), "{err}");
        // The same from the environment.
        let err = Settings::load_from(None, &env(&[("CATALOG_DISPACH__LOG", "true")])).unwrap_err();
        assert!(format!("{err:#}").contains("dispach"), "{err:#}");
        for bad in [
            "verbose",
            "inof",
            "info,,==",
            "???[",
            "",
            "webhook_server=loud",
        ] {
            let err =
                Settings::load_from(None, &env(&[("CATALOG_LOG__LEVEL", bad)])).expect_err(bad);
            let err = format!("{err:#}");
            assert!(
                err.contains("log.level (CATALOG_LOG__LEVEL)"),
                "{bad}: {err}"
            );
        }
        for good in [
            "info",
            "WARN",
            "webhook_server=debug,info",
            "warn,actix_web=off",
            "a[span]=trace",
        ] {
            let s = Settings::load_from(None, &env(&[("CATALOG_LOG__LEVEL", good)]));
            assert!(s.is_ok(), "{good}: {:#}", s.unwrap_err());
        }
    }

    /// Found by an outside audit: the `config` crate read `true` as 1 in a
    /// number (a port of 1; retention of one day instead of 30) and rounded
    /// decimals; every number and switch of the settings is read strictly.
    #[test]
    fn switches_and_decimals_are_not_read_as_numbers() {
        for (var, value, key) in [
            ("APP_PORT", "true", "server.port"),
            (
                "CATALOG_RETENTION__DELIVERED_DAYS",
                "true",
                "retention.delivered_days",
            ),
            ("CATALOG_SERVER__BODY_LIMIT", "200.9", "server.body_limit"),
            ("CATALOG_DISPATCH__LEASE_SECS", "1e3", "dispatch.lease_secs"),
            ("CATALOG_RATE_LIMIT__ENABLED", "no", "rate_limit.enabled"),
            ("CATALOG_DISPATCH__LOG", "0", "dispatch.log"),
        ] {
            let err = match Settings::load_from(None, &env(&[(var, value)])) {
                Ok(_) => panic!("{var}={value} accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(
                err.contains(key) && err.contains(var),
                "{var}={value}: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for text in [
            "[retention]\ndelivered_days = 0.4\n",
            "[server]\nport = 8061.7\n",
            "[rate_limit]\nenabled = 0\n",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(
                Settings::load_from(Some(&path), &[]).is_err(),
                "{text} accepted"
            );
        }
    }

    /// Found by an outside audit: values that started the server into a
    /// broken state (a dispatcher panic on a huge backoff or lease, head
    /// timeouts off, a sink that fails every attempt, non-finite rates),
    /// and refusals that did not name the variable or quoted the value.
    #[test]
    fn values_that_would_break_the_server_stop_start_up_naming_key_and_variable() {
        let sink = [
            ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
            (
                "CATALOG_DISPATCH__HTTP__SECRET",
                "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
            ),
        ];
        let nats = ("CATALOG_NATS__URL", "nats://127.0.0.1:4222");
        // (variables set, key named, variable named)
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case<'_>> = vec![
            // `host = 5` in TOML reaches here as "5": the resolver took it
            // for 0.0.0.5 (an outside audit's case).
            (vec![("APP_HOST", "5")], "server.host", "APP_HOST"),
            (vec![("APP_HOST", "10.0.0.300")], "server.host", "APP_HOST"),
            (
                vec![("CATALOG_SERVER__BODY_LIMIT", "0")],
                "server.body_limit",
                "CATALOG_SERVER__BODY_LIMIT",
            ),
            (
                vec![("CATALOG_SERVER__CLIENT_REQUEST_TIMEOUT_MS", "0")],
                "server.client_request_timeout_ms",
                "CATALOG_SERVER__CLIENT_REQUEST_TIMEOUT_MS",
            ),
            (
                vec![("CATALOG_SERVER__STORE_TIMEOUT_MS", "0")],
                "server.store_timeout_ms",
                "CATALOG_SERVER__STORE_TIMEOUT_MS",
            ),
            (
                vec![("CATALOG_SERVER__WORKERS", "10000")],
                "server.workers",
                "CATALOG_SERVER__WORKERS",
            ),
            (
                vec![
                    ("CATALOG_DATABASE_URL", "memory://"),
                    ("CATALOG_DATABASE__MEMORY_MAX_EVENTS", "0"),
                ],
                "database.memory_max_events",
                "CATALOG_DATABASE__MEMORY_MAX_EVENTS",
            ),
            (
                vec![
                    ("CATALOG_DATABASE_URL", "memory://"),
                    ("CATALOG_DATABASE__MEMORY_MAX_KEYS", "0"),
                ],
                "database.memory_max_keys",
                "CATALOG_DATABASE__MEMORY_MAX_KEYS",
            ),
            (
                vec![("CATALOG_LOG__FORMAT", "yaml")],
                "log.format",
                "CATALOG_LOG__FORMAT",
            ),
            (
                vec![("CATALOG_RATE_LIMIT__BURST", "NaN")],
                "rate_limit.burst",
                "CATALOG_RATE_LIMIT__BURST",
            ),
            (
                vec![("CATALOG_RATE_LIMIT__PER_SECOND", "inf")],
                "rate_limit.per_second",
                "CATALOG_RATE_LIMIT__PER_SECOND",
            ),
            (
                vec![("CATALOG_DISPATCH__LEASE_SECS", "18446744073709551615")],
                "dispatch.lease_secs",
                "CATALOG_DISPATCH__LEASE_SECS",
            ),
            (
                vec![("CATALOG_DISPATCH__LEASE_SECS", "0")],
                "dispatch.lease_secs",
                "CATALOG_DISPATCH__LEASE_SECS",
            ),
            (
                vec![("CATALOG_DISPATCH__BACKOFF_MAX_SECS", "10000000000000")],
                "dispatch.backoff_max_secs",
                "CATALOG_DISPATCH__BACKOFF_MAX_SECS",
            ),
            (
                vec![("CATALOG_DISPATCH__BACKOFF_BASE_MS", "10000000000000000")],
                "dispatch.backoff_base_ms",
                "CATALOG_DISPATCH__BACKOFF_BASE_MS",
            ),
            (
                vec![("CATALOG_DISPATCH__FILE", "")],
                "dispatch.file",
                "CATALOG_DISPATCH__FILE",
            ),
            (
                vec![
                    sink[0],
                    sink[1],
                    ("CATALOG_DISPATCH__HTTP__TIMEOUT_MS", "0"),
                ],
                "dispatch.http.timeout_ms",
                "CATALOG_DISPATCH__HTTP__TIMEOUT_MS",
            ),
            (
                vec![("CATALOG_DISPATCH__HTTP__URL", "http://"), sink[1]],
                "dispatch.http.url",
                "CATALOG_DISPATCH__HTTP__URL",
            ),
            (
                vec![("CATALOG_DISPATCH__HTTP__URL", "http://bad host/"), sink[1]],
                "dispatch.http.url",
                "CATALOG_DISPATCH__HTTP__URL",
            ),
            (
                vec![
                    nats,
                    (
                        "CATALOG_NATS__DUPLICATE_WINDOW_SECS",
                        "18446744073709551615",
                    ),
                ],
                "nats.duplicate_window_secs",
                "CATALOG_NATS__DUPLICATE_WINDOW_SECS",
            ),
            (
                vec![nats, ("CATALOG_NATS__DUPLICATE_WINDOW_SECS", "10")],
                "nats.duplicate_window_secs",
                "CATALOG_NATS__DUPLICATE_WINDOW_SECS",
            ),
            (
                // Each under half the lease (60 s), not both together.
                vec![
                    sink[0],
                    sink[1],
                    ("CATALOG_DISPATCH__HTTP__TIMEOUT_MS", "20000"),
                    nats,
                    ("CATALOG_NATS__TIMEOUT_MS", "15000"),
                ],
                "together must be under half of dispatch.lease_secs",
                "CATALOG_NATS__TIMEOUT_MS",
            ),
            (
                vec![nats, ("CATALOG_NATS__TIMEOUT_MS", "0")],
                "nats.timeout_ms",
                "CATALOG_NATS__TIMEOUT_MS",
            ),
            (
                vec![("CATALOG_SHOPIFY__DEFAULT_CURRENCY", "hunter2secret")],
                "shopify.default_currency",
                "CATALOG_SHOPIFY__DEFAULT_CURRENCY",
            ),
            (
                vec![("CATALOG_ADMIN__TOKEN", "shortsecretx")],
                "admin.token",
                "CATALOG_ADMIN__TOKEN",
            ),
        ];
        for (pairs, key, var) in cases {
            let err = match Settings::load_from(None, &env(&pairs)) {
                Ok(_) => panic!("{pairs:?} accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(key), "{pairs:?}: {err}");
            assert!(err.contains(var), "{pairs:?}: {err}");
            for (_, value) in &pairs {
                if value.len() >= 8
                    && value.chars().any(|c| c.is_ascii_alphabetic())
                    && !value.contains("://")
                    && !value.starts_with("whsec_")
                {
                    assert!(!err.contains(value), "{pairs:?} quoted: {err}");
                }
            }
        }
        // Still accepted: the bounds themselves, and a window of exactly the lease.
        for pairs in [
            vec![("CATALOG_SERVER__WORKERS", "512")],
            vec![("CATALOG_DISPATCH__LEASE_SECS", "86400")],
            vec![("CATALOG_DISPATCH__BACKOFF_MAX_SECS", "604800")],
            vec![nats, ("CATALOG_NATS__DUPLICATE_WINDOW_SECS", "60")],
            // An existing stream keeps its own window; without dispatch
            // nothing is sent; SQLite does not read the memory limits.
            vec![
                nats,
                ("CATALOG_NATS__CREATE_STREAM", "false"),
                ("CATALOG_DISPATCH__LEASE_SECS", "600"),
            ],
            vec![
                nats,
                ("CATALOG_DISPATCH__ENABLED", "false"),
                ("CATALOG_DISPATCH__LEASE_SECS", "600"),
            ],
            vec![("CATALOG_DATABASE__MEMORY_MAX_EVENTS", "0")],
            vec![("CATALOG_LOG__FORMAT", "JSON")],
            vec![("CATALOG_DATABASE__DURABILITY", "Process_Crash")],
        ] {
            assert!(
                Settings::load_from(None, &env(&pairs)).is_ok(),
                "{pairs:?} refused"
            );
        }
    }

    #[test]
    fn a_sink_timeout_past_half_the_lease_stops_start_up() {
        let base = [
            ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
            (
                "CATALOG_DISPATCH__HTTP__SECRET",
                "whsec_dGVzdC1zZWNyZXQtb2YtdGhlLXRlc3RzLTMyYnl0ZXM=",
            ),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            Settings::load_from(None, &env(&pairs))
        };
        assert!(with(&[]).is_ok(), "the defaults (60 s lease, 10 s timeout)");
        let err = with(&[
            ("CATALOG_DISPATCH__LEASE_SECS", "2"),
            ("CATALOG_DISPATCH__HTTP__TIMEOUT_MS", "5000"),
        ])
        .unwrap_err();
        assert!(
            format!("{err:#}")
                .contains("dispatch.http.timeout_ms (CATALOG_DISPATCH__HTTP__TIMEOUT_MS)"),
            "{err:#}"
        );
        assert!(with(&[("CATALOG_DISPATCH__LEASE_SECS", "21")]).is_ok());
        assert!(with(&[("CATALOG_DISPATCH__LEASE_SECS", "20")]).is_err());
    }

    #[test]
    fn two_entries_for_one_store_stop_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
[[woocommerce.stores]]
id = "https://shop.example.com"
secrets = ["old"]

[[woocommerce.stores]]
id = "http://Shop.example.com/"
secrets = ["new"]
"#,
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
            panic!("two entries for one store were accepted");
        };
        let err = format!("{err:#}");
        assert!(
            err.contains(
                "woocommerce.stores[1].id names the same store as woocommerce.stores[0].id"
            ),
            "{err}"
        );
        assert!(!err.contains("old") && !err.contains("new"), "{err}");
    }

    /// A Shopify store written as a URL (`https://a.myshopify.com/`, with
    /// a port) is the shop domain deliveries carry: it verifies them, and
    /// two spellings of one shop are two entries for one store. (Taken as
    /// written, it matched no delivery: every one was refused with 401.)
    #[test]
    fn a_shopify_store_written_as_a_url_is_its_shop_domain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for id in [
            "https://a.myshopify.com/",
            "http://A.myshopify.com",
            "a.myshopify.com:443",
        ] {
            std::fs::write(
                &path,
                format!("[[shopify.stores]]\nid = \"{id}\"\nsecrets = [\"x1\"]\n"),
            )
            .unwrap();
            let s = Settings::load_from(Some(&path), &[]).unwrap();
            let platforms = crate::platforms::Platforms::from_settings(&s).unwrap();
            let shopify = platforms.get("shopify").unwrap();
            assert!(
                shopify.verifiers.for_store("a.myshopify.com").is_ok(),
                "{id}"
            );
        }
        std::fs::write(
            &path,
            "[[shopify.stores]]\nid = \"a.myshopify.com\"\nsecrets = [\"x1\"]\n\
             [[shopify.stores]]\nid = \"https://a.myshopify.com\"\nsecrets = [\"x2\"]\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
            panic!("two spellings of one shop were accepted");
        };
        assert!(
            format!("{err:#}").contains("shopify.stores[1].id names the same store"),
            "{err:#}"
        );
        std::fs::write(
            &path,
            "[[shopify.stores]]\nid = \"ftp://a.myshopify.com\"\nsecrets = [\"x1\"]\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
            panic!("a store id that is no shop domain was accepted");
        };
        assert!(
            format!("{err:#}").contains("shopify.stores[0].id"),
            "{err:#}"
        );
    }

    /// Shopify's secrets have no whitespace: one pasted with a newline or a
    /// space verifies with the secret itself (every delivery got 401).
    #[test]
    fn a_shopify_secret_is_read_without_surrounding_whitespace() {
        let body = b"{}";
        let signature = catalog_core::webhook::sign(b"shop-secret", body);
        for env_value in ["shop-secret\n", " shop-secret "] {
            let s =
                Settings::load_from(None, &env(&[("SHOPIFY_WEBHOOK_SECRET", env_value)])).unwrap();
            let platforms = crate::platforms::Platforms::from_settings(&s).unwrap();
            let verifier = platforms
                .get("shopify")
                .unwrap()
                .verifiers
                .for_store("a.myshopify.com")
                .unwrap();
            assert!(verifier.verify(body, &signature).is_ok(), "{env_value:?}");
        }
    }

    /// Secrets that cannot be the platform's stop start-up naming the key:
    /// the example files' placeholder (copied as is, a secret anyone can
    /// read), empty in the file or a `CATALOG_*` variable, or blank.
    #[test]
    fn placeholder_empty_and_blank_secrets_stop_start_up() {
        for (pairs, key) in [
            (
                vec![("SHOPIFY_WEBHOOK_SECRET", "replace-me")],
                "shopify.webhook_secret",
            ),
            (
                vec![(
                    "CATALOG_ADMIN_TOKEN",
                    "replace-me-with-32-random-characters",
                )],
                "admin.token",
            ),
            (
                vec![("CATALOG_SHOPIFY__WEBHOOK_SECRET", "")],
                "shopify.webhook_secret",
            ),
            (
                vec![("WOOCOMMERCE_WEBHOOK_SECRET", "   ")],
                "woocommerce.webhook_secret",
            ),
            // The example file's signing secret, and the Standard Webhooks
            // test vector it used to be: keys anyone can read.
            (
                vec![
                    ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
                    ("CATALOG_DISPATCH__HTTP__SECRET", "whsec_replace-me"),
                ],
                "dispatch.http.secret",
            ),
            (
                vec![
                    ("CATALOG_DISPATCH__HTTP__URL", "http://127.0.0.1:9/hook"),
                    (
                        "CATALOG_DISPATCH__HTTP__SECRET",
                        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    ),
                ],
                "dispatch.http.secret",
            ),
        ] {
            let err = Settings::load_from(None, &env(&pairs)).unwrap_err();
            let err = format!("{err:#}");
            assert!(err.contains(key), "{pairs:?}: {err}");
            assert!(!err.contains("random-characters"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[woocommerce.stores]]\nid = \"shop.example.com\"\nsecrets = [\"ok-secret\", \"Replace-Me\"]\n",
        )
        .unwrap();
        let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
        assert!(err.contains("woocommerce.stores[0].secrets"), "{err}");
        // An empty seed variable is unset, as before.
        let s = Settings::load_from(None, &env(&[("SHOPIFY_WEBHOOK_SECRET", "")])).unwrap();
        assert!(s.shopify.webhook_secret.is_none());
    }

    /// Only a Shopify store's `client_secret` verifies its webhooks (Shopify
    /// signs with the app's client secret): another platform's API
    /// credential must not open its webhook routes.
    #[test]
    fn only_shopify_takes_a_client_secret_as_webhook_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[woocommerce.stores]]\nid = \"shop.example.com\"\nclient_secret = \"api-credential\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        let Err(err) = crate::platforms::Platforms::from_settings(&s) else {
            panic!("a WooCommerce store verified with its client_secret");
        };
        let err = format!("{err:#}");
        assert!(err.contains("woocommerce.stores[0].secrets"), "{err}");
        assert!(!err.contains("client_secret"), "{err}");
        std::fs::write(
            &path,
            "[[shopify.stores]]\nid = \"a.myshopify.com\"\nclient_secret = \"app-secret\"\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        assert!(crate::platforms::Platforms::from_settings(&s).is_ok());
    }

    /// A misspelt key in a platform section or a store entry stops start-up:
    /// `[[shopify.store]]` silently dropped the store list, and with it the
    /// refusal of stores not listed.
    #[test]
    fn unknown_keys_in_platform_sections_and_store_entries_stop_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, key) in [
            (
                "[shopify]\nwebhook_secret = \"plat\"\n[[shopify.store]]\nid = \"a.myshopify.com\"\n",
                "store",
            ),
            (
                "[[woocommerce.stores]]\nid = \"shop.example.com\"\nsecret = \"y\"\n",
                "secret",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", Settings::load_from(Some(&path), &[]).unwrap_err());
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn file_with_stores_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
[[shopify.stores]]
id = "a.myshopify.com"
secrets = ["new", "old"]

# Keys of the catalog CLI are accepted and ignored.
[[shopify.stores]]
id = "b.myshopify.com"
name = "b"
client_id = "cid"
client_secret = "csecret"
api_version = "2026-01"
"#,
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        assert_eq!(s.shopify.stores.len(), 2);
        assert_eq!(s.shopify.stores[0].secrets.len(), 2);
        let verifiers = crate::platforms::Verifiers::from_settings("shopify", &s.shopify).unwrap();
        // The client secret signs b's webhooks.
        assert_eq!(
            verifiers
                .for_store("b.myshopify.com")
                .unwrap()
                .secret_count(),
            1
        );
        assert!(!format!("{s:?}").contains("csecret"));
        // Secrets never show in Debug.
        assert!(!format!("{s:?}").contains("old"));

        let err = Settings::load_from(None, &env(&[("APP_PORT", "eighty")])).unwrap_err();
        assert!(format!("{err:#}").contains("server.port"), "{err:#}");

        std::fs::write(&path, "[server]\nbody_limt = 5\n").unwrap();
        let err = Settings::load_from(Some(&path), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("body_limt"), "{err:#}");

        let err = Settings::load_from(None, &env(&[("CATALOG_ADMIN_TOKEN", "short")])).unwrap_err();
        assert!(format!("{err:#}").contains("admin.token"), "{err:#}");
    }

    #[test]
    fn postgres_url_and_nats_section_from_the_environment() {
        let s = Settings::load_from(
            None,
            &env(&[
                (
                    "CATALOG_DATABASE_URL",
                    "postgres://app:s3cret@db.internal:5432/catalog",
                ),
                ("CATALOG_DATABASE__SCHEMA", "catalog"),
                ("CATALOG_DATABASE__MAX_CONNECTIONS", "8"),
                ("CATALOG_NATS__URL", "nats://u:natspw@127.0.0.1:4222"),
                ("CATALOG_NATS__SUBJECT_PREFIX", "shop.events"),
                ("CATALOG_NATS__CREATE_STREAM", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database.kind().unwrap(), StoreKind::Postgres);
        assert_eq!(s.database.schema.as_deref(), Some("catalog"));
        assert_eq!(s.database.max_connections, 8);
        let nats = s.nats.as_ref().unwrap();
        assert_eq!(nats.subject_prefix, "shop.events");
        assert_eq!(nats.stream, "CATALOG_EVENTS");
        assert!(!nats.create_stream);
        // Passwords never show in Debug.
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("natspw"),
            "{shown}"
        );
        assert!(shown.contains("db.internal"), "{shown}");

        let err = Settings::load_from(
            None,
            &env(&[
                ("CATALOG_NATS__URL", "nats://127.0.0.1:4222"),
                ("CATALOG_NATS__SUBJECT_PREFIX", "catalog.>"),
            ]),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("nats.subject_prefix"),
            "{err:#}"
        );
        let err = Settings::load_from(None, &env(&[("CATALOG_DATABASE__SCHEMA", "Bad-Name")]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("database.schema"), "{err:#}");
    }
}
