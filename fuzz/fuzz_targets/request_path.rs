//! The server's whole request path: an arbitrary POST (path choice, headers,
//! body) through actix `test::init_service` with the server's `configure`, the
//! real Shopify and WooCommerce sources and a memory store, in a tokio
//! current-thread runtime. Asserts: no 5xx, no panic, and an event is stored
//! only when the request carries a signature that verifies over the body with
//! the secret of the store the event is filed under.
//!
//! Input: byte 0 picks the path, byte 1 how to sign (see `Signing`), then
//! header lines `Name: value` up to an empty line, then the body. So a seed is
//! two bytes plus an HTTP-like head and a documented sample body.
#![no_main]

use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use actix_web::body::BoxBody;
use actix_web::dev::{Service as _, ServiceResponse};
use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, test};
use catalog_core::webhook::{HmacVerifier, sign};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use webhook_server::platforms::Platforms;
use webhook_server::settings::{PlatformSettings, Settings, StoreSettings};
use webhook_server::store::{EventFilter, EventStore, MemoryStore, StoredEvent};
use webhook_server::{AppState, configure};

const PATHS: &[&str] = &[
    "/webhooks/shopify",
    "/webhooks/shopify/products/create",
    "/webhooks/shopify/products/update",
    "/webhooks/shopify/products/delete",
    "/webhooks/shopify/products/restore",
    "/webhooks/woocommerce",
    "/webhooks/woocommerce/products/create",
    "/webhooks/woocommerce/products/update",
    "/webhooks/woocommerce/products/delete",
    "/webhooks/woocommerce/products/restore",
    "/webhooks/no-such-platform",
    "/webhooks/shopify/orders/create",
    "/healthz",
    "/metrics",
    "/admin/events",
    "/webhooks/woocommerce/products/../create",
];

/// Stores and secrets: (platform, store as events name it, secret).
const SHOPIFY_A: (&str, &str) = ("a-shop.myshopify.com", "fuzz-shopify-a");
const SHOPIFY_B: (&str, &str) = ("b-shop.myshopify.com", "fuzz-shopify-b");
const WOO_A: (&str, &str) = ("https://shop.example.com", "fuzz-woo-a");
const WOO_B: (&str, &str) = ("https://other.example.org/shop", "fuzz-woo-b");
const ALL: [(&str, &str, &str); 4] = [
    ("shopify", SHOPIFY_A.0, SHOPIFY_A.1),
    ("shopify", SHOPIFY_B.0, SHOPIFY_B.1),
    ("woocommerce", WOO_A.0, WOO_A.1),
    ("woocommerce", WOO_B.0, WOO_B.1),
];
const BODY_LIMIT: usize = 64 * 1024;

fn platform(list: &[(&str, &str)]) -> PlatformSettings {
    let mut p = PlatformSettings::default();
    p.stores = list
        .iter()
        .map(|(id, secret)| StoreSettings::new(*id, vec![SecretString::from(*secret)]))
        .collect();
    p.default_currency = Some("USD".into());
    p
}

fn settings() -> &'static (Settings, Platforms) {
    static S: OnceLock<(Settings, Platforms)> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = Settings::defaults();
        s.rate_limit.enabled = false;
        s.server.body_limit = BODY_LIMIT;
        s.admin.token = Some(SecretString::from("fuzz-admin-token-0123456789"));
        s.shopify = platform(&[SHOPIFY_A, SHOPIFY_B]);
        s.woocommerce = platform(&[WOO_A, WOO_B]);
        let platforms = Platforms::from_settings(&s).expect("fuzz settings are valid");
        (s, platforms)
    })
}

/// Byte 1: how the signature header is set.
#[derive(Debug, Clone, Copy)]
enum Signing {
    /// Only what the input's header lines say.
    AsGiven,
    /// Signed with the secret of the store the headers claim.
    Claimed,
    /// Signed with another store's secret.
    OtherStore,
    /// The right MAC, hex-encoded instead of base64.
    Hex,
}

fn signature_header(path: &str) -> Option<&'static str> {
    if path.starts_with("/webhooks/shopify") {
        Some("X-Shopify-Hmac-Sha256")
    } else if path.starts_with("/webhooks/woocommerce") {
        Some("X-WC-Webhook-Signature")
    } else {
        None
    }
}

/// The secret of the store named by the request's store header, if configured.
fn claimed_secret(path: &str, headers: &[(HeaderName, HeaderValue)]) -> Option<&'static str> {
    let (name, platform) = if path.starts_with("/webhooks/shopify") {
        ("x-shopify-shop-domain", "shopify")
    } else {
        ("x-wc-webhook-source", "woocommerce")
    };
    let claimed = headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .and_then(|(_, v)| v.to_str().ok())?
        .trim()
        .trim_end_matches('/')
        .to_ascii_lowercase();
    ALL.iter()
        .find(|(p, store, _)| *p == platform && *store == claimed)
        .map(|(_, _, secret)| *secret)
}

type Call =
    Box<dyn Fn(actix_http::Request) -> Pin<Box<dyn Future<Output = ServiceResponse<BoxBody>>>>>;

/// The app, built once per process: actix builds an `App` once per worker
/// too, and building one per input would both be slow and count actix's
/// one-off allocations of route construction as leaks. The store stays, so a
/// stored event is recognised as a new newest event.
fn build() -> (Call, Arc<MemoryStore>) {
    let (settings, platforms) = settings();
    let store = Arc::new(MemoryStore::new(64, 64));
    let state = AppState::new(settings, platforms.clone(), store.clone());
    let app = runtime().block_on(test::init_service(
        App::new().configure(move |c| configure(c, state)),
    ));
    let app = Rc::new(app);
    let call: Call = Box::new(move |req| {
        let app = Rc::clone(&app);
        Box::pin(async move {
            match app.call(req).await {
                Ok(res) => res.map_into_boxed_body(),
                Err(e) => panic!("the service failed instead of answering: {e}"),
            }
        })
    });
    (call, store)
}

thread_local! {
    // Never dropped: actix's own thread-locals (its request pool) may be gone
    // by the time this one's destructor ran at exit.
    static APP: &'static (Call, Arc<MemoryStore>) = Box::leak(Box::new(build()));
}

async fn newest(store: &MemoryStore) -> Option<StoredEvent> {
    store
        .list(&EventFilter::default(), None, 1)
        .await
        .expect("memory store lists")
        .events
        .into_iter()
        .next()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let [path_pick, mode, rest @ ..] = data else {
        return;
    };
    let path = PATHS[usize::from(*path_pick) % PATHS.len()];
    let signing = match mode % 4 {
        0 => Signing::AsGiven,
        1 => Signing::Claimed,
        2 => Signing::OtherStore,
        _ => Signing::Hex,
    };
    // Head: lines up to the first empty line; the rest is the body.
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (&[][..], rest),
    };
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        // What an HTTP parser would refuse never reaches the app.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.push((n, v));
        }
    }
    if let Some(sig_header) = signature_header(path) {
        let secret = match signing {
            Signing::AsGiven => None,
            Signing::Claimed | Signing::Hex => claimed_secret(path, &headers),
            Signing::OtherStore => {
                let claimed = claimed_secret(path, &headers);
                ALL.iter().map(|(_, _, s)| *s).find(|s| Some(*s) != claimed)
            }
        };
        if let Some(secret) = secret {
            let b64 = sign(secret.as_bytes(), body);
            let value = if matches!(signing, Signing::Hex) {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(&b64)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            } else {
                b64
            };
            let name = HeaderName::from_static(match sig_header {
                "X-Shopify-Hmac-Sha256" => "x-shopify-hmac-sha256",
                _ => "x-wc-webhook-signature",
            });
            headers.retain(|(n, _)| *n != name);
            headers.push((
                name,
                HeaderValue::from_str(&value).expect("base64/hex is a header value"),
            ));
        }
    }

    APP.with(|app| {
        let (call, store) = *app;
        runtime().block_on(async {
            let before = newest(store).await;
            let mut req = test::TestRequest::post().uri(path);
            for (n, v) in &headers {
                req = req.append_header((n.clone(), v.clone()));
            }
            let res = call(req.set_payload(body.to_vec()).to_request()).await;
            let status = res.status();
            assert!(!status.is_server_error(), "{path}: {status}");
            let after = newest(store).await;
            if std::env::var_os("REQUEST_PATH_TRACE").is_some() {
                let new =
                    after.as_ref().map(|e| &e.event.id) != before.as_ref().map(|e| &e.event.id);
                eprintln!("{path} -> {status}, new event: {new}");
            }
            let Some(e) =
                after.filter(|e| Some(&e.event.id) != before.as_ref().map(|b| &b.event.id))
            else {
                return;
            };
            // A new event: this request stored it.
            assert_eq!(status, 200, "stored but answered {status}");
            let ev = &e.event;
            assert!(
                path.starts_with(&format!("/webhooks/{}", ev.platform)),
                "{path} stored {}",
                ev.platform
            );
            assert_eq!(
                &ev.raw_body[..],
                body,
                "the stored body is the received body"
            );
            let secret = ALL
                .iter()
                .find(|(p, s, _)| *p == ev.platform && *s == ev.store)
                .map(|(_, _, secret)| *secret)
                .unwrap_or_else(|| panic!("stored an event of unconfigured store {:?}", ev.store));
            let verifier = HmacVerifier::new([SecretString::from(secret)]).expect("secret");
            let sig_names: &[&str] = if ev.platform == "shopify" {
                &["x-shopify-hmac-sha256", "shopify-hmac-sha256"]
            } else {
                &["x-wc-webhook-signature"]
            };
            let verified = headers.iter().any(|(n, v)| {
                sig_names.contains(&n.as_str())
                    && v.to_str().is_ok_and(|v| verifier.verify(body, v).is_ok())
            });
            assert!(
                verified,
                "stored an event without a valid signature for {}",
                ev.store
            );
        });
    });
});
