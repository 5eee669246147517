//! Controlled discovery: which other server a handshake hands a client, chosen from the
//! client's address so that one client (or one censor) learns few servers, byte-compatible
//! with tunnel-core (`shared/reference/psiphon-wire.md` section 5.1).
//!
//! Only servers whose discovery date range `[start, end)` contains `now` take part, in psinet
//! list order. Two strategies:
//! - [`Strategy::Consistent`] (the default): consistent hashing with xxHash64, see
//!   [`ConsistentRing`]; a client address always gets the same server while the set holds.
//! - [`Strategy::Classic`]: HMAC of the address picks a bucket of about `sqrt(n)` servers, the
//!   hour picks the server in it, see [`ClassicBuckets`].
//!
//! Everything here is pure: time is passed in, nothing is read or written. [`Discovery`]
//! builds the ring (or buckets) once per discoverable set and rebuilds it when `now` crosses
//! the next range boundary.

mod classic;
mod consistent;
pub mod simulate;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

pub use classic::{ClassicBuckets, TIME_GRANULARITY_SECS, bucket_count, discovery_value};
pub use consistent::{ConsistentRing, partition_point, ring_point, xxhash64};

use crate::time::unix_seconds;

/// A discovery strategy (`ServerDiscoveryStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Consistent hashing (tunnel-core's default).
    #[default]
    Consistent,
    /// HMAC bucket and hour of the day (psi_ops').
    Classic,
}

impl Strategy {
    /// Both strategies.
    pub const ALL: [Strategy; 2] = [Strategy::Consistent, Strategy::Classic];

    /// The config value: `consistent` (also the empty string) or `classic`.
    pub fn from_name(name: &str) -> Option<Strategy> {
        match name {
            "" | "consistent" => Some(Strategy::Consistent),
            "classic" => Some(Strategy::Classic),
            _ => None,
        }
    }

    /// The config value.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Consistent => "consistent",
            Strategy::Classic => "classic",
        }
    }
}

/// A server that may be discovered (psinet `discovery_servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryServer {
    /// The server entry's `ipAddress` as written: the member name on the consistent ring.
    pub ip_address: String,
    /// The hex-encoded server entry handed to the client.
    pub encoded_server_entry: String,
    /// `discovery_date_range`: `[start, end)`; `None` when the range does not have exactly two
    /// times (tunnel-core then never offers the server).
    pub date_range: Option<(SystemTime, SystemTime)>,
}

impl DiscoveryServer {
    /// Whether `start <= now < end`.
    pub fn is_discoverable(&self, now: SystemTime) -> bool {
        self.date_range
            .is_some_and(|(start, end)| start <= now && now < end)
    }
}

/// An address as Go's `net.IP.String` prints it: dotted quad for IPv4 and IPv4-mapped IPv6,
/// RFC 5952 for other IPv6.
pub fn canonical_ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
    }
}

/// An address in Go's 16-byte form (`net.ParseIP`): IPv4 as `::ffff:a.b.c.d`.
pub fn ip_16_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// What discovery needs of a client address, computed once so the address itself need not
/// be kept: the xxHash64 of its 16-byte form (consistent) and its HMAC discovery value
/// (classic). `Debug` shows neither.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientKey {
    /// xxHash64 of [`ip_16_bytes`].
    pub consistent_hash: u64,
    /// [`discovery_value`].
    pub classic_value: u8,
}

impl ClientKey {
    /// The key of a client address under `DiscoveryValueHMACKey`.
    pub fn new(client: IpAddr, hmac_key: &str) -> ClientKey {
        ClientKey {
            consistent_hash: xxhash64(&ip_16_bytes(client)),
            classic_value: discovery_value(hmac_key, client),
        }
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

/// The servers discoverable at one time, with their ring or buckets built, and the interval
/// of time over which that set holds.
#[derive(Debug, Clone)]
pub struct DiscoverableSet {
    /// Indexes into the full list, in list order.
    pub indexes: Vec<usize>,
    selector: Selector,
    /// The latest range boundary at or before the time the set was built (`None`: none).
    since: Option<SystemTime>,
    /// The earliest range boundary after it (`None`: the set never changes again).
    until: Option<SystemTime>,
}

#[derive(Debug, Clone)]
enum Selector {
    Consistent(ConsistentRing),
    Classic(ClassicBuckets),
}

impl DiscoverableSet {
    /// The servers of `all` discoverable at `now`, with the structure `strategy` needs.
    pub fn build(all: &[DiscoveryServer], strategy: Strategy, now: SystemTime) -> DiscoverableSet {
        let mut indexes = Vec::new();
        let mut since: Option<SystemTime> = None;
        let mut until: Option<SystemTime> = None;
        for (i, server) in all.iter().enumerate() {
            let Some((start, end)) = server.date_range else {
                continue;
            };
            for boundary in [start, end] {
                if boundary <= now {
                    since = Some(since.map_or(boundary, |s| s.max(boundary)));
                } else {
                    until = Some(until.map_or(boundary, |u| u.min(boundary)));
                }
            }
            if server.is_discoverable(now) {
                indexes.push(i);
            }
        }
        let selector = match strategy {
            Strategy::Consistent => {
                let names: Vec<&str> = indexes
                    .iter()
                    .filter_map(|&i| all.get(i).map(|s| s.ip_address.as_str()))
                    .collect();
                Selector::Consistent(ConsistentRing::new(&names))
            }
            Strategy::Classic => Selector::Classic(ClassicBuckets::new(indexes.len())),
        };
        DiscoverableSet {
            indexes,
            selector,
            since,
            until,
        }
    }

    /// Whether the set built holds at `now` (no range boundary lies between).
    pub fn holds_at(&self, now: SystemTime) -> bool {
        self.since.is_none_or(|s| s <= now) && self.until.is_none_or(|u| now < u)
    }

    /// The index (into the full list) of the server for a client key at `now`.
    pub fn select(&self, key: ClientKey, now: SystemTime) -> Option<usize> {
        let position = match &self.selector {
            Selector::Consistent(ring) => ring.locate_hash(key.consistent_hash)?,
            Selector::Classic(buckets) => buckets.select(key.classic_value, unix_seconds(now))?,
        };
        self.indexes.get(position).copied()
    }
}

/// A strategy over a psinet server list, safe to share between tunnels.
#[derive(Debug)]
pub struct Discovery {
    servers: Vec<DiscoveryServer>,
    strategy: Strategy,
    hmac_key: String,
    current: RwLock<Arc<DiscoverableSet>>,
}

impl Discovery {
    /// Discovery over `servers` (psinet order) with `strategy`; `hmac_key` is
    /// `DiscoveryValueHMACKey`. The set is built for `now`.
    pub fn new(
        servers: Vec<DiscoveryServer>,
        strategy: Strategy,
        hmac_key: &str,
        now: SystemTime,
    ) -> Discovery {
        let set = DiscoverableSet::build(&servers, strategy, now);
        Discovery {
            servers,
            strategy,
            hmac_key: hmac_key.to_owned(),
            current: RwLock::new(Arc::new(set)),
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// Every server in the list, discoverable or not.
    pub fn servers(&self) -> &[DiscoveryServer] {
        &self.servers
    }

    /// The key of a client address (keep it instead of the address).
    pub fn client_key(&self, client: IpAddr) -> ClientKey {
        ClientKey::new(client, &self.hmac_key)
    }

    /// The set for `now`: the one built before when it still holds, else a new one.
    pub fn set_at(&self, now: SystemTime) -> Arc<DiscoverableSet> {
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.holds_at(now) {
                return Arc::clone(&current);
            }
        }
        let set = Arc::new(DiscoverableSet::build(&self.servers, self.strategy, now));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&set);
        set
    }

    /// The server a client address discovers at `now`, if any.
    pub fn select(&self, client: IpAddr, now: SystemTime) -> Option<&DiscoveryServer> {
        self.select_key(self.client_key(client), now)
    }

    /// The server a client key discovers at `now`, if any. As tunnel-core, the chosen server
    /// is checked to be discoverable at `now` once more.
    pub fn select_key(&self, key: ClientKey, now: SystemTime) -> Option<&DiscoveryServer> {
        let index = self.set_at(now).select(key, now)?;
        self.servers.get(index).filter(|s| s.is_discoverable(now))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn server(ip: &str, start: u64, end: u64) -> DiscoveryServer {
        DiscoveryServer {
            ip_address: ip.to_owned(),
            encoded_server_entry: format!("entry-{ip}"),
            date_range: Some((
                UNIX_EPOCH + Duration::from_secs(start),
                UNIX_EPOCH + Duration::from_secs(end),
            )),
        }
    }

    #[test]
    fn canonical_forms() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(canonical_ip_string(mapped), "192.0.2.1");
        assert_eq!(
            canonical_ip_string("2001:DB8:0:0:0:0:0:1".parse().unwrap()),
            "2001:db8::1"
        );
        assert_eq!(
            ip_16_bytes("1.2.3.4".parse().unwrap()),
            ip_16_bytes(Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]).into())
        );
        assert_eq!(
            format!("{:?}", ClientKey::new(mapped, "k")),
            "ClientKey(..)"
        );
    }

    #[test]
    fn the_set_changes_exactly_at_range_boundaries() {
        let servers = vec![
            server("192.0.2.1", 100, 200),
            server("192.0.2.2", 150, 300),
            DiscoveryServer {
                date_range: None,
                ..server("192.0.2.3", 0, 1000)
            },
        ];
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        for strategy in Strategy::ALL {
            let d = Discovery::new(servers.clone(), strategy, "key", at(0));
            let client: IpAddr = "203.0.113.9".parse().unwrap();
            assert_eq!(d.select(client, at(99)), None);
            assert_eq!(d.select(client, at(100)).unwrap().ip_address, "192.0.2.1");
            assert_eq!(d.set_at(at(149)).indexes, [0]);
            assert_eq!(d.set_at(at(150)).indexes, [0, 1]);
            assert_eq!(d.set_at(at(199)).indexes, [0, 1]);
            assert_eq!(d.set_at(at(200)).indexes, [1]);
            assert_eq!(d.select(client, at(250)).unwrap().ip_address, "192.0.2.2");
            assert_eq!(d.select(client, at(300)), None);
            // Back in time (a clock step): rebuilt too.
            assert_eq!(d.set_at(at(120)).indexes, [0]);
            // Built once per set: the same Arc while it holds.
            assert!(Arc::ptr_eq(&d.set_at(at(121)), &d.set_at(at(148))));
        }
    }
}
