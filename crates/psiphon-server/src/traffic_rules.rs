//! `psiphond-traffic-rules.config`, as tunnel-core's: `DefaultRules`, then the first of the
//! `FilteredRules` whose `Filter` matches the client (and whose `ExceptFilter`, if any, does
//! not) overrides the values it sets. Rules are selected when a tunnel is accepted and again
//! after the API handshake, with the handshake's parameters; [`RulesStore`] reloads the file
//! when it changes.

mod filter;
mod parse;

use filter::Filter;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use psiphon_protocol::ApiParams;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::geoip::GeoFields;
use crate::log::{EventLog, Level};
use crate::reload::{ReloadOutcome, Stamp};
use crate::throttle::Limits;

/// tunnel-core's `DEFAULT_DIAL_TCP_PORT_FORWARD_TIMEOUT_MILLISECONDS`.
pub const DEFAULT_DIAL_TCP_PORT_FORWARD_TIMEOUT_MS: u64 = 10_000;
/// tunnel-core's `DEFAULT_IDLE_TCP_PORT_FORWARD_TIMEOUT_MILLISECONDS`.
pub const DEFAULT_IDLE_TCP_PORT_FORWARD_TIMEOUT_MS: u64 = 30_000;
/// tunnel-core's `DEFAULT_IDLE_UDP_PORT_FORWARD_TIMEOUT_MILLISECONDS`.
pub const DEFAULT_IDLE_UDP_PORT_FORWARD_TIMEOUT_MS: u64 = 30_000;
/// tunnel-core's `DEFAULT_MAX_TCP_DIALING_PORT_FORWARD_COUNT`.
pub const DEFAULT_MAX_TCP_DIALING_PORT_FORWARD_COUNT: usize = 64;
/// tunnel-core's `DEFAULT_MAX_TCP_PORT_FORWARD_COUNT`.
pub const DEFAULT_MAX_TCP_PORT_FORWARD_COUNT: usize = 512;
/// tunnel-core's `DEFAULT_MAX_UDP_PORT_FORWARD_COUNT`.
pub const DEFAULT_MAX_UDP_PORT_FORWARD_COUNT: usize = 32;

/// A list of ports and port ranges (`[80, 443, [8000, 8080]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortList {
    ranges: Vec<(u16, u16)>,
}

impl PortList {
    /// Whether the list holds no port.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether `port` is listed.
    pub fn contains(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&port))
    }
}

/// An IPv4 or IPv6 CIDR subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: IpAddr,
    prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n` or `x:y::/n`.
    pub fn parse(s: &str) -> Option<Subnet> {
        let (ip, prefix) = s.split_once('/')?;
        let network: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Subnet { network, prefix })
    }

    /// Whether `ip` is in the subnet (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(i)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), self.prefix),
            _ => return false,
        };
        let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
        a & mask == b & mask
    }
}

/// `RateLimits`: bytes per second after an unthrottled allowance; 0 = no limit. "Read" is what
/// the server reads from the client (upstream), "write" what it sends to the client
/// (downstream), as in tunnel-core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// `ReadUnthrottledBytes`.
    pub read_unthrottled_bytes: u64,
    /// `ReadBytesPerSecond`.
    pub read_bytes_per_second: u64,
    /// `WriteUnthrottledBytes`.
    pub write_unthrottled_bytes: u64,
    /// `WriteBytesPerSecond`.
    pub write_bytes_per_second: u64,
    /// `CloseAfterExhausted`: close the tunnel once an unthrottled allowance is used up,
    /// instead of throttling.
    pub close_after_exhausted: bool,
    /// `EstablishmentReadBytesPerSecond`: the read rate before the API handshake.
    pub establishment_read_bytes_per_second: u64,
    /// `EstablishmentWriteBytesPerSecond`: the write rate before the API handshake.
    pub establishment_write_bytes_per_second: u64,
    /// `UnthrottleFirstTunnelOnly`: the unthrottled allowances only for a session's first
    /// tunnel.
    pub unthrottle_first_tunnel_only: bool,
}

impl RateLimits {
    /// The limits a tunnel's connection runs under, before or after the handshake.
    pub fn limits(&self, handshaked: bool) -> Limits {
        Limits {
            read_unthrottled_bytes: self.read_unthrottled_bytes,
            read_bytes_per_second: if handshaked {
                self.read_bytes_per_second
            } else {
                self.establishment_read_bytes_per_second
            },
            write_unthrottled_bytes: self.write_unthrottled_bytes,
            write_bytes_per_second: if handshaked {
                self.write_bytes_per_second
            } else {
                self.establishment_write_bytes_per_second
            },
            close_after_exhausted: self.close_after_exhausted,
        }
    }
}

/// The rules applied to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRules {
    /// `RateLimits`.
    pub rate_limits: RateLimits,
    /// `DialTCPPortForwardTimeoutMilliseconds` (0 = the default).
    pub dial_tcp_port_forward_timeout: Duration,
    /// `IdleTCPPortForwardTimeoutMilliseconds` (0 = the default).
    pub idle_tcp_port_forward_timeout: Duration,
    /// `IdleUDPPortForwardTimeoutMilliseconds` (0 = the default).
    pub idle_udp_port_forward_timeout: Duration,
    /// `MaxTCPDialingPortForwardCount`: forwards being dialled at once (0 = the default).
    pub max_tcp_dialing_port_forward_count: usize,
    /// `MaxTCPPortForwardCount`: forwards open at once; a new one closes the least recently
    /// active (0 = no limit, as tunnel-core).
    pub max_tcp_port_forward_count: usize,
    /// `MaxUDPPortForwardCount` (0 = no limit).
    pub max_udp_port_forward_count: usize,
    /// `AllowTCPPorts`: when not empty, only these ports (or `AllowSubnets`/`AllowASNs`).
    pub allow_tcp_ports: PortList,
    /// `AllowUDPPorts`.
    pub allow_udp_ports: PortList,
    /// `DisallowTCPPorts`.
    pub disallow_tcp_ports: PortList,
    /// `DisallowUDPPorts`.
    pub disallow_udp_ports: PortList,
    /// `AllowSubnets`: destinations allowed on any port.
    pub allow_subnets: Vec<Subnet>,
    /// `DisallowSubnets`: destinations refused on every port.
    pub disallow_subnets: Vec<Subnet>,
    /// `AllowASNs`: destination ASNs allowed on any port (needs an ISP GeoIP database).
    pub allow_asns: Vec<String>,
    /// `DisallowASNs`: destination ASNs refused.
    pub disallow_asns: Vec<String>,
    /// `DisableDiscovery`: hand out no discovery server in the handshake.
    pub disable_discovery: bool,
}

impl Default for TrafficRules {
    fn default() -> Self {
        TrafficRules {
            rate_limits: RateLimits::default(),
            dial_tcp_port_forward_timeout: Duration::from_millis(
                DEFAULT_DIAL_TCP_PORT_FORWARD_TIMEOUT_MS,
            ),
            idle_tcp_port_forward_timeout: Duration::from_millis(
                DEFAULT_IDLE_TCP_PORT_FORWARD_TIMEOUT_MS,
            ),
            idle_udp_port_forward_timeout: Duration::from_millis(
                DEFAULT_IDLE_UDP_PORT_FORWARD_TIMEOUT_MS,
            ),
            max_tcp_dialing_port_forward_count: DEFAULT_MAX_TCP_DIALING_PORT_FORWARD_COUNT,
            max_tcp_port_forward_count: DEFAULT_MAX_TCP_PORT_FORWARD_COUNT,
            max_udp_port_forward_count: DEFAULT_MAX_UDP_PORT_FORWARD_COUNT,
            allow_tcp_ports: PortList::default(),
            allow_udp_ports: PortList::default(),
            disallow_tcp_ports: PortList::default(),
            disallow_udp_ports: PortList::default(),
            allow_subnets: Vec::new(),
            disallow_subnets: Vec::new(),
            allow_asns: Vec::new(),
            disallow_asns: Vec::new(),
            disable_discovery: false,
        }
    }
}

impl TrafficRules {
    /// Whether a TCP forward to `ip:port` is allowed; `asn` gives the destination's AS
    /// number when `AllowASNs`/`DisallowASNs` need it. tunnel-core's order: disallowed
    /// subnets and ASNs, disallowed ports, then allowed ports, subnets and ASNs.
    pub fn allow_tcp(&self, ip: IpAddr, port: u16, asn: impl Fn(IpAddr) -> String) -> bool {
        self.allow(
            ip,
            port,
            &self.allow_tcp_ports,
            &self.disallow_tcp_ports,
            asn,
        )
    }

    /// As [`TrafficRules::allow_tcp`], for UDP.
    pub fn allow_udp(&self, ip: IpAddr, port: u16, asn: impl Fn(IpAddr) -> String) -> bool {
        self.allow(
            ip,
            port,
            &self.allow_udp_ports,
            &self.disallow_udp_ports,
            asn,
        )
    }

    fn allow(
        &self,
        ip: IpAddr,
        port: u16,
        allow_ports: &PortList,
        disallow_ports: &PortList,
        asn: impl Fn(IpAddr) -> String,
    ) -> bool {
        let in_asns = |list: &[String]| !list.is_empty() && list.contains(&asn(ip));
        if self.disallow_subnets.iter().any(|s| s.contains(ip)) || in_asns(&self.disallow_asns) {
            return false;
        }
        if disallow_ports.contains(port) {
            return false;
        }
        if allow_ports.is_empty() || allow_ports.contains(port) {
            return true;
        }
        self.allow_subnets.iter().any(|s| s.contains(ip)) || in_asns(&self.allow_asns)
    }
}

/// Rules with only the values a file sets (`None` = not set).
#[derive(Debug, Clone, Default)]
struct RulesPatch {
    read_unthrottled_bytes: Option<u64>,
    read_bytes_per_second: Option<u64>,
    write_unthrottled_bytes: Option<u64>,
    write_bytes_per_second: Option<u64>,
    close_after_exhausted: Option<bool>,
    establishment_read_bytes_per_second: Option<u64>,
    establishment_write_bytes_per_second: Option<u64>,
    unthrottle_first_tunnel_only: Option<bool>,
    dial_tcp_timeout_ms: Option<u64>,
    idle_tcp_timeout_ms: Option<u64>,
    idle_udp_timeout_ms: Option<u64>,
    max_tcp_dialing: Option<usize>,
    max_tcp: Option<usize>,
    max_udp: Option<usize>,
    allow_tcp_ports: Option<PortList>,
    allow_udp_ports: Option<PortList>,
    disallow_tcp_ports: Option<PortList>,
    disallow_udp_ports: Option<PortList>,
    allow_subnets: Option<Vec<Subnet>>,
    disallow_subnets: Option<Vec<Subnet>>,
    allow_asns: Option<Vec<String>>,
    disallow_asns: Option<Vec<String>>,
    disable_discovery: Option<bool>,
}

impl RulesPatch {
    fn apply(&self, r: &mut TrafficRules) {
        fn set<T: Clone>(dst: &mut T, src: Option<&T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        let ms = |v: Option<u64>| v.filter(|&n| n > 0).map(Duration::from_millis);
        let rl = &mut r.rate_limits;
        set(
            &mut rl.read_unthrottled_bytes,
            self.read_unthrottled_bytes.as_ref(),
        );
        set(
            &mut rl.read_bytes_per_second,
            self.read_bytes_per_second.as_ref(),
        );
        set(
            &mut rl.write_unthrottled_bytes,
            self.write_unthrottled_bytes.as_ref(),
        );
        set(
            &mut rl.write_bytes_per_second,
            self.write_bytes_per_second.as_ref(),
        );
        set(
            &mut rl.close_after_exhausted,
            self.close_after_exhausted.as_ref(),
        );
        set(
            &mut rl.establishment_read_bytes_per_second,
            self.establishment_read_bytes_per_second.as_ref(),
        );
        set(
            &mut rl.establishment_write_bytes_per_second,
            self.establishment_write_bytes_per_second.as_ref(),
        );
        set(
            &mut rl.unthrottle_first_tunnel_only,
            self.unthrottle_first_tunnel_only.as_ref(),
        );
        set(
            &mut r.dial_tcp_port_forward_timeout,
            ms(self.dial_tcp_timeout_ms).as_ref(),
        );
        set(
            &mut r.idle_tcp_port_forward_timeout,
            ms(self.idle_tcp_timeout_ms).as_ref(),
        );
        set(
            &mut r.idle_udp_port_forward_timeout,
            ms(self.idle_udp_timeout_ms).as_ref(),
        );
        set(
            &mut r.max_tcp_dialing_port_forward_count,
            self.max_tcp_dialing.filter(|&n| n > 0).as_ref(),
        );
        set(&mut r.max_tcp_port_forward_count, self.max_tcp.as_ref());
        set(&mut r.max_udp_port_forward_count, self.max_udp.as_ref());
        set(&mut r.allow_tcp_ports, self.allow_tcp_ports.as_ref());
        set(&mut r.allow_udp_ports, self.allow_udp_ports.as_ref());
        set(&mut r.disallow_tcp_ports, self.disallow_tcp_ports.as_ref());
        set(&mut r.disallow_udp_ports, self.disallow_udp_ports.as_ref());
        set(&mut r.allow_subnets, self.allow_subnets.as_ref());
        set(&mut r.disallow_subnets, self.disallow_subnets.as_ref());
        set(&mut r.allow_asns, self.allow_asns.as_ref());
        set(&mut r.disallow_asns, self.disallow_asns.as_ref());
        set(&mut r.disable_discovery, self.disable_discovery.as_ref());
    }
}

#[derive(Debug, Clone)]
struct FilteredRules {
    filter: Filter,
    except: Option<Filter>,
    rules: RulesPatch,
}

/// What rules are selected by.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// The tunnel protocol name (`OSSH`, `SSH`, ...).
    pub tunnel_protocol: &'a str,
    /// The client's GeoIP fields.
    pub geo: &'a GeoFields,
    /// The API handshake's parameters, once it is done.
    pub handshake: Option<&'a ApiParams>,
    /// Whether this is the first tunnel of the client's session.
    pub first_tunnel_in_session: bool,
}

/// A whole traffic rules file.
#[derive(Debug, Clone, Default)]
pub struct TrafficRulesSet {
    default: RulesPatch,
    filtered: Vec<FilteredRules>,
    /// Keys the file has that this server does not know, for the caller to log.
    pub warnings: Vec<String>,
}

impl TrafficRulesSet {
    /// Parses a traffic rules file; `file` names it in errors. Absent values take
    /// tunnel-core's defaults.
    ///
    /// # Errors
    /// [`Error::ConfigFile`] or [`Error::ConfigValue`] naming the key.
    pub fn parse(text: &str, file: &str) -> Result<TrafficRulesSet> {
        parse::parse_set(text, file)
    }

    /// Reads a traffic rules file.
    ///
    /// # Errors
    /// [`Error::Read`] or as [`TrafficRulesSet::parse`].
    pub fn read(path: &Path) -> Result<TrafficRulesSet> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        TrafficRulesSet::parse(&text, &path.display().to_string())
    }

    /// The rules for `client`: the defaults, overridden by the first matching filtered rules.
    pub fn select(&self, client: &Client<'_>) -> TrafficRules {
        let mut rules = TrafficRules::default();
        self.default.apply(&mut rules);
        if let Some(f) = self.filtered.iter().find(|f| {
            f.filter.matches(client) && !f.except.as_ref().is_some_and(|e| e.matches(client))
        }) {
            f.rules.apply(&mut rules);
        }
        let established_before = client
            .handshake
            .and_then(|p| p.get_str("established_tunnels_count").ok())
            .is_some_and(|n| n != "0");
        if rules.rate_limits.unthrottle_first_tunnel_only
            && (!client.first_tunnel_in_session || established_before)
        {
            rules.rate_limits.read_unthrottled_bytes = 0;
            rules.rate_limits.write_unthrottled_bytes = 0;
        }
        rules
    }
}

/// The current rules file, replaced whole when it changes.
#[derive(Debug)]
pub struct RulesStore {
    current: RwLock<Arc<TrafficRulesSet>>,
    path: Option<PathBuf>,
    seen: RwLock<Option<Stamp>>,
    /// Counts reloads, so tunnels can select their rules again.
    generation: watch::Sender<u64>,
}

impl RulesStore {
    /// Loads `path` (tunnel-core's defaults when `None`).
    ///
    /// # Errors
    /// As [`TrafficRulesSet::read`].
    pub fn open(path: Option<&Path>) -> Result<RulesStore> {
        let seen = path.and_then(|p| Stamp::of(p).ok());
        let set = match path {
            Some(p) => TrafficRulesSet::read(p)?,
            None => TrafficRulesSet::default(),
        };
        Ok(RulesStore {
            current: RwLock::new(Arc::new(set)),
            path: path.map(Path::to_owned),
            seen: RwLock::new(seen),
            generation: watch::Sender::new(0),
        })
    }

    /// The rules to select from now.
    pub fn current(&self) -> Arc<TrafficRulesSet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Changes each time new rules are loaded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Reloads the file if its modification time or size changed since the last attempt;
    /// a file that does not load keeps the old rules and logs an error naming it. Blocking.
    pub fn reload_if_changed(&self, log: &EventLog) -> ReloadOutcome {
        let Some(path) = &self.path else {
            return ReloadOutcome::Unchanged;
        };
        let names = ("traffic rules", "traffic rules");
        crate::reload::reload_file(path, &self.seen, log, names, || {
            let set = TrafficRulesSet::read(path)?;
            for w in &set.warnings {
                log.message(Level::Warning, w);
            }
            let filtered = set.filtered.len();
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
            Ok(format!("{filtered} filtered rules"))
        })
    }
}

/// The traffic rules file `psiphond generate` writes: tunnel-core's defaults, no rate limits.
pub fn generated_rules_json() -> Value {
    json!({
        "DefaultRules": {
            "RateLimits": {
                "ReadUnthrottledBytes": 0,
                "ReadBytesPerSecond": 0,
                "WriteUnthrottledBytes": 0,
                "WriteBytesPerSecond": 0
            },
            "DialTCPPortForwardTimeoutMilliseconds": DEFAULT_DIAL_TCP_PORT_FORWARD_TIMEOUT_MS,
            "IdleTCPPortForwardTimeoutMilliseconds": DEFAULT_IDLE_TCP_PORT_FORWARD_TIMEOUT_MS,
            "IdleUDPPortForwardTimeoutMilliseconds": DEFAULT_IDLE_UDP_PORT_FORWARD_TIMEOUT_MS,
            "MaxTCPDialingPortForwardCount": DEFAULT_MAX_TCP_DIALING_PORT_FORWARD_COUNT,
            "MaxTCPPortForwardCount": DEFAULT_MAX_TCP_PORT_FORWARD_COUNT,
            "MaxUDPPortForwardCount": DEFAULT_MAX_UDP_PORT_FORWARD_COUNT
        },
        "FilteredRules": []
    })
}

#[cfg(test)]
mod tests;
