//! Shared fixtures: a generated server in a temp dir, a Psiphon-like client, an echo origin.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use psiphon_protocol::{ApiParams, ServerEntry, SshPasswordPayload};
use psiphon_server::{Config, GenerateOptions, Generated, Server, generate_files};
use psiphon_ssh::{ClientAuth, Connection, PublicKey};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub const SPONSOR: &str = "0123456789ABCDEF";
pub const SESSION: &str = "00112233445566778899aabbccddeeff";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub generated: Generated,
    pub entry: ServerEntry,
    pub config: Config,
}

impl Fixture {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every file in the fixture's directory, concatenated.
    pub fn all_written_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            all.extend(std::fs::read(&path).unwrap());
        }
        all
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.path("psiphond.log")).unwrap_or_default()
    }
}

pub fn options(dir: &Path) -> GenerateOptions {
    GenerateOptions {
        ip_address: "127.0.0.1".to_owned(),
        protocols: vec![("OSSH".to_owned(), 0), ("SSH".to_owned(), 0)],
        log_filename: Some(dir.join("psiphond.log").display().to_string()),
        config_path: dir.join("psiphond.config"),
        traffic_rules_path: dir.join("psiphond-traffic-rules.config"),
        psinet_path: dir.join("psinet.json"),
        server_entry_path: dir.join("server-entry.dat"),
    }
}

/// A generated server with a sponsor in psinet, `AllowBogons` as given and a 2 s handshake
/// deadline.
pub fn fixture(allow_bogons: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let generated = generate_files(&options(dir.path())).unwrap();
    let psinet = json!({
        "sponsors": {
            SPONSOR: {
                "id": SPONSOR,
                "home_pages": {"None": [{"region": "None", "url": "https://example.org/home?client_region=XX"}]},
                "https_request_regexes": [{"regex": "^(.*)$", "replace": "$1"}]
            }
        },
        "client_versions": {"Windows": [{"version": "100"}, {"version": "200"}]},
        "default_sponsor_id": SPONSOR
    });
    std::fs::write(dir.path().join("psinet.json"), psinet.to_string()).unwrap();
    let mut cfg = generated.config.clone();
    cfg["AllowBogons"] = json!(allow_bogons);
    let mut config = Config::parse(&cfg.to_string(), "test config").unwrap();
    config.handshake_timeout = Duration::from_secs(2);
    let entry = ServerEntry::decode(&generated.encoded_server_entry).unwrap();
    Fixture {
        dir,
        generated,
        entry,
        config,
    }
}

pub fn password(entry: &ServerEntry) -> String {
    SshPasswordPayload {
        session_id: SESSION.to_owned(),
        ssh_password: entry.ssh_password().unwrap().to_owned(),
        client_capabilities: vec!["server-requests".to_owned()],
        sponsor_id: SPONSOR.to_owned(),
    }
    .to_json()
}

pub async fn tcp_from(addr: SocketAddr, source: Option<IpAddr>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

/// Connects as a Psiphon client would: TCP, OSSH (for "OSSH"), SSH with the password payload.
pub async fn connect_with(
    server: &Server,
    entry: &ServerEntry,
    protocol: &str,
    source: Option<IpAddr>,
    password: String,
) -> psiphon_ssh::Result<Connection> {
    let tcp = tcp_from(server.local_addr(protocol).unwrap(), source).await;
    let host_key = PublicKey::from_base64(entry.ssh_host_key().unwrap()).unwrap();
    let cfg = psiphon_ssh::ClientConfig::new(
        entry.ssh_username().unwrap(),
        ClientAuth::Password(password),
        host_key,
    );
    let connect = async {
        if protocol == "OSSH" {
            let keyword = psiphon_obfs::Keyword::new(entry.ssh_obfuscated_key().unwrap()).unwrap();
            let ossh = psiphon_obfs::ObfuscatedStream::client(
                tcp,
                &psiphon_obfs::ClientConfig::new(keyword),
            )
            .unwrap();
            psiphon_ssh::connect(ossh, cfg).await
        } else {
            psiphon_ssh::connect(tcp, cfg).await
        }
    };
    tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .expect("client handshake timed out")
}

pub async fn connect(server: &Server, entry: &ServerEntry, protocol: &str) -> Connection {
    connect_with(server, entry, protocol, None, password(entry))
        .await
        .unwrap()
}

pub fn handshake_params(relay_protocol: &str) -> ApiParams {
    ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Windows_10")
        .with_str("relay_protocol", relay_protocol)
        .with_str("device_region", "DE")
        .with_padding(3, 7)
}

pub async fn request(conn: &Connection, name: &str, params: &ApiParams) -> Option<Vec<u8>> {
    conn.handle()
        .global_request(name, params.to_json().as_bytes())
        .await
        .unwrap()
}

/// An origin that echoes every connection.
pub async fn echo_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A stream that records what is written through it.
pub struct Tee<S> {
    pub inner: S,
    pub written: Arc<Mutex<Vec<u8>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tee<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tee<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            this.written.lock().unwrap().extend_from_slice(&data[..n]);
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The reason code of a refused channel open.
pub fn refusal<T: std::fmt::Debug>(r: psiphon_ssh::Result<T>) -> u32 {
    match r {
        Err(psiphon_ssh::Error::ChannelOpenFailed { reason, .. }) => reason,
        other => panic!("expected a refused channel, got {other:?}"),
    }
}
