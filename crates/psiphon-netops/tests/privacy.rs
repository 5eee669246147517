//! The privacy promises, as one sweep over a whole network run the way an operator runs it.
//!
//! psinet makes the network (keys, a sponsor with statistics regexes, a channel, a server
//! whose config points psiphond at GeoIP databases the test writes); psiphond (the library)
//! runs from exactly those files; four clients (the library), each leaving from its own
//! distinctive loopback address (`OutboundBindAddress`), two from "Iran" and two from
//! "Russia", over OSSH and SSH, fetch pages from a real nginx with curl through the SOCKS and
//! HTTP proxies, over HTTP and TLS, at URLs with secret paths and query strings. Then the
//! operator ingests psiphond's log and prints per-day, per-sponsor, per-region reports in
//! every format, with a chart.
//!
//! The reports must show the regions, sessions, users and domain bytes; and every byte
//! psiphond, psinet and the clients' data roots wrote is searched for each client address in
//! every textual form (dotted, reversed, hex, IPv4-mapped IPv6, decimal), each URL path, each
//! query string and each raw host name: zero hits. (zlib streams, such as the signed remote
//! list, are searched inflated too.)
//!
//! Needs curl and nginx: skips without them unless `PSIPHON_REQUIRE_CURL` /
//! `PSIPHON_REQUIRE_NGINX` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use maxminddb_writer::Database;
use maxminddb_writer::paths::IpAddrWithMask;
use psiphon_client::app;
use psiphon_protocol::ServerEntry;
use psiphon_testkit::{client, nginx, psiphond};
use serde_json::{Value, json};

const SPONSOR: &str = "721AE60D76700F5A";
const CHANNEL: &str = "24BCA4EE20BEB92C";

/// One client: where it comes from, how it tunnels, and how it browses.
struct Person {
    source: Ipv4Addr,
    protocol: &'static str,
    proxy: Proxy,
}

#[derive(Clone, Copy)]
enum Proxy {
    Socks,
    Http,
}

/// 127.45.0.0/16 is "Iran", 127.46.0.0/16 "Russia" in the test's GeoIP databases.
const PEOPLE: [Person; 4] = [
    Person {
        source: Ipv4Addr::new(127, 45, 67, 89),
        protocol: "OSSH",
        proxy: Proxy::Socks,
    },
    Person {
        source: Ipv4Addr::new(127, 45, 201, 17),
        protocol: "SSH",
        proxy: Proxy::Http,
    },
    Person {
        source: Ipv4Addr::new(127, 46, 113, 5),
        protocol: "SSH",
        proxy: Proxy::Socks,
    },
    Person {
        source: Ipv4Addr::new(127, 46, 9, 250),
        protocol: "OSSH",
        proxy: Proxy::Http,
    },
];

/// The pages fetched: (raw host, path, query).
const HTTP_PAGE: (&str, &str, &str) = (
    "news.privacy.test",
    "/private/article-8c1f.html",
    "user=alice-5d2e&token=q9b1c0ffee",
);
const TLS_PAGE: (&str, &str, &str) = (
    "video.privacy.test",
    "/watch/clip-77aa.html",
    "t=dissident-4e4e",
);

/// Runs psinet on the network database `db` (and the statistics store `stats`); returns
/// its standard output.
fn psinet(db: &Path, stats: &Path, args: &[&str]) -> String {
    common::succeeded(
        args,
        common::psinet(&[("--db", db), ("--stats-db", stats)], args),
    )
    .0
}

fn write_geoip<T: serde::Serialize>(path: &Path, db_type: &str, records: Vec<(&str, T)>) {
    let mut db = Database::default();
    db.metadata.database_type = db_type.to_owned();
    db.metadata.binary_format_major_version = 2;
    db.metadata.languages = vec!["en".to_owned()];
    for (net, value) in records {
        let data = db.insert_value(value).unwrap();
        db.insert_node(net.parse::<IpAddrWithMask>().unwrap(), data);
    }
    db.write_to(std::fs::File::create(path).unwrap()).unwrap();
}

/// An ISP record as MaxMind's GeoIP2-ISP databases hold it (the AS number is a uint32, which
/// a `serde_json::Value` would widen).
#[derive(serde::Serialize)]
struct Isp {
    isp: &'static str,
    autonomous_system_number: u32,
    autonomous_system_organization: &'static str,
}

/// City and ISP databases placing the test's two /16s in Iran and Russia.
fn geoip_databases(dir: &Path) -> [PathBuf; 2] {
    std::fs::create_dir_all(dir).unwrap();
    let city = dir.join("GeoIP2-City.mmdb");
    write_geoip(
        &city,
        "GeoIP2-City",
        vec![
            (
                "127.45.0.0/16",
                json!({"country": {"iso_code": "IR"}, "city": {"names": {"en": "Tehran"}}}),
            ),
            (
                "127.46.0.0/16",
                json!({"country": {"iso_code": "RU"}, "city": {"names": {"en": "Moscow"}}}),
            ),
        ],
    );
    let isp = dir.join("GeoIP2-ISP.mmdb");
    write_geoip(
        &isp,
        "GeoIP2-ISP",
        vec![
            (
                "127.45.0.0/16",
                Isp {
                    isp: "Test Telecom Iran",
                    autonomous_system_number: 64512,
                    autonomous_system_organization: "Test AS IR",
                },
            ),
            (
                "127.46.0.0/16",
                Isp {
                    isp: "Test Telecom Russia",
                    autonomous_system_number: 64513,
                    autonomous_system_organization: "Test AS RU",
                },
            ),
        ],
    );
    [city, isp]
}

/// A port that was free a moment ago (psinet writes fixed ports into the server's files, as
/// for a real server).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a client on `data_root` leaving from `person.source`, waits for its tunnel.
async fn start_client(
    data_root: &Path,
    entries: &[ServerEntry],
    signature_key: &str,
    person: &Person,
) -> app::Client {
    let config = json!({
        "PropagationChannelId": CHANNEL,
        "SponsorId": SPONSOR,
        "ClientPlatform": "Android_13_com.psiphon3",
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "DataRootDirectory": data_root.display().to_string(),
        "LimitTunnelProtocols": [person.protocol],
        "OutboundBindAddress": person.source.to_string(),
        "ServerEntrySignaturePublicKey": signature_key,
        "DisableRemoteServerListFetcher": true,
    });
    let (client, mut notices) = client::start(&config, entries).await;
    notices.wait_for_tunnel().await;
    notices.drain();
    client
}

/// curl through the client's proxy; fails the test unless the page arrives.
async fn browse(client: &app::Client, proxy: Proxy, origin: &nginx::Nginx) {
    let http_port = origin.port;
    let tls_port = origin.tls_port.unwrap();
    let (host, path, query) = HTTP_PAGE;
    let (tls_host, tls_path, tls_query) = TLS_PAGE;
    let mut runs: Vec<Vec<String>> = Vec::new();
    match proxy {
        Proxy::Socks => {
            // curl resolves the names itself (to 127.0.0.1) and asks the SOCKS proxy for the
            // address; the Host header and the SNI carry the names.
            let socks = client.socks.unwrap().to_string();
            runs.push(vec![
                "--socks5".into(),
                socks.clone(),
                "--resolve".into(),
                format!("{host}:{http_port}:127.0.0.1"),
                format!("http://{host}:{http_port}{path}?{query}"),
            ]);
            runs.push(vec![
                "--socks5".into(),
                socks,
                "--resolve".into(),
                format!("{tls_host}:{tls_port}:127.0.0.1"),
                "-k".into(),
                format!("https://{tls_host}:{tls_port}{tls_path}?{tls_query}"),
            ]);
        }
        Proxy::Http => {
            // A full URL in the request line to the HTTP proxy, and a CONNECT for TLS.
            let http = format!("http://{}", client.http.unwrap());
            runs.push(vec![
                "-x".into(),
                http.clone(),
                "-H".into(),
                format!("Host: {host}"),
                format!("http://127.0.0.1:{http_port}{path}?{query}"),
            ]);
            runs.push(vec![
                "-x".into(),
                http,
                "--connect-to".into(),
                format!("{tls_host}:{tls_port}:127.0.0.1:{tls_port}"),
                "-k".into(),
                format!("https://{tls_host}:{tls_port}{tls_path}?{tls_query}"),
            ]);
        }
    }
    for args in runs {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "30"])
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("page for the privacy test"),
            "curl {args:?} got the wrong page"
        );
    }
}

/// Every textual form of `ip` something might write.
fn address_forms(ip: Ipv4Addr) -> Vec<String> {
    let [a, b, c, d] = ip.octets();
    let n = u32::from(ip);
    vec![
        ip.to_string(),
        format!("{d}.{c}.{b}.{a}"),
        format!("{n:08x}"),
        format!("{n:08X}"),
        format!("{:x}:{:x}", n >> 16, n & 0xffff),
        format!("::ffff:{ip}"),
        ip.to_ipv6_mapped().to_string(),
        n.to_string(),
    ]
}

/// A file's bytes, and its inflated form when it is (or holds, after a signature) a zlib
/// stream.
fn searchable(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    let mut forms = Vec::new();
    for start in (0..bytes.len().min(4096)).filter(|&i| bytes[i] == 0x78) {
        let mut inflated = Vec::new();
        let ok = flate2::read::ZlibDecoder::new(&bytes[start..])
            .take(64 << 20)
            .read_to_end(&mut inflated)
            .is_ok();
        if ok && !inflated.is_empty() {
            forms.push(inflated);
            break;
        }
    }
    forms.push(bytes);
    forms
}

fn contains_ignoring_case(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_written_anywhere_points_back_at_a_user() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    for (_, path, _) in [HTTP_PAGE, TLS_PAGE] {
        let file = site.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "the page for the privacy test\n").unwrap();
    }
    let Some(origin) = nginx::start_tls(&site) else {
        return;
    };

    // The operator's side: everything psinet writes is under ops/, psiphond's files and log
    // under server/, the GeoIP databases (inputs, not outputs) under geoip/.
    let ops = dir.path().join("ops");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&ops).unwrap();
    let db = ops.join("psinet.db");
    let stats = ops.join("psinet-stats.db");
    let [city, isp] = geoip_databases(&dir.path().join("geoip"));
    let run = |args: &[&str]| psinet(&db, &stats, args);
    run(&["init", "--remote-list-key-bits", "2048"]);
    run(&["sponsor", "add", "--name", "Acme", "--id", SPONSOR]);
    run(&[
        "sponsor",
        "set-homepage",
        "Acme",
        "--region",
        "None",
        "https://acme.example/",
    ]);
    // Statistics regexes: any *.privacy.test host counts as "privacy.test".
    run(&[
        "sponsor",
        "set-regex",
        "Acme",
        "--regex",
        r"^(?:[a-z0-9-]+\.)*([a-z0-9-]+\.test)$",
        "--replace",
        "$1",
    ]);
    run(&["channel", "add", "--name", "web", "--id", CHANNEL]);
    let (ossh, ssh) = (free_port(), free_port());
    run(&[
        "server",
        "new",
        "--ip",
        "127.0.0.1",
        "--protocol",
        &format!("OSSH:{ossh}"),
        "--protocol",
        &format!("SSH:{ssh}"),
        "--channel",
        "web",
        "--id",
        "a",
        "--embedded",
        "--out",
        server_dir.to_str().unwrap(),
        "--log-file",
        server_dir.join("psiphond.log").to_str().unwrap(),
        "--geoip",
        city.to_str().unwrap(),
        "--geoip",
        isp.to_str().unwrap(),
    ]);
    run(&[
        "publish",
        "remote-list",
        "--channel",
        "web",
        "--out",
        ops.join("publish").to_str().unwrap(),
    ]);
    let keys: Value = serde_json::from_str(&run(&["keys", "--json"])).unwrap();
    let signature_key = keys["ServerEntrySignaturePublicKey"]
        .as_str()
        .unwrap()
        .to_owned();
    let entries: Vec<ServerEntry> = run(&["embedded-list", "--channel", "web"])
        .lines()
        .map(|l| ServerEntry::decode(l.trim()).unwrap())
        .collect();
    assert_eq!(entries.len(), 1);

    // psiphond from psinet's files, as-is but for forwarding to the loopback origin.
    let config_path = server_dir.join("psiphond.config");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["AllowBogons"] = json!(true);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let server = psiphon_server::Server::start(psiphon_server::Config::read(&config_path).unwrap())
        .await
        .unwrap();
    let log = server_dir.join("psiphond.log");

    // The users.
    let mut data_roots = Vec::new();
    for (i, person) in PEOPLE.iter().enumerate() {
        let data_root = dir.path().join(format!("client-{i}"));
        let client = start_client(&data_root, &entries, &signature_key, person).await;
        browse(&client, person.proxy, &origin).await;
        // Stopping sends the last status request, with the host bytes.
        client.shutdown().await;
        data_roots.push(data_root);
    }
    psiphond::wait_for_event(&log, "server_tunnel").await;
    server.shutdown().await;

    // What psiphond saw: each person's region, and per-domain bytes under the regex's name.
    let events: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let tunnels: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_name"] == "server_tunnel")
        .collect();
    assert_eq!(tunnels.len(), PEOPLE.len(), "{events:#?}");
    for region in ["IR", "RU"] {
        assert_eq!(
            tunnels
                .iter()
                .filter(|t| t["client_region"] == region)
                .count(),
            2,
            "{tunnels:#?}"
        );
    }
    // Names the regexes map count as "privacy.test"; the HTTP proxy's request to the bare
    // origin address (the URL's authority wins over the Host header) counts as "(OTHER)".
    let domains: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_name"] == "domain_dest_bytes")
        .collect();
    for region in ["IR", "RU"] {
        for name in ["privacy.test", "(OTHER)"] {
            assert!(
                domains
                    .iter()
                    .any(|d| d["client_region"] == region && d["domain"] == name),
                "no {name} bytes from {region}: {domains:#?}"
            );
        }
    }
    assert!(
        domains
            .iter()
            .all(|d| d["domain"] == "privacy.test" || d["domain"] == "(OTHER)"),
        "{domains:#?}"
    );

    // The operator's reports.
    let log_arg = log.to_str().unwrap();
    let ingested = run(&["stats", "ingest", log_arg]);
    assert!(!ingested.contains(" 0 events added"), "{ingested}");
    assert!(run(&["stats", "ingest", log_arg]).contains(" 0 events added"));
    run(&["stats", "prune"]);
    let by = "date,sponsor,region";
    let reports = ops.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    for format in ["table", "csv", "json", "svg"] {
        let out = reports.join(format!("sessions.{format}"));
        run(&[
            "report",
            "--by",
            by,
            "--min-count",
            "1",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);
        let out = reports.join(format!("domains.{format}"));
        run(&[
            "report",
            "domains",
            "--by",
            by,
            "--min-count",
            "1",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("sessions.json")).unwrap())
            .unwrap();
    let rows = report["rows"].as_array().unwrap();
    for region in ["IR", "RU"] {
        let row = rows
            .iter()
            .find(|r| r["region"] == region)
            .unwrap_or_else(|| panic!("no {region} row: {report:#}"));
        assert_eq!(row["sponsor"], SPONSOR);
        assert_eq!(row["sessions"], 2, "{row}");
        assert_eq!(row["unique_users"], 2, "{row}");
        assert_eq!(row["protocol_mix_percent"]["OSSH"], 50, "{row}");
        assert!(row["bytes_down"].as_u64().unwrap() > 0, "{row}");
    }
    let domain_report: Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("domains.json")).unwrap())
            .unwrap();
    let domain_rows = domain_report["rows"].as_array().unwrap();
    assert!(
        domain_rows
            .iter()
            .any(|r| r["domain"] == "privacy.test" && r["region"] == "IR"),
        "{domain_report:#}"
    );
    let svg = std::fs::read_to_string(reports.join("sessions.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{svg}");
    assert!(svg.contains("IR") && svg.contains("RU"), "{svg}");
    // With a threshold of 3, two people per region are too few to show.
    let strict: Value = serde_json::from_str(&run(&[
        "report",
        "--by",
        by,
        "--min-count",
        "3",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(strict["rows"].as_array().unwrap().len(), 0, "{strict:#}");
    assert_eq!(strict["suppressed"], 2, "{strict:#}");
    std::fs::write(reports.join("strict.json"), strict.to_string()).unwrap();

    // The sweep.
    let mut needles: Vec<String> = Vec::new();
    for p in &PEOPLE {
        needles.extend(address_forms(p.source));
    }
    for (host, path, query) in [HTTP_PAGE, TLS_PAGE] {
        needles.push(host.to_owned());
        needles.push(path.to_owned());
        needles.push(path.rsplit('/').next().unwrap().to_owned());
        needles.push(query.to_owned());
        for part in query.split('&') {
            needles.push(part.split('=').nth(1).unwrap().to_owned());
        }
    }
    // Server entries and other hex-wrapped text: each needle's hex form too.
    let hexed: Vec<String> = needles.iter().map(hex::encode).collect();
    needles.extend(hexed);
    let mut files = Vec::new();
    for d in [&ops, &server_dir] {
        common::files_under(d, &mut files);
    }
    for d in &data_roots {
        common::files_under(d, &mut files);
    }
    // The sweep must see what each part wrote.
    for must in [
        "psiphond.log",
        "psinet.db",
        "psinet-stats.db",
        "sessions.svg",
        "psiphon.redb",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f.file_name().is_some_and(|n| n == must)),
            "{must} not among {files:#?}"
        );
    }
    let mut hits = Vec::new();
    for f in &files {
        for form in searchable(std::fs::read(f).unwrap()) {
            for needle in &needles {
                if contains_ignoring_case(&form, needle) {
                    hits.push(format!("{needle} in {}", f.display()));
                }
            }
        }
    }
    // The user's own disk keeps no record of where they went, not even the counted names
    // (per-domain bytes not yet reported are held in memory only).
    let mut client_files = Vec::new();
    for d in &data_roots {
        common::files_under(d, &mut client_files);
    }
    for f in &client_files {
        for form in searchable(std::fs::read(f).unwrap()) {
            for needle in ["privacy.test", "(OTHER)", "host_bytes"] {
                if contains_ignoring_case(&form, needle) {
                    hits.push(format!("{needle} in {}", f.display()));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "written where it must not be:\n{}",
        hits.join("\n")
    );
    eprintln!(
        "privacy sweep: {} files, {} needles, 0 hits",
        files.len(),
        needles.len()
    );
}
