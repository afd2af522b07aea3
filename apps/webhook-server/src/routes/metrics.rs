//! `GET /metrics` (Prometheus text format).

use actix_web::{HttpResponse, web};

use super::readable;
use crate::AppState;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(readable("/metrics", metrics));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.store.stats().await.ok();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(stats))
}
