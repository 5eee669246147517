//! The in-process server reopens its log by name (what `psiphond` does on SIGHUP): after a
//! rotation renamed the file, new lines, here the `domain_dest_bytes` of a client's status
//! request, go to a new file at the configured path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{SPONSOR, connect, fixture, handshake_params, request};
use psiphon_protocol::ApiParams;
use psiphon_server::Server;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_log_gets_the_new_lines() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let conn = connect(&server, &fx.entry, "OSSH").await;
    let hs = handshake_params("OSSH");
    assert!(request(&conn, "psiphon-handshake", &hs).await.is_some());

    let log = fx.path("psiphond.log");
    let rotated = fx.path("psiphond.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    server.reopen_log().unwrap();

    let status = ApiParams::base("ABCDEF", SPONSOR, "5", "Windows")
        .with_status_data(json!({"host_bytes": {"example.test": 1234, "(OTHER)": 5}}));
    assert!(request(&conn, "psiphon-status", &status).await.is_some());
    server.flush_domain_bytes();

    let new = std::fs::read_to_string(&log).unwrap();
    let events: Vec<Value> = new
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let example = events
        .iter()
        .find(|e| e["event_name"] == "domain_dest_bytes" && e["domain"] == "example.test")
        .unwrap_or_else(|| panic!("no domain_dest_bytes in {new}"));
    assert_eq!(example["bytes"], 1234);
    assert_eq!(example["sponsor_id"], SPONSOR);
    assert_eq!(example["client_platform"], "Windows");
    assert_eq!(example["device_region"], "DE");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("server started"), "{old}");
    assert!(!old.contains("domain_dest_bytes"), "{old}");
    drop(conn);
    server.shutdown().await;
}
