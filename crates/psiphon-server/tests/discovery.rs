//! Discovery and psinet hot reload through real tunnels on 127.0.0.1: the handshake hands
//! out the one server discovery picks for the client's address, a rewritten psinet file is
//! used without a restart, a broken rewrite keeps the old data, status prunes unknown tags.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use psiphon_protocol::{ApiParams, HandshakeResponse, ServerEntry, StatusResponse};
use psiphon_server::discovery::{Discovery, DiscoveryServer, Strategy};
use psiphon_server::{Config, Server};
use serde_json::{Value, json};

/// The client's own source address: distinct from the server's 127.0.0.1, so a log search
/// for it means something.
const CLIENT_IP: &str = "127.0.0.77";

fn client_ip() -> IpAddr {
    CLIENT_IP.parse().unwrap()
}

/// An encoded server entry for a discovery server.
fn entry(ip: &str) -> String {
    let json = json!({"ipAddress": ip, "tag": format!("tag-{ip}"), "sshPort": 22});
    ServerEntry::from_json(json.to_string().as_bytes())
        .unwrap()
        .encode()
}

fn discovery_servers(ips: &[String]) -> Value {
    ips.iter()
        .map(|ip| {
            json!({
                "discovery_date_range": ["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"],
                "encoded_server_entry": entry(ip),
            })
        })
        .collect()
}

fn psinet(home: &str, ips: &[String]) -> Value {
    json!({
        "sponsors": {
            SPONSOR: {
                "id": SPONSOR,
                "home_pages": {"None": [{"region": "None", "url": home}]},
            }
        },
        "default_sponsor_id": SPONSOR,
        "valid_server_entry_tags": {"known-tag": true},
        "discovery_servers": discovery_servers(ips),
    })
}

fn ips(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}.{i}")).collect()
}

/// The IP the server must hand `CLIENT_IP` for this set, computed independently of the server.
fn expected(set: &[String], strategy: Strategy, hmac_key: &str) -> String {
    let now = SystemTime::now();
    let servers = set
        .iter()
        .map(|ip| DiscoveryServer {
            ip_address: ip.clone(),
            encoded_server_entry: entry(ip),
            date_range: Some((SystemTime::UNIX_EPOCH, now + Duration::from_secs(86_400))),
        })
        .collect();
    let d = Discovery::new(servers, strategy, hmac_key, now);
    d.select(client_ip(), now).unwrap().ip_address.clone()
}

async fn handshake(server: &Server, fx: &Fixture) -> HandshakeResponse {
    let conn = connect_with(
        server,
        &fx.entry,
        "OSSH",
        Some(client_ip()),
        password(&fx.entry),
    )
    .await
    .unwrap();
    let body = request(&conn, "psiphon-handshake", &handshake_params("OSSH"))
        .await
        .expect("handshake refused");
    HandshakeResponse::from_json(&body).unwrap()
}

/// The one discovered entry's IP.
fn discovered(hs: &HandshakeResponse) -> String {
    assert_eq!(
        hs.encoded_server_list.len(),
        1,
        "{:?}",
        hs.encoded_server_list
    );
    ServerEntry::decode(&hs.encoded_server_list[0])
        .unwrap()
        .ip_address_str()
        .to_owned()
}

/// Replaces the psinet file atomically (as an operator should), so the server never reads a
/// half-written file.
fn write_psinet(fx: &Fixture, text: &str) {
    let tmp = fx.path("psinet.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, fx.path("psinet.json")).unwrap();
}

/// Waits (bounded) until the server's log has `count` lines containing `needle`.
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

fn setup(strategy: &str, first: &Value) -> (Fixture, Config) {
    let fx = fixture(false);
    std::fs::write(fx.path("psinet.json"), first.to_string()).unwrap();
    let mut cfg = fx.generated.config.clone();
    cfg["ServerDiscoveryStrategy"] = json!(strategy);
    let mut config = Config::parse(&cfg.to_string(), "test config").unwrap();
    config.handshake_timeout = fx.config.handshake_timeout;
    config.psinet_reload_period = Duration::from_millis(50);
    (fx, config)
}

#[tokio::test]
async fn handshake_discovery_follows_psinet_rewrites() {
    let first_set = ips("198.51.100", 12);
    let second_set = ips("203.0.113", 7);
    let (fx, config) = setup("", &psinet("https://one.example/", &first_set));
    let hmac_key = config.discovery_value_hmac_key.clone();
    let server = Server::start(config).await.unwrap();

    let hs = handshake(&server, &fx).await;
    assert_eq!(hs.homepages, ["https://one.example/"]);
    let ip = discovered(&hs);
    assert!(first_set.contains(&ip), "{ip}");
    assert_eq!(ip, expected(&first_set, Strategy::Consistent, &hmac_key));
    // Consistent: the same address gets the same server again.
    assert_eq!(discovered(&handshake(&server, &fx).await), ip);

    // Rewrite: new home page, new discovery set; seen without a restart.
    write_psinet(
        &fx,
        &psinet("https://two.example/", &second_set).to_string(),
    );
    wait_for_log(&fx, "psinet database reloaded", 1).await;
    let hs = handshake(&server, &fx).await;
    assert_eq!(hs.homepages, ["https://two.example/"]);
    let ip = discovered(&hs);
    assert!(second_set.contains(&ip), "{ip}");
    assert_eq!(ip, expected(&second_set, Strategy::Consistent, &hmac_key));

    // A broken rewrite: an error naming the file, and the second data stays.
    write_psinet(&fx, "{\"sponsors\": ");
    let text = wait_for_log(&fx, "psinet reload failed", 1).await;
    let line = text
        .lines()
        .find(|l| l.contains("psinet reload failed"))
        .unwrap();
    assert!(line.contains("\"level\":\"error\""), "{line}");
    assert!(
        line.contains(&*fx.path("psinet.json").display().to_string()),
        "{line}"
    );
    let hs = handshake(&server, &fx).await;
    assert_eq!(hs.homepages, ["https://two.example/"]);
    assert!(second_set.contains(&discovered(&hs)));

    // A duplicate discovery IP is a broken file too.
    let mut dup = psinet("https://three.example/", &second_set);
    let first = dup["discovery_servers"][0].clone();
    dup["discovery_servers"].as_array_mut().unwrap().push(first);
    write_psinet(&fx, &dup.to_string());
    let text = wait_for_log(&fx, "psinet reload failed", 2).await;
    assert!(text.contains("same IP address"), "{text}");
    assert_eq!(
        handshake(&server, &fx).await.homepages,
        ["https://two.example/"]
    );

    // An empty discovery set: nothing discovered.
    write_psinet(&fx, &psinet("https://four.example/", &[]).to_string());
    wait_for_log(&fx, "psinet database reloaded", 2).await;
    let hs = handshake(&server, &fx).await;
    assert_eq!(hs.homepages, ["https://four.example/"]);
    assert!(hs.encoded_server_list.is_empty());

    server.shutdown().await;
    let all = fx.all_written_bytes();
    assert!(
        !all.windows(CLIENT_IP.len())
            .any(|w| w == CLIENT_IP.as_bytes()),
        "the client address was written by the server"
    );
}

#[tokio::test]
async fn classic_strategy_and_disable_discovery() {
    let set = ips("198.51.100", 30);
    let (fx, config) = setup("classic", &psinet("https://one.example/", &set));
    let hmac_key = config.discovery_value_hmac_key.clone();
    let server = Server::start(config.clone()).await.unwrap();
    // The hour may turn during the handshake: the answer is the one before or after.
    let before = expected(&set, Strategy::Classic, &hmac_key);
    let ip = discovered(&handshake(&server, &fx).await);
    let after = expected(&set, Strategy::Classic, &hmac_key);
    assert!(
        ip == before || ip == after,
        "{ip} is neither {before} nor {after}"
    );
    // Classic differs from consistent for most sets; at least it is in the set.
    assert!(set.contains(&ip));
    server.shutdown().await;

    // DisableDiscovery in the traffic rules: no discovered server.
    let rules = json!({"DefaultRules": {"DisableDiscovery": true}});
    let rules_path = config.traffic_rules_filename.clone().unwrap();
    std::fs::write(&rules_path, rules.to_string()).unwrap();
    let server = Server::start(config).await.unwrap();
    let hs = handshake(&server, &fx).await;
    assert!(
        hs.encoded_server_list.is_empty(),
        "{:?}",
        hs.encoded_server_list
    );
    server.shutdown().await;
}

#[tokio::test]
async fn status_returns_unknown_tags() {
    let (fx, config) = setup("", &psinet("https://one.example/", &ips("198.51.100", 3)));
    let server = Server::start(config).await.unwrap();
    let conn = connect_with(
        &server,
        &fx.entry,
        "SSH",
        Some(client_ip()),
        password(&fx.entry),
    )
    .await
    .unwrap();
    request(&conn, "psiphon-handshake", &handshake_params("SSH"))
        .await
        .expect("handshake refused");
    let status = ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Windows_10")
        .with_status_data(json!({
            "check_server_entry_tags": ["known-tag", "unknown-tag"],
        }));
    let body = request(&conn, "psiphon-status", &status).await.unwrap();
    let response = StatusResponse::from_json(&body).unwrap();
    assert_eq!(response.invalid_server_entry_tags, ["unknown-tag"]);

    // A malformed tag list fails the request.
    let bad = ApiParams::base("ABCDEF0123456789", SPONSOR, "150", "Windows_10")
        .with_status_data(json!({"check_server_entry_tags": "unknown-tag"}));
    assert!(request(&conn, "psiphon-status", &bad).await.is_none());
    server.shutdown().await;
}
