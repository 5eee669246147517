//! Traffic rules reach the user: psiphond (the library) selects each client's rules after the
//! handshake (here by `client_platform`), returns the rate limits in the handshake, and the
//! client (the library) shows them in its `TrafficRateLimits` notice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use psiphon_protocol::ServerEntry;
use psiphon_testkit::{client, psiphond};
use serde_json::{Value, json};

const SPONSOR: &str = "721AE60D76700F5A";

/// Runs a client with `platform` until it shows its `TrafficRateLimits` notice; returns it.
async fn rate_limits_notice(data_root: &Path, entry: &ServerEntry, platform: &str) -> Value {
    let config = json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": SPONSOR,
        "ClientPlatform": platform,
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "DataRootDirectory": data_root.display().to_string(),
    });
    let (client, mut notices) = client::start(&config, std::slice::from_ref(entry)).await;
    let found = notices
        .wait_for("TrafficRateLimits", Duration::from_secs(60), |v| {
            v["noticeType"] == "TrafficRateLimits"
        })
        .await;
    client.shutdown().await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_is_shown_the_limits_its_rules_give_it() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        json!({
            "DefaultRules": {"RateLimits": {"ReadBytesPerSecond": 0, "WriteBytesPerSecond": 0}},
            "FilteredRules": [{
                "Filter": {"HandshakeParameters": {"client_platform": ["Windows*"]}},
                "Rules": {"RateLimits": {
                    "ReadBytesPerSecond": 125_000,
                    "WriteBytesPerSecond": 1_000_000
                }}
            }]
        })
        .to_string(),
    )
    .unwrap();
    let mut options = psiphond::Options::new(SPONSOR);
    options.config = json!({"TrafficRulesFilename": rules.display().to_string()});
    let server = psiphond::start(&dir.path().join("server"), &options).await;

    // Upstream is what the server reads from the client; downstream what it writes to it.
    let windows = rate_limits_notice(&dir.path().join("w"), &server.entry, "Windows_10").await;
    assert_eq!(
        windows["data"]["upstreamBytesPerSecond"], 125_000,
        "{windows}"
    );
    assert_eq!(
        windows["data"]["downstreamBytesPerSecond"], 1_000_000,
        "{windows}"
    );
    assert_eq!(
        windows["data"]["diagnosticID"].as_str(),
        Some(server.entry.diagnostic_id().as_str())
    );
    let android = rate_limits_notice(&dir.path().join("a"), &server.entry, "Android_13").await;
    assert_eq!(android["data"]["upstreamBytesPerSecond"], 0, "{android}");
    assert_eq!(android["data"]["downstreamBytesPerSecond"], 0, "{android}");
    server.server.shutdown().await;
}
