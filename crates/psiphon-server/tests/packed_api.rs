//! A real tunnel speaking the API the way a stock tunnel-core client does: packed-CBOR
//! `psiphon-handshake` (asking for the CBOR response), `psiphon-connected` and
//! `psiphon-status`, using the exact request bodies tunnel-core's client produced
//! (`shared/reference/vectors/api.json`); malformed packed bodies are refused and logged
//! without client data, and the tunnel carries on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::*;
use psiphon_protocol::api::StatusData;
use psiphon_protocol::{ApiParams, ConnectedResponse, HandshakeResponse, StatusResponse};
use psiphon_server::Server;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("PSIPHON_VECTORS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/vectors/"
        )),
    }
}

/// The packed-CBOR handshake and connected bodies tunnel-core's client sent.
fn tunnel_core_packed_bodies() -> (Vec<u8>, Vec<u8>) {
    let path = vectors_dir().join("api.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read known-answer vectors {}: {e}; set PSIPHON_VECTORS_DIR",
            path.display()
        )
    });
    let v: Value = serde_json::from_str(&text).unwrap();
    let case = v["handshake"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["encoding"] == "packed-cbor")
        .unwrap();
    let body = |k: &str| hex::decode(case[k].as_str().unwrap()).unwrap();
    (body("handshake_body_hex"), body("connected_body_hex"))
}

async fn raw_request(conn: &psiphon_ssh::Connection, name: &str, body: &[u8]) -> Option<Vec<u8>> {
    conn.handle().global_request(name, body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_core_packed_requests() {
    let fx = fixture(true);
    let server = Server::start(fx.config.clone()).await.unwrap();
    let origin = echo_origin().await;
    let conn = connect(&server, &fx.entry, "OSSH").await;
    let (handshake, connected) = tunnel_core_packed_bodies();

    // Malformed packed handshakes: refused, the tunnel stays up.
    for bad in [
        &handshake[..handshake.len() / 2],
        &[0x00, 0x01][..],
        &[0x00, 0x01, 0xa1, 0x08, 0x63, b'1', b'8', b'9'],
        &[0x00, 0x01, 0xbf, 0x08, 0x18, 0xbd],
    ] {
        assert!(raw_request(&conn, "psiphon-handshake", bad).await.is_none());
    }
    // Connected before the handshake: refused.
    assert!(
        raw_request(&conn, "psiphon-connected", &connected)
            .await
            .is_none()
    );

    // tunnel-core's own handshake body; it asks for the CBOR response.
    let body = raw_request(&conn, "psiphon-handshake", &handshake)
        .await
        .expect("packed handshake refused");
    assert!(HandshakeResponse::from_json(&body).is_err(), "not CBOR");
    let hs = HandshakeResponse::from_cbor(&body).unwrap();
    assert_eq!(hs.padding, " ".repeat(221));
    assert_eq!(hs.client_region, "None");
    assert!(hs.server_timestamp.ends_with('Z') && hs.server_timestamp.len() == 20);
    assert!(!hs.homepages.is_empty());
    assert_eq!(hs.https_request_regexes.len(), 1);

    // Port forwards work after a packed handshake.
    let ch = conn
        .handle()
        .open_direct_tcpip(&origin.ip().to_string(), origin.port())
        .await
        .unwrap();
    drop(ch);

    // tunnel-core's connected body: a JSON answer, as tunnel-core's psiphond gives.
    let body = raw_request(&conn, "psiphon-connected", &connected)
        .await
        .expect("packed connected refused");
    let r = ConnectedResponse::from_json(&body).unwrap();
    assert!(r.connected_timestamp.ends_with(":00:00Z"));
    assert_eq!(r.padding, " ".repeat(172));

    // A packed status request (statusData as JSON text in a byte string).
    let status = ApiParams::base("FEDCBA9876543210", SPONSOR, "189", "Android_13")
        .with_status_data(
            StatusData {
                check_server_entry_tags: vec!["dGFn".to_owned()],
                ..StatusData::default()
            }
            .to_value(),
        )
        .with_padding(4, 9)
        .to_packed()
        .unwrap();
    let body = raw_request(&conn, "psiphon-status", &status)
        .await
        .expect("packed status refused");
    let r = StatusResponse::from_json(&body).unwrap();
    assert_eq!(r.padding, " ".repeat(9));
    // A malformed packed status: refused; the tunnel still answers afterwards.
    assert!(
        raw_request(&conn, "psiphon-status", &status[..status.len() - 3])
            .await
            .is_none()
    );
    assert!(
        raw_request(&conn, "psiphon-status", &status)
            .await
            .is_some()
    );
    // Packed client verification: the empty stub answer.
    assert_eq!(
        raw_request(&conn, "psiphon-client-verification", &status).await,
        Some(Vec::new())
    );

    drop(conn);
    server.shutdown().await;
    let log = fx.log_text();
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rejected: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_name"] == "api_request_rejected")
        .collect();
    let reasons: Vec<(&str, &str)> = rejected
        .iter()
        .map(|e| {
            (
                e["request_name"].as_str().unwrap(),
                e["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("psiphon-handshake", "malformed_packed_body"),
            ("psiphon-handshake", "malformed_packed_body"),
            ("psiphon-handshake", "malformed_packed_body"),
            ("psiphon-handshake", "malformed_packed_body"),
            ("psiphon-connected", "handshake_required"),
            ("psiphon-status", "malformed_packed_body"),
        ]
    );
    for e in &rejected {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert!(
            keys == [
                "event_name",
                "host_id",
                "reason",
                "request_name",
                "timestamp"
            ] || keys
                == [
                    "encoding",
                    "event_name",
                    "host_id",
                    "reason",
                    "request_name",
                    "timestamp"
                ],
            "{keys:?}"
        );
    }
    let tunnel = events
        .iter()
        .find(|e| e["event_name"] == "server_tunnel")
        .expect("no server_tunnel event");
    assert_eq!(tunnel["handshake_completed"], true);
    assert_eq!(tunnel["sponsor_id"], SPONSOR);
    assert_eq!(tunnel["client_platform"], "Android_13_com.psiphon3");
    assert_eq!(tunnel["client_version"], 189);
    assert_eq!(tunnel["relay_protocol"], "OSSH");
    assert_eq!(tunnel["last_connected"], "None");
    assert_eq!(tunnel["establishment_duration"], 2500);
    assert_eq!(tunnel["status_request_count"], 2);
    assert_eq!(tunnel["api_request_rejected_count"], 6);
    assert!(log.contains("\"unique_user\""));
    assert!(!log.contains("127.0.0.1"), "{log}");
}
