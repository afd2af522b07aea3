//! Load generator for `bench/replicas.sh`: sends every delivery to every
//! replica at the same moment (as a platform that retries on another replica,
//! or delivers twice, would), and counts JetStream messages afterwards.
//!
//! Run with (after starting the replicas; the script does all of it):
//!
//! ```text
//! cargo run --release -p webhook-server --example replica_load -- load \
//!     --targets http://127.0.0.1:8061,http://127.0.0.1:8062 --deliveries 20000 \
//!     --warmup 2000 --concurrency 32 --secret benchsecret \
//!     --body ../shared/bench/products_create.json --prefix run1 --products 500
//! cargo run --release -p webhook-server --example replica_load -- stream-count \
//!     --nats-url nats://127.0.0.1:4222 --stream BENCH_1 [--delete]
//! ```
//!
//! Deliveries are signed Shopify `products/create` webhooks with the event id
//! `<prefix>-<n>` for n = 0, 1, 2, ... (the same sequence for every replica),
//! and product ids cycling over `--products` products so per-product ordering
//! is exercised while dispatch can still run in parallel. The first
//! `--warmup` deliveries are not timed. Output is `key=value` lines.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const SAMPLE_PRODUCT_ID: &str = "788032119674292922";
const PATH: &str = "/webhooks/shopify/products/create";

#[derive(Debug, Clone)]
struct Load {
    targets: Vec<String>,
    deliveries: u64,
    warmup: u64,
    concurrency: usize,
    secret: String,
    body: String,
    prefix: String,
    products: u64,
}

#[derive(Debug, Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    non_200: u64,
    errors: u64,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn required(args: &[String], name: &str) -> anyhow::Result<String> {
    arg(args, name).with_context(|| format!("missing {name}"))
}

fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> anyhow::Result<T> {
    match arg(args, name) {
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} must be a number")),
        None => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One thread: the generator shares the machine with the replicas and
    // PostgreSQL, and must not take more than a core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("load") => {
            let load = Load {
                targets: required(&args, "--targets")?
                    .split(',')
                    .map(|t| format!("{}{PATH}", t.trim_end_matches('/')))
                    .collect(),
                deliveries: number(&args, "--deliveries", 20_000)?,
                warmup: number(&args, "--warmup", 0)?,
                concurrency: number(&args, "--concurrency", 32)?,
                secret: required(&args, "--secret")?,
                body: std::fs::read_to_string(PathBuf::from(required(&args, "--body")?))
                    .context("--body")?,
                prefix: required(&args, "--prefix")?,
                products: number(&args, "--products", 500)?,
            };
            rt.block_on(run_load(load))
        }
        Some("stream-count") => rt.block_on(stream_count(
            &required(&args, "--nats-url")?,
            &required(&args, "--stream")?,
            args.iter().any(|a| a == "--delete"),
        )),
        _ => bail!("usage: replica_load load ... | stream-count ... (see the source header)"),
    }
}

async fn run_load(load: Load) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(load.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let load = Arc::new(load);
    if load.warmup > 0 {
        phase(&client, &load, 0, load.warmup).await;
    }
    let start = Instant::now();
    let mut tally = phase(&client, &load, load.warmup, load.warmup + load.deliveries).await;
    let elapsed = start.elapsed().as_secs_f64();
    tally.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &tally.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        f64::from(v[i]) / 1000.0
    };
    let requests = load.deliveries * load.targets.len() as u64;
    println!("unique_deliveries={}", load.warmup + load.deliveries);
    println!("timed_deliveries={}", load.deliveries);
    println!("timed_requests={requests}");
    println!("ok={}", tally.ok);
    println!("non_200={}", tally.non_200);
    println!("errors={}", tally.errors);
    println!("elapsed_s={elapsed:.2}");
    println!("req_per_s={:.0}", requests as f64 / elapsed);
    println!("deliveries_per_s={:.0}", load.deliveries as f64 / elapsed);
    println!("p50_ms={:.2}", pct(0.50));
    println!("p99_ms={:.2}", pct(0.99));
    println!("max_ms={:.2}", pct(1.0));
    Ok(())
}

/// Sends deliveries `from..to`, each to every target at once.
async fn phase(client: &reqwest::Client, load: &Arc<Load>, from: u64, to: u64) -> Tally {
    let next = Arc::new(AtomicU64::new(from));
    let mut tasks = Vec::new();
    for _ in 0..load.concurrency.max(1) {
        let (client, load, next) = (client.clone(), Arc::clone(load), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= to {
                    break;
                }
                let product = (1_000_000 + n % load.products.max(1)).to_string();
                let body = load.body.replace(SAMPLE_PRODUCT_ID, &product);
                let signature =
                    catalog_core::webhook::sign(load.secret.as_bytes(), body.as_bytes());
                let id = format!("{}-{n}", load.prefix);
                let sends = load.targets.iter().map(|url| {
                    let req = client
                        .post(url)
                        .header("Content-Type", "application/json")
                        .header("X-Shopify-Topic", "products/create")
                        .header("X-Shopify-Hmac-Sha256", &signature)
                        .header("X-Shopify-Shop-Domain", "bench-store.myshopify.com")
                        .header("X-Shopify-API-Version", "2026-01")
                        .header("X-Shopify-Webhook-Id", &id)
                        .header("X-Shopify-Event-Id", &id)
                        .header("X-Shopify-Triggered-At", "2026-11-28T05:00:00.000Z")
                        .body(body.clone());
                    async move {
                        let t = Instant::now();
                        let res = req.send().await;
                        let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                        (res.map(|r| r.status().as_u16()), us)
                    }
                });
                for (res, us) in futures::future::join_all(sends).await {
                    tally.latencies_us.push(us);
                    match res {
                        Ok(200) => tally.ok += 1,
                        Ok(_) => tally.non_200 += 1,
                        Err(_) => tally.errors += 1,
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            all.latencies_us.extend(t.latencies_us);
            all.ok += t.ok;
            all.non_200 += t.non_200;
            all.errors += t.errors;
        }
    }
    all
}

async fn stream_count(url: &str, stream: &str, delete: bool) -> anyhow::Result<()> {
    let client = async_nats::connect(url)
        .await
        .context("cannot connect to NATS")?;
    let js = async_nats::jetstream::new(client);
    let mut s = js
        .get_stream(stream)
        .await
        .with_context(|| format!("stream {stream}"))?;
    let info = s.info().await?;
    println!("stream_messages={}", info.state.messages);
    if delete {
        js.delete_stream(stream).await?;
    }
    Ok(())
}
