//! A warning when deliveries are refused for their signature, at most once
//! a minute per platform.
//!
//! Why: a secret that does not match (a typo, the wrong app's secret, a
//! rotation done on one side only) refuses every delivery of a store, and
//! the platform gives up after its retries (Shopify: 8 over 4 hours, then it
//! may delete the subscription; WooCommerce disables the webhook after a few
//! failures). Logged at debug only, that goes unseen; logged for every
//! request, anyone who can reach the port could fill the log. So the first
//! refusal of a minute is a warning, naming the store the request claimed
//! and how many were refused since the last warning; the metric
//! `webhook_deliveries_total{outcome="unauthorized"}` counts each one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shortest time between two warnings of one platform.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Refusals of one platform since its last warning.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// When the last warning was written, ms since the epoch (0: never).
    last_warned_ms: AtomicU64,
    /// Refusals not yet reported.
    unreported: AtomicU64,
}

impl RefusalLog {
    /// Counts a refusal; returns how many to report (this one included) when
    /// a warning is due now, else `None`.
    pub fn refused(&self) -> Option<u64> {
        self.refused_at(now_ms())
    }

    fn refused_at(&self, now_ms: u64) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let last = self.last_warned_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        let due = last == 0 || now_ms.saturating_sub(last) >= every;
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
    fn one_warning_a_minute_with_the_count_since_the_last() {
        let log = RefusalLog::default();
        let t0 = 1_000_000;
        assert_eq!(log.refused_at(t0), Some(1), "the first is reported at once");
        for i in 1..=99 {
            assert_eq!(log.refused_at(t0 + i * 100), None);
        }
        let minute = u64::try_from(WARN_EVERY.as_millis()).unwrap();
        assert_eq!(log.refused_at(t0 + minute), Some(100));
        assert_eq!(log.refused_at(t0 + minute + 1), None);
        assert_eq!(log.refused_at(t0 + 2 * minute + 5), Some(2));
    }
}
