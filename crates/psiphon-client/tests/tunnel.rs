//! The client's tunnel against a minimal Psiphon server built in the test from our SSH and OSSH
//! crates: password payload, host key check, handshake parameters validated with
//! psiphon-protocol's server-side validators, connected, status, keepalive, a port forward.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{echo_origin, params, test_server};
use psiphon_client::tunnel;
use psiphon_protocol::{ServerEntry, TunnelProtocol};
use psiphon_ssh::PrivateKey;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
