//! `POST /webhooks/{platform}` (topic from the headers) and
//! `POST /webhooks/{platform}/products/{action}` (the seed's routes).

use std::time::{Duration, Instant};

use actix_web::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;

use super::{not_found, post_only};
use crate::error::Error;
use crate::metrics::Outcome;
use crate::pipeline::{self, Accepted};
use crate::platforms::Platforms;
use crate::{ActixHeaders, AppState};

pub(crate) fn configure(cfg: &mut web::ServiceConfig, platforms: &Platforms) {
    // Static paths for the platforms compiled in: matched by string compare,
    // where the patterns below need a regex per request. Each also with a
    // trailing slash, after all of them (so the paths as documented match
    // first): a slash pasted into a platform's webhook address is an easy
    // mistake, and a 404 for every delivery costs the subscription (Shopify
    // deletes one after 8 failed deliveries).
    let static_paths = |slash: &'static str| {
        platforms.iter().flat_map(move |p| {
            let id = p.id().as_str().to_owned();
            p.actions.iter().map(move |&action| {
                (
                    id.clone(),
                    action,
                    format!("/{id}/products/{action}{slash}"),
                )
            })
        })
    };
    for (platform, action, path) in static_paths("").chain(static_paths("/")) {
        cfg.service(
            web::resource(path)
                .route(web::post().to(
                    move |req: HttpRequest, payload: web::Payload, state: web::Data<AppState>| {
                        let platform = platform.clone();
                        async move { handle(&req, &platform, Some(action), payload, &state).await }
                    },
                ))
                .default_service(web::to(post_only)),
        );
    }
    // Everything else (other platforms and actions: 404, whatever the
    // method) and the topic-from-header endpoint.
    for slash in ["", "/"] {
        cfg.service(
            web::resource(format!("/{{platform}}{slash}"))
                .route(web::post().to(by_header))
                .default_service(web::to(post_only_if_known)),
        )
        .service(
            web::resource(format!("/{{platform}}/products/{{action}}{slash}"))
                .route(web::post().to(by_route))
                .default_service(web::to(not_found)),
        );
    }
}

/// Another method on `/webhooks/{platform}`: 405 for a platform this
/// server has, 404 (as for POST) for any other name.
async fn post_only_if_known(
    platform: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    if state.platforms.get(&platform).is_some() {
        post_only().await
    } else {
        not_found().await
    }
}

async fn by_header(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    handle(&req, &path, None, payload, &state).await
}

async fn by_route(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let (platform, action) = path.into_inner();
    handle(&req, &platform, Some(&action), payload, &state).await
}

/// Why a body could not be read, in words (actix's text for a cut-off body
/// ends in a Rust `None`).
fn body_error(e: &actix_web::error::PayloadError) -> String {
    match e {
        actix_web::error::PayloadError::Incomplete(_) => {
            "body: the body ended before it was complete (its Content-Length or chunk sizes \
             promise more)"
                .to_owned()
        }
        other => format!("body: {other}"),
    }
}

/// Why a request with both `Content-Length` and `Transfer-Encoding` is
/// refused.
const FRAMED_TWICE: &str =
    "a request with both Content-Length and Transfer-Encoding is refused (RFC 9112 section 6.1)";

/// Why a request asking for a WebSocket is refused.
const WEBSOCKET: &str = "a webhook delivery does not upgrade its connection (Upgrade: websocket)";

/// Whether the request asks for a WebSocket: actix then reads its body to
/// the end of the stream, whatever its `Content-Length` says.
fn asks_for_websocket(headers: &actix_web::http::header::HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// Whether the request's framing leaves the connection's next bytes in
/// doubt: framed two ways, or read to the end of the stream.
fn framed_unsafely(headers: &actix_web::http::header::HeaderMap) -> bool {
    (headers.contains_key(CONTENT_LENGTH) && headers.contains_key(TRANSFER_ENCODING))
        || asks_for_websocket(headers)
}

/// The most [`read_body`] reserves before the bytes arrive: most product
/// payloads fit (the documented Shopify sample is 2.2 KB), and a larger one
/// grows the buffer by doubling as its bytes come in.
const FIRST_RESERVATION: usize = 16 * 1024;

/// Reads the body within the size limit (413, also without Content-Length)
/// and the time limit (408, so a trickled body cannot hold a worker).
///
/// # Errors
/// [`Error::PayloadTooLarge`], [`Error::Timeout`], [`Error::BadRequest`].
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Error> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::PayloadTooLarge { limit });
    }
    if declared.is_some() && req.headers().contains_key(TRANSFER_ENCODING) {
        // Framed two ways: a proxy in front may have read it the other
        // way (request smuggling). Refused, and the connection closed
        // (`handle`), as RFC 9112 section 6.1 allows and requires.
        return Err(Error::BadRequest(FRAMED_TWICE.to_owned()));
    }
    if asks_for_websocket(req.headers()) {
        // Its body would be read until the client closes: a delivery
        // whose end only the sender decides (an outside audit).
        return Err(Error::BadRequest(WEBSOCKET.to_owned()));
    }
    // The declared length is the sender's word, read before the signature
    // is checked: reserving all of it would let anyone hold `limit` bytes
    // per connection by sending a head and two bytes. Past the first
    // reservation the buffer grows with what actually arrives.
    let capacity = declared
        .map_or(8192, |n| usize::try_from(n).unwrap_or(limit))
        .min(FIRST_RESERVATION);
    let read = async move {
        // A body that arrives in one chunk is used as is (no copy).
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| Error::BadRequest(body_error(&e)))?;
            let so_far = first.as_ref().map_or(buf.len(), Bytes::len);
            if so_far + chunk.len() > limit {
                return Err(Error::PayloadTooLarge { limit });
            }
            if let Some(f) = first.take() {
                buf.reserve(capacity.max(f.len() + chunk.len()));
                buf.extend_from_slice(&f);
                buf.extend_from_slice(&chunk);
            } else if buf.is_empty() {
                first = Some(chunk);
            } else {
                buf.extend_from_slice(&chunk);
            }
        }
        let body = first.unwrap_or_else(|| buf.freeze());
        // A client that closes its side early ends the payload as if whole
        // (actix ends it at the end of the stream): a body shorter than
        // its Content-Length is cut off, not a delivery.
        if declared.is_some_and(|n| n != body.len() as u64) {
            return Err(Error::BadRequest(
                "body: the body ended before it was complete (its Content-Length promises more)"
                    .to_owned(),
            ));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| Error::Timeout)?
}

fn outcome_of(result: &Result<Accepted, Error>) -> Outcome {
    match result {
        Ok(Accepted::Ping) => Outcome::Ping,
        Ok(Accepted::Stored { .. }) => Outcome::Stored,
        Ok(Accepted::Duplicate { .. }) => Outcome::Duplicate,
        Ok(Accepted::Unparseable { .. }) => Outcome::Unparseable,
        Err(Error::Unauthorized(_)) => Outcome::Unauthorized,
        Err(Error::UnknownStore(_)) => Outcome::UnknownStore,
        Err(Error::PayloadTooLarge { .. }) => Outcome::TooLarge,
        Err(Error::Timeout) => Outcome::Timeout,
        Err(Error::RateLimited) => Outcome::RateLimited,
        Err(Error::NotConfigured(_) | Error::Store(_) | Error::Internal(_)) => Outcome::Unavailable,
        Err(_) => Outcome::BadRequest,
    }
}

/// [`answer`] as a response, closing the connection once shutdown has
/// begun ([`AppState::begin_draining`]): the client reconnects, to another
/// replica or to this server once restarted, instead of keeping this one
/// busy until the drain budget cuts it off.
async fn handle(
    req: &HttpRequest,
    platform: &str,
    action: Option<&str>,
    payload: web::Payload,
    state: &AppState,
) -> HttpResponse {
    let mut res = match answer(req, platform, action, payload, state).await {
        Ok(res) => res,
        Err(e) => actix_web::ResponseError::error_response(&e),
    };
    // After a request framed two ways (or as a WebSocket), the
    // connection's next bytes cannot be trusted to start a request: close
    // it (RFC 9112 section 6.1).
    if state.draining.load(std::sync::atomic::Ordering::Relaxed)
        || (res.status() == actix_web::http::StatusCode::BAD_REQUEST
            && framed_unsafely(req.headers()))
    {
        res.head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    res
}

async fn answer(
    req: &HttpRequest,
    platform: &str,
    action: Option<&str>,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, Error> {
    let started = Instant::now();
    let entry = state.platforms.get(platform).ok_or(Error::NotFound)?;
    let expected = match action {
        Some(a) => Some(entry.topic_for_action(a).ok_or(Error::NotFound)?),
        None => None,
    };
    let result = async {
        // First-value-wins on a repeated signature or identity header would
        // let a proxy and us disagree about which one was checked (or which
        // store, topic or event it is): refuse it.
        for name in entry.signature_headers.iter().chain(entry.identity_headers) {
            if req.headers().get_all(*name).nth(1).is_some() {
                return Err(Error::BadRequest(format!("repeated {name} header")));
            }
        }
        // An identity header that is not visible ASCII would read as
        // missing further on: said as what it is. (A signature that is not
        // text stays a 401, as a missing one.)
        for name in entry.identity_headers {
            if req
                .headers()
                .get(*name)
                .is_some_and(|v| v.to_str().is_err())
            {
                return Err(Error::BadRequest(format!(
                    "the {name} header is not text (visible ASCII)"
                )));
            }
        }
        // The signature covers the bytes as sent, and neither platform
        // compresses: a compressed body is refused (415) rather than stored
        // as an unreadable one or checked against the wrong bytes.
        for value in req.headers().get_all(CONTENT_ENCODING) {
            let identity = value.to_str().is_ok_and(|v| {
                v.split(',')
                    .all(|c| c.trim().eq_ignore_ascii_case("identity"))
            });
            if !identity {
                return Err(Error::UnsupportedEncoding);
            }
        }
        let body = read_body(req, payload, state.body_limit, state.body_timeout).await?;
        // A store that does not answer (a locked table, a stalled disk)
        // gets 503 in time for the platform to retry, rather than a request
        // left hanging past the platform's own timeout (Shopify: 5 s). A
        // write that lands later makes the retry a duplicate: nothing is
        // acknowledged that is not stored, nothing stored twice.
        let headers = ActixHeaders(req.headers());
        let processing = pipeline::process(entry, &*state.store, expected.as_ref(), &headers, body);
        match tokio::time::timeout(state.store_timeout, processing).await {
            Ok(result) => result,
            Err(_) => Err(Error::Store(crate::store::StoreError::timed_out(
                state.store_timeout,
            ))),
        }
    }
    .await;
    let topic = match &result {
        Ok(a) => a.topic().map(str::to_owned),
        Err(Error::TopicMismatch { got, .. }) => Some(got.clone()),
        Err(_) => expected.as_ref().map(|t| t.as_str().to_owned()),
    };
    state.metrics.record_delivery(
        platform,
        topic.as_deref(),
        outcome_of(&result),
        started.elapsed(),
    );
    let accepted = result?;
    let (status, id) = match &accepted {
        Accepted::Ping => ("ping", None),
        Accepted::Stored { id, .. } => {
            state.wake.notify_one();
            ("stored", Some(id.as_str()))
        }
        Accepted::Duplicate { id, .. } => ("duplicate", Some(id.as_str())),
        Accepted::Unparseable { id, .. } => ("stored_unparseable", Some(id.as_str())),
    };
    tracing::debug!(platform, status, id = id.unwrap_or(""), "delivery accepted");
    // Ids are hex fingerprints: no escaping needed.
    let body = match id {
        Some(id) => format!(r#"{{"status":"{status}","id":"{id}"}}"#),
        None => format!(r#"{{"status":"{status}","id":null}}"#),
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
