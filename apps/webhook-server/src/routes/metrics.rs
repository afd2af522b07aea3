//! `GET /metrics` (Prometheus text format).

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};

use super::readable;
use crate::AppState;
use crate::store::{EventStore, StoreStats};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(readable("/metrics", metrics));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let stats = state
        .store_stats
        .get(&*state.store, state.store_timeout)
        .await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(stats))
}

/// How long the store's figures are reused between scrapes.
const STATS_MAX_AGE: Duration = Duration::from_secs(1);

/// The store's figures for `/metrics`, read at most once a second.
///
/// Why: a read costs the store a count of its pending events (a walk of an
/// index as long as the backlog) on a connection of its own, and
/// `/metrics` answers anyone who reaches the port, without a rate limit.
/// Scrapes that arrive together wait for one read and share it; a store
/// that does not answer within `server.store_timeout_ms` reads as down
/// (`webhook_store_up 0`) instead of holding every scrape.
#[derive(Debug, Default)]
pub struct StatsCache(tokio::sync::Mutex<Option<(Instant, Option<StoreStats>)>>);

impl StatsCache {
    /// The figures, at most a second old; `None` when the store
    /// failed or timed out.
    pub async fn get(&self, store: &dyn EventStore, timeout: Duration) -> Option<StoreStats> {
        let mut slot = self.0.lock().await;
        if let Some((at, stats)) = *slot
            && at.elapsed() < STATS_MAX_AGE
        {
            return stats;
        }
        let stats = tokio::time::timeout(timeout, store.stats())
            .await
            .ok()
            .and_then(Result::ok);
        *slot = Some((Instant::now(), stats));
        stats
    }
}
