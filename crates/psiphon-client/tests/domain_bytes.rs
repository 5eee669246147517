//! Per-domain bytes end to end: the real client library (`app::start`) tunnels HTTP, TLS and
//! other traffic through the real psiphond library on 127.0.0.1; the client sniffs each
//! forward's host (HTTP `Host`, TLS SNI), maps it with the sponsor's regexes from the
//! handshake and reports `host_bytes` in its status request; psiphond logs them as
//! `domain_dest_bytes` with exactly those domains and byte counts — and nothing in its log
//! holds a path, a query, a raw host name, a URL or an IP address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use psiphon_testkit::{client, psiphond};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SPONSOR: &str = "721AE60D76700F5A";
/// What the origin answers each connection with.
const RESPONSE_LEN: usize = 1000;

/// An origin that reads a first chunk, answers [`RESPONSE_LEN`] bytes, then reads to the end.
async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                if s.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                let _ = s.write_all(&[b'x'; RESPONSE_LEN]).await;
                while s.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    addr
}

/// Opens a SOCKS5 connection to `target` through the client's proxy, sends `first`, reads the
/// origin's answer, and closes.
async fn through_socks(socks: SocketAddr, target: SocketAddr, first: &[u8]) {
    let mut s = TcpStream::connect(socks).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply, [5, 0]);
    let SocketAddr::V4(v4) = target else {
        panic!("IPv4 origin")
    };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&v4.ip().octets());
    req.extend_from_slice(&v4.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 10];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "SOCKS connect refused");
    s.write_all(first).await.unwrap();
    let mut answer = vec![0u8; RESPONSE_LEN];
    s.read_exact(&mut answer).await.unwrap();
    s.shutdown().await.unwrap();
}

/// A real TLS ClientHello (rustls) for `name`.
fn client_hello(name: &str) -> Vec<u8> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name.to_owned().try_into().unwrap())
            .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// A server on `ip` whose sponsor counts any `*.test` host under its last two labels.
async fn counting_server(dir: &std::path::Path, ip: &str) -> psiphond::Psiphond {
    let psinet = json!({
        "sponsors": {SPONSOR: {
            "id": SPONSOR,
            "home_pages": {"None": [{"region": "None", "url": "https://example.org/"}]},
            "https_request_regexes": [
                {"regex": "^(?:[a-z0-9-]+\\.)*([a-z0-9-]+\\.test)$", "replace": "$1"}
            ]
        }},
        "default_sponsor_id": SPONSOR,
    });
    let mut options = psiphond::Options::new(SPONSOR);
    options.ip = ip.to_owned();
    options.psinet = psinet;
    psiphond::start(&dir.join(ip), &options).await
}

/// The `domain_dest_bytes` events of a psiphond log.
fn domain_events(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event_name"] == "domain_dest_bytes")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_a_tunnel_lost_before_reporting_go_with_the_next_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let servers = [
        counting_server(dir.path(), "127.0.0.1").await,
        counting_server(dir.path(), "127.0.0.2").await,
    ];
    let origin = origin().await;
    let config = json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": SPONSOR,
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "DataRootDirectory": dir.path().join("client").display().to_string(),
    });
    let entries: Vec<_> = servers.iter().map(|s| s.entry.clone()).collect();
    let (client, mut notices) = client::start(&config, &entries).await;
    let first = notices
        .wait_for("a tunnel", Duration::from_secs(60), |v| {
            v["noticeType"] == "ActiveTunnel"
        })
        .await;
    let first_id = first["data"]["diagnosticID"].as_str().unwrap().to_owned();
    let (gone, next): (Vec<_>, Vec<_>) = servers
        .into_iter()
        .partition(|s| s.entry.diagnostic_id() == first_id);
    let (gone, next) = (
        gone.into_iter().next().unwrap(),
        next.into_iter().next().unwrap(),
    );

    let http = b"GET / HTTP/1.1\r\nHost: news.example.test\r\n\r\n";
    through_socks(client.socks.unwrap(), origin, http).await;
    // The first server goes away before any status request (the period is minutes).
    gone.server.shutdown().await;
    let next_id = next.entry.diagnostic_id();
    notices
        .wait_for("the next tunnel", Duration::from_secs(60), |v| {
            v["noticeType"] == "ActiveTunnel" && v["data"]["diagnosticID"] == next_id.as_str()
        })
        .await;
    notices.drain();
    // Stopping sends the last status request, through the second tunnel.
    client.shutdown().await;
    next.server.shutdown().await;

    assert!(domain_events(&gone.log).is_empty());
    let events = domain_events(&next.log);
    let r = u64::try_from(RESPONSE_LEN).unwrap();
    let sent = u64::try_from(http.len()).unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["domain"], "example.test");
    assert_eq!(events[0]["bytes"], sent + r, "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_bytes_reach_domain_dest_bytes_and_nothing_else_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let psiphond = counting_server(dir.path(), "127.0.0.1").await;
    let (server, entry, log_path) = (psiphond.server, psiphond.entry, psiphond.log);
    let origin = origin().await;

    let data_root = dir.path().join("client");
    let config = json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": SPONSOR,
        "ClientPlatform": "Android_13_com.example",
        "DeviceRegion": "IR",
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "DataRootDirectory": data_root.display().to_string(),
    });
    let (client, mut notices) = client::start(&config, &[entry]).await;
    notices.wait_for_tunnel().await;
    notices.drain();
    let socks = client.socks.unwrap();

    let http = b"GET /secret/path?token=hunter2 HTTP/1.1\r\nHost: news.example.test\r\nUser-Agent: curl/7.88.1\r\n\r\n";
    let tls = client_hello("video.stream.test");
    let other = b"hello, not a protocol";
    through_socks(socks, origin, http).await;
    through_socks(socks, origin, &tls).await;
    through_socks(socks, origin, other).await;
    // Two more requests to the same domain add up.
    through_socks(socks, origin, http).await;

    // The final status request carries host_bytes; psiphond logs them at shutdown.
    client.shutdown().await;
    server.shutdown().await;

    let text = std::fs::read_to_string(&log_path).unwrap();
    let events = domain_events(&log_path);
    let domains: Vec<&Value> = events.iter().collect();
    let bytes_of = |name: &str| -> u64 {
        let matching: Vec<&&Value> = domains.iter().filter(|e| e["domain"] == name).collect();
        assert_eq!(matching.len(), 1, "{name}: {domains:#?}");
        let e = matching[0];
        assert_eq!(e["sponsor_id"], SPONSOR);
        assert_eq!(e["client_platform"], "Android");
        // `DeviceRegion` from the client's config, next to the GeoIP region.
        assert_eq!(e["device_region"], "IR");
        assert_eq!(e["client_region"], "None");
        assert_eq!(e["bytes_udp"], 0);
        assert_eq!(e["bytes"], e["bytes_tcp"]);
        e["bytes"].as_u64().unwrap()
    };
    let r = u64::try_from(RESPONSE_LEN).unwrap();
    let len = |b: &[u8]| u64::try_from(b.len()).unwrap();
    assert_eq!(bytes_of("example.test"), 2 * (len(http) + r));
    assert_eq!(bytes_of("stream.test"), len(&tls) + r);
    assert_eq!(bytes_of("(OTHER)"), len(other) + r);
    assert_eq!(domains.len(), 3, "{domains:#?}");

    // Privacy: no path, query, raw host, URL or address anywhere in the log.
    for needle in [
        "secret",
        "hunter2",
        "/secret/path",
        "news.example.test",
        "video.stream.test",
        "http://",
        "127.0.0.1",
    ] {
        assert!(!text.contains(needle), "{needle:?} in the log:\n{text}");
    }
}
