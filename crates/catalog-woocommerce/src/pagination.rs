//! Stitching `offset` windows into a listing without skips or repeats.
//!
//! WooCommerce pages by position (`page`/`offset`) over a result ordered here
//! by id ascending (`orderby=id&order=asc`). Positions move while we read:
//!
//! - a product **created** meanwhile gets a higher id, so it lands at the end
//!   and is read by the last window (or the tail walk, see below);
//! - a product **deleted** (trashed) meanwhile shifts everything after it one
//!   position to the left: with plain pages, the first product of the next
//!   page slides into the page already read and is **skipped**;
//! - a product **restored** from the trash reappears at its old id and shifts
//!   the rest to the right: with plain pages, a product is **repeated**.
//!
//! Our windows overlap: window `k` asks `per_page` items at `offset = k *
//! (per_page - overlap)`. Because ids are sorted, two rules make the result exact:
//!
//! 1. **No repeats**: only ids strictly greater than the last id emitted are
//!    emitted, so the output is strictly increasing.
//! 2. **No skips**: a window *connects* when its first id is ≤ the last id
//!    emitted (or it starts at offset 0). Then every product that exists when
//!    the window is read and has a higher id than the last emitted one sits
//!    inside this window or after it. A window that does not connect means
//!    more than `overlap` products before it were deleted: we step back
//!    (doubling the distance) to a window that connects and walk forward until
//!    the stale window connects again or the listing ends.
//!
//! So every product that exists for the whole listing is returned exactly
//! once, in id order; products created or deleted meanwhile may or may not be
//! (their webhooks tell the rest). Windows are fetched concurrently once the
//! total is known; the rules are applied in order as they arrive. The
//! `X-WP-Total` of the first window plans the windows; if the last planned
//! window is full (products were added) we keep walking until a short one.
//!
//! Two guards turn a store that breaks these assumptions into an error
//! rather than a short or endless listing: a window whose ids are not in
//! increasing order (a plugin imposing its own product order), and three
//! full windows in a row that bring nothing new (a cache that ignores the
//! query string and answers every offset with the same page).

use std::future::Future;

use catalog_core::{CatalogError, Result};

/// Something with a sortable numeric id.
pub(crate) trait Keyed {
    fn key(&self) -> u64;
}

/// One fetched window.
#[derive(Debug, Clone)]
pub(crate) struct Window<T> {
    pub(crate) offset: u64,
    pub(crate) requested: u32,
    pub(crate) items: Vec<T>,
    pub(crate) total: Option<u64>,
}

impl<T> Window<T> {
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() >= self.requested as usize
    }
}

/// Extra requests one recovery may make before giving up.
const RECOVERY_BUDGET: u32 = 64;

/// Full windows in a row that bring nothing new before the listing is
/// declared stuck. A healthy listing brings `step` new products per window;
/// a full window of old ones needs `step` products restored ahead of it
/// since the last one was read.
const MAX_BARREN_WINDOWS: u32 = 3;

/// The stitching rules hold only for windows in id order. A store that
/// ignores `orderby=id` (a plugin imposing its own product order does)
/// would make them skip products silently, so it is an error instead.
fn check_order<T: Keyed>(w: &Window<T>) -> Result<()> {
    match w
        .items
        .windows(2)
        .find(|pair| pair[0].key() >= pair[1].key())
    {
        None => Ok(()),
        Some(pair) => Err(CatalogError::Decode {
            path: "products".into(),
            message: format!(
                "the store returned product {} before product {} although the listing asked \
                 for id order (orderby=id&order=asc); a plugin that imposes its own product \
                 order does this, and such a listing cannot be read without skipping products",
                pair[0].key(),
                pair[1].key()
            ),
        }),
    }
}

/// The state of one listing.
#[derive(Debug, Clone)]
pub(crate) struct Stitcher {
    /// The last id emitted.
    pub(crate) last: Option<u64>,
    /// Distance between window offsets: `per_page - overlap`.
    pub(crate) step: u64,
    /// Offset of the last window accepted.
    pub(crate) last_offset: u64,
    /// Offset of the window to read next.
    next_offset: u64,
    /// Whether the last window accepted was full (more may follow).
    pub(crate) last_full: bool,
    /// A short window connected: the listing is complete.
    pub(crate) ended: bool,
    /// Full windows in a row that brought nothing new.
    barren: u32,
    /// How many more products one `resolve` may return (a page's size).
    room: usize,
    /// Whether the last `resolve` stopped because `room` ran out.
    cut: bool,
}

impl Stitcher {
    pub(crate) fn new(step: u64, last: Option<u64>) -> Self {
        Self {
            last,
            step: step.max(1),
            last_offset: 0,
            next_offset: 0,
            last_full: true,
            ended: false,
            barren: 0,
            room: usize::MAX,
            cut: false,
        }
    }

    /// Makes each [`Stitcher::resolve`] return at most `limit` products
    /// (at least one), the next window starting just before the first
    /// product left out.
    pub(crate) fn at_most(mut self, limit: usize) -> Self {
        self.room = limit.max(1);
        self
    }

    /// The offset of the window that continues the listing.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    fn connects<T: Keyed>(&self, w: &Window<T>) -> bool {
        if w.offset == 0 {
            return true;
        }
        match (self.last, w.items.first()) {
            (Some(last), Some(first)) => first.key() <= last,
            // Nothing emitted yet but not at the start: cannot tell.
            _ => false,
        }
    }

    fn accept<T: Keyed>(&mut self, w: Window<T>, room: &mut usize) -> Vec<T> {
        let overlap = u64::from(w.requested).saturating_sub(self.step);
        self.last_offset = w.offset;
        self.next_offset = w.offset.saturating_add(self.step);
        self.last_full = w.is_full();
        if !self.last_full {
            self.ended = true;
        }
        let mut out = Vec::with_capacity(w.items.len().min(*room));
        for (i, item) in w.items.into_iter().enumerate() {
            let k = item.key();
            if self.last.is_none_or(|l| k > l) {
                if *room == 0 {
                    // More follows: the next window starts `overlap`
                    // products before this one, so that it connects.
                    self.next_offset = w.offset.saturating_add(i as u64).saturating_sub(overlap);
                    self.last_full = true;
                    self.ended = false;
                    self.cut = true;
                    return out;
                }
                *room -= 1;
                self.last = Some(k);
                out.push(item);
            }
        }
        out
    }

    /// Applies the rules to window `w`, fetching more windows (by offset)
    /// when it does not connect. Returns the new items in id order.
    pub(crate) async fn resolve<T, F, Fut>(&mut self, w: Window<T>, fetch: F) -> Result<Vec<T>>
    where
        T: Keyed,
        F: Fn(u64) -> Fut,
        Fut: Future<Output = Result<Window<T>>>,
    {
        if self.ended {
            return Ok(Vec::new());
        }
        check_order(&w)?;
        let mut out = Vec::new();
        let mut room = self.room;
        self.cut = false;
        let mut budget = RECOVERY_BUDGET;
        let mut spend = || {
            budget = budget.checked_sub(1).ok_or_else(|| CatalogError::Decode {
                path: "products".into(),
                message: "the catalog changed too much while it was being listed; retry later"
                    .into(),
            })?;
            Ok::<(), CatalogError>(())
        };
        let mut back = self.step;
        while !self.connects(&w) {
            spend()?;
            let anchor_offset = w.offset.saturating_sub(back);
            let anchor = fetch(anchor_offset).await?;
            check_order(&anchor)?;
            if !self.connects(&anchor) {
                back = back.saturating_mul(2);
                continue;
            }
            tracing::debug!(
                stale = w.offset,
                anchor = anchor_offset,
                "re-reading a window after products moved"
            );
            let mut cur = anchor;
            loop {
                let (off, full) = (cur.offset, cur.is_full());
                out.extend(self.accept(cur, &mut room));
                if self.cut {
                    return Ok(out);
                }
                if !full {
                    // The listing ended before the stale window: it held only
                    // products deleted since.
                    return Ok(out);
                }
                self.ended = false;
                if self.connects(&w) {
                    break;
                }
                spend()?;
                let next = fetch(off + self.step).await?;
                check_order(&next)?;
                if !self.connects(&next) {
                    back = self.step;
                    break;
                }
                cur = next;
            }
        }
        let full = w.is_full();
        out.extend(self.accept(w, &mut room));
        if self.cut {
            return Ok(out);
        }
        // A server that answers every offset with the same products (a
        // cache that ignores the query string) would otherwise be walked
        // forever: every window full, none bringing anything new.
        self.barren = if full && out.is_empty() {
            self.barren + 1
        } else {
            0
        };
        if self.barren >= MAX_BARREN_WINDOWS {
            return Err(CatalogError::Decode {
                path: "products".into(),
                message: format!(
                    "the store returned only products already listed for {} full pages in a \
                     row, up to offset {}; a cache that ignores the query string does this",
                    self.barren, self.last_offset
                ),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    impl Keyed for u64 {
        fn key(&self) -> u64 {
            *self
        }
    }

    fn window(list: &[u64], offset: u64, per_page: u32) -> Window<u64> {
        let items = list
            .iter()
            .skip(offset as usize)
            .take(per_page as usize)
            .copied()
            .collect();
        Window {
            offset,
            requested: per_page,
            items,
            total: Some(list.len() as u64),
        }
    }

    /// Lists `initial` with windows fetched "concurrently" (all planned
    /// windows read before stitching), applying `mutate` to the live list
    /// after the planned windows were read.
    fn run(
        initial: Vec<u64>,
        per_page: u32,
        overlap: u32,
        mutate: impl Fn(&mut Vec<u64>),
    ) -> (Vec<u64>, Vec<u64>) {
        let live = RefCell::new(initial);
        let step = u64::from(per_page - overlap);
        let first = window(&live.borrow(), 0, per_page);
        let total = first.total.unwrap_or(0);
        let mut planned = Vec::new();
        let mut o = step;
        while o + u64::from(overlap) < total {
            planned.push(window(&live.borrow(), o, per_page));
            mutate(&mut live.borrow_mut());
            o += step;
        }
        let fetch = |off: u64| {
            let w = window(&live.borrow(), off, per_page);
            async move { Ok(w) }
        };
        let mut st = Stitcher::new(step, None);
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            out.extend(st.resolve(first, fetch).await.unwrap());
            for w in planned {
                out.extend(st.resolve(w, fetch).await.unwrap());
            }
            while !st.ended {
                let w = window(&live.borrow(), st.next_offset(), per_page);
                out.extend(st.resolve(w, fetch).await.unwrap());
            }
        });
        let live = live.into_inner();
        (out, live)
    }

    #[test]
    fn stable_catalog_is_read_exactly_once() {
        let ids: Vec<u64> = (1..=95).collect();
        assert_eq!(run(ids.clone(), 10, 2, |_| {}).0, ids);
    }

    #[test]
    fn deletions_do_not_skip_survivors() {
        let ids: Vec<u64> = (1..=100).map(|i| i * 3).collect();
        // After each window read, delete the three lowest-id products still
        // present that were already read (shifts everything left by 3 > overlap).
        let (out, live) = run(ids.clone(), 10, 1, |l| {
            if l.len() > 20 {
                l.drain(0..3);
            }
        });
        assert!(live.len() < ids.len());
        let mut dedup = out.clone();
        dedup.dedup();
        assert_eq!(dedup, out, "no repeats");
        assert!(out.windows(2).all(|w| w[0] < w[1]), "id order");
        // Every product never deleted is there.
        for s in live {
            assert!(out.contains(&s), "{s} skipped");
        }
    }

    #[test]
    fn restores_and_additions_do_not_repeat() {
        let ids: Vec<u64> = (1..=50).map(|i| i * 2).collect();
        let next = RefCell::new(1000u64);
        let (out, _) = run(ids.clone(), 10, 2, |l| {
            // A restored product reappears with an old (odd) id, a new one at the end.
            l.push(3);
            l.sort_unstable();
            l.dedup();
            let mut n = next.borrow_mut();
            l.push(*n);
            *n += 1;
        });
        assert!(
            out.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing: no repeats"
        );
        for i in &ids {
            assert!(out.contains(i), "{i} skipped");
        }
        // Products added during the listing are picked up by the tail walk.
        assert!(out.contains(&1000));
    }

    #[test]
    fn shrinking_list_ends_cleanly() {
        let ids: Vec<u64> = (1..=40).collect();
        let (out, _) = run(ids, 10, 1, |l| {
            l.retain(|i| *i <= 12);
        });
        // Products deleted after their window was read may still be listed;
        // the survivors are all there, once, in order, and the walk ends.
        assert_eq!(out[..12], (1..=12).collect::<Vec<_>>());
        assert!(out.windows(2).all(|w| w[0] < w[1]));
    }

    fn resolve_one(st: &mut Stitcher, w: Window<u64>) -> Result<Vec<u64>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(st.resolve(w, |_| async { panic!("no re-read expected") }))
    }

    #[test]
    fn a_window_out_of_id_order_is_an_error_not_a_skip() {
        // A plugin's own order: 5 before 3.
        let w = Window {
            offset: 0,
            requested: 4,
            items: vec![1, 5, 3, 7],
            total: Some(40),
        };
        let mut st = Stitcher::new(3, None);
        match resolve_one(&mut st, w) {
            Err(CatalogError::Decode { message, .. }) => {
                assert!(message.contains("product 5 before product 3"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_same_products_at_every_offset_stop_the_walk() {
        let same = |offset| Window {
            offset,
            requested: 4,
            items: vec![1, 2, 3, 4],
            total: Some(1000),
        };
        let mut st = Stitcher::new(3, None);
        assert_eq!(resolve_one(&mut st, same(0)).unwrap(), vec![1, 2, 3, 4]);
        assert!(resolve_one(&mut st, same(3)).unwrap().is_empty());
        assert!(resolve_one(&mut st, same(6)).unwrap().is_empty());
        match resolve_one(&mut st, same(9)) {
            Err(CatalogError::Decode { message, .. }) => {
                assert!(
                    message.contains("already listed for 3 full pages"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
