//! Per-client-address token buckets, and who the client is behind a proxy.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use ipnet::IpNet;
use serde::Deserialize;

/// The reverse proxies (addresses or networks) allowed to say who the client
/// is, through `X-Forwarded-For`.
///
/// Why a list rather than "trust the header": anyone can send
/// `X-Forwarded-For`, so believing it from any peer would let a client pick a
/// fresh address per request and never be limited. Behind a proxy, trusting
/// nothing puts every platform in the proxy's one bucket. So the header is
/// read only when the TCP peer is a listed proxy, and from the right (the
/// entry the nearest proxy appended) leftwards, past the other listed
/// proxies: the first address that is not one of them is the client. An
/// entry that is not an address stops the walk at the last one known good,
/// which is a proxy's: a client cannot escape its bucket with garbage.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`, `::1`) and networks (`10.0.0.0/8`).
    ///
    /// # Errors
    /// The first entry that is neither, by its position (counting from 1;
    /// configuration errors never quote values).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(str::trim)
            .enumerate()
            .filter(|(_, e)| !e.is_empty())
            .map(|(i, e)| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("entry {} is not an IP address or network (CIDR)", i + 1))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted (the peer is always the client).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&addr))
    }

    /// The client's address: `peer`, or when `peer` is a trusted proxy, what
    /// the `X-Forwarded-For` header values (in the order received) say.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for value in forwarded_for.iter().rev() {
            for entry in value.rsplit(',') {
                let Some(addr) = parse_forwarded_addr(entry) else {
                    return client;
                };
                client = addr;
                if !self.contains(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:80`, `[::1]:80`), as some proxies write it.
fn parse_forwarded_addr(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(ToString::to_string))
            .finish()
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    /// A list of strings (TOML), or one comma-separated string (environment).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Joined(String),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::List(entries) => Self::parse(entries.iter().map(String::as_str)),
            Raw::Joined(joined) => Self::parse(joined.split(',')),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

const SHARDS: usize = 16;
/// Above this many tracked addresses in a shard, full buckets are forgotten.
const SHARD_SOFT_LIMIT: usize = 4096;

/// A token bucket per address: `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    proxies: TrustedProxies,
    shards: Vec<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl RateLimiter {
    /// A limiter that takes the TCP peer for the client.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
            proxies: TrustedProxies::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The same, believing `X-Forwarded-For` from `proxies` (see
    /// [`TrustedProxies`]).
    #[must_use]
    pub fn behind(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// The client a request counts against: its TCP `peer`, or the address
    /// the trusted proxies name in `forwarded_for` (the header's values).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        self.proxies.client(peer, forwarded_for)
    }

    /// Whether [`RateLimiter::client`] reads `X-Forwarded-For` at all.
    pub fn trusts_proxies(&self) -> bool {
        !self.proxies.is_empty()
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::parse(["10.0.0.0/8", "192.168.1.7"]).unwrap();
        // A client talking to us directly cannot pick its address.
        assert_eq!(
            proxies.client(ip("203.0.113.9"), &["1.1.1.1"]),
            ip("203.0.113.9")
        );
        // Behind one proxy: the entry it appended.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &["198.51.100.4"]),
            ip("198.51.100.4")
        );
        // Behind two, and a client that sent its own header first: the
        // spoofed entry is left of the first untrusted one, never reached.
        assert_eq!(
            proxies.client(ip("192.168.1.7"), &["6.6.6.6, 198.51.100.4, 10.9.9.9"]),
            ip("198.51.100.4")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &["6.6.6.6", "198.51.100.4", "10.0.0.2"]),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn ports_ipv6_and_garbage_in_the_header() {
        let proxies = TrustedProxies::parse(["10.0.0.1", "2001:db8::/32"]).unwrap();
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &["198.51.100.4:5123"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &["[2001:db9::1]:443"]),
            ip("2001:db9::1")
        );
        assert_eq!(
            proxies.client(ip("2001:db8::5"), &[" 2001:db9::2 "]),
            ip("2001:db9::2")
        );
        // An IPv4 peer seen through an IPv6 socket is still the proxy.
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), &["198.51.100.4"]),
            ip("198.51.100.4")
        );
        // Garbage stops the walk at the last address known good: the proxy.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &["198.51.100.4, unknown"]),
            ip("10.0.0.1")
        );
        assert_eq!(proxies.client(ip("10.0.0.1"), &[""]), ip("10.0.0.1"));
        // No header: the proxy itself.
        assert_eq!(proxies.client(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
        // Every entry a proxy: the leftmost.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &["2001:db8::9, 10.0.0.1"]),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn proxy_lists_parse_or_name_the_bad_entry() {
        assert!(TrustedProxies::parse(["", " "]).unwrap().is_empty());
        let err = TrustedProxies::parse(["10.0.0.0/8", "proxy.local"]).unwrap_err();
        assert!(
            err.contains("entry 2 ") && !err.contains("proxy.local"),
            "{err}"
        );
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        // A network given with host bits is the network.
        let p = TrustedProxies::parse(["10.1.2.3/8"]).unwrap();
        assert_eq!(
            p.client(ip("10.200.0.1"), &["198.51.100.4"]),
            ip("198.51.100.4")
        );
    }

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
