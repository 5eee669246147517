//! `psiphond.config`: tunnel-core's JSON keys, validated once when loaded.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use psiphon_ssh::PrivateKey;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pem;

/// The tunnel protocols this server runs.
pub const SUPPORTED_PROTOCOLS: [&str; 2] = ["SSH", "OSSH"];

/// psiphond's SSH handshake deadline (OSSH preamble, SSH key exchange and auth).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bound on concurrent SSH handshakes.
pub const DEFAULT_MAX_CONCURRENT_SSH_HANDSHAKES: usize = 1024;

/// How often `domain_dest_bytes` are logged (tunnel-core: `DestinationBytesPeriodSeconds`,
/// default 5 minutes).
pub const DEFAULT_DESTINATION_BYTES_PERIOD: Duration = Duration::from_secs(300);

/// How often psiphond checks the psinet file for changes.
pub const DEFAULT_PSINET_RELOAD_PERIOD: Duration = Duration::from_secs(5);

/// Keys tunnel-core's config has (`psiphon/server/config.go`) that this server does not act on
/// yet; they are accepted silently, not reported as unknown.
const ACCEPTED_KEYS: &[&str] = &[
    "LogFileReopenRetries",
    "LogFileCreateMode",
    "LogDNSServerLoadMetrics",
    "SkipPanickingLogWriter",
    "MetricSocketPath",
    "LogDestinationPrefix",
    "HostProvider",
    "TunnelProtocolPassthroughAddresses",
    "LegacyPassthrough",
    "EnableGQUIC",
    "SSHBeginHandshakeTimeoutMilliseconds",
    "ShadowsocksKey",
    "MeekCookieEncryptionPrivateKey",
    "MeekObfuscatedKey",
    "MeekProhibitedHeaders",
    "MeekRequiredHeaders",
    "MeekRequiredHeadersNonStrict",
    "MeekServerCertificate",
    "MeekServerPrivateKey",
    "MeekProxyForwardedForHeaders",
    "MeekTurnAroundTimeoutMilliseconds",
    "MeekExtendedTurnAroundTimeoutMilliseconds",
    "MeekSkipExtendedTurnAroundThresholdBytes",
    "MeekMaxSessionStalenessMilliseconds",
    "MeekHTTPClientIOTimeoutMilliseconds",
    "MeekFrontedHTTPClientIOTimeoutMilliseconds",
    "MeekCachedResponseBufferSize",
    "MeekCachedResponsePoolBufferSize",
    "MeekCachedResponsePoolBufferCount",
    "MeekCachedResponsePoolBufferClientLimit",
    "UDPInterceptUdpgwServerAddress",
    "DNSResolverIPAddress",
    "LoadMonitorPeriodSeconds",
    "PeakUpstreamFailureRateMinimumSampleSize",
    "ProcessProfileOutputDirectory",
    "ProcessBlockProfileDurationSeconds",
    "ProcessCPUProfileDurationSeconds",
    "OSLConfigFilename",
    "RunPacketTunnel",
    "PacketTunnelEgressInterface",
    "PacketTunnelEnableDNSFlowTracking",
    "PacketTunnelDownstreamPacketQueueSize",
    "PacketTunnelSessionIdleExpirySeconds",
    "PacketTunnelSudoNetworkConfigCommands",
    "RunPacketManipulator",
    "PeriodicGarbageCollectionSeconds",
    "MetricWriterShutdownDelaySeconds",
    "StopEstablishTunnelsEstablishedClientThreshold",
    "AccessControlVerificationKeyRing",
    "TacticsConfigFilename",
    "TacticsRequestPublicKey",
    "TacticsRequestPrivateKey",
    "TacticsRequestObfuscatedKey",
    "BlocklistFilename",
    "BlocklistActive",
    "EnableSteeringIPs",
    "MeekServerRunInproxyBroker",
    "MeekServerInproxyBrokerOnly",
    "InproxyBrokerSessionPrivateKey",
    "InproxyBrokerObfuscationRootSecret",
    "InproxyBrokerServerEntrySignaturePublicKey",
    "InproxyBrokerAllowCommonASNMatching",
    "InproxyBrokerAllowBogonWebRTCConnections",
    "InproxyServerSessionPrivateKey",
    "InproxyServerObfuscationRootSecret",
    "IptablesAcceptRateLimitChainName",
    "IptablesAcceptRateLimitTunnelProtocolRateLimits",
    "DSLRelayServiceAddress",
    "DSLRelayCACertificatesFilename",
    "DSLRelayHostCertificateFilename",
    "DSLRelayHostKeyFilename",
    "ProxyProtocolHeaderMACKeys",
];

/// A validated server config. Secrets are kept out of `Debug`.
#[derive(Clone)]
pub struct Config {
    /// `LogLevel`: `debug`, `info`, `warning` or `error`.
    pub log_level: String,
    /// `LogFilename`: JSON lines go here; stderr when absent.
    pub log_filename: Option<PathBuf>,
    /// `LogFormat`: only `json` is written.
    pub log_format: String,
    /// `HostID`: names this host in every log line.
    pub host_id: String,
    /// `ServerIPAddress`: the address listeners bind to.
    pub server_ip_address: String,
    /// `TunnelProtocolPorts`: protocol name to port (0 picks a free port).
    pub tunnel_protocol_ports: BTreeMap<String, u16>,
    /// `SSHPrivateKey`, parsed.
    pub ssh_private_key: Arc<PrivateKey>,
    /// `SSHServerVersion`.
    pub ssh_server_version: String,
    /// `SSHUserName`.
    pub ssh_user_name: String,
    /// `SSHPassword`.
    pub ssh_password: String,
    /// `ObfuscatedSSHKey`: the OSSH keyword.
    pub obfuscated_ssh_key: String,
    /// `PsinetDatabaseFilename`.
    pub psinet_database_filename: Option<PathBuf>,
    /// `TrafficRulesFilename`.
    pub traffic_rules_filename: Option<PathBuf>,
    /// `GeoIPDatabaseFilenames`: MaxMind databases (City/Country and ISP), see [`crate::geoip`].
    pub geoip_database_filenames: Vec<String>,
    /// `AllowBogons`: let port forwards reach private and loopback addresses (tests only).
    pub allow_bogons: bool,
    /// `OwnEncodedServerEntries`: tag to encoded entry.
    pub own_encoded_server_entries: BTreeMap<String, String>,
    /// `DiscoveryValueHMACKey`: the HMAC key of the `classic` discovery strategy (its ASCII
    /// bytes, as configured).
    pub discovery_value_hmac_key: String,
    /// `ServerDiscoveryStrategy`: `consistent` (the default, also when empty) or `classic`.
    /// tunnel-core takes it from server tactics; here it is a config key.
    pub discovery_strategy: crate::discovery::Strategy,
    /// `WebServerSecret`.
    pub web_server_secret: String,
    /// `MaxConcurrentSSHHandshakes` (0 in the file means the default).
    pub max_concurrent_ssh_handshakes: usize,
    /// `SSHHandshakeTimeoutMilliseconds`: the deadline for the OSSH and SSH handshakes
    /// including auth (default 30 s).
    pub handshake_timeout: Duration,
    /// Drop a client after this long without a byte from it; not a JSON key (tunnel-core's
    /// `SSH_CONNECTION_READ_DEADLINE`, 5 minutes).
    pub read_deadline: Duration,
    /// How often the psinet, traffic rules and GeoIP files are checked for changes; not a
    /// JSON key (5 s).
    pub psinet_reload_period: Duration,
    /// `DestinationBytesPeriodSeconds`: how often `domain_dest_bytes` are logged (300 s).
    pub destination_bytes_period: Duration,
    /// Problems found while loading that are not fatal (unknown keys), for the caller to log.
    pub warnings: Vec<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host_id", &self.host_id)
            .field("tunnel_protocol_ports", &self.tunnel_protocol_ports)
            .field("allow_bogons", &self.allow_bogons)
            .field("discovery_strategy", &self.discovery_strategy)
            .finish_non_exhaustive()
    }
}

struct Fields<'a> {
    file: &'a str,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn string(&self, key: &str) -> Result<Option<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::value(self.file, key, "must be a string")),
        }
    }

    fn required(&self, key: &str) -> Result<String> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(Error::value(self.file, key, "is required")),
        }
    }

    fn bool(&self, key: &str) -> Result<bool> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Error::value(self.file, key, "must be true or false")),
        }
    }

    fn count(&self, key: &str) -> Result<Option<usize>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| Error::value(self.file, key, "must be a non-negative integer")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| Error::value(self.file, key, "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(Error::value(self.file, key, "must be a list of strings")),
        }
    }

    fn string_map(&self, key: &str) -> Result<BTreeMap<String, String>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_owned()))
                        .ok_or_else(|| Error::value(self.file, key, "values must be strings"))
                })
                .collect(),
            Some(_) => Err(Error::value(self.file, key, "must be an object")),
        }
    }

    fn path(&self, key: &str) -> Result<Option<PathBuf>> {
        Ok(self
            .string(key)?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from))
    }
}

/// Parses a PEM host key: PKCS#1 `RSA PRIVATE KEY` (what tunnel-core writes) or PKCS#8
/// `PRIVATE KEY`.
pub fn parse_host_key(pem_text: &str) -> std::result::Result<PrivateKey, String> {
    let (label, der) = pem::decode(pem_text).ok_or("not a PEM block")?;
    let key = match label.as_str() {
        "RSA PRIVATE KEY" => PrivateKey::rsa_from_pkcs1_der(&der),
        "PRIVATE KEY" => PrivateKey::from_pkcs8(&der),
        other => return Err(format!("unsupported PEM type {other:?}")),
    };
    key.map_err(|e| format!("invalid key: {e}"))
}

impl Config {
    /// Parses config text; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::ConfigFile`] if it is not a JSON object, [`Error::ConfigValue`] naming the key
    /// for an invalid or missing value, [`Error::UnsupportedProtocol`] for a protocol this
    /// server does not run.
    pub fn parse(text: &str, file: &str) -> Result<Config> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::ConfigFile {
            file: file.to_owned(),
            reason: format!("not valid JSON: {e}"),
        })?;
        let Value::Object(map) = value else {
            return Err(Error::ConfigFile {
                file: file.to_owned(),
                reason: "not a JSON object".to_owned(),
            });
        };
        let f = Fields { file, map: &map };

        let mut ports = BTreeMap::new();
        match map.get("TunnelProtocolPorts") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (name, port) in m {
                    if !SUPPORTED_PROTOCOLS.contains(&name.as_str()) {
                        return Err(Error::UnsupportedProtocol(name.clone()));
                    }
                    let port = port
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok())
                        .ok_or_else(|| {
                            Error::value(
                                file,
                                "TunnelProtocolPorts",
                                format!("bad port for {name}"),
                            )
                        })?;
                    ports.insert(name.clone(), port);
                }
            }
            Some(_) => {
                return Err(Error::value(
                    file,
                    "TunnelProtocolPorts",
                    "must be an object",
                ));
            }
        }

        let key_pem = f.required("SSHPrivateKey")?;
        let host_key = parse_host_key(&key_pem)
            .map_err(|reason| Error::value(file, "SSHPrivateKey", reason))?;
        let obfuscated_ssh_key = f.string("ObfuscatedSSHKey")?.unwrap_or_default();
        if ports.contains_key("OSSH") && obfuscated_ssh_key.is_empty() {
            return Err(Error::value(
                file,
                "ObfuscatedSSHKey",
                "is required for OSSH",
            ));
        }
        let log_level = f.string("LogLevel")?.unwrap_or_else(|| "info".to_owned());
        if !matches!(
            log_level.as_str(),
            "debug" | "info" | "warning" | "warn" | "error"
        ) {
            return Err(Error::value(
                file,
                "LogLevel",
                "must be debug, info, warning or error",
            ));
        }
        let log_format = f.string("LogFormat")?.unwrap_or_else(|| "json".to_owned());
        if !matches!(log_format.as_str(), "json" | "") {
            return Err(Error::value(
                file,
                "LogFormat",
                "only \"json\" is supported",
            ));
        }

        let config = Config {
            log_level,
            log_filename: f.path("LogFilename")?,
            log_format,
            host_id: f.string("HostID")?.unwrap_or_default(),
            server_ip_address: f.required("ServerIPAddress")?,
            tunnel_protocol_ports: ports,
            ssh_private_key: Arc::new(host_key),
            ssh_server_version: f
                .string("SSHServerVersion")?
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "SSH-2.0-Psiphon".to_owned()),
            ssh_user_name: f.required("SSHUserName")?,
            ssh_password: f.required("SSHPassword")?,
            obfuscated_ssh_key,
            psinet_database_filename: f.path("PsinetDatabaseFilename")?,
            traffic_rules_filename: f.path("TrafficRulesFilename")?,
            geoip_database_filenames: f.strings("GeoIPDatabaseFilenames")?,
            allow_bogons: f.bool("AllowBogons")?,
            own_encoded_server_entries: f.string_map("OwnEncodedServerEntries")?,
            discovery_value_hmac_key: f.string("DiscoveryValueHMACKey")?.unwrap_or_default(),
            discovery_strategy: {
                let name = f.string("ServerDiscoveryStrategy")?.unwrap_or_default();
                crate::discovery::Strategy::from_name(&name).ok_or_else(|| {
                    Error::value(
                        file,
                        "ServerDiscoveryStrategy",
                        format!("{name:?} is not \"consistent\" or \"classic\""),
                    )
                })?
            },
            web_server_secret: f.string("WebServerSecret")?.unwrap_or_default(),
            max_concurrent_ssh_handshakes: f
                .count("MaxConcurrentSSHHandshakes")?
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_MAX_CONCURRENT_SSH_HANDSHAKES),
            handshake_timeout: f
                .count("SSHHandshakeTimeoutMilliseconds")?
                .filter(|&ms| ms > 0)
                .map_or(DEFAULT_HANDSHAKE_TIMEOUT, |ms| {
                    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
                }),
            read_deadline: crate::deadline::SSH_CONNECTION_READ_DEADLINE,
            psinet_reload_period: DEFAULT_PSINET_RELOAD_PERIOD,
            destination_bytes_period: f
                .count("DestinationBytesPeriodSeconds")?
                .filter(|&s| s > 0)
                .map_or(DEFAULT_DESTINATION_BYTES_PERIOD, |s| {
                    Duration::from_secs(u64::try_from(s).unwrap_or(u64::MAX))
                }),
            warnings: unknown_keys(&map)
                .into_iter()
                .map(|k| format!("{file}: unknown config key {k:?} ignored"))
                .collect(),
        };
        Ok(config)
    }

    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`Error::Read`], or as [`Config::parse`].
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }
}

/// Keys this server neither reads nor knows to ignore.
fn unknown_keys(map: &Map<String, Value>) -> Vec<String> {
    const READ: &[&str] = &[
        "LogLevel",
        "LogFilename",
        "LogFormat",
        "HostID",
        "ServerIPAddress",
        "TunnelProtocolPorts",
        "SSHPrivateKey",
        "SSHUserName",
        "SSHPassword",
        "ObfuscatedSSHKey",
        "PsinetDatabaseFilename",
        "TrafficRulesFilename",
        "GeoIPDatabaseFilenames",
        "AllowBogons",
        "OwnEncodedServerEntries",
        "DiscoveryValueHMACKey",
        "ServerDiscoveryStrategy",
        "WebServerSecret",
        "MaxConcurrentSSHHandshakes",
        "SSHHandshakeTimeoutMilliseconds",
        "SSHServerVersion",
        "DestinationBytesPeriodSeconds",
    ];
    map.keys()
        .filter(|k| !READ.contains(&k.as_str()) && !ACCEPTED_KEYS.contains(&k.as_str()))
        .cloned()
        .collect()
}
