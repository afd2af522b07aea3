//! The admin API (`/admin/...`), mounted only when `CATALOG_ADMIN_TOKEN` is
//! set, and guarded by `Authorization: Bearer <token>`.

use actix_web::ResponseError as _;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{post_only, readable};
use crate::AppState;
use crate::error::Error;
use crate::normalise;
use crate::platforms::Platforms;
use crate::store::{EventFilter, EventStatus, ReplayOutcome, StoredEvent};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // A query actix cannot read (a parameter given twice) gets the API's
    // JSON error too, not actix's plain text.
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|err, _req| Error::BadRequest(query_error_message(&err)).into()),
    )
    .service(readable("/events", list))
    .service(readable("/events/{id}", get))
    .service(
        web::resource("/events/{id}/replay")
            .route(web::post().to(replay))
            .default_service(web::to(post_only)),
    );
}

/// A query string this API cannot read, in its own words: serde speaks of
/// fields (`unknown field `staus`, expected one of ...`), a caller of an
/// HTTP API of query parameters.
fn query_error_message(err: &actix_web::error::QueryPayloadError) -> String {
    let detail = match err {
        actix_web::error::QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    let detail = detail
        .replace("unknown field", "unknown query parameter")
        .replace("duplicate field", "query parameter given twice:");
    format!("query: {detail}")
}

/// Compares the bearer token in constant time (over SHA-256 digests, so the
/// token's length does not leak either).
pub(crate) async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let ok = req
        .app_data::<web::Data<AppState>>()
        .and_then(|s| s.admin_token.as_ref())
        .is_some_and(|token| {
            let given = bearer_token(req.headers()).unwrap_or("");
            let a = Sha256::digest(given.trim().as_bytes());
            let b = Sha256::digest(token.expose_secret().trim().as_bytes());
            bool::from(a.ct_eq(&b)) && !given.trim().is_empty()
        });
    if !ok {
        return Ok(req
            .into_response(Error::Unauthorized("admin token".into()).error_response())
            .map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

/// The token of the one `Authorization: Bearer <token>` header (the scheme
/// in any case, as RFC 9110 has it). `None` for another scheme, and for a
/// request with several `Authorization` headers: which one counts would
/// depend on who reads them.
fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION);
    let value = values.next()?.to_str().ok()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A parameter this API does not know is refused, not ignored: a
/// misspelt filter (`staus=dead`) would otherwise list every event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    platform: Option<String>,
    store: Option<String>,
    topic: Option<String>,
    status: Option<String>,
    // Strings, parsed here: a bad value gets the API's JSON error, not
    // actix's plain-text one.
    limit: Option<String>,
    cursor: Option<String>,
}

/// The single-event routes take no query parameters: one given is refused
/// like a misspelt list filter, so that a caller who expects it to do
/// something (`?include_body=false`, `?force=true`) learns it does not.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// One event as the admin API shows it. The product is derived from the
/// stored body (see [`crate::normalise`]): `null` when there is none or the
/// body cannot be normalised (the event then is, or is about to be, `failed`).
fn event_json(e: &StoredEvent, with_body: bool, platforms: &Platforms) -> serde_json::Value {
    let ev = &e.event;
    let product = normalise::product_json(platforms, ev)
        .ok()
        .flatten()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut v = serde_json::json!({
        "id": ev.id,
        "platform": ev.platform,
        "store": ev.store,
        "topic": ev.topic,
        "raw_topic": ev.raw_topic,
        "event_id": ev.event_id,
        "delivery_id": ev.delivery_id,
        "product_id": ev.product_id,
        "status": ev.status,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "error": ev.error,
        "triggered_at": ev.triggered_at.as_ref().map(crate::timestamp::format),
        "received_at": crate::timestamp::format(&ev.received_at),
        // When the next attempt is due: a pending event's only (a stored
        // time on a finished event means nothing, and read as a schedule).
        "next_attempt_at": (ev.status == crate::store::EventStatus::Pending)
            .then(|| crate::timestamp::format(&e.next_attempt_at)),
        "product": product,
    });
    if with_body && let Some(obj) = v.as_object_mut() {
        match std::str::from_utf8(&ev.raw_body) {
            Ok(text) => {
                obj.insert("raw_body".into(), text.into());
            }
            Err(_) => {
                obj.insert(
                    "raw_body_base64".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(&ev.raw_body)
                        .into(),
                );
            }
        }
    }
    v
}

async fn list(
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let mut q = query.into_inner();
    // An empty parameter counts as absent (a form's empty field).
    for value in [&mut q.platform, &mut q.store, &mut q.topic] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            *value = None;
        }
    }
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            EventStatus::parse(s)
                .ok_or_else(|| Error::BadRequest(format!("unknown status {s:?}")))?,
        ),
    };
    // Cursors are the `next` of an earlier page: positive sequence numbers,
    // written as the OpenAPI document's pattern says (1 to 19 digits, no
    // leading zero). One past the largest sequence number lists from the
    // newest, as no cursor would.
    let before = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            Some(c)
                .filter(|c| {
                    (1..=19).contains(&c.len())
                        && !c.starts_with('0')
                        && c.bytes().all(|b| b.is_ascii_digit())
                })
                .and_then(|c| c.parse::<u64>().ok())
                .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
                .ok_or_else(|| {
                    Error::BadRequest("invalid cursor: pass the `next` of the previous page".into())
                })?,
        ),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| {
                Error::BadRequest(format!("limit must be a number from 1 to {MAX_LIMIT}"))
            })?,
    };
    // A platform not wired in can have no events: a typo, said as such.
    if let Some(p) = q.platform.as_deref().filter(|p| !p.is_empty())
        && state.platforms.get(p).is_none()
    {
        let known: Vec<String> = state
            .platforms
            .iter()
            .map(|e| e.id().as_str().to_owned())
            .collect();
        return Err(Error::BadRequest(format!(
            "unknown platform: use one of {}",
            known.join(", ")
        )));
    }
    let store = q
        .store
        .as_deref()
        .map(|s| store_filter(q.platform.as_deref(), s));
    let filter = EventFilter {
        platform: q.platform,
        store,
        topic: q.topic.as_deref().map(topic_filter),
        status,
    };
    let page = state.store.list(&filter, before, limit).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "events": page.events.iter().map(|e| event_json(e, false, &state.platforms)).collect::<Vec<_>>(),
        "next": page.next.map(|n| n.to_string()),
    })))
}

/// A store filter as stores are recorded: host in lower case, no trailing
/// slash (a path keeps its case), a Shopify shop as its domain (written as
/// a URL too, as the configuration takes it, with `platform=shopify` or a
/// `.myshopify.com` host), and a WooCommerce site as its identity
/// (`https://`, whether given as `http://`, `https://` or, with
/// `platform=woocommerce`, a bare domain). Without a platform, another URL
/// is taken for a WooCommerce site (the only platform whose store ids are
/// URLs); with another platform it is left as given.
fn store_filter(platform: Option<&str>, store: &str) -> String {
    #[cfg(feature = "shopify")]
    if let Ok(shop) = catalog_shopify::webhook::shop_domain(store)
        && (platform == Some("shopify") || (platform.is_none() && shop.ends_with(".myshopify.com")))
    {
        return shop;
    }
    let store = crate::platforms::normalise_store(store);
    #[cfg(feature = "woocommerce")]
    if (platform == Some("woocommerce") || (platform.is_none() && store.contains("://")))
        && let Ok(identity) = catalog_woocommerce::store_identity(&store)
    {
        return identity;
    }
    let _ = platform;
    store
}

/// A topic filter as events record topics: product topics by their
/// canonical names, in any case and in Shopify's spelling too
/// (`products/update` is `product.updated`: it matched nothing, an outside
/// audit found); any other topic as the platform sent it.
fn topic_filter(topic: &str) -> String {
    let lower = topic.trim().to_ascii_lowercase();
    let canonical = catalog_core::Topic::from_canonical(&lower);
    if !matches!(canonical, catalog_core::Topic::Other(_)) {
        return canonical.as_str().to_owned();
    }
    #[cfg(feature = "shopify")]
    {
        let shopify = catalog_shopify::webhook::topic(&lower);
        if !matches!(shopify, catalog_core::Topic::Other(_)) {
            return shopify.as_str().to_owned();
        }
    }
    topic.trim().to_owned()
}

async fn get(
    path: web::Path<String>,
    _query: web::Query<NoQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let event = state.store.get(&path).await?.ok_or(Error::NotFound)?;
    Ok(HttpResponse::Ok().json(event_json(&event, true, &state.platforms)))
}

async fn replay(
    path: web::Path<String>,
    _query: web::Query<NoQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    match state.store.replay(&path).await? {
        ReplayOutcome::Queued => {}
        ReplayOutcome::NotFound => return Err(Error::NotFound),
        ReplayOutcome::InFlight => return Err(Error::InFlight),
    }
    tracing::info!(id = %path, "event queued for replay");
    state.wake.notify_one();
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({ "id": path.as_str(), "status": "pending" })))
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, store_filter};
    use actix_web::http::header::{AUTHORIZATION, HeaderMap, HeaderValue};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_tokens_are_read_in_any_case_and_only_alone() {
        assert_eq!(bearer_token(&headers(&["Bearer abc"])), Some("abc"));
        assert_eq!(bearer_token(&headers(&["bearer abc"])), Some("abc"));
        assert_eq!(bearer_token(&headers(&["BEARER  abc "])), Some("abc"));
        assert_eq!(bearer_token(&headers(&["Basic abc"])), None);
        assert_eq!(bearer_token(&headers(&["Bearerabc"])), None);
        assert_eq!(bearer_token(&headers(&[])), None);
        assert_eq!(bearer_token(&headers(&["Bearer abc", "Bearer abc"])), None);
        assert_eq!(
            bearer_token(&headers(&["Bearer wrong", "Bearer abc"])),
            None
        );
    }

    #[test]
    fn store_filters_are_normalised_as_stores_are_recorded() {
        assert_eq!(
            store_filter(None, " Test-Shop.MyShopify.com/ "),
            "test-shop.myshopify.com"
        );
        #[cfg(feature = "woocommerce")]
        {
            for given in [
                "http://Shop.Example.com/",
                "https://shop.example.com",
                "HTTPS://SHOP.EXAMPLE.COM:443",
            ] {
                assert_eq!(
                    store_filter(None, given),
                    "https://shop.example.com",
                    "{given}"
                );
            }
            assert_eq!(
                store_filter(Some("woocommerce"), "shop.example.com"),
                "https://shop.example.com"
            );
            // A sub-directory keeps its case, as recorded.
            assert_eq!(
                store_filter(None, "http://Sub.Example.com/Shop/"),
                "https://sub.example.com/Shop"
            );
        }
        // A Shopify shop written as a URL, as the configuration takes it:
        // its shop domain (with `platform=shopify`, or a myshopify.com host).
        #[cfg(feature = "shopify")]
        for (platform, given) in [
            (None, "https://A.myshopify.com/"),
            (Some("shopify"), "https://a.myshopify.com:443"),
            (Some("shopify"), "a.myshopify.com"),
        ] {
            assert_eq!(store_filter(platform, given), "a.myshopify.com", "{given}");
        }
        // ...and not taken for a WooCommerce site.
        #[cfg(feature = "shopify")]
        assert_eq!(
            store_filter(Some("shopify"), "http://Shop.Example.com/"),
            "shop.example.com"
        );
    }
}
