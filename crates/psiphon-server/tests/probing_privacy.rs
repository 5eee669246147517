#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use psiphon_protocol::ApiParams;
use psiphon_server::Server;
use psiphon_ssh::{ClientAuth, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until EOF, error or 10 s; returns the bytes and when the read ended.
async fn drain(tcp: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (got, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_get_silence_until_the_deadline() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let mut tcp = tcp_from(server.local_addr("OSSH").unwrap(), None).await;
    let start = Instant::now();
    let mut junk = vec![0u8; 700];
    aws_lc_rs::rand::fill(&mut junk).unwrap();
    tcp.write_all(&junk).await.unwrap();
    let (got, ended) = drain(&mut tcp).await;
    assert!(
        got.is_empty(),
        "server answered a probe with {} bytes",
        got.len()
    );
    let held = ended - start;
    // The deadline is 2 s: closed neither early nor much later.
    assert!(held >= Duration::from_millis(1800), "closed after {held:?}");
    assert!(held < Duration::from_secs(9), "held for {held:?}");
    assert!(server.stats().handshake_failures >= 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_seed_message_is_refused() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let addr = server.local_addr("OSSH").unwrap();
    // A real client, recording its first flight.
    let written = Arc::new(Mutex::new(Vec::new()));
    let tee = Tee {
        inner: tcp_from(addr, None).await,
        written: Arc::clone(&written),
    };
    let keyword = psiphon_obfs::Keyword::new(fx.entry.ssh_obfuscated_key().unwrap()).unwrap();
    let ossh =
        psiphon_obfs::ObfuscatedStream::client(tee, &psiphon_obfs::ClientConfig::new(keyword))
            .unwrap();
    let cfg = psiphon_ssh::ClientConfig::new(
        fx.entry.ssh_username().unwrap(),
        ClientAuth::Password(password(&fx.entry)),
        PublicKey::from_base64(fx.entry.ssh_host_key().unwrap()).unwrap(),
    );
    let conn = psiphon_ssh::connect(ossh, cfg).await.unwrap();
    let recorded = written.lock().unwrap().clone();
    assert!(!recorded.is_empty());
    let failures_before = server.stats().handshake_failures;

    // The same bytes again, on a new connection: nothing comes back.
    let mut replay = tcp_from(addr, None).await;
    replay.write_all(&recorded).await.unwrap();
    let (got, _) = drain(&mut replay).await;
    assert!(
        got.is_empty(),
        "server answered a replay with {} bytes",
        got.len()
    );
    assert_eq!(server.stats().handshake_failures, failures_before + 1);
    drop(conn);
    server.shutdown().await;

    // Logged as tunnel-core's psiphond does: an irregular_tunnel with GeoIP fields only.
    let log = fx.log_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event_name"] == "irregular_tunnel")
        .collect();
    assert_eq!(events.len(), 1, "{log}");
    let e = &events[0];
    assert_eq!(e["tunnel_error"], "duplicate obfuscation seed");
    assert_eq!(e["duplicate_client_ip"], "equal");
    assert_eq!(e["duplicate_seed_type"], "obfuscator-seed");
    assert!(e["duplicate_elapsed_time_ms"].is_u64());
    assert_eq!(e["listener_protocol"], "OSSH");
    assert_eq!(e["listener_port_number"], addr.port());
    assert_eq!(e["client_region"], "None");
    assert!(!log.contains("127.0.0.1"), "{log}");
}

const CLIENT_IP: &str = "127.45.67.89";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_address_in_anything_the_server_wrote() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let source: IpAddr = CLIENT_IP.parse().unwrap();
    for protocol in ["OSSH", "SSH"] {
        let conn = connect_with(
            &server,
            &fx.entry,
            protocol,
            Some(source),
            password(&fx.entry),
        )
        .await
        .unwrap();
        request(&conn, "psiphon-handshake", &handshake_params(protocol))
            .await
            .unwrap();
        let mut ch = conn
            .handle()
            .open_direct_tcpip(&origin.ip().to_string(), origin.port())
            .await
            .unwrap();
        ch.write_all(b"hello origin").await.unwrap();
        let mut back = [0u8; 12];
        ch.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello origin");
        let connected = ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Windows_10")
            .with_last_connected(None);
        request(&conn, "psiphon-connected", &connected)
            .await
            .unwrap();
        drop(ch);
        drop(conn);
    }
    // A failed login and a probe from the same address.
    let mut wrong =
        psiphon_protocol::SshPasswordPayload::parse(password(&fx.entry).as_bytes()).unwrap();
    wrong.ssh_password = "11".repeat(32);
    assert!(
        connect_with(&server, &fx.entry, "SSH", Some(source), wrong.to_json())
            .await
            .is_err()
    );
    let mut probe = tcp_from(server.local_addr("OSSH").unwrap(), Some(source)).await;
    probe.write_all(&[7u8; 300]).await.unwrap();
    let _ = drain(&mut probe).await;
    server.shutdown().await;

    let log = fx.log_text();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"server_tunnel\""))
            .count(),
        2,
        "{log}"
    );
    // Not the client's address, nor any destination or address at all, in the log.
    assert!(!log.contains("127."), "{log}");
    let all = fx.all_written_bytes();
    let text = String::from_utf8_lossy(&all);
    for needle in [CLIENT_IP, "45.67.89", "127.45", "hello origin"] {
        assert!(
            !text.contains(needle),
            "found {needle:?} in the server's files"
        );
    }
    // Nor hex-encoded.
    assert!(!text.contains(&hex::encode(CLIENT_IP)));
}
