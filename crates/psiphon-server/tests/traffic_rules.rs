//! Traffic rules through real tunnels: a rate limit measured end to end, the limits reported
//! in the handshake, ports refused, forward counts evicting the least recently active, rules
//! selected by handshake parameters and reloaded when the file changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use psiphon_protocol::HandshakeResponse;
use psiphon_server::Server;
use psiphon_ssh::Connection;
use psiphon_ssh::msg::open_failure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES_FILE: &str = "psiphond-traffic-rules.config";

async fn handshake(conn: &Connection, params: &psiphon_protocol::ApiParams) -> HandshakeResponse {
    let body = request(conn, "psiphon-handshake", params)
        .await
        .expect("handshake refused");
    HandshakeResponse::from_json(&body).unwrap()
}

/// Sends `len` bytes through an echo forward and reads them back; returns the time taken.
async fn echo_through(conn: &Connection, origin: SocketAddr, len: usize) -> Duration {
    let ch = conn
        .handle()
        .open_direct_tcpip(&origin.ip().to_string(), origin.port())
        .await
        .unwrap();
    let data: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
    let expected = data.clone();
    let (mut rd, mut wr) = tokio::io::split(ch);
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::with_capacity(len);
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut got))
        .await
        .expect("the transfer did not finish in 60 s")
        .unwrap();
    let elapsed = start.elapsed();
    let _wr = writer.await.unwrap();
    assert!(got == expected, "the echoed bytes differ");
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_megabyte_per_second_measured_through_the_tunnel() {
    const RATE: u64 = 1_000_000;
    const LEN: usize = 5_000_000;
    let fx = fixture(true);
    let rules = format!(
        r#"{{"DefaultRules":{{"RateLimits":{{"ReadBytesPerSecond":{RATE},"WriteBytesPerSecond":{RATE}}}}}}}"#
    );
    std::fs::write(fx.path(RULES_FILE), rules).unwrap();
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, "OSSH").await;
    let hs = handshake(&conn, &handshake_params("OSSH")).await;
    assert_eq!(hs.upstream_bytes_per_second, 1_000_000);
    assert_eq!(hs.downstream_bytes_per_second, 1_000_000);

    let elapsed = echo_through(&conn, origin, LEN).await;
    let measured = LEN as f64 / elapsed.as_secs_f64();
    // Less the one second of burst the bucket starts with: the steady rate.
    let steady = (LEN as f64 - RATE as f64) / elapsed.as_secs_f64();
    println!(
        "RULES rate_limit_measured_bytes_per_sec={measured:.0} steady_bytes_per_sec={steady:.0} \
         limit={RATE} bytes={LEN} elapsed_ms={}",
        elapsed.as_millis()
    );
    // Each direction carries LEN payload bytes plus SSH framing through a bucket that starts
    // with one second of tokens and may run one 64 KiB chunk into debt.
    let floor = (LEN as f64 - RATE as f64 - 65_536.0) / RATE as f64;
    assert!(
        elapsed.as_secs_f64() >= floor,
        "{LEN} bytes at {RATE} B/s took {elapsed:?}, under the {floor:.2} s the limit implies"
    );
    drop(conn);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_exhausted_ends_the_tunnel_once_the_allowance_is_used() {
    let fx = fixture(true);
    std::fs::write(
        fx.path(RULES_FILE),
        r#"{"DefaultRules":{"RateLimits":{"WriteUnthrottledBytes":200000,
            "CloseAfterExhausted":true}}}"#,
    )
    .unwrap();
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, "SSH").await;
    handshake(&conn, &handshake_params("SSH")).await;
    // Small transfers fit in the allowance.
    echo_through(&conn, origin, 50_000).await;
    let ch = conn
        .handle()
        .open_direct_tcpip(&origin.ip().to_string(), origin.port())
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(ch);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&vec![7u8; 1_000_000]).await;
        let _ = wr.shutdown().await;
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut got))
        .await
        .expect("the tunnel was not closed");
    let _ = writer.await;
    assert!(
        got.len() < 200_000,
        "{} bytes came back past a 200000-byte allowance",
        got.len()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_ports_and_subnets_are_refused() {
    let fx = fixture(true);
    let allowed = echo_origin().await;
    let refused = echo_origin().await;
    // For this sponsor on Android, no loopback destination at all.
    let rules = serde_json::json!({
        "DefaultRules": {"DisallowTCPPorts": [refused.port()]},
        "FilteredRules": [{
            "Filter": {"HandshakeParameters": {"client_platform": ["Android*"]}},
            "Rules": {"DisallowSubnets": ["127.0.0.0/8"]}
        }]
    });
    std::fs::write(fx.path(RULES_FILE), rules.to_string()).unwrap();
    let server = Server::start(fx.config.clone()).await.unwrap();

    let conn = connect(&server, &fx.entry, "SSH").await;
    handshake(&conn, &handshake_params("SSH")).await;
    echo_through(&conn, allowed, 1000).await;
    let host = refused.ip().to_string();
    assert_eq!(
        refusal(conn.handle().open_direct_tcpip(&host, refused.port()).await),
        open_failure::ADMINISTRATIVELY_PROHIBITED
    );
    // By name: checked on the resolved address.
    assert_eq!(
        refusal(
            conn.handle()
                .open_direct_tcpip("localhost", refused.port())
                .await
        ),
        open_failure::ADMINISTRATIVELY_PROHIBITED
    );
    drop(conn);

    let android =
        psiphon_protocol::ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Android_13")
            .with_str("relay_protocol", "SSH");
    let conn = connect(&server, &fx.entry, "SSH").await;
    handshake(&conn, &android).await;
    assert_eq!(
        refusal(
            conn.handle()
                .open_direct_tcpip(&allowed.ip().to_string(), allowed.port())
                .await
        ),
        open_failure::ADMINISTRATIVELY_PROHIBITED
    );
    drop(conn);
    server.shutdown().await;
}

/// Reads until EOF or error; true if the stream ended within `within`.
async fn ends_within(ch: &mut psiphon_ssh::Channel, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ch.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_count_limit_evicts_the_least_recently_active() {
    let fx = fixture(true);
    std::fs::write(
        fx.path(RULES_FILE),
        r#"{"DefaultRules":{"MaxTCPPortForwardCount":2}}"#,
    )
    .unwrap();
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, "SSH").await;
    handshake(&conn, &handshake_params("SSH")).await;
    let host = origin.ip().to_string();
    let handle = conn.handle();
    let open = || handle.open_direct_tcpip(&host, origin.port());
    let mut a = open().await.unwrap();
    let mut b = open().await.unwrap();
    // `a` was opened first, but is used last: `b` becomes the least recently active.
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    a.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");

    let mut c = open().await.unwrap();
    assert!(
        ends_within(&mut b, Duration::from_secs(10)).await,
        "the least recently active forward was not closed"
    );
    // The others still relay.
    for ch in [&mut a, &mut c] {
        ch.write_all(b"pong").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), ch.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"pong");
    }
    drop((a, b, c));
    drop(conn);
    server.shutdown().await;
    let log = fx.log_text();
    let tunnel = log
        .lines()
        .find(|l| l.contains("\"server_tunnel\""))
        .unwrap();
    assert!(
        tunnel.contains("\"total_port_forward_count_tcp\":3"),
        "{tunnel}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_for_new_tunnels_and_bad_files_keep_the_old_rules() {
    let fx = fixture(true);
    let write = |rate: &str| {
        let tmp = fx.path("rules.tmp");
        std::fs::write(&tmp, rate).unwrap();
        std::fs::rename(&tmp, fx.path(RULES_FILE)).unwrap();
    };
    write(r#"{"DefaultRules":{"RateLimits":{"WriteBytesPerSecond":1000}}}"#);
    let mut config = fx.config.clone();
    config.psinet_reload_period = Duration::from_millis(50);
    let server = Server::start(config).await.unwrap();
    let rates = || async {
        let conn = connect(&server, &fx.entry, "OSSH").await;
        let hs = handshake(&conn, &handshake_params("OSSH")).await;
        (hs.upstream_bytes_per_second, hs.downstream_bytes_per_second)
    };
    assert_eq!(rates().await, (0, 1000));
    // A tunnel from before the reload, with a forward open.
    let origin = echo_origin().await;
    let early = connect(&server, &fx.entry, "OSSH").await;
    handshake(&early, &handshake_params("OSSH")).await;
    echo_through(&early, origin, 100).await;

    // A longer file, so the size changes even where timestamps are coarse.
    write(&format!(
        r#"{{"DefaultRules":{{"RateLimits":{{"ReadBytesPerSecond":22222,"WriteBytesPerSecond":3333}},
            "DisallowTCPPorts":[{}]}}}}"#,
        origin.port()
    ));
    wait_for_log(&fx, "traffic rules reloaded", 1).await;
    assert_eq!(rates().await, (22222, 3333));
    // As tunnel-core, tunnels already up are under the new rules too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = early
            .handle()
            .open_direct_tcpip(&origin.ip().to_string(), origin.port())
            .await;
        if r.is_err() {
            assert_eq!(refusal(r), open_failure::ADMINISTRATIVELY_PROHIBITED);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reloaded rules did not reach the tunnel"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    write(r#"{"DefaultRules":{"RateLimits":{"ReadBytesPerSecond":"fast"}}}"#);
    let log = wait_for_log(&fx, "traffic rules reload failed", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("traffic rules reload failed"))
        .unwrap();
    assert!(
        line.contains(RULES_FILE) && line.contains("ReadBytesPerSecond"),
        "{line}"
    );
    assert_eq!(rates().await, (22222, 3333));
    server.shutdown().await;
}

async fn wait_for_log(fx: &Fixture, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = fx.log_text();
        if text.lines().filter(|l| l.contains(needle)).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
