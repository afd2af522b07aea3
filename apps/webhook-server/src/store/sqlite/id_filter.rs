//! A Bloom filter of the event ids in the `event_ids` index, so checking a
//! new delivery for a duplicate does not read the index.
//!
//! Why: nearly every delivery is new, and its id is a digest, so the index
//! lookup that proves it new lands on a random leaf page. Once the index
//! outgrows the page cache (about a million events), that is a read from
//! the OS, or from the disk when cold, inside the writer, which every
//! waiting delivery queues behind (profiled with 1.48 M events: 19 % of the
//! writer's CPU time in that lookup alone, p99 12 to 66 ms). A filter answers
//! "not there" from memory for nearly all of them; a "maybe" (a duplicate,
//! or a false positive, about 0.5 %) reads the index as before.
//!
//! It never answers "not there" for an id that is there: every id is added
//! before it can be in the index (when its generation is frozen, see
//! `recent_ids.rs`), and the ids already in the index are read in at
//! start-up. Ids of pruned events stay in it (a false positive costs one
//! lookup); the filter is rebuilt at each start.
//!
//! Blocked layout: an id sets [`PROBES`] bits within one 512-bit block (one
//! cache line), so a lookup touches one line per layer. The filter grows in
//! layers, each twice the capacity of the last, so it never needs the ids
//! again to grow; a lookup asks every layer (a few).

use std::hash::{BuildHasher, Hasher};

/// Bits set per id, within its block.
const PROBES: u32 = 8;
/// Bits of filter per id at a layer's capacity (0.4 to 0.6 % false
/// positives for a blocked filter with 8 probes).
const BITS_PER_ID: usize = 16;
/// 64-bit words per block (512 bits, one cache line).
const BLOCK_WORDS: usize = 8;
/// The smallest layer, in ids.
const MIN_CAPACITY: usize = 1 << 16;

/// See the module docs.
#[derive(Debug)]
pub(super) struct IdFilter {
    layers: Vec<Layer>,
}

#[derive(Debug)]
struct Layer {
    blocks: Vec<[u64; BLOCK_WORDS]>,
    capacity: usize,
    len: usize,
}

impl Layer {
    fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(MIN_CAPACITY);
        let blocks = (capacity * BITS_PER_ID).div_ceil(BLOCK_WORDS * 64);
        Self {
            blocks: vec![[0; BLOCK_WORDS]; blocks],
            capacity,
            len: 0,
        }
    }

    /// The block and the bit positions (0..512) within it of `hash`.
    fn slots(&self, hash: u64) -> (usize, impl Iterator<Item = usize> + use<>) {
        // Block from the high half; bit positions by double hashing from
        // the low half (odd step, so the probes differ).
        let block = ((hash >> 32) as usize) % self.blocks.len().max(1);
        let low = hash as u32;
        let step = (low >> 16) | 1;
        let bits =
            (0..PROBES).map(move |i| (low.wrapping_add(i.wrapping_mul(step)) % 512) as usize);
        (block, bits)
    }

    fn insert(&mut self, hash: u64) {
        let (block, bits) = self.slots(hash);
        if let Some(words) = self.blocks.get_mut(block) {
            for bit in bits {
                words[bit / 64] |= 1 << (bit % 64);
            }
        }
        self.len += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (block, mut bits) = self.slots(hash);
        self.blocks
            .get(block)
            .is_some_and(|words| bits.all(|bit| words[bit / 64] & (1 << (bit % 64)) != 0))
    }
}

impl IdFilter {
    /// An empty filter sized for about `expected` ids before it grows.
    pub(super) fn with_capacity(expected: usize) -> Self {
        Self {
            layers: vec![Layer::with_capacity(expected)],
        }
    }

    /// Adds `id`.
    pub(super) fn insert(&mut self, id: &str) {
        let hash = hash_of(id);
        let full = self.layers.last().is_none_or(|l| l.len >= l.capacity);
        if full {
            let next = self.layers.last().map_or(MIN_CAPACITY, |l| l.capacity * 2);
            self.layers.push(Layer::with_capacity(next));
        }
        if let Some(layer) = self.layers.last_mut() {
            layer.insert(hash);
        }
    }

    /// Ids added (the index's size, give or take pruned ones).
    pub(super) fn len(&self) -> usize {
        self.layers.iter().map(|l| l.len).sum()
    }

    /// False only if `id` was never added.
    pub(super) fn may_contain(&self, id: &str) -> bool {
        let hash = hash_of(id);
        self.layers.iter().any(|l| l.may_contain(hash))
    }

    /// Bytes of filter held (for the memory figures).
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.blocks.len() * BLOCK_WORDS * 8)
            .sum()
    }
}

/// A fixed-key hash: the filter is rebuilt at each start, so it need not be
/// stable across versions, only within a process; ids are our own digests,
/// not chosen by a sender, so flooding one block is not a concern.
fn hash_of(id: &str) -> u64 {
    let mut h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().build_hasher();
    h.write(id.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> String {
        // Shaped like the store's ids: 32 hex digits.
        format!(
            "{:032x}",
            (n as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        )
    }

    #[test]
    fn never_misses_an_added_id_across_growth() {
        let mut f = IdFilter::with_capacity(1000);
        let n = 300_000; // several layers past the first (65,536)
        for i in 0..n {
            f.insert(&id(i));
        }
        assert!(f.layers.len() >= 3, "{} layers", f.layers.len());
        for i in 0..n {
            assert!(f.may_contain(&id(i)), "missed id {i}");
        }
    }

    #[test]
    fn rejects_nearly_all_ids_never_added() {
        let mut f = IdFilter::with_capacity(200_000);
        for i in 0..200_000 {
            f.insert(&id(i));
        }
        let false_positives = (200_000..400_000)
            .filter(|&i| f.may_contain(&id(i)))
            .count();
        // Full layer: expect about 0.5 %.
        assert!(false_positives < 2_000, "{false_positives} of 200,000");
        assert!(
            f.bytes() <= 200_000 * BITS_PER_ID / 8 + 64 * 2,
            "{} bytes",
            f.bytes()
        );
    }

    #[test]
    fn an_empty_filter_contains_nothing() {
        let f = IdFilter::with_capacity(0);
        assert!(!f.may_contain(&id(1)));
        assert!(!f.may_contain(""));
    }
}
