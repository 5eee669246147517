//! GeoIP against MaxMind's own test databases (the MaxMind-DB repository's `test-data`, as
//! shipped in the `maxminddb` PyPI source distribution), not databases written here. The
//! expected fields come from the JSON each database was built from (`source-data`), so every
//! network MaxMind put in them is checked. Every file there, including the corrupt ones
//! (`bad-data`) and the broken, invalid and denial-of-service ones in `test-data`, must give an
//! error at open or lookups that return, never a panic or a hang.
//!
//! `scripts/test.sh` downloads the data and sets `PSIPHON_MAXMIND_TEST_DATA` (the extracted
//! `tests/data` directory); without it these tests skip, unless `PSIPHON_REQUIRE_MAXMIND` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{fixture, handshake_params, password, request};
use psiphon_protocol::api::HandshakeResponse;
use psiphon_server::Server;
use psiphon_server::geoip::{GeoFields, GeoIp, NONE};
use serde_json::Value;

/// The extracted `tests/data` directory, or `None` (skip) when it is not configured.
fn data_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("PSIPHON_MAXMIND_TEST_DATA") else {
        assert!(
            std::env::var_os("PSIPHON_REQUIRE_MAXMIND").is_none(),
            "PSIPHON_REQUIRE_MAXMIND is set but PSIPHON_MAXMIND_TEST_DATA is not \
             (scripts/test.sh downloads MaxMind's test databases)"
        );
        eprintln!(
            "PSIPHON_MAXMIND_TEST_DATA is unset; MaxMind's test databases are not checked \
             (scripts/test.sh fetches them)"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    assert!(
        dir.join("test-data").is_dir() && dir.join("source-data").is_dir(),
        "PSIPHON_MAXMIND_TEST_DATA={} is not the maxminddb sdist's tests/data directory",
        dir.display()
    );
    Some(dir)
}

fn db(dir: &Path, name: &str) -> String {
    dir.join("test-data").join(name).display().to_string()
}

/// A network of a source file, in the databases' IPv6 address space (an IPv4 network
/// `a.b.c.d/n` is stored as `::a.b.c.d/96+n`).
#[derive(Debug, Clone, Copy)]
struct Net {
    start: u128,
    len: u32,
}

impl Net {
    fn parse(cidr: &str) -> Net {
        let (addr, len) = cidr.split_once('/').unwrap();
        let len: u32 = len.parse().unwrap();
        let (start, len) = match addr.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96 + len),
            IpAddr::V6(v6) => (u128::from(v6), len),
        };
        assert!(len <= 128, "{cidr}");
        Net { start, len }
    }

    fn contains(&self, addr: u128) -> bool {
        self.len == 0 || (addr ^ self.start) >> (128 - self.len) == 0
    }

    /// The addresses a client could look this network up by: its first address, and for an
    /// IPv4 network also as IPv4 and IPv4-mapped IPv6 (a client on a dual-stack listener).
    fn first_addresses(&self) -> Vec<IpAddr> {
        let v6 = Ipv6Addr::from(self.start);
        let mut out = vec![IpAddr::V6(v6)];
        if self.len >= 96 && self.start >> 32 == 0 {
            let v4 = Ipv4Addr::from(u32::try_from(self.start).unwrap());
            out.push(IpAddr::V4(v4));
            out.push(IpAddr::V6(v4.to_ipv6_mapped()));
        }
        out
    }
}

/// A `source-data` file: a JSON array of `{"<cidr>": record}` objects, in insertion order.
fn source(dir: &Path, name: &str) -> Vec<(Net, Value)> {
    let text = std::fs::read_to_string(dir.join("source-data").join(name)).unwrap();
    let entries: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text).unwrap();
    entries
        .into_iter()
        .flatten()
        .map(|(cidr, record)| (Net::parse(&cidr), record))
        .collect()
}

/// The record the database holds for `addr`: MaxMind's writer lets a later network replace
/// what an earlier one set, so the last network in the file containing it.
fn record_for(src: &[(Net, Value)], addr: IpAddr) -> Option<&Value> {
    let addr = match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // IPv4-mapped addresses are aliased to the IPv4 part of the tree.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)),
            None => u128::from(v6),
        },
    };
    src.iter()
        .rev()
        .find(|(net, _)| net.contains(addr))
        .map(|(_, r)| r)
}

/// psiphond's form of a text field: spaces as `_`, absent or empty as "None".
fn text(v: Option<&Value>) -> String {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.replace(' ', "_"),
        _ => NONE.to_owned(),
    }
}

/// What psiphond should report for a record: as tunnel-core, the country's (not the
/// registered country's) ISO code, the English city name, ISP, AS number and organisation.
fn expected(record: Option<&Value>) -> GeoFields {
    let Some(r) = record else {
        return GeoFields::none();
    };
    GeoFields {
        region: text(r.pointer("/country/iso_code")),
        city: text(r.pointer("/city/names/en")),
        isp: text(r.get("isp")),
        asn: r
            .get("autonomous_system_number")
            .and_then(Value::as_u64)
            .map_or_else(|| NONE.to_owned(), |n| n.to_string()),
        aso: text(r.get("autonomous_system_organization")),
    }
}

/// Checks every network of each source file against `geo`, combining the sources' fields as
/// psiphond does (the first database with a field wins). Returns the lookups made and the
/// expected results, for the caller's non-vacuity checks.
fn check_all(geo: &GeoIp, sources: &[&[(Net, Value)]]) -> Vec<GeoFields> {
    let mut checked = Vec::new();
    for src in sources {
        for (net, _) in src.iter() {
            for addr in net.first_addresses() {
                let mut want = GeoFields::none();
                for s in sources {
                    let e = expected(record_for(s, addr));
                    for (w, e) in [
                        (&mut want.region, e.region),
                        (&mut want.city, e.city),
                        (&mut want.isp, e.isp),
                        (&mut want.asn, e.asn),
                        (&mut want.aso, e.aso),
                    ] {
                        if w == NONE {
                            *w = e;
                        }
                    }
                }
                assert_eq!(geo.lookup(addr), want, "{addr}");
                checked.push(want);
            }
        }
    }
    checked
}

fn count(checked: &[GeoFields], known: impl Fn(&GeoFields) -> &str) -> usize {
    checked.iter().filter(|g| known(g) != NONE).count()
}

#[test]
fn city_database_gives_country_and_city_for_every_network() {
    let Some(dir) = data_dir() else { return };
    let geo = GeoIp::open(&[db(&dir, "GeoIP2-City-Test.mmdb")]).unwrap();
    let src = source(&dir, "GeoIP2-City-Test.json");
    let checked = check_all(&geo, &[&src]);
    // 251 networks: 230 IPv6 and 21 IPv4 (3 written as IPv4, 18 as `::a.b.c.d`), the IPv4
    // ones looked up three ways: 293 lookups.
    assert!(checked.len() >= 290, "{} lookups", checked.len());
    assert!(count(&checked, |g| &g.region) >= 280);
    assert!(count(&checked, |g| &g.city) >= 40);
    assert!(checked.iter().all(|g| g.isp == NONE && g.asn == NONE));

    // Readable spot checks, from the source data: the country, not the registered country
    // (US for this network), and names with spaces and non-ASCII letters.
    let london = geo.lookup("81.2.69.142".parse().unwrap());
    assert_eq!(
        (london.region.as_str(), london.city.as_str()),
        ("GB", "London")
    );
    let san_diego = geo.lookup("2001:480:10::1".parse().unwrap());
    assert_eq!(
        (san_diego.region.as_str(), san_diego.city.as_str()),
        ("US", "San_Diego")
    );
    let linkoping = geo.lookup("::ffff:89.160.20.130".parse().unwrap());
    assert_eq!(
        (linkoping.region.as_str(), linkoping.city.as_str()),
        ("SE", "Linköping")
    );
    assert_eq!(geo.lookup("127.0.0.1".parse().unwrap()), GeoFields::none());
    assert_eq!(geo.lookup("::1".parse().unwrap()), GeoFields::none());
}

#[test]
fn isp_and_asn_databases_give_isp_and_as_for_every_network() {
    let Some(dir) = data_dir() else { return };
    let geo = GeoIp::open(&[db(&dir, "GeoIP2-ISP-Test.mmdb")]).unwrap();
    let src = source(&dir, "GeoIP2-ISP-Test.json");
    let checked = check_all(&geo, &[&src]);
    // 2109 networks, 1879 of them IPv4.
    assert!(checked.len() >= 5800, "{} lookups", checked.len());
    assert!(count(&checked, |g| &g.isp) >= 4000);
    assert!(count(&checked, |g| &g.asn) >= 1600);
    assert!(count(&checked, |g| &g.aso) >= 1000);
    assert!(checked.iter().all(|g| g.region == NONE && g.city == NONE));
    let telstra = geo.lookup("1.128.0.0".parse().unwrap());
    assert_eq!(
        (
            telstra.isp.as_str(),
            telstra.asn.as_str(),
            telstra.aso.as_str()
        ),
        ("Telstra_Internet", "1221", "Telstra_Pty_Ltd")
    );

    let geo = GeoIp::open(&[db(&dir, "GeoLite2-ASN-Test.mmdb")]).unwrap();
    let src = source(&dir, "GeoLite2-ASN-Test.json");
    let checked = check_all(&geo, &[&src]);
    // 720 networks, 490 of them IPv4.
    assert!(checked.len() >= 1700, "{} lookups", checked.len());
    assert!(count(&checked, |g| &g.asn) >= 1700);
    assert!(count(&checked, |g| &g.aso) >= 1000);
    assert!(checked.iter().all(|g| g.isp == NONE && g.region == NONE));
    let telstra = geo.lookup("1.128.0.0".parse().unwrap());
    assert_eq!(
        (
            telstra.isp.as_str(),
            telstra.asn.as_str(),
            telstra.aso.as_str()
        ),
        ("None", "1221", "Telstra_Pty_Ltd")
    );
}

#[test]
fn city_and_isp_together_fill_every_field() {
    let Some(dir) = data_dir() else { return };
    // As an operator configures them: `GeoIPDatabaseFilenames: [City, ISP]`.
    let geo = GeoIp::open(&[
        db(&dir, "GeoIP2-City-Test.mmdb"),
        db(&dir, "GeoIP2-ISP-Test.mmdb"),
    ])
    .unwrap();
    let city = source(&dir, "GeoIP2-City-Test.json");
    let isp = source(&dir, "GeoIP2-ISP-Test.json");
    let checked = check_all(&geo, &[&city, &isp]);
    assert!(checked.len() >= 6100, "{} lookups", checked.len());
    let complete = checked
        .iter()
        .filter(|g| {
            [&g.region, &g.city, &g.isp, &g.asn, &g.aso]
                .iter()
                .all(|f| *f != NONE)
        })
        .count();
    assert!(complete >= 3, "{complete} addresses with every field");
    assert_eq!(
        geo.lookup("89.160.20.112".parse().unwrap()),
        GeoFields {
            region: "SE".to_owned(),
            city: "Linköping".to_owned(),
            isp: "Bredband2_AB".to_owned(),
            asn: "29518".to_owned(),
            aso: "Bredband2_AB".to_owned(),
        }
    );
}

/// Addresses to try on any database: both ends of both families, ones the test databases map,
/// and an IPv4-mapped one.
const PROBES: &[&str] = &[
    "0.0.0.0",
    "1.1.1.1",
    "1.128.0.0",
    "81.2.69.142",
    "89.160.20.112",
    "127.0.0.1",
    "216.160.83.56",
    "255.255.255.255",
    "::",
    "::1",
    "::1.2.3.4",
    "::ffff:81.2.69.142",
    "2001:218::",
    "2001:480:10::1",
    "2002:5102:458e::",
    "2a02:d500::",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
];

/// The first addresses of up to 64 networks the file's search tree maps to data (found with
/// the reader psiphond uses, so a lookup there decodes that data), stopping at the first error.
fn networks_with_data(path: &str) -> Vec<IpAddr> {
    let Ok(reader) = maxminddb::Reader::open_readfile(path) else {
        return Vec::new();
    };
    let Ok(networks) = reader.networks(Default::default()) else {
        return Vec::new();
    };
    networks
        .map_while(|n| n.ok()?.network().ok())
        .map(|n| n.ip())
        .take(64)
        .collect()
}

/// What opening a file and probing it did.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Answered,
}

fn open_and_probe(path: String) -> Result<Outcome, String> {
    let result = std::panic::catch_unwind(|| match GeoIp::open(std::slice::from_ref(&path)) {
        Err(e) => Outcome::Refused(e.to_string()),
        Ok(geo) => {
            let mut probes: Vec<IpAddr> = PROBES.iter().map(|p| p.parse().unwrap()).collect();
            probes.extend(networks_with_data(&path));
            for ip in probes {
                geo.lookup(ip);
            }
            Outcome::Answered
        }
    });
    result.map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

fn mmdb_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            mmdb_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "mmdb") {
            out.push(path);
        }
    }
}

#[test]
fn corrupt_and_hostile_databases_are_refused_or_answer_without_panic_or_hang() {
    let Some(dir) = data_dir() else { return };
    let mut files = Vec::new();
    mmdb_files(&dir.join("bad-data"), &mut files);
    let bad = files.len();
    // And every database in test-data: the well-formed ones, the broken and invalid ones, and
    // those built to make a reader do unbounded work (see its README).
    mmdb_files(&dir.join("test-data"), &mut files);
    files.sort();
    assert!(bad >= 20, "{bad} files in bad-data");
    assert!(files.len() >= bad + 40, "{} files", files.len());

    let (mut refused, mut answered) = (Vec::new(), Vec::new());
    for file in &files {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = file.display().to_string();
        std::thread::spawn(move || {
            let _ = tx.send(open_and_probe(path));
        });
        // A hang is what this bounds: generous for a debug build on a busy machine.
        let name = file.strip_prefix(&dir).unwrap().display().to_string();
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(Outcome::Refused(e))) => {
                assert!(
                    e.contains(&file.display().to_string()) && e.contains("GeoIPDatabaseFilenames"),
                    "{name}: {e}"
                );
                refused.push(name);
            }
            Ok(Ok(Outcome::Answered)) => answered.push(name),
            Ok(Err(panic)) => panic!("{name}: GeoIP panicked: {panic}"),
            Err(e) => panic!("{name}: GeoIP did not return within 60 s ({e})"),
        }
    }
    eprintln!("refused at open: {refused:#?}\nopened and answered: {answered:#?}");
    assert!(refused.len() >= 10, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psiphond_runs_with_the_maxmind_databases() {
    let Some(dir) = data_dir() else { return };
    let mut f = fixture(false);
    f.config.geoip_database_filenames = vec![
        db(&dir, "GeoIP2-City-Test.mmdb"),
        db(&dir, "GeoIP2-ISP-Test.mmdb"),
    ];
    let server = Server::start(f.config.clone()).await.unwrap();
    // The client is on loopback, which MaxMind's databases do not map.
    let conn = common::connect_with(&server, &f.entry, "OSSH", None, password(&f.entry))
        .await
        .unwrap();
    let body = request(&conn, "psiphon-handshake", &handshake_params("OSSH"))
        .await
        .unwrap();
    assert_eq!(
        HandshakeResponse::from_json(&body).unwrap().client_region,
        NONE
    );
    drop(conn);
    server.shutdown().await;
    let log = f.log_text();
    let tunnel = log
        .lines()
        .find(|l| l.contains("\"server_tunnel\""))
        .expect("a server_tunnel event");
    for field in ["region", "city", "isp", "asn", "aso"] {
        let want = format!("\"client_{field}\":\"None\"");
        assert!(tunnel.contains(&want), "{want} missing from {tunnel}");
    }
}
