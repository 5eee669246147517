//! psiphond (the library) on 127.0.0.1 for end-to-end tests, set up as an operator would:
//! `generate_files` writes the config, traffic rules, psinet file and server entry; the test
//! adds its own config keys; the server listens on ports the OS picks, and the returned entry
//! carries those ports.
//!
//! Test fixture code: a setup step that cannot work panics with the reason, as a test would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use psiphon_protocol::ServerEntry;
use psiphon_server::{GenerateOptions, Server};
use serde_json::{Value, json};

/// A running psiphond and what a client needs to reach it.
#[derive(Debug)]
pub struct Psiphond {
    pub server: Server,
    /// The server entry, with the listening ports filled in.
    pub entry: ServerEntry,
    /// `LogFilename`: the JSON-lines event log.
    pub log: PathBuf,
    /// The config file the server was started from.
    pub config_path: PathBuf,
    /// Where every file of this server is (its config, rules, psinet file, log).
    pub dir: PathBuf,
}

/// What the test chooses; everything else is `generate_files`' default.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's address: in its entry, and (`ServerIPAddress`) where it listens.
    pub ip: String,
    /// Tunnel protocols to listen on ("OSSH", "SSH").
    pub protocols: Vec<String>,
    /// The psinet file's contents (sponsors, home pages, discovery servers).
    pub psinet: Value,
    /// Config keys set over the generated config (`AllowBogons` is already true).
    pub config: Value,
}

impl Options {
    /// OSSH on 127.0.0.1, one sponsor with a home page, no extra config.
    pub fn new(sponsor: &str) -> Options {
        Options {
            ip: "127.0.0.1".to_owned(),
            protocols: vec!["OSSH".to_owned()],
            psinet: json!({
                "sponsors": {sponsor: {"id": sponsor, "home_pages": {
                    "None": [{"region": "None", "url": "https://example.org/"}]}}},
                "default_sponsor_id": sponsor,
            }),
            config: json!({}),
        }
    }
}

/// The server entry field holding a protocol's port.
fn port_field(protocol: &str) -> &'static str {
    match protocol {
        "SSH" => "sshPort",
        "OSSH" => "sshObfuscatedPort",
        other => panic!("psiphon_testkit::psiphond: no port field known for {other}"),
    }
}

/// Generates a server into `dir` (created if missing) and starts it.
pub async fn start(dir: &Path, options: &Options) -> Psiphond {
    std::fs::create_dir_all(dir).unwrap();
    let log = dir.join("psiphond.log");
    let opts = GenerateOptions {
        ip_address: options.ip.clone(),
        // Placeholder ports for the entry; the listeners get OS-picked ones below.
        protocols: options
            .protocols
            .iter()
            .zip(40_000u16..)
            .map(|(p, port)| (p.clone(), port))
            .collect(),
        log_filename: Some(log.display().to_string()),
        config_path: dir.join("psiphond.config"),
        traffic_rules_path: dir.join("psiphond-traffic-rules.config"),
        psinet_path: dir.join("psinet.json"),
        server_entry_path: dir.join("server-entry.dat"),
    };
    let generated = psiphon_server::generate_files(&opts).unwrap();
    std::fs::write(&opts.psinet_path, options.psinet.to_string()).unwrap();
    let mut config = generated.config.clone();
    let m = config.as_object_mut().unwrap();
    m.insert("AllowBogons".into(), json!(true));
    m.insert(
        "PsinetDatabaseFilename".into(),
        json!(opts.psinet_path.display().to_string()),
    );
    let ports: serde_json::Map<String, Value> = options
        .protocols
        .iter()
        .map(|p| (p.clone(), json!(0)))
        .collect();
    m.insert("TunnelProtocolPorts".into(), Value::Object(ports));
    for (k, v) in options.config.as_object().into_iter().flatten() {
        m.insert(k.clone(), v.clone());
    }
    std::fs::write(&opts.config_path, config.to_string()).unwrap();
    let server = Server::start(psiphon_server::Config::read(&opts.config_path).unwrap())
        .await
        .unwrap();
    let entry = ServerEntry::decode(generated.encoded_server_entry.trim()).unwrap();
    let mut fields = entry.fields().clone();
    for p in &options.protocols {
        let port = server.local_addr(p).unwrap().port();
        fields.insert(port_field(p).into(), json!(port));
    }
    Psiphond {
        server,
        entry: ServerEntry::from_fields(fields).unwrap(),
        log,
        config_path: opts.config_path,
        dir: dir.to_owned(),
    }
}

impl Psiphond {
    /// Waits (at most 30 s, polling the file) until the log has an `event` line; panics with
    /// the log otherwise.
    pub async fn wait_for_event(&self, event: &str) {
        wait_for_event(&self.log, event).await;
    }

    /// The log's events, parsed (lines that are not JSON objects are left out).
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }
}

/// Waits (at most 30 s, polling the file) until `log` has an `event` line.
pub async fn wait_for_event(log: &Path, event: &str) {
    let want = format!("\"event_name\":\"{event}\"");
    let found = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if std::fs::read_to_string(log).is_ok_and(|t| t.contains(&want)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "no {event} in {}: {}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
