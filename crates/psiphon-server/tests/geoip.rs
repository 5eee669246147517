//! GeoIP from configured MaxMind databases (City and ISP types, generated here): the handshake
//! returns the client's country and picks that region's home page, and `server_tunnel` /
//! `unique_user` carry the derived fields, never the address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{fixture, handshake_params, password, request};
use maxminddb_writer::Database;
use maxminddb_writer::paths::IpAddrWithMask;
use psiphon_protocol::api::HandshakeResponse;
use psiphon_server::Server;
use psiphon_server::geoip::GeoIp;
use serde_json::json;

const CLIENT_IP: &str = "127.45.67.89";

/// An ISP record as MaxMind's GeoIP2-ISP databases hold it (the AS number is a uint32).
#[derive(serde::Serialize)]
struct IspRecord {
    isp: &'static str,
    autonomous_system_number: u32,
    autonomous_system_organization: &'static str,
}

fn write_db<T: serde::Serialize>(path: &Path, db_type: &str, value: T) {
    // Written next to the target and renamed over it, as an operator replaces a database.
    let tmp = path.with_extension("tmp");
    let mut db = Database::default();
    db.metadata.database_type = db_type.to_owned();
    db.metadata.binary_format_major_version = 2;
    db.metadata.languages = vec!["en".to_owned()];
    let data = db.insert_value(value).unwrap();
    db.insert_node("127.45.0.0/16".parse::<IpAddrWithMask>().unwrap(), data);
    let file = std::fs::File::create(&tmp).unwrap();
    db.write_to(file).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn databases(dir: &Path) -> Vec<String> {
    let city = dir.join("city.mmdb");
    write_db(
        &city,
        "GeoIP2-City",
        json!({"country": {"iso_code": "CA"}, "city": {"names": {"en": "Sault Ste. Marie"}}}),
    );
    let isp = dir.join("isp.mmdb");
    write_db(
        &isp,
        "GeoIP2-ISP",
        IspRecord {
            isp: "Test Net",
            autonomous_system_number: 64500,
            autonomous_system_organization: "Test Org",
        },
    );
    vec![city.display().to_string(), isp.display().to_string()]
}

#[test]
fn lookups_fill_every_field_and_default_to_none() {
    let dir = tempfile::tempdir().unwrap();
    let geo = GeoIp::open(&databases(dir.path())).unwrap();
    let g = geo.lookup(CLIENT_IP.parse().unwrap());
    assert_eq!(
        (g.region.as_str(), g.city.as_str()),
        ("CA", "Sault_Ste._Marie")
    );
    assert_eq!(
        (g.isp.as_str(), g.asn.as_str(), g.aso.as_str()),
        ("Test_Net", "64500", "Test_Org")
    );
    let other = geo.lookup("127.9.9.9".parse().unwrap());
    assert_eq!(other, psiphon_server::geoip::GeoFields::none());
    let err = GeoIp::open(&[dir.path().join("missing.mmdb").display().to_string()]).unwrap_err();
    assert!(
        err.to_string().contains("missing.mmdb")
            && err.to_string().contains("GeoIPDatabaseFilenames"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_logs_use_geoip_never_the_address() {
    let mut f = fixture(false);
    f.config.geoip_database_filenames = databases(f.dir.path());
    // A home page for Canada, next to the default one.
    let psinet = json!({
        "sponsors": {common::SPONSOR: {"id": common::SPONSOR, "home_pages": {
            "None": [{"region": "None", "url": "https://example.org/elsewhere"}],
            "CA": [{"region": "CA", "url": "https://example.org/ca?client_region=XX"}]
        }}},
        "default_sponsor_id": common::SPONSOR
    });
    std::fs::write(f.path("psinet.json"), psinet.to_string()).unwrap();
    let server = Server::start(f.config.clone()).await.unwrap();
    let source: IpAddr = CLIENT_IP.parse().unwrap();
    let conn = common::connect_with(&server, &f.entry, "OSSH", Some(source), password(&f.entry))
        .await
        .unwrap();
    let body = request(&conn, "psiphon-handshake", &handshake_params("OSSH"))
        .await
        .unwrap();
    let r = HandshakeResponse::from_json(&body).unwrap();
    assert_eq!(r.client_region, "CA");
    assert_eq!(
        r.homepages,
        vec!["https://example.org/ca?client_region=CA".to_owned()]
    );
    let connected = handshake_params("OSSH").with_last_connected(None);
    request(&conn, "psiphon-connected", &connected)
        .await
        .unwrap();
    drop(conn);
    server.shutdown().await;
    let log = f.log_text();
    let tunnel = log
        .lines()
        .find(|l| l.contains("\"server_tunnel\""))
        .expect("a server_tunnel event");
    for want in [
        "\"client_region\":\"CA\"",
        "\"client_city\":\"Sault_Ste._Marie\"",
        "\"client_isp\":\"Test_Net\"",
        "\"client_asn\":\"64500\"",
        "\"client_aso\":\"Test_Org\"",
    ] {
        assert!(tunnel.contains(want), "{want} missing from {tunnel}");
    }
    let unique = log
        .lines()
        .find(|l| l.contains("\"unique_user\""))
        .expect("a unique_user event");
    assert!(unique.contains("\"client_region\":\"CA\""), "{unique}");
    let all = String::from_utf8_lossy(&f.all_written_bytes()).into_owned();
    assert!(!all.contains(CLIENT_IP), "the client address was written");
}

fn password_for(entry: &psiphon_protocol::ServerEntry, session_id: &str) -> String {
    psiphon_protocol::SshPasswordPayload {
        session_id: session_id.to_owned(),
        ssh_password: entry.ssh_password().unwrap().to_owned(),
        client_capabilities: vec![],
        sponsor_id: common::SPONSOR.to_owned(),
    }
    .to_json()
}

async fn region_of(
    server: &Server,
    f: &common::Fixture,
    source: Option<IpAddr>,
    session_id: &str,
) -> String {
    let conn = common::connect_with(
        server,
        &f.entry,
        "OSSH",
        source,
        password_for(&f.entry, session_id),
    )
    .await
    .unwrap();
    let body = request(&conn, "psiphon-handshake", &handshake_params("OSSH"))
        .await
        .unwrap();
    HandshakeResponse::from_json(&body).unwrap().client_region
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_of_a_session_share_its_first_lookup_and_databases_reload() {
    let mut f = fixture(false);
    let paths = databases(f.dir.path());
    f.config.geoip_database_filenames = paths.clone();
    f.config.psinet_reload_period = std::time::Duration::from_millis(50);
    let server = Server::start(f.config.clone()).await.unwrap();
    let canada: IpAddr = CLIENT_IP.parse().unwrap();
    let elsewhere: IpAddr = "127.0.0.1".parse().unwrap();
    let (s1, s2, s3) = (
        "11111111111111111111111111111111",
        "22222222222222222222222222222222",
        "33333333333333333333333333333333",
    );
    assert_eq!(region_of(&server, &f, Some(canada), s1).await, "CA");
    // The same session from another address: still the first lookup.
    assert_eq!(region_of(&server, &f, Some(elsewhere), s1).await, "CA");
    assert_eq!(region_of(&server, &f, Some(elsewhere), s2).await, "None");

    // A new City database: new sessions see it, the old one keeps its cached lookup.
    write_db(
        Path::new(&paths[0]),
        "GeoIP2-City",
        json!({"country": {"iso_code": "FR"}, "city": {"names": {"en": "Lyon"}}, "pad": "x"}),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f.log_text().contains("GeoIP database reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", f.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(region_of(&server, &f, Some(canada), s3).await, "FR");
    assert_eq!(region_of(&server, &f, Some(canada), s1).await, "CA");

    // A broken file: an error naming it, the last good database stays.
    std::fs::write(&paths[0], b"not a database").unwrap();
    while !f.log_text().contains("GeoIP reload failed") {
        assert!(std::time::Instant::now() < deadline, "{}", f.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let log = f.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("GeoIP reload failed"))
        .unwrap();
    assert!(line.contains("city.mmdb"), "{line}");
    assert_eq!(
        region_of(
            &server,
            &f,
            Some(canada),
            "44444444444444444444444444444444"
        )
        .await,
        "FR"
    );
    server.shutdown().await;
    let all = String::from_utf8_lossy(&f.all_written_bytes()).into_owned();
    assert!(!all.contains(CLIENT_IP), "the client address was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_rules_filter_on_the_client_region_and_asn() {
    let mut f = fixture(false);
    f.config.geoip_database_filenames = databases(f.dir.path());
    let rules = json!({
        "DefaultRules": {"RateLimits": {"ReadBytesPerSecond": 100}},
        "FilteredRules": [
            {"Filter": {"Regions": ["CA"], "ASNs": ["64500"], "TunnelProtocols": ["OSSH"]},
             "Rules": {"RateLimits": {"ReadBytesPerSecond": 5000, "WriteBytesPerSecond": 6000}}}
        ]
    });
    std::fs::write(f.path("psiphond-traffic-rules.config"), rules.to_string()).unwrap();
    let server = Server::start(f.config.clone()).await.unwrap();
    let rates = |source: &str, session: &str| {
        let source: IpAddr = source.parse().unwrap();
        let server = &server;
        let f = &f;
        let session = session.to_owned();
        async move {
            let conn = common::connect_with(
                server,
                &f.entry,
                "OSSH",
                Some(source),
                password_for(&f.entry, &session),
            )
            .await
            .unwrap();
            let body = request(&conn, "psiphon-handshake", &handshake_params("OSSH"))
                .await
                .unwrap();
            let r = HandshakeResponse::from_json(&body).unwrap();
            (r.upstream_bytes_per_second, r.downstream_bytes_per_second)
        }
    };
    assert_eq!(
        rates(CLIENT_IP, "55555555555555555555555555555555").await,
        (5000, 6000)
    );
    assert_eq!(
        rates("127.0.0.1", "66666666666666666666666666666666").await,
        (100, 0)
    );
    server.shutdown().await;
}
