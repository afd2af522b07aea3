//! Warnings that may come in floods, written at most once per interval with
//! the count since the last one.
//!
//! Why: some warnings repeat per request or per event. A signature that does
//! not match refuses every delivery of a store; the bounded memory store
//! drops events faster than the dispatcher can report them. Logged each
//! time, anyone who can reach the port (or one busy minute) fills the log
//! and spends CPU on it; logged at debug only, a misconfiguration goes
//! unseen. So the first occurrence of an interval is a warning, with how
//! many there were since the previous warning; metrics count each one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often a platform's signature refusals are warned about.
pub const REFUSALS_EVERY: Duration = Duration::from_secs(60);

/// One kind of warning: occurrences since it was last written.
#[derive(Debug)]
pub struct LogBudget {
    every_ms: u64,
    /// When the last warning was written, ms since the epoch (0: never).
    last_warned_ms: AtomicU64,
    /// Occurrences not yet reported.
    unreported: AtomicU64,
}

impl Default for LogBudget {
    /// One warning per [`REFUSALS_EVERY`].
    fn default() -> Self {
        Self::new(REFUSALS_EVERY)
    }
}

impl LogBudget {
    /// At most one warning per `every`. `const`, so a budget can be a
    /// `static` of the place that warns.
    pub const fn new(every: Duration) -> Self {
        let ms = every.as_millis();
        Self {
            // Saturating: u64 milliseconds outlast any real interval.
            every_ms: if ms > u64::MAX as u128 {
                u64::MAX
            } else {
                ms as u64
            },
            last_warned_ms: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }
    }

    /// Counts an occurrence; returns how many to report (this one included)
    /// when a warning is due now, else `None`.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(now_ms())
    }

    fn hit_at(&self, now_ms: u64) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= self.every_ms;
        // One thread wins the slot; the others count towards the next.
        if due
            && self
                .last_warned_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.unreported.swap(0, Ordering::Relaxed))
        } else {
            None
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_an_interval_with_the_count_since_the_last() {
        let log = LogBudget::new(Duration::from_secs(60));
        let t0 = 1_000_000;
        assert_eq!(log.hit_at(t0), Some(1), "the first is reported at once");
        for i in 1..=99 {
            assert_eq!(log.hit_at(t0 + i * 100), None);
        }
        let minute = 60_000;
        assert_eq!(log.hit_at(t0 + minute), Some(100));
        assert_eq!(log.hit_at(t0 + minute + 1), None);
        assert_eq!(log.hit_at(t0 + 2 * minute + 5), Some(2));
    }
}
