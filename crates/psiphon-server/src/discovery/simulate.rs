//! How much of the network discovery gives away: a deterministic simulation for
//! `psinet simulate discovery`.
//!
//! The model:
//! - `servers` servers with random public-looking IPv4 addresses (distinct), all discoverable
//!   for the whole window, which starts at 2026-01-01T00:00:00Z and lasts `days` days;
//! - `clients` ordinary clients and `adversary_ips` addresses of one adversary (a censor
//!   enumerating servers), each a random public-looking IPv4 address; with `same_24` the
//!   adversary's addresses all lie in one /24 (address `i` is host `i mod 256` of that
//!   network, so more than 256 of them repeat);
//! - every address does one handshake at the start of every hour of the window, and learns
//!   the one server discovery hands it (the psiphond code path: [`DiscoverableSet`] and
//!   [`ClientKey`]); `DiscoveryValueHMACKey` is drawn from the seed.
//!
//! Everything is drawn from `seed` with SplitMix64, in separate streams for servers, clients
//! and the adversary, so the first `k` adversary addresses are the same for every
//! `adversary_ips >= k` and the result only grows with it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{ClientKey, DiscoverableSet, DiscoveryServer, Strategy};
use crate::bogon::is_bogon;

/// The first hour of the simulated window: 2026-01-01T00:00:00Z.
pub const SIMULATION_START_UNIX: u64 = 1_767_225_600;

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimulationParams {
    /// N: discoverable servers.
    pub servers: usize,
    /// M: ordinary client addresses.
    pub clients: usize,
    /// K: the adversary's addresses.
    pub adversary_ips: usize,
    /// Whether the adversary's addresses share one /24.
    pub same_24: bool,
    /// D: days of hourly handshakes.
    pub days: u32,
    /// The PRNG seed.
    pub seed: u64,
}

impl Default for SimulationParams {
    fn default() -> Self {
        SimulationParams {
            servers: 1000,
            clients: 1000,
            adversary_ips: 4096,
            same_24: false,
            days: 7,
            seed: 1,
        }
    }
}

/// The outcome for one strategy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StrategyReport {
    /// The strategy.
    pub strategy: Strategy,
    /// Distinct servers the adversary's addresses learned together.
    pub adversary_servers_learned: usize,
    /// The same as a percentage of `servers`.
    pub adversary_servers_learned_percent: f64,
    /// Mean distinct servers an ordinary client learned (0 without clients).
    pub client_mean_servers_learned: f64,
    /// The most distinct servers one ordinary client learned.
    pub client_max_servers_learned: usize,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SimulationReport {
    /// The input.
    pub params: SimulationParams,
    /// Distinct adversary addresses (fewer than `adversary_ips` with `same_24` past 256).
    pub adversary_distinct_ips: usize,
    /// Handshakes per address: `days * 24`.
    pub handshakes_per_ip: u64,
    /// One entry per strategy, `consistent` first.
    pub strategies: Vec<StrategyReport>,
}

/// SplitMix64: small, fast, and fully determined by its seed.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64, stream: u64) -> SplitMix64 {
        SplitMix64(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A public-looking (not bogon, not multicast or reserved) IPv4 address.
    fn public_ipv4(&mut self) -> Ipv4Addr {
        loop {
            let [a, b, c, d, ..] = self.next_u64().to_le_bytes();
            let ip = Ipv4Addr::new(a, b, c, d);
            if !is_bogon(IpAddr::V4(ip)) && !ip.is_multicast() && a < 224 {
                return ip;
            }
        }
    }
}

const STREAM_SERVERS: u64 = 1;
const STREAM_CLIENTS: u64 = 2;
const STREAM_ADVERSARY: u64 = 3;
const STREAM_KEY: u64 = 4;

/// The adversary's addresses.
fn adversary_ips(params: &SimulationParams) -> Vec<IpAddr> {
    let mut rng = SplitMix64::new(params.seed, STREAM_ADVERSARY);
    if params.same_24 {
        let [a, b, c, _] = rng.public_ipv4().octets();
        (0..params.adversary_ips)
            .map(|i| {
                let host = u8::try_from(i % 256).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::new(a, b, c, host))
            })
            .collect()
    } else {
        (0..params.adversary_ips)
            .map(|_| IpAddr::V4(rng.public_ipv4()))
            .collect()
    }
}

/// Runs the simulation. Deterministic: the same params give the same report.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub fn simulate(params: &SimulationParams) -> SimulationReport {
    let start = UNIX_EPOCH + Duration::from_secs(SIMULATION_START_UNIX);
    let hours = u64::from(params.days) * 24;
    let end = start + Duration::from_secs(hours.max(1) * 3600);

    let mut rng = SplitMix64::new(params.seed, STREAM_SERVERS);
    let mut seen = HashSet::new();
    let mut servers = Vec::with_capacity(params.servers);
    while servers.len() < params.servers {
        let ip = rng.public_ipv4();
        if seen.insert(ip) {
            servers.push(DiscoveryServer {
                ip_address: ip.to_string(),
                encoded_server_entry: String::new(),
                date_range: Some((start, end)),
            });
        }
    }
    let mut key_rng = SplitMix64::new(params.seed, STREAM_KEY);
    let hmac_key = format!("{:016x}{:016x}", key_rng.next_u64(), key_rng.next_u64());
    let mut client_rng = SplitMix64::new(params.seed, STREAM_CLIENTS);
    let clients: Vec<ClientKey> = (0..params.clients)
        .map(|_| ClientKey::new(IpAddr::V4(client_rng.public_ipv4()), &hmac_key))
        .collect();
    let adversary = adversary_ips(params);
    let adversary_distinct_ips = adversary.iter().collect::<HashSet<_>>().len();
    let adversary: Vec<ClientKey> = adversary
        .into_iter()
        .map(|ip| ClientKey::new(ip, &hmac_key))
        .collect();
    let times: Vec<SystemTime> = (0..hours)
        .map(|h| start + Duration::from_secs(h * 3600))
        .collect();

    let strategies = Strategy::ALL
        .iter()
        .map(|&strategy| {
            // Every server is discoverable for the whole window: one set, built once.
            let set = DiscoverableSet::build(&servers, strategy, start);
            let mut learned = vec![false; servers.len()];
            for &key in &adversary {
                for &t in &times {
                    if let Some(slot) = set.select(key, t).and_then(|i| learned.get_mut(i)) {
                        *slot = true;
                    }
                }
            }
            let adversary_servers_learned = learned.iter().filter(|&&l| l).count();
            let mut total = 0usize;
            let mut max = 0usize;
            let mut own = Vec::with_capacity(times.len());
            for &key in &clients {
                own.clear();
                own.extend(times.iter().filter_map(|&t| set.select(key, t)));
                own.sort_unstable();
                own.dedup();
                total += own.len();
                max = max.max(own.len());
            }
            let percent = |count: usize| {
                if servers.is_empty() {
                    0.0
                } else {
                    100.0 * count as f64 / servers.len() as f64
                }
            };
            StrategyReport {
                strategy,
                adversary_servers_learned,
                adversary_servers_learned_percent: percent(adversary_servers_learned),
                client_mean_servers_learned: if clients.is_empty() {
                    0.0
                } else {
                    total as f64 / clients.len() as f64
                },
                client_max_servers_learned: max,
            }
        })
        .collect();
    SimulationReport {
        params: params.clone(),
        adversary_distinct_ips,
        handshakes_per_ip: hours,
        strategies,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(servers: usize, clients: usize, k: usize, same_24: bool, days: u32) -> SimulationReport {
        simulate(&SimulationParams {
            servers,
            clients,
            adversary_ips: k,
            same_24,
            days,
            seed: 7,
        })
    }

    fn learned(r: &SimulationReport, s: Strategy) -> usize {
        r.strategies
            .iter()
            .find(|x| x.strategy == s)
            .map(|x| x.adversary_servers_learned)
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn one_address_learns_little() {
        let r = run(1000, 20, 1, false, 2);
        assert_eq!(r.handshakes_per_ip, 48);
        assert_eq!(learned(&r, Strategy::Consistent), 1);
        let classic = learned(&r, Strategy::Classic);
        // At most one per hour, and never more than its bucket (ceil(sqrt(1000)) = 32 servers
        // in 32 buckets: 31 or 32 each).
        assert!((1..=32).contains(&classic), "{classic}");
        assert!(classic <= 48);
        let consistent = &r.strategies[0];
        assert_eq!(consistent.client_mean_servers_learned, 1.0);
        assert_eq!(consistent.client_max_servers_learned, 1);
        // Over 2 days every hour of a 32-server bucket comes round at most twice: > 1 server.
        assert!(r.strategies[1].client_mean_servers_learned > 1.0);
        // One day with a tiny bucket: the whole bucket.
        let r = run(9, 0, 1, false, 1);
        assert_eq!(learned(&r, Strategy::Classic), 3);
        assert_eq!(r.strategies[1].client_mean_servers_learned, 0.0);
    }

    #[test]
    fn more_adversary_addresses_never_learn_fewer() {
        for same_24 in [false, true] {
            let mut previous = [0usize; 2];
            for k in [0, 1, 2, 8, 64, 300] {
                let r = run(200, 0, k, same_24, 1);
                let now = [
                    learned(&r, Strategy::Consistent),
                    learned(&r, Strategy::Classic),
                ];
                assert!(
                    now[0] >= previous[0] && now[1] >= previous[1],
                    "{k}: {now:?}"
                );
                assert!(now[0] <= k.min(200) && now[1] <= 200);
                previous = now;
            }
            // 300 addresses in one /24 are 256 distinct ones.
            let r = run(10, 0, 300, same_24, 1);
            assert_eq!(r.adversary_distinct_ips, if same_24 { 256 } else { 300 });
        }
    }

    #[test]
    fn deterministic_and_shaped_for_a_table() {
        let a = run(50, 10, 16, true, 1);
        assert_eq!(a, run(50, 10, 16, true, 1));
        assert_ne!(
            simulate(&SimulationParams {
                seed: 8,
                ..a.params.clone()
            })
            .strategies,
            Vec::new()
        );
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["strategies"][0]["strategy"], "consistent");
        assert_eq!(json["strategies"][1]["strategy"], "classic");
        assert_eq!(json["params"]["servers"], 50);
        let p = json["strategies"][0]["adversary_servers_learned_percent"]
            .as_f64()
            .unwrap();
        assert!((0.0..=100.0).contains(&p));
    }
}
