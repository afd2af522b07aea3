//! The client-side picture of Shopify's cost bucket (leaky bucket of query
//! cost points per app and store).
//!
//! Every GraphQL response carries `extensions.cost`:
//! `requestedQueryCost`, `actualQueryCost` and `throttleStatus { maximumAvailable,
//! currentlyAvailable, restoreRate }`. The bucket keeps the last status and lets
//! it refill at `restoreRate` as time passes. Before a request it waits until
//! the points the request will ask for are there; the estimate is the
//! `requestedQueryCost` that the same operation reported last time (the first
//! request of an operation goes out unguarded: nothing is known yet).
//!
//! One bucket exists per app and store in the process (keyed by the store's
//! base URL and the app's identity: Shopify's limit applies per app and store
//! pair), shared by all clients and clones of that app for that store, so
//! concurrent callers queue in one place instead of each believing it has the
//! whole bucket.
//! Callers are served first come, first served: the waiting happens under an
//! async queue lock, and a caller that gets through reserves its estimate so
//! the next one waits for it too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

/// Shopify refuses any single query above this many points.
pub(crate) const MAX_QUERY_COST: u32 = 1000;

/// Slack added to computed waits so that rounding never makes us arrive a
/// hair early.
const WAIT_SLACK: Duration = Duration::from_millis(1);

/// Longest wait for cost points. A longer one (a tiny restore rate) is not
/// waited out: the call ends with `RateLimited` naming the wait, rather than
/// parking the caller for hours.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// `extensions.cost` of a GraphQL response.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct QueryCost {
    #[serde(default)]
    pub(crate) requested_query_cost: Option<f64>,
    #[serde(default)]
    pub(crate) throttle_status: Option<WireThrottleStatus>,
}

/// `extensions.cost.throttleStatus`. Shopify writes these as integers or as
/// floats (`4000.0`) depending on the store, hence `f64`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireThrottleStatus {
    pub(crate) maximum_available: f64,
    pub(crate) currently_available: f64,
    pub(crate) restore_rate: f64,
}

/// What the client currently believes about a store's cost bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ThrottleStatus {
    /// Bucket size (`maximumAvailable`).
    pub maximum_available: f64,
    /// Points available now, refilled since the last response and minus what
    /// in-flight requests reserved.
    pub currently_available: f64,
    /// Points restored per second (`restoreRate`).
    pub restore_rate: f64,
}

#[derive(Debug)]
struct Known {
    maximum: f64,
    available: f64,
    restore_rate: f64,
    at: Instant,
}

impl Known {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + elapsed * self.restore_rate).min(self.maximum);
        self.at = now;
    }
}

#[derive(Debug, Default)]
struct State {
    known: Option<Known>,
    /// Last `requestedQueryCost` per operation name.
    estimates: HashMap<&'static str, f64>,
    /// Points reserved by requests sent but not answered yet. A response's
    /// `currentlyAvailable` may not include them, so they are subtracted
    /// from it (conservative: one already charged is counted twice).
    in_flight: f64,
}

/// One store's cost bucket as seen from this process.
#[derive(Debug, Default)]
pub(crate) struct CostBucket {
    state: Mutex<State>,
    /// Serialises waiting callers (FIFO: tokio's mutex is fair).
    queue: tokio::sync::Mutex<()>,
}

impl CostBucket {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until `op`'s estimated cost is available, then reserves it
    /// until the response is observed or the permit dropped.
    ///
    /// # Errors
    /// The wait, when it would be longer than [`MAX_WAIT`].
    pub(crate) async fn acquire(&self, op: &'static str) -> Result<Permit<'_>, Duration> {
        let _turn = self.queue.lock().await;
        loop {
            let wait = {
                let mut guard = self.lock();
                let state = &mut *guard;
                let Some(&estimate) = state.estimates.get(op) else {
                    return Ok(Permit::new(self, 0.0));
                };
                let Some(known) = state.known.as_mut() else {
                    return Ok(Permit::new(self, 0.0));
                };
                known.refill(Instant::now());
                // A query can never need more than the whole bucket.
                let estimate = estimate.min(known.maximum);
                if known.available >= estimate {
                    known.available -= estimate;
                    state.in_flight += estimate;
                    return Ok(Permit::new(self, estimate));
                }
                // `observe` keeps only positive, finite restore rates.
                let secs = (estimate - known.available) / known.restore_rate;
                match Duration::try_from_secs_f64(secs) {
                    Ok(wait) if wait <= MAX_WAIT => wait + WAIT_SLACK,
                    Ok(wait) => return Err(wait),
                    Err(_) => return Err(Duration::MAX),
                }
            };
            tracing::debug!(
                op,
                wait_ms = wait.as_millis(),
                "waiting for Shopify cost points"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// How long until `requested` points are available, from the last status
    /// (`(requested - available) / restoreRate`), for error reports.
    pub(crate) fn time_until(&self, requested: f64) -> Option<Duration> {
        let mut state = self.lock();
        let known = state.known.as_mut()?;
        known.refill(Instant::now());
        if known.restore_rate <= 0.0 {
            return None;
        }
        let secs = ((requested - known.available) / known.restore_rate).max(0.0);
        Some(secs_capped(secs, MAX_WAIT))
    }

    /// The current picture, refilled to now.
    pub(crate) fn status(&self) -> Option<ThrottleStatus> {
        let mut state = self.lock();
        let known = state.known.as_mut()?;
        known.refill(Instant::now());
        Some(ThrottleStatus {
            maximum_available: known.maximum,
            currently_available: known.available,
            restore_rate: known.restore_rate,
        })
    }
}

/// Points reserved for one request.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    bucket: &'a CostBucket,
    reserved: f64,
}

impl<'a> Permit<'a> {
    fn new(bucket: &'a CostBucket, reserved: f64) -> Self {
        Self { bucket, reserved }
    }

    /// Records what the response said about the bucket and about `op`'s
    /// cost. Returns whether the bucket now paces requests: a throttle status
    /// with a zero, negative or non-finite figure is ignored (the bucket
    /// forgets what it knew), so callers back off by their own rule instead.
    pub(crate) fn observe(&self, op: &'static str, cost: &QueryCost) -> bool {
        let mut state = self.bucket.lock();
        if let Some(requested) = cost.requested_query_cost.filter(|r| r.is_finite()) {
            state.estimates.insert(op, requested);
        }
        let Some(s) = cost.throttle_status else {
            return state.known.is_some();
        };
        let usable = s.restore_rate.is_finite()
            && s.restore_rate > 0.0
            && s.maximum_available.is_finite()
            && s.maximum_available > 0.0
            && s.currently_available.is_finite();
        if !usable {
            tracing::debug!(?s, "unusable Shopify throttle status; pacing by backoff");
            state.known = None;
            return false;
        }
        let others = (state.in_flight - self.reserved).max(0.0);
        state.known = Some(Known {
            maximum: s.maximum_available,
            available: s.currently_available - others,
            restore_rate: s.restore_rate,
            at: Instant::now(),
        });
        true
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.reserved > 0.0 {
            let mut state = self.bucket.lock();
            state.in_flight = (state.in_flight - self.reserved).max(0.0);
        }
    }
}

/// The process-wide bucket for an app on a store (the store's base URL and
/// the app's identity), created on first use and dropped when the last
/// client for it is dropped.
pub(crate) fn bucket_for(endpoint: &str) -> Arc<CostBucket> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<CostBucket>>>> = OnceLock::new();
    let mut map = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(bucket) = map.get(endpoint).and_then(Weak::upgrade) {
        return bucket;
    }
    map.retain(|_, weak| weak.strong_count() > 0);
    let bucket = Arc::new(CostBucket::default());
    map.insert(endpoint.to_owned(), Arc::downgrade(&bucket));
    bucket
}

/// Our estimate of the requested cost of a product page, used to keep the
/// configured page size under [`MAX_QUERY_COST`] before the first request
/// (the real cost is read from responses, and a page Shopify prices higher
/// is retried smaller: see `ShopifyClient::list_page`).
///
/// Shopify's documented rule: a scalar or enum costs 0, an object 1, a
/// connection 2 plus `first` times the cost of one node. Every object the
/// product fragment (`graphql.rs`) selects counts, lists of objects as one:
/// the page's `pageInfo` (1) and, per product, the product (1), `category`
/// (1), `options` and their `optionValues` (2), then `variants` (2 +
/// `pageInfo` 1 + per variant the variant and its `selectedOptions`, 2) and
/// `media` (2 + `pageInfo` 1 + per medium the `MediaImage` and its `image`,
/// 2).
pub(crate) fn estimated_page_cost(first: u32, variants: u32, media: u32) -> u32 {
    let variants = 2 + 1 + variants.saturating_mul(2);
    let media = 2 + 1 + media.saturating_mul(2);
    let product = (1 + 1 + 2_u32)
        .saturating_add(variants)
        .saturating_add(media);
    (2 + 1_u32).saturating_add(first.saturating_mul(product))
}

/// The page size to try after Shopify refused `first` products for costing
/// `cost` points (`MAX_COST_EXCEEDED`): scaled down to fit
/// [`MAX_QUERY_COST`] with a tenth to spare, or halved when Shopify did not
/// say the cost; always smaller than `first`, at least 1.
pub(crate) fn smaller_page(first: u32, cost: Option<f64>) -> u32 {
    let scaled = cost
        .filter(|c| c.is_finite() && *c > f64::from(MAX_QUERY_COST))
        .map(|c| f64::from(first) * f64::from(MAX_QUERY_COST) * 0.9 / c)
        // In range: `first` is at most 250 and the factor below 1.
        .map_or(first / 2, |f| f.floor() as u32);
    scaled.min(first.saturating_sub(1)).max(1)
}

/// `secs` as a duration of at most `cap`; zero when negative or NaN.
///
/// Why not `Duration::from_secs_f64(secs).min(cap)`: it panics when `secs`
/// does not fit a `Duration`, and `secs` comes from the platform (a
/// `Retry-After` of 1e20, a `restoreRate` of 1e-20).
pub(crate) fn secs_capped(secs: f64, cap: Duration) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).map_or(cap, |d| d.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_from_platform_figures_never_panic() {
        let cap = Duration::from_secs(60);
        assert_eq!(secs_capped(1e22, cap), cap);
        assert_eq!(secs_capped(f64::INFINITY, cap), cap);
        assert_eq!(secs_capped(f64::NAN, cap), Duration::ZERO);
        assert_eq!(secs_capped(-3.0, cap), Duration::ZERO);
        assert_eq!(secs_capped(1.5, cap), Duration::from_millis(1500));
    }

    fn cost(requested: f64, available: f64, rate: f64) -> QueryCost {
        QueryCost {
            requested_query_cost: Some(requested),
            throttle_status: Some(WireThrottleStatus {
                maximum_available: 1000.0,
                currently_available: available,
                restore_rate: rate,
            }),
        }
    }

    #[tokio::test]
    async fn unknown_operations_go_straight_through() {
        let b = CostBucket::default();
        let t = std::time::Instant::now();
        b.acquire("x").await.unwrap();
        b.acquire("y")
            .await
            .unwrap()
            .observe("y", &cost(100.0, 0.0, 1.0));
        b.acquire("x").await.unwrap();
        assert!(t.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn waits_for_the_restore_rate_and_reserves() {
        let b = CostBucket::default();
        // 50 available, 100 needed, 1000/s => ~50 ms.
        b.acquire("q")
            .await
            .unwrap()
            .observe("q", &cost(100.0, 50.0, 1000.0));
        let t = std::time::Instant::now();
        let _held = b.acquire("q").await.unwrap();
        let first = t.elapsed();
        assert!(first >= Duration::from_millis(45), "{first:?}");
        // The first caller reserved its 100: the second waits ~100 ms more.
        let _second = b.acquire("q").await.unwrap();
        let second = t.elapsed() - first;
        assert!(second >= Duration::from_millis(90), "{second:?}");
        assert!(second < Duration::from_millis(400), "{second:?}");
    }

    #[tokio::test]
    async fn a_tiny_restore_rate_ends_the_wait_with_its_length() {
        let b = CostBucket::default();
        // 0 available, 100 needed, 0.001/s: 100,000 s, not waited out.
        assert!(
            b.acquire("q")
                .await
                .unwrap()
                .observe("q", &cost(100.0, 0.0, 0.001))
        );
        let t = std::time::Instant::now();
        let wait = b.acquire("q").await.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(50));
        assert!(wait > Duration::from_secs(99_000), "{wait:?}");
        // And one that no `Duration` holds.
        let b = CostBucket::default();
        assert!(
            b.acquire("q")
                .await
                .unwrap()
                .observe("q", &cost(100.0, 0.0, 1e-300))
        );
        assert_eq!(b.acquire("q").await.unwrap_err(), Duration::MAX);
    }

    #[tokio::test]
    async fn unusable_throttle_figures_are_forgotten_not_trusted() {
        let b = CostBucket::default();
        assert!(
            b.acquire("q")
                .await
                .unwrap()
                .observe("q", &cost(100.0, 0.0, 1000.0))
        );
        for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let permit = b.acquire("q").await;
            // Paced by the last usable status (0 available, 1000/s) at first,
            // then straight through: nothing usable is known.
            assert!(
                !permit.unwrap().observe("q", &cost(100.0, 0.0, rate)),
                "{rate}"
            );
            assert!(b.status().is_none(), "{rate}");
        }
    }

    #[tokio::test]
    async fn time_until_follows_the_formula() {
        let b = CostBucket::default();
        b.acquire("q")
            .await
            .unwrap()
            .observe("q", &cost(862.0, 572.0, 200.0));
        let d = b.time_until(862.0).unwrap();
        assert!((d.as_secs_f64() - 1.45).abs() < 0.05, "{d:?}");
    }

    #[tokio::test]
    async fn in_flight_reservations_are_not_forgotten() {
        let b = CostBucket::default();
        b.acquire("q")
            .await
            .unwrap()
            .observe("q", &cost(100.0, 1000.0, 1.0));
        let held = b.acquire("q").await.unwrap();
        // Another response reports 1000 available, which does not yet
        // include the held request: the client counts 900.
        let other = b.acquire("r").await.unwrap();
        other.observe("r", &cost(1.0, 1000.0, 1.0));
        let avail = b.status().unwrap().currently_available;
        assert!((899.0..901.0).contains(&avail), "{avail}");
        drop(held);
        drop(other);
        assert_eq!(b.lock().in_flight, 0.0);
    }

    #[test]
    fn registry_shares_per_endpoint() {
        let a = bucket_for("https://a.myshopify.com");
        let a2 = bucket_for("https://a.myshopify.com");
        let b = bucket_for("https://b.myshopify.com");
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn default_page_cost_fits() {
        // 3 + 16 * (4 + 43 + 13): the defaults fit 16 products a page.
        assert_eq!(estimated_page_cost(16, 20, 5), 963);
        assert!(estimated_page_cost(17, 20, 5) > MAX_QUERY_COST);
    }
}
