//! A minimal Psiphon server for the client's tests, built from our SSH and OSSH crates:
//! password payload, handshake parameters validated with psiphon-protocol's validators,
//! connected, status, `direct-tcpip` forwards. It can be stopped and restarted on its ports.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use psiphon_client::tunnel::ClientParams;
use psiphon_obfs::{Keyword, ObfuscatedStream, SeedHistory, ServerConfig as OsshServerConfig};
use psiphon_protocol::api::{
    self, ApiParams, ConnectedResponse, HandshakeResponse, StatusResponse,
};
use psiphon_protocol::{ServerEntry, SshPasswordPayload};
use psiphon_ssh::{Incoming, PrivateKey, ServerConfig};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

const OBFS_KEY: &str = "6b9e1f0e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccdde";
const USER: &str = "psiphon_0123456789abcdef";
const PASSWORD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub struct TestServer {
    pub entry: ServerEntry,
    /// Session ids the server saw in password payloads.
    pub sessions: Arc<Mutex<Vec<String>>>,
    host: Arc<PrivateKey>,
    ports: (u16, u16),
    task: Option<tokio::task::JoinHandle<()>>,
}

pub async fn serve_api(conn: psiphon_ssh::Connection) {
    let mut conn = conn;
    let mut handshaken = false;
    while let Some(item) = conn.next_incoming().await {
        match item {
            Incoming::GlobalRequest(r) => {
                // JSON or packed CBOR, as psiphond accepts them.
                let params = ApiParams::from_request_body(r.data()).map(|(p, _)| p);
                let reply = match (r.name(), params) {
                    (api::HANDSHAKE_REQUEST_NAME, Ok(p))
                        if api::validate_handshake_params(&p).is_ok() =>
                    {
                        handshaken = true;
                        let response = HandshakeResponse {
                            homepages: vec!["https://example.org/home".into()],
                            client_region: "None".into(),
                            server_timestamp: "2026-11-21T17:00:00Z".into(),
                            ..HandshakeResponse::default()
                        };
                        Some(if p.wants_cbor_response() {
                            response.to_cbor()
                        } else {
                            response.to_json().into_bytes()
                        })
                    }
                    (api::CONNECTED_REQUEST_NAME, Ok(p))
                        if handshaken && api::validate_connected_params(&p).is_ok() =>
                    {
                        Some(
                            ConnectedResponse {
                                connected_timestamp: "2026-11-21T17:00:00Z".into(),
                                padding: String::new(),
                            }
                            .to_json()
                            .into_bytes(),
                        )
                    }
                    (api::STATUS_REQUEST_NAME, Ok(p))
                        if handshaken && api::validate_status_params(&p).is_ok() =>
                    {
                        // Tags sent for checking that start with "invalid-" are named invalid,
                        // as psiphond does for tags not in its psinet valid tags.
                        let invalid = p
                            .get("statusData")
                            .and_then(|d| d["check_server_entry_tags"].as_array())
                            .map(|tags| {
                                tags.iter()
                                    .filter_map(|t| t.as_str())
                                    .filter(|t| t.starts_with("invalid-"))
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default();
                        Some(
                            StatusResponse {
                                invalid_server_entry_tags: invalid,
                                ..StatusResponse::default()
                            }
                            .to_json()
                            .into_bytes(),
                        )
                    }
                    _ => None,
                };
                match reply {
                    Some(body) => r.reply(true, &body),
                    None => r.reply(false, &[]),
                }
            }
            Incoming::Channel(c) if handshaken && c.kind() == "direct-tcpip" => {
                let (host, port) = psiphon_ssh::parse_direct_tcpip_extra(c.extra()).unwrap();
                tokio::spawn(async move {
                    let mut tcp = TcpStream::connect((host.as_str(), port)).await.unwrap();
                    let mut ch = c.accept().unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut ch, &mut tcp).await;
                });
            }
            Incoming::Channel(c) => c.reject(
                psiphon_ssh::msg::open_failure::ADMINISTRATIVELY_PROHIBITED,
                "",
            ),
            _ => {}
        }
    }
}

pub async fn test_server() -> TestServer {
    let host = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    let mut s = TestServer {
        entry: empty_entry(),
        sessions: Arc::default(),
        host,
        ports: (0, 0),
        task: None,
    };
    s.start().await;
    s
}

fn empty_entry() -> ServerEntry {
    ServerEntry::from_fields(
        json!({"ipAddress": "127.0.0.1"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap()
}

impl TestServer {
    /// Starts (or restarts, on the same ports) serving SSH and OSSH.
    pub async fn start(&mut self) {
        let ssh_listener = TcpListener::bind(("127.0.0.1", self.ports.0))
            .await
            .unwrap();
        let ossh_listener = TcpListener::bind(("127.0.0.1", self.ports.1))
            .await
            .unwrap();
        self.ports = (
            ssh_listener.local_addr().unwrap().port(),
            ossh_listener.local_addr().unwrap().port(),
        );
        self.entry = ServerEntry::from_fields(
            json!({
                "ipAddress": "127.0.0.1",
                "sshPort": self.ports.0,
                "sshObfuscatedPort": self.ports.1,
                "sshUsername": USER,
                "sshPassword": PASSWORD,
                "sshHostKey": self.host.public_key().to_base64(),
                "sshObfuscatedKey": OBFS_KEY,
                "capabilities": ["ssh-api-requests", "SSH", "OSSH"],
                "region": "CA",
            })
            .as_object()
            .unwrap()
            .clone(),
        )
        .unwrap();
        let host = self.host.clone();
        let sessions = self.sessions.clone();
        self.task = Some(tokio::spawn(async move {
            let history = Arc::new(SeedHistory::default());
            // Every connection task lives in this set: aborting the server ends them all.
            let mut conns = JoinSet::new();
            loop {
                let (tcp, peer, obfuscated) = tokio::select! {
                    r = ssh_listener.accept() => { let (t, p) = r.unwrap(); (t, p, false) }
                    r = ossh_listener.accept() => { let (t, p) = r.unwrap(); (t, p, true) }
                };
                let host = host.clone();
                let sessions = sessions.clone();
                let history = history.clone();
                conns.spawn(async move {
                    let check = Box::new(move |u: &str, p: &[u8]| {
                        let Ok(payload) = SshPasswordPayload::parse(p) else {
                            return false;
                        };
                        let ok = u == USER && payload.ssh_password == PASSWORD;
                        if ok {
                            sessions.lock().unwrap().push(payload.session_id);
                        }
                        ok
                    });
                    let cfg = ServerConfig::new(host);
                    let conn = if obfuscated {
                        let ossh_cfg =
                            OsshServerConfig::new(Keyword::new(OBFS_KEY).unwrap(), history);
                        let Ok(s) =
                            ObfuscatedStream::accept_from(tcp, &ossh_cfg, Some(peer.ip())).await
                        else {
                            return;
                        };
                        psiphon_ssh::accept(s, cfg, check).await
                    } else {
                        psiphon_ssh::accept(tcp, cfg, check).await
                    };
                    if let Ok(conn) = conn {
                        serve_api(conn).await;
                    }
                });
            }
        }));
    }

    /// Stops listening and drops every connection, as a killed server would.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

pub fn params() -> ClientParams {
    ClientParams {
        session_id: psiphon_protocol::make_session_id().unwrap(),
        propagation_channel_id: "24BCA4EE20BEB92C".into(),
        sponsor_id: "721AE60D76700F5A".into(),
        client_version: "1".into(),
        client_platform: "Linux_psiphon-rs".into(),
        device_region: String::new(),
        api_encoding: Default::default(),
    }
}

pub async fn echo_origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}
