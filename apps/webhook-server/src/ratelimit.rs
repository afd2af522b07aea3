//! Per-client-address token buckets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;
/// Above this many tracked addresses in a shard, full buckets are forgotten.
const SHARD_SOFT_LIMIT: usize = 4096;

/// A token bucket per address: `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl RateLimiter {
    /// A limiter.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token for `addr` at `now`; `false` when none is left.
    pub fn check_at(&self, addr: IpAddr, now: Instant) -> bool {
        let shard = match addr {
            IpAddr::V4(a) => usize::from(a.octets()[3]),
            IpAddr::V6(a) => usize::from(a.octets()[15]),
        } % SHARDS;
        let Some(shard) = self.shards.get(shard) else {
            return true;
        };
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > SHARD_SOFT_LIMIT {
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = map.entry(addr).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token for `addr` now.
    pub fn check(&self, addr: IpAddr) -> bool {
        self.check_at(addr, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_address() {
        let l = RateLimiter::new(10.0, 3.0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(l.check_at(a, t0));
        assert!(l.check_at(a, t0));
        assert!(l.check_at(a, t0));
        assert!(!l.check_at(a, t0));
        assert!(l.check_at(b, t0), "another address has its own bucket");
        assert!(l.check_at(a, t0 + Duration::from_millis(100)));
        assert!(!l.check_at(a, t0 + Duration::from_millis(100)));
    }
}
