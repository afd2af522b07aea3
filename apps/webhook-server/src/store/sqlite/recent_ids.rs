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
//! in memory, in two generations: `fresh` takes new inserts; once it holds
//! [`RecentIds::generation`] ids it is frozen, sorted, and merged into the
//! index a slice per write batch, in id order. A slice of sorted ids lands on
//! a few neighbouring leaf pages instead of one page each, and when the whole
//! generation is in, the watermark moves in the same transaction as the last
//! slice. It is the memtable of an LSM tree, with SQLite's B-tree as the one
//! level.
//!
//! Nothing here is the only copy: every event row carries its id, so at
//! start-up the ids after the watermark are read back from `events` (at most
//! two generations of rows). A crash in the middle of a merge leaves some of
//! the frozen ids in the index and all of them in `events`; they are merged
//! again (`INSERT OR IGNORE`). This only holds while one process writes the
//! file, which the store enforces with its lock file.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::StoreError;

/// Ids frozen for merging at once (and the most kept in `fresh`): about
/// 2.5 MB of memory a generation, two at most.
pub(super) const GENERATION: usize = 32_768;

/// Ids merged per write batch at least (twice what the batch inserted when
/// that is more, so a merge always ends before the next generation is full).
const MERGE_SLICE: usize = 256;

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
    /// Reads the ids after the watermark back from `events`.
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
        let mut stmt = conn.prepare_cached("SELECT seq FROM event_ids WHERE id = ?1")?;
        Ok(stmt.query_row(params![id], |r| r.get(0)).optional()?)
    }

    /// Records an event inserted by the open transaction (undo with
    /// [`RecentIds::forget`] if it rolls back).
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
        let slice = MERGE_SLICE.min((self.generation / 8).max(1));
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
        self.merged = merged;
        if self.merged >= self.merging.len() {
            self.merging = Vec::new();
            self.merged = 0;
            self.indexed_through = self.merging_through;
        }
        self.freeze_if_full();
    }

    /// Between transactions only: `fresh` then holds committed ids alone.
    fn freeze_if_full(&mut self) {
        if !self.merging.is_empty() || self.fresh.len() < self.generation {
            return;
        }
        let mut frozen: Vec<(Box<str>, i64)> = self.fresh.drain().collect();
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
