use proptest::prelude::*;

use super::*;
use crate::stats::StatsDb;

const SPONSOR: &str = "0123456789ABCDEF";

fn session(day: &str, region: &str, protocol: &str, n: usize) -> String {
    format!(
        r#"{{"event_name":"server_tunnel","timestamp":"{day}T10:00:00.5Z","sponsor_id":"{SPONSOR}","client_region":"{region}","client_asn":"64500","client_isp":"Ex","relay_protocol":"{protocol}","duration":60000,"bytes_up_tcp":100,"bytes_down_tcp":1000,"session_id":"s{n}"}}"#
    )
}

fn user(day: &str, region: &str, n: usize) -> String {
    format!(
        r#"{{"event_name":"unique_user","timestamp":"{day}T10:00:00.5Z","sponsor_id":"{SPONSOR}","client_region":"{region}","client_asn":"64500","client_isp":"Ex","session_id":"u{n}"}}"#
    )
}

fn domain(day: &str, region: &str, domain: &str, bytes: u64, n: usize) -> String {
    format!(
        r#"{{"event_name":"domain_dest_bytes","timestamp":"{day}T10:0{}:00Z","sponsor_id":"{SPONSOR}","client_region":"{region}","client_asn":"64500","domain":"{domain}","bytes":{bytes}}}"#,
        n % 10
    )
}

fn store(lines: &[String]) -> (tempfile::TempDir, StatsDb) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StatsDb::open(&dir.path().join("s.db"), true).unwrap();
    let log = dir.path().join("psiphond.log");
    std::fs::write(&log, lines.join("\n")).unwrap();
    let today = crate::stats::parse_day("--", "2026-11-22").unwrap();
    let s = db.ingest(&[log], today, 60).unwrap();
    assert_eq!(s.malformed, 0, "{s:?}");
    (dir, db)
}

fn query(kind: Kind, by: &[Dim], min_count: u64) -> Query {
    Query {
        kind,
        by: by.to_vec(),
        sponsor: None,
        from: None,
        to: None,
        min_count,
    }
}

/// Canada: 12 users, 12 sessions (10 OSSH, 2 SSH) a day; Iran: 3 users, 3 sessions on day 1.
fn sample() -> Vec<String> {
    let mut lines = Vec::new();
    let mut n = 0;
    for day in ["2026-11-20", "2026-11-21"] {
        for i in 0..12 {
            n += 1;
            lines.push(session(day, "CA", if i < 10 { "OSSH" } else { "SSH" }, n));
            lines.push(user(day, "CA", n));
        }
        lines.push(domain(day, "CA", "example.org", 5000, 1));
        lines.push(domain(day, "CA", "(OTHER)", 700, 2));
    }
    for _ in 0..3 {
        n += 1;
        lines.push(session("2026-11-20", "IR", "OSSH", n));
        lines.push(user("2026-11-20", "IR", n));
    }
    lines.push(domain("2026-11-20", "IR", "secret.example", 9999, 3));
    lines
}

#[test]
fn small_cells_are_suppressed_and_counted() {
    let (_dir, db) = store(&sample());
    let r = db
        .report(&query(Kind::Sessions, &[Dim::Date, Dim::Region], 10))
        .unwrap();
    assert_eq!(r.suppressed, 1);
    assert_eq!(r.sessions.len(), 2);
    for row in &r.sessions {
        assert_eq!(row.key.get(1).map(String::as_str), Some("CA"));
        assert_eq!((row.users, row.sessions), (12, 12));
        assert_eq!(row.duration_ms, 12 * 60_000);
        assert_eq!(row.mean_duration_ms(), 60_000);
        assert_eq!((row.bytes_up, row.bytes_down), (1200, 12_000));
        // SSH has 2 sessions, under 10: only the "other" share shows it.
        assert_eq!(
            row.protocol_mix,
            vec![("OSSH".to_owned(), 83), ("other".to_owned(), 17)]
        );
    }
    let table = r.table();
    assert!(!table.contains("IR"), "{table}");
    assert!(!table.contains("SSH 17"), "{table}");
    assert!(table.contains("1 cell suppressed"), "{table}");
    // By region only, Iran's 3 are still too few; with a threshold of 3 they show.
    let r = db
        .report(&query(Kind::Sessions, &[Dim::Region], 3))
        .unwrap();
    assert_eq!((r.sessions.len(), r.suppressed), (2, 0));
    assert!(r.sessions.iter().any(|row| row.sessions == 24
        && row.protocol_mix == vec![("OSSH".to_owned(), 83), ("SSH".to_owned(), 17)]));
    // Filters.
    let mut q = query(Kind::Sessions, &[Dim::Date], 10);
    q.from = Some(crate::stats::parse_day("--from", "2026-11-21").unwrap());
    let r = db.report(&q).unwrap();
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.sessions[0].key, vec!["2026-11-21".to_owned()]);
    q.from = None;
    q.sponsor = Some("FFFFFFFFFFFFFFFF".to_owned());
    assert!(db.report(&q).unwrap().sessions.is_empty());
}

#[test]
fn domain_bytes_follow_their_cell() {
    let (_dir, db) = store(&sample());
    let r = db
        .report(&query(Kind::Domains, &[Dim::Date, Dim::Region], 10))
        .unwrap();
    assert_eq!(r.suppressed, 1, "Iran's domain row");
    let shown: Vec<(&str, u64)> = r
        .domains
        .iter()
        .map(|d| (d.domain.as_str(), d.bytes))
        .collect();
    assert_eq!(
        shown,
        vec![
            ("example.org", 5000),
            ("(OTHER)", 700),
            ("example.org", 5000),
            ("(OTHER)", 700)
        ]
    );
    for text in [
        r.table(),
        r.csv(),
        r.json().to_string(),
        crate::stats::svg::render(&r).unwrap(),
    ] {
        assert!(!text.contains("secret.example"), "{text}");
    }
    let err = db
        .report(&query(Kind::Domains, &[Dim::Isp], 10))
        .unwrap_err();
    assert!(err.to_string().contains("--by"), "{err}");
}

#[test]
fn every_format() {
    let (_dir, db) = store(&sample());
    let r = db
        .report(&query(Kind::Sessions, &[Dim::Date, Dim::Region], 10))
        .unwrap();
    let csv = r.csv();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "date,region,unique_users,sessions,total_duration_ms,mean_duration_ms,bytes_up,bytes_down,protocol_mix"
    );
    assert_eq!(
        lines[1],
        "2026-11-20,CA,12,12,720000,60000,1200,12000,OSSH:83 other:17"
    );
    assert_eq!(lines.len(), 3);
    let json = r.json();
    let text = serde_json::to_string(&json).unwrap();
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["suppressed"], 1);
    assert_eq!(back["min_count"], 10);
    assert_eq!(back["rows"][1]["date"], "2026-11-21");
    assert_eq!(back["rows"][1]["unique_users"], 12);
    assert_eq!(back["rows"][1]["protocol_mix_percent"]["OSSH"], 83);
    let svg = crate::stats::svg::render(&r).unwrap();
    check_xml(&svg);
    for want in [
        "Sessions per day",
        "Unique users per day",
        "CA",
        "2026-11-21",
        "1 suppressed",
    ] {
        assert!(svg.contains(want), "{want}: {svg}");
    }
    assert!(!svg.contains("IR"), "{svg}");
    let err = crate::stats::svg::render(
        &db.report(&query(Kind::Sessions, &[Dim::Region], 10))
            .unwrap(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("put date in --by"), "{err}");
    // Nothing to draw is still a valid picture.
    let empty = db
        .report(&query(Kind::Sessions, &[Dim::Date, Dim::Region], 1000))
        .unwrap();
    check_xml(&crate::stats::svg::render(&empty).unwrap());
    check_xml(
        &crate::stats::svg::render(&db.report(&query(Kind::Domains, &[Dim::Date], 1)).unwrap())
            .unwrap(),
    );
}

/// A small well-formedness check: every tag closes in order, attributes are quoted, entities
/// are the five XML ones, and there is one root. (The CLI test also runs `xmllint`.)
pub(crate) fn check_xml(xml: &str) {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("an XML declaration");
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start]);
        let end = rest[start..].find('>').expect("an unclosed tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'),
            "tag name {name:?}"
        );
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let (key, after) = attrs.split_once("=\"").expect("a quoted attribute");
            assert!(
                key.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'),
                "attribute name {key:?}"
            );
            let close = after.find('"').expect("a closing quote");
            check_text(&after[..close]);
            attrs = &after[close + 1..];
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !self_closing {
            stack.push(name.to_owned());
        }
    }
    check_text(rest.trim());
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(roots, 1);
}

fn check_text(text: &str) {
    assert!(!text.contains('<') && !text.contains('>'), "{text:?}");
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        let after = &rest[at..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| after.starts_with(e)),
            "bad entity in {text:?}"
        );
        rest = &after[1..];
    }
}

#[test]
fn the_xml_check_can_fail() {
    for bad in [
        "<svg><g></svg>",
        "<svg a=b/>",
        "<svg>&nbsp;</svg>",
        "<svg/><svg/>",
        "<svg>a<b</svg>",
    ] {
        let doc = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{bad}");
        assert!(
            std::panic::catch_unwind(|| check_xml(&doc)).is_err(),
            "{bad}"
        );
    }
}

#[derive(Debug, Clone)]
struct Ev {
    day: u8,
    region: u8,
    protocol: u8,
    user: bool,
}

fn ev() -> impl Strategy<Value = Ev> {
    (0u8..3, 0u8..3, 0u8..3, any::<bool>()).prop_map(|(day, region, protocol, user)| Ev {
        day,
        region,
        protocol,
        user,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the events and threshold, no shown cell is under it, shown and suppressed
    /// cells add up to every cell, and no output names a suppressed cell's key.
    #[test]
    fn no_cell_under_the_threshold_is_shown(
        events in proptest::collection::vec(ev(), 0..120),
        min_count in 0u64..15,
        by_region in any::<bool>(),
    ) {
        let regions = ["AA", "BB", "CC"];
        let days = ["2026-11-19", "2026-11-20", "2026-11-21"];
        let protocols = ["OSSH", "SSH", "FRONTED-MEEK-OSSH"];
        let mut lines = Vec::new();
        let mut truth: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
        for (n, e) in events.iter().enumerate() {
            let day = days[usize::from(e.day)];
            let region = regions[usize::from(e.region)];
            let key = if by_region {
                vec![day.to_owned(), region.to_owned()]
            } else {
                vec![day.to_owned()]
            };
            let t = truth.entry(key).or_default();
            if e.user {
                lines.push(user(day, region, n));
                t.0 += 1;
            } else {
                lines.push(session(day, region, protocols[usize::from(e.protocol)], n));
                t.1 += 1;
            }
        }
        let (_dir, db) = store(&lines);
        let by = if by_region { vec![Dim::Date, Dim::Region] } else { vec![Dim::Date] };
        let r = db.report(&query(Kind::Sessions, &by, min_count)).unwrap();
        for row in &r.sessions {
            prop_assert!(row.users >= min_count && row.sessions >= min_count, "{row:?}");
            prop_assert_eq!(truth.get(&row.key), Some(&(row.users, row.sessions)));
            let shares: u64 = row.protocol_mix.iter().map(|p| p.1).sum();
            prop_assert!((99..=101).contains(&shares) || row.sessions == 0, "{row:?}");
        }
        prop_assert_eq!(r.sessions.len() as u64 + r.suppressed, truth.len() as u64);
        let hidden: Vec<&Vec<String>> = truth
            .iter()
            .filter(|(_, (u, s))| *u < min_count || *s < min_count)
            .map(|(k, _)| k)
            .collect();
        let csv = r.csv();
        for key in hidden {
            let prefix = format!("{},", key.join(","));
            prop_assert!(!csv.lines().any(|l| l.starts_with(&prefix)), "{key:?} in {csv}");
        }
        if by_region {
            check_xml(&crate::stats::svg::render(&r).unwrap());
        }
    }
}
