//! `psinet quickstart`: a throwaway Psiphon network on loopback, in one process.
//!
//! Two psiphond servers (each with SSH and OSSH listeners) are generated as `psiphond generate`
//! would, with a sponsor whose home page is a small local web server; the client gets both
//! server entries and serves SOCKS and HTTP proxies on 127.0.0.1. Because the network lives on
//! loopback, the servers allow forwards to loopback addresses (`AllowBogons`), so the home page
//! is reachable through the tunnel even on a machine without Internet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use psiphon_client::app::{self, Client};
use psiphon_client::notice::Notices;
use psiphon_protocol::ServerEntry;
use psiphon_server::{GenerateOptions, Server};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::origin::Origin;

/// Why the quickstart network could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A server could not be generated or started.
    #[error("server {index}: {source}")]
    Server {
        /// Which server.
        index: usize,
        /// The psiphond error.
        #[source]
        source: psiphon_server::Error,
    },
    /// The client could not start.
    #[error("client: {0}")]
    Client(String),
    /// No tunnel came up in time.
    #[error("no tunnel came up within {0:?}; see the client's notices in {1}")]
    NoTunnel(Duration, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A running quickstart network.
#[derive(Debug)]
pub struct Network {
    /// The client's SOCKS proxy (SOCKS4a/SOCKS5).
    pub socks: SocketAddr,
    /// The client's HTTP proxy.
    pub http: SocketAddr,
    /// The sponsor's home page on the local origin.
    pub home_page: String,
    /// Where the files are.
    pub dir: PathBuf,
    /// The client's notices (JSON lines).
    pub notices_path: PathBuf,
    servers: Vec<Server>,
    server_configs: Vec<PathBuf>,
    client: Client,
    _origin: Origin,
    _temp: Option<tempfile::TempDir>,
}

/// Upper-case hex of `bytes` random bytes (sponsor and propagation channel ids).
fn random_hex_upper(bytes: usize) -> Result<String, Error> {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| Error::Client("system random source failed".to_owned()))?;
    Ok(b.iter().map(|x| format!("{x:02X}")).collect())
}

async fn start_server(
    index: usize,
    dir: &Path,
    sponsor_id: &str,
    home_page: &str,
) -> Result<(Server, ServerEntry), Error> {
    let sdir = dir.join(format!("server-{index}"));
    std::fs::create_dir_all(&sdir).map_err(io(format!("creating {}", sdir.display())))?;
    // One loopback address per server: clients (tunnel-core's and ours) key their datastore
    // by server IP address, so two servers on one address would be one server to them.
    let opts = GenerateOptions {
        ip_address: format!("127.0.0.{}", index + 1),
        protocols: vec![
            // Placeholders: the servers listen on OS-picked ports, written back below.
            ("SSH".to_owned(), 2222),
            ("OSSH".to_owned(), 9999),
        ],
        log_filename: Some(sdir.join("psiphond.log").display().to_string()),
        config_path: sdir.join("psiphond.config"),
        traffic_rules_path: sdir.join("psiphond-traffic-rules.config"),
        psinet_path: sdir.join("psinet.json"),
        server_entry_path: sdir.join("server-entry.dat"),
    };
    let generated =
        psiphon_server::generate_files(&opts).map_err(|source| Error::Server { index, source })?;
    // A sponsor with a home page, and loopback forwards allowed: this network lives on 127.0.0.1.
    let psinet = json!({
        "sponsors": {
            sponsor_id: {
                "id": sponsor_id,
                "home_pages": {"None": [{"region": "None", "url": home_page}]},
            }
        },
        "default_sponsor_id": sponsor_id,
        "client_versions": {},
        "valid_server_entry_tags": {},
        "discovery_servers": [],
    });
    write_json(&opts.psinet_path, &psinet)?;
    // Listen on ports the OS picks (no race with other programs for a port chosen earlier),
    // then write the real ports into the config (so a restart reuses them) and the entry.
    let mut config = generated.config.clone();
    if let Value::Object(m) = &mut config {
        m.insert("AllowBogons".to_owned(), Value::Bool(true));
        m.insert(
            "PsinetDatabaseFilename".to_owned(),
            Value::String(opts.psinet_path.display().to_string()),
        );
        m.insert(
            "TunnelProtocolPorts".to_owned(),
            json!({"SSH": 0, "OSSH": 0}),
        );
    }
    write_json(&opts.config_path, &config)?;
    let parsed = psiphon_server::Config::read(&opts.config_path)
        .map_err(|source| Error::Server { index, source })?;
    let server = Server::start(parsed)
        .await
        .map_err(|source| Error::Server { index, source })?;
    let port = |p: &str| {
        server
            .local_addr(p)
            .map(|a| a.port())
            .ok_or_else(|| Error::Client(format!("server {index} has no {p} listener")))
    };
    let (ssh, ossh) = (port("SSH")?, port("OSSH")?);
    if let Value::Object(m) = &mut config {
        m.insert(
            "TunnelProtocolPorts".to_owned(),
            json!({"SSH": ssh, "OSSH": ossh}),
        );
    }
    write_json(&opts.config_path, &config)?;
    let entry = ServerEntry::decode(generated.encoded_server_entry.trim())
        .map_err(|e| Error::Client(format!("server {index}'s entry does not decode: {e}")))?;
    let mut fields = entry.fields().clone();
    fields.insert("sshPort".to_owned(), json!(ssh));
    fields.insert("sshObfuscatedPort".to_owned(), json!(ossh));
    let entry = ServerEntry::from_fields(fields).map_err(|e| Error::Client(e.to_string()))?;
    std::fs::write(&opts.server_entry_path, entry.encode())
        .map_err(io("writing server-entry.dat"))?;
    Ok((server, entry))
}

/// Makes a secret file readable by its owner only.
fn restrict(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("restricting {}", path.display())))?;
    }
    Ok(())
}

fn write_json(path: &Path, v: &Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Client(e.to_string()))?;
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// Starts the network and waits (up to 30 s) for the client's first tunnel.
pub async fn start(dir: Option<PathBuf>) -> Result<Network, Error> {
    start_with(dir, &[]).await
}

/// Like [`start`], with the client limited to `protocols` (tunnel-core's
/// `LimitTunnelProtocols`; empty = any).
pub async fn start_with(dir: Option<PathBuf>, protocols: &[&str]) -> Result<Network, Error> {
    let (temp, dir) = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
            (None, d)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("psinet-quickstart-")
                .tempdir()
                .map_err(io("creating a temporary directory"))?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let origin = Origin::start()
        .await
        .map_err(io("starting the home page server"))?;
    let home_page = origin.url();
    let sponsor_id = random_hex_upper(8)?;
    let propagation_channel_id = random_hex_upper(8)?;

    let mut servers = Vec::new();
    let mut entries = Vec::new();
    let mut server_configs = Vec::new();
    for i in 0..2 {
        let (s, e) = start_server(i, &dir, &sponsor_id, &home_page).await?;
        servers.push(s);
        entries.push(e);
        server_configs.push(dir.join(format!("server-{i}")).join("psiphond.config"));
    }
    // The network's server-entry signing key: every entry is signed, and the client is given
    // the public key, so it drops any entry that does not verify.
    let signing = psiphon_protocol::ServerEntrySigningKey::generate()
        .map_err(|e| Error::Client(format!("signing key: {e}")))?;
    write_json(
        &dir.join("server-entry-signing-key.json"),
        &json!({"public_key": signing.public_key_base64(), "private_key": signing.private_key_base64()}),
    )?;
    restrict(&dir.join("server-entry-signing-key.json"))?;
    for e in &mut entries {
        e.sign(&signing);
    }
    let entry_list: String = entries.iter().map(|e| e.encode() + "\n").collect();
    std::fs::write(dir.join("server-list.dat"), entry_list)
        .map_err(io("writing server-list.dat"))?;

    let client_json = json!({
        "PropagationChannelId": propagation_channel_id,
        "SponsorId": sponsor_id,
        "ClientPlatform": "psinet-quickstart",
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "EmitDiagnosticNotices": true,
        "LimitTunnelProtocols": protocols,
        "ServerEntrySignaturePublicKey": signing.public_key_base64(),
    });
    write_json(&dir.join("client.json"), &client_json)?;
    let (config, _unknown) =
        psiphon_client::config::Config::parse(&client_json.to_string(), "client.json")
            .map_err(|e| Error::Client(e.to_string()))?;

    let notices_path = dir.join("client-notices.log");
    let (notices, mut lines) = Notices::channel(1024, true);
    let (up_tx, mut up_rx) = watch::channel(false);
    let mut file = tokio::fs::File::create(&notices_path)
        .await
        .map_err(io("creating client-notices.log"))?;
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let _ = file.write_all(line.as_bytes()).await;
            if !line.ends_with('\n') {
                let _ = file.write_all(b"\n").await;
            }
            let _ = file.flush().await;
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["noticeType"] == "Tunnels"
            {
                let _ = up_tx.send(v["data"]["count"].as_u64().unwrap_or(0) > 0);
            }
        }
    });
    let store = psiphon_client::datastore::Datastore::open(&dir.join("client"))
        .map_err(|e| Error::Client(e.to_string()))?;
    app::import_entries(
        &store,
        entries,
        psiphon_client::datastore::Source::Embedded,
        config.server_entry_signature_public_key.as_deref(),
        &notices,
    )
    .map_err(|e| Error::Client(e.to_string()))?;
    let client = app::start(&config, std::sync::Arc::new(store), notices)
        .await
        .map_err(|e| Error::Client(e.to_string()))?;
    let (Some(socks), Some(http)) = (client.socks, client.http) else {
        return Err(Error::Client("proxies did not start".to_owned()));
    };
    let wait = Duration::from_secs(30);
    if tokio::time::timeout(wait, up_rx.wait_for(|up| *up))
        .await
        .is_err()
    {
        return Err(Error::NoTunnel(wait, notices_path.display().to_string()));
    }
    Ok(Network {
        socks,
        http,
        home_page,
        dir,
        notices_path,
        servers,
        server_configs,
        client,
        _origin: origin,
        _temp: temp,
    })
}

impl Network {
    /// What to tell the person who ran it.
    pub fn instructions(&self) -> String {
        format!(
            "A Psiphon network is running on this machine: two servers (SSH and OSSH) and a client.\n\
             \n\
             The client is connected. Its proxies:\n\
             \x20 SOCKS5/SOCKS4a proxy:  {socks}\n\
             \x20 HTTP proxy:            {http}\n\
             \n\
             Try it in another terminal (the sponsor's home page, served locally):\n\
             \x20 curl --socks5-hostname {socks} {home}\n\
             \x20 curl --proxy http://{http} {home}\n\
             With Internet access, any site works too, e.g.\n\
             \x20 curl --socks5-hostname {socks} https://example.org/\n\
             \n\
             Files (configs, server entries, logs, client notices): {dir}\n\
             Press Ctrl-C to stop.",
            socks = self.socks,
            http = self.http,
            home = self.home_page,
            dir = self.dir.display(),
        )
    }

    /// Stops every server (dropping their tunnels, as a crash would) and starts them again on
    /// the same ports with the same keys. The client is left alone: it must notice and
    /// reconnect by itself.
    pub async fn restart_servers(&mut self) -> Result<(), Error> {
        for s in self.servers.drain(..) {
            s.shutdown().await;
        }
        for (index, path) in self.server_configs.iter().enumerate() {
            let config = psiphon_server::Config::read(path)
                .map_err(|source| Error::Server { index, source })?;
            let server = Server::start(config)
                .await
                .map_err(|source| Error::Server { index, source })?;
            self.servers.push(server);
        }
        Ok(())
    }

    /// Stops the client, then the servers.
    pub async fn shutdown(self) {
        self.client.shutdown().await;
        for s in self.servers {
            s.shutdown().await;
        }
    }
}

/// Starts the network, prints how to use it, and runs until Ctrl-C or SIGTERM.
pub async fn run_until_interrupted(dir: Option<PathBuf>) -> Result<(), Error> {
    println!("Starting a Psiphon network on loopback...");
    let net = start(dir).await?;
    println!("\n{}\n", net.instructions());
    app::shutdown_signal().await;
    println!("\nStopping...");
    net.shutdown().await;
    println!("Stopped.");
    Ok(())
}
