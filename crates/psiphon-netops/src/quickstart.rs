//! `psinet quickstart`: a throwaway Psiphon network on loopback, in one process.
//!
//! The network is made the way an operator makes one with psinet: a database (`psinet.db` in
//! the directory) with fresh keys, a default sponsor whose home page is a small local web
//! server, a propagation channel, and two psiphond servers (SSH and OSSH listeners, on
//! 127.0.0.1 and 127.0.0.2) made by `server new`'s code with signed entries. The client is
//! given the channel's embedded list and the network's public keys, and serves SOCKS and HTTP
//! proxies on 127.0.0.1. The signed remote server list is published to `remote/`. Because the network lives on
//! loopback, the servers allow forwards to loopback addresses (`AllowBogons`), so the home page
//! is reachable through the tunnel even on a machine without Internet.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use psiphon_client::app::{self, Client};
use psiphon_client::notice::Notices;
use psiphon_protocol::ServerEntry;
use psiphon_server::Server;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::db::Db;
use crate::origin::Origin;
use crate::servers::{NewServer, Placement};
use crate::sponsors::NewSponsor;

/// The remote server list key of the throwaway network: 2048 bits, so that it starts in a
/// moment (`psinet init` makes psi_ops' 4096 bits).
const QUICKSTART_KEY_BITS: usize = 2048;

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
    /// The network database refused something.
    #[error("psinet database (server {index}): {source}")]
    Network {
        /// Which server was being made (0 before the first).
        index: usize,
        /// The database error.
        #[source]
        source: crate::Error,
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

/// The servers' addresses: one per server, as a real network has (clients key their server
/// entries by IP address). Both are on loopback.
const SERVER_IPS: [&str; 2] = ["127.0.0.1", "127.0.0.2"];

/// A port on `ip` that was free a moment ago: bound with port 0, then released. psinet must
/// know a server's ports before it signs the server's entry.
fn free_port(ip: &str) -> Result<u16, Error> {
    let l =
        std::net::TcpListener::bind((ip, 0)).map_err(io(format!("finding a free port on {ip}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io(format!("finding a free port on {ip}")))
}

/// Makes server `index` with psinet's `server new` code; returns its config file.
fn make_server(db: &mut Db, index: usize, dir: &Path, channel: &str) -> Result<PathBuf, Error> {
    let sdir = dir.join(format!("server-{index}"));
    let ip = SERVER_IPS.get(index).copied().unwrap_or("127.0.0.1");
    let new = NewServer {
        ip: ip
            .parse()
            .map_err(|_| Error::Client(format!("bad server address {ip}")))?,
        protocols: vec![
            ("SSH".to_owned(), free_port(ip)?),
            ("OSSH".to_owned(), free_port(ip)?),
        ],
        out_dir: sdir.clone(),
        server_dir: None,
        log_file: Some(sdir.join("psiphond.log")),
        geoip_files: Vec::new(),
        force: true,
    };
    let placement = Placement {
        id: Some(format!("quickstart-{index}")),
        channel: channel.to_owned(),
        embedded: true,
        ..Placement::default()
    };
    let (_record, files) = db
        .new_server(&new, &placement)
        .map_err(|source| Error::Network { index, source })?;
    // This network lives on loopback: let the servers forward to loopback addresses, so the
    // home page (served on 127.0.0.1) is reachable through a tunnel.
    let text = std::fs::read_to_string(&files.config)
        .map_err(io(format!("reading {}", files.config.display())))?;
    let mut config: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Client(format!("{}: {e}", files.config.display())))?;
    config["AllowBogons"] = Value::Bool(true);
    write_json(&files.config, &config)?;
    Ok(files.config)
}

async fn start_from_config(index: usize, config: &Path) -> Result<Server, Error> {
    let parsed =
        psiphon_server::Config::read(config).map_err(|source| Error::Server { index, source })?;
    Server::start(parsed)
        .await
        .map_err(|source| Error::Server { index, source })
}

/// Writes pretty JSON readable by its owner only (0600), as psinet writes every file.
fn write_json(path: &Path, v: &Value) -> Result<(), Error> {
    crate::servers::pretty(v)
        .and_then(|text| crate::db::write_private(path, &text, true))
        .map_err(|source| Error::Network { index: 0, source })
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

    // The network database, as `psinet init` / `sponsor add` / `channel add` make it.
    let db_path = dir.join("psinet.db");
    if db_path.exists() {
        std::fs::remove_file(&db_path)
            .map_err(io(format!("removing the old {}", db_path.display())))?;
    }
    let net = |source| Error::Network { index: 0, source };
    let mut db = Db::init(&db_path, QUICKSTART_KEY_BITS).map_err(net)?;
    let sponsor = db
        .add_sponsor(&NewSponsor {
            name: "quickstart".to_owned(),
            default: true,
            ..NewSponsor::default()
        })
        .map_err(net)?;
    db.set_home_pages(&sponsor.id, "None", false, std::slice::from_ref(&home_page))
        .map_err(net)?;
    let channel = db.add_channel("quickstart", None, &[]).map_err(net)?;

    let mut server_configs = Vec::new();
    for i in 0..SERVER_IPS.len() {
        server_configs.push(make_server(&mut db, i, &dir, &channel.id)?);
    }
    // Each server's psinet was exported when it was made; export again now that every
    // server's tag exists, then start them.
    let mut servers = Vec::new();
    for (index, config) in server_configs.iter().enumerate() {
        let id = format!("quickstart-{index}");
        let psinet = db.export_psinet(&id, crate::db::unix_now()).map_err(net)?;
        if let Some(sdir) = config.parent() {
            let path = sdir.join("psinet.json");
            write_json(&path, &psinet)?;
        }
        servers.push(start_from_config(index, config).await?);
    }
    // What client builds and downloads would carry: the embedded list and the signed remote
    // server list, both from the database.
    let embedded = db.embedded_list(&channel.id).map_err(net)?;
    std::fs::write(dir.join("server-list.dat"), &embedded)
        .map_err(io("writing server-list.dat"))?;
    db.publish_remote_list(&channel.id, &dir.join("remote"))
        .map_err(net)?;
    let entries = embedded
        .lines()
        .map(ServerEntry::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Client(format!("embedded list: {e}")))?;
    let keys = db.public_keys().map_err(net)?;
    let sponsor_id = sponsor.id;
    let propagation_channel_id = channel.id;

    let client_json = json!({
        "PropagationChannelId": propagation_channel_id,
        "SponsorId": sponsor_id,
        "ClientPlatform": "psinet-quickstart",
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "EmitDiagnosticNotices": true,
        "LimitTunnelProtocols": protocols,
        "ServerEntrySignaturePublicKey": keys.server_entry_signature_public_key,
        "RemoteServerListSignaturePublicKey": keys.remote_server_list_signature_public_key,
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
             Files (psinet.db, server configs and entries, logs, client notices): {dir}\n\
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
