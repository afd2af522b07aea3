//! WAL checkpoints on their own thread and connection.

use super::*;

/// Checkpoints the WAL into the database every [`CHECKPOINT_PERIOD`],
/// without holding up the writer, until the store is closed or dropped.
///
/// Why in passes: SQLite starts the WAL over (instead of appending to it)
/// only when a checkpoint has copied every frame in it. A checkpoint that
/// runs beside a busy writer never does, since frames keep coming, and the
/// WAL would grow for as long as the load lasts (hundreds of MB of dirty
/// page cache, then the kernel's write-back stalls). So each round copies
/// what is there (PASSIVE: the writer keeps going), then the few frames
/// committed meanwhile, until little is left; the last pass takes the
/// writer's gate, so it copies a handful of frames with no writer running
/// and completes the checkpoint. The writer waits for that last pass only
/// (a few milliseconds), never for the bulk of the copying and syncing.
pub(super) fn checkpoint_loop(path: &Path, alive: &std::sync::Weak<()>, gate: &WriterGate) {
    let conn = match Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "SQLite checkpoint thread could not open the database");
            return;
        }
    };
    let _ = conn.pragma_update(None, "busy_timeout", 1000);
    // The database file, to flush what the passes copied before the gated
    // pass (a sync covers every write to the file, through any descriptor).
    let db_file = match std::fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "SQLite checkpoint thread could not open the database file to sync it");
            None
        }
    };
    // Returns the WAL's frame count when the pass began (it copies those).
    let passive = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
    };
    let failures = LogBudget::new(FAILURE_LOG_EVERY);
    while alive.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_PERIOD);
        let round = (|| -> rusqlite::Result<()> {
            let mut seen = passive(&conn)?;
            // Catch up with what the writer committed during the last pass
            // while that is more than the final pass should copy.
            for _ in 0..MAX_PASSES {
                let now = passive(&conn)?;
                let fresh = now - seen;
                seen = now;
                if fresh <= FINAL_PASS_FRAMES {
                    break;
                }
            }
            // SQLite syncs the database file only in a pass that copies the
            // whole WAL: the gated one below. That sync would then flush
            // every page the passes above copied, with the writer waiting.
            // Those pages land all over the file once it is large (measured
            // with 3 M events, 4.4 GB: the writer waited up to 250 ms, p99
            // 60 to 250 ms). Flushed here, outside the gate, the gated pass
            // syncs only its own few pages.
            if let Some(file) = &db_file
                && let Err(e) = file.sync_data()
            {
                tracing::warn!(error = %e, "SQLite checkpoint could not sync the database file");
            }
            // No writer now: this pass copies the last frames, and the
            // writer's next transaction starts the WAL over.
            let _writer_paused = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            passive(&conn)?;
            Ok(())
        })();
        // Every period while the disk is full: one warning every few seconds.
        if let Err(e) = round
            && let Some(count) = failures.hit()
        {
            // A store failure, at `error` as configuration.md says.
            tracing::error!(error = %e, failed_rounds = count, "SQLite checkpoint failed");
        }
    }
}

/// Most catch-up passes per round before the final one (when the writer
/// commits faster than a pass copies, the final pass gets what came in
/// during the last one: the writer waits that long, and no longer).
pub(super) const MAX_PASSES: usize = 4;
/// Catch-up stops once a pass saw fewer new frames (pages) than this: about
/// what the final pass, the one the writer waits for, then copies.
pub(super) const FINAL_PASS_FRAMES: i64 = 256;

/// Time between checkpoint rounds. Short, so that each round's database
/// sync has little to write: a commit's WAL sync queues behind whatever the
/// checkpointer's sync is flushing, and those waits made the p99. Measured
/// at saturation (`power_loss`, wrk -t1 -c32): every 100 ms, p99 5.9 to 7.2
/// ms; every second, 8.8 to 16.2 ms; every 3 s, 28 to 31 ms. The price is
/// within the noise: 0 to 7 % fewer deliveries a second on average over
/// alternated runs, and about 5 % more bytes written (the last, partly
/// filled page of each table is copied by several rounds). (Once a second paid off while every
/// delivery wrote a random page of a unique id index, copied once per round:
/// the id index no longer is written per delivery, see `recent_ids`.)
pub(super) const CHECKPOINT_PERIOD: Duration = Duration::from_millis(100);
