//! `GET /`, `GET /healthz`, `GET /readyz` (and `HEAD` of each, which
//! probes and load balancers use: the same status, no body).

use actix_web::{HttpResponse, web};

use super::readable;
use crate::AppState;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(readable("/", index))
        .service(readable("/healthz", healthz))
        .service(readable("/readyz", readyz));
}

/// Service status: version, platforms (with how stores are authenticated:
/// never store ids or secrets), the kind of store (not its path or URL),
/// admin on or off. Anyone who reaches the port can read it.
async fn index(state: web::Data<AppState>) -> HttpResponse {
    let platforms: Vec<_> = state
        .platforms
        .iter()
        .map(|p| {
            serde_json::json!({
                "id": p.id().as_str(),
                "stores": p.verifiers.summary(),
                "routes": std::iter::once(format!("/webhooks/{}", p.id()))
                    .chain(p.actions.iter().map(|a| format!("/webhooks/{}/products/{a}", p.id())))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    HttpResponse::Ok().json(serde_json::json!({
        "service": "webhook-server",
        "version": env!("CARGO_PKG_VERSION"),
        "platforms": platforms,
        // `sqlite`, `postgres`, `memory`: the first word of the
        // description, whose rest (a path, a host) is for the log.
        "store": state.store.describe().split(' ').next().unwrap_or_default(),
        "admin": state.admin_token.is_some(),
        "docs": "/docs/",
    }))
}

/// Liveness: the process answers.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the store answers, within the time a delivery waits for it.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ping = tokio::time::timeout(state.store_timeout, state.store.ping())
        .await
        .unwrap_or_else(|_| Err(crate::store::StoreError::timed_out(state.store_timeout)));
    match ping {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => {
            // Probes come every second or faster, from anyone who can
            // reach the port: one line every 10 s, with the count.
            if let Some(failed) = READINESS_FAILURES.hit() {
                tracing::warn!(error = %e, failed, "readiness check: store unavailable (at most one such line every 10 s, failed = how many since the last)");
            }
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "store_unavailable" }))
        }
    }
}

/// Failed readiness probes, logged at most every 10 s.
static READINESS_FAILURES: crate::log_budget::LogBudget =
    crate::log_budget::LogBudget::new(std::time::Duration::from_secs(10));
