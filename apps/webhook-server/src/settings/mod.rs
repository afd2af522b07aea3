//! Configuration: built-in defaults, then an optional TOML file, then the
//! environment (`CATALOG_<SECTION>__<KEY>`, plus the seed's names such as
//! `APP_PORT` and `SHOPIFY_WEBHOOK_SECRET`). See `docs/configuration.md`.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

mod database;
mod dispatch;
mod platform;
mod secrets;
mod server;

pub use database::{DatabaseSettings, Durability, RetentionSettings, StoreKind};
pub use dispatch::{DispatchSettings, HttpSinkSettings, NatsSettings};
pub use platform::{PlatformSettings, StoreSettings};
pub use server::{AdminSettings, LogFormat, LogSettings, RateLimitSettings, ServerSettings};

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
pub const DEFAULTS: &str = include_str!("../../config/default.toml");

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
        self.server.validate()?;
        self.retention.validate()?;
        self.database.validate()?;
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
        self.rate_limit.validate()?;
        self.dispatch.validate()?;
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
            http.validate()?;
        }
        self.admin.validate()?;
        for (name, p) in [
            ("shopify", &self.shopify),
            ("woocommerce", &self.woocommerce),
        ] {
            p.validate(name)?;
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
mod tests;
