//! `catalog webhook sign|send` and `catalog events`, against the real server.

use catalog_core::webhook::sign;
use secrecy::SecretString;

use crate::server;
use crate::support::{catalog, err, out, run};

const SHOPIFY_SECRET: &str = "shopify-webhook-TOPSECRET";
const WOO_SECRET: &str = "woo-webhook-TOPSECRET";
const ADMIN_TOKEN: &str = "admin-token-0123456789-TOPSECRET";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_prints_the_platform_headers_and_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let body = br#"{"id":1,"title":"x"}"#;
    std::fs::write(dir.path().join("body.json"), body).unwrap();
    let mut cmd = catalog(dir.path());
    cmd.env("WH_SECRET", SHOPIFY_SECRET).args([
        "webhook",
        "sign",
        "--platform",
        "shopify",
        "--topic",
        "products/update",
        "--secret-env",
        "WH_SECRET",
        "body.json",
    ]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    let expected = format!(
        "X-Shopify-Hmac-Sha256: {}",
        sign(SHOPIFY_SECRET.as_bytes(), body)
    );
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("X-Shopify-Topic: products/update"), "{text}");
    assert!(text.contains("X-Shopify-Event-Id: "), "{text}");
    assert!(!text.contains(SHOPIFY_SECRET));

    // A Shopify secret pasted with a newline signs as the server reads it:
    // trimmed (the signature used to be of the untrimmed secret, 401).
    let mut cmd = catalog(dir.path());
    cmd.env("WH_SECRET", format!("{SHOPIFY_SECRET}\n")).args([
        "webhook",
        "sign",
        "--platform",
        "shopify",
        "--secret-env",
        "WH_SECRET",
        "body.json",
    ]);
    let o = run(cmd).await;
    assert!(out(&o).contains(&expected), "{}", out(&o));

    let mut cmd = catalog(dir.path());
    cmd.env("WH_SECRET", WOO_SECRET).args([
        "webhook",
        "sign",
        "-p",
        "woocommerce",
        "--secret-env",
        "WH_SECRET",
        "body.json",
    ]);
    let o = run(cmd).await;
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "X-WC-Webhook-Signature: {}",
            sign(WOO_SECRET.as_bytes(), body)
        )),
        "{text}"
    );
    assert!(
        text.contains("X-WC-Webhook-Topic: product.created"),
        "{text}"
    );

    let mut cmd = catalog(dir.path());
    cmd.args([
        "webhook",
        "sign",
        "-p",
        "shopify",
        "--secret-env",
        "UNSET",
        "body.json",
    ]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("UNSET"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_delivery_is_accepted_and_shows_in_events() {
    let mut settings = server::settings(ADMIN_TOKEN);
    settings.shopify.webhook_secret = Some(SecretString::from(SHOPIFY_SECRET));
    let srv = server::start(settings);
    let dir = tempfile::tempdir().unwrap();

    // The sample payload, signed with the secret from the environment (the
    // seed's SHOPIFY_WEBHOOK_SECRET, read like the server does).
    let mut cmd = catalog(dir.path());
    cmd.env("SHOPIFY_WEBHOOK_SECRET", SHOPIFY_SECRET).args([
        "webhook",
        "send",
        "--platform",
        "shopify",
        "--topic",
        "products/create",
        "--to",
        &format!("{}/webhooks/shopify/products/create", srv.url),
    ]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    let text = out(&o);
    assert!(text.contains("HTTP 200"), "{text}");
    assert!(text.contains("\"stored\""), "{text}");
    assert!(!text.contains(SHOPIFY_SECRET) && !err(&o).contains(SHOPIFY_SECRET));

    // Fresh ids: the same sample again is a new event, not a duplicate.
    let mut cmd = catalog(dir.path());
    cmd.env("SHOPIFY_WEBHOOK_SECRET", SHOPIFY_SECRET)
        .args(["webhook", "send", "-p", "shopify", "-t", "update", "--to"])
        .arg(format!("{}/webhooks/shopify/products/update", srv.url));
    let o = run(cmd).await;
    assert!(out(&o).contains("\"stored\""), "{}", out(&o));

    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["events", "list", "--server", &srv.url]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let table = out(&o);
    assert!(table.contains("product.created"), "{table}");
    assert!(table.contains("product.updated"), "{table}");
    assert!(table.contains("788032119674292922"), "{table}");
    assert!(table.contains("example.myshopify.com"), "{table}");
    assert!(table.contains("2 events"), "{table}");

    let mut cmd = catalog(dir.path());
    cmd.env("MY_TOKEN", ADMIN_TOKEN).args([
        "events",
        "list",
        "--server",
        &srv.url,
        "--token-env",
        "MY_TOKEN",
        "--topic",
        "product.created",
        "--json",
    ]);
    let o = run(cmd).await;
    let events: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(events.len(), 1);
    let id = events[0]["id"].as_str().unwrap().to_owned();

    // The topic in the platform's spelling, as `webhook send` takes it (an
    // outside audit got "0 events" for it), and the store id as a URL.
    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN).args([
        "events",
        "list",
        "--server",
        &srv.url,
        "--topic",
        "products/create",
        "--platform",
        "shopify",
        "--store-id",
        "https://Example.myshopify.com/",
        "--json",
    ]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let events: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(events.len(), 1, "{}", out(&o));
    assert_eq!(events[0]["id"], id);

    // A status or platform the server has no such thing as: a bad command
    // line (2), naming the flag, before any request.
    for args in [["--status", "bogus"], ["--platform", "magento"]] {
        let mut cmd = catalog(dir.path());
        cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN)
            .args(["events", "list", "--server", &srv.url])
            .args(args);
        let o = run(cmd).await;
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(err(&o).contains(args[0]), "{}", err(&o));
    }

    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["events", "show", &id, "--server", &srv.url]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("raw body:"), "{}", out(&o));
    assert!(out(&o).contains("Example T-Shirt"), "{}", out(&o));

    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["events", "replay", &id, "--server", &srv.url]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("queued for replay"), "{}", out(&o));

    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN).args([
        "events",
        "show",
        "no-such-event",
        "--server",
        &srv.url,
    ]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_the_server_exit_5_without_showing_secrets() {
    let mut settings = server::settings(ADMIN_TOKEN);
    settings.woocommerce.webhook_secret = Some(SecretString::from(WOO_SECRET));
    let srv = server::start(settings);
    let dir = tempfile::tempdir().unwrap();

    // A WooCommerce delivery signed with the right secret is stored...
    let mut cmd = catalog(dir.path());
    cmd.env("WOOCOMMERCE_WEBHOOK_SECRET", WOO_SECRET)
        .args([
            "webhook",
            "send",
            "-p",
            "woocommerce",
            "-t",
            "product.updated",
            "--to",
        ])
        .arg(format!("{}/webhooks/woocommerce", srv.url));
    let o = run(cmd).await;
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    assert!(out(&o).contains("\"stored\""), "{}", out(&o));

    // The same product body again is a duplicate (WooCommerce deliveries are
    // deduplicated by content). No --to: the URL comes from APP_PORT, as the
    // server's own port does.
    let port = srv.url.rsplit(':').next().unwrap().to_owned();
    let mut cmd = catalog(dir.path());
    cmd.env("WOOCOMMERCE_WEBHOOK_SECRET", WOO_SECRET)
        .env("APP_PORT", &port)
        .args(["webhook", "send", "-p", "woo", "-t", "updated"]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}\n{}", out(&o), err(&o));
    assert!(
        out(&o).contains("/webhooks/woocommerce/products/update"),
        "{}",
        out(&o)
    );
    assert!(out(&o).contains("\"duplicate\""), "{}", out(&o));

    // ...one signed with another secret is refused.
    let wrong = "wrong-TOPSECRET-value";
    let mut cmd = catalog(dir.path());
    cmd.env("OTHER", wrong)
        .args([
            "--verbose",
            "webhook",
            "send",
            "-p",
            "woocommerce",
            "--secret-env",
            "OTHER",
            "--to",
        ])
        .arg(format!("{}/webhooks/woocommerce/products/create", srv.url));
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(5), "{}\n{}", out(&o), err(&o));
    assert!(out(&o).contains("HTTP 401"), "{}", out(&o));
    assert!(err(&o).contains("--secret-env"), "{}", err(&o));
    for s in [wrong, WOO_SECRET] {
        assert!(!out(&o).contains(s) && !err(&o).contains(s));
    }

    // A wrong admin token.
    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", "not-the-admin-token-TOPSECRET")
        .args(["--verbose", "events", "list", "--server", &srv.url]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(err(&o).contains("CATALOG_ADMIN_TOKEN"), "{}", err(&o));
    assert!(!err(&o).contains("TOPSECRET"), "{}", err(&o));

    // No admin token at all.
    let mut cmd = catalog(dir.path());
    cmd.args(["events", "list", "--server", &srv.url]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));

    // No server there.
    let mut cmd = catalog(dir.path());
    cmd.env("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN).args([
        "events",
        "list",
        "--server",
        "http://127.0.0.1:1",
    ]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
}
