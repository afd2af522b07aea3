//! Copying a store into another (`webhook-server copy-store`): every event
//! arrives whole and as it was (status, attempts, last error, due time,
//! body byte for byte), deduplication and each product's order come along,
//! and a second run copies nothing twice; the source is only read. SQLite to
//! SQLite always; SQLite to PostgreSQL and back with `TEST_DATABASE_URL`; the
//! command itself through the binary.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use catalog_core::InsertOutcome;
use chrono::Utc;
use webhook_server::copy_store::{CopySource, copy_store};
use webhook_server::settings::Durability;
use webhook_server::store::sqlite::SqliteReader;
use webhook_server::store::{
    DispatchOutcome, EventStatus, EventStore, NewEvent, SqliteStore, StoredEvent,
};

use crate::suite::event;

fn sqlite(path: &std::path::Path) -> Arc<dyn EventStore> {
    Arc::new(SqliteStore::open(path, Durability::ProcessCrash, 64).unwrap())
}

/// Fills `store` with events in every state, and returns their ids in
/// the order below:
/// - product p1: e1 delivered; e2 tried once, retry due in an hour; e3
///   pending behind it;
/// - product p2: e4 dead; e5 pending, due now;
/// - product p3: `big`, pending, a 300 KB body (compressed by SQLite);
/// - `bad`: an unreadable delivery kept as failed, its body not UTF-8.
async fn fill(store: &dyn EventStore) -> Vec<String> {
    let mut events: Vec<NewEvent> = vec![
        event("e1", Some("p1")),
        event("e2", Some("p1")),
        event("e3", Some("p1")),
        event("e4", Some("p2")),
        event("e5", Some("p2")),
    ];
    let mut big = event("big", Some("p3"));
    big.raw_body = Bytes::from(
        format!(
            r#"{{"id":3,"body_html":"{}"}}"#,
            "<p>cotton</p>".repeat(23_000)
        )
        .into_bytes(),
    );
    big.product = Some(r#"{"id":"3","title":"Big"}"#.to_owned());
    events.push(big);
    let mut bad = event("bad", None);
    bad.status = EventStatus::Failed;
    bad.error = Some("not JSON: expected value at line 1 column 1".to_owned());
    bad.raw_body = Bytes::from_static(b"\xff\xfe not json \x00");
    events.push(bad);
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    for e in events {
        assert_eq!(store.insert(e).await.unwrap(), InsertOutcome::Inserted);
    }
    let lease = Duration::from_secs(60);
    // Heads in receipt order: e1 (p1), e4 (p2).
    let claimed = store.claim_due("w", lease, 2).await.unwrap();
    let claimed: Vec<&str> = claimed.iter().map(|e| e.event.event_id.as_str()).collect();
    assert_eq!(claimed, ["e1", "e4"]);
    assert!(
        store
            .complete(&ids[0], "w", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    let dead = DispatchOutcome::Dead {
        error: "HTTP 410 from downstream".to_owned(),
    };
    assert!(store.complete(&ids[3], "w", dead).await.unwrap());
    // Then e2, p1's new head: failed once, due again in an hour.
    let claimed = store.claim_due("w", lease, 1).await.unwrap();
    assert_eq!(claimed[0].event.event_id, "e2");
    let retry = DispatchOutcome::Retry {
        error: "HTTP 503 from downstream".to_owned(),
        at: Utc::now() + chrono::Duration::hours(1),
    };
    assert!(store.complete(&ids[1], "w", retry).await.unwrap());
    ids
}

/// Whatever the stores, the target holds each of `ids` as the source
/// does, but for its own `seq`.
/// Everything `source` holds, oldest first.
async fn everything(source: &dyn CopySource) -> Vec<StoredEvent> {
    let all = source.export(0, 10_000).await.unwrap();
    assert!(all.len() < 10_000);
    all
}

/// The target holds each of `events` as it was, but for its own `seq`.
async fn assert_same_events(events: &[StoredEvent], target: &dyn EventStore) {
    for a in events {
        let id = &a.event.id;
        let b = target.get(id).await.unwrap().unwrap();
        assert_eq!(a.event, b.event, "{id}");
        assert_eq!(a.attempts, b.attempts, "{id}");
        assert_eq!(a.last_error, b.last_error, "{id}");
        // SQLite keeps milliseconds, PostgreSQL microseconds.
        assert_eq!(
            a.next_attempt_at.timestamp_millis(),
            b.next_attempt_at.timestamp_millis(),
            "{id}"
        );
    }
}

/// A [`fill`]ed SQLite file at `path`, closed as a stopped server leaves
/// it, opened for reading; with the ids `fill` gave.
async fn filled_file(path: &std::path::Path) -> (SqliteReader, Vec<String>) {
    let store = sqlite(path);
    let ids = fill(&*store).await;
    store.close().await;
    drop(store);
    (SqliteReader::open(path).unwrap(), ids)
}

/// The whole copy contract from a [`fill`]ed `source` into an empty
/// `target`.
async fn copy_contract(source: &dyn CopySource, ids: &[String], target: Arc<dyn EventStore>) {
    let mut progress = Vec::new();
    let report = copy_store(source, &*target, |r| progress.push(*r))
        .await
        .unwrap();
    assert_eq!(report.read, 7);
    assert_eq!(
        (
            report.copied.pending,
            report.copied.delivered,
            report.copied.failed,
            report.copied.dead
        ),
        (4, 1, 1, 1)
    );
    assert_eq!(report.already_there, 0);
    assert_eq!(progress.last(), Some(&report));
    let events = everything(source).await;
    assert_eq!(events.len(), 7);
    assert_same_events(&events, &*target).await;
    let status = |i: usize| {
        let target = Arc::clone(&target);
        let id = ids[i].clone();
        async move { target.get(&id).await.unwrap().unwrap().status() }
    };
    assert_eq!(status(0).await, EventStatus::Delivered);
    assert_eq!(status(1).await, EventStatus::Pending);
    assert_eq!(status(3).await, EventStatus::Dead);
    assert_eq!(status(6).await, EventStatus::Failed);

    // Deduplication came along: a platform's retry of a copied event is a
    // duplicate in the target.
    assert_eq!(
        target.insert(event("e1", Some("p1"))).await.unwrap(),
        InsertOutcome::Duplicate
    );
    assert_eq!(
        target.insert(event("e5", Some("p2"))).await.unwrap(),
        InsertOutcome::Duplicate
    );

    // Each product's order came along: e2 waits for its retry and e3 stays
    // behind it; e5 and big are due.
    let due = target
        .claim_due("t", Duration::from_secs(60), 10)
        .await
        .unwrap();
    let mut due: Vec<&str> = due.iter().map(|e| e.event.event_id.as_str()).collect();
    due.sort_unstable();
    assert_eq!(due, ["big", "e5"]);
    assert!(
        target
            .complete(&ids[4], "t", DispatchOutcome::Delivered)
            .await
            .unwrap()
    );
    // A new delivery of p1 goes behind the copied ones.
    assert_eq!(
        target.insert(event("e6", Some("p1"))).await.unwrap(),
        InsertOutcome::Inserted
    );
    let due = target
        .claim_due("t", Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert!(due.is_empty(), "{due:?}");

    // Run again: nothing is copied twice, nothing in the target changes
    // (e5, delivered there since, stays delivered).
    let again = copy_store(source, &*target, |_| {}).await.unwrap();
    assert_eq!(again.copied.total(), 0);
    assert_eq!(again.already_there, 7);
    assert_eq!(status(4).await, EventStatus::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_copies_every_event_as_it_was_and_leaves_the_source_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (source, ids) = filled_file(&path).await;
    let before = std::fs::read(&path).unwrap();
    let target = sqlite(&dir.path().join("b.db"));
    copy_contract(&source, &ids, Arc::clone(&target)).await;
    // No server can open the file while it is read.
    let held = SqliteStore::open(&path, Durability::ProcessCrash, 64).unwrap_err();
    assert!(
        held.to_string()
            .contains("is open in another webhook-server"),
        "{held}"
    );
    drop(source);
    target.close().await;
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the source file changed"
    );
}

/// A server killed mid-burst leaves frames in the WAL that are not in the
/// file yet: the copy reads them, and leaves the file and its WAL as they
/// were (a read-write connection's close folded the WAL in and deleted it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_servers_wal_is_read_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let store = sqlite(&live);
    for i in 0..50 {
        store
            .insert(event(&format!("e{i}"), Some("p")))
            .await
            .unwrap();
    }
    // The files as a SIGKILL would leave them: copied while the server has
    // them open.
    let crashed = dir.path().join("crashed.db");
    for suffix in ["", "-wal", "-shm"] {
        std::fs::copy(
            format!("{}{suffix}", live.display()),
            format!("{}{suffix}", crashed.display()),
        )
        .unwrap();
    }
    store.close().await;
    let wal = dir.path().join("crashed.db-wal");
    let before = (
        std::fs::read(&crashed).unwrap(),
        std::fs::read(&wal).unwrap(),
    );
    assert!(!before.1.is_empty(), "the WAL holds the inserts");
    let reader = SqliteReader::open(&crashed).unwrap();
    let target = sqlite(&dir.path().join("target.db"));
    let report = copy_store(&reader, &*target, |_| {}).await.unwrap();
    assert_eq!(report.copied.pending, 50);
    drop(reader);
    target.close().await;
    let after = (
        std::fs::read(&crashed).unwrap(),
        std::fs::read(&wal).unwrap(),
    );
    assert!(after.0 == before.0, "the file changed");
    assert!(after.1 == before.1, "the WAL changed");
}

/// Asked to stop (a signal, in the command), a copy finishes the write in
/// progress and says exactly what the target holds; a second run copies
/// the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_copy_counts_what_the_target_holds_and_goes_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use webhook_server::copy_store::{CopyError, copy_store_until};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let store = sqlite(&path);
    for i in 0..40 {
        let mut e = event(&format!("e{i}"), Some(&format!("p{}", i % 3)));
        // 1 MB each: reads of 4, then of 8.
        e.raw_body = Bytes::from(vec![b'x'; 1_000_000]);
        store.insert(e).await.unwrap();
    }
    store.close().await;
    drop(store);
    let source = SqliteReader::open(&path).unwrap();
    let target = sqlite(&dir.path().join("b.db"));
    let stop = AtomicBool::new(false);
    let stopped = copy_store_until(&source, &*target, &stop, |r| {
        // The signal comes during the second write.
        if r.copied.total() > 0 {
            stop.store(true, Ordering::Relaxed);
        }
    })
    .await
    .unwrap_err();
    let CopyError::Stopped {
        copied,
        already_there,
    } = stopped
    else {
        panic!("{stopped}")
    };
    assert_eq!(already_there, 0);
    assert!(copied > 0 && copied < 40, "{copied}");
    let held = target
        .list(&Default::default(), None, 100)
        .await
        .unwrap()
        .events
        .len();
    assert_eq!(held as u64, copied, "the count is what the target holds");
    let rest = copy_store(&source, &*target, |_| {}).await.unwrap();
    assert_eq!(rest.already_there, copied);
    assert_eq!(rest.copied.total(), 40 - copied);
    target.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_stopped_servers_file_of_this_version_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let running = sqlite(&path);
    let refused = SqliteReader::open(&path).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("is open in another webhook-server"),
        "{refused}"
    );
    running.close().await;
    drop(running);
    assert!(SqliteReader::open(&path).is_ok());

    // An empty file (a mistyped path that something created) is not a
    // store, and stays empty.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let refused = SqliteReader::open(&empty).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("holds no webhook-server store"),
        "{refused}"
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);

    // A file of an older schema version is migrated by a server, not here.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 5).unwrap();
    drop(conn);
    let refused = SqliteReader::open(&path).unwrap_err();
    assert!(
        refused.to_string().contains("is at schema version 5")
            && refused
                .to_string()
                .contains("start this build's server on it once"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_cannot_be_copied_into() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (source, _) = filled_file(&path).await;
    let memory: Arc<dyn EventStore> = Arc::new(webhook_server::store::MemoryStore::new(100, 100));
    let refused = copy_store(&source, &*memory, |_| {}).await.unwrap_err();
    assert!(
        refused.to_string().contains("cannot be copied to"),
        "{refused}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back() {
    use crate::postgres::TestDb;
    let Some(db) = TestDb::new("copy_sqlite_pg") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (source, ids) = filled_file(&dir.path().join("a.db")).await;
    let pg = db.store().await;
    copy_contract(&source, &ids, Arc::clone(&pg) as Arc<dyn EventStore>).await;

    // And back into a new file: the PostgreSQL store is a source as well.
    let back = sqlite(&dir.path().join("back.db"));
    let report = copy_store(&*pg, &*back, |_| {}).await.unwrap();
    // The seven, and e6 stored in PostgreSQL since.
    assert_eq!(report.copied.total(), 8);
    let events = everything(&*pg).await;
    assert_eq!(events.len(), 8);
    assert_same_events(&events, &*back).await;
    pg.close().await;
    back.close().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_source_must_hold_a_store_and_is_not_migrated() {
    use crate::postgres::TestDb;
    use webhook_server::store::{PostgresOptions, PostgresStore};
    let Some(db) = TestDb::new("copy_pg_source") else {
        return;
    };
    let mut options = PostgresOptions::new(2, Some(db.schema.clone()));
    options.migrate = false;
    // A mistyped schema is refused, not created.
    let refused = PostgresStore::connect(&db.url, options.clone())
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("there is no webhook-server store in schema"),
        "{refused}"
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = '{}'",
            db.schema
        ))
        .await,
        0
    );
    // A replica's store is read as it is.
    let replica = db.store().await;
    replica.insert(event("e1", Some("p"))).await.unwrap();
    replica.close().await;
    // Without a schema setting, the first line names the one the
    // search_path resolved to (here set in the URL).
    let by_path = PostgresStore::connect(
        &format!("{}?options=-c%20search_path%3D{}", db.url, db.schema),
        PostgresOptions::new(1, None),
    )
    .await
    .unwrap();
    let shown = EventStore::describe(&by_path);
    assert!(
        shown.contains(&format!("(schema {}, from search_path", db.schema)),
        "{shown}"
    );
    by_path.close().await;
    let source = PostgresStore::connect(&db.url, options).await.unwrap();
    assert_eq!(everything(&source).await.len(), 1);
    assert_eq!(
        source
            .in_use()
            .await
            .unwrap()
            .as_deref()
            .map(|w| w.contains("within the last minute")),
        Some(true)
    );
    source.close().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_into_postgres_keeps_order_behind_a_live_replicas_events() {
    use crate::postgres::TestDb;
    let Some(db) = TestDb::new("copy_live") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let file = sqlite(&path);
    for id in ["old1", "old2"] {
        file.insert(event(id, Some("p"))).await.unwrap();
    }
    file.close().await;
    drop(file);
    let source = SqliteReader::open(&path).unwrap();
    // The replicas took a delivery of the same product before the copy.
    let pg: Arc<dyn EventStore> = db.store().await;
    pg.insert(event("new", Some("p"))).await.unwrap();
    copy_store(&source, &*pg, |_| {}).await.unwrap();
    // One head per product: the live one is ready, the copies wait behind
    // it (the note in docs/deployment.md: copy before the replicas take
    // traffic to keep a product's order across the move).
    let mut order = Vec::new();
    loop {
        let due = pg
            .claim_due("t", Duration::from_secs(60), 10)
            .await
            .unwrap();
        if due.is_empty() {
            break;
        }
        assert_eq!(due.len(), 1, "one product, one head at a time");
        order.push(due[0].event.event_id.clone());
        pg.complete(&due[0].event.id, "t", DispatchOutcome::Delivered)
            .await
            .unwrap();
    }
    assert_eq!(order, ["new", "old1", "old2"]);
    pg.close().await;
}

/// `webhook-server copy-store ARGS` with the configured store at `db`.
fn copy_command(db: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webhook-server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CATALOG_DATABASE_URL", format!("sqlite://{}", db.display()))
        .arg("copy-store")
        .args(args)
        .current_dir(db.parent().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_store_command_copies_and_refuses_what_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    let source = sqlite(&db);
    fill(&*source).await;

    // The server (here: this process) holds the file: the copy says to
    // stop it.
    let target = dir.path().join("moved.db");
    let to = format!("sqlite://{}", target.display());
    let out = copy_command(&db, &["--to", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is open in a running webhook-server")
            && stderr.contains("stop the server first"),
        "{stderr}"
    );
    source.close().await;
    drop(source);

    // `copy-store` after the options works as well.
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
        .env_clear()
        .env("CATALOG_DATABASE_URL", format!("sqlite://{}", db.display()))
        .args([&format!("--to={to}"), "copy-store"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("copied 7 events (4 pending, 1 delivered, 1 failed, 1 dead) in ")
            && stdout.contains("; 0 were in the target already"),
        "{stdout}"
    );
    assert!(
        stderr.contains("copying sqlite") && stderr.contains("(read only)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes into a pipe: {stderr}"
    );
    let reader = SqliteReader::open(&db).unwrap();
    let moved = sqlite(&target);
    assert_same_events(&everything(&reader).await, &*moved).await;
    drop(reader);
    moved.close().await;
    drop(moved);

    // Again: nothing twice.
    let out = copy_command(&db, &["--to", &to]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("copied 0 events") && stdout.contains("; 7 were in the target already"),
        "{stdout}"
    );

    // Refused before anything is written, each naming what to change.
    let same = format!("sqlite://{}", db.display());
    let link = dir.path().join("hard-link.db");
    std::fs::hard_link(&db, &link).unwrap();
    let linked = format!("sqlite://{}", link.display());
    for (args, code, says) in [
        (vec![], 2, "copy-store needs --to URL"),
        (vec!["--to"], 2, "--to needs a value"),
        (vec!["--to", &to, "--to", &to], 2, "--to is given twice"),
        (
            vec!["--to", "memory://"],
            1,
            "--to: the memory store keeps nothing",
        ),
        (
            vec!["--to", &same],
            1,
            "--to names the configured store itself",
        ),
        (
            vec!["--to", &linked],
            1,
            "--to names the configured store itself",
        ),
        (
            vec!["--to", "ftp://x"],
            1,
            "--to: expected sqlite://PATH or postgres://",
        ),
        (
            vec![
                "--to",
                "postgres://u@127.0.0.1:1/db",
                "--to-schema",
                "Bad-Name",
            ],
            1,
            "--to-schema: ",
        ),
        (
            vec!["--to", &to, "--to-schema", "catalog"],
            1,
            "--to-schema is for a PostgreSQL target",
        ),
        (
            vec!["--to", &to, "--bogus"],
            2,
            "unknown argument \"--bogus\"",
        ),
    ] {
        let out = copy_command(&db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A target a server holds, another program's file.
    let held = dir.path().join("held.db");
    let server = sqlite(&held);
    let out = copy_command(&db, &["--to", &format!("sqlite://{}", held.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--to: ") && stderr.contains("copy into a file nothing else uses"),
        "{stderr}"
    );
    server.close().await;
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER)")
        .unwrap();
    let out = copy_command(&db, &["--to", &format!("sqlite://{}", foreign.display())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another program's tables (invoices)")
            && stderr.contains("point --to at a new or empty file")
            && !stderr.contains("database.url"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("foreign.db.lock").exists(),
        "a lock file left beside another program's file"
    );

    // The server itself refuses copy-store's options.
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
        .env_clear()
        .args(["--to", &to])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belong to copy-store"));

    // A mistyped database.url copies nothing rather than an empty new file,
    // and an empty file is not taken for an empty store.
    let missing = dir.path().join("typo.db");
    let out = copy_command(&missing, &["--to", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "there is no SQLite file at {}: nothing to copy",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!missing.exists());
    std::fs::write(&missing, b"").unwrap();
    let out = copy_command(&missing, &["--to", &to]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("holds no webhook-server store"), "{stderr}");
    assert_eq!(std::fs::metadata(&missing).unwrap().len(), 0);
}

/// The target's schema is the configured one unless `--to-schema` names
/// another: copying with the replicas' configuration lands where they
/// look, not in `public`.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_schema_defaults_to_the_configured_one() {
    use crate::postgres::TestDb;
    let Some(db) = TestDb::new("copy_schema") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let (reader, _) = filled_file(&path).await;
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_webhook-server"))
        .env_clear()
        .env(
            "CATALOG_DATABASE_URL",
            format!("sqlite://{}", path.display()),
        )
        .env("CATALOG_DATABASE__SCHEMA", &db.schema)
        // A parameter sqlx does not know: it warns of it with its value.
        .args([
            "copy-store",
            "--to",
            &format!("{}?sslpassword=k3y-s3cret", db.url),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("k3y-s3cret"), "{stderr}");
    assert!(
        stderr.contains(&format!("(schema {}", db.schema)),
        "{stderr}"
    );
    assert_eq!(db.scalar("SELECT count(*) FROM events").await, 7);
}
