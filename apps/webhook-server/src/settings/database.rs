//! `[database]` and `[retention]`.

use std::fmt;
use std::path::PathBuf;

use anyhow::bail;
use serde::Deserialize;

use super::refuse;

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

impl DatabaseSettings {
    /// Refuses what no store can open with, naming the key.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if self.batch_max == 0 {
            return Err(refuse("database.batch_max", "must be greater than 0"));
        }
        let store = self.kind()?;
        if self.max_connections == 0 {
            return Err(refuse("database.max_connections", "must be greater than 0"));
        }
        for (key, value) in [
            ("database.memory_max_events", self.memory_max_events),
            ("database.memory_max_keys", self.memory_max_keys),
        ] {
            // Read by the memory store only.
            if value == 0 && store == StoreKind::Memory {
                return Err(refuse(key, "must be greater than 0"));
            }
        }
        if let Some(schema) = &self.schema {
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
        Ok(())
    }
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
                format!("{days} day{}", if days == 1 { "" } else { "s" })
            }
        };
        format!(
            "delivered {}, failed and dead {}",
            part(self.delivered_days),
            part(self.failed_days)
        )
    }
}

impl RetentionSettings {
    /// Refuses a retention past a hundred years.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for (key, days) in [
            ("retention.delivered_days", self.delivered_days),
            ("retention.failed_days", self.failed_days),
        ] {
            if days > MAX_RETENTION_DAYS {
                return Err(refuse(
                    key,
                    &format!("must be at most {MAX_RETENTION_DAYS} days; 0 keeps events forever"),
                ));
            }
        }
        Ok(())
    }
}
