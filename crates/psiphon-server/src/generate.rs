//! `psiphond generate`: a new server's config, traffic rules, psinet database and server entry.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use psiphon_protocol::ServerEntry;
use psiphon_protocol::tunnel_protocol::CAPABILITY_SSH_API_REQUESTS;
use psiphon_ssh::PrivateKey;
use serde_json::{Map, Value, json};

use crate::config::SUPPORTED_PROTOCOLS;
use crate::error::{Error, Result};
use crate::{pem, psinet, traffic_rules};

/// What to generate (tunnel-core's `generate` flags).
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// `-ipaddress`: the address written into the server entry and the config.
    pub ip_address: String,
    /// `-protocol PROTO:PORT`, in order.
    pub protocols: Vec<(String, u16)>,
    /// `-logFilename`: written into the config as `LogFilename` when set.
    pub log_filename: Option<String>,
    /// `-config`.
    pub config_path: PathBuf,
    /// `-trafficRules`.
    pub traffic_rules_path: PathBuf,
    /// `-psinet` (our addition: tunnel-core leaves the psinet database to the operator).
    pub psinet_path: PathBuf,
    /// `-serverEntry`.
    pub server_entry_path: PathBuf,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            ip_address: "127.0.0.1".to_owned(),
            protocols: Vec::new(),
            log_filename: None,
            config_path: PathBuf::from("psiphond.config"),
            traffic_rules_path: PathBuf::from("psiphond-traffic-rules.config"),
            psinet_path: PathBuf::from("psinet.json"),
            server_entry_path: PathBuf::from("server-entry.dat"),
        }
    }
}

/// The generated files' contents.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `psiphond.config`.
    pub config: Value,
    /// `psiphond-traffic-rules.config`.
    pub traffic_rules: Value,
    /// `psinet.json`.
    pub psinet: Value,
    /// `server-entry.dat`: the encoded server entry.
    pub encoded_server_entry: String,
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Generate {
        what: "random bytes",
        reason: "system random source failed".to_owned(),
    })?;
    Ok(b)
}

fn random_hex(n: usize) -> Result<String> {
    random_bytes(n).map(hex::encode)
}

/// Parses a `-protocol` value `PROTO:PORT`.
///
/// # Errors
/// [`Error::Usage`] for a malformed value, [`Error::UnsupportedProtocol`] for a protocol
/// other than SSH and OSSH.
pub fn parse_protocol_flag(value: &str) -> Result<(String, u16)> {
    let (name, port) = value
        .rsplit_once(':')
        .ok_or_else(|| Error::Usage(format!("-protocol {value:?}: expected PROTOCOL:PORT")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| Error::Usage(format!("-protocol {value:?}: invalid port")))?;
    if !SUPPORTED_PROTOCOLS.contains(&name) {
        return Err(Error::UnsupportedProtocol(name.to_owned()));
    }
    Ok((name.to_owned(), port))
}

/// Makes new keys and secrets and the four documents.
///
/// The host key is written as PKCS#8 (`-----BEGIN PRIVATE KEY-----`): aws-lc-rs exports no
/// PKCS#1. Go's `ssh.ParsePrivateKey` (tunnel-core) reads both forms, as does this server.
///
/// # Errors
/// [`Error::UnsupportedProtocol`], [`Error::Usage`] for a repeated protocol, or
/// [`Error::Generate`] when key generation fails.
pub fn generate(opts: &GenerateOptions) -> Result<Generated> {
    let mut ports = Map::new();
    for (name, port) in &opts.protocols {
        if !SUPPORTED_PROTOCOLS.contains(&name.as_str()) {
            return Err(Error::UnsupportedProtocol(name.clone()));
        }
        if ports.insert(name.clone(), json!(port)).is_some() {
            return Err(Error::Usage(format!("protocol {name} given twice")));
        }
    }
    let key = PrivateKey::generate_rsa(2048).map_err(|e| Error::Generate {
        what: "SSH host key",
        reason: e.to_string(),
    })?;
    let pkcs8 = key.to_pkcs8().map_err(|e| Error::Generate {
        what: "SSH host key",
        reason: e.to_string(),
    })?;
    let key_pem = pem::encode("PRIVATE KEY", &pkcs8);
    let host_key_b64 = key.public_key().to_base64();
    let user = format!("psiphon_{}", random_hex(8)?);
    let password = random_hex(32)?;
    let obfuscated_key = random_hex(32)?;
    let web_server_secret = random_hex(32)?;
    let discovery_key = STANDARD.encode(random_bytes(32)?);
    let tag = STANDARD.encode(random_bytes(32)?);

    // Fields in the order of Go's ServerEntry struct.
    let mut entry = Map::new();
    let mut put = |k: &str, v: Value| {
        entry.insert(k.to_owned(), v);
    };
    put("tag", json!(tag));
    put("ipAddress", json!(opts.ip_address));
    put("webServerSecret", json!(web_server_secret));
    let port_of = |name: &str| opts.protocols.iter().find(|(n, _)| n == name).map(|p| p.1);
    if let Some(p) = port_of("SSH") {
        put("sshPort", json!(p));
    }
    put("sshUsername", json!(user));
    put("sshPassword", json!(password));
    put("sshHostKey", json!(host_key_b64));
    if let Some(p) = port_of("OSSH") {
        put("sshObfuscatedPort", json!(p));
    }
    put("sshObfuscatedKey", json!(obfuscated_key));
    let mut capabilities = vec![json!(CAPABILITY_SSH_API_REQUESTS)];
    for (name, _) in &opts.protocols {
        let cap = psiphon_protocol::TunnelProtocol::from_name(name)
            .map_or(name.as_str(), |p| p.capability());
        capabilities.push(json!(cap));
    }
    put("capabilities", Value::Array(capabilities));
    put("region", json!(""));
    put("configurationVersion", json!(1));
    let entry = ServerEntry::from_fields(entry).map_err(|e| Error::Generate {
        what: "server entry",
        reason: e.to_string(),
    })?;
    let encoded = entry.encode();

    let mut config = Map::new();
    let mut put = |k: &str, v: Value| {
        config.insert(k.to_owned(), v);
    };
    put("LogLevel", json!("info"));
    put("LogFormat", json!("json"));
    if let Some(f) = &opts.log_filename {
        put("LogFilename", json!(f));
    }
    put("HostID", json!("example-host-id"));
    put("ServerIPAddress", json!(opts.ip_address));
    put("DiscoveryValueHMACKey", json!(discovery_key));
    put("GeoIPDatabaseFilenames", json!([]));
    put("PsinetDatabaseFilename", json!(path_str(&opts.psinet_path)));
    put(
        "TrafficRulesFilename",
        json!(path_str(&opts.traffic_rules_path)),
    );
    put("TunnelProtocolPorts", Value::Object(ports));
    put("SSHPrivateKey", json!(key_pem));
    put("SSHServerVersion", json!("SSH-2.0-Psiphon"));
    put("SSHUserName", json!(user));
    put("SSHPassword", json!(password));
    put("ObfuscatedSSHKey", json!(obfuscated_key));
    put("WebServerSecret", json!(web_server_secret));
    put("DNSResolverIPAddress", json!("8.8.8.8"));
    put("UDPInterceptUdpgwServerAddress", json!("127.0.0.1:7300"));
    put("AllowBogons", json!(false));
    put("OwnEncodedServerEntries", json!({ tag: encoded }));

    Ok(Generated {
        config: Value::Object(config),
        traffic_rules: traffic_rules::generated_rules_json(),
        psinet: psinet::generated_database_json(),
        encoded_server_entry: encoded,
    })
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Writes `contents` to a new or truncated file with mode 0600.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    file.write_all(contents).map_err(err)?;
    // An existing file keeps its mode on open; make sure it is private.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(err)
}

fn pretty(v: &Value) -> Result<Vec<u8>> {
    let mut text = serde_json::to_vec_pretty(v).map_err(|_| Error::Internal("JSON encoding"))?;
    text.push(b'\n');
    Ok(text)
}

/// [`generate`] and write the four files, each with mode 0600.
///
/// # Errors
/// As [`generate`], or [`Error::Write`].
pub fn generate_files(opts: &GenerateOptions) -> Result<Generated> {
    let generated = generate(opts)?;
    write_private(&opts.config_path, &pretty(&generated.config)?)?;
    write_private(&opts.traffic_rules_path, &pretty(&generated.traffic_rules)?)?;
    write_private(&opts.psinet_path, &pretty(&generated.psinet)?)?;
    write_private(
        &opts.server_entry_path,
        generated.encoded_server_entry.as_bytes(),
    )?;
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn generated_config_loads() {
        let opts = GenerateOptions {
            protocols: vec![("OSSH".to_owned(), 9999), ("SSH".to_owned(), 2222)],
            ..GenerateOptions::default()
        };
        let g = generate(&opts).unwrap();
        let config = Config::parse(&g.config.to_string(), "generated").unwrap();
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(config.tunnel_protocol_ports.get("OSSH"), Some(&9999));
        let entry = ServerEntry::decode(&g.encoded_server_entry).unwrap();
        assert_eq!(entry.ssh_obfuscated_port(), Some(9999));
        assert_eq!(entry.ssh_port(), Some(2222));
        assert_eq!(
            entry.ssh_host_key(),
            Some(config.ssh_private_key.public_key().to_base64().as_str())
        );
        assert!(matches!(
            parse_protocol_flag("QUIC-OSSH:443"),
            Err(Error::UnsupportedProtocol(_))
        ));
        assert!(parse_protocol_flag("OSSH").is_err());
        assert_eq!(
            parse_protocol_flag("OSSH:1").unwrap(),
            ("OSSH".to_owned(), 1)
        );
    }

    #[test]
    fn discovery_config_keys() {
        use crate::discovery::Strategy;
        let g = generate(&GenerateOptions::default()).unwrap();
        let config = Config::parse(&g.config.to_string(), "generated").unwrap();
        // generate writes a 32-byte base64 HMAC key; the strategy defaults to consistent.
        assert_eq!(config.discovery_value_hmac_key.len(), 44);
        assert_eq!(config.discovery_strategy, Strategy::Consistent);
        for (value, strategy) in [
            ("", Strategy::Consistent),
            ("consistent", Strategy::Consistent),
            ("classic", Strategy::Classic),
        ] {
            let mut c = g.config.clone();
            c["ServerDiscoveryStrategy"] = serde_json::json!(value);
            let config = Config::parse(&c.to_string(), "generated").unwrap();
            assert_eq!(config.discovery_strategy, strategy);
            assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        }
        let mut c = g.config.clone();
        c["ServerDiscoveryStrategy"] = serde_json::json!("random");
        let e = Config::parse(&c.to_string(), "/etc/psiphond.config").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/etc/psiphond.config: ServerDiscoveryStrategy: \"random\""),
            "{e}"
        );
    }
}
