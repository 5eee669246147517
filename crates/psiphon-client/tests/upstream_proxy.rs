#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The whole client behind an upstream HTTP proxy (`UpstreamProxyURL` with Basic auth and
//! `CustomHeaders`): every tunnel dial is a CONNECT through it, and a dead proxy gives the
//! `UpstreamProxyError` notice. (Real tinyproxy and Dante are exercised in psiphon-transport's
//! tests and in the censor lab.)

mod common;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use common::{echo_origin, test_server};
use psiphon_client::datastore::{Datastore, Source};
use psiphon_client::notice::Notices;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A minimal HTTP CONNECT proxy that records each request head.
async fn connect_proxy(heads: Arc<Mutex<Vec<String>>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut r = BufReader::new(c);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                heads.lock().unwrap().push(head);
                let mut c = r.into_inner();
                let Ok(mut up) = TcpStream::connect(target.as_str()).await else {
                    let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
            });
        }
    });
    port
}

async fn start_client(
    proxy_url: &str,
    entry: psiphon_protocol::ServerEntry,
) -> (
    psiphon_client::app::Client,
    tokio::sync::mpsc::Receiver<String>,
) {
    let config_text = serde_json::json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": "721AE60D76700F5A",
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "EmitDiagnosticNotices": true,
        "UpstreamProxyURL": proxy_url,
        "CustomHeaders": {"X-Psiphon-Test": ["yes"]},
    })
    .to_string();
    let (config, unknown) =
        psiphon_client::config::Config::parse(&config_text, "client.json").unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    let store = Datastore::in_memory().unwrap();
    store.store(entry, Source::Embedded).unwrap();
    let (notices, rx) = Notices::channel(4096, true);
    let client = psiphon_client::app::start(&config, Arc::new(store), notices)
        .await
        .unwrap();
    (client, rx)
}

async fn wait_for(rx: &mut tokio::sync::mpsc::Receiver<String>, notice_type: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = rx.recv().await {
            let v: Value = serde_json::from_str(&line).unwrap();
            let hit = v["noticeType"] == notice_type
                && (notice_type != "Tunnels" || v["data"]["count"] == 1);
            seen.push(v);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {notice_type}: {seen:#?}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_go_through_the_upstream_proxy() {
    let server = test_server().await;
    let origin = echo_origin().await;
    let heads = Arc::new(Mutex::new(Vec::new()));
    let proxy = connect_proxy(heads.clone()).await;
    let (client, mut rx) = start_client(
        &format!("http://user:p%40ss@127.0.0.1:{proxy}"),
        server.entry.clone(),
    )
    .await;
    wait_for(&mut rx, "Tunnels").await;

    // A forward through the local SOCKS proxy reaches the origin.
    let mut s = TcpStream::connect(client.socks.unwrap()).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&origin.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 0);
    s.write_all(b"via proxy").await.unwrap();
    let mut back = [0u8; 9];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"via proxy");

    let heads = heads.lock().unwrap().clone();
    assert!(!heads.is_empty(), "no CONNECT reached the proxy");
    let first = &heads[0];
    assert!(first.starts_with("CONNECT 127.0.0.1:"), "{first}");
    // user:p@ss, percent-decoded, in Basic auth; the custom header sent.
    assert!(
        first.contains("Proxy-Authorization: Basic dXNlcjpwQHNz\r\n"),
        "{first}"
    );
    assert!(first.contains("X-Psiphon-Test: yes\r\n"), "{first}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_proxy_is_reported() {
    let server = test_server().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (client, mut rx) =
        start_client(&format!("http://127.0.0.1:{dead}"), server.entry.clone()).await;
    let seen = wait_for(&mut rx, "UpstreamProxyError").await;
    let notice = seen.last().unwrap();
    let message = notice["data"]["message"].as_str().unwrap();
    assert!(!message.contains("user"), "{message}");
    client.shutdown().await;
}

#[test]
fn bad_proxy_settings_name_the_key() {
    for (extra, key) in [
        (
            r#""UpstreamProxyURL":"ftp://127.0.0.1:1""#,
            "UpstreamProxyURL",
        ),
        (
            r#""UpstreamProxyURL":"http://127.0.0.1""#,
            "UpstreamProxyURL",
        ),
        (r#""CustomHeaders":{"X-A":["a\r\nb"]}"#, "CustomHeaders"),
        (r#""CustomHeaders":["x"]"#, "CustomHeaders"),
    ] {
        let text = format!(
            r#"{{"PropagationChannelId":"24BCA4EE20BEB92C","SponsorId":"721AE60D76700F5A",{extra}}}"#
        );
        let err = psiphon_client::config::Config::parse(&text, "client.json").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(key) && msg.contains("client.json"),
            "{extra}: {msg}"
        );
    }
}
