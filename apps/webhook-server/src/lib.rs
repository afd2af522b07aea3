//! # webhook-server
//!
//! The production webhook receiver of the catalog workspace: it verifies
//! Shopify and WooCommerce product webhooks over their raw bytes, stores each
//! event once (durably, before answering 200) and hands stored events to sinks
//! in the background.
//!
//! The library half holds everything but process start-up, so tests and other
//! binaries can mount the routes on their own `App`:
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{App, HttpServer};
//! use webhook_server::{AppState, configure, platforms::Platforms, settings::Settings, store::MemoryStore};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let settings = Settings::load(None)?;
//! let platforms = Platforms::from_settings(&settings)?;
//! let state = AppState::new(&settings, platforms, Arc::new(MemoryStore::default()));
//! HttpServer::new(move || App::new().configure(|c| configure(c, state.clone())))
//!     .bind(("127.0.0.1", 8050))?
//!     .run()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`settings`] (configuration), [`platforms`] (feature-gated
//! registry of sources and per-store secrets), [`pipeline`] (the ordered
//! delivery steps), [`store`] (the [`store::EventStore`] trait, SQLite,
//! memory and PostgreSQL), [`dispatch`] (sinks, among them NATS JetStream, and
//! the dispatcher), [`retention`] (deleting old finished events), [`routes`],
//! [`metrics`], [`error`], [`redact`].

pub mod answer_deadline;
pub mod copy_store;
pub mod dispatch;
pub mod error;
pub mod log_budget;
pub mod metrics;
pub mod normalise;
pub mod pipeline;
pub mod platforms;
pub mod ratelimit;
pub mod retention;
/// Keeping credentials out of logs and errors (shared with the CLI).
pub use catalog_config::redact;
pub mod routes;
pub mod settings;
pub mod store;
pub mod timestamp;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use actix_web::web;
use anyhow::Context as _;
use catalog_core::webhook::HeaderLookup;
use secrecy::SecretString;
use tokio::sync::Notify;

use crate::dispatch::sinks::{HttpSink, JsonlSink, LogSink};
use crate::dispatch::standard_webhooks::Signer;
use crate::dispatch::{DispatchConfig, Dispatcher, EventHandler};
use crate::metrics::Metrics;
use crate::platforms::Platforms;
use crate::ratelimit::RateLimiter;
use crate::settings::{Settings, StoreKind};
use crate::store::{EventStore, MemoryStore, SqliteStore};

pub use error::{Error, Result};

/// Actix's header map seen through [`HeaderLookup`]: first value,
/// case-insensitive, `None` for values that are not UTF-8.
#[derive(Debug, Clone, Copy)]
pub struct ActixHeaders<'a>(pub &'a HeaderMap);

impl HeaderLookup for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        // Compare names in place: `HeaderMap::get(&str)` would build (and,
        // for non-standard names, allocate) a `HeaderName` on every lookup.
        // Stored names are lower case; the first value wins.
        self.0
            .iter()
            .find(|(k, _)| k.as_str().eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.to_str().ok())
    }
}

/// Everything the routes share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Platforms and their secrets.
    pub platforms: Arc<Platforms>,
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Notified after each insert, to wake the dispatcher.
    pub wake: Arc<Notify>,
    /// Largest accepted body.
    pub body_limit: usize,
    /// Time allowed to read a body.
    pub body_timeout: Duration,
    /// Time a delivery (and the readiness probe) waits for the store.
    pub store_timeout: Duration,
    /// The admin token; `None` disables the admin API.
    pub admin_token: Option<SecretString>,
    /// Per-address rate limiting.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Set when shutdown begins: answers then close their connections
    /// (see [`AppState::begin_draining`]).
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The store's figures for `/metrics`, shared by scrapes a second apart.
    pub store_stats: Arc<routes::metrics::StatsCache>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("platforms", &self.platforms)
            .field("store", &self.store.describe())
            .field("body_limit", &self.body_limit)
            .field("admin", &self.admin_token.is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State from settings, platforms and a store.
    pub fn new(settings: &Settings, platforms: Platforms, store: Arc<dyn EventStore>) -> Self {
        let metrics = Metrics::with_platforms(platforms.iter().map(|p| p.id().as_str().to_owned()));
        Self {
            platforms: Arc::new(platforms),
            store,
            metrics: Arc::new(metrics),
            wake: Arc::new(Notify::new()),
            body_limit: settings.server.body_limit,
            body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
            store_timeout: Duration::from_millis(settings.server.store_timeout_ms),
            admin_token: settings.admin.token.clone(),
            limiter: settings.rate_limit.enabled.then(|| {
                Arc::new(
                    RateLimiter::new(settings.rate_limit.per_second, settings.rate_limit.burst)
                        .behind(settings.rate_limit.trusted_proxies.clone()),
                )
            }),
            draining: Arc::default(),
            store_stats: Arc::default(),
        }
    }

    /// Shutdown has begun: every answer from now on closes its connection.
    /// Without it a client on a kept-alive connection (a platform sending
    /// steadily) keeps sending for the whole `shutdown_timeout_secs`, and
    /// the requests still in flight then are cut: stored but unanswered,
    /// so delivered again as duplicates.
    pub fn begin_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A pruner of this state's store under `settings`.
    pub fn pruner(&self, settings: crate::settings::RetentionSettings) -> retention::Pruner {
        retention::Pruner::new(Arc::clone(&self.store), settings, Arc::clone(&self.metrics))
    }

    /// A dispatcher over this state's store with the given sinks.
    pub fn dispatcher(
        &self,
        config: DispatchConfig,
        handlers: Vec<Arc<dyn EventHandler>>,
    ) -> Dispatcher {
        Dispatcher::new(
            Arc::clone(&self.store),
            Arc::clone(&self.platforms),
            handlers,
            config,
            Arc::clone(&self.wake),
            Arc::clone(&self.metrics),
        )
    }
}

/// Mounts every route on an actix `App` (or scope).
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    routes::configure(cfg, web::Data::new(state));
}

/// Opens the configured store (running migrations).
///
/// # Errors
/// When the SQLite file or the PostgreSQL database cannot be opened or
/// migrated, or PostgreSQL is asked for in a build without the `postgres`
/// feature.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn EventStore>> {
    Ok(match settings.database.kind()? {
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => {
            let mut options = crate::store::PostgresOptions::new(
                settings.database.max_connections,
                settings.database.schema.clone(),
            );
            options.lock_timeout = Some(Duration::from_millis(settings.server.store_timeout_ms));
            Arc::new(
                crate::store::PostgresStore::connect(&settings.database.url, options)
                    .await
                    .context("database.url: cannot open the PostgreSQL store")?,
            )
        }
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => anyhow::bail!(
            "database.url is a PostgreSQL URL but webhook-server was built without the `postgres` feature"
        ),
        StoreKind::Memory => Arc::new(MemoryStore::new(
            settings.database.memory_max_events,
            settings.database.memory_max_keys,
        )),
        StoreKind::Sqlite(path) => Arc::new(
            SqliteStore::open_for_dispatch(
                &path,
                settings.database.durability,
                settings.database.batch_max,
                settings.attempt_budget(),
            )
            .with_context(|| {
                let hint = crate::store::sqlite::open_failure_hint(&path)
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                format!(
                    "database.url: cannot open SQLite store at {}{hint}",
                    path.display()
                )
            })?,
        ),
    })
}

/// The sinks the settings ask for.
///
/// # Errors
/// When the HTTP sink's secret or client is bad, the NATS URL is invalid, or
/// `[nats]` is configured in a build without the `nats` feature.
pub async fn build_handlers(settings: &Settings) -> anyhow::Result<Vec<Arc<dyn EventHandler>>> {
    let d = &settings.dispatch;
    let mut handlers: Vec<Arc<dyn EventHandler>> = Vec::new();
    if d.log {
        handlers.push(Arc::new(LogSink));
    }
    if let Some(path) = &d.file {
        let sink = JsonlSink::new(path.clone())
            .synced(settings.database.durability == crate::settings::Durability::PowerLoss);
        sink.check().with_context(|| {
            format!(
                "dispatch.file (CATALOG_DISPATCH__FILE): cannot append to {}",
                path.display()
            )
        })?;
        handlers.push(Arc::new(sink));
    }
    if let Some(http) = &d.http {
        let signer = Signer::new(&http.secret).context("dispatch.http.secret")?;
        handlers.push(Arc::new(
            HttpSink::new(
                http.url.clone(),
                signer,
                Duration::from_millis(http.timeout_ms),
            )
            .context("dispatch.http")?,
        ));
    }
    #[cfg(feature = "nats")]
    if let Some(nats) = &settings.nats {
        let sink = crate::dispatch::nats::NatsSink::connect(nats)
            .await
            .context("nats")?;
        // An event is its body plus about a kilobyte of fields: one near
        // the body limit would never fit a message, and go dead.
        if let Some(max) = sink.max_payload()
            && settings.server.body_limit.saturating_add(4096) > max
        {
            tracing::warn!(
                max_payload = max,
                body_limit = settings.server.body_limit,
                "the NATS server's max_payload is under server.body_limit plus room for the event's fields: events of the largest accepted deliveries cannot be published (raise max_payload in the NATS server's configuration, or lower server.body_limit)"
            );
        }
        handlers.push(Arc::new(sink));
    }
    #[cfg(not(feature = "nats"))]
    if settings.nats.is_some() {
        anyhow::bail!(
            "[nats] is configured but webhook-server was built without the `nats` feature"
        );
    }
    Ok(handlers)
}
