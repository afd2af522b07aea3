//! No secret in any log line, error message (Display and Debug), `/metrics`
//! output or admin API answer, whatever goes wrong.
//!
//! Two halves: the real binary at debug level (its whole output captured)
//! with every secret the configuration can hold, driven through failures on
//! every route and a downstream sink that answers 500; and the Shopify and
//! WooCommerce clients, under a captured debug-level tracing subscriber,
//! against a fake platform that answers 401, 500, garbage or too late.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use catalog_core::webhook::sign;
use futures::StreamExt as _;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{SAMPLE, free_port};

// Distinctive values: each contains `LEAKCANARY`, so one search finds any.
const SHOPIFY_SHARED: &str = "shpss_LEAKCANARY_shared_webhook_secret";
const SHOP_A_NEW: &str = "shpss_LEAKCANARY_store_a_new";
const SHOP_A_OLD: &str = "shpss_LEAKCANARY_store_a_old";
const CLIENT_SECRET: &str = "LEAKCANARY_client_secret_0001";
const ACCESS_TOKEN: &str = "shpat_LEAKCANARY_access_token_0002";
const WOO_SECRET: &str = "woo_LEAKCANARY_webhook_secret";
const CONSUMER_KEY: &str = "ck_LEAKCANARY_consumer_key_0003";
const CONSUMER_SECRET: &str = "cs_LEAKCANARY_consumer_secret_0004";
const ADMIN_TOKEN: &str = "admin_LEAKCANARY_token_0005";
const SINK_KEY: &[u8] = b"LEAKCANARY_sink_key_0006";
/// Stands for customer data in a payload value.
const PII: &str = "PII-MARKER-";
const SHOP_A: &str = "leak-a.myshopify.com";
const SITE: &str = "https://shop.example.com";

fn sink_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(SINK_KEY)
    )
}

/// Every secret, as configured and in the encodings that could slip out.
fn secrets() -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v: Vec<String> = [
        SHOPIFY_SHARED,
        SHOP_A_NEW,
        SHOP_A_OLD,
        CLIENT_SECRET,
        ACCESS_TOKEN,
        WOO_SECRET,
        CONSUMER_KEY,
        CONSUMER_SECRET,
        ADMIN_TOKEN,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(sink_secret());
    v.push(String::from_utf8_lossy(SINK_KEY).into_owned());
    // HTTP Basic of the consumer key pair.
    v.push(b64.encode(format!("{CONSUMER_KEY}:{CONSUMER_SECRET}")));
    v.push("LEAKCANARY".to_owned());
    v
}

fn assert_clean(what: &str, text: &str) {
    for s in secrets() {
        assert!(
            !text.contains(&s),
            "{what} contains secret {s:?}:\n{}",
            text.lines()
                .filter(|l| l.contains(&s))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn config(sink_url: &str) -> String {
    format!(
        r#"
[database]
url = "memory://"

[rate_limit]
enabled = false

[dispatch]
poll_interval_ms = 50
backoff_base_ms = 50
max_attempts = 3
log = true

[dispatch.http]
url = "{sink_url}"
secret = "{sink}"
timeout_ms = 500

[[shopify.stores]]
id = "{SHOP_A}"
secrets = ["{SHOP_A_NEW}", "{SHOP_A_OLD}"]
client_id = "leak-client-id"
client_secret = "{CLIENT_SECRET}"
access_token = "{ACCESS_TOKEN}"

[[shopify.stores]]
id = "leak-b.myshopify.com"
client_secret = "{CLIENT_SECRET}"

[[woocommerce.stores]]
id = "{SITE}"
secrets = ["{WOO_SECRET}"]
consumer_key = "{CONSUMER_KEY}"
consumer_secret = "{CONSUMER_SECRET}"
auth = "query_string"
currency = "USD"
"#,
        sink = sink_secret()
    )
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a request got: status and body, for the leak check.
/// The binary on the memory store in `dir`, with the log filter `filter`
/// and `extra` variables, writing its log (stdout and stderr) to `log_path`.
fn logging_server(
    dir: &std::path::Path,
    log_path: &std::path::Path,
    port: u16,
    filter: &str,
    extra: &[(&str, &str)],
) -> Server {
    let log = std::fs::File::create(log_path).unwrap();
    Server(
        Command::new(env!("CARGO_BIN_EXE_webhook-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_PORT", port.to_string())
            .env("CATALOG_DATABASE_URL", "memory://")
            .env("RUST_LOG", filter)
            .envs(extra.iter().copied())
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn send(req: reqwest::RequestBuilder, seen: &mut String) -> u16 {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    for (k, v) in res.headers() {
        seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
    }
    seen.push_str(&res.text().await.unwrap_or_default());
    seen.push('\n');
    status
}

fn shopify(
    client: &reqwest::Client,
    url: &str,
    shop: &str,
    body: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Shopify-Topic", "products/create")
        .header("X-Shopify-Shop-Domain", shop)
        .header("X-Shopify-Event-Id", format!("leak-{}", body.len()))
        .header("X-Shopify-Webhook-Id", "leak-webhook")
        .header(
            "X-Shopify-Hmac-Sha256",
            sign(secret.as_bytes(), body.as_bytes()),
        )
        .body(body.to_owned())
}

fn woo(client: &reqwest::Client, url: &str, body: &str, secret: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-WC-Webhook-Source", format!("{SITE}/"))
        .header("X-WC-Webhook-Topic", "product.updated")
        .header("X-WC-Webhook-Resource", "product")
        .header("X-WC-Webhook-Event", "updated")
        .header("X-WC-Webhook-ID", "27")
        .header("X-WC-Webhook-Delivery-ID", "leak-delivery")
        .header(
            "X-WC-Webhook-Signature",
            sign(secret.as_bytes(), body.as_bytes()),
        )
        .body(body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_never_shows_a_secret() {
    let sink = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500).set_body_string("downstream broke"))
        .mount(&sink)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("leak.toml");
    std::fs::write(&config_path, config(&format!("{}/events", sink.uri()))).unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_webhook-server"))
            .arg("--config")
            .arg(&config_path)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_PORT", port.to_string())
            .env("SHOPIFY_WEBHOOK_SECRET", SHOPIFY_SHARED)
            .env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "debug")
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let create = format!("{base}/webhooks/shopify/products/create");
    let by_header = format!("{base}/webhooks/shopify");
    let woo_update = format!("{base}/webhooks/woocommerce/products/update");
    let woo_product = include_str!("../fixtures/woocommerce_product_794.json");
    let mut seen = String::new();
    let s = &mut seen;
    // Accepted, then dispatched to a sink that answers 500.
    assert_eq!(
        send(shopify(&client, &create, SHOP_A, SAMPLE, SHOP_A_NEW), s).await,
        200
    );
    assert_eq!(
        send(woo(&client, &woo_update, woo_product, WOO_SECRET), s).await,
        200
    );
    // Rotation: the old secret still verifies.
    let rotated = SAMPLE.replace("Example T-Shirt", "Rotated");
    assert_eq!(
        send(shopify(&client, &create, SHOP_A, &rotated, SHOP_A_OLD), s).await,
        200
    );
    // Verified but unreadable: stored as failed, warned about.
    assert_eq!(
        send(
            shopify(&client, &create, SHOP_A, "{not json", SHOP_A_NEW),
            s
        )
        .await,
        200
    );
    // Verified, with a long value where the product or a price should be:
    // the parser's message (logged, stored) quotes an excerpt, not the value.
    let pii_body = format!("{:?}", PII.repeat(500));
    assert_eq!(
        send(shopify(&client, &create, SHOP_A, &pii_body, SHOP_A_NEW), s).await,
        200
    );
    let pii_price = SAMPLE.replacen(
        r#""price": "19.99""#,
        &format!(r#""price": "{}""#, PII.repeat(200)),
        1,
    );
    // An unreadable trigger time on an unsigned request: read before the
    // signature is checked, so logged (debug) by an excerpt only (an outside
    // audit wrote 100 KB a request to the log at warn).
    assert_eq!(
        send(
            shopify(&client, &create, SHOP_A, SAMPLE, "not-the-secret")
                .header("X-Shopify-Triggered-At", PII.repeat(500)),
            s
        )
        .await,
        401
    );
    assert_ne!(pii_price, SAMPLE, "the sample has a price to replace");
    assert_eq!(
        send(shopify(&client, &create, SHOP_A, &pii_price, SHOP_A_NEW), s).await,
        200
    );
    // Refusals on every path.
    assert_eq!(
        send(shopify(&client, &create, SHOP_A, SAMPLE, "wrong"), s).await,
        401
    );
    assert_eq!(
        send(
            shopify(
                &client,
                &create,
                "leak-zz.myshopify.com",
                SAMPLE,
                SHOPIFY_SHARED
            ),
            s
        )
        .await,
        401
    );
    assert_eq!(
        send(shopify(&client, &create, SHOP_A, SAMPLE, SHOPIFY_SHARED), s).await,
        401
    );
    assert_eq!(
        send(
            shopify(&client, &create, "bad domain!", SAMPLE, SHOP_A_NEW),
            s
        )
        .await,
        400
    );
    assert_eq!(
        send(
            shopify(&client, &by_header, SHOP_A, SAMPLE, SHOP_A_NEW)
                .header("X-Shopify-Hmac-Sha256", "AAAA"),
            s
        )
        .await,
        400
    );
    assert_eq!(
        send(woo(&client, &woo_update, woo_product, "wrong"), s).await,
        401
    );
    assert_eq!(
        send(woo(&client, &woo_update, woo_product, SHOP_A_NEW), s).await,
        401
    );
    assert_eq!(send(client.post(&create).body(SAMPLE), s).await, 401);
    assert_eq!(
        send(
            client
                .post(format!("{base}/webhooks/woocommerce"))
                .body("webhook_id=27"),
            s
        )
        .await,
        200
    );
    assert_eq!(
        send(client.post(format!("{base}/webhooks/nope")).body("{}"), s).await,
        404
    );
    // Admin: refused without, or with a wrong, token (even one that starts
    // like the real one).
    let admin = format!("{base}/admin/events");
    assert_eq!(send(client.get(&admin), s).await, 401);
    assert_eq!(
        send(client.get(&admin).bearer_auth("wrong-token-0123456789"), s).await,
        401
    );
    assert_eq!(
        send(client.get(&admin).bearer_auth(format!("{ADMIN_TOKEN}x")), s).await,
        401
    );
    assert_eq!(
        send(
            client
                .get(&admin)
                .header("Authorization", format!("Basic {ADMIN_TOKEN}")),
            s
        )
        .await,
        401
    );
    assert_eq!(
        send(
            client
                .get(format!("{admin}?status=bogus"))
                .bearer_auth(ADMIN_TOKEN),
            s
        )
        .await,
        400
    );
    assert_eq!(
        send(
            client
                .get(format!("{admin}?cursor=x"))
                .bearer_auth(ADMIN_TOKEN),
            s
        )
        .await,
        400
    );
    assert_eq!(
        send(
            client.get(format!("{admin}/nope")).bearer_auth(ADMIN_TOKEN),
            s
        )
        .await,
        404
    );
    // Give the dispatcher time for its failing attempts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let list: serde_json::Value = client
        .get(format!("{admin}?limit=500"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    s.push_str(&list.to_string());
    let events = list["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 6, "{list}");
    for e in &events {
        let id = e["id"].as_str().unwrap();
        assert_eq!(
            send(
                client.get(format!("{admin}/{id}")).bearer_auth(ADMIN_TOKEN),
                s
            )
            .await,
            200
        );
        assert_eq!(
            send(
                client
                    .post(format!("{admin}/{id}/replay"))
                    .bearer_auth(ADMIN_TOKEN),
                s
            )
            .await,
            202
        );
    }
    for path in ["/metrics", "/healthz", "/readyz", "/openapi.json", "/docs/"] {
        send(client.get(format!("{base}{path}")), s).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stop it cleanly so the shutdown lines are in the log too.
    let pid = _server.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut server = _server;
    while server.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = std::fs::read_to_string(&log_path).unwrap();
    // The log is real: debug lines, refusals and the sink's failures are there.
    assert!(logs.contains("DEBUG"), "{logs}");
    assert!(logs.contains("request refused"), "{logs}");
    // A signature refusal is a warning (once a minute), naming the store.
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("the signature matches no secret of the store")
            && l.contains(SHOP_A)),
        "{logs}"
    );
    // So is a delivery from a store that is not configured, naming it.
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("the store is not configured")
            && l.contains("leak-zz.myshopify.com")),
        "{logs}"
    );
    assert!(logs.contains("500"), "{logs}");
    assert!(
        seen.contains("webhook_deliveries") || seen.contains("# TYPE"),
        "{seen}"
    );
    assert_clean("the server log", &logs);
    // Both long values were reported (at warn), each by an excerpt only.
    assert!(logs.contains("stored as failed"), "{logs}");
    assert!(logs.contains("could not be normalised"), "{logs}");
    assert!(logs.contains(PII), "{logs}");
    assert!(
        !logs.contains(&PII.repeat(4)),
        "a log line quotes a whole value: {}",
        logs.lines()
            .filter(|l| l.contains(&PII.repeat(4)))
            .map(|l| &l[..l.len().min(300)])
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_clean("the HTTP answers", &seen);
    // The sink got the events, signed with a key it never saw in clear.
    let received = sink.received_requests().await.unwrap_or_default();
    assert!(!received.is_empty());
    for r in &received {
        let text = format!("{:?}{}", r.headers, String::from_utf8_lossy(&r.body));
        assert_clean("a forwarded event", &text);
    }
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The fake platform's answers.
fn answers() -> Vec<(&'static str, ResponseTemplate)> {
    vec![
        (
            "401",
            ResponseTemplate::new(401)
                .set_body_string(r#"{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}"#),
        ),
        ("403", ResponseTemplate::new(403).set_body_string(r#"{"code":"woocommerce_rest_cannot_view","message":"Sorry, you cannot list resources.","data":{"status":403}}"#)),
        ("500", ResponseTemplate::new(500).set_body_string("<html>Internal Server Error</html>")),
        ("garbage", ResponseTemplate::new(200).set_body_string("\u{1}\u{2}<html>{not json")),
        ("wrong json", ResponseTemplate::new(200).set_body_string(r#"{"data":{"products":7},"access_token":3}"#)),
        ("timeout", ResponseTemplate::new(200).set_delay(Duration::from_secs(3))),
    ]
}

async fn errors_of(client: &dyn catalog_core::Catalog) -> String {
    let mut out = String::new();
    match client.get_product("788032119674292922").await {
        Ok(p) => out.push_str(&format!("ok {:?}\n", p.id)),
        Err(e) => {
            out.push_str(&format!("{e}\n{e:?}\n"));
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                out.push_str(&format!("{s}\n{s:?}\n"));
                source = s.source();
            }
        }
    }
    if let Some(Err(e)) = client.stream_products().next().await {
        out.push_str(&format!("{e}\n{e:?}\n"));
    }
    out
}

#[tokio::test]
async fn the_clients_never_show_a_secret() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut errors = String::new();
    for (name, answer) in answers() {
        let server = MockServer::start().await;
        Mock::given(any()).respond_with(answer).mount(&server).await;
        let shopify = |auth: catalog_shopify::ShopifyAuth| {
            catalog_shopify::ShopifyClient::builder()
                .store_url("leak-a.myshopify.com")
                .base_url(server.uri())
                .auth(auth)
                .timeout(Duration::from_millis(300))
                .max_retries(1)
                .retry_backoff(Duration::from_millis(1), Duration::from_millis(5))
                .build()
                .unwrap()
        };
        for client in [
            shopify(catalog_shopify::ShopifyAuth::access_token(ACCESS_TOKEN)),
            shopify(catalog_shopify::ShopifyAuth::client_credentials(
                "leak-client-id",
                CLIENT_SECRET,
            )),
        ] {
            errors.push_str(&format!("shopify {name}: {client:?}\n"));
            errors.push_str(&errors_of(&client).await);
        }
        for mode in [
            catalog_woocommerce::AuthMode::Basic,
            catalog_woocommerce::AuthMode::QueryString,
            catalog_woocommerce::AuthMode::OAuth1,
        ] {
            let client = catalog_woocommerce::WooCommerceClient::builder()
                .store_url(SITE)
                .base_url(server.uri())
                .credentials(CONSUMER_KEY, CONSUMER_SECRET)
                .auth_mode(mode)
                .currency(catalog_core::CurrencyCode::new("USD").unwrap())
                .timeout(Duration::from_millis(300))
                .max_retries(1)
                .retry_backoff(Duration::from_millis(1), Duration::from_secs(30))
                .build()
                .unwrap();
            errors.push_str(&format!("woocommerce {name} {mode:?}: {client:?}\n"));
            errors.push_str(&errors_of(&client).await);
        }
    }
    drop(_guard);
    let logs = logs.text();
    // The checks saw real failures and real log lines.
    for expect in ["401", "500", "timed out", "decode"] {
        assert!(
            errors.to_ascii_lowercase().contains(expect),
            "no {expect} error:\n{errors}"
        );
    }
    assert!(logs.contains("DEBUG"), "{logs}");
    // The check itself bites.
    assert!(std::panic::catch_unwind(|| assert_clean("control", ACCESS_TOKEN)).is_err());
    assert_clean("a client error", &errors);
    assert_clean("the client log", &logs);
}

/// Regressions (found by the `config_loader` fuzz target): a TOML syntax
/// error quoted the offending line, and a type error quoted the refused
/// value, so a typo on a secret's line printed the secret in the start-up
/// error.
#[test]
fn a_config_syntax_error_does_not_quote_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    for text in [
        format!("[shopify]\nwebhook_secret = [\"x= \"{SHOPIFY_SHARED}\"\n"),
        format!("[admin]\ntoken = \"{ADMIN_TOKEN}\n"),
        format!("[[woocommerce.stores]]\nid = \"{SITE}\"\nsecrets = [\"{WOO_SECRET}\" \"x\"]\n"),
        format!("[[shopify.stores]]\nid = \"{SHOP_A}\"\nsecrets = \"{SHOP_A_NEW}\"\n"),
        format!("[shopify]\nwebhook_secret = {{ value = \"{SHOPIFY_SHARED}\" }}\n"),
    ] {
        std::fs::write(&path, text).unwrap();
        let err = webhook_server::settings::Settings::load_from(Some(&path), &[]).unwrap_err();
        let shown = format!("{err:#} {err:?}");
        assert!(
            shown.contains("line") || shown.contains("for key"),
            "{shown}"
        );
        assert_clean("a configuration error", &shown);
    }
}

/// The binary's start-up refusals: a malformed `.env` is named by position,
/// not quoted (its line may be a secret's), and a log filter that would
/// silence everything is refused naming its variable.
#[test]
fn start_up_refusals_name_the_place_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let run = |dir: &std::path::Path, envs: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_PORT", "0")
            .env("CATALOG_DATABASE_URL", "memory://")
            .envs(envs.iter().copied())
            .current_dir(dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    std::fs::write(
        dir.path().join(".env"),
        format!("APP_HOST=127.0.0.1\nWOOCOMMERCE_WEBHOOK_SECRET=\"{WOO_SECRET}\n"),
    )
    .unwrap();
    let (ok, text) = run(dir.path(), &[]);
    assert!(!ok, "{text}");
    assert!(text.contains(".env"), "{text}");
    assert_clean("a .env error", &text);

    let clean = tempfile::tempdir().unwrap();
    for (var, value) in [("RUST_LOG", "verbose"), ("CATALOG_LOG__LEVEL", "inof")] {
        let (ok, text) = run(clean.path(), &[(var, value)]);
        assert!(!ok, "{var}={value} accepted: {text}");
        assert!(text.contains(var), "{var}: {text}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage: webhook-server [--config FILE]")
    );
}

/// Exit status 2 for a command line the server cannot read, 1 for refused
/// settings, and no backtrace on either when `RUST_BACKTRACE` is set (an
/// outside audit got a full stack trace after every start-up message). A
/// `dispatch.file` that cannot be appended to stops start-up naming the key
/// (it used to start, then dead-letter every event).
#[test]
fn start_up_errors_exit_with_their_code_and_no_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let out = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_BACKTRACE", "1")
            .env("APP_PORT", "0")
            .env("CATALOG_DATABASE_URL", "memory://")
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, text) = run(&["--bogus"], &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("--bogus") && text.contains("usage"), "{text}");
    let under_a_file = dir.path().join("a-file/events.jsonl");
    let under_a_file = under_a_file.to_str().unwrap();
    let (code, text) = run(&[], &[("CATALOG_DISPATCH__FILE", under_a_file)]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("dispatch.file (CATALOG_DISPATCH__FILE)") && text.contains(under_a_file),
        "{text}"
    );
    for text in [run(&["--bogus"], &[]).1, text] {
        assert!(
            !text.contains("stack backtrace") && !text.contains("Stack backtrace"),
            "{text}"
        );
    }
}

/// Regression (found by an outside audit): async-nats logged the server
/// address with its user and password at debug, on every connection
/// attempt; the server caps that dependency's logging whatever the filter.
#[cfg(feature = "nats")]
#[test]
fn nats_credentials_stay_out_of_debug_logs() {
    const NATS_PASSWORD: &str = "LEAKCANARY_nats_password_0007";
    // Nothing listens on port 1: the sink keeps trying to connect, logging
    // each attempt.
    let url = format!("nats://natsuser:{NATS_PASSWORD}@127.0.0.1:1");
    for filter in ["trace", "debug,async_nats=trace"] {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("server.log");
        let _server = logging_server(
            dir.path(),
            &log_path,
            free_port(),
            filter,
            &[("CATALOG_NATS__URL", url.as_str())],
        );
        // Until the sink has tried a few times (or 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            std::thread::sleep(Duration::from_millis(200));
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.to_ascii_lowercase().matches("nats").count() >= 3 || Instant::now() > deadline {
                break text;
            }
        };
        assert!(
            text.to_ascii_lowercase().contains("nats"),
            "{filter}: {text}"
        );
        assert!(
            !text.contains(NATS_PASSWORD),
            "{filter}: {}",
            text.lines()
                .filter(|l| l.contains(NATS_PASSWORD))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A malformed request from anyone (two `Content-Length` headers) is a 400
/// for the client and no `error` line in the server's log (the level is
/// kept for the server's own failures), unless the filter asks for
/// actix-http's lines.
#[test]
fn malformed_requests_do_not_write_error_lines() {
    use std::io::{Read as _, Write as _};
    for (filter, shown) in [("info", false), ("info,actix_http=error", true)] {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("server.log");
        let port = free_port();
        let _server = logging_server(dir.path(), &log_path, port, filter, &[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut conn = loop {
            if let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                break c;
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        conn.write_all(
            b"POST /webhooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        )
        .unwrap();
        let mut answer = [0u8; 64];
        let n = conn.read(&mut answer).unwrap_or(0);
        assert!(
            String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 400"),
            "{filter}: {}",
            String::from_utf8_lossy(&answer[..n])
        );
        std::thread::sleep(Duration::from_millis(300));
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        if shown {
            assert!(
                errors.iter().any(|l| l.contains("actix_http")),
                "{filter}: {text}"
            );
        } else {
            assert!(errors.is_empty(), "{filter}: {errors:?}");
        }
    }
}

/// With port 0 the system picks the port: the `listening` line says which
/// (it said `127.0.0.1:0`), and the server answers there.
#[tokio::test]
async fn port_0_logs_the_port_the_system_picked() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let _server = logging_server(dir.path(), &log_path, 0, "info", &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let found = text
            .lines()
            .filter(|l| l.contains("listening"))
            .find_map(|l| l.split("127.0.0.1:").nth(1))
            .and_then(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse()
                    .ok()
            });
        if let Some(port) = found {
            break port;
        }
        assert!(Instant::now() < deadline, "no listening line: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(port, 0);
    let res = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// SIGHUP does not stop the server (its default action ended the process
/// at once, cutting requests in flight): it is logged and ignored, and the
/// server goes on answering.
#[cfg(unix)]
#[tokio::test]
async fn sighup_is_logged_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let port = free_port();
    let mut server = logging_server(dir.path(), &log_path, port, "info", &[]);
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(&url).await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let status = Command::new("kill")
            .args(["-HUP", &server.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the server stopped on SIGHUP"
        );
    }
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(text.matches("SIGHUP ignored").count(), 2, "{text}");
}
