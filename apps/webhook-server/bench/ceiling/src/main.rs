//! The least a receiver can do for each step the issue's pipeline mandates,
//! to tell how much of the gap between webhook-server and the ingest floor
//! any implementation must pay on this machine.
//!
//! `STEP` chooses how far the handler goes; each step does everything the
//! one before does:
//!
//! - `floor`: the shared floor: read the body, check the Shopify HMAC, 200
//!   with an empty body;
//! - `answer`: answer with a JSON body naming the stored event, as a
//!   receiver that says what it stored must;
//! - `skim`: read the product id from the JSON body (syntax checked, the
//!   id's value read: what ordering per product and deduplication by
//!   product need), and derive a 128-bit key from the event id and product;
//! - `memory`: insert the key into a set (duplicates answered without
//!   storing) and keep the body in a bounded in-memory queue;
//! - `log`: append the key and body to a file instead, one writer thread
//!   writing whatever is queued with one `write` and one `fdatasync`, then
//!   answering: the least any durable store can do (no index, no format);
//! - `log-nosync`: the same without `fdatasync` (survives a crash of the
//!   process, not of the machine);
//! - `sqlite`: insert into SQLite instead, in WAL mode, one writer thread
//!   committing whatever is queued in one transaction, answering only after
//!   the commit (`synchronous=FULL`: fsync before the answer);
//! - `sqlite-normal`: the same with `synchronous=NORMAL`.
//!
//! Nothing else: no metrics, no logs, no dispatch, no compression, one
//! table with one unique index. Not a product: a yardstick.
use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, OnceLock, mpsc};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Digest;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Floor,
    Answer,
    Skim,
    Memory,
    Log,
    Sqlite,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: u64,
}

struct Insert {
    key: [u8; 16],
    body: web::Bytes,
    done: tokio::sync::oneshot::Sender<bool>,
}

static STEP: OnceLock<Step> = OnceLock::new();
static MEMORY: Mutex<Option<(HashSet<u128>, VecDeque<web::Bytes>)>> = Mutex::new(None);
static WRITER: OnceLock<Mutex<mpsc::Sender<Insert>>> = OnceLock::new();

/// Bodies the memory step keeps (webhook-server's memory store default).
const MEMORY_BODIES: usize = 1000;

async fn hook(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let step = *STEP.get().expect("set in main");
    let sig = req
        .headers()
        .get("x-shopify-hmac-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig) else {
        return HttpResponse::Unauthorized().finish();
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"benchsecret").expect("any key length");
    mac.update(&body);
    if mac.verify_slice(&sig).is_err() {
        return HttpResponse::Unauthorized().finish();
    }
    if step == Step::Floor {
        return HttpResponse::Ok().finish();
    }
    let event = req
        .headers()
        .get("x-shopify-webhook-id")
        .map_or(&b""[..], |v| v.as_bytes());
    let mut key = [0u8; 16];
    if step >= Step::Skim {
        let Ok(skim) = serde_json::from_slice::<IdOnly>(&body) else {
            return HttpResponse::BadRequest().finish();
        };
        let mut h = sha2::Sha256::new();
        h.update(event);
        h.update(skim.id.to_le_bytes());
        key.copy_from_slice(&h.finalize()[..16]);
    }
    let new = match step {
        Step::Floor | Step::Answer | Step::Skim => true,
        Step::Memory => {
            let mut guard = MEMORY
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (keys, bodies) = guard.get_or_insert_with(Default::default);
            let new = keys.insert(u128::from_be_bytes(key));
            if new {
                bodies.push_back(web::Bytes::copy_from_slice(&body));
                if bodies.len() > MEMORY_BODIES {
                    bodies.pop_front();
                }
            }
            new
        }
        Step::Log | Step::Sqlite => {
            let (done, answer) = tokio::sync::oneshot::channel();
            let sent = WRITER
                .get()
                .expect("set in main")
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .send(Insert { key, body, done });
            if sent.is_err() {
                return HttpResponse::ServiceUnavailable().finish();
            }
            match answer.await {
                Ok(new) => new,
                Err(_) => return HttpResponse::ServiceUnavailable().finish(),
            }
        }
    };
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let status = if new { "stored" } else { "duplicate" };
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(r#"{{"status":"{status}","id":"{hex}"}}"#))
}

/// Waits for an insert, then takes whatever else is queued (512 at most)
/// into `batch`; false once every sender is gone.
fn next_batch(inserts: &mpsc::Receiver<Insert>, batch: &mut Vec<Insert>) -> bool {
    let Ok(first) = inserts.recv() else {
        return false;
    };
    batch.push(first);
    while batch.len() < 512 {
        match inserts.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    true
}

/// The log step's writer: appends whatever is queued with one write, syncs
/// the data, then answers each.
fn append_log(path: &str, sync: bool, inserts: &mpsc::Receiver<Insert>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut seen = HashSet::new();
    let mut batch = Vec::with_capacity(512);
    let mut buf = Vec::with_capacity(1 << 20);
    while next_batch(inserts, &mut batch) {
        buf.clear();
        let mut results = Vec::with_capacity(batch.len());
        for i in &batch {
            let new = seen.insert(i.key);
            if new {
                buf.extend_from_slice(&i.key);
                buf.extend_from_slice(
                    &u32::try_from(i.body.len())
                        .unwrap_or(u32::MAX)
                        .to_le_bytes(),
                );
                buf.extend_from_slice(&i.body);
            }
            results.push(new);
        }
        file.write_all(&buf)?;
        if sync {
            file.sync_data()?;
        }
        for (i, new) in batch.drain(..).zip(results) {
            let _ = i.done.send(new);
        }
    }
    Ok(())
}

/// The one writer: commits whatever is queued (at most 512) in one
/// transaction, then answers each.
fn writer(path: &str, synchronous: &str, inserts: &mpsc::Receiver<Insert>) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, body BLOB NOT NULL)",
    )?;
    let mut batch = Vec::with_capacity(512);
    while next_batch(inserts, &mut batch) {
        let tx = conn.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO events (key, body) VALUES (?1, ?2)")?;
            for i in &batch {
                results.push(insert.execute((&i.key[..], &i.body[..]))? == 1);
            }
        }
        tx.commit()?;
        for (i, new) in batch.drain(..).zip(results) {
            let _ = i.done.send(new);
        }
    }
    Ok(())
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let name = std::env::var("STEP").unwrap_or_else(|_| "floor".into());
    let step = match name.as_str() {
        "floor" => Step::Floor,
        "answer" => Step::Answer,
        "skim" => Step::Skim,
        "memory" => Step::Memory,
        "log" | "log-nosync" => Step::Log,
        "sqlite" | "sqlite-normal" => Step::Sqlite,
        other => {
            eprintln!(
                "STEP={other}: expected floor, answer, skim, memory, log, log-nosync, sqlite or sqlite-normal"
            );
            std::process::exit(2);
        }
    };
    let _ = STEP.set(step);
    if step == Step::Log {
        let path = std::env::var("DB").unwrap_or_else(|_| "ceiling.log".into());
        let (tx, rx) = mpsc::channel();
        let _ = WRITER.set(Mutex::new(tx));
        let sync = name == "log";
        std::thread::spawn(move || {
            if let Err(e) = append_log(&path, sync, &rx) {
                eprintln!("log writer: {e}");
                std::process::exit(1);
            }
        });
    }
    if step == Step::Sqlite {
        let path = std::env::var("DB").unwrap_or_else(|_| "ceiling.db".into());
        let synchronous = if name == "sqlite" { "FULL" } else { "NORMAL" };
        let (tx, rx) = mpsc::channel();
        let _ = WRITER.set(Mutex::new(tx));
        std::thread::spawn(move || {
            if let Err(e) = writer(&path, synchronous, &rx) {
                eprintln!("writer: {e}");
                std::process::exit(1);
            }
        });
    }
    let port: u16 = std::env::var("APP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8051);
    HttpServer::new(|| App::new().route("/webhooks/shopify/products/create", web::post().to(hook)))
        .bind(("127.0.0.1", port))?
        .run()
        .await
}
