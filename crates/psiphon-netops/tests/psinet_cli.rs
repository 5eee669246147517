//! `psinet` as an operator runs it (the built binary, real processes), and the network it makes
//! serving clients: init, a sponsor with a home page for region None, a channel, five servers
//! on loopback addresses with OS-chosen free ports, a sixth made and retired; psinet exports,
//! the embedded list and the signed remote server list checked; psiphond started from each
//! server's exported files and a Psiphon handshake through each returning the sponsor's home
//! page; errors; file modes; and no trace of a client's address (a session from 127.45.67.89)
//! in the database or in any file written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use psiphon_testkit::nginx;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use psiphon_client::tunnel::{self, ClientParams};
use psiphon_netops::origin::Origin;
use psiphon_protocol::api::HandshakeResponse;
use psiphon_protocol::auth_package::{self, DataReader, ZlibReader};
use psiphon_protocol::{ServerEntry, TunnelProtocol, make_session_id};
use psiphon_server::Server;
use serde_json::Value;
use std::io::Read as _;

const SPONSOR: &str = "0123456789ABCDEF";
const CHANNEL: &str = "FEDCBA9876543210";
const CLIENT_IP: &str = "127.45.67.89";

fn psinet(db: &Path, args: &[&str]) -> Output {
    common::psinet(&[("--db", db)], args)
}

/// Runs psinet and returns its standard output; fails the test if it failed.
fn ok(db: &Path, args: &[&str]) -> String {
    common::succeeded(args, psinet(db, args)).0
}

/// Runs psinet expecting failure; returns its standard error.
fn fails(db: &Path, args: &[&str]) -> String {
    let out = psinet(db, args);
    assert!(!out.status.success(), "psinet {args:?} should have failed");
    assert_eq!(out.status.code(), Some(1), "psinet {args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("psinet: "), "{err}");
    err
}

fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn params() -> ClientParams {
    ClientParams {
        session_id: make_session_id().unwrap(),
        propagation_channel_id: CHANNEL.to_owned(),
        sponsor_id: SPONSOR.to_owned(),
        client_version: "1".to_owned(),
        client_platform: "Windows_10".to_owned(),
        device_region: String::new(),
        api_encoding: Default::default(),
    }
}

/// A Psiphon session over OSSH from `source`, with a handshake: the client library's dial
/// through a direct dialer bound to a chosen loopback address.
async fn handshake_from(source: IpAddr, entry: &ServerEntry) -> HandshakeResponse {
    let net = psiphon_transport::Direct::new(Duration::from_secs(30)).with_local_address(source);
    let stream = tunnel::connect(entry, TunnelProtocol::Ossh, &net)
        .await
        .unwrap();
    let t = tunnel::establish_over(
        stream,
        entry,
        TunnelProtocol::Ossh,
        &params(),
        Duration::from_secs(30),
        std::time::Instant::now(),
    )
    .await
    .unwrap();
    t.handshake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_made_with_psinet_serves_clients() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("net.db");
    let d = |p: &str| dir.path().join(p).display().to_string();

    // No database yet: every command says how to make one.
    let err = fails(&db, &["sponsor", "list"]);
    assert!(
        err.contains("no psinet database at") && err.contains("net.db"),
        "{err}"
    );
    assert!(err.contains("psinet init"), "{err}");

    ok(&db, &["init", "--remote-list-key-bits", "2048"]);
    assert_eq!(mode(&db), 0o600, "the database must be private");
    let err = fails(&db, &["init"]);
    assert!(err.contains("already exists"), "{err}");
    let keys: Value = serde_json::from_str(&ok(&db, &["keys", "--json"])).unwrap();
    let entry_key = keys["ServerEntrySignaturePublicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let list_key = keys["RemoteServerListSignaturePublicKey"]
        .as_str()
        .unwrap()
        .to_owned();

    // The sponsor's home page: a page on loopback (no GeoIP here, so region None).
    let origin = Origin::start().await.unwrap();
    let home = origin.url();
    ok(
        &db,
        &[
            "sponsor",
            "add",
            "--name",
            "Acme",
            "--id",
            &SPONSOR.to_lowercase(),
        ],
    );
    ok(
        &db,
        &["sponsor", "set-homepage", "Acme", "--region", "None", &home],
    );
    ok(
        &db,
        &[
            "sponsor",
            "set-regex",
            SPONSOR,
            "--regex",
            "^(.*)$",
            "--replace",
            "$1",
        ],
    );
    ok(
        &db,
        &[
            "channel",
            "add",
            "--name",
            "web",
            "--id",
            CHANNEL,
            "--mechanism",
            "static-download",
        ],
    );
    ok(
        &db,
        &[
            "client-version",
            "add",
            "--platform",
            "Windows",
            "--version",
            "200",
        ],
    );
    let sponsors: Value = serde_json::from_str(&ok(&db, &["sponsor", "list", "--json"])).unwrap();
    assert_eq!(sponsors[0]["id"], SPONSOR);
    assert_eq!(sponsors[0]["home_pages"]["None"][0]["url"], home.as_str());
    let table = ok(&db, &["sponsor", "list"]);
    assert!(
        table.starts_with("ID ") && table.contains("Acme"),
        "{table}"
    );

    // Errors: clear messages, exit status 1.
    let err = fails(&db, &["sponsor", "add", "--name", "Bad", "--id", "12345"]);
    assert!(
        err.contains("--id \"12345\"") && err.contains("16 hexadecimal"),
        "{err}"
    );
    let err = fails(
        &db,
        &["channel", "add", "--name", "x", "--id", "XYZ0123456789ABC"],
    );
    assert!(err.contains("16 hexadecimal"), "{err}");
    let err = fails(
        &db,
        &[
            "sponsor",
            "set-homepage",
            "Nobody",
            "--region",
            "None",
            &home,
        ],
    );
    assert!(err.contains("no sponsor \"Nobody\""), "{err}");
    let err = fails(&db, &["sponsor", "show", "FFFFFFFFFFFFFFFF"]);
    assert!(err.contains("no sponsor"), "{err}");
    let err = fails(&db, &["sponsor", "add", "--name", "Acme"]);
    assert!(
        err.contains("sponsor name \"Acme\" already exists"),
        "{err}"
    );

    // Six servers on six loopback addresses (one server per IP address, as clients key
    // entries by address), ports picked free by the OS.
    let mut ips = Vec::new();
    for i in 0..6 {
        let ip = format!("127.0.0.{}", 11 + i);
        let (ossh, ssh) = (free_port(&ip), free_port(&ip));
        let sdir = d(&format!("s{i}"));
        let log = format!("{sdir}/psiphond.log");
        let out = ok(
            &db,
            &[
                "server",
                "new",
                "--ip",
                &ip,
                "--protocol",
                &format!("OSSH:{ossh}"),
                "--protocol",
                &format!("SSH:{ssh}"),
                "--channel",
                "web",
                "--embedded",
                "--region",
                "NL",
                "--id",
                &format!("s{i}"),
                "--out",
                &sdir,
                "--log-file",
                &log,
                "--json",
            ],
        );
        let s: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(s["ip_address"], ip.as_str());
        assert_eq!(s["ports"]["OSSH"], ossh);
        assert_eq!(s["region"], "NL");
        // New servers are discovery servers from tomorrow, for 7 days.
        let range = s["discovery_date_range"].as_array().unwrap();
        assert!(
            range[0].as_str().unwrap().ends_with("T00:00:00Z"),
            "{range:?}"
        );
        ips.push(ip);
    }
    let err = fails(
        &db,
        &[
            "server",
            "new",
            "--ip",
            "127.0.0.11",
            "--protocol",
            "OSSH:1",
            "--channel",
            "web",
            "--out",
            &d("dup"),
        ],
    );
    assert!(
        err.contains("127.0.0.11") && err.contains("already exists") && err.contains("s0"),
        "{err}"
    );
    assert!(!dir.path().join("dup").join("psiphond.config").exists());
    let err = fails(
        &db,
        &[
            "server",
            "new",
            "--ip",
            "127.0.0.30",
            "--protocol",
            "OSSH:1",
            "--channel",
            "nope",
        ],
    );
    assert!(err.contains("no propagation channel \"nope\""), "{err}");
    let err = fails(
        &db,
        &[
            "server",
            "new",
            "--ip",
            "127.0.0.30",
            "--protocol",
            "QUIC-OSSH:1",
            "--channel",
            "web",
        ],
    );
    assert!(err.contains("--protocol \"QUIC-OSSH:1\""), "{err}");

    ok(&db, &["server", "retire", "s5"]);
    let retired_ip = ips.pop().unwrap();
    let err = fails(&db, &["server", "retire", "s5"]);
    assert!(err.contains("already retired"), "{err}");
    let live: Value = serde_json::from_str(&ok(&db, &["server", "list", "--json"])).unwrap();
    assert_eq!(live.as_array().unwrap().len(), 5);
    let all: Value =
        serde_json::from_str(&ok(&db, &["server", "list", "--all", "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 6);
    let live_tags: BTreeSet<String> = live
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tag"].as_str().unwrap().to_owned())
        .collect();
    let retired_tag = all[5]["tag"].as_str().unwrap().to_owned();
    assert!(!live_tags.contains(&retired_tag));

    // Each server's psinet database.
    for (i, own_ip) in ips.iter().enumerate() {
        let path = d(&format!("s{i}/psinet.json"));
        ok(
            &db,
            &[
                "export",
                "psinet",
                "--server",
                &format!("s{i}"),
                "--out",
                &path,
            ],
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["sponsors"][SPONSOR]["home_pages"]["None"][0]["url"],
            home.as_str()
        );
        assert!(
            v["sponsors"][SPONSOR].get("name").is_none(),
            "names stay in the database"
        );
        assert_eq!(v["client_versions"]["Windows"][0]["version"], "200");
        assert!(
            v.get("default_sponsor_id").is_none(),
            "no default sponsor was set"
        );
        let tags: BTreeSet<String> = v["valid_server_entry_tags"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(tags, live_tags);
        let discovery = v["discovery_servers"].as_array().unwrap();
        assert_eq!(discovery.len(), 4, "the other live servers");
        for ds in discovery {
            let range = ds["discovery_date_range"].as_array().unwrap();
            assert_eq!(range.len(), 2);
            let entry = ServerEntry::decode(ds["encoded_server_entry"].as_str().unwrap()).unwrap();
            entry.verify_signature(&entry_key).unwrap();
            assert_ne!(entry.ip_address_str(), own_ip);
            assert_ne!(entry.ip_address_str(), retired_ip);
        }
        let parsed = psiphon_server::psinet::Database::parse(&text, &path).unwrap();
        assert_eq!(
            parsed.homepages(SPONSOR, "None", "None", "", false),
            std::slice::from_ref(&home)
        );
        assert_eq!(parsed.valid_server_entry_tags.len(), 5);
    }
    let err = fails(&db, &["export", "psinet", "--server", "s5"]);
    assert!(err.contains("retired"), "{err}");

    // The database holds each server's keys: its files can be written again.
    ok(&db, &["server", "files", "s0", "--out", &d("s0-again")]);
    for name in ["psiphond.config", "server-entry.dat", "psinet.json"] {
        assert_eq!(
            std::fs::read(dir.path().join("s0-again").join(name)).unwrap(),
            std::fs::read(dir.path().join("s0").join(name)).unwrap(),
            "{name}"
        );
    }
    let err = fails(&db, &["server", "files", "s0", "--out", &d("s0-again")]);
    assert!(err.contains("already exists (pass --force"), "{err}");

    // The remote server list: signed, exactly the five live servers, entries signed.
    ok(
        &db,
        &[
            "publish",
            "remote-list",
            "--channel",
            "web",
            "--out",
            &d("pub"),
        ],
    );
    let package = std::fs::read(dir.path().join("pub/server_list_compressed")).unwrap();
    let data = auth_package::open_package(&package, &list_key).unwrap();
    auth_package::verify_stream(ZlibReader::new(package.as_slice()), &list_key).unwrap();
    let mut streamed = String::new();
    DataReader::new(ZlibReader::new(package.as_slice()))
        .unwrap()
        .read_to_string(&mut streamed)
        .unwrap();
    assert_eq!(streamed, data);
    let entries: Vec<ServerEntry> = data
        .lines()
        .map(|l| ServerEntry::decode(l).unwrap())
        .collect();
    let listed: BTreeSet<&str> = entries.iter().map(ServerEntry::ip_address_str).collect();
    assert_eq!(listed, ips.iter().map(String::as_str).collect());
    for e in &entries {
        e.verify_signature(&entry_key).unwrap();
        assert_eq!(e.region(), Some("NL"));
    }
    let embedded = ok(&db, &["embedded-list", "--channel", CHANNEL]);
    assert_eq!(
        embedded.lines().collect::<Vec<_>>(),
        data.lines().collect::<Vec<_>>()
    );

    // psiphond from each server's files, and a handshake through each: the sponsor's page.
    let mut servers = Vec::new();
    for i in 0..5 {
        let mut config =
            psiphon_server::Config::read(&dir.path().join(format!("s{i}/psiphond.config")))
                .unwrap();
        // The test's web origin is on loopback, which a production server refuses to reach.
        config.allow_bogons = true;
        servers.push(Server::start(config).await.unwrap());
    }
    let params = params();
    for (i, entry) in entries.iter().enumerate() {
        let protocol = if i % 2 == 0 {
            TunnelProtocol::Ossh
        } else {
            TunnelProtocol::Ssh
        };
        let t = tunnel::establish(entry, protocol, &params, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{} over {protocol}: {e}", entry.ip_address_str()));
        assert_eq!(
            t.handshake.homepages,
            vec![home.clone()],
            "{}",
            entry.ip_address_str()
        );
    }
    // The user's side (the "done when"): the published directory served by a real
    // nginx, and a client that knows nothing but the list's URL and the network's keys.
    browse_from_the_published_list(&dir.path().join("pub"), &list_key, &entry_key, &home).await;

    // A session from a known client address.
    let reply = handshake_from(CLIENT_IP.parse().unwrap(), &entries[0]).await;
    assert_eq!(reply.homepages, vec![home.clone()]);
    for s in servers {
        s.shutdown().await;
    }
    // psinet's outputs made after that session too.
    ok(
        &db,
        &[
            "export",
            "psinet",
            "--server",
            "s0",
            "--out",
            &d("after/psinet.json"),
        ],
    );
    ok(
        &db,
        &[
            "publish",
            "remote-list",
            "--channel",
            "web",
            "--out",
            &d("after"),
        ],
    );
    ok(
        &db,
        &[
            "embedded-list",
            "--channel",
            "web",
            "--out",
            &d("after/embedded.dat"),
        ],
    );

    // Every file psinet or psiphond wrote: private, and free of the client's address.
    let mut files = Vec::new();
    common::files_under(dir.path(), &mut files);
    assert!(files.len() >= 5 * 5 + 2, "{files:?}");
    let logged = files
        .iter()
        .filter(|f| f.ends_with("psiphond.log"))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter(|t| t.contains("server_tunnel"))
        .count();
    assert!(logged >= 1, "no psiphond logged a tunnel");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        if !name.ends_with(".log") {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in [CLIENT_IP, "45.67.89", "127.45."] {
            assert!(!text.contains(needle), "{needle} found in {}", f.display());
        }
        assert!(!text.contains(&hex::encode(CLIENT_IP)), "{}", f.display());
    }
}

/// Serves `publish_dir` with nginx, starts a client configured with only the list URL and the
/// keys, waits for its tunnel, and fetches `page` through its HTTP proxy.
async fn browse_from_the_published_list(
    publish_dir: &Path,
    list_key: &str,
    entry_key: &str,
    page: &str,
) {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(web) = nginx::start(publish_dir, "1m") else {
        return;
    };
    let data_root = tempfile::tempdir().unwrap();
    let config_text = serde_json::json!({
        "PropagationChannelId": CHANNEL,
        "SponsorId": SPONSOR,
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "EmitDiagnosticNotices": true,
        "DataRootDirectory": data_root.path().display().to_string(),
        "RemoteServerListURLs": [{
            "URL": base64::engine::general_purpose::STANDARD
                .encode(web.url("/server_list_compressed")),
        }],
        "RemoteServerListSignaturePublicKey": list_key,
        "ServerEntrySignaturePublicKey": entry_key,
    })
    .to_string();
    let (config, unknown) =
        psiphon_client::config::Config::parse(&config_text, "client.json").unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    let store =
        std::sync::Arc::new(psiphon_client::datastore::Datastore::open(data_root.path()).unwrap());
    let (notices, mut lines) = psiphon_client::notice::Notices::channel(4096, true);
    let client = psiphon_client::app::start(&config, store.clone(), notices)
        .await
        .unwrap();
    let mut seen = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.recv().await {
            let v: Value = serde_json::from_str(&line).unwrap();
            let up = v["noticeType"] == "Tunnels" && v["data"]["count"] == 1;
            seen.push(v);
            if up {
                return;
            }
        }
    })
    .await;
    assert!(up.is_ok(), "no tunnel from the remote list: {seen:#?}");
    assert_eq!(
        store.count().unwrap(),
        5,
        "the five live servers were stored"
    );
    let homepage_notices = seen
        .iter()
        .filter(|v| v["noticeType"] == "Homepage")
        .count();
    assert_eq!(homepage_notices, 1, "{seen:#?}");
    tokio::spawn(async move { while lines.recv().await.is_some() {} });

    // A plain HTTP GET through the client's HTTP proxy, as a browser configured with it does.
    let mut s = tokio::net::TcpStream::connect(client.http.unwrap())
        .await
        .unwrap();
    let host = page
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    s.write_all(
        format!("GET {page} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    client.shutdown().await;
}

#[test]
fn every_command_has_help() {
    let db = Path::new("/nonexistent/psinet.db");
    for args in [
        &["--help"][..],
        &["init", "--help"],
        &["keys", "--help"],
        &["sponsor", "add", "--help"],
        &["sponsor", "set-homepage", "--help"],
        &["sponsor", "set-regex", "--help"],
        &["channel", "add", "--help"],
        &["server", "new", "--help"],
        &["server", "import", "--help"],
        &["server", "retire", "--help"],
        &["server", "files", "--help"],
        &["export", "psinet", "--help"],
        &["embedded-list", "--help"],
        &["publish", "remote-list", "--help"],
        &["quickstart", "--help"],
    ] {
        let out = ok(db, args);
        assert!(out.contains("Usage: psinet"), "{args:?}: {out}");
    }
    // A usage error is exit status 2 and names the problem.
    let out = psinet(
        db,
        &[
            "server",
            "new",
            "--ip",
            "not-an-ip",
            "--protocol",
            "OSSH:1",
            "--channel",
            "c",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ip"));
}

#[test]
fn import_and_the_database_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("env.db");
    // PSINET_DB names the database when --db is not given.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_psinet"))
        .args(["init", "--remote-list-key-bits", "2048"])
        .env("PSINET_DB", &db)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.exists());
    ok(&db, &["channel", "add", "--name", "imports"]);
    // A server made by psiphond generate, imported: re-signed with the network key.
    let sdir = dir.path().join("gen");
    std::fs::create_dir_all(&sdir).unwrap();
    let generated = psiphon_server::generate_files(&psiphon_server::GenerateOptions {
        ip_address: "192.0.2.7".to_owned(),
        protocols: vec![("OSSH".to_owned(), 443)],
        log_filename: None,
        config_path: sdir.join("psiphond.config"),
        traffic_rules_path: sdir.join("psiphond-traffic-rules.config"),
        psinet_path: sdir.join("psinet.json"),
        server_entry_path: sdir.join("server-entry.dat"),
    })
    .unwrap();
    let file = sdir.join("server-entry.dat").display().to_string();
    let s: Value = serde_json::from_str(&ok(
        &db,
        &[
            "server",
            "import",
            &file,
            "--channel",
            "imports",
            "--permanent",
            "--no-discovery",
            "--region",
            "DE",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(s["ip_address"], "192.0.2.7");
    assert!(s["discovery_date_range"].is_null());
    let keys: Value = serde_json::from_str(&ok(&db, &["keys", "--json"])).unwrap();
    let list = ok(&db, &["embedded-list", "--channel", "imports"]);
    let entry = ServerEntry::decode(list.trim()).unwrap();
    entry
        .verify_signature(keys["ServerEntrySignaturePublicKey"].as_str().unwrap())
        .unwrap();
    assert_eq!(entry.region(), Some("DE"));
    let original = ServerEntry::decode(&generated.encoded_server_entry).unwrap();
    assert_eq!(entry.tag(), original.tag());
    let err = fails(&db, &["server", "import", &file, "--channel", "imports"]);
    assert!(
        err.contains("192.0.2.7") && err.contains("already exists"),
        "{err}"
    );
    let err = fails(
        &db,
        &["server", "files", s["id"].as_str().unwrap(), "--out", "x"],
    );
    assert!(err.contains("imported"), "{err}");
    let table = ok(&db, &["server", "list"]);
    assert!(
        table.contains("192.0.2.7") && table.contains("OSSH:443"),
        "{table}"
    );
}
