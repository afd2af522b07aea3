//! Per-client-address token buckets, and who the client is behind a proxy.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher as _;
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
/// A shard forgets its full buckets once it tracks this many clients, and
/// again each time it has doubled since (see [`Shard`]).
const SHARD_SOFT_LIMIT: usize = 4096;

/// What a bucket is kept for: an IPv4 address, or an IPv6 /64.
///
/// Why /64 for IPv6: a single host (a residential line, a cloud VM) is
/// routinely given a whole /64 and can send each request from another of
/// its 2^64 addresses; keyed per address it would never be limited. A /64
/// is the smallest block one subscriber gets. An IPv4 peer seen through an
/// IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl Client {
    fn of(addr: IpAddr) -> Self {
        match addr.to_canonical() {
            IpAddr::V4(a) => Self::V4(a.octets()),
            IpAddr::V6(a) => {
                let o = a.octets();
                Self::V6Net([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

/// One shard's buckets, tokens left and when last counted.
#[derive(Debug)]
struct Shard {
    buckets: HashMap<Client, (f64, Instant)>,
    /// Forget full buckets when the map grows past this. Doubled from what
    /// a sweep leaves, so that a shard full of clients still sending (a
    /// flood from many addresses) is swept once per doubling, not on every
    /// request: each request's share of sweeping stays constant.
    sweep_at: usize,
}

/// A token bucket per client (an IPv4 address or an IPv6 /64):
/// `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    proxies: TrustedProxies,
    /// Picks a client's shard. Keyed at random per process, so that no
    /// sender can choose addresses that all land in one shard.
    hasher: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<Shard>>,
}

impl RateLimiter {
    /// A limiter that takes the TCP peer for the client.
    pub fn new(per_second: f64, burst: f64) -> Self {
        Self {
            per_second,
            burst: burst.max(1.0),
            proxies: TrustedProxies::default(),
            hasher: std::collections::hash_map::RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        sweep_at: SHARD_SOFT_LIMIT,
                    })
                })
                .collect(),
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

    /// Takes a token for `addr`'s client (the address, or its IPv6 /64) at
    /// `now`; `false` when none is left.
    pub fn check_at(&self, addr: IpAddr, now: Instant) -> bool {
        let client = Client::of(addr);
        let index = usize::try_from(self.hasher.hash_one(client) % SHARDS as u64).unwrap_or(0);
        let Some(shard) = self.shards.get(index) else {
            return true;
        };
        let mut shard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.buckets.len() >= shard.sweep_at {
            let (rate, burst) = (self.per_second, self.burst);
            shard.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
            shard.sweep_at = shard.buckets.len().saturating_mul(2).max(SHARD_SOFT_LIMIT);
        }
        let (tokens, at) = shard.buckets.entry(client).or_insert((self.burst, now));
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

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let l = RateLimiter::new(1.0, 2.0);
        let t0 = Instant::now();
        // A host with a /64 sending from a new address each time.
        assert!(l.check_at(ip("2001:db8:1:2::1"), t0));
        assert!(l.check_at(ip("2001:db8:1:2:ffff::9"), t0));
        assert!(!l.check_at(ip("2001:db8:1:2:dead:beef:0:1"), t0));
        // The next /64 is another subscriber.
        assert!(l.check_at(ip("2001:db8:1:3::1"), t0));
        // The same IPv4 client, whatever the socket family.
        assert!(l.check_at(ip("192.0.2.7"), t0));
        assert!(l.check_at(ip("::ffff:192.0.2.7"), t0));
        assert!(!l.check_at(ip("192.0.2.7"), t0));
        assert!(l.check_at(ip("192.0.2.8"), t0));
    }

    #[test]
    fn a_shard_full_of_active_clients_is_swept_once_per_doubling() {
        let l = RateLimiter::new(1.0, 5.0);
        let t0 = Instant::now();
        // Every client takes a token and stays below a full bucket: none
        // can be forgotten.
        let clients = (SHARD_SOFT_LIMIT * SHARDS * 3) as u32;
        for n in 0..clients {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert!(l.check_at(a, t0));
        }
        let tracked: usize = l
            .shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum();
        assert_eq!(tracked, clients as usize, "no active bucket forgotten");
        for s in &l.shards {
            let s = s.lock().unwrap();
            // The next sweep waits for the shard to double.
            assert!(
                s.sweep_at > s.buckets.len(),
                "{} {}",
                s.sweep_at,
                s.buckets.len()
            );
        }
        // Later, every bucket is full again: the next sweep forgets them.
        let later = t0 + Duration::from_secs(10);
        for s in &l.shards {
            let mut s = s.lock().unwrap();
            s.sweep_at = 1;
        }
        let c = ip("192.0.2.1");
        assert!(l.check_at(c, later));
        let index = (l.hasher.hash_one(Client::of(c)) % SHARDS as u64) as usize;
        assert_eq!(l.shards[index].lock().unwrap().buckets.len(), 1);
    }
}
