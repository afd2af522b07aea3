//! Deduplication by event id without a random index write per delivery.
//!
//! Event ids are digests, so they arrive in random order. Kept in a B-tree
//! index written with each insert, nearly every delivery rewrote one index
//! page somewhere in the file: a 4 KB WAL frame (and, once a second, a copy
//! into the database) for a 40-byte entry, about half of the bytes the store
//! wrote (measured: 11.5-12.1 KB a delivery with the index, 5.9-6.9 KB
//! without).
//!
//! So the index (`event_ids`) holds every event up to a watermark
//! (`store_state.ids_merged_through`), and the ids of later events live here,
//! in memory, in two generations: `fresh` takes new inserts; once it holds a
//! generation's worth of ids ([`GENERATION`], growing with the index, see
//! [`GROWTH`]) it is frozen, sorted, and merged into the index a slice per
//! write batch, in id order. A slice of sorted ids lands on a few
//! neighbouring leaf pages instead of one page each, and when the whole
//! generation is in, the watermark moves in the same transaction as the last
//! slice. It is the memtable of an LSM tree, with SQLite's B-tree as the one
//! level, and a Bloom filter of that level (`id_filter.rs`) so that proving
//! a delivery new does not read it.
//!
//! Nothing here is the only copy: every event row carries its id, so at
//! start-up the ids after the watermark are read back from `events` (at most
//! two generations of rows). A crash in the middle of a merge leaves some of
//! the frozen ids in the index and all of them in `events`; they are merged
//! again (`INSERT OR IGNORE`). This only holds while one process writes the
//! file, which the store enforces with its lock file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Weak, mpsc};

use rusqlite::{Connection, OptionalExtension, params};

use super::id_filter::IdFilter;
use crate::store::StoreError;

/// Ids frozen for merging at once (and the most kept in `fresh`) while the
/// index is small: about 2.5 MB of memory a generation, two at most.
pub(super) const GENERATION: usize = 32_768;

/// A generation grows with the index, to this many times the configured
/// one (about 10 MB a generation; reached at 2 M indexed ids).
///
/// Why: merged ids land on random leaf pages. While the index has fewer
/// leaves than a generation has ids, a merge rewrites each leaf about once
/// and that is shared by many ids; past that, nearly every merged id
/// rewrites a page of its own (4 KB into the WAL and again into the
/// database for a 40-byte entry). A generation of a sixteenth of the index
/// keeps it at a few ids a page.
const GROWTH: usize = 4;

/// Ids merged per write batch: twice what the batch inserted (so a merge
/// ends before the next generation is full), and at least this many (so
/// batches without inserts move it on too). Why no more: on a large index
/// each id of a slice is a page of its own, so a slice of 256 put 1 MB of
/// random pages into one commit, with every delivery in it waiting, and
/// merged in bursts (performance.md, fifth session, has the figures of
/// the changes made together for large files).
const MIN_SLICE: usize = 32;

/// The ids the `event_ids` index does not hold yet (see the module docs).
#[derive(Debug)]
pub(super) struct RecentIds {
    /// Ids of events after `merging_through`, id -> seq.
    fresh: HashMap<Box<str>, i64>,
    /// The generation being merged, sorted by id; `merging[..merged]` is in
    /// the index (committed).
    merging: Vec<(Box<str>, i64)>,
    merged: usize,
    /// Highest seq in `merging`; the watermark once it is all merged.
    merging_through: i64,
    /// The committed watermark: every event up to here is in the index.
    indexed_through: i64,
    generation: usize,
    /// Every id in the index or in `merging` (and some pruned ones): a
    /// lookup it rules out skips the index (see `id_filter.rs`). None until
    /// the first build is in: every lookup reads the index meanwhile.
    filter: Option<IdFilter>,
    /// A filter being built from the index on a thread of its own.
    building: Option<FilterBuild>,
    /// Where builds read the index, and the store's lifetime (a build
    /// stops when the store closes, so it does not hold a read transaction
    /// the final checkpoint would wait for).
    source: Option<(PathBuf, Weak<()>)>,
    /// About how many ids the index holds (merges add, prunes take away).
    indexed_len: usize,
}

/// A filter build in progress: the ids that may reach the index after the
/// build's snapshot, to be added to what it read.
#[derive(Debug)]
struct FilterBuild {
    done: mpsc::Receiver<Result<(IdFilter, usize), StoreError>>,
    since: Vec<Box<str>>,
}

/// Where the id of an event is kept, by the event's seq (for pruning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdPlace {
    /// In `event_ids`: delete the row with the event.
    Indexed,
    /// In the generation being merged: leave the event for a later prune
    /// (deleting it now would leave its id to be merged into the index).
    Merging,
    /// In `fresh`: take it out with [`RecentIds::remove`].
    Fresh,
}

/// What one transaction changed in [`RecentIds`], undone if it rolls back.
#[derive(Debug, Default)]
pub(super) struct IdChanges {
    /// Ids it inserted.
    pub(super) added: Vec<Box<str>>,
    /// Ids it removed from `fresh` (pruned events), with their seqs.
    pub(super) removed: Vec<(Box<str>, i64)>,
}

impl RecentIds {
    /// Reads the ids after the watermark back from `events` (the filter is
    /// built apart: [`RecentIds::build_filter`]).
    pub(super) fn load(conn: &Connection, generation: usize) -> Result<Self, StoreError> {
        let watermark: i64 = conn.query_row(
            "SELECT value FROM store_state WHERE key = 'ids_merged_through'",
            [],
            |r| r.get(0),
        )?;
        let mut fresh = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, seq FROM events WHERE seq > ?1")?;
        let rows = stmt.query_map(params![watermark], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (id, seq) = row?;
            fresh.insert(id.into_boxed_str(), seq);
        }
        let mut ids = Self {
            fresh,
            merging: Vec::new(),
            merged: 0,
            merging_through: watermark,
            indexed_through: watermark,
            generation: generation.max(1),
            filter: None,
            building: None,
            source: None,
            indexed_len: 0,
        };
        ids.freeze_if_full();
        Ok(ids)
    }

    /// The seq of the event with this id, if there is one.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub(super) fn seq_of(&self, conn: &Connection, id: &str) -> Result<Option<i64>, StoreError> {
        if let Some(&seq) = self.fresh.get(id) {
            return Ok(Some(seq));
        }
        if let Ok(at) = self.merging.binary_search_by(|(k, _)| (**k).cmp(id)) {
            return Ok(self.merging.get(at).map(|&(_, seq)| seq));
        }
        if self.filter.as_ref().is_some_and(|f| !f.may_contain(id)) {
            return Ok(None);
        }
        let mut stmt = conn.prepare_cached("SELECT seq FROM event_ids WHERE id = ?1")?;
        Ok(stmt.query_row(params![id], |r| r.get(0)).optional()?)
    }

    /// Records an event inserted by the open transaction (undo with
    /// [`RecentIds::undo`] if it rolls back).
    pub(super) fn add(&mut self, id: &str, seq: i64) {
        self.fresh.insert(id.into(), seq);
    }

    /// Where the id of the event `seq` is kept.
    pub(super) fn place(&self, seq: i64) -> IdPlace {
        if seq <= self.indexed_through {
            IdPlace::Indexed
        } else if seq > self.merging_through {
            IdPlace::Fresh
        } else {
            IdPlace::Merging
        }
    }

    /// Forgets the id of an event the open transaction deleted (a `Fresh`
    /// one); recorded in `changes` to be put back if it rolls back.
    pub(super) fn remove(&mut self, id: &str, changes: &mut IdChanges) {
        if let Some((id, seq)) = self.fresh.remove_entry(id) {
            changes.removed.push((id, seq));
        }
    }

    /// Undoes what a transaction that rolled back did.
    pub(super) fn undo(&mut self, changes: IdChanges) {
        for id in &changes.added {
            self.fresh.remove(id);
        }
        for (id, seq) in changes.removed {
            self.fresh.insert(id, seq);
        }
    }

    /// Writes the next slice of the frozen generation into the index, in the
    /// open transaction (and the new watermark with the last slice). Returns
    /// where the merge will stand once that transaction commits, for
    /// [`RecentIds::committed`].
    ///
    /// # Errors
    /// A statement error; the transaction must then roll back.
    pub(super) fn merge_slice(
        &self,
        conn: &Connection,
        inserted: usize,
    ) -> Result<usize, StoreError> {
        if self.merged >= self.merging.len() {
            return Ok(self.merged);
        }
        // Small generations (tests) merge in several slices too.
        let slice = MIN_SLICE.min((self.generation / 8).max(1));
        let end = self
            .merging
            .len()
            .min(self.merged + slice.max(inserted.saturating_mul(2)));
        let mut stmt =
            conn.prepare_cached("INSERT OR IGNORE INTO event_ids (id, seq) VALUES (?1, ?2)")?;
        for (id, seq) in self.merging.get(self.merged..end).unwrap_or_default() {
            stmt.execute(params![&**id, seq])?;
        }
        if end == self.merging.len() {
            conn.execute(
                "UPDATE store_state SET value = ?1 WHERE key = 'ids_merged_through'",
                params![self.merging_through],
            )?;
        }
        Ok(end)
    }

    /// The transaction that ran [`RecentIds::merge_slice`] committed: the
    /// merge stands at `merged`. Starts the next merge when `fresh` is full.
    pub(super) fn committed(&mut self, merged: usize) {
        self.indexed_len = self
            .indexed_len
            .saturating_add(merged.saturating_sub(self.merged));
        self.merged = merged;
        if self.merged >= self.merging.len() {
            self.merging = Vec::new();
            self.merged = 0;
            self.indexed_through = self.merging_through;
        }
        self.freeze_if_full();
    }

    /// Ids a generation holds now: a sixteenth of the index, between the
    /// configured generation and [`GROWTH`] times it.
    fn target_generation(&self) -> usize {
        self.generation
            .max((self.indexed_len / 16).min(self.generation.saturating_mul(GROWTH)))
    }

    /// Builds filters from the index in the file at `path` for as long as
    /// `alive` does, starting with the first now.
    pub(super) fn filter_from(&mut self, path: &Path, alive: Weak<()>) {
        self.source = Some((path.to_owned(), alive));
        self.build_filter();
    }

    /// Starts building the filter from the index on a thread of its own
    /// (the writer goes on; lookups read the index until it is in).
    ///
    /// Every id that can reach the index after the build's snapshot is
    /// recorded from now on (the generation being merged, and the ones
    /// frozen later), and added to what the build read: the filter it
    /// yields holds every id in the index when it is installed.
    fn build_filter(&mut self) {
        let Some((path, alive)) = self.source.clone() else {
            return;
        };
        if self.building.is_some() {
            return;
        }
        let since = self.merging.iter().map(|(id, _)| id.clone()).collect();
        let (tx, done) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("sqlite-id-filter".into())
            .spawn(move || {
                let _ = tx.send(read_filter(&path, &alive));
            });
        match spawned {
            Ok(_) => self.building = Some(FilterBuild { done, since }),
            Err(e) => tracing::warn!(error = %e, "could not start building the id filter"),
        }
    }

    /// Installs a finished filter build (between transactions; cheap when
    /// none has finished).
    pub(super) fn poll_filter(&mut self) {
        let Some(build) = &self.building else { return };
        let result = match build.done.try_recv() {
            Ok(result) => result,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => {
                Err(StoreError::Database("the id filter build stopped".into()))
            }
        };
        let Some(build) = self.building.take() else {
            return;
        };
        match result {
            Ok((mut filter, indexed)) => {
                for id in &build.since {
                    filter.insert(id);
                }
                tracing::debug!(ids = filter.len(), "id filter built");
                self.filter = Some(filter);
                self.indexed_len = indexed;
            }
            // Lookups go on reading the index; the next prune round tries
            // again.
            Err(e) => tracing::warn!(error = %e, "could not build the id filter"),
        }
    }

    /// Whether the filter is in and rules `id` out (tests).
    #[cfg(test)]
    pub(super) fn filter_rules_out(&self, id: &str) -> Option<bool> {
        self.filter.as_ref().map(|f| !f.may_contain(id))
    }

    /// Ids in the filter, if it is in; whether a build runs (tests).
    #[cfg(test)]
    pub(super) fn filter_state(&self) -> (Option<usize>, bool) {
        (
            self.filter.as_ref().map(IdFilter::len),
            self.building.is_some(),
        )
    }

    /// Ids of the generation being merged not yet in the index (tests).
    #[cfg(test)]
    pub(super) fn unmerged(&self) -> usize {
        self.merging.len() - self.merged
    }

    /// An indexed id was deleted (a pruned event's; an estimate: the
    /// transaction may yet roll back).
    pub(super) fn unindexed(&mut self) {
        self.indexed_len = self.indexed_len.saturating_sub(1);
    }

    /// Rebuilds the filter once ids of pruned events make up over half of
    /// it (or when there is none yet): pruned ids stay in a Bloom filter,
    /// and with retention it would otherwise grow for as long as the
    /// process runs.
    pub(super) fn rebuild_filter_if_stale(&mut self) {
        let stale = match &self.filter {
            None => true,
            Some(f) => {
                f.len()
                    > self
                        .indexed_len
                        .saturating_mul(2)
                        .saturating_add(self.generation)
            }
        };
        if stale {
            self.build_filter();
        }
    }

    /// Between transactions only: `fresh` then holds committed ids alone.
    fn freeze_if_full(&mut self) {
        if !self.merging.is_empty() || self.fresh.len() < self.target_generation() {
            return;
        }
        let mut frozen: Vec<(Box<str>, i64)> = self.fresh.drain().collect();
        // Into the filter (and a build's list) before any of them can be in
        // the index.
        for (id, _) in &frozen {
            if let Some(f) = &mut self.filter {
                f.insert(id);
            }
            if let Some(b) = &mut self.building {
                b.since.push(id.clone());
            }
        }
        frozen.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // `fresh` held every event after the watermark: the highest of them
        // is the watermark once these are merged.
        if let Some(max) = frozen.iter().map(|&(_, seq)| seq).max() {
            self.merging_through = self.merging_through.max(max);
        }
        self.merging = frozen;
        self.merged = 0;
    }
}

/// The filter of the ids in `event_ids` and how many there are, read on a
/// connection of its own (a WAL snapshot: the writer goes on meanwhile). A
/// sequential scan of the index: about a second per 1.5 M ids here.
fn read_filter(path: &Path, alive: &Weak<()>) -> Result<(IdFilter, usize), StoreError> {
    let closed = || StoreError::Database("the store closed during an id filter build".into());
    if alive.strong_count() == 0 {
        return Err(closed());
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let tx = conn.unchecked_transaction()?;
    let count: i64 = tx.query_row("SELECT COUNT(*) FROM event_ids", [], |r| r.get(0))?;
    let count = usize::try_from(count).unwrap_or(0);
    // Room for a quarter more before the filter adds a layer.
    let mut filter = IdFilter::with_capacity(count + count / 4);
    let mut stmt = tx.prepare("SELECT id FROM event_ids")?;
    let mut rows = stmt.query([])?;
    let mut read = 0_usize;
    while let Some(row) = rows.next()? {
        read += 1;
        if read.is_multiple_of(65_536) && alive.strong_count() == 0 {
            return Err(closed());
        }
        let id = row.get_ref(0)?;
        filter.insert(
            id.as_str()
                .map_err(|e| StoreError::Database(format!("event_ids: {e}")))?,
        );
    }
    Ok((filter, count))
}
