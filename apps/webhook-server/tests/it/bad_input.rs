//! The bad-input catalogue (the table in docs/security.md): each malformed or
//! hostile delivery with the answer it must get and what, if anything, it may
//! leave in the store. In process with the real Shopify and WooCommerce
//! sources; the cases that need a real socket (chunked bodies, slow clients,
//! oversize heads) run against the real binary at the end.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{App, test};
use base64::Engine as _;
use catalog_core::webhook::sign;
use secrecy::SecretString;
use webhook_server::dispatch::DispatchConfig;
use webhook_server::platforms::Platforms;
use webhook_server::settings::{PlatformSettings, Settings, StoreSettings};
use webhook_server::store::{EventFilter, EventStatus, EventStore, MemoryStore};
use webhook_server::{AppState, configure};

const SHOP_A: (&str, &str) = ("a-shop.myshopify.com", "bad-input-shopify-a");
const SHOP_B: (&str, &str) = ("b-shop.myshopify.com", "bad-input-shopify-b");
const WOO: (&str, &str) = ("https://shop.example.com", "bad-input-woo");
const LIMIT: usize = 64 * 1024;

const SHOPIFY_CREATE: &str = include_str!("../fixtures/products_create.json");
const WOO_PRODUCT: &str = include_str!("../fixtures/woocommerce_product_794.json");
const SHOPIFY_DELETE: &str = r#"{"id":788032119674292922}"#;

const S_BY_HEADER: &str = "/webhooks/shopify";
const S_CREATE: &str = "/webhooks/shopify/products/create";
const S_DELETE: &str = "/webhooks/shopify/products/delete";
const W_BY_HEADER: &str = "/webhooks/woocommerce";
const W_UPDATE: &str = "/webhooks/woocommerce/products/update";

fn platform(stores: &[(&str, &str)]) -> PlatformSettings {
    let mut p = PlatformSettings::default();
    p.stores = stores
        .iter()
        .map(|(id, s)| StoreSettings::new(*id, vec![SecretString::from(*s)]))
        .collect();
    p.default_currency = Some("USD".into());
    p
}

fn settings() -> Settings {
    let mut s = Settings::defaults();
    s.rate_limit.enabled = false;
    s.server.body_limit = LIMIT;
    s.shopify = platform(&[SHOP_A, SHOP_B]);
    s.woocommerce = platform(&[WOO]);
    s
}

/// What a case may leave in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Nothing at all (no event, no dedup entry).
    Nothing,
    /// An event, normalised and handed to the sinks.
    Event,
    /// A `failed` event: verified, unparseable, kept with its raw body.
    Failed,
}

struct Case {
    name: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    kept: Kept,
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Shopify headers for `body` signed with `secret` (`None`: no signature header).
fn shopify(topic: &str, shop: &str, body: &[u8], secret: Option<&str>) -> Vec<(String, String)> {
    let mut v = h(&[
        ("Content-Type", "application/json"),
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Shop-Domain", shop),
        ("X-Shopify-Event-Id", "evt-1"),
        ("X-Shopify-Webhook-Id", "wh-1"),
        ("X-Shopify-API-Version", "2026-01"),
    ]);
    if let Some(secret) = secret {
        v.push((
            "X-Shopify-Hmac-Sha256".into(),
            sign(secret.as_bytes(), body),
        ));
    }
    v
}

fn shop_a(topic: &str, body: &[u8]) -> Vec<(String, String)> {
    shopify(topic, SHOP_A.0, body, Some(SHOP_A.1))
}

fn woo(topic: &str, body: &[u8], secret: &str) -> Vec<(String, String)> {
    let (resource, event) = topic.split_once('.').unwrap_or((topic, ""));
    h(&[
        ("Content-Type", "application/json"),
        ("X-WC-Webhook-Source", "https://shop.example.com/"),
        ("X-WC-Webhook-Topic", topic),
        ("X-WC-Webhook-Resource", resource),
        ("X-WC-Webhook-Event", event),
        ("X-WC-Webhook-ID", "27"),
        (
            "X-WC-Webhook-Delivery-ID",
            "039f3155b209b1c591c26f60004d889f",
        ),
        ("X-WC-Webhook-Signature", &sign(secret.as_bytes(), body)),
    ])
}

fn replace(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    for (k, v) in &mut headers {
        if k.eq_ignore_ascii_case(name) {
            *v = value.to_owned();
        }
    }
    headers
}

fn without(mut headers: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers
}

fn with(mut headers: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    headers.push((name.to_owned(), value.to_owned()));
    headers
}

/// The headers with the signature also under its unprefixed name, as
/// Shopify's "Events" deliveries send it.
fn as_events_delivery(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let signature = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Shopify-Hmac-Sha256"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    with(headers, "shopify-hmac-sha256", &signature)
}

fn nested(depth: usize) -> Vec<u8> {
    let mut b = "[".repeat(depth).into_bytes();
    b.extend("]".repeat(depth).bytes());
    b
}

fn hex_of(b64: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[allow(clippy::too_many_lines)]
fn catalogue() -> Vec<Case> {
    let create = SHOPIFY_CREATE.as_bytes().to_vec();
    let truncated = create[..create.len() / 2].to_vec();
    let oversize = {
        let mut b = b"{\"id\":1,\"pad\":\"".to_vec();
        b.extend(std::iter::repeat_n(b'x', LIMIT));
        b.extend(b"\"}");
        b
    };
    let not_utf8 = b"{\"id\":1,\"title\":\"\xff\xfe\xfd\"}".to_vec();
    let deep = nested(30_000);
    let huge_id = br#"{"id":1e400,"title":"x"}"#.to_vec();
    let huge_int = SHOPIFY_CREATE
        .replacen(
            "\"id\": 788032119674292922,",
            "\"id\": 340282366920938463463374607431768211457,",
            1,
        )
        .into_bytes();
    let huge_price = SHOPIFY_CREATE
        .replacen(
            "\"19.99\"",
            "\"99999999999999999999999999999999999999.99\"",
            1,
        )
        .into_bytes();
    let dup_keys = format!(
        "{{\"id\":1,{}",
        SHOPIFY_CREATE.trim_start().trim_start_matches('{')
    )
    .into_bytes();
    let woo_body = WOO_PRODUCT.as_bytes().to_vec();
    let ping = b"webhook_id=27".to_vec();
    let good_sig = sign(SHOP_A.1.as_bytes(), &create);
    vec![
        Case {
            name: "valid delivery (control)",
            path: S_CREATE,
            headers: shop_a("products/create", &create),
            body: create.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "truncated body, signature of the whole body",
            path: S_CREATE,
            headers: replace(
                shop_a("products/create", &truncated),
                "X-Shopify-Hmac-Sha256",
                &good_sig,
            ),
            body: truncated.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "truncated body, signed as sent",
            path: S_CREATE,
            headers: shop_a("products/create", &truncated),
            body: truncated.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "body over the limit with Content-Length",
            path: S_CREATE,
            headers: shop_a("products/create", &oversize),
            body: oversize.clone(),
            status: 413,
            kept: Kept::Nothing,
        },
        Case {
            name: "invalid UTF-8, signed",
            path: S_CREATE,
            headers: shop_a("products/create", &not_utf8),
            body: not_utf8.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "invalid UTF-8, unsigned",
            path: S_CREATE,
            headers: shopify("products/create", SHOP_A.0, &not_utf8, None),
            body: not_utf8.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "JSON nested 30 000 deep, signed (Shopify)",
            path: S_CREATE,
            headers: shop_a("products/create", &deep),
            body: deep.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "JSON nested 30 000 deep, signed (WooCommerce, read before verification)",
            path: W_UPDATE,
            headers: woo("product.updated", &deep, WOO.1),
            body: deep.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "JSON nested 30 000 deep, wrong secret (WooCommerce)",
            path: W_UPDATE,
            headers: woo("product.updated", &deep, "guess"),
            body: deep.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "huge number: id 1e400",
            path: S_CREATE,
            headers: shop_a("products/create", &huge_id),
            body: huge_id.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "huge number: id beyond u128",
            path: S_CREATE,
            headers: shop_a("products/create", &huge_int),
            body: huge_int.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "huge number: price beyond Decimal",
            path: S_CREATE,
            headers: shop_a("products/create", &huge_price),
            body: huge_price.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "duplicate JSON keys (the last value wins, as in JSON.parse)",
            path: S_CREATE,
            headers: shop_a("products/create", &dup_keys),
            body: dup_keys.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "wrong content type (text/plain), signed",
            path: S_CREATE,
            headers: replace(
                shop_a("products/create", &create),
                "Content-Type",
                "text/plain",
            ),
            body: create.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "form content type, no content type at all",
            path: S_CREATE,
            headers: without(shop_a("products/create", &create), "Content-Type"),
            body: create.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "signature header repeated (same value)",
            path: S_CREATE,
            headers: with(
                shop_a("products/create", &create),
                "X-Shopify-Hmac-Sha256",
                &good_sig,
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "signature header also under its unprefixed name, another value",
            path: S_CREATE,
            headers: with(
                shop_a("products/create", &create),
                "shopify-hmac-sha256",
                "AAAA",
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "gzip Content-Encoding, signed over the bytes sent",
            path: S_CREATE,
            headers: with(
                shop_a("products/create", &create),
                "Content-Encoding",
                "gzip",
            ),
            body: create.clone(),
            status: 415,
            kept: Kept::Nothing,
        },
        Case {
            name: "Content-Encoding identity",
            path: S_CREATE,
            headers: with(
                shop_a("products/create", &create),
                "Content-Encoding",
                "identity",
            ),
            body: create.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "Events delivery: topic also under its unprefixed name, another value",
            path: S_BY_HEADER,
            headers: with(
                as_events_delivery(shop_a("products/update", &create)),
                "shopify-topic",
                "products/delete",
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "topic header repeated (a proxy may read the other one)",
            path: S_BY_HEADER,
            headers: with(
                shop_a("products/create", &create),
                "X-Shopify-Topic",
                "products/delete",
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "shop domain header repeated, second names another store",
            path: S_CREATE,
            headers: with(
                shop_a("products/create", &create),
                "X-Shopify-Shop-Domain",
                SHOP_B.0,
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "event id header repeated",
            path: S_CREATE,
            headers: with(
                shop_a("products/create", &create),
                "X-Shopify-Event-Id",
                "another-event",
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "oversize header: 16 KiB event id, signed",
            path: S_CREATE,
            headers: replace(
                shop_a("products/create", &create),
                "X-Shopify-Event-Id",
                &"e".repeat(16 * 1024),
            ),
            body: create.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "oversize header: 16 KiB signature",
            path: S_CREATE,
            headers: replace(
                shop_a("products/create", &create),
                "X-Shopify-Hmac-Sha256",
                &"A".repeat(16 * 1024),
            ),
            body: create.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "signature in hex instead of base64",
            path: S_CREATE,
            headers: replace(
                shop_a("products/create", &create),
                "X-Shopify-Hmac-Sha256",
                &hex_of(&good_sig),
            ),
            body: create.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "valid signature from another store's secret",
            path: S_CREATE,
            headers: shopify("products/create", SHOP_A.0, &create, Some(SHOP_B.1)),
            body: create.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "unknown store, signed with a configured secret",
            path: S_CREATE,
            headers: shopify(
                "products/create",
                "evil.myshopify.com",
                &create,
                Some(SHOP_A.1),
            ),
            body: create.clone(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "topic header products/delete, body a full product (header route)",
            path: S_BY_HEADER,
            headers: shop_a("products/delete", &create),
            body: create.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "captured create replayed as products/update (headers are unsigned)",
            path: S_BY_HEADER,
            headers: shop_a("products/update", &create),
            body: create.clone(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "topic header products/create, body a delete payload (header route)",
            path: S_BY_HEADER,
            headers: shop_a("products/create", SHOPIFY_DELETE.as_bytes()),
            body: SHOPIFY_DELETE.as_bytes().to_vec(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "delete payload posted to the create route (delete topic header)",
            path: S_CREATE,
            headers: shop_a("products/delete", SHOPIFY_DELETE.as_bytes()),
            body: SHOPIFY_DELETE.as_bytes().to_vec(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "delete payload posted to the create route (create topic header)",
            path: S_CREATE,
            headers: shop_a("products/create", SHOPIFY_DELETE.as_bytes()),
            body: SHOPIFY_DELETE.as_bytes().to_vec(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "create payload posted to the delete route",
            path: S_DELETE,
            headers: shop_a("products/create", &create),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "unknown topic, signed (header route: kept raw)",
            path: S_BY_HEADER,
            headers: shop_a("orders/create", br#"{"id":1}"#),
            body: br#"{"id":1}"#.to_vec(),
            status: 200,
            kept: Kept::Event,
        },
        Case {
            name: "unknown topic, unsigned",
            path: S_BY_HEADER,
            headers: shopify("orders/create", SHOP_A.0, b"{}", None),
            body: b"{}".to_vec(),
            status: 401,
            kept: Kept::Nothing,
        },
        Case {
            name: "unknown route action",
            path: "/webhooks/shopify/products/archive",
            headers: shop_a("products/create", &create),
            body: create.clone(),
            status: 404,
            kept: Kept::Nothing,
        },
        Case {
            name: "unknown platform",
            path: "/webhooks/no-such-platform",
            headers: shop_a("products/create", &create),
            body: create.clone(),
            status: 404,
            kept: Kept::Nothing,
        },
        Case {
            name: "missing shop domain",
            path: S_CREATE,
            headers: without(shop_a("products/create", &create), "X-Shopify-Shop-Domain"),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "shop domain with a path",
            path: S_CREATE,
            headers: replace(
                shop_a("products/create", &create),
                "X-Shopify-Shop-Domain",
                "a-shop.myshopify.com/../x",
            ),
            body: create.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "empty body, signed",
            path: S_CREATE,
            headers: shop_a("products/create", b""),
            body: Vec::new(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "WooCommerce ping (unsigned form body)",
            path: W_BY_HEADER,
            headers: h(&[("Content-Type", "application/x-www-form-urlencoded")]),
            body: ping.clone(),
            status: 200,
            kept: Kept::Nothing,
        },
        Case {
            name: "WooCommerce ping body with a signature header (not a ping)",
            path: W_BY_HEADER,
            headers: h(&[("X-WC-Webhook-Signature", "AAAA")]),
            body: ping,
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "WooCommerce resource header contradicts the topic",
            path: W_UPDATE,
            headers: replace(
                woo("product.updated", &woo_body, WOO.1),
                "X-WC-Webhook-Resource",
                "order",
            ),
            body: woo_body.clone(),
            status: 400,
            kept: Kept::Nothing,
        },
        Case {
            name: "WooCommerce product.deleted topic, body a full product",
            path: W_BY_HEADER,
            headers: woo("product.deleted", &woo_body, WOO.1),
            body: woo_body.clone(),
            status: 200,
            kept: Kept::Failed,
        },
        Case {
            name: "WooCommerce error object instead of the product",
            path: W_UPDATE,
            headers: woo(
                "product.updated",
                br#"{"code":"woocommerce_rest_invalid_id","message":"x"}"#,
                WOO.1,
            ),
            body: br#"{"code":"woocommerce_rest_invalid_id","message":"x"}"#.to_vec(),
            status: 200,
            kept: Kept::Failed,
        },
    ]
}

#[actix_web::test]
async fn bad_input_catalogue() {
    let s = settings();
    let platforms = Platforms::from_settings(&s).unwrap();
    let mut failures = Vec::new();
    for case in catalogue() {
        let store = Arc::new(MemoryStore::new(100, 100));
        let state = AppState::new(&s, platforms.clone(), store.clone());
        let dispatcher = state.dispatcher(
            DispatchConfig::from_settings(&Settings::defaults().dispatch),
            Vec::new(),
        );
        let app = test::init_service(App::new().configure(move |c| configure(c, state))).await;
        let mut req = test::TestRequest::post().uri(case.path);
        for (k, v) in &case.headers {
            req = req.append_header((k.as_str(), v.as_str()));
        }
        let res = test::call_service(&app, req.set_payload(case.body.clone()).to_request()).await;
        let status = res.status();
        // What is kept in the end: bodies that are JSON but not a product
        // become `failed` when the dispatcher normalises them.
        dispatcher.run_once().await.unwrap();
        let events = store
            .list(&EventFilter::default(), None, 10)
            .await
            .unwrap()
            .events;
        let kept = match events.as_slice() {
            [] => Kept::Nothing,
            [e] if e.event.status == EventStatus::Failed => Kept::Failed,
            [e] if e.event.status == EventStatus::Delivered => Kept::Event,
            other => panic!("{}: unexpected store content {other:?}", case.name),
        };
        assert!(!status.is_server_error(), "{}: {status}", case.name);
        if status != StatusCode::from_u16(case.status).unwrap() || kept != case.kept {
            failures.push(format!(
                "{}: got {} {kept:?}, want {} {:?}",
                case.name,
                status.as_u16(),
                case.status,
                case.kept
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The cases that need a socket, against the real binary (its own
/// `client_request_timeout`, body timeout and HTTP/1 parser), one worker.
mod tcp {
    use std::io::{Read as _, Write as _};
    use std::net::{SocketAddr, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::support::{SAMPLE, SECRET, free_port, shopify_headers};

    const ADMIN: &str = "bad-input-admin-token-0123456789";
    const TIMEOUT_MS: u64 = 1000;

    struct Server(Child, SocketAddr);

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn start() -> Server {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_PORT", port.to_string())
            .env("SHOPIFY_WEBHOOK_SECRET", SECRET)
            .env("CATALOG_ADMIN_TOKEN", ADMIN)
            .env("CATALOG_DATABASE_URL", "memory://")
            .env("CATALOG_RATE_LIMIT__ENABLED", "false")
            .env("CATALOG_DISPATCH__ENABLED", "false")
            .env("CATALOG_SERVER__WORKERS", "1")
            .env("CATALOG_SERVER__BODY_LIMIT", "4096")
            .env("CATALOG_SERVER__BODY_TIMEOUT_MS", TIMEOUT_MS.to_string())
            .env(
                "CATALOG_SERVER__CLIENT_REQUEST_TIMEOUT_MS",
                TIMEOUT_MS.to_string(),
            )
            .env("CATALOG_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let server = Server(child, addr);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
                && r.status() == 200
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready");
    }

    /// Writes the parts (bytes, then a pause), then reads the status line.
    /// Returns it with the time from the first byte to the answer.
    async fn raw(addr: SocketAddr, parts: Vec<(Vec<u8>, Duration)>) -> (String, Duration) {
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s.set_nodelay(true).unwrap();
            for (bytes, pause) in parts {
                // The server may answer and close before everything is sent.
                if s.write_all(&bytes).is_err() {
                    break;
                }
                std::thread::sleep(pause);
            }
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            (line, started.elapsed())
        })
        .await
        .unwrap()
    }

    /// Byte-by-byte, `gap` apart.
    fn trickle(bytes: &[u8], gap: Duration) -> Vec<(Vec<u8>, Duration)> {
        bytes.iter().map(|b| (vec![*b], gap)).collect()
    }

    fn head(extra: &str) -> String {
        format!(
            "POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: x\r\n\
             X-Shopify-Topic: products/create\r\nX-Shopify-Shop-Domain: test-shop.myshopify.com\r\n\
             X-Shopify-Event-Id: raw\r\nX-Shopify-Hmac-Sha256: AAAA\r\n{extra}\r\n"
        )
    }

    async fn deliver(addr: SocketAddr, id: &str) -> (u16, Duration) {
        let started = Instant::now();
        let mut req = reqwest::Client::new()
            .post(format!("http://{addr}/webhooks/shopify/products/create"))
            .timeout(Duration::from_secs(10));
        for (k, v) in shopify_headers(id, SAMPLE.as_bytes(), SECRET) {
            req = req.header(k, v);
        }
        let status = req.body(SAMPLE).send().await.unwrap().status().as_u16();
        (status, started.elapsed())
    }

    async fn stored(addr: SocketAddr) -> usize {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("http://{addr}/admin/events?limit=500"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["events"].as_array().unwrap().len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_time_out_without_holding_the_worker() {
        let server = start().await;
        let addr = server.1;
        let gap = Duration::from_millis(50);

        // A body trickled byte by byte (Content-Length 200, 50 ms a byte:
        // 10 s if let run) while normal deliveries arrive on other connections.
        let body = vec![b'x'; 200];
        let mut parts = vec![(head("Content-Length: 200\r\n").into_bytes(), gap)];
        parts.extend(trickle(&body, gap));
        let slow_body = tokio::spawn(raw(addr, parts));
        // A head trickled byte by byte: the client_request_timeout.
        let slow_head = tokio::spawn(raw(
            addr,
            trickle(head("Content-Length: 2\r\n").as_bytes(), gap),
        ));
        // A body promised by Content-Length and never sent.
        let stalled = tokio::spawn(raw(
            addr,
            vec![
                (head("Content-Length: 100\r\n").into_bytes(), Duration::ZERO),
                (b"{\"id\":".to_vec(), Duration::ZERO),
            ],
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..5 {
            let (status, took) = deliver(addr, &format!("during-slow-{i}")).await;
            assert_eq!(status, 200);
            assert!(
                took < Duration::from_millis(500),
                "a normal delivery took {took:?}"
            );
        }
        let limit = Duration::from_millis(TIMEOUT_MS * 3);
        for (name, task) in [
            ("slow body", slow_body),
            ("slow head", slow_head),
            ("stalled body", stalled),
        ] {
            let (status, took) = task.await.unwrap();
            assert!(status.contains("408"), "{name}: {status:?} after {took:?}");
            assert!(took < limit, "{name}: answered after {took:?}");
        }
        assert_eq!(
            stored(addr).await,
            5,
            "only the normal deliveries are stored"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversize_bodies_and_heads_over_tcp() {
        let server = start().await;
        let addr = server.1;

        // Over the limit with a Content-Length: refused before reading.
        let (status, _) = raw(
            addr,
            vec![(
                head("Content-Length: 1000000\r\n").into_bytes(),
                Duration::ZERO,
            )],
        )
        .await;
        assert!(status.contains("413"), "{status}");

        // Chunked, no Content-Length, 8 KiB in 1 KiB chunks: 413 all the same.
        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
        let mut parts = vec![(
            head("Transfer-Encoding: chunked\r\n").into_bytes(),
            Duration::ZERO,
        )];
        for _ in 0..8 {
            parts.push((chunk.clone().into_bytes(), Duration::from_millis(5)));
        }
        parts.push((b"0\r\n\r\n".to_vec(), Duration::ZERO));
        let (status, _) = raw(addr, parts).await;
        assert!(status.contains("413"), "{status}");

        // Heads up to actix's 128 KiB buffer are parsed (a 64 KiB header
        // reaches the app: 401 here); a larger head is refused by the parser.
        for (kib, want) in [(64, "401"), (200, "431")] {
            let big = format!(
                "X-Shopify-Webhook-Id: {}\r\nContent-Length: 2\r\n",
                "w".repeat(kib * 1024)
            );
            let mut request = head(&big).into_bytes();
            request.extend(b"{}");
            let (status, _) = raw(addr, vec![(request, Duration::ZERO)]).await;
            assert!(status.contains(want), "{kib} KiB header: {status}");
        }

        // 200 headers (the parser takes 96).
        let many: String = (0..200).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
        let (status, _) = raw(addr, vec![(head(&many).into_bytes(), Duration::ZERO)]).await;
        assert!(status.contains("431"), "{status}");

        // The server is unharmed and nothing was stored.
        assert_eq!(deliver(addr, "after-oversize").await.0, 200);
        assert_eq!(stored(addr).await, 1);
    }
}
