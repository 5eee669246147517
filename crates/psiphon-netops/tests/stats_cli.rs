//! `psinet stats` and `psinet report` as an operator runs them: the built binary on psiphond
//! logs in tunnel-core's format (fixture lines carrying forbidden fields), and on the log of a
//! real session through psiphond (the library) and the client library.
//!
//! `--format svg` output is checked with `xmllint --noout` when it is installed (package
//! `libxml2-utils`); with `PSIPHON_REQUIRE_XMLLINT=1` a missing xmllint fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use psiphon_testkit::{client, psiphond};
use serde_json::{Value, json};

const SPONSOR: &str = "721AE60D76700F5A";
/// Values that must never reach the store or a report.
const CLIENT_IP: &str = "198.51.100.77";
const UPSTREAM_IP: &str = "203.0.113.199";
const CAMEL_IP: &str = "192.0.2.211";
const URL: &str = "https://private.example/very/secret/path";
const SESSION_PREFIX: &str = "5e55101dd15t1nc7";
/// Only on an event older than the retention: gone after prune.
const OLD_ASN: &str = "4242424242";

fn psinet(stats_db: &Path, args: &[&str]) -> Output {
    common::psinet(&[("--stats-db", stats_db)], args)
}

/// Runs psinet; fails the test if it failed; returns (stdout, stderr).
fn ok(stats_db: &Path, args: &[&str]) -> (String, String) {
    common::succeeded(args, psinet(stats_db, args))
}

fn day(days_ago: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secs = i64::try_from(now).unwrap() - days_ago * 86_400;
    psiphon_netops::time::rfc3339(secs)[..10].to_owned()
}

/// A `server_tunnel` line as tunnel-core's psiphond writes it, with forbidden fields.
fn server_tunnel(date: &str, region: &str, protocol: &str, n: usize) -> String {
    json!({
        "build_rev": "abc", "host_id": "host-1", "event_name": "server_tunnel",
        "timestamp": format!("{date}T08:{:02}:{:02}.123456789Z", n % 60, n % 60),
        "session_id": format!("{SESSION_PREFIX}{n:016x}"),
        "relay_protocol": protocol, "handshake_completed": true,
        "start_time": format!("{date}T08:00:00.5Z"), "duration": 90_000 + n,
        "bytes_up_tcp": 1000, "bytes_down_tcp": 20_000, "bytes_up_udp": 0, "bytes_down_udp": 0,
        "bytes": 21_000, "ssh_protocol_bytes": 22_000,
        "client_region": region, "client_city": "Toronto", "client_isp": "Example_Telecom",
        "client_asn": "64500", "client_aso": "Example_AS",
        "sponsor_id": SPONSOR, "propagation_channel_id": "24BCA4EE20BEB92C",
        "client_platform": "Android_13_com.psiphon3", "client_version": "400",
        "device_region": region, "is_first_tunnel_in_session": true,
        "client_ip": CLIENT_IP,
        "upstream_ip_address": UPSTREAM_IP,
        "clientIP": CAMEL_IP,
        "meek_host_header": URL,
    })
    .to_string()
}

fn unique_user(date: &str, region: &str, n: usize) -> String {
    json!({
        "event_name": "unique_user", "host_id": "host-1",
        "timestamp": format!("{date}T08:{:02}:00.000Z", n % 60),
        "session_id": format!("{SESSION_PREFIX}{n:016x}"),
        "sponsor_id": SPONSOR, "client_region": region, "client_asn": "64500",
        "client_isp": "Example_Telecom", "relay_protocol": "OSSH",
        "last_connected": "None", "client_ip": CLIENT_IP,
    })
    .to_string()
}

fn domain_dest_bytes(date: &str, region: &str, domain: &str, bytes: u64) -> String {
    json!({
        "event_name": "domain_dest_bytes", "host_id": "host-1",
        "timestamp": format!("{date}T09:00:00Z"),
        "domain": domain, "client_region": region, "client_asn": "64500",
        "sponsor_id": SPONSOR, "client_platform": "Windows", "device_region": region,
        "bytes_tcp": bytes, "bytes_udp": 0, "bytes": bytes,
    })
    .to_string()
}

/// Two days of Canada (12 users and sessions each), two Iranian users (under the threshold),
/// domain bytes, an event older than the retention, and junk.
fn fixture() -> Vec<String> {
    let mut lines = Vec::new();
    let mut n = 0;
    for ago in [1, 2] {
        let date = day(ago);
        for i in 0..12 {
            n += 1;
            let protocol = if i < 10 {
                "OSSH"
            } else {
                "UNFRONTED-MEEK-OSSH"
            };
            lines.push(unique_user(&date, "CA", n));
            lines.push(server_tunnel(&date, "CA", protocol, n));
        }
        lines.push(domain_dest_bytes(&date, "CA", "example.org", 50_000));
        lines.push(domain_dest_bytes(&date, "CA", CLIENT_IP, 10));
        lines.push(r#"{"level":"info","msg":"psiphond started","timestamp":"x"}"#.to_owned());
    }
    for _ in 0..2 {
        n += 1;
        lines.push(unique_user(&day(1), "IR", n));
        lines.push(server_tunnel(&day(1), "IR", "OSSH", n));
    }
    let mut old = server_tunnel(&day(90), "CA", "OSSH", 9999);
    old = old.replace("\"64500\"", &format!("\"{OLD_ASN}\""));
    lines.push(old);
    lines.push("{\"event_name\":\"server_tunnel\"".to_owned());
    lines
}

/// Every file in `dir` (the store, any journal, reports) searched for every forbidden value.
fn assert_nothing_forbidden(dir: &Path, extra: &[&str]) {
    let mut files: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.extension().is_none_or(|x| x != "log") {
            files.push(p);
        }
    }
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for needle in [
            CLIENT_IP,
            UPSTREAM_IP,
            CAMEL_IP,
            URL,
            "private.example",
            SESSION_PREFIX,
        ]
        .iter()
        .chain(extra)
        {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                f.display()
            );
        }
    }
}

fn xmllint(path: &Path) {
    match std::process::Command::new("xmllint")
        .arg("--noout")
        .arg(path)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "xmllint: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            assert!(
                std::env::var_os("PSIPHON_REQUIRE_XMLLINT").is_none(),
                "xmllint is required: {e}"
            );
            eprintln!("xmllint not installed ({e}); SVG checked by the unit tests only");
        }
    }
}

#[test]
fn ingest_prune_and_report_from_fixture_logs() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let stats = out_dir.join("stats.db");
    let lines = fixture();
    let log = dir.path().join("psiphond.log");
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    // A rotated file overlapping the first by its last 20 lines, with one new session.
    let rotated = dir.path().join("psiphond.log.1");
    let mut tail: Vec<String> = lines[lines.len() - 20..].to_vec();
    tail.push(server_tunnel(&day(1), "CA", "OSSH", 500));
    std::fs::write(&rotated, tail.join("\n")).unwrap();

    // No store yet: reports and prune say where to start.
    let out = psinet(&stats, &["report"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stats.db") && err.contains("psinet stats ingest"),
        "{err}"
    );
    assert_eq!(psinet(&stats, &["stats", "prune"]).status.code(), Some(1));

    let (stdout, stderr) = ok(
        &stats,
        &[
            "stats",
            "ingest",
            "--retention-days",
            "120",
            log.to_str().unwrap(),
        ],
    );
    // 48 CA + 4 domain + 4 IR + 1 old = 57 events.
    assert!(stdout.contains("57 events added"), "{stdout}");
    assert!(stdout.contains("1 malformed"), "{stdout}");
    assert!(stdout.contains("2 other lines ignored"), "{stdout}");
    let last = lines.len();
    assert!(
        stderr.contains(&format!("psiphond.log:{last}: malformed line skipped")),
        "{stderr}"
    );
    assert!(stderr.contains("address-like fields"), "{stderr}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&stats).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Again, with the overlapping rotated file: only the one new session.
    let (stdout, _) = ok(
        &stats,
        &[
            "stats",
            "ingest",
            "--retention-days",
            "120",
            log.to_str().unwrap(),
            rotated.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains(" 1 events added"), "{stdout}");
    assert!(stdout.contains("75 already ingested"), "{stdout}");

    // The old event is in the store until pruned.
    let json_report = |extra: &[&str]| -> Value {
        let mut args = vec!["report", "--format", "json"];
        args.extend_from_slice(extra);
        serde_json::from_str(&ok(&stats, &args).0).unwrap()
    };
    let all = json_report(&["--by", "date", "--min-count", "0"]);
    assert_eq!(all["rows"].as_array().unwrap().len(), 3, "{all}");
    let (stdout, _) = ok(&stats, &["stats", "prune"]);
    assert!(stdout.contains("1 rows and 1 fingerprints"), "{stdout}");
    let all = json_report(&["--by", "date", "--min-count", "0"]);
    assert_eq!(all["rows"].as_array().unwrap().len(), 2, "{all}");
    // Re-ingesting cannot bring it back.
    let (stdout, _) = ok(&stats, &["stats", "ingest", log.to_str().unwrap()]);
    assert!(stdout.contains(" 0 events added"), "{stdout}");
    assert!(stdout.contains("1 older than the retention"), "{stdout}");

    // The default report: by date, sponsor, region, threshold 10.
    let (table, stderr) = ok(&stats, &["report"]);
    assert!(
        table.contains("DATE") && table.contains("UNIQUE USERS"),
        "{table}"
    );
    assert!(
        table.contains(&day(2)) && table.contains(&day(1)),
        "{table}"
    );
    assert!(!table.contains("IR"), "{table}");
    assert!(table.contains("1 cell suppressed"), "{table}");
    assert!(stderr.contains("1 cell suppressed"), "{stderr}");
    assert!(table.contains("OSSH 83%, other 17%"), "{table}");

    let report = json_report(&["--by", "date,region", "--from", &day(1), "--to", &day(1)]);
    assert_eq!(report["suppressed"], 1);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["region"], "CA");
    assert_eq!(rows[0]["unique_users"], 12);
    assert_eq!(rows[0]["sessions"], 13);
    assert_eq!(rows[0]["bytes_down"], 13 * 20_000);
    let with_iran = json_report(&["--by", "region", "--min-count", "2"]);
    assert_eq!(
        with_iran["rows"].as_array().unwrap().len(),
        2,
        "{with_iran}"
    );

    let (csv, _) = ok(
        &stats,
        &[
            "report",
            "--by",
            "date,region",
            "--format",
            "csv",
            "--sponsor",
            SPONSOR,
        ],
    );
    let csv_lines: Vec<&str> = csv.lines().collect();
    assert_eq!(csv_lines.len(), 3, "{csv}");
    assert!(
        csv_lines[0].starts_with("date,region,unique_users,sessions"),
        "{csv}"
    );
    let (none, _) = ok(
        &stats,
        &["report", "--format", "csv", "--sponsor", "0000000000000000"],
    );
    assert_eq!(none.lines().count(), 1, "{none}");

    let (domains, _) = ok(&stats, &["report", "domains", "--by", "date,region"]);
    assert!(domains.contains("example.org"), "{domains}");
    assert!(domains.contains("(redacted)"), "{domains}");

    let svg = out_dir.join("report.svg");
    let (stdout, _) = ok(
        &stats,
        &[
            "report",
            "--by",
            "date,region",
            "--format",
            "svg",
            "--out",
            svg.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("report.svg"), "{stdout}");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("Unique users per day"));
    xmllint(&svg);
    let domains_svg = out_dir.join("domains.svg");
    ok(
        &stats,
        &[
            "report",
            "domains",
            "--format",
            "svg",
            "--out",
            domains_svg.to_str().unwrap(),
        ],
    );
    xmllint(&domains_svg);
    for (i, format) in ["table", "csv", "json"].iter().enumerate() {
        let (text, _) = ok(&stats, &["report", "--format", format, "--min-count", "1"]);
        std::fs::write(out_dir.join(format!("report{i}.txt")), text).unwrap();
    }

    // Errors name the argument.
    for (args, code, want) in [
        (vec!["report", "--from", "21/11/2026"], 1, "--from"),
        (vec!["report", "--sponsor", "acme"], 1, "--sponsor"),
        (
            vec!["report", "--by", "region", "--format", "svg"],
            1,
            "put date in --by",
        ),
        (vec!["report", "domains", "--by", "isp"], 1, "no ISP"),
        (vec!["report", "--by", "city"], 2, "city"),
        (vec!["stats", "ingest"], 2, "LOG"),
        (
            vec!["stats", "ingest", "/nonexistent/psiphond.log"],
            1,
            "/nonexistent/psiphond.log",
        ),
    ] {
        let out = psinet(&stats, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // Nothing forbidden in the store, its journal or any report; the pruned event's ASN is
    // gone from the file's bytes too.
    assert_nothing_forbidden(&out_dir, &[OLD_ASN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_psiphond_session_is_counted_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let psiphond =
        psiphond::start(&dir.path().join("server"), &psiphond::Options::new(SPONSOR)).await;
    let log = psiphond.log.clone();

    let data_root = dir.path().join("client");
    let config = json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": SPONSOR,
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "DataRootDirectory": data_root.display().to_string(),
    });
    let (client, notices) = client::start(&config, std::slice::from_ref(&psiphond.entry)).await;
    notices.drain();
    // The client's connected request makes the day's unique_user; disconnecting, the
    // server_tunnel.
    psiphond.wait_for_event("unique_user").await;
    client.shutdown().await;
    psiphond.wait_for_event("server_tunnel").await;
    psiphond.server.shutdown().await;

    let text = std::fs::read_to_string(&log).unwrap();
    let session_id = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event_name"] == "server_tunnel")
        .and_then(|v| v["session_id"].as_str().map(str::to_owned))
        .unwrap();
    assert!(session_id.len() >= 16, "{session_id}");

    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let stats = out_dir.join("stats.db");
    let (stdout, _) = ok(&stats, &["stats", "ingest", log.to_str().unwrap()]);
    assert!(stdout.contains(" 2 events added"), "{stdout}\n{text}");
    let (stdout, _) = ok(&stats, &["stats", "ingest", log.to_str().unwrap()]);
    assert!(stdout.contains(" 0 events added"), "{stdout}");

    let (report, _) = ok(&stats, &["report", "--format", "json", "--min-count", "1"]);
    let report: Value = serde_json::from_str(&report).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["sponsor"], SPONSOR);
    assert_eq!(rows[0]["sessions"], 1);
    assert_eq!(rows[0]["unique_users"], 1);
    assert_eq!(rows[0]["protocol_mix_percent"]["OSSH"], 100, "{report}");
    // One person is one person: the default threshold hides them.
    let (table, _) = ok(&stats, &["report"]);
    assert!(
        table.contains("(none)") && table.contains("1 cell suppressed"),
        "{table}"
    );
    std::fs::write(out_dir.join("report.txt"), table).unwrap();

    // The client came from 127.0.0.1; its session id is in psiphond's log, not in ours.
    assert_nothing_forbidden(&out_dir, &["127.0.0.1", &session_id]);
}

#[test]
fn help_and_the_stats_db_env_var() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = Path::new("/nonexistent/stats.db");
    for (args, want) in [
        (&["stats", "--help"][..], "ingest"),
        (&["stats", "ingest", "--help"], "--retention-days"),
        (&["stats", "prune", "--help"], "--retention-days"),
        (&["report", "--help"], "--min-count"),
    ] {
        let (out, _) = ok(nowhere, args);
        assert!(
            out.contains("Usage: psinet") && out.contains(want),
            "{args:?}: {out}"
        );
    }
    // PSINET_STATS_DB names the store; the network database is not touched.
    let stats = dir.path().join("from-env.db");
    let log = dir.path().join("psiphond.log");
    std::fs::write(&log, unique_user(&day(1), "CA", 1)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_psinet"))
        .args(["stats", "ingest", log.to_str().unwrap()])
        .env("PSINET_STATS_DB", &stats)
        .env("PSINET_DB", dir.path().join("network.db"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stats.exists());
    assert!(!dir.path().join("network.db").exists());
    assert!(!dir.path().join("psinet-stats.db").exists());
}
