//! tunnel-core's client configuration (`psiphon/config.go` `type Config`), as ConsoleClient
//! reads it from its `-config` JSON file.
//!
//! Keys are Go field names. Like Go's `encoding/json`, a key matches a field exactly or, failing
//! that, ignoring ASCII case; `null` leaves the default. Keys this client does not handle (tunnel-core has
//! hundreds, most of them tactics parameters) are returned by [`Config::parse`] so that the
//! caller can emit a `Warning` notice naming each; they are never an error.

use std::fmt;
use std::path::{Path, PathBuf};

use psiphon_protocol::TunnelProtocol;
use psiphon_protocol::password::{is_hex_digits, is_session_id};
use serde_json::{Map, Value};

pub use psiphon_protocol::ErrorKind;

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a JSON object.
    #[error("{source_name}: not a JSON object: {message}")]
    Json {
        /// Where the text came from (a file name).
        source_name: String,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// A key has a value that is not acceptable.
    #[error("{source_name}: {key}: {message}")]
    Invalid {
        /// Where the text came from.
        source_name: String,
        /// The Go field name.
        key: &'static str,
        /// What was expected and what was found.
        message: String,
    },
    /// A required key is missing or empty.
    #[error("{source_name}: {key} is required")]
    Missing {
        /// Where the text came from.
        source_name: String,
        /// The Go field name.
        key: &'static str,
    },
}

impl ConfigError {
    /// Always [`ErrorKind::Config`]: the operator's file is at fault (or missing).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// `TargetAPIEncoding`: how API requests are encoded (default: packed CBOR, as tunnel-core's
/// clients send them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiEncoding {
    /// `json`.
    Json,
    /// `cbor`: packed CBOR requests, and a CBOR handshake response.
    #[default]
    Cbor,
}

/// The client configuration (the keys this client handles).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `PropagationChannelId` (required).
    pub propagation_channel_id: String,
    /// `SponsorId` (required).
    pub sponsor_id: String,
    /// `ClientVersion`: decimal digits, default `"0"`.
    pub client_version: String,
    /// `ClientPlatform`.
    pub client_platform: String,
    /// `ClientFeatures`.
    pub client_features: Vec<String>,
    /// `DataRootDirectory` (default: the current directory).
    pub data_root_directory: Option<PathBuf>,
    /// `LocalSocksProxyPort` (0: OS-assigned).
    pub local_socks_proxy_port: u16,
    /// `LocalHttpProxyPort` (0: OS-assigned).
    pub local_http_proxy_port: u16,
    /// `DisableLocalSocksProxy`.
    pub disable_local_socks_proxy: bool,
    /// `DisableLocalHTTPProxy`.
    pub disable_local_http_proxy: bool,
    /// `ListenInterface`: empty for 127.0.0.1, `any` for 0.0.0.0, or an interface name.
    pub listen_interface: String,
    /// `EgressRegion`.
    pub egress_region: String,
    /// `LimitTunnelProtocols` (empty: no limit).
    pub limit_tunnel_protocols: Vec<TunnelProtocol>,
    /// `TargetServerEntry`: an encoded server entry to use exclusively.
    pub target_server_entry: Option<String>,
    /// `TargetAPIEncoding`.
    pub target_api_encoding: Option<ApiEncoding>,
    /// `EmitDiagnosticNotices`.
    pub emit_diagnostic_notices: bool,
    /// `ConnectionWorkerPoolSize` (None: tunnel-core's default).
    pub connection_worker_pool_size: Option<u32>,
    /// `TunnelPoolSize` (None: the default, 1).
    pub tunnel_pool_size: Option<u32>,
    /// `EstablishTunnelTimeoutSeconds` (None: the default; 0: no timeout).
    pub establish_tunnel_timeout_seconds: Option<u64>,
    /// `NetworkLatencyMultiplier` (0: the default).
    pub network_latency_multiplier: f64,
    /// `ServerEntrySignaturePublicKey` (base64).
    pub server_entry_signature_public_key: Option<String>,
    /// `SessionID`: 32 hex digits (None: generated per run).
    pub session_id: Option<String>,
    /// `DeviceRegion`.
    pub device_region: String,
    /// `UpstreamProxyURL`: every connection the client makes goes through this proxy.
    pub upstream_proxy_url: Option<String>,
    /// `OutboundBindAddress` (ours, not tunnel-core's): the local IP address every connection
    /// the client makes leaves from (to servers, to the upstream proxy, for remote lists), for
    /// a host with several ways out. None: the system's choice.
    pub outbound_bind_address: Option<std::net::IpAddr>,
    /// `CustomHeaders` (or the older `UpstreamProxyCustomHeaders`): sent to an HTTP upstream
    /// proxy with each CONNECT.
    pub custom_headers: Vec<(String, String)>,
    /// `RemoteServerListURLs` (or the legacy `RemoteServerListUrl`), URLs decoded.
    pub remote_server_list_urls: Vec<TransferUrl>,
    /// `RemoteServerListSignaturePublicKey`: base64 DER SubjectPublicKeyInfo (RSA).
    pub remote_server_list_signature_public_key: Option<String>,
    /// `DisableRemoteServerListFetcher`.
    pub disable_remote_server_list_fetcher: bool,
    /// `FetchRemoteServerListRetryPeriodMilliseconds`.
    pub fetch_remote_server_list_retry_period_ms: Option<u64>,
    /// `NetworkID`: names the network for replay ("" = unknown).
    pub network_id: String,
    /// `StaggerConnectionWorkersMilliseconds`.
    pub stagger_connection_workers_ms: Option<u64>,
    /// `EstablishTunnelPausePeriodSeconds`.
    pub establish_tunnel_pause_period_seconds: Option<u64>,
    /// `EstablishTunnelServerAffinityGracePeriodMilliseconds`.
    pub establish_tunnel_server_affinity_grace_period_ms: Option<u64>,
}

/// A download location (tunnel-core's `TransferURL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferUrl {
    /// The URL (decoded from the config's base64).
    pub url: String,
    /// Used only from this fetch attempt on (0 = always).
    pub only_after_attempts: u32,
    /// `SkipVerify` (TLS; recorded for when https is supported).
    pub skip_verify: bool,
    /// `RequestHeaders`.
    pub request_headers: Vec<(String, String)>,
}

/// The keys handled, in Go's spelling.
const KEYS: [&str; 37] = [
    "PropagationChannelId",
    "SponsorId",
    "ClientVersion",
    "ClientPlatform",
    "ClientFeatures",
    "DataRootDirectory",
    "LocalSocksProxyPort",
    "LocalHttpProxyPort",
    "DisableLocalSocksProxy",
    "DisableLocalHTTPProxy",
    "ListenInterface",
    "EgressRegion",
    "LimitTunnelProtocols",
    "TargetServerEntry",
    "TargetAPIEncoding",
    "EmitDiagnosticNotices",
    "ConnectionWorkerPoolSize",
    "TunnelPoolSize",
    "EstablishTunnelTimeoutSeconds",
    "NetworkLatencyMultiplier",
    "ServerEntrySignaturePublicKey",
    "SessionID",
    "DeviceRegion",
    "UpstreamProxyURL",
    "OutboundBindAddress",
    "CustomHeaders",
    "UpstreamProxyCustomHeaders",
    "RemoteServerListURLs",
    "RemoteServerListUrl",
    "RemoteServerListSignaturePublicKey",
    "DisableRemoteServerListFetcher",
    "FetchRemoteServerListRetryPeriodMilliseconds",
    "NetworkID",
    "StaggerConnectionWorkersMilliseconds",
    "EstablishTunnelPausePeriodSeconds",
    "EstablishTunnelServerAffinityGracePeriodMilliseconds",
    // Accepted as a synonym list entry below; kept here so it is not reported unknown.
    "TunnelProtocol",
];

/// `RemoteServerListURLs`: a list of `{"URL": base64, "OnlyAfterAttempts": n, "SkipVerify":
/// bool, "RequestHeaders": {..}}`; at least one must have `OnlyAfterAttempts` 0.
fn transfer_urls(f: &Fields<'_>, key: &'static str) -> Result<Vec<TransferUrl>, ConfigError> {
    use base64::Engine as _;
    let Some(v) = f.get(key) else {
        return Ok(Vec::new());
    };
    let Some(items) = v.as_array() else {
        if v.is_null() {
            return Ok(Vec::new());
        }
        return Err(f.invalid(
            key,
            format!("expected a list of transfer URLs, got {}", describe(v)),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            return Err(f.invalid(
                key,
                format!("item {i}: expected an object, got {}", describe(item)),
            ));
        };
        let field = |name: &str| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let url_b64 = field("URL").and_then(Value::as_str).unwrap_or_default();
        let url = base64::engine::general_purpose::STANDARD
            .decode(url_b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                f.invalid(
                    key,
                    format!("item {i}: \"URL\" must be a base64-encoded URL"),
                )
            })?;
        let only_after_attempts = match field("OnlyAfterAttempts") {
            None | Some(Value::Null) => 0,
            Some(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    f.invalid(
                        key,
                        format!("item {i}: \"OnlyAfterAttempts\" must be a count"),
                    )
                })?,
        };
        let skip_verify = field("SkipVerify")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut request_headers = Vec::new();
        if let Some(h) = field("RequestHeaders").and_then(Value::as_object) {
            for (name, value) in h {
                let value = value.as_str().ok_or_else(|| {
                    f.invalid(key, format!("item {i}: header {name:?} must be a string"))
                })?;
                request_headers.push((name.clone(), value.to_owned()));
            }
        }
        out.push(TransferUrl {
            url,
            only_after_attempts,
            skip_verify,
            request_headers,
        });
    }
    if !out.is_empty() && !out.iter().any(|t| t.only_after_attempts == 0) {
        return Err(f.invalid(key, "at least one URL needs \"OnlyAfterAttempts\": 0"));
    }
    Ok(out)
}

/// Reads typed values out of the JSON object, with errors naming key and file.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    source: &'a str,
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

impl Fields<'_> {
    /// Go's match: the exact key, else the last key equal ignoring ASCII case.
    fn get(&self, key: &str) -> Option<&Value> {
        let v = self.map.get(key).or_else(|| {
            self.map
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
                .next_back()
        })?;
        (!v.is_null()).then_some(v)
    }

    fn invalid(&self, key: &'static str, message: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            source_name: self.source.to_owned(),
            key,
            message: message.to_string(),
        }
    }

    fn string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.invalid(key, format!("expected a string, got {}", describe(v)))),
        }
    }

    fn bool(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => {
                Err(self.invalid(key, format!("expected true or false, got {}", describe(v))))
            }
        }
    }

    fn strings(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    v => Err(self.invalid(
                        key,
                        format!("expected a list of strings, got {}", describe(v)),
                    )),
                })
                .collect(),
            Some(v) => Err(self.invalid(
                key,
                format!("expected a list of strings, got {}", describe(v)),
            )),
        }
    }

    fn port(&self, key: &'static str) -> Result<u16, ConfigError> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        format!("expected a port number 0-65535, got {}", describe(v)),
                    )
                }),
        }
    }

    fn uint<T: TryFrom<u64>>(&self, key: &'static str, min: u64) -> Result<Option<T>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n >= min)
                .and_then(|n| T::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.invalid(
                        key,
                        format!(
                            "expected a whole number of at least {min}, got {}",
                            describe(v)
                        ),
                    )
                }),
        }
    }
}

impl Config {
    /// The IP address the local proxies listen on, as tunnel-core picks it: `127.0.0.1` when
    /// `ListenInterface` is empty, `0.0.0.0` for `any`. For an interface name tunnel-core uses
    /// the interface's first IPv4 address; that lookup is not done here, so this returns
    /// `None` and the caller must resolve [`Config::listen_interface`] itself.
    pub fn listen_ip(&self) -> Option<std::net::IpAddr> {
        match self.listen_interface.as_str() {
            "" => Some(std::net::Ipv4Addr::LOCALHOST.into()),
            "any" => Some(std::net::Ipv4Addr::UNSPECIFIED.into()),
            _ => None,
        }
    }

    /// Parses a config file's text. `source` names it in errors (e.g. `"client.json"`).
    /// Returns the config and the keys it does not handle, in file order.
    pub fn parse(text: &str, source: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            source_name: source.to_owned(),
            message: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(ConfigError::Json {
                source_name: source.to_owned(),
                message: "the top level is not an object".into(),
            });
        };
        let f = Fields { map: &map, source };

        let required = |key: &'static str| -> Result<String, ConfigError> {
            match f.string(key)? {
                Some(s) if !s.is_empty() => Ok(s),
                _ => Err(ConfigError::Missing {
                    source_name: source.to_owned(),
                    key,
                }),
            }
        };
        let propagation_channel_id = required("PropagationChannelId")?;
        let sponsor_id = required("SponsorId")?;

        let client_version = f.string("ClientVersion")?.unwrap_or_default();
        let client_version = if client_version.is_empty() {
            "0".to_owned()
        } else if client_version.bytes().all(|c| c.is_ascii_digit()) {
            client_version
        } else {
            return Err(f.invalid(
                "ClientVersion",
                format!("expected a string of decimal digits, got {client_version:?}"),
            ));
        };

        let mut protocol_names = f.strings("LimitTunnelProtocols")?;
        // The legacy single `TunnelProtocol` key limits to that one protocol.
        if protocol_names.is_empty()
            && let Some(p) = f.string("TunnelProtocol")?.filter(|p| !p.is_empty())
        {
            protocol_names.push(p);
        }
        let limit_tunnel_protocols = protocol_names
            .iter()
            .map(|name| {
                TunnelProtocol::from_name(name).ok_or_else(|| {
                    f.invalid(
                        "LimitTunnelProtocols",
                        format!("unknown tunnel protocol {name:?}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let target_api_encoding = match f.string("TargetAPIEncoding")?.as_deref() {
            None | Some("") => None,
            Some("json") => Some(ApiEncoding::Json),
            Some("cbor") => Some(ApiEncoding::Cbor),
            Some(other) => {
                return Err(f.invalid(
                    "TargetAPIEncoding",
                    format!("expected \"json\" or \"cbor\", got {other:?}"),
                ));
            }
        };

        let network_latency_multiplier = match f.get("NetworkLatencyMultiplier") {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .filter(|m| *m == 0.0 || *m >= 1.0)
                .ok_or_else(|| {
                    f.invalid(
                        "NetworkLatencyMultiplier",
                        format!("expected 0 or a number >= 1, got {}", describe(v)),
                    )
                })?,
        };

        let session_id = f.string("SessionID")?.filter(|s| !s.is_empty());
        if let Some(s) = &session_id
            && !is_session_id(s)
        {
            return Err(f.invalid("SessionID", format!("expected 32 hex digits, got {s:?}")));
        }

        let target_server_entry = f.string("TargetServerEntry")?.filter(|s| !s.is_empty());
        if let Some(e) = &target_server_entry
            && !is_hex_digits(e)
        {
            return Err(f.invalid("TargetServerEntry", "expected a hex-encoded server entry"));
        }

        let upstream_proxy_url = f.string("UpstreamProxyURL")?.filter(|s| !s.is_empty());
        if let Some(u) = &upstream_proxy_url {
            psiphon_transport::UpstreamProxyUrl::parse(u)
                .map_err(|e| f.invalid("UpstreamProxyURL", e))?;
        }
        let outbound_bind_address = match f.string("OutboundBindAddress")? {
            Some(s) if !s.is_empty() => Some(s.parse().map_err(|_| {
                f.invalid(
                    "OutboundBindAddress",
                    format!("expected an IP address, got {s:?}"),
                )
            })?),
            _ => None,
        };
        let custom_headers = match f.get("CustomHeaders") {
            Some(v) if !v.is_null() => headers(&f, "CustomHeaders", v)?,
            _ => match f.get("UpstreamProxyCustomHeaders") {
                Some(v) if !v.is_null() => headers(&f, "UpstreamProxyCustomHeaders", v)?,
                _ => Vec::new(),
            },
        };

        let remote_server_list_urls = transfer_urls(&f, "RemoteServerListURLs")?;
        let remote_server_list_urls = if remote_server_list_urls.is_empty() {
            match f.string("RemoteServerListUrl")?.filter(|s| !s.is_empty()) {
                Some(url) => vec![TransferUrl {
                    url,
                    only_after_attempts: 0,
                    skip_verify: false,
                    request_headers: Vec::new(),
                }],
                None => Vec::new(),
            }
        } else {
            remote_server_list_urls
        };
        let remote_server_list_signature_public_key = f
            .string("RemoteServerListSignaturePublicKey")?
            .filter(|s| !s.is_empty());
        if !remote_server_list_urls.is_empty() && remote_server_list_signature_public_key.is_none()
        {
            return Err(ConfigError::Missing {
                source_name: source.to_owned(),
                key: "RemoteServerListSignaturePublicKey",
            });
        }

        let config = Config {
            propagation_channel_id,
            sponsor_id,
            client_version,
            client_platform: f.string("ClientPlatform")?.unwrap_or_default(),
            client_features: f.strings("ClientFeatures")?,
            data_root_directory: f
                .string("DataRootDirectory")?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            local_socks_proxy_port: f.port("LocalSocksProxyPort")?,
            local_http_proxy_port: f.port("LocalHttpProxyPort")?,
            disable_local_socks_proxy: f.bool("DisableLocalSocksProxy")?,
            disable_local_http_proxy: f.bool("DisableLocalHTTPProxy")?,
            listen_interface: f.string("ListenInterface")?.unwrap_or_default(),
            egress_region: f.string("EgressRegion")?.unwrap_or_default(),
            limit_tunnel_protocols,
            target_server_entry,
            target_api_encoding,
            emit_diagnostic_notices: f.bool("EmitDiagnosticNotices")?,
            connection_worker_pool_size: f.uint("ConnectionWorkerPoolSize", 1)?,
            tunnel_pool_size: f.uint("TunnelPoolSize", 1)?,
            establish_tunnel_timeout_seconds: f.uint("EstablishTunnelTimeoutSeconds", 0)?,
            network_latency_multiplier,
            server_entry_signature_public_key: f
                .string("ServerEntrySignaturePublicKey")?
                .filter(|s| !s.is_empty()),
            session_id,
            device_region: f.string("DeviceRegion")?.unwrap_or_default(),
            upstream_proxy_url,
            outbound_bind_address,
            custom_headers,
            remote_server_list_urls,
            remote_server_list_signature_public_key,
            disable_remote_server_list_fetcher: f.bool("DisableRemoteServerListFetcher")?,
            fetch_remote_server_list_retry_period_ms: f
                .uint("FetchRemoteServerListRetryPeriodMilliseconds", 1)?,
            network_id: f.string("NetworkID")?.unwrap_or_default(),
            stagger_connection_workers_ms: f.uint("StaggerConnectionWorkersMilliseconds", 0)?,
            establish_tunnel_pause_period_seconds: f
                .uint("EstablishTunnelPausePeriodSeconds", 0)?,
            establish_tunnel_server_affinity_grace_period_ms: f
                .uint("EstablishTunnelServerAffinityGracePeriodMilliseconds", 0)?,
        };

        let unknown = map
            .keys()
            .filter(|k| !KEYS.iter().any(|known| known.eq_ignore_ascii_case(k)))
            .cloned()
            .collect();
        Ok((config, unknown))
    }

    /// Reads and parses a config file; errors name the file.
    pub fn read(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }
}

/// `UpstreamProxyURL` must be `http://`, `socks4a://` or `socks5://` with a host and port.
/// `CustomHeaders`: `{"Name": ["value", ...]}` (tunnel-core's `http.Header` form; a plain
/// string value is accepted too), checked for characters that would break the request.
fn headers(
    f: &Fields<'_>,
    key: &'static str,
    v: &Value,
) -> Result<Vec<(String, String)>, ConfigError> {
    let obj = v.as_object().ok_or_else(|| {
        f.invalid(
            key,
            format!("expected an object of header names, got {}", describe(v)),
        )
    })?;
    let mut out = Vec::new();
    for (name, values) in obj {
        match values {
            Value::String(s) => out.push((name.clone(), s.clone())),
            Value::Array(items) => {
                for item in items {
                    let s = item.as_str().ok_or_else(|| {
                        f.invalid(key, format!("header {name:?}: values must be strings"))
                    })?;
                    out.push((name.clone(), s.to_owned()));
                }
            }
            other => {
                return Err(f.invalid(
                    key,
                    format!(
                        "header {name:?}: expected a list of strings, got {}",
                        describe(other)
                    ),
                ));
            }
        }
    }
    psiphon_transport::check_custom_headers(&out).map_err(|e| f.invalid(key, e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const MIN: &str =
        r#"{"PropagationChannelId":"24BCA4EE20BEB92C","SponsorId":"721AE60D76700F5A"}"#;

    fn with(extra: &str) -> String {
        format!(
            "{{\"PropagationChannelId\":\"24BCA4EE20BEB92C\",\"SponsorId\":\"721AE60D76700F5A\",{extra}}}"
        )
    }

    fn err(extra: &str) -> String {
        Config::parse(&with(extra), "client.json")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../example-config.json");
        let (c, unknown) = Config::parse(text, "example-config.json").unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(c.propagation_channel_id, "24BCA4EE20BEB92C");
        assert_eq!(c.sponsor_id, "721AE60D76700F5A");
        assert_eq!(
            (c.local_http_proxy_port, c.local_socks_proxy_port),
            (8080, 1080)
        );
        assert!(c.target_server_entry.is_some());
    }

    #[test]
    fn remote_server_list_urls() {
        // The legacy singular key is promoted.
        let (c, _) = Config::parse(
            &with(r#""RemoteServerListUrl":"http://h/l","RemoteServerListSignaturePublicKey":"K""#),
            "client.json",
        )
        .unwrap();
        assert_eq!(c.remote_server_list_urls[0].url, "http://h/l");
        for (extra, needle) in [
            (
                r#""RemoteServerListUrl":"http://h/l""#,
                "RemoteServerListSignaturePublicKey",
            ),
            (
                r#""RemoteServerListURLs":"x","RemoteServerListSignaturePublicKey":"K""#,
                "RemoteServerListURLs",
            ),
            (
                r#""RemoteServerListURLs":[{"URL":"!!"}],"RemoteServerListSignaturePublicKey":"K""#,
                "base64",
            ),
            (
                r#""RemoteServerListURLs":[{"URL":"aA==","OnlyAfterAttempts":1}],"RemoteServerListSignaturePublicKey":"K""#,
                "OnlyAfterAttempts",
            ),
        ] {
            let e = err(extra);
            assert!(
                e.contains(needle) && e.contains("client.json"),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn defaults() {
        let (c, unknown) = Config::parse(MIN, "client.json").unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.client_version, "0");
        assert_eq!((c.local_socks_proxy_port, c.local_http_proxy_port), (0, 0));
        assert!(c.limit_tunnel_protocols.is_empty());
        assert_eq!(c.session_id, None);
        assert_eq!(c.network_latency_multiplier, 0.0);
        assert_eq!(c.listen_ip(), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn all_handled_keys() {
        let (c, unknown) = Config::parse(
            &with(concat!(
                r#""ClientVersion":"123","ClientPlatform":"Linux","ClientFeatures":["a"],"#,
                r#""DataRootDirectory":"/tmp/x","LocalSocksProxyPort":1080,"LocalHttpProxyPort":8080,"#,
                r#""DisableLocalSocksProxy":true,"DisableLocalHTTPProxy":true,"ListenInterface":"any","#,
                r#""EgressRegion":"CA","LimitTunnelProtocols":["OSSH","SSH"],"TargetAPIEncoding":"cbor","#,
                r#""EmitDiagnosticNotices":true,"ConnectionWorkerPoolSize":4,"TunnelPoolSize":2,"#,
                r#""EstablishTunnelTimeoutSeconds":0,"NetworkLatencyMultiplier":1.5,"#,
                r#""ServerEntrySignaturePublicKey":"AAAA","SessionID":"0123456789abcdef0123456789ABCDEF","#,
                r#""DeviceRegion":"US","UpstreamProxyURL":"socks5://u:p@127.0.0.1:9050","#,
                r#""OutboundBindAddress":"192.0.2.7","#,
                r#""RemoteServerListURLs":[{"URL":"aHR0cDovLzEyNy4wLjAuMTo4MC9saXN0","RequestHeaders":{"X-A":"b"}},"#,
                r#"{"URL":"aHR0cDovLzEyNy4wLjAuMjo4MC9saXN0","OnlyAfterAttempts":2}],"#,
                r#""RemoteServerListSignaturePublicKey":"AAAA","DisableRemoteServerListFetcher":true,"#,
                r#""FetchRemoteServerListRetryPeriodMilliseconds":500,"SomethingNew":1"#
            )),
            "client.json",
        )
        .unwrap();
        assert_eq!(unknown, ["SomethingNew"]);
        assert_eq!(c.remote_server_list_urls.len(), 2);
        assert_eq!(c.remote_server_list_urls[0].url, "http://127.0.0.1:80/list");
        assert_eq!(
            c.remote_server_list_urls[0].request_headers,
            [("X-A".to_owned(), "b".to_owned())]
        );
        assert_eq!(c.remote_server_list_urls[1].only_after_attempts, 2);
        assert!(c.disable_remote_server_list_fetcher);
        assert_eq!(c.fetch_remote_server_list_retry_period_ms, Some(500));
        assert_eq!(c.client_version, "123");
        assert_eq!(
            c.limit_tunnel_protocols,
            [TunnelProtocol::Ossh, TunnelProtocol::Ssh]
        );
        assert_eq!(c.target_api_encoding, Some(ApiEncoding::Cbor));
        assert_eq!(c.establish_tunnel_timeout_seconds, Some(0));
        assert_eq!(c.tunnel_pool_size, Some(2));
        assert!(
            c.disable_local_http_proxy && c.disable_local_socks_proxy && c.emit_diagnostic_notices
        );
        assert_eq!(c.data_root_directory.as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(c.listen_ip(), Some("0.0.0.0".parse().unwrap()));
        assert_eq!(c.outbound_bind_address, Some("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn keys_match_ignoring_case_like_go() {
        let (c, unknown) = Config::parse(&with(r#""localsocksproxyport":1081"#), "c.json").unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.local_socks_proxy_port, 1081);
    }

    #[test]
    fn errors_name_file_and_key() {
        assert_eq!(
            err(r#""LocalSocksProxyPort":"abc""#),
            r#"client.json: LocalSocksProxyPort: expected a port number 0-65535, got "abc""#
        );
        assert_eq!(
            err(r#""LocalHttpProxyPort":65536"#),
            "client.json: LocalHttpProxyPort: expected a port number 0-65535, got 65536"
        );
        assert_eq!(
            err(r#""LimitTunnelProtocols":["OSSH","FOO"]"#),
            r#"client.json: LimitTunnelProtocols: unknown tunnel protocol "FOO""#
        );
        assert_eq!(
            err(r#""ClientVersion":"1.2""#),
            r#"client.json: ClientVersion: expected a string of decimal digits, got "1.2""#
        );
        assert!(err(r#""SessionID":"xyz""#).starts_with("client.json: SessionID:"));
        assert!(err(r#""TargetAPIEncoding":"xml""#).starts_with("client.json: TargetAPIEncoding:"));
        assert!(
            err(r#""UpstreamProxyURL":"ftp://h:1""#).starts_with("client.json: UpstreamProxyURL:")
        );
        assert!(
            err(r#""UpstreamProxyURL":"http://host""#)
                .starts_with("client.json: UpstreamProxyURL:")
        );
        assert_eq!(
            err(r#""OutboundBindAddress":"eth0""#),
            r#"client.json: OutboundBindAddress: expected an IP address, got "eth0""#
        );
        assert!(err(r#""TunnelPoolSize":0"#).starts_with("client.json: TunnelPoolSize:"));
        assert!(
            err(r#""EmitDiagnosticNotices":"yes""#)
                .starts_with("client.json: EmitDiagnosticNotices:")
        );
        assert_eq!(
            Config::parse(r#"{"SponsorId":"x"}"#, "client.json")
                .unwrap_err()
                .to_string(),
            "client.json: PropagationChannelId is required"
        );
        let e = Config::parse("[1]", "client.json").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            Config::parse("{", "client.json")
                .unwrap_err()
                .to_string()
                .starts_with("client.json: ")
        );
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.json");
        assert!(Config::read(&path).is_err());
        std::fs::write(&path, with(r#""LocalSocksProxyPort":-1"#)).unwrap();
        let e = Config::read(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: LocalSocksProxyPort:", path.display())),
            "{e}"
        );
    }
}
