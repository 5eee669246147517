#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use common::*;
use psiphon_protocol::{ApiParams, ConnectedResponse, HandshakeResponse, StatusResponse};
use psiphon_server::Server;
use psiphon_ssh::msg::open_failure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

async fn relay_through(conn: &psiphon_ssh::Connection, origin: std::net::SocketAddr, len: usize) {
    let ch = conn
        .handle()
        .open_direct_tcpip(&origin.ip().to_string(), origin.port())
        .await
        .unwrap();
    let mut data = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut data).unwrap();
    let sent = digest(&SHA256, &data);
    let (mut rd, mut wr) = tokio::io::split(ch);
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::with_capacity(len);
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let _wr = writer.await.unwrap();
    assert_eq!(got.len(), len);
    assert_eq!(digest(&SHA256, &got).as_ref(), sent.as_ref());
}

async fn full_session(protocol: &str) {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, protocol).await;

    // Port forward before the handshake: refused.
    let early = conn
        .handle()
        .open_direct_tcpip(&origin.ip().to_string(), origin.port())
        .await;
    assert_eq!(refusal(early), open_failure::ADMINISTRATIVELY_PROHIBITED);
    // Connected before the handshake: failure.
    let connected =
        ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Windows_10").with_last_connected(None);
    assert!(
        request(&conn, "psiphon-connected", &connected)
            .await
            .is_none()
    );

    // Handshake.
    let body = request(&conn, "psiphon-handshake", &handshake_params(protocol))
        .await
        .expect("handshake refused");
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(!text.contains("client_address"), "{text}");
    let hs = HandshakeResponse::from_json(&body).unwrap();
    assert_eq!(
        hs.homepages,
        ["https://example.org/home?client_region=None"]
    );
    assert_eq!(hs.upgrade_client_version, "200");
    assert_eq!(hs.client_region, "None");
    assert_eq!(hs.https_request_regexes.len(), 1);
    assert_eq!(hs.padding, " ".repeat(7));
    assert!(hs.server_timestamp.ends_with('Z') && hs.server_timestamp.len() == 20);
    // No server list unless the client asks for this server's own entry.
    assert!(hs.encoded_server_list.is_empty());
    // A second handshake is refused.
    assert!(
        request(&conn, "psiphon-handshake", &handshake_params(protocol))
            .await
            .is_none()
    );

    // Bytes through a port forward, intact.
    relay_through(&conn, origin, 3 * MIB).await;
    // Unknown channel types are refused.
    assert_eq!(
        refusal(conn.handle().open_channel("session", &[]).await),
        open_failure::UNKNOWN_CHANNEL_TYPE
    );

    // Connected twice: the same timestamp, truncated to the hour.
    let first = request(&conn, "psiphon-connected", &connected)
        .await
        .unwrap();
    let first = ConnectedResponse::from_json(&first).unwrap();
    assert!(first.connected_timestamp.ends_with(":00:00Z"));
    let again = connected
        .clone()
        .with_last_connected(Some(&first.connected_timestamp));
    let second = request(&conn, "psiphon-connected", &again).await.unwrap();
    assert_eq!(
        ConnectedResponse::from_json(&second)
            .unwrap()
            .connected_timestamp,
        first.connected_timestamp
    );

    // Status.
    let status = ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Windows_10")
        .with_status_data(serde_json::json!({"host_bytes": {}}));
    let body = request(&conn, "psiphon-status", &status).await.unwrap();
    // psiphon-protocol writes tunnel-core's omitempty form: no tags, no key.
    assert!(
        StatusResponse::from_json(&body)
            .unwrap()
            .invalid_server_entry_tags
            .is_empty()
    );
    // The client-verification stub answers an empty success.
    assert_eq!(
        request(&conn, "psiphon-client-verification", &status).await,
        Some(Vec::new())
    );
    // Unknown requests fail.
    assert!(request(&conn, "psiphon-nonsense", &status).await.is_none());

    drop(conn);
    server.shutdown().await;
    let log = fx.log_text();
    let tunnel_line = log
        .lines()
        .find(|l| l.contains("\"server_tunnel\""))
        .expect("no server_tunnel event");
    let ev: serde_json::Value = serde_json::from_str(tunnel_line).unwrap();
    assert_eq!(ev["relay_protocol"], protocol);
    assert_eq!(ev["session_id"], SESSION);
    assert_eq!(ev["handshake_completed"], true);
    assert_eq!(ev["sponsor_id"], SPONSOR);
    assert_eq!(ev["client_platform"], "Windows_10");
    assert_eq!(ev["client_version"], 150);
    assert_eq!(ev["device_region"], "DE");
    assert_eq!(ev["last_connected"], "None");
    assert!(ev["duration"].as_u64().is_some());
    assert_eq!(ev["client_region"], "None");
    assert_eq!(ev["total_port_forward_count_tcp"], 1);
    assert!(ev["bytes_up_tcp"].as_u64().unwrap() >= 3 * MIB as u64);
    assert!(ev["bytes_down_tcp"].as_u64().unwrap() >= 3 * MIB as u64);
    assert!(log.contains("\"unique_user\""));
    assert!(!log.contains("127.0.0.1"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ossh_full_session() {
    full_session("OSSH").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_full_session() {
    full_session("SSH").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogon_destination_refused_without_allow_bogons() {
    let fx = fixture(false);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, "OSSH").await;
    // The client reports its copy of this server's entry unsigned: it gets the entry back.
    let tag = fx.entry.get_str("tag").unwrap();
    let params = handshake_params("OSSH").with_missing_server_entry_signature(tag);
    let body = request(&conn, "psiphon-handshake", &params).await.unwrap();
    let hs = HandshakeResponse::from_json(&body).unwrap();
    assert_eq!(
        hs.encoded_server_list,
        std::slice::from_ref(&fx.generated.encoded_server_entry)
    );
    let refused = conn
        .handle()
        .open_direct_tcpip("127.0.0.1", origin.port())
        .await;
    assert_eq!(refusal(refused), open_failure::ADMINISTRATIVELY_PROHIBITED);
    let refused = conn
        .handle()
        .open_direct_tcpip("localhost", origin.port())
        .await;
    assert_eq!(refusal(refused), open_failure::ADMINISTRATIVELY_PROHIBITED);
    // The no-split-tunnel variant is checked the same way.
    let refused = conn
        .handle()
        .open_channel(
            psiphon_ssh::msg::channel_type::DIRECT_TCPIP_NO_SPLIT_TUNNEL,
            &psiphon_ssh::direct_tcpip_extra("10.0.0.1", 80),
        )
        .await;
    assert_eq!(refusal(refused), open_failure::ADMINISTRATIVELY_PROHIBITED);
    drop(conn);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_bad_handshake_params() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let mut wrong =
        psiphon_protocol::SshPasswordPayload::parse(password(&fx.entry).as_bytes()).unwrap();
    wrong.ssh_password = "00".repeat(32);
    for protocol in ["OSSH", "SSH"] {
        let r = connect_with(&server, &fx.entry, protocol, None, wrong.to_json()).await;
        assert!(r.is_err(), "{protocol}: wrong password accepted");
    }
    assert!(server.stats().auth_failures >= 2);

    // Legacy password form: session id then the SSH password.
    let legacy = format!("{SESSION}{}", fx.entry.ssh_password().unwrap());
    let conn = connect_with(&server, &fx.entry, "SSH", None, legacy)
        .await
        .unwrap();
    let mut params = handshake_params("SSH");
    params.remove("client_version");
    assert!(
        request(&conn, "psiphon-handshake", &params).await.is_none(),
        "handshake without client_version accepted"
    );
    // A packed body without the required parameters is refused too.
    let packed = conn
        .handle()
        .global_request("psiphon-handshake", &[0x00, 0x01, 0xa0])
        .await
        .unwrap();
    assert!(packed.is_none());
    // A valid handshake still works afterwards.
    assert!(
        request(&conn, "psiphon-handshake", &handshake_params("SSH"))
            .await
            .is_some()
    );
    drop(conn);
    server.shutdown().await;
    let log = fx.log_text();
    assert!(!log.contains(&fx.config.ssh_password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_ssh_client_is_dropped_at_the_handshake_deadline() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let mut tcp = tcp_from(server.local_addr("SSH").unwrap(), None).await;
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "not closed within 15 s");
    let held = start.elapsed();
    assert!(got.starts_with(b"SSH-2.0-Psiphon"));
    assert!(held >= Duration::from_millis(1800), "closed after {held:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_clients_and_logs_their_tunnels() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, "OSSH").await;
    request(&conn, "psiphon-handshake", &handshake_params("OSSH"))
        .await
        .unwrap();
    let _forward = conn
        .handle()
        .open_direct_tcpip(&origin.ip().to_string(), origin.port())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown hung with a client connected");
    tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("client not disconnected");
    let log = fx.log_text();
    assert!(log.contains("\"server_tunnel\""), "{log}");
    assert!(
        log.contains("\"peak_concurrent_port_forward_count_tcp\":1"),
        "{log}"
    );
}
