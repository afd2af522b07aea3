//! `catalog export`: multi-page WooCommerce, Shopify bulk (and its paged
//! fallback), and Ctrl-C leaving a valid file.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use catalog_core::Product;

use crate::shopify_fake::{FakeProduct, FakeShopify, Options, STATIC_TOKEN};
use crate::support::{catalog, err, json_lines, run, woo, woo_env};
use crate::woo_fake::{Accept, FakeStore, KEY, SECRET, simple_product};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woocommerce_multi_page_export_writes_every_product_once_in_order() {
    let store = FakeStore::new(Accept::OAuth1);
    for id in 1..=250 {
        store.add_simple(id, &format!("{id}.00"));
    }
    store.add_variable(300, 3);
    let (server, store) = woo(store).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["export", "--out", "catalog.jsonl"]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("exported 251 products"), "{}", err(&o));
    let text = std::fs::read_to_string(dir.path().join("catalog.jsonl")).unwrap();
    let products: Vec<Product> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<u64> = products
        .iter()
        .map(|p| p.platform_id.parse().unwrap())
        .collect();
    let mut expected: Vec<u64> = (1..=250).collect();
    expected.push(300);
    assert_eq!(ids, expected);
    assert_eq!(products[250].variants.len(), 3);
    assert_eq!(products[0].platform.as_str(), "woocommerce");
    assert!(
        store.list_requests.load(Ordering::SeqCst) >= 3,
        "several pages were read"
    );
}

/// A product whose price is not a number is named on stderr and left out;
/// every other product is exported, and the exit code (8) says the file
/// is not the whole catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_product_is_left_out_named_and_the_export_goes_on() {
    let store = FakeStore::new(Accept::OAuth1);
    for id in 1..=120 {
        store.add_simple(id, if id == 77 { "12,50" } else { "1.00" });
    }
    let (server, _store) = woo(store).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = catalog(dir.path());
    woo_env(&mut cmd, &server.uri(), KEY, SECRET);
    cmd.args(["export", "--out", "catalog.jsonl"]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(8), "{}", err(&o));
    let stderr = err(&o);
    assert!(stderr.contains("warning: product 77 skipped"), "{stderr}");
    assert!(stderr.contains("exported 119 products"), "{stderr}");
    assert!(
        stderr.contains("1 unreadable product was left out of catalog.jsonl"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(dir.path().join("catalog.jsonl")).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Product>(l)
                .unwrap()
                .platform_id
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=120).filter(|&i| i != 77).collect::<Vec<_>>());
}

fn shopify_catalog(n: u64) -> Vec<FakeProduct> {
    (1..=n).map(|i| FakeProduct::numbered(i, 2, 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_export_uses_the_bulk_operation() {
    let server = FakeShopify::start(Options {
        products: shopify_catalog(40),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = catalog(dir.path());
    cmd.env("SHOPIFY_STORE_URL", server.uri())
        .env("SHOPIFY_ACCESS_TOKEN", STATIC_TOKEN)
        .args(["export", "-o", "shop.jsonl", "--poll-interval-ms", "20"]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    let lines = json_lines(&std::fs::read_to_string(dir.path().join("shop.jsonl")).unwrap());
    assert_eq!(lines.len(), 40);
    assert_eq!(lines[0]["variants"].as_array().unwrap().len(), 2);
    assert_eq!(server.fake.op_count("RunBulkProductExport"), 1);
    assert_eq!(server.fake.op_count("ListProducts"), 0);
    assert_eq!(server.fake.counters().downloads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shopify_export_falls_back_to_pages_when_bulk_fails() {
    let server = FakeShopify::start(Options {
        products: shopify_catalog(30),
        bulk_final_status: "FAILED",
        bulk_error_code: Some("INTERNAL_SERVER_ERROR"),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = catalog(dir.path());
    cmd.env("SHOPIFY_STORE_URL", server.uri())
        .env("SHOPIFY_ACCESS_TOKEN", STATIC_TOKEN)
        .args(["export", "-o", "shop.jsonl", "--poll-interval-ms", "20"]);
    let o = run(cmd).await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("reading pages instead"), "{}", err(&o));
    let lines = json_lines(&std::fs::read_to_string(dir.path().join("shop.jsonl")).unwrap());
    assert_eq!(lines.len(), 30);
    assert!(server.fake.op_count("ListProducts") >= 2);
}

/// A Shopify export refused before any product arrived (a wrong token):
/// an earlier export in the file is left as it was, and the message says
/// so (an outside audit found the file emptied: it was created before the
/// bulk export had answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_shopify_export_leaves_the_earlier_file_as_it_was() {
    let server = FakeShopify::start(Options {
        products: shopify_catalog(3),
        ..Options::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.jsonl");
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let mut cmd = catalog(dir.path());
    cmd.env("SHOPIFY_STORE_URL", server.uri())
        .env("SHOPIFY_ACCESS_TOKEN", "shpat_wrong_token")
        .args(["--retries", "0", "export", "-o", "shop.jsonl"])
        .args(["--poll-interval-ms", "20"]);
    let o = run(cmd).await;
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
    assert!(
        err(&o).contains("shop.jsonl was left as it was"),
        "{}",
        err(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"earlier\":true}\n"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_leaves_whole_lines_and_says_how_far_it_got() {
    let store = FakeStore::new(Accept::OAuth1).with_delay(Duration::from_millis(400));
    // Already in id order: no sort per insert.
    *store.products.lock().unwrap() = (1..=5000).map(|id| simple_product(id, "1.00")).collect();
    let (server, store) = woo(store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.jsonl");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_catalog"))
        .env_clear()
        .current_dir(dir.path())
        .env("WOOCOMMERCE_STORE_URL", server.uri())
        .env("WOOCOMMERCE_CONSUMER_KEY", KEY)
        .env("WOOCOMMERCE_CONSUMER_SECRET", SECRET)
        .args(["export", "--out"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first pages have been answered (requests beyond the
    // first 8 in flight only start once earlier ones are done), then interrupt.
    let start = Instant::now();
    while store.list_requests.load(Ordering::SeqCst) < 12 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "export never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = interrupt(child).await;
    assert_eq!(o.status.code(), Some(130), "{}", err(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a partial line was left"
    );
    let lines = json_lines(&text);
    assert!(!lines.is_empty() && lines.len() < 5000, "{}", lines.len());
    // In order, without gaps: exactly the first N products.
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["platform_id"], (i + 1).to_string());
    }
    let stderr = err(&o);
    assert!(
        stderr.contains(&format!("the first {} products", lines.len())),
        "{stderr}"
    );
}

/// Ctrl-C while the store has not answered the first request (a slow or
/// hung store): exit 130 with the message, and an earlier export in the
/// file is left as it was (an outside audit saw the process die silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_before_the_store_answers_leaves_the_file_as_it_was() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("earlier.jsonl");
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_catalog"))
        .env_clear()
        .current_dir(dir.path())
        .env("WOOCOMMERCE_STORE_URL", format!("http://{addr}"))
        .env("WOOCOMMERCE_CONSUMER_KEY", KEY)
        .env("WOOCOMMERCE_CONSUMER_SECRET", SECRET)
        .args(["export", "--out"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let o = interrupt(child).await;
    assert_eq!(o.status.code(), Some(130), "{}", err(&o));
    assert!(
        err(&o).contains("interrupted before the store answered"),
        "{}",
        err(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"earlier\":true}\n"
    );
}

/// Ctrl-C (SIGINT) to `child`, and what it printed once it ended.
async fn interrupt(child: std::process::Child) -> std::process::Output {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}
