//! The statements the writer runs on the events tables: inserts, claims,
//! outcomes, the admin reads, retention.

use super::*;

pub(super) const COLUMNS: &str = "e.seq, e.id, e.platform, e.store, e.topic, e.raw_topic, e.event_id, \
     e.delivery_id, e.product_id, e.triggered_at, e.received_at, b.product, b.raw_body, \
     e.status, e.error, e.attempts, e.last_error, e.next_attempt_at, b.codec";

/// How many columns [`COLUMNS`] names (what [`read_row`] reads); a query
/// may select more after them.
pub(super) const COLUMN_COUNT: usize = 19;

pub(super) const FROM: &str = "events e JOIN event_bodies b ON b.seq = e.seq";

pub(super) fn insert(
    tx: &Transaction<'_>,
    e: &NewEvent,
    stored: Option<&StoredBody>,
    ids: &mut RecentIds,
    changes: &mut IdChanges,
) -> Result<InsertOutcome, StoreError> {
    // Atomic per id: this thread is the file's only writer (see
    // `take_ownership`), and `ids` sees every insert before the next.
    if ids.seq_of(tx, &e.id)?.is_some() {
        return Ok(InsertOutcome::Duplicate);
    }
    // `ready` when no other event of the product is pending: an index probe,
    // so the cost does not grow with the backlog.
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (id, platform, store, topic, raw_topic, event_id, delivery_id, \
         product_id, product_key, triggered_at, received_at, status, error, \
         next_attempt_at, ready) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
           ?12 = 'pending' AND NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' \
             AND o.platform = ?2 AND o.store = ?3 AND o.product_key = ?9) \
         WHERE true",
    )?;
    let changed = stmt.execute(params![
        e.id,
        e.platform,
        e.store,
        e.topic,
        e.raw_topic,
        e.event_id,
        e.delivery_id,
        e.product_id,
        e.product_key(),
        e.triggered_at.map(to_millis),
        to_millis(e.received_at),
        e.status.as_str(),
        e.error,
        to_millis(e.received_at),
    ])?;
    if changed != 1 {
        return Err(StoreError::Database(format!(
            "event insert changed {changed} rows"
        )));
    }
    let seq = tx.last_insert_rowid();
    let mut body = tx.prepare_cached(
        "INSERT INTO event_bodies (seq, product, raw_body, codec) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let (codec, bytes) = stored.map_or((0, &e.raw_body[..]), |s| (s.codec, &s.bytes[..]));
    body.execute(params![seq, e.product, bytes, codec])?;
    ids.add(&e.id, seq);
    changes.added.push(e.id.as_str().into());
    Ok(InsertOutcome::Inserted)
}

/// Whole events with `seq` above `after`, oldest first (see
/// [`SqliteReader`](super::SqliteReader)).
pub(super) fn export(
    conn: &Connection,
    after: i64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    Ok(stmt
        .query_map(params![after, limit], read_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Events copied from another store (see [`EventStore::import`]), in the
/// order given: each inserted as [`insert`] stores a delivery (skipped when
/// its id is known; pending ones ready when their product has no other
/// pending event), then given the dispatch state it had there.
///
/// [`EventStore::import`]: crate::store::EventStore::import
pub(super) fn import(
    tx: &Transaction<'_>,
    events: &[(StoredEvent, Option<StoredBody>)],
    ids: &mut RecentIds,
    changes: &mut IdChanges,
) -> Result<Vec<bool>, StoreError> {
    let mut stored = Vec::with_capacity(events.len());
    for (e, body) in events {
        let inserted =
            insert(tx, &e.event, body.as_ref(), ids, changes)? == InsertOutcome::Inserted;
        if inserted {
            // The body's row was the last insert, under the event's seq.
            let seq = tx.last_insert_rowid();
            tx.prepare_cached(
                "UPDATE events SET attempts = ?2, last_error = ?3, next_attempt_at = ?4 \
                 WHERE seq = ?1",
            )?
            .execute(params![
                seq,
                i64::from(e.attempts),
                e.last_error,
                to_millis(e.next_attempt_at)
            ])?;
        }
        stored.push(inserted);
    }
    Ok(stored)
}

/// Room the readiness probe takes: a few deliveries' worth of new pages.
pub(super) const PROBE_ROOM: i64 = 64 * 1024;

/// A write that proves commits go through again after one failed: it
/// takes new pages, as inserts do (a small update in place would succeed
/// on a full disk), and gives them back in the same transaction.
pub(super) fn write_probe(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO readiness_probe (room) VALUES (zeroblob(?1))")?
        .execute(params![PROBE_ROOM])?;
    tx.prepare_cached("DELETE FROM readiness_probe")?
        .execute([])?;
    Ok(())
}

/// Makes the oldest pending event of the product of event `seq` ready.
pub(super) fn promote_next(tx: &Transaction<'_>, seq: i64) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET ready = 1 WHERE seq = (SELECT MIN(o.seq) FROM events o, events e \
         WHERE e.seq = ?1 AND o.status = 'pending' AND o.platform = e.platform \
         AND o.store = e.store AND o.product_key = e.product_key)",
    )?;
    stmt.execute(params![seq])?;
    Ok(())
}

pub(super) fn read_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    let status: String = row.get(13)?;
    let raw_body = StoredBody::decode(row.get(18)?, row.get(12)?)?;
    Ok(StoredEvent {
        seq: row.get(0)?,
        event: NewEvent {
            id: row.get(1)?,
            platform: row.get(2)?,
            store: row.get(3)?,
            topic: row.get(4)?,
            raw_topic: row.get(5)?,
            event_id: row.get(6)?,
            delivery_id: row.get(7)?,
            product_id: row.get(8)?,
            triggered_at: row.get::<_, Option<i64>>(9)?.map(from_millis),
            received_at: from_millis(row.get(10)?),
            product: row.get(11)?,
            raw_body,
            // Unknown text cannot be written by this code; treat as failed.
            status: EventStatus::parse(&status).unwrap_or(EventStatus::Failed),
            error: row.get(14)?,
        },
        attempts: row.get::<_, i64>(15)?.try_into().unwrap_or(u32::MAX),
        last_error: row.get(16)?,
        next_attempt_at: from_millis(row.get(17)?),
    })
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    worker: &str,
    lease: Duration,
    limit: usize,
    run: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let now = to_millis(Utc::now());
    let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
    // Only ready events (one per product with pending events) are looked at.
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} \
         WHERE e.status = 'pending' AND e.ready = 1 AND e.next_attempt_at <= ?1 \
           AND (e.lease_until IS NULL OR e.lease_until <= ?1) \
         ORDER BY e.seq LIMIT ?2"
    ))?;
    let events = stmt
        .query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            read_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Runs only when the writer is not acknowledging deliveries (the caller
    // passes `run` 1 then: under a burst answering comes first, and the
    // dispatcher catches up after it, in runs), and when few products are
    // due: with many, a claim is wide already, and looking for followers
    // behind every head costs more than it brings (measured with 1,000
    // products: 17 % fewer deliveries a second, even with the index-only
    // probe).
    let events = if run > 1 && events.len() <= limit / RUNS_BELOW_FRACTION {
        with_followers(tx, events, now, run)?
    } else {
        events
    };
    let mut lease_stmt =
        tx.prepare_cached("UPDATE events SET lease_owner = ?1, lease_until = ?2 WHERE seq = ?3")?;
    for e in &events {
        lease_stmt.execute(params![worker, until, e.seq])?;
    }
    Ok(events)
}

/// Followers are looked for when a claim found at most `limit` / this many
/// heads (see [`claim`]).
pub(super) const RUNS_BELOW_FRACTION: usize = 4;

/// Each head followed by up to `run - 1` of the next pending events of its
/// product, in order, stopping at the first one that is not due or is
/// leased (it must not be overtaken).
///
/// Why a probe first: most heads have no followers when many products share
/// the traffic, and one query per head that joined the bodies cost about 2
/// ms a claim inside the writer (a third fewer deliveries a second with
/// 1,000 products). The probe reads the pending-per-product index alone
/// (it covers the query); full rows are read only for followers it finds.
pub(super) fn with_followers(
    tx: &Transaction<'_>,
    heads: Vec<StoredEvent>,
    now: i64,
    run: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    // Followers only when the head is the product's oldest pending event:
    // an older one (replayed) goes right after the head, before them.
    let mut probe = tx.prepare_cached(
        "SELECT seq FROM events \
         WHERE status = 'pending' AND platform = ?1 AND store = ?2 \
           AND product_key = ?3 AND seq > ?4 \
           AND NOT EXISTS (SELECT 1 FROM events o WHERE o.status = 'pending' \
             AND o.platform = ?1 AND o.store = ?2 AND o.product_key = ?3 AND o.seq < ?4) \
         ORDER BY platform, store, product_key, seq LIMIT ?5",
    )?;
    let mut row = tx.prepare_cached(&format!(
        "SELECT {COLUMNS}, e.lease_until FROM {FROM} WHERE e.seq = ?1"
    ))?;
    let mut out = Vec::with_capacity(heads.len());
    for head in heads {
        let followers = probe
            .query_map(
                params![
                    head.event.platform,
                    head.event.store,
                    head.event.product_key(),
                    head.seq,
                    i64::try_from(run - 1).unwrap_or(i64::MAX)
                ],
                |r| r.get::<_, i64>(0),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(head);
        for seq in followers {
            let Some((event, lease_until)) = row
                .query_row(params![seq], |r| {
                    let lease_until: Option<i64> = r.get(COLUMN_COUNT)?;
                    Ok((read_row(r)?, lease_until))
                })
                .optional()?
            else {
                break;
            };
            let due = to_millis(event.next_attempt_at) <= now;
            if !due || lease_until.is_some_and(|u| u > now) {
                break;
            }
            out.push(event);
        }
    }
    Ok(out)
}

/// Clears `worker`'s leases on pending events (see [`EventStore::release`]).
pub(super) fn release(
    tx: &Transaction<'_>,
    which: &[String],
    worker: &str,
    ids: &RecentIds,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET lease_owner = NULL, lease_until = NULL \
         WHERE seq = ?1 AND lease_owner = ?2 AND status = 'pending'",
    )?;
    for id in which {
        if let Some(seq) = ids.seq_of(tx, id)? {
            stmt.execute(params![seq, worker])?;
        }
    }
    Ok(())
}

pub(super) fn complete(
    tx: &Transaction<'_>,
    id: &str,
    worker: &str,
    outcome: &DispatchOutcome,
    ids: &RecentIds,
) -> Result<bool, StoreError> {
    Ok(match record_outcome(tx, id, worker, outcome, ids)? {
        Recorded::Finished(seq, _) => {
            promote_next(tx, seq)?;
            true
        }
        Recorded::Pending => true,
        Recorded::NotOwned => false,
    })
}

/// Records a run's outcomes in order (see [`EventStore::complete_run`]).
/// The product's next event is made ready once, after the run, instead of
/// after each event (where the next one would be made ready only to be
/// finished in the same transaction).
pub(super) fn complete_run(
    tx: &Transaction<'_>,
    worker: &str,
    outcomes: &[(String, DispatchOutcome)],
    ids: &RecentIds,
) -> Result<Vec<bool>, StoreError> {
    let mut recorded = Vec::with_capacity(outcomes.len());
    // Per product, the last event that finished: its next one is made
    // ready after the run. (A product whose last outcome was a retry gets
    // that event back, already ready: harmless.)
    let mut promote: Vec<(ProductKey, i64)> = Vec::new();
    for (id, outcome) in outcomes {
        match record_outcome(tx, id, worker, outcome, ids)? {
            Recorded::Finished(seq, product) => {
                match promote.iter_mut().find(|(p, _)| *p == product) {
                    Some(entry) => entry.1 = seq,
                    None => promote.push((product, seq)),
                }
                recorded.push(true);
            }
            Recorded::Pending => recorded.push(true),
            Recorded::NotOwned => recorded.push(false),
        }
    }
    for (_, seq) in promote {
        promote_next(tx, seq)?;
    }
    Ok(recorded)
}

/// (platform, store, product key): the unit of ordering.
pub(super) type ProductKey = (String, String, String);

/// What [`record_outcome`] did.
pub(super) enum Recorded {
    /// The event left `pending`; its product's next event is to be made ready.
    Finished(i64, ProductKey),
    /// Still pending (a retry), and ready.
    Pending,
    /// No such pending event leased to this worker.
    NotOwned,
}

/// Records one outcome, without making the product's next event ready.
pub(super) fn record_outcome(
    tx: &Transaction<'_>,
    id: &str,
    worker: &str,
    outcome: &DispatchOutcome,
    ids: &RecentIds,
) -> Result<Recorded, StoreError> {
    let Some(seq) = ids.seq_of(tx, id)? else {
        return Ok(Recorded::NotOwned);
    };
    let now = to_millis(Utc::now());
    let (status, error, next, unreadable) = match outcome {
        DispatchOutcome::Delivered => (EventStatus::Delivered, None, now, None),
        DispatchOutcome::Retry { error, at } => (
            EventStatus::Pending,
            Some(error.as_str()),
            to_millis(*at),
            None,
        ),
        DispatchOutcome::Dead { error } => (EventStatus::Dead, Some(error.as_str()), now, None),
        DispatchOutcome::Unreadable { error } => {
            (EventStatus::Failed, None, now, Some(error.as_str()))
        }
    };
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET status = ?1, attempts = attempts + 1, \
         last_error = COALESCE(?2, last_error), next_attempt_at = ?3, lease_owner = NULL, \
         lease_until = NULL, ready = (?1 = 'pending'), error = COALESCE(?6, error) \
         WHERE seq = ?4 AND lease_owner = ?5 AND status = 'pending' \
         RETURNING seq, platform, store, product_key",
    )?;
    let row: Option<(i64, ProductKey)> = stmt
        .query_row(
            params![status.as_str(), error, next, seq, worker, unreadable],
            |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
        )
        .optional()?;
    Ok(match row {
        None => Recorded::NotOwned,
        Some(_) if status == EventStatus::Pending => Recorded::Pending,
        Some((seq, product)) => Recorded::Finished(seq, product),
    })
}

pub(super) fn list(
    tx: &Transaction<'_>,
    filter: &EventFilter,
    before: Option<i64>,
    limit: usize,
) -> Result<EventPage, StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE (?1 IS NULL OR e.platform = ?1) \
         AND (?2 IS NULL OR e.store = ?2) AND (?3 IS NULL OR e.topic = ?3) \
         AND (?4 IS NULL OR e.status = ?4) AND (?5 IS NULL OR e.seq < ?5) \
         ORDER BY e.seq DESC LIMIT ?6"
    ))?;
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let events = stmt
        .query_map(
            params![
                filter.platform,
                filter.store,
                filter.topic,
                filter.status.map(EventStatus::as_str),
                before,
                fetch
            ],
            read_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(EventPage::from_overfetch(events, limit))
}

pub(super) fn get(
    tx: &Transaction<'_>,
    id: &str,
    ids: &RecentIds,
) -> Result<Option<StoredEvent>, StoreError> {
    let Some(seq) = ids.seq_of(tx, id)? else {
        return Ok(None);
    };
    let mut stmt = tx.prepare_cached(&format!("SELECT {COLUMNS} FROM {FROM} WHERE e.seq = ?1"))?;
    Ok(stmt.query_row(params![seq], read_row).optional()?)
}

/// Deletes up to `limit` events `policy` covers, oldest first (see
/// [`EventStore::prune`]), with their bodies and their ids.
pub(super) fn prune(
    tx: &Transaction<'_>,
    policy: &PrunePolicy,
    limit: usize,
    ids: &mut RecentIds,
    changes: &mut IdChanges,
) -> Result<usize, StoreError> {
    // The statements read the age indexes of migration 5 (their WHERE
    // clauses must stay word for word those of the indexes).
    const OLDEST: [&str; 2] = [
        "SELECT seq, id FROM events WHERE status = 'delivered' AND received_at < ?1 \
         ORDER BY received_at LIMIT ?2",
        "SELECT seq, id FROM events WHERE status IN ('failed', 'dead') AND received_at < ?1 \
         ORDER BY received_at LIMIT ?2",
    ];
    let mut victims: Vec<(i64, String)> = Vec::new();
    for (sql, cutoff) in OLDEST
        .iter()
        .zip([policy.delivered_before, policy.failed_before])
    {
        let Some(cutoff) = cutoff else { continue };
        let left = limit.saturating_sub(victims.len());
        if left == 0 {
            break;
        }
        let mut stmt = tx.prepare_cached(sql)?;
        let rows = stmt.query_map(
            params![to_millis(cutoff), i64::try_from(left).unwrap_or(i64::MAX)],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for row in rows {
            victims.push(row?);
        }
    }
    let mut deleted = 0;
    for (seq, id) in victims {
        match ids.place(seq) {
            IdPlace::Merging => continue,
            IdPlace::Indexed => {
                tx.prepare_cached("DELETE FROM event_ids WHERE id = ?1")?
                    .execute(params![id])?;
                ids.unindexed();
            }
            IdPlace::Fresh => ids.remove(&id, changes),
        }
        tx.prepare_cached("DELETE FROM event_bodies WHERE seq = ?1")?
            .execute(params![seq])?;
        tx.prepare_cached("DELETE FROM events WHERE seq = ?1")?
            .execute(params![seq])?;
        deleted += 1;
    }
    Ok(deleted)
}

pub(super) fn replay(
    tx: &Transaction<'_>,
    id: &str,
    ids: &RecentIds,
) -> Result<ReplayOutcome, StoreError> {
    let Some(seq) = ids.seq_of(tx, id)? else {
        return Ok(ReplayOutcome::NotFound);
    };
    let now = to_millis(Utc::now());
    // A dispatcher holds it: the attempt in progress ends first.
    let held: bool = tx
        .prepare_cached(
            "SELECT status = 'pending' AND lease_until IS NOT NULL AND lease_until > ?1 \
             FROM events WHERE seq = ?2",
        )?
        .query_row(params![now, seq], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    if held {
        return Ok(ReplayOutcome::InFlight);
    }
    let mut stmt = tx.prepare_cached(
        "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = ?1, \
         lease_owner = NULL, lease_until = NULL, \
         ready = CASE WHEN status = 'pending' THEN ready ELSE 0 END \
         WHERE seq = ?2",
    )?;
    if stmt.execute(params![now, seq])? != 1 {
        return Ok(ReplayOutcome::NotFound);
    }
    // The product's turn: its ready event keeps it while a dispatcher holds
    // it or it has been tried (its retry goes first); otherwise the oldest
    // pending event is ready, so the replayed one goes before newer ones.
    tx.prepare_cached(
        "UPDATE events SET ready = 0 \
         WHERE seq IN (SELECT o.seq FROM events o, events e \
             WHERE e.seq = ?2 AND o.status = 'pending' AND o.ready = 1 \
               AND o.platform = e.platform AND o.store = e.store \
               AND o.product_key = e.product_key) \
           AND attempts = 0 AND (lease_until IS NULL OR lease_until <= ?1)",
    )?
    .execute(params![now, seq])?;
    let has_head: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events o, events e \
             WHERE e.seq = ?1 AND o.status = 'pending' AND o.ready = 1 \
               AND o.platform = e.platform AND o.store = e.store \
               AND o.product_key = e.product_key)",
        )?
        .query_row(params![seq], |r| r.get(0))?;
    if !has_head {
        promote_next(tx, seq)?;
    }
    Ok(ReplayOutcome::Queued)
}

/// Figures read on a connection of their own: counting a large backlog of
/// pending events takes a while and must not hold up the writer (WAL readers
/// never block it).
pub(super) fn stats(path: &Path) -> Result<StoreStats, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // MAX(seq) is a primary-key lookup; the count walks the partial index
    // of pending events.
    let events: Option<i64> = conn.query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))?;
    let pending: i64 = conn.query_row(
        "SELECT COUNT(*) FROM events WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(StoreStats {
        events: u64::try_from(events.unwrap_or(0)).unwrap_or(0),
        pending: u64::try_from(pending).unwrap_or(0),
        commits: 0,
        writes: 0,
        dropped_undelivered: 0,
    })
}
