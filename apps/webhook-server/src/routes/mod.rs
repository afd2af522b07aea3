//! HTTP routes.

pub mod admin;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod webhooks;

use actix_web::ResponseError as _;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, web};

use std::net::IpAddr;

use crate::AppState;
use crate::error::Error;
use crate::ratelimit::RateLimiter;

/// Mounts every route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    let admin_enabled = state.admin_token.is_some();
    let platforms = std::sync::Arc::clone(&state.platforms);
    cfg.app_data(state);
    // The hot path first: routes are tried in order.
    cfg.service(
        web::scope("/webhooks")
            .wrap(from_fn(rate_limit))
            // Draining is handled in the handler there (no layer on the
            // hot path; see webhooks::handle).
            .configure(|c| webhooks::configure(c, &platforms)),
    );
    health::configure(cfg);
    metrics::configure(cfg);
    docs::configure(cfg, admin_enabled, &platforms);
    if admin_enabled {
        cfg.service(
            web::scope("/admin")
                .wrap(from_fn(admin::require_token))
                .wrap(from_fn(rate_limit))
                .wrap(from_fn(close_when_draining))
                .configure(admin::configure)
                .default_service(web::to(not_found)),
        );
    }
    // Any other path: the same JSON error as everywhere, not an empty 404.
    cfg.default_service(web::to(not_found));
}

/// A path no route has: `{"error": "not_found"}`.
pub(crate) async fn not_found() -> HttpResponse {
    Error::NotFound.error_response()
}

/// `path` answering GET and HEAD with `handler` (for HEAD actix sends the
/// same status and headers without the body: probes and link checkers use
/// it), and any other method with 405 naming both, so that a route that
/// exists never reads as "no such route".
pub(crate) fn readable<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(get_only))
}

/// The answer of a [`readable`] route to another method.
async fn get_only() -> HttpResponse {
    Error::MethodNotAllowed { allow: "GET, HEAD" }.error_response()
}

/// The answer of a POST route (webhooks, replay) to another method: a
/// `curl` of the URL gets 405 and `Allow`, not a 404.
pub(crate) async fn post_only() -> HttpResponse {
    Error::MethodNotAllowed { allow: "POST" }.error_response()
}

/// Once shutdown has begun ([`AppState::begin_draining`]), answers close
/// their connection: the request is served, the client reconnects (to
/// another replica, or to this server once restarted).
async fn close_when_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    // Read when the answer is ready: a request that began before the
    // shutdown and ends after it closes too.
    if res
        .request()
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.draining.load(std::sync::atomic::Ordering::Relaxed))
    {
        res.response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(res)
}

/// The address a request is limited as (see [`crate::ratelimit::TrustedProxies`]).
fn client_of(limiter: &RateLimiter, peer: IpAddr, req: &ServiceRequest) -> IpAddr {
    if !limiter.trusts_proxies() {
        return peer;
    }
    // A value that is not text counts as an unreadable entry: it stops the
    // walk at the proxy, it is not skipped.
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    limiter.client(peer, &forwarded)
}

/// Whether a request may carry a body (a `Content-Length` other than 0, or
/// a `Transfer-Encoding`).
fn may_have_body(headers: &actix_web::http::header::HeaderMap) -> bool {
    use actix_web::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get(CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes().iter().any(|&b| b != b'0'))
}

/// Refuses requests over the per-address budget with 429.
async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(state) = req.app_data::<web::Data<AppState>>()
        && let Some(limiter) = &state.limiter
        && let Some(peer) = req.peer_addr()
        && !limiter.check(client_of(limiter, peer.ip(), &req))
    {
        // Deliveries only: an admin request turned away is none.
        if let Some(rest) = req.path().strip_prefix("/webhooks/") {
            let platform = rest.split('/').next().unwrap_or("other");
            state.metrics.record_delivery(
                platform,
                None,
                crate::metrics::Outcome::RateLimited,
                std::time::Duration::ZERO,
            );
        }
        // The refused request's body is left unread: a client reusing the
        // connection then had its next requests cut without a word (an
        // outside audit: after some 40 answers of 429, a broken pipe).
        // Closing says so, and the client reconnects after `Retry-After`.
        let mut res = Error::RateLimited.error_response();
        if may_have_body(req.headers()) {
            res.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
        }
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
