//! Discovery end to end: a client that knows only server A learns server B from A's
//! handshake, stores it, and — with A gone — connects to B on its next run, from its
//! datastore alone. Real psiphond (the library) and the real client library, on 127.0.0.1
//! and 127.0.0.2.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use psiphon_client::datastore::{Datastore, Source};
use psiphon_protocol::ServerEntry;
use psiphon_server::Server;
use psiphon_testkit::{client, psiphond};
use serde_json::{Value, json};

const SPONSOR: &str = "721AE60D76700F5A";

/// Generates a server on `ip` with `psinet` and starts it (OSSH and SSH).
async fn start_server(dir: &Path, ip: &str, psinet: &Value) -> (Server, ServerEntry) {
    let mut options = psiphond::Options::new(SPONSOR);
    options.ip = ip.to_owned();
    options.protocols = vec!["OSSH".to_owned(), "SSH".to_owned()];
    options.psinet = psinet.clone();
    let s = psiphond::start(&dir.join(ip), &options).await;
    (s.server, s.entry)
}

fn psinet(discovery: &[&ServerEntry]) -> Value {
    json!({
        "sponsors": {SPONSOR: {"id": SPONSOR, "home_pages": {"None": [{"region": "None", "url": "https://example.org/"}]}}},
        "default_sponsor_id": SPONSOR,
        "discovery_servers": discovery.iter().map(|e| json!({
            "discovery_date_range": ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"],
            "encoded_server_entry": e.encode(),
        })).collect::<Vec<_>>(),
    })
}

/// Runs the client on `data_root` until it has a tunnel; returns the notices seen and stops it.
async fn run_client_once(data_root: &Path, expect_discovery: bool) -> Vec<Value> {
    let config = json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": SPONSOR,
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "EmitDiagnosticNotices": true,
        "DataRootDirectory": data_root.display().to_string(),
    });
    let (client, mut notices) = client::start(&config, &[]).await;
    notices.wait_for_tunnel().await;
    if expect_discovery {
        // The controller stores the handshake's discovery entries right after the tunnel
        // comes up.
        notices
            .wait_for("discovery notice", Duration::from_secs(10), |v| {
                v["data"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("stored ") && m.contains("discovered"))
            })
            .await;
    }
    client.shutdown().await;
    notices.seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_learned_by_discovery_is_used_when_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (server_b, entry_b) = start_server(dir.path(), "127.0.0.2", &psinet(&[])).await;
    let (server_a, entry_a) = start_server(dir.path(), "127.0.0.1", &psinet(&[&entry_b])).await;

    // The client knows only A.
    let data_root = dir.path().join("client");
    {
        let store = Datastore::open(&data_root).unwrap();
        store.store(entry_a.clone(), Source::Embedded).unwrap();
    }
    let first = run_client_once(&data_root, true).await;
    let active: Vec<&Value> = first
        .iter()
        .filter(|v| v["noticeType"] == "ActiveTunnel")
        .collect();
    assert_eq!(active.len(), 1, "{first:#?}");
    assert_eq!(
        active[0]["data"]["diagnosticID"].as_str().unwrap(),
        entry_a.diagnostic_id()
    );
    {
        let store = Datastore::open(&data_root).unwrap();
        let b = store
            .entry("127.0.0.2")
            .unwrap()
            .expect("server B was stored from A's handshake");
        assert_eq!(b.local_source(), Some("DISCOVERY"));
        assert_eq!(b.effective_tag(), entry_b.effective_tag());
        let stamp = b.local_timestamp().unwrap();
        assert!(stamp.ends_with(":00:00Z"), "hour-truncated: {stamp}");
    }

    // A is gone; the next run finds B in the datastore.
    server_a.shutdown().await;
    let second = run_client_once(&data_root, false).await;
    let active: Vec<&Value> = second
        .iter()
        .filter(|v| v["noticeType"] == "ActiveTunnel")
        .collect();
    assert_eq!(
        active.last().unwrap()["data"]["diagnosticID"]
            .as_str()
            .unwrap(),
        entry_b.diagnostic_id(),
        "{second:#?}"
    );
    server_b.shutdown().await;
}
