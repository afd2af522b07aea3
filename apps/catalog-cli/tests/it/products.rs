//! `catalog products get|list`, tables and JSON, from a config file.

use crate::shopify_fake::{CLIENT_ID, CLIENT_SECRET, FakeProduct, FakeShopify, Options};
use crate::support::{catalog, err, out, run, woo, woo_env};
use crate::woo_fake::{Accept, FakeStore, KEY, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woocommerce_list_and_get_as_table_and_json() {
    let store = FakeStore::new(Accept::OAuth1);
    for id in 1..=5 {
        store.add_simple(id, "9.50");
    }
    store.add_variable(7, 3);
    let (server, _store) = woo(store).await;
    let dir = tempfile::tempdir().unwrap();

    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["products", "list", "--limit", "3"]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let table = out(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("TITLE"),
        "{table}"
    );
    assert_eq!(lines.len(), 5, "header, 3 rows, summary:\n{table}");
    assert!(lines[1].contains("9.50 EUR"), "{table}");
    assert!(lines[4].contains("3 of 6 products"), "{table}");

    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["products", "list", "--limit", "10", "--json"]);
    let o = run(cmd).await;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 6);

    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["products", "get", "7"]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let detail = out(&o);
    assert!(detail.contains("VARIANT"), "{detail}");
    assert_eq!(detail.matches("SKU-700").count(), 3, "{detail}");

    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["products", "get", "7", "--json"]);
    let o = run(cmd).await;
    let p: catalog_core::Product = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p.variants.len(), 3);

    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["products", "get", "999"]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(6), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_from_the_server_config_file_are_picked_by_name() {
    let shop = FakeShopify::start(Options {
        products: (1..=3).map(|i| FakeProduct::numbered(i, 1, 0)).collect(),
        ..Options::default()
    })
    .await;
    let woo_store = FakeStore::new(Accept::OAuth1);
    woo_store.add_simple(1, "2.00");
    let (woo_server, _s) = woo(woo_store).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[database]
url = "memory://"

[[shopify.stores]]
id = "fake.myshopify.com"
name = "main"
store_url = "{shop}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"

[[woocommerce.stores]]
id = "https://blog.example.com"
store_url = "{woo}"
name = "blog"
consumer_key = "{KEY}"
consumer_secret = "{SECRET}"
auth = "oauth1"
secrets = ["woo-webhook-secret"]
"#,
        shop = shop.uri(),
        woo = woo_server.uri()
    );
    std::fs::write(dir.path().join("catalog.toml"), &config).unwrap();
    // The server accepts the same file, CLI keys included.
    webhook_server::settings::Settings::load_from(Some(&dir.path().join("catalog.toml")), &[])
        .unwrap();

    let mut cmd = catalog(dir.path());
    cmd.args(["--config", "catalog.toml", "products", "list"]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(err(&o).contains("--store (main, blog)"), "{}", err(&o));

    let mut cmd = catalog(dir.path());
    cmd.args([
        "--config",
        "catalog.toml",
        "--store",
        "main",
        "products",
        "list",
        "--json",
    ]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["platform"], "shopify");
    // Named by the store's id, as the server names its deliveries, not by
    // where its API is (an outside audit found the fake's address here).
    assert_eq!(list[0]["store"], "fake.myshopify.com");
    assert!(
        list[0]["id"]
            .as_str()
            .unwrap()
            .starts_with("shopify:fake.myshopify.com:"),
        "{}",
        list[0]["id"]
    );
    assert_eq!(
        shop.fake.counters().grants,
        1,
        "client credentials grant used"
    );

    let mut cmd = catalog(dir.path());
    cmd.args([
        "-c",
        "catalog.toml",
        "-s",
        "woocommerce",
        "products",
        "get",
        "1",
        "--json",
    ]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["platform"], "woocommerce");
    assert_eq!(p["store"], "https://blog.example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_limit_is_a_usage_error_before_any_request() {
    let store = FakeStore::new(Accept::OAuth1);
    store.add_simple(1, "1.00");
    let (server, _store) = woo(store).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["products", "list", "--limit", "0"]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--limit"), "{}", err(&o));
    assert!(server.received_requests().await.unwrap().is_empty());
}
