//! The client's configuration, in psiphon-tunnel-core's JSON keys (Go field names, exact case),
//! so existing `client.json` files work unchanged.
//!
//! Keys this client does not know are returned to the caller (which warns, naming each) rather
//! than rejected; values of known keys are validated and a bad one is an error that names the
//! key and the file.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use psiphon_protocol::TunnelProtocol;
use serde_json::{Map, Value};

/// A configuration problem, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a JSON object.
    #[error("{file}: not a JSON object: {reason}")]
    Json {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A value is invalid.
    #[error("{file}: {key}: {reason}")]
    Value {
        /// The file.
        file: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// Configuration errors are always the user's to fix.
    pub fn kind(&self) -> psiphon_protocol::ErrorKind {
        psiphon_protocol::ErrorKind::Config
    }
}

/// The client configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `PropagationChannelId` (required).
    pub propagation_channel_id: String,
    /// `SponsorId` (required).
    pub sponsor_id: String,
    /// `ClientVersion`: an integer string, default "0".
    pub client_version: String,
    /// `ClientPlatform`.
    pub client_platform: String,
    /// `DataRootDirectory`.
    pub data_root_directory: Option<PathBuf>,
    /// `LocalSocksProxyPort` (0 or absent: any free port).
    pub local_socks_proxy_port: Option<u16>,
    /// `LocalHttpProxyPort` (0 or absent: any free port).
    pub local_http_proxy_port: Option<u16>,
    /// `DisableLocalSocksProxy`.
    pub disable_local_socks_proxy: bool,
    /// `DisableLocalHTTPProxy`.
    pub disable_local_http_proxy: bool,
    /// `ListenInterface`: absent = 127.0.0.1; `"any"` = all interfaces.
    pub listen_interface: Option<String>,
    /// `EgressRegion`.
    pub egress_region: Option<String>,
    /// `LimitTunnelProtocols`.
    pub limit_tunnel_protocols: Vec<TunnelProtocol>,
    /// `TargetServerEntry`: an encoded entry to use exclusively.
    pub target_server_entry: Option<String>,
    /// `EmitDiagnosticNotices`.
    pub emit_diagnostic_notices: bool,
    /// `ConnectionWorkerPoolSize`.
    pub connection_worker_pool_size: Option<usize>,
    /// `TunnelPoolSize`.
    pub tunnel_pool_size: Option<usize>,
    /// `EstablishTunnelTimeoutSeconds`.
    pub establish_tunnel_timeout_seconds: Option<u64>,
    /// `SessionID` (normally generated per process).
    pub session_id: Option<String>,
    /// `ServerEntrySignaturePublicKey`.
    pub server_entry_signature_public_key: Option<String>,
    /// `UpstreamProxyURL` (parsed and kept; used from issue 5 on).
    pub upstream_proxy_url: Option<String>,
    /// `DeviceRegion`.
    pub device_region: Option<String>,
}

/// Every key this client reads; anything else is reported as unknown.
const KNOWN: &[&str] = &[
    "PropagationChannelId",
    "SponsorId",
    "ClientVersion",
    "ClientPlatform",
    "DataRootDirectory",
    "LocalSocksProxyPort",
    "LocalHttpProxyPort",
    "DisableLocalSocksProxy",
    "DisableLocalHTTPProxy",
    "ListenInterface",
    "EgressRegion",
    "LimitTunnelProtocols",
    "TargetServerEntry",
    "EmitDiagnosticNotices",
    "ConnectionWorkerPoolSize",
    "TunnelPoolSize",
    "EstablishTunnelTimeoutSeconds",
    "SessionID",
    "ServerEntrySignaturePublicKey",
    "UpstreamProxyURL",
    "DeviceRegion",
];

struct Fields<'a> {
    map: &'a Map<String, Value>,
    file: &'a str,
}

impl Fields<'_> {
    fn err(&self, key: &'static str, reason: impl Into<String>) -> Error {
        Error::Value {
            file: self.file.to_owned(),
            key,
            reason: reason.into(),
        }
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(key, format!("expected a string, got {other}"))),
        }
    }

    fn bool(&self, key: &'static str) -> Result<bool, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(key, format!("expected true or false, got {other}"))),
        }
    }

    fn uint(&self, key: &'static str, max: u64) -> Result<Option<u64>, Error> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(self.err(key, format!("expected a whole number 0-{max}, got {n}"))),
            },
            Some(other) => {
                Err(self.err(key, format!("expected a whole number 0-{max}, got {other}")))
            }
        }
    }

    fn port(&self, key: &'static str) -> Result<Option<u16>, Error> {
        self.uint(key, u64::from(u16::MAX))?
            .map(|v| u16::try_from(v).map_err(|_| self.err(key, "port out of range")))
            .transpose()
    }

    fn hex_id(&self, key: &'static str) -> Result<String, Error> {
        let v = self.string(key)?.ok_or_else(|| self.err(key, "required"))?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err(key, format!("expected hex digits, got {v:?}")));
        }
        Ok(v)
    }
}

impl Config {
    /// Parses `text`; `file` names it in errors. Returns the config and the unknown keys.
    pub fn parse(text: &str, file: &str) -> Result<(Config, Vec<String>), Error> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Json {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(Error::Json {
                file: file.to_owned(),
                reason: "the top level must be an object".to_owned(),
            });
        };
        let f = Fields { map: &map, file };
        let client_version = f.string("ClientVersion")?.unwrap_or_else(|| "0".to_owned());
        if client_version.is_empty() || !client_version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(f.err(
                "ClientVersion",
                format!("expected an integer string, got {client_version:?}"),
            ));
        }
        let sponsor_id = f.hex_id("SponsorId")?;
        if sponsor_id.len() != 16 {
            return Err(f.err("SponsorId", "expected 16 hex digits"));
        }
        let limit_tunnel_protocols = match map.get("LimitTunnelProtocols") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .and_then(TunnelProtocol::from_name)
                        .ok_or_else(|| {
                            f.err(
                                "LimitTunnelProtocols",
                                format!("unknown tunnel protocol {v}"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(f.err(
                    "LimitTunnelProtocols",
                    format!("expected a list of protocol names, got {other}"),
                ));
            }
        };
        let to_usize = |key, v: Option<u64>| {
            v.map(|v| usize::try_from(v).map_err(|_| f.err(key, "too large")))
                .transpose()
        };
        let config = Config {
            propagation_channel_id: f.hex_id("PropagationChannelId")?,
            sponsor_id,
            client_version,
            client_platform: f
                .string("ClientPlatform")?
                .unwrap_or_else(|| "psiphon-rs".to_owned()),
            data_root_directory: f.string("DataRootDirectory")?.map(PathBuf::from),
            local_socks_proxy_port: f.port("LocalSocksProxyPort")?,
            local_http_proxy_port: f.port("LocalHttpProxyPort")?,
            disable_local_socks_proxy: f.bool("DisableLocalSocksProxy")?,
            disable_local_http_proxy: f.bool("DisableLocalHTTPProxy")?,
            listen_interface: f.string("ListenInterface")?,
            egress_region: f.string("EgressRegion")?,
            limit_tunnel_protocols,
            target_server_entry: f.string("TargetServerEntry")?,
            emit_diagnostic_notices: f.bool("EmitDiagnosticNotices")?,
            connection_worker_pool_size: to_usize(
                "ConnectionWorkerPoolSize",
                f.uint("ConnectionWorkerPoolSize", 1000)?,
            )?,
            tunnel_pool_size: to_usize("TunnelPoolSize", f.uint("TunnelPoolSize", 32)?)?,
            establish_tunnel_timeout_seconds: f
                .uint("EstablishTunnelTimeoutSeconds", 86_400 * 365)?,
            session_id: f.string("SessionID")?,
            server_entry_signature_public_key: f.string("ServerEntrySignaturePublicKey")?,
            upstream_proxy_url: f.string("UpstreamProxyURL")?,
            device_region: f.string("DeviceRegion")?,
        };
        if let Some(li) = &config.listen_interface
            && li != "any"
            && !li.is_empty()
            && li.parse::<IpAddr>().is_err()
        {
            return Err(f.err("ListenInterface", format!("expected \"any\" or an IP address, got {li:?} (interface names are not supported yet)")));
        }
        let unknown = map
            .keys()
            .filter(|k| !KNOWN.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok((config, unknown))
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<(Config, Vec<String>), Error> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// The address the local proxies listen on.
    pub fn listen_ip(&self) -> IpAddr {
        match self.listen_interface.as_deref() {
            Some("any") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(ip) => ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"LocalHttpProxyPort":8080,"LocalSocksProxyPort":1080,
        "PropagationChannelId":"24BCA4EE20BEB92C","SponsorId":"721AE60D76700F5A"}"#;

    #[test]
    fn tunnel_core_readme_example_parses() {
        let (c, unknown) = Config::parse(MINIMAL, "client.json").unwrap();
        assert_eq!(c.local_socks_proxy_port, Some(1080));
        assert_eq!(c.client_version, "0");
        assert!(unknown.is_empty());
        assert_eq!(c.listen_ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn shipped_example_config_parses() {
        let text = include_str!("../example-config.json");
        let (c, unknown) = Config::parse(text, "example-config.json").unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(
            c.limit_tunnel_protocols,
            vec![TunnelProtocol::Ossh, TunnelProtocol::Ssh]
        );
    }

    #[test]
    fn unknown_keys_are_reported_not_rejected() {
        let text = r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A","NoSuchKey":1}"#;
        let (_, unknown) = Config::parse(text, "c.json").unwrap();
        assert_eq!(unknown, vec!["NoSuchKey".to_owned()]);
    }

    #[test]
    fn bad_values_name_the_key_and_file() {
        for (text, key) in [
            (
                r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A","LocalSocksProxyPort":"abc"}"#,
                "LocalSocksProxyPort",
            ),
            (
                r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A","LocalSocksProxyPort":70000}"#,
                "LocalSocksProxyPort",
            ),
            (
                r#"{"PropagationChannelId":"AB","SponsorId":"nothex"}"#,
                "SponsorId",
            ),
            (
                r#"{"SponsorId":"721AE60D76700F5A"}"#,
                "PropagationChannelId",
            ),
            (
                r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A","LimitTunnelProtocols":["NOPE"]}"#,
                "LimitTunnelProtocols",
            ),
            (
                r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A","ClientVersion":"1.2"}"#,
                "ClientVersion",
            ),
        ] {
            let e = Config::parse(text, "client.json").unwrap_err().to_string();
            assert!(e.starts_with("client.json: ") && e.contains(key), "{e}");
        }
        assert!(
            Config::parse("[1]", "x.json")
                .unwrap_err()
                .to_string()
                .contains("x.json")
        );
        assert!(Config::parse("{", "x.json").is_err());
    }
}
