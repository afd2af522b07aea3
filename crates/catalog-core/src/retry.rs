//! Helpers the platform clients share for their retry loops: the backoff
//! between attempts and the reading of `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;

/// The wait before retry number `attempt` (0 for the first): `base`
/// doubling with each attempt, capped at `max`, with "equal jitter" (half
/// of it fixed, half random), so waits still grow while concurrent callers
/// spread out instead of retrying in step.
///
/// ```
/// use std::time::Duration;
/// use catalog_core::retry::backoff;
///
/// let wait = backoff(Duration::from_millis(500), Duration::from_secs(30), 2);
/// assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2));
/// ```
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    let half = exp / 2;
    half.saturating_add(half.mul_f64(rand::rng().random::<f64>()))
}

/// Reads a `Retry-After` header value: how long to wait from `now`.
///
/// Accepts what servers send in practice: delay seconds (`120`; a decimal
/// such as Shopify's `2.0` too, although RFC 9110 has only whole seconds)
/// and an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`; one in the past means
/// no wait). Anything else, a negative or non-finite number included, gives
/// `None`, so the caller falls back to its own backoff. The result is not
/// capped: the caller decides what is too long to wait.
///
/// ```
/// use std::time::Duration;
/// use catalog_core::retry::retry_after;
///
/// let now = catalog_core::chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z").unwrap().to_utc();
/// assert_eq!(retry_after("2.5", now), Some(Duration::from_millis(2500)));
/// assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(60)));
/// assert_eq!(retry_after("soon", now), None);
/// ```
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if value.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        let secs: f64 = value.parse().ok()?;
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.to_utc();
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
    }

    #[test]
    fn backoff_doubles_within_its_jitter_and_caps() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 0..40 {
            let exp = (base * 2u32.pow(attempt.min(16))).min(max);
            for _ in 0..50 {
                let wait = backoff(base, max, attempt);
                assert!(wait >= exp / 2 && wait <= exp, "{attempt}: {wait:?}");
            }
        }
        assert_eq!(backoff(Duration::ZERO, max, 3), Duration::ZERO);
        // No overflow, whatever the figures.
        assert!(backoff(Duration::MAX, Duration::MAX, u32::MAX) <= Duration::MAX);
    }

    #[test]
    fn seconds_whole_and_decimal() {
        let now = at("2026-11-28T00:00:00Z");
        assert_eq!(retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(retry_after(" 30 ", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("2.0", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("0.25", now), Some(Duration::from_millis(250)));
    }

    #[test]
    fn http_dates_future_and_past() {
        let now = at("2015-10-21T07:27:30Z");
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_and_hostile_values_give_none() {
        let now = at("2026-11-28T00:00:00Z");
        for value in [
            "",
            "soon",
            "-1",
            "NaN",
            "inf",
            "1e400",
            "12abc",
            "Wed, 99 Oct",
        ] {
            assert_eq!(retry_after(value, now), None, "{value:?}");
        }
    }
}
