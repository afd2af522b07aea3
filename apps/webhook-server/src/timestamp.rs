//! How the server writes times: RFC 3339 in UTC with exactly three
//! fractional digits (`2026-11-28T17:18:01.000Z`).
//!
//! Why fixed: chrono's default drops a zero fraction (`…:01Z` beside
//! `…:01.001Z`), so the strings of one list do not sort as the times do,
//! and consumers that compare them as text get the order wrong. Stored
//! times have millisecond precision, so three digits lose nothing.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// `t` as the server writes it.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `delay` after `t`, saturating at chrono's last time rather than
/// panicking (`DateTime + TimeDelta` panics on overflow; a lease or retry
/// delay comes from configuration).
pub fn after(t: DateTime<Utc>, delay: std::time::Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(delay)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// For `#[serde(serialize_with = "crate::timestamp::serialize")]`.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// As [`serialize`], for optional times (`null` when absent).
///
/// # Errors
/// The serializer's.
// `&Option<T>` is what serde's `serialize_with` passes.
#[allow(clippy::ref_option)]
pub fn serialize_option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format(t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    #[test]
    fn after_saturates_instead_of_panicking() {
        let t = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
        assert_eq!(
            super::after(t, std::time::Duration::from_secs(90)),
            Utc.with_ymd_and_hms(2026, 11, 28, 12, 1, 30).unwrap()
        );
        for huge in [
            std::time::Duration::from_secs(u64::MAX),
            std::time::Duration::from_secs(10_000_000_000_000),
        ] {
            assert_eq!(super::after(t, huge), DateTime::<Utc>::MAX_UTC);
        }
    }

    use super::*;

    #[test]
    fn a_whole_second_keeps_its_three_digits() {
        let whole = Utc.timestamp_millis_opt(1_764_350_281_000).unwrap();
        let later = Utc.timestamp_millis_opt(1_764_350_281_001).unwrap();
        assert_eq!(format(&whole), "2025-11-28T17:18:01.000Z");
        assert_eq!(format(&later), "2025-11-28T17:18:01.001Z");
        assert!(format(&whole) < format(&later));
    }
}
