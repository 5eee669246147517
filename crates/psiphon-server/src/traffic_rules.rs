//! `psiphond-traffic-rules.config`: the `DefaultRules` this server applies to every client
//! (timeouts, forward counts, `DisableDiscovery`).
//! `FilteredRules` are read but not applied yet.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Result};

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

/// The rules applied to a client's port forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRules {
    /// `DialTCPPortForwardTimeoutMilliseconds`.
    pub dial_tcp_port_forward_timeout: Duration,
    /// `IdleTCPPortForwardTimeoutMilliseconds`.
    pub idle_tcp_port_forward_timeout: Duration,
    /// `MaxTCPDialingPortForwardCount`: forwards being dialled at once.
    pub max_tcp_dialing_port_forward_count: usize,
    /// `MaxTCPPortForwardCount`: forwards open at once; more are refused.
    pub max_tcp_port_forward_count: usize,
    /// `DisableDiscovery`: hand out no discovery server in the handshake.
    pub disable_discovery: bool,
}

impl Default for TrafficRules {
    fn default() -> Self {
        TrafficRules {
            dial_tcp_port_forward_timeout: Duration::from_millis(
                DEFAULT_DIAL_TCP_PORT_FORWARD_TIMEOUT_MS,
            ),
            idle_tcp_port_forward_timeout: Duration::from_millis(
                DEFAULT_IDLE_TCP_PORT_FORWARD_TIMEOUT_MS,
            ),
            max_tcp_dialing_port_forward_count: DEFAULT_MAX_TCP_DIALING_PORT_FORWARD_COUNT,
            max_tcp_port_forward_count: DEFAULT_MAX_TCP_PORT_FORWARD_COUNT,
            disable_discovery: false,
        }
    }
}

impl TrafficRules {
    /// Parses a traffic rules file; `file` names it in errors. Absent or zero values take
    /// tunnel-core's defaults.
    ///
    /// # Errors
    /// [`Error::ConfigFile`] or [`Error::ConfigValue`].
    pub fn parse(text: &str, file: &str) -> Result<TrafficRules> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::ConfigFile {
            file: file.to_owned(),
            reason: format!("not valid JSON: {e}"),
        })?;
        let defaults = TrafficRules::default();
        let Some(rules) = value.get("DefaultRules") else {
            return Ok(defaults);
        };
        if !rules.is_object() {
            return Err(Error::value(file, "DefaultRules", "must be an object"));
        }
        let num = |key: &str| -> Result<Option<u64>> {
            match rules.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(|n| (n > 0).then_some(n))
                    .ok_or_else(|| Error::value(file, key, "must be a non-negative integer")),
            }
        };
        let count = |key: &str, default: usize| -> Result<usize> {
            Ok(num(key)?
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(default))
        };
        Ok(TrafficRules {
            dial_tcp_port_forward_timeout: num("DialTCPPortForwardTimeoutMilliseconds")?.map_or(
                defaults.dial_tcp_port_forward_timeout,
                Duration::from_millis,
            ),
            idle_tcp_port_forward_timeout: num("IdleTCPPortForwardTimeoutMilliseconds")?.map_or(
                defaults.idle_tcp_port_forward_timeout,
                Duration::from_millis,
            ),
            max_tcp_dialing_port_forward_count: count(
                "MaxTCPDialingPortForwardCount",
                defaults.max_tcp_dialing_port_forward_count,
            )?,
            max_tcp_port_forward_count: count(
                "MaxTCPPortForwardCount",
                defaults.max_tcp_port_forward_count,
            )?,
            disable_discovery: match rules.get("DisableDiscovery") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Error::value(
                        file,
                        "DisableDiscovery",
                        "must be true or false",
                    ));
                }
            },
        })
    }

    /// Reads a traffic rules file.
    ///
    /// # Errors
    /// [`Error::Read`] or as [`TrafficRules::parse`].
    pub fn read(path: &Path) -> Result<TrafficRules> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        TrafficRules::parse(&text, &path.display().to_string())
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
mod tests {
    use super::*;

    #[test]
    fn generated_rules_parse_to_defaults() {
        let text = generated_rules_json().to_string();
        assert_eq!(
            TrafficRules::parse(&text, "t").unwrap(),
            TrafficRules::default()
        );
        let custom = r#"{"DefaultRules":{"MaxTCPPortForwardCount":2,"DialTCPPortForwardTimeoutMilliseconds":500}}"#;
        let rules = TrafficRules::parse(custom, "t").unwrap();
        assert_eq!(rules.max_tcp_port_forward_count, 2);
        assert_eq!(
            rules.dial_tcp_port_forward_timeout,
            Duration::from_millis(500)
        );
        let err = TrafficRules::parse(r#"{"DefaultRules":{"MaxTCPPortForwardCount":"x"}}"#, "t")
            .unwrap_err();
        assert!(err.to_string().contains("MaxTCPPortForwardCount"), "{err}");
        let rules = TrafficRules::parse(r#"{"DefaultRules":{"DisableDiscovery":true}}"#, "t");
        assert!(rules.unwrap().disable_discovery);
        let err =
            TrafficRules::parse(r#"{"DefaultRules":{"DisableDiscovery":1}}"#, "t").unwrap_err();
        assert!(err.to_string().contains("DisableDiscovery"), "{err}");
    }
}
