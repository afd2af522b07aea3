use super::*;
use super::{body::*, events::*, schema::*, writer::*};

/// A pseudo file system (no blocks at all) is not a full disk: no
/// "0 KiB free" hint for a path under /sys or /proc, where the cause is
/// another (permissions).
#[cfg(target_os = "linux")]
#[test]
fn no_full_disk_hint_for_a_file_system_without_blocks() {
    for dir in ["/sys", "/proc"] {
        if Path::new(dir).is_dir() {
            assert_eq!(
                open_failure_hint(&Path::new(dir).join("x.db")),
                None,
                "{dir}"
            );
        }
    }
}

#[test]
fn a_compressed_body_claiming_more_than_lz4_can_hold_is_corrupt() {
    // The most compressible body there is reads back whole...
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let stored = StoredBody::encode(&zeros).unwrap();
    let back = StoredBody::decode(CODEC_LZ4, stored.bytes.clone()).unwrap();
    assert_eq!(back.len(), zeros.len());
    // ...and a damaged size in front is an error, not a 4 GiB
    // allocation.
    let mut damaged = stored.bytes;
    damaged[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = StoredBody::decode(CODEC_LZ4, damaged).unwrap_err();
    assert!(err.to_string().contains("claims 4294967295 bytes"), "{err}");
}

#[tokio::test]
async fn bodies_are_stored_compressed_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
    let json = include_bytes!("../../../tests/fixtures/products_create.json");
    // Incompressible: a pseudo-random sequence.
    let noise: Vec<u8> = (0u32..300)
        .scan(12345u32, |x, _| {
            *x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            Some(x.to_be_bytes()[1])
        })
        .collect();
    let bodies: [&[u8]; 3] = [json, b"{\"id\":1}", &noise];
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let mut e = NewEvent::unparseable(
            &catalog_core::webhook::DeliveryMeta::new(
                catalog_core::PlatformId::SHOPIFY,
                "s",
                catalog_core::Topic::ProductCreated,
                "products/create",
                catalog_core::EventId::new(format!("e{i}")),
            ),
            Bytes::copy_from_slice(body),
            &catalog_core::webhook::PayloadError::new("", "x"),
            Utc::now(),
        );
        e.status = EventStatus::Pending;
        ids.push(e.id.clone());
        assert_eq!(store.insert(e).await.unwrap(), InsertOutcome::Inserted);
    }
    for (id, body) in ids.iter().zip(bodies) {
        let got = store.get(id).await.unwrap().unwrap();
        assert_eq!(&got.event.raw_body[..], body);
    }
    store.close().await;
    let conn = Connection::open(&path).unwrap();
    let rows: Vec<(i64, i64)> = conn
        .prepare("SELECT codec, length(raw_body) FROM event_bodies ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // The JSON sample shrinks; a tiny body and incompressible bytes do not.
    assert_eq!(rows[0].0, CODEC_LZ4);
    assert!(rows[0].1 < json.len() as i64 / 2, "{rows:?}");
    assert_eq!(rows[1], (0, 8));
    assert_eq!(rows[2], (0, 300));
}

fn numbered(n: usize) -> NewEvent {
    let mut e = NewEvent::unparseable(
        &catalog_core::webhook::DeliveryMeta::new(
            catalog_core::PlatformId::SHOPIFY,
            "s",
            catalog_core::Topic::ProductCreated,
            "products/create",
            catalog_core::EventId::new(format!("gen-{n}")),
        ),
        Bytes::from(format!("{{\"id\":{n}}}")),
        &catalog_core::webhook::PayloadError::new("", "x"),
        Utc::now(),
    );
    e.status = EventStatus::Pending;
    e
}

/// Events up to the watermark that the index lacks: must be none.
fn unindexed_below_watermark(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM events e WHERE e.seq <= \
                 (SELECT value FROM store_state WHERE key = 'ids_merged_through') \
                 AND NOT EXISTS (SELECT 1 FROM event_ids i WHERE i.id = e.id AND i.seq = e.seq)",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Deduplication and lookups by id hold for ids in memory, in the
/// generation being merged and in the index, across restarts and across
/// a merge cut short (a crash between two slices).
/// The store on `path` with generations of 16 ids: tests go through
/// merges after a few inserts.
fn small_generations(path: &Path) -> SqliteStore {
    SqliteStore::open_with_generation(path, Durability::ProcessCrash, 8, 16, Duration::ZERO)
        .unwrap()
}

#[tokio::test]
async fn ids_stay_unique_through_merges_restarts_and_cut_merges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.db");
    let open = || small_generations(&path);
    let store = open();
    for n in 0..100 {
        assert_eq!(
            store.insert(numbered(n)).await.unwrap(),
            InsertOutcome::Inserted
        );
        // A copy right after, often in the same write batch.
        assert_eq!(
            store.insert(numbered(n)).await.unwrap(),
            InsertOutcome::Duplicate,
            "{n}"
        );
    }
    for n in 0..100 {
        assert_eq!(
            store.insert(numbered(n)).await.unwrap(),
            InsertOutcome::Duplicate,
            "{n}"
        );
        let got = store.get(&numbered(n).id).await.unwrap().unwrap();
        assert_eq!(got.event.event_id, numbered(n).event_id);
    }
    // Lookups by id for the index, and for the newest (in memory).
    for n in [3, 99] {
        assert_eq!(
            store.replay(&numbered(n).id).await.unwrap(),
            ReplayOutcome::Queued
        );
    }
    assert_eq!(
        store.replay("no-such-id").await.unwrap(),
        ReplayOutcome::NotFound
    );
    store.close().await;

    let watermark = |path: &Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT value FROM store_state WHERE key = 'ids_merged_through'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let merged = watermark(&path);
    assert!(merged >= 48, "merges ran: watermark {merged}");
    assert_eq!(unindexed_below_watermark(&path), 0);

    // A merge cut short: the watermark back at 20 and every other id
    // above it missing from the index, as after a crash mid-merge.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE store_state SET value = 20 WHERE key = 'ids_merged_through'",
            [],
        )
        .unwrap();
        conn.execute("DELETE FROM event_ids WHERE seq > 20 AND seq % 2 = 0", [])
            .unwrap();
    }
    let store = open();
    for n in 0..100 {
        assert_eq!(
            store.insert(numbered(n)).await.unwrap(),
            InsertOutcome::Duplicate,
            "{n}"
        );
    }
    for n in 100..200 {
        assert_eq!(
            store.insert(numbered(n)).await.unwrap(),
            InsertOutcome::Inserted
        );
    }
    for n in 0..200 {
        assert_eq!(
            store.insert(numbered(n)).await.unwrap(),
            InsertOutcome::Duplicate,
            "{n}"
        );
        assert!(store.get(&numbered(n).id).await.unwrap().is_some(), "{n}");
    }
    store.close().await;
    assert!(
        watermark(&path) > merged,
        "the cut merge was redone and went on"
    );
    assert_eq!(unindexed_below_watermark(&path), 0);
    let count: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 200);
}

/// Pruning deletes an event's id wherever the id is kept (the index, the
/// generation being merged, memory), leaves no index row behind, and
/// holds across a restart.
#[tokio::test]
async fn pruning_forgets_ids_in_the_index_in_merges_and_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prune.db");
    let open = || small_generations(&path);
    let store = open();
    let now = Utc::now();
    let aged = |n: usize| {
        let mut e = numbered(n);
        // Even events are old, odd ones recent.
        if n.is_multiple_of(2) {
            e.received_at = now - chrono::Duration::days(10);
        }
        e
    };
    for n in 0..100 {
        store.insert(aged(n)).await.unwrap();
    }
    loop {
        let claimed = store
            .claim_due("w", Duration::from_secs(60), 200)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        for c in claimed {
            store
                .complete(&c.event.id, "w", DispatchOutcome::Delivered)
                .await
                .unwrap();
        }
    }
    let policy = PrunePolicy::new(Some(now - chrono::Duration::days(5)), None);
    let mut pruned = 0;
    // Events whose id is being merged wait for the merge, which each
    // write batch (these prunes too) moves on.
    for _ in 0..100 {
        pruned += store.prune(&policy, 7).await.unwrap();
        if pruned == 50 {
            break;
        }
    }
    assert_eq!(pruned, 50);
    assert_eq!(store.prune(&policy, 7).await.unwrap(), 0);
    for n in 0..100usize {
        let expected = if n.is_multiple_of(2) {
            InsertOutcome::Inserted
        } else {
            InsertOutcome::Duplicate
        };
        assert_eq!(store.insert(aged(n)).await.unwrap(), expected, "{n}");
    }
    store.close().await;
    let stale_index_rows = |path: &Path| -> i64 {
        Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM event_ids i \
                     WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = i.seq)",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(stale_index_rows(&path), 0);
    assert_eq!(unindexed_below_watermark(&path), 0);
    let store = open();
    for n in 0..100 {
        assert_eq!(
            store.insert(aged(n)).await.unwrap(),
            InsertOutcome::Duplicate,
            "{n}"
        );
    }
    store.close().await;
    let conn = Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM events"), 100);
    assert_eq!(count("SELECT COUNT(*) FROM event_bodies"), 100);
    // The prune statements read the age indexes, not the whole table.
    for (status, index) in [
        ("status = 'delivered'", "events_delivered_age"),
        ("status IN ('failed', 'dead')", "events_failed_age"),
    ] {
        let plan: String = conn
            .query_row(
                &format!(
                    "EXPLAIN QUERY PLAN SELECT seq, id FROM events WHERE {status} \
                         AND received_at < 1 ORDER BY received_at LIMIT 5"
                ),
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains(index), "{plan}");
    }
}

/// A database file set up as the store sets one up, and its recent ids
/// with generations of `generation`, for tests that run the writer's
/// steps one by one on one connection.
fn steps_db(generation: usize) -> (tempfile::TempDir, PathBuf, Connection, RecentIds) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steps.db");
    let mut conn = Connection::open(&path).unwrap();
    configure(&conn, Durability::ProcessCrash).unwrap();
    migrate(&mut conn).unwrap();
    let ids = RecentIds::load(&conn, generation).unwrap();
    (dir, path, conn, ids)
}

/// A claim of up to 10 events by worker `w` (runs of up to `run`), and
/// where its answer arrives.
fn claim_command(
    run: usize,
) -> (
    Command,
    oneshot::Receiver<Result<Vec<StoredEvent>, StoreError>>,
) {
    let (reply, rx) = oneshot::channel();
    let cmd = Command::Claim {
        worker: "w".into(),
        lease: Duration::from_secs(60),
        limit: 10,
        run,
        reply,
    };
    (cmd, rx)
}

/// A batch of one ping, as the writer runs it: its answer.
fn ping_batch(
    conn: &mut Connection,
    ids: &mut RecentIds,
    health: &mut Health,
    counters: &Counters,
) -> Result<(), StoreError> {
    let (reply, mut rx) = oneshot::channel();
    run_batch(conn, &mut vec![Command::Ping(reply)], ids, health, counters);
    rx.try_recv().expect("answered")
}

/// One write batch that inserts `e`, as `run_batch` runs it.
fn insert_batch(conn: &mut Connection, ids: &mut RecentIds, e: &NewEvent) {
    let tx = conn.transaction().unwrap();
    let mut changes = IdChanges::default();
    insert(&tx, e, None, ids, &mut changes).unwrap();
    let merged = ids.merge_slice(&tx, changes.added.len()).unwrap();
    tx.commit().unwrap();
    ids.committed(merged);
}

/// Pruning, step by step on one connection: an event whose id is in the
/// generation being merged waits for the merge (else the merge would
/// put the id of a deleted event into the index), and a prune that rolls
/// back puts the ids it took back.
#[test]
fn pruning_waits_for_a_merge_and_undoes_on_rollback() {
    let (_dir, _path, mut conn, mut ids) = steps_db(4);
    // One write batch, as `run_batch` runs it; returns what `f` returned.
    let batch = |conn: &mut Connection,
                 ids: &mut RecentIds,
                 f: &dyn Fn(&Transaction<'_>, &mut RecentIds, &mut IdChanges) -> usize|
     -> usize {
        let mut changes = IdChanges::default();
        let tx = conn.transaction().unwrap();
        let out = f(&tx, ids, &mut changes);
        let merged = ids.merge_slice(&tx, changes.added.len()).unwrap();
        tx.commit().unwrap();
        ids.committed(merged);
        out
    };
    let old = |n: usize| {
        let mut e = numbered(n);
        e.status = EventStatus::Delivered;
        e.received_at = Utc::now() - chrono::Duration::days(10);
        e
    };
    let policy = PrunePolicy::new(Some(Utc::now() - chrono::Duration::days(5)), None);
    // Four ids fill a generation: after this batch they are all merging.
    batch(&mut conn, &mut ids, &|tx, ids, changes| {
        for n in 0..4 {
            insert(tx, &old(n), None, ids, changes).unwrap();
        }
        0
    });
    let first = batch(&mut conn, &mut ids, &|tx, ids, changes| {
        prune(tx, &policy, 10, ids, changes).unwrap()
    });
    assert_eq!(first, 0, "ids being merged wait");
    let mut pruned = 0;
    for _ in 0..20 {
        pruned += batch(&mut conn, &mut ids, &|tx, ids, changes| {
            prune(tx, &policy, 10, ids, changes).unwrap()
        });
    }
    assert_eq!(pruned, 4, "pruned once merged");
    let rows = |conn: &Connection, table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(&conn, "event_ids"), 0);
    assert_eq!(rows(&conn, "events"), 0);

    // In memory (fresh): taken out by a prune, put back by its rollback.
    batch(&mut conn, &mut ids, &|tx, ids, changes| {
        insert(tx, &old(10), None, ids, changes).unwrap();
        0
    });
    let mut changes = IdChanges::default();
    {
        let tx = conn.transaction().unwrap();
        assert_eq!(prune(&tx, &policy, 10, &mut ids, &mut changes).unwrap(), 1);
        assert_eq!(ids.seq_of(&tx, &old(10).id).unwrap(), None);
        // Dropped: rolls back.
    }
    ids.undo(changes);
    assert!(ids.seq_of(&conn, &old(10).id).unwrap().is_some());
    assert_eq!(rows(&conn, "events"), 1);
}

/// The followers of a run come from the pending-per-product index, so
/// claiming runs costs the same whatever the backlog.
#[test]
fn run_followers_read_the_pending_product_index() {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate(&mut conn).unwrap();
    let plan: Vec<String> = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT seq FROM events \
                 WHERE status = 'pending' AND platform = 'a' AND store = 'b' \
                   AND product_key = 'c' AND seq > 1 \
                 ORDER BY platform, store, product_key, seq LIMIT 15",
        )
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter()
            .any(|p| p.contains("COVERING INDEX events_pending_product")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|p| p.contains("TEMP B-TREE")), "{plan:?}");
}

/// The id filter is built beside the writer while merges go on: it
/// must still hold every id in the index when it is installed (those of
/// the generation being merged when its snapshot was taken, and those
/// frozen after), so no id stops being a duplicate; and it answers for
/// new ids without the index.
#[test]
fn the_id_filter_never_hides_an_indexed_id() {
    let (_dir, path, mut conn, mut ids) = steps_db(16);
    let mut next = 0;
    // A slice of 2 ids merged a batch of one insert: a generation of 16
    // takes 8 batches.
    let mut one = |conn: &mut Connection, ids: &mut RecentIds| {
        insert_batch(conn, ids, &numbered(next));
        next += 1;
    };
    for _ in 0..19 {
        one(&mut conn, &mut ids);
    }
    assert!(ids.unmerged() > 0, "a merge is under way");
    assert_eq!(ids.filter_rules_out("x"), None, "no filter yet");
    let alive = Arc::new(());
    ids.filter_from(&path, Arc::downgrade(&alive));
    // The build's snapshot is taken by now (a few ids to read); these
    // merges and generations come after it.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..40 {
        one(&mut conn, &mut ids);
    }
    for _ in 0..200 {
        ids.poll_filter();
        if ids.filter_rules_out("x").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ids.filter_rules_out("x").is_some(), "the build finished");
    for _ in 0..40 {
        one(&mut conn, &mut ids);
    }
    let indexed: Vec<String> = conn
        .prepare("SELECT id FROM event_ids")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(indexed.len() >= 64, "{} ids in the index", indexed.len());
    for id in &indexed {
        assert_eq!(ids.filter_rules_out(id), Some(false), "{id}");
    }
    for n in 0..next {
        let id = numbered(n).id;
        assert!(ids.seq_of(&conn, &id).unwrap().is_some(), "id {n} lost");
    }
    let new = (1000..1100)
        .filter(|&n| ids.filter_rules_out(&numbered(n).id) == Some(true))
        .count();
    assert!(new >= 95, "{new} of 100 new ids ruled out");
}

/// Ids of pruned events stay in a Bloom filter: once they are most of
/// it, a prune round has it rebuilt from the index (so it does not grow
/// for as long as the process runs), and not before.
#[test]
fn the_id_filter_is_rebuilt_once_pruned_ids_dominate_it() {
    let (_dir, path, mut conn, mut ids) = steps_db(16);
    for n in 0..400 {
        insert_batch(&mut conn, &mut ids, &numbered(n));
    }
    let installed = |ids: &mut RecentIds| {
        for _ in 0..300 {
            ids.poll_filter();
            if !ids.filter_state().1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        ids.filter_state()
    };
    let alive = Arc::new(());
    ids.filter_from(&path, Arc::downgrade(&alive));
    let (Some(before), false) = installed(&mut ids) else {
        panic!("the first build did not finish")
    };
    assert!(before >= 350, "{before} ids in the filter");
    // Not stale: no rebuild.
    ids.rebuild_filter_if_stale();
    assert_eq!(ids.filter_state(), (Some(before), false));
    // Prune most indexed ids, as `prune` does.
    let gone = conn
        .execute("DELETE FROM event_ids WHERE seq > 20", [])
        .unwrap();
    for _ in 0..gone {
        ids.unindexed();
    }
    ids.rebuild_filter_if_stale();
    let (Some(after), false) = installed(&mut ids) else {
        panic!("no rebuild")
    };
    assert!(
        after < before / 2,
        "{after} ids after the rebuild, {before} before"
    );
    // What is left in the index is still found.
    for n in 0..20 {
        assert!(ids.seq_of(&conn, &numbered(n).id).unwrap().is_some(), "{n}");
    }
}

/// A filter build for a store that has closed stops instead of holding
/// a read transaction (the closing checkpoint would wait for it), and
/// lookups go on through the index.
#[test]
fn an_id_filter_build_stops_when_the_store_closes() {
    let (_dir, path, mut conn, mut ids) = steps_db(4);
    for n in 0..40 {
        insert_batch(&mut conn, &mut ids, &numbered(n));
    }
    let alive = Arc::new(());
    let closed = Arc::downgrade(&alive);
    drop(alive);
    ids.filter_from(&path, closed);
    for _ in 0..300 {
        ids.poll_filter();
        if !ids.filter_state().1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(ids.filter_state(), (None, false));
    for n in 0..40 {
        assert!(ids.seq_of(&conn, &numbered(n).id).unwrap().is_some(), "{n}");
    }
}

/// A cached statement runs as prepared whatever its parameters: without
/// the planner stability setting, SQLite parses and plans a statement
/// with `LIMIT ?` again on every call (the writer's claims did).
#[test]
fn statements_are_not_prepared_again_per_call() {
    use rusqlite::StatementStatus;
    let reprepares = |conn: &Connection| -> i32 {
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq FROM events WHERE status = 'pending' AND ready = 1 \
                     AND next_attempt_at <= ?1 ORDER BY seq LIMIT ?2",
            )
            .unwrap();
        for (now, limit) in [(1_i64, 32_i64), (2, 32), (3, 16)] {
            stmt.query_map(params![now, limit], |r| r.get::<_, i64>(0))
                .unwrap()
                .for_each(drop);
        }
        stmt.get_status(StatementStatus::RePrepare)
    };
    let mut plain = Connection::open_in_memory().unwrap();
    migrate(&mut plain).unwrap();
    assert!(reprepares(&plain) > 0, "the control re-prepares");
    let mut configured = Connection::open_in_memory().unwrap();
    configure(&configured, Durability::PowerLoss).unwrap();
    migrate(&mut configured).unwrap();
    assert_eq!(reprepares(&configured), 0);
}

/// Under power-loss durability, only batches that acknowledge something
/// wait for a sync; the dispatcher's bookkeeping does not.
#[test]
fn only_acknowledging_batches_sync() {
    let conn = Connection::open_in_memory().unwrap();
    configure(&conn, Durability::PowerLoss).unwrap();
    let level = |conn: &Connection| -> i64 {
        conn.pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    };
    assert_eq!(level(&conn), 2, "FULL to begin with");
    let mut sync = CommitSync::new(Durability::PowerLoss);
    let (ping, _rx) = oneshot::channel();
    let (complete, _rx2) = oneshot::channel();
    let bookkeeping = [
        Command::Ping(ping),
        Command::Complete {
            id: "x".into(),
            worker: "w".into(),
            outcome: DispatchOutcome::Delivered,
            reply: complete,
        },
    ];
    sync.prepare(&conn, &bookkeeping).unwrap();
    assert_eq!(level(&conn), 1, "NORMAL for leases and outcomes");
    let (insert, _rx3) = oneshot::channel();
    let with_insert = [
        Command::Insert(Box::new((numbered(1), None)), insert),
        Command::Ping(oneshot::channel().0),
    ];
    sync.prepare(&conn, &with_insert).unwrap();
    assert_eq!(level(&conn), 2, "FULL again before an acknowledged insert");
    let (replay, _rx4) = oneshot::channel();
    sync.prepare(&conn, &[Command::Replay("x".into(), replay)])
        .unwrap();
    assert_eq!(level(&conn), 2);
    // Process-crash durability never syncs commits: nothing changes.
    configure(&conn, Durability::ProcessCrash).unwrap();
    let mut relaxed = CommitSync::new(Durability::ProcessCrash);
    relaxed.prepare(&conn, &with_insert).unwrap();
    assert_eq!(level(&conn), 1);
}

/// After a commit fails (here the database is full, as on a full disk),
/// pings are not ready until a probe write commits again; nothing was
/// acknowledged meanwhile.
#[test]
fn readiness_follows_failed_commits_until_a_write_succeeds() {
    let (_dir, _path, mut conn, mut ids) = steps_db(1000);
    let counters = Counters::default();
    let mut health = Health::unchecked();
    let ping = |conn: &mut Connection, ids: &mut RecentIds, health: &mut Health| {
        ping_batch(conn, ids, health, &counters)
    };
    let insert = |conn: &mut Connection, ids: &mut RecentIds, health: &mut Health, n| {
        let (reply, mut rx) = oneshot::channel();
        let cmd = Command::Insert(Box::new((numbered(n), None)), reply);
        run_batch(conn, &mut vec![cmd], ids, health, &counters);
        rx.try_recv().expect("answered")
    };
    assert!(insert(&mut conn, &mut ids, &mut health, 1).is_ok());
    assert!(ping(&mut conn, &mut ids, &mut health).is_ok());
    // No room for another page.
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "max_page_count", pages).unwrap();
    let mut refused = 0;
    for n in 2..200 {
        refused += usize::from(insert(&mut conn, &mut ids, &mut health, n).is_err());
    }
    assert!(refused > 0, "the database never filled up");
    assert!(health.failing);
    let err = ping(&mut conn, &mut ids, &mut health)
        .unwrap_err()
        .to_string();
    assert!(err.contains("full"), "{err}");
    assert!(health.failing, "still failing: the probe could not commit");
    // Room again: the next ping's probe commits, and so do inserts.
    conn.pragma_update(None, "max_page_count", pages * 100)
        .unwrap();
    assert!(ping(&mut conn, &mut ids, &mut health).is_ok());
    assert!(!health.failing);
    assert!(insert(&mut conn, &mut ids, &mut health, 500).is_ok());
    // What was refused is not there; what was answered Ok is.
    let stored: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(usize::try_from(stored).unwrap(), 1 + (198 - refused) + 1);
}

/// A damaged file (here an index page overwritten) fails deliveries
/// while a probe write may still commit: once SQLite has reported the
/// damage, pings stay not ready, naming the file.
#[test]
fn a_damaged_file_stays_not_ready() {
    let (dir, path, mut conn, mut ids) = steps_db(1000);
    for n in 0..300 {
        let mut e = numbered(n);
        e.product_id = Some(format!("p{n}"));
        insert_batch(&mut conn, &mut ids, &e);
    }
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'events_pending_product'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
        .unwrap();
    drop(conn);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(
            u64::try_from((root - 1) * page_size).unwrap(),
        ))
        .unwrap();
        f.write_all(&vec![0xA5; usize::try_from(page_size).unwrap()])
            .unwrap();
    }
    let mut conn = Connection::open(&path).unwrap();
    configure(&conn, Durability::ProcessCrash).unwrap();
    let counters = Counters::default();
    let mut health = Health::unchecked();
    let ping = |conn: &mut Connection, ids: &mut RecentIds, health: &mut Health| {
        ping_batch(conn, ids, health, &counters)
    };
    assert!(
        ping(&mut conn, &mut ids, &mut health).is_ok(),
        "not known yet"
    );
    let (reply, mut rx) = oneshot::channel();
    let mut e = numbered(1000);
    e.product_id = Some("p1".into());
    let cmd = Command::Insert(Box::new((e, None)), reply);
    run_batch(&mut conn, &mut vec![cmd], &mut ids, &mut health, &counters);
    let err = rx.try_recv().expect("answered").unwrap_err().to_string();
    assert!(err.contains("malformed"), "{err}");
    assert!(health.damaged);
    for _ in 0..3 {
        let err = ping(&mut conn, &mut ids, &mut health)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("damaged") && err.contains("integrity_check"),
            "{err}"
        );
    }
    // And no delivery is acknowledged into it any more, whichever
    // pages it would touch.
    let (reply, mut rx) = oneshot::channel();
    let cmd = Command::Insert(Box::new((numbered(2000), None)), reply);
    run_batch(&mut conn, &mut vec![cmd], &mut ids, &mut health, &counters);
    let err = rx.try_recv().expect("answered").unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
    drop(dir);
}

/// While commits fail, a claim fails with its batch instead of handing
/// out events whose lease rolled back (the dispatcher would claim and
/// send them again at once, in a loop, for as long as the disk is full).
#[test]
fn claims_wait_for_their_commit_while_commits_fail() {
    let (_dir, _path, mut conn, mut ids) = steps_db(1000);
    let counters = Counters::default();
    let mut health = Health::unchecked();
    let claim = || claim_command(1);
    let insert = |n| Command::Insert(Box::new((numbered(n), None)), oneshot::channel().0);
    let mut batch = vec![insert(1)];
    run_batch(&mut conn, &mut batch, &mut ids, &mut health, &counters);
    let pages: i64 = conn
        .pragma_query_value(None, "page_count", |r| r.get(0))
        .unwrap();
    conn.pragma_update(None, "max_page_count", pages).unwrap();
    // Fill the database: inserts start to fail.
    for n in 2..200 {
        run_batch(
            &mut conn,
            &mut vec![insert(n)],
            &mut ids,
            &mut health,
            &counters,
        );
    }
    assert!(health.failing, "the database never filled up");
    // A duplicate delivery writes nothing, so its batch commits even
    // on a full disk: that proves nothing, the store stays failing.
    run_batch(
        &mut conn,
        &mut vec![insert(1)],
        &mut ids,
        &mut health,
        &counters,
    );
    assert!(health.failing, "a batch of duplicates cleared the failure");
    // A claim, then an insert that fails: the batch rolls back, and the
    // claim says so rather than handing out event 1.
    let (cmd, mut rx) = claim();
    let mut batch = vec![cmd, insert(1000)];
    run_batch(&mut conn, &mut batch, &mut ids, &mut health, &counters);
    assert!(rx.try_recv().expect("answered").is_err());
    // Room again: claims commit and are answered at once as before.
    conn.pragma_update(None, "max_page_count", pages * 100)
        .unwrap();
    run_batch(
        &mut conn,
        &mut vec![insert(2000)],
        &mut ids,
        &mut health,
        &counters,
    );
    assert!(!health.failing);
    let (cmd, mut rx) = claim();
    run_batch(&mut conn, &mut vec![cmd], &mut ids, &mut health, &counters);
    let claimed = rx.try_recv().expect("answered").unwrap();
    assert!(claimed.iter().any(|e| e.event.id == numbered(1).id));
}

/// A claim in a batch that acknowledges deliveries takes heads only
/// (ingestion first); alone, it takes runs.
#[test]
fn claims_take_runs_only_when_no_delivery_waits() {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate(&mut conn).unwrap();
    let mut ids = RecentIds::load(&conn, 1000).unwrap();
    let counters = Counters::default();
    let mut health = Health::unchecked();
    let mut run = |batch: &mut Vec<Command>| {
        run_batch(&mut conn, batch, &mut ids, &mut health, &counters);
    };
    let product = |n: usize, p: &str| {
        let mut e = numbered(n);
        e.product_id = Some(p.to_owned());
        e
    };
    let insert = |e: NewEvent| Command::Insert(Box::new((e, None)), oneshot::channel().0);
    let mut batch: Vec<Command> = (0..3).map(|n| insert(product(n, "p"))).collect();
    run(&mut batch);
    let claim = || claim_command(3);
    let names = |mut rx: oneshot::Receiver<Result<Vec<StoredEvent>, StoreError>>| {
        rx.try_recv()
            .unwrap()
            .unwrap()
            .iter()
            .map(|e| e.event.event_id.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    let (cmd, rx) = claim();
    let mut batch = vec![insert(product(3, "q")), cmd];
    run(&mut batch);
    assert_eq!(names(rx), ["gen-0", "gen-3"], "heads only beside an insert");
    let (reply, _rx) = oneshot::channel();
    let mut batch = vec![Command::Release {
        ids: vec![numbered(0).id, product(3, "q").id],
        worker: "w".into(),
        reply,
    }];
    run(&mut batch);
    let (cmd, rx) = claim();
    run(&mut vec![cmd]);
    assert_eq!(
        names(rx),
        ["gen-0", "gen-1", "gen-2", "gen-3"],
        "runs when alone"
    );
}

#[tokio::test]
async fn one_store_owns_the_file_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owned.db");
    let first = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
    let second = SqliteStore::open(&path, Durability::ProcessCrash, 8);
    match second {
        Err(StoreError::InUse(p)) => assert_eq!(p, path.display().to_string()),
        other => panic!("expected InUse, got {other:?}"),
    }
    // The refused open changed nothing: the owner still writes.
    first.ping().await.unwrap();
    first.close().await;
    let reopened = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
    reopened.ping().await.unwrap();
    drop(reopened);
    // Dropped without close: the lock goes with it.
    SqliteStore::open(&path, Durability::ProcessCrash, 8)
        .unwrap()
        .close()
        .await;
}

/// A symbolic link to the file, or to its folder, is the same file: the
/// second open is refused as for the same name (else both servers
/// store every delivery, once each).
#[cfg(unix)]
#[tokio::test]
async fn a_link_to_an_owned_file_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owned.db");
    let first = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
    let file_link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&path, &file_link).unwrap();
    let dir_link = dir.path().join("linked-dir");
    std::os::unix::fs::symlink(dir.path(), &dir_link).unwrap();
    for other in [file_link, dir_link.join("owned.db")] {
        match SqliteStore::open(&other, Durability::ProcessCrash, 8) {
            Err(StoreError::InUse(_)) => {}
            other_result => panic!("{}: expected InUse, got {other_result:?}", other.display()),
        }
    }
    first.close().await;
}

/// A link to a file not created yet: the first server creates the file
/// through it, and a second one on the file's own name is refused.
#[cfg(unix)]
#[tokio::test]
async fn a_dangling_link_finds_the_lock_of_the_file_it_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let real = dir.path().join("data").join("new.db");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink("data/new.db", &link).unwrap();
    let first = SqliteStore::open(&link, Durability::ProcessCrash, 8).unwrap();
    assert!(real.exists());
    match SqliteStore::open(&real, Durability::ProcessCrash, 8) {
        Err(StoreError::InUse(p)) => {
            assert_eq!(
                p,
                std::fs::canonicalize(&real).unwrap().display().to_string()
            );
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    first.close().await;
}

/// A wrong `database.url` naming another program's database is refused
/// before anything is written to it (an outside audit saw such a file
/// adopted: our tables added, the file switched to WAL).
#[tokio::test]
async fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER); CREATE TABLE orders (id INTEGER);
                 INSERT INTO customers VALUES (1);",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path, Durability::PowerLoss, 8)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("another program's tables (customers, orders)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was changed"
    );
    assert!(!dir.path().join("shop.db-wal").exists());

    // One that keeps a `user_version` of its own (a re-audit saw one at
    // version 5 migrated, and one at 2 switched to WAL before refused).
    for version in [2, 5] {
        let path = dir.path().join(format!("v{version}.db"));
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE customers (id INTEGER);")
                .unwrap();
            conn.pragma_update(None, "user_version", version).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path, Durability::PowerLoss, 8)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no events table"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "v{version} changed");
    }
}

/// Versions this build cannot have written are refused before any
/// migration runs, with a message that says so.
#[test]
fn unknown_schema_versions_are_refused_clearly() {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate(&mut conn).unwrap();
    conn.pragma_update(None, "user_version", -1).unwrap();
    let err = migrate(&mut conn).unwrap_err().to_string();
    assert!(
        err.contains("schema version -1 is not one this build knows"),
        "{err}"
    );
    conn.pragma_update(None, "user_version", 0).unwrap();
    let err = migrate(&mut conn).unwrap_err().to_string();
    assert!(err.contains("no schema version"), "{err}");
    // A middle version on a current file: the next migration's tables
    // exist already. Said plainly, without the migration's SQL.
    conn.pragma_update(None, "user_version", 3).unwrap();
    let err = migrate(&mut conn).unwrap_err().to_string();
    assert!(
        err.contains("cannot migrate the database from schema version 3 to 4"),
        "{err}"
    );
    assert!(err.contains("already exists"), "{err}");
    assert!(!err.contains("CREATE"), "{err}");
    let future = i64::try_from(MIGRATIONS.len()).unwrap() + 1;
    conn.pragma_update(None, "user_version", future).unwrap();
    let err = migrate(&mut conn).unwrap_err().to_string();
    assert!(err.contains("is newer than this build"), "{err}");
}

#[tokio::test]
async fn migrates_a_version_1_database_keeping_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO events (id, platform, store, topic, raw_topic, event_id, \
                 product_key, received_at, product, raw_body, status, next_attempt_at, ready) \
                 VALUES ('abc', 'shopify', 's', 'product.created', 'products/create', 'e1', \
                 'p1', 0, '{\"id\":\"p1\"}', x'7b7d', 'pending', 0, 1)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let store = SqliteStore::open(&path, Durability::ProcessCrash, 8).unwrap();
    let e = store.get("abc").await.unwrap().unwrap();
    assert_eq!(&e.event.raw_body[..], b"{}");
    // The migrated event deduplicates (its id went into event_ids).
    let mut again = e.event.clone();
    again.status = EventStatus::Pending;
    assert_eq!(store.insert(again).await.unwrap(), InsertOutcome::Duplicate);
    assert_eq!(e.event.product.as_deref(), Some("{\"id\":\"p1\"}"));
    assert_eq!(
        store
            .claim_due("w", Duration::from_secs(5), 5)
            .await
            .unwrap()
            .len(),
        1
    );
    store.close().await;
}
