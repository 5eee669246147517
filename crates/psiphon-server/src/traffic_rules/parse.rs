//! Reading `psiphond-traffic-rules.config`: tunnel-core's JSON names, every error naming the
//! file and the key path (`FilteredRules[1].Rules.RateLimits.ReadBytesPerSecond`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Filter, FilteredRules, PortList, RulesPatch, Subnet, TrafficRulesSet};
use crate::error::{Error, Result};

/// Top-level keys tunnel-core reads that this server accepts without acting on them.
const ACCEPTED_TOP_LEVEL: &[&str] = &[
    "MeekRateLimiterHistorySize",
    "MeekRateLimiterThresholdSeconds",
    "MeekRateLimiterTunnelProtocols",
    "MeekRateLimiterRegions",
    "MeekRateLimiterISPs",
    "MeekRateLimiterASNs",
    "MeekRateLimiterCities",
    "MeekRateLimiterGarbageCollectionTriggerCount",
    "MeekRateLimiterReapHistoryFrequencySeconds",
    "MeekRateLimiterMaxEntries",
];

/// One JSON object being read, with the path that names it in errors.
struct Obj<'a> {
    file: &'a str,
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(file: &'a str, path: String, value: &'a Value) -> Result<Obj<'a>> {
        match value {
            Value::Object(map) => Ok(Obj { file, path, map }),
            _ => Err(Error::value(file, &path, "must be an object")),
        }
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn err(&self, key: &str, reason: &str) -> Error {
        Error::value(self.file, &self.key(key), reason)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn child(&self, key: &str) -> Result<Option<Obj<'a>>> {
        self.get(key)
            .map(|v| Obj::new(self.file, self.key(key), v))
            .transpose()
    }

    fn uint(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| self.err(key, "must be a non-negative integer"))
            })
            .transpose()
    }

    fn int(&self, key: &str) -> Result<Option<i64>> {
        self.get(key)
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| self.err(key, "must be an integer"))
            })
            .transpose()
    }

    fn count(&self, key: &str) -> Result<Option<usize>> {
        self.uint(key)?
            .map(|n| usize::try_from(n).map_err(|_| self.err(key, "is too large")))
            .transpose()
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.err(key, "must be true or false"))
            })
            .transpose()
    }

    fn string(&self, key: &str) -> Result<Option<String>> {
        self.get(key)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.err(key, "must be a string"))
            })
            .transpose()
    }

    fn strings_of(&self, key: &str, v: &Value) -> Result<Vec<String>> {
        let Value::Array(items) = v else {
            return Err(self.err(key, "must be a list of strings"));
        };
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| self.err(key, "must be a list of strings"))
            })
            .collect()
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.get(key).map(|v| self.strings_of(key, v)).transpose()
    }

    fn ports(&self, key: &str) -> Result<Option<PortList>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let bad = || self.err(key, "must be a list of ports and [first, last] port ranges");
        let port = |v: &Value| v.as_u64().and_then(|p| u16::try_from(p).ok());
        let Value::Array(items) = v else {
            return Err(bad());
        };
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let range = match item {
                Value::Array(pair) => match pair.as_slice() {
                    [a, b] => (port(a).ok_or_else(bad)?, port(b).ok_or_else(bad)?),
                    _ => return Err(bad()),
                },
                other => {
                    let p = port(other).ok_or_else(bad)?;
                    (p, p)
                }
            };
            if range.0 > range.1 {
                return Err(bad());
            }
            ranges.push(range);
        }
        Ok(Some(PortList { ranges }))
    }

    fn subnets(&self, key: &str) -> Result<Option<Vec<Subnet>>> {
        self.strings(key)?
            .map(|list| {
                list.iter()
                    .map(|s| {
                        Subnet::parse(s).ok_or_else(|| {
                            self.err(key, &format!("{s:?} is not a CIDR subnet (a.b.c.d/n)"))
                        })
                    })
                    .collect()
            })
            .transpose()
    }

    /// Keys not in `known`, as warnings.
    fn unknown(&self, known: &[&str], warnings: &mut Vec<String>) {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                warnings.push(format!(
                    "{}: unknown key {:?} ignored",
                    self.file,
                    self.key(k)
                ));
            }
        }
    }
}

fn rules_patch(o: &Obj<'_>, warnings: &mut Vec<String>) -> Result<RulesPatch> {
    let mut p = RulesPatch::default();
    if let Some(r) = o.child("RateLimits")? {
        let rate = |key: &str| r.uint(key);
        p.read_unthrottled_bytes = rate("ReadUnthrottledBytes")?;
        p.read_bytes_per_second = rate("ReadBytesPerSecond")?;
        p.write_unthrottled_bytes = rate("WriteUnthrottledBytes")?;
        p.write_bytes_per_second = rate("WriteBytesPerSecond")?;
        p.close_after_exhausted = r.bool("CloseAfterExhausted")?;
        p.establishment_read_bytes_per_second = rate("EstablishmentReadBytesPerSecond")?;
        p.establishment_write_bytes_per_second = rate("EstablishmentWriteBytesPerSecond")?;
        p.unthrottle_first_tunnel_only = r.bool("UnthrottleFirstTunnelOnly")?;
        r.unknown(
            &[
                "ReadUnthrottledBytes",
                "ReadBytesPerSecond",
                "WriteUnthrottledBytes",
                "WriteBytesPerSecond",
                "CloseAfterExhausted",
                "EstablishmentReadBytesPerSecond",
                "EstablishmentWriteBytesPerSecond",
                "UnthrottleFirstTunnelOnly",
            ],
            warnings,
        );
    }
    p.dial_tcp_timeout_ms = o.uint("DialTCPPortForwardTimeoutMilliseconds")?;
    p.idle_tcp_timeout_ms = o.uint("IdleTCPPortForwardTimeoutMilliseconds")?;
    p.idle_udp_timeout_ms = o.uint("IdleUDPPortForwardTimeoutMilliseconds")?;
    p.max_tcp_dialing = o.count("MaxTCPDialingPortForwardCount")?;
    p.max_tcp = o.count("MaxTCPPortForwardCount")?;
    p.max_udp = o.count("MaxUDPPortForwardCount")?;
    p.allow_tcp_ports = o.ports("AllowTCPPorts")?;
    p.allow_udp_ports = o.ports("AllowUDPPorts")?;
    p.disallow_tcp_ports = o.ports("DisallowTCPPorts")?;
    p.disallow_udp_ports = o.ports("DisallowUDPPorts")?;
    p.allow_subnets = o.subnets("AllowSubnets")?;
    p.disallow_subnets = o.subnets("DisallowSubnets")?;
    p.allow_asns = o.strings("AllowASNs")?;
    p.disallow_asns = o.strings("DisallowASNs")?;
    p.disable_discovery = o.bool("DisableDiscovery")?;
    o.unknown(
        &[
            "RateLimits",
            "DialTCPPortForwardTimeoutMilliseconds",
            "IdleTCPPortForwardTimeoutMilliseconds",
            "IdleUDPPortForwardTimeoutMilliseconds",
            "MaxTCPDialingPortForwardCount",
            "MaxTCPPortForwardCount",
            "MaxUDPPortForwardCount",
            "AllowTCPPorts",
            "AllowUDPPorts",
            "DisallowTCPPorts",
            "DisallowUDPPorts",
            "AllowSubnets",
            "AllowASNs",
            "DisallowSubnets",
            "DisallowASNs",
            "DisableDiscovery",
        ],
        warnings,
    );
    Ok(p)
}

fn filter(o: &Obj<'_>, warnings: &mut Vec<String>) -> Result<Filter> {
    let list = |key: &str| -> Result<Vec<String>> { Ok(o.strings(key)?.unwrap_or_default()) };
    let handshake_parameters = match o.child("HandshakeParameters")? {
        None => None,
        Some(h) => Some(
            h.map
                .iter()
                .map(|(name, v)| Ok((name.clone(), h.strings_of(name, v)?)))
                .collect::<Result<BTreeMap<_, _>>>()?,
        ),
    };
    let f = Filter {
        tunnel_protocols: list("TunnelProtocols")?,
        regions: list("Regions")?,
        isps: list("ISPs")?,
        asns: list("ASNs")?,
        cities: list("Cities")?,
        api_protocol: o.string("APIProtocol")?.unwrap_or_default(),
        handshake_parameters,
        authorized_access_types: list("AuthorizedAccessTypes")?,
        active_authorization_ids: list("ActiveAuthorizationIDs")?,
        authorizations_revoked: o.bool("AuthorizationsRevoked")?.unwrap_or(false),
        provider_ids: list("ProviderIDs")?,
        min_client_version: o.int("MinClientVersion")?,
        max_client_version: o.int("MaxClientVersion")?,
    };
    o.unknown(
        &[
            "TunnelProtocols",
            "Regions",
            "ISPs",
            "ASNs",
            "Cities",
            "APIProtocol",
            "HandshakeParameters",
            "AuthorizedAccessTypes",
            "ActiveAuthorizationIDs",
            "AuthorizationsRevoked",
            "ProviderIDs",
            "MinClientVersion",
            "MaxClientVersion",
        ],
        warnings,
    );
    Ok(f)
}

/// Parses the whole file.
pub(super) fn parse_set(text: &str, file: &str) -> Result<TrafficRulesSet> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::ConfigFile {
        file: file.to_owned(),
        reason: format!("not valid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(Error::ConfigFile {
            file: file.to_owned(),
            reason: "not a JSON object".to_owned(),
        });
    }
    let top = Obj::new(file, String::new(), &value)?;
    let mut warnings = Vec::new();
    let default = match top.child("DefaultRules")? {
        Some(o) => rules_patch(&o, &mut warnings)?,
        None => RulesPatch::default(),
    };
    let mut filtered = Vec::new();
    match top.get("FilteredRules") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let o = Obj::new(file, format!("FilteredRules[{i}]"), item)?;
                let f = match o.child("Filter")? {
                    Some(f) => filter(&f, &mut warnings)?,
                    None => Filter::default(),
                };
                let except = match o.child("ExceptFilter")? {
                    Some(f) => Some(filter(&f, &mut warnings)?),
                    None => None,
                };
                let rules = match o.child("Rules")? {
                    Some(r) => rules_patch(&r, &mut warnings)?,
                    None => RulesPatch::default(),
                };
                o.unknown(&["Filter", "ExceptFilter", "Rules"], &mut warnings);
                filtered.push(FilteredRules {
                    filter: f,
                    except,
                    rules,
                });
            }
        }
        Some(_) => return Err(top.err("FilteredRules", "must be a list")),
    }
    let mut known = vec!["DefaultRules", "FilteredRules"];
    known.extend_from_slice(ACCEPTED_TOP_LEVEL);
    top.unknown(&known, &mut warnings);
    Ok(TrafficRulesSet {
        default,
        filtered,
        warnings,
    })
}
