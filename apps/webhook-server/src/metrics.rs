//! Prometheus metrics, hand-rolled on atomics: every label has a fixed, small
//! set of values (never anything a sender chooses), so counters are plain
//! arrays and recording costs a few relaxed atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::StoreStats;

/// Platform label values of [`Metrics::new`]; any other platform name (a
/// request for a platform that is not wired in) counts as `other`.
const DEFAULT_PLATFORMS: [&str; 2] = ["shopify", "woocommerce"];
/// The label of requests for a platform that is not wired in.
const OTHER_PLATFORM: &str = "other";
/// Topic label values.
const TOPICS: [&str; 6] = [
    "product.created",
    "product.updated",
    "product.deleted",
    "product.restored",
    "other",
    "unknown",
];

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Stored as a new event.
    Stored,
    /// Already stored.
    Duplicate,
    /// Verified but unreadable; stored as failed.
    Unparseable,
    /// A ping.
    Ping,
    /// Signature or store refused (401).
    Unauthorized,
    /// Malformed request or topic mismatch (400).
    BadRequest,
    /// Body too large (413).
    TooLarge,
    /// Body not received in time (408).
    Timeout,
    /// Store failure or platform not configured (503).
    Unavailable,
    /// Rate limited (429).
    RateLimited,
    /// From a store the configuration does not list (401).
    UnknownStore,
}

const OUTCOMES: [(Outcome, &str); 11] = [
    (Outcome::Stored, "stored"),
    (Outcome::Duplicate, "duplicate"),
    (Outcome::Unparseable, "unparseable"),
    (Outcome::Ping, "ping"),
    (Outcome::Unauthorized, "unauthorized"),
    (Outcome::BadRequest, "bad_request"),
    (Outcome::TooLarge, "too_large"),
    (Outcome::Timeout, "timeout"),
    (Outcome::Unavailable, "unavailable"),
    (Outcome::RateLimited, "rate_limited"),
    (Outcome::UnknownStore, "unknown_store"),
];

/// Latency bucket upper bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Dispatch results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchResult {
    /// Delivered to every sink.
    Delivered,
    /// Failed; will retry.
    Retry,
    /// Failed for the last time.
    Dead,
    /// The stored body could not be normalised: marked `failed`, not sent.
    Unreadable,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Platform label values, `other` last.
    platforms: Vec<String>,
    deliveries: Vec<AtomicU64>,
    latency_buckets: Vec<AtomicU64>,
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    dispatched: [AtomicU64; 4],
    dispatch_in_flight: AtomicU64,
    pruned: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn topic_index(topic: Option<&str>) -> usize {
    match topic {
        None => TOPICS.len() - 1,
        Some(t) => TOPICS[..4]
            .iter()
            .position(|x| *x == t)
            .unwrap_or(TOPICS.len() - 2),
    }
}

fn outcome_index(outcome: Outcome) -> usize {
    OUTCOMES
        .iter()
        .position(|(o, _)| *o == outcome)
        .unwrap_or(0)
}

impl Metrics {
    /// Zeroed metrics for Shopify and WooCommerce (see
    /// [`Metrics::with_platforms`]).
    pub fn new() -> Self {
        Self::with_platforms(DEFAULT_PLATFORMS)
    }

    /// Zeroed metrics with one `platform` label value per platform named
    /// (the server passes the platforms it wires in), and `other` for
    /// requests naming any other: the label set stays fixed whatever a
    /// sender puts in the path.
    pub fn with_platforms(platforms: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut platforms: Vec<String> = platforms
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .filter(|p| p != OTHER_PLATFORM)
            .collect();
        platforms.dedup();
        platforms.push(OTHER_PLATFORM.to_owned());
        let n = platforms.len() * TOPICS.len() * OUTCOMES.len();
        Self {
            platforms,
            deliveries: (0..n).map(|_| AtomicU64::new(0)).collect(),
            latency_buckets: (0..BUCKETS.len()).map(|_| AtomicU64::new(0)).collect(),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            dispatched: Default::default(),
            dispatch_in_flight: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
        }
    }

    fn platform_index(&self, platform: &str) -> usize {
        self.platforms
            .iter()
            .position(|p| p == platform)
            .unwrap_or(self.platforms.len() - 1)
    }

    /// Records one delivery: platform, canonical topic (`None`: not known
    /// yet), outcome and how long it took.
    pub fn record_delivery(
        &self,
        platform: &str,
        topic: Option<&str>,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let i = (self.platform_index(platform) * TOPICS.len() + topic_index(topic))
            * OUTCOMES.len()
            + outcome_index(outcome);
        if let Some(c) = self.deliveries.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Records a dispatch attempt's result.
    pub fn record_dispatch(&self, result: DispatchResult) {
        let i = match result {
            DispatchResult::Delivered => 0,
            DispatchResult::Retry => 1,
            DispatchResult::Dead => 2,
            DispatchResult::Unreadable => 3,
        };
        self.dispatched[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts events deleted by the retention policy.
    pub fn record_pruned(&self, n: u64) {
        self.pruned.fetch_add(n, Ordering::Relaxed);
    }

    /// Adjusts the number of events being dispatched right now.
    pub fn dispatch_in_flight(&self, delta: i64) {
        if delta >= 0 {
            self.dispatch_in_flight
                .fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.dispatch_in_flight
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// How many deliveries ended with `outcome` (all platforms and topics).
    pub fn deliveries_with(&self, outcome: Outcome) -> u64 {
        let o = outcome_index(outcome);
        self.deliveries
            .iter()
            .enumerate()
            .filter(|(i, _)| i % OUTCOMES.len() == o)
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: Option<StoreStats>) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str(
            "# HELP webhook_deliveries_total Webhook deliveries by platform, topic and outcome.\n\
             # TYPE webhook_deliveries_total counter\n",
        );
        for (pi, p) in self.platforms.iter().enumerate() {
            for (ti, t) in TOPICS.iter().enumerate() {
                for (oi, (_, o)) in OUTCOMES.iter().enumerate() {
                    let i = (pi * TOPICS.len() + ti) * OUTCOMES.len() + oi;
                    let v = self
                        .deliveries
                        .get(i)
                        .map_or(0, |c| c.load(Ordering::Relaxed));
                    if v > 0 {
                        let _ = writeln!(
                            out,
                            "webhook_deliveries_total{{platform=\"{p}\",topic=\"{t}\",outcome=\"{o}\"}} {v}"
                        );
                    }
                }
            }
        }
        out.push_str(
            "# HELP webhook_delivery_duration_seconds Time from request to answer for webhook deliveries.\n\
             # TYPE webhook_delivery_duration_seconds histogram\n",
        );
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "webhook_delivery_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "webhook_delivery_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             webhook_delivery_duration_seconds_sum {}\n\
             webhook_delivery_duration_seconds_count {count}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        out.push_str(
            "# HELP webhook_dispatch_total Dispatch attempts by result.\n\
             # TYPE webhook_dispatch_total counter\n",
        );
        for (i, r) in ["delivered", "retry", "dead", "unreadable"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "webhook_dispatch_total{{result=\"{r}\"}} {}",
                self.dispatched[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP webhook_dispatch_in_flight Events being handed to sinks now.\n\
             # TYPE webhook_dispatch_in_flight gauge\n\
             webhook_dispatch_in_flight {}",
            self.dispatch_in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP webhook_store_pruned_total Finished events deleted by the retention policy.\n\
             # TYPE webhook_store_pruned_total counter\n\
             webhook_store_pruned_total {}",
            self.pruned.load(Ordering::Relaxed)
        );
        match store {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "# HELP webhook_store_up Whether the event store answered.\n\
                     # TYPE webhook_store_up gauge\nwebhook_store_up 1\n\
                     # HELP webhook_store_events Events held (SQLite: the highest sequence number given, which pruning does not lower; PostgreSQL: estimated above a million rows).\n\
                     # TYPE webhook_store_events gauge\nwebhook_store_events {}\n\
                     # HELP webhook_dispatch_queue_pending Events waiting for dispatch.\n\
                     # TYPE webhook_dispatch_queue_pending gauge\nwebhook_dispatch_queue_pending {}\n\
                     # HELP webhook_store_commits_total Store write transactions committed.\n\
                     # TYPE webhook_store_commits_total counter\nwebhook_store_commits_total {}\n\
                     # HELP webhook_store_writes_total Store write commands executed.\n\
                     # TYPE webhook_store_writes_total counter\nwebhook_store_writes_total {}\n\
                     # HELP webhook_store_dropped_undelivered_total Events dropped before delivery to stay within the memory store's bound.\n\
                     # TYPE webhook_store_dropped_undelivered_total counter\nwebhook_store_dropped_undelivered_total {}",
                    s.events, s.pending, s.commits, s.writes, s.dropped_undelivered
                );
            }
            None => out.push_str(
                "# HELP webhook_store_up Whether the event store answered.\n\
                 # TYPE webhook_store_up gauge\nwebhook_store_up 0\n",
            ),
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_rendered() {
        let m = Metrics::new();
        m.record_delivery(
            "shopify",
            Some("product.created"),
            Outcome::Stored,
            Duration::from_micros(800),
        );
        // A sender-chosen topic never becomes a label value.
        m.record_delivery(
            "shopify",
            Some("evil\"}label"),
            Outcome::Unauthorized,
            Duration::from_millis(3),
        );
        let text = m.render(None);
        assert!(text.contains(
            "webhook_deliveries_total{platform=\"shopify\",topic=\"product.created\",outcome=\"stored\"} 1"
        ));
        assert!(text.contains(
            "webhook_deliveries_total{platform=\"shopify\",topic=\"other\",outcome=\"unauthorized\"} 1"
        ));
        assert!(!text.contains("evil"));
        assert!(text.contains("webhook_delivery_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("webhook_delivery_duration_seconds_count 2"));
        assert_eq!(m.deliveries_with(Outcome::Stored), 1);
    }

    #[test]
    fn a_wired_in_platform_gets_its_own_label_and_others_count_as_other() {
        let m = Metrics::with_platforms(["shopify", "bigcommerce"]);
        for platform in ["bigcommerce", "woocommerce", "no-such-platform"] {
            m.record_delivery(
                platform,
                None,
                Outcome::BadRequest,
                Duration::from_micros(10),
            );
        }
        let text = m.render(None);
        assert!(
            text.contains(
                "webhook_deliveries_total{platform=\"bigcommerce\",topic=\"unknown\",outcome=\"bad_request\"} 1"
            ),
            "{text}"
        );
        // Not wired in here: `other`, whatever the path said.
        assert!(
            text.contains(
                "webhook_deliveries_total{platform=\"other\",topic=\"unknown\",outcome=\"bad_request\"} 2"
            ),
            "{text}"
        );
        assert!(!text.contains("platform=\"woocommerce\""), "{text}");
    }
}
