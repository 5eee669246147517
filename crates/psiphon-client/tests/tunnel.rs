//! The client's tunnel against a minimal Psiphon server built in the test from our SSH and OSSH
//! crates: password payload, host key check, handshake parameters validated with
//! psiphon-protocol's server-side validators, connected, status, keepalive, a port forward.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use psiphon_client::tunnel::{self, ClientParams};
use psiphon_obfs::{Keyword, ObfuscatedStream, SeedHistory, ServerConfig as OsshServerConfig};
use psiphon_protocol::api::{
    self, ApiParams, ConnectedResponse, HandshakeResponse, StatusResponse,
};
use psiphon_protocol::{ServerEntry, SshPasswordPayload, TunnelProtocol};
use psiphon_ssh::{Incoming, PrivateKey, ServerConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const OBFS_KEY: &str = "6b9e1f0e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccdde";
const USER: &str = "psiphon_0123456789abcdef";
const PASSWORD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

struct TestServer {
    entry: ServerEntry,
    /// Session ids the server saw in password payloads.
    sessions: Arc<Mutex<Vec<String>>>,
}

async fn serve_api(conn: psiphon_ssh::Connection) {
    let mut conn = conn;
    let mut handshaken = false;
    while let Some(item) = conn.next_incoming().await {
        match item {
            Incoming::GlobalRequest(r) => {
                let params = ApiParams::from_json(r.data());
                let reply = match (r.name(), params) {
                    (api::HANDSHAKE_REQUEST_NAME, Ok(p))
                        if api::validate_handshake_params(&p).is_ok() =>
                    {
                        handshaken = true;
                        Some(
                            HandshakeResponse {
                                homepages: vec!["https://example.org/home".into()],
                                client_region: "None".into(),
                                server_timestamp: "2026-11-21T17:00:00Z".into(),
                                ..HandshakeResponse::default()
                            }
                            .to_json(),
                        )
                    }
                    (api::CONNECTED_REQUEST_NAME, Ok(p))
                        if handshaken && api::validate_connected_params(&p).is_ok() =>
                    {
                        Some(
                            ConnectedResponse {
                                connected_timestamp: "2026-11-21T17:00:00Z".into(),
                                padding: String::new(),
                            }
                            .to_json(),
                        )
                    }
                    (api::STATUS_REQUEST_NAME, Ok(p))
                        if handshaken && api::validate_status_params(&p).is_ok() =>
                    {
                        Some(StatusResponse::default().to_json())
                    }
                    _ => None,
                };
                match reply {
                    Some(body) => r.reply(true, body.as_bytes()),
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

async fn test_server() -> TestServer {
    let host = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    let ssh_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ossh_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let entry = ServerEntry::from_fields(
        json!({
            "ipAddress": "127.0.0.1",
            "sshPort": ssh_listener.local_addr().unwrap().port(),
            "sshObfuscatedPort": ossh_listener.local_addr().unwrap().port(),
            "sshUsername": USER,
            "sshPassword": PASSWORD,
            "sshHostKey": host.public_key().to_base64(),
            "sshObfuscatedKey": OBFS_KEY,
            "capabilities": ["ssh-api-requests", "SSH", "OSSH"],
            "region": "CA",
        })
        .as_object()
        .unwrap()
        .clone(),
    )
    .unwrap();
    let history = Arc::new(SeedHistory::default());
    for (listener, obfuscated) in [(ssh_listener, false), (ossh_listener, true)] {
        let host = host.clone();
        let sessions = sessions.clone();
        let history = history.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = listener.accept().await.unwrap();
                let host = host.clone();
                let sessions = sessions.clone();
                let history = history.clone();
                tokio::spawn(async move {
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
        });
    }
    TestServer { entry, sessions }
}

fn params() -> ClientParams {
    ClientParams {
        session_id: psiphon_protocol::make_session_id().unwrap(),
        propagation_channel_id: "24BCA4EE20BEB92C".into(),
        sponsor_id: "721AE60D76700F5A".into(),
        client_version: "1".into(),
        client_platform: "Linux_psiphon-rs".into(),
    }
}

async fn echo_origin() -> u16 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn establishes_over_ossh_and_ssh_and_uses_the_api() {
    let server = test_server().await;
    let origin = echo_origin().await;
    let params = params();
    for protocol in [TunnelProtocol::Ossh, TunnelProtocol::Ssh] {
        let t = tunnel::establish(&server.entry, protocol, &params, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        assert_eq!(
            t.handshake.homepages,
            vec!["https://example.org/home".to_owned()]
        );
        assert_eq!(
            t.connected(&params, None).await.unwrap(),
            "2026-11-21T17:00:00Z"
        );
        t.status(&params, json!({"host_bytes": {}})).await.unwrap();
        t.keepalive(Duration::from_secs(5)).await.unwrap();
        let mut ch = t
            .handle()
            .open_direct_tcpip("127.0.0.1", origin)
            .await
            .unwrap();
        ch.write_all(b"through the tunnel").await.unwrap();
        ch.shutdown().await.unwrap();
        let mut got = Vec::new();
        ch.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"through the tunnel");
    }
    // One session id per client process, reused across tunnels.
    let seen = server.sessions.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![params.session_id.clone(), params.session_id.clone()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_or_password_is_a_rejection_not_a_block() {
    let server = test_server().await;
    let mut fields = server.entry.fields().clone();
    fields.insert(
        "sshHostKey".into(),
        json!(
            PrivateKey::generate_ed25519()
                .unwrap()
                .public_key()
                .to_base64()
        ),
    );
    let wrong_key = ServerEntry::from_fields(fields).unwrap();
    let err = tunnel::establish(
        &wrong_key,
        TunnelProtocol::Ossh,
        &params(),
        Duration::from_secs(20),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), tunnel::ErrorKind::ServerRejected, "{err}");

    let mut fields = server.entry.fields().clone();
    fields.insert("sshPassword".into(), json!("ff".repeat(32)));
    let wrong_pw = ServerEntry::from_fields(fields).unwrap();
    let err = tunnel::establish(
        &wrong_pw,
        TunnelProtocol::Ssh,
        &params(),
        Duration::from_secs(20),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), tunnel::ErrorKind::ServerRejected, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_as_blocked() {
    // A listener that accepts and never answers: what a blackholing censor looks like after SYN.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = l.accept().await.unwrap();
            held.push(s);
        }
    });
    let server = test_server().await;
    let mut fields = server.entry.fields().clone();
    fields.insert("sshObfuscatedPort".into(), json!(port));
    let silent = ServerEntry::from_fields(fields).unwrap();
    let err = tunnel::establish(
        &silent,
        TunnelProtocol::Ossh,
        &params(),
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, tunnel::Error::Timeout { .. }), "{err}");
    assert_eq!(err.kind(), tunnel::ErrorKind::Blocked);
}
