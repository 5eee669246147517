//! Every case of `shared/reference/vectors/discovery.json` (produced by running
//! psiphon-tunnel-core's discovery): canonical address forms, hashes, buckets, the ring, and
//! each selected server, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use psiphon_server::discovery::{
    ClassicBuckets, ClientKey, ConsistentRing, Discovery, DiscoveryServer, Strategy,
    TIME_GRANULARITY_SECS, canonical_ip_string, discovery_value, ip_16_bytes, partition_point,
    ring_point, xxhash64,
};
use psiphon_server::time::{parse_rfc3339, unix_seconds};
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

fn load() -> Value {
    let path = vectors_dir().join("discovery.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read known-answer vectors {}: {e}\n\
             They come from the project's sibling directory shared/reference/vectors/; \
             set PSIPHON_VECTORS_DIR to their directory.",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
}

fn u64_str(v: &Value, key: &str) -> u64 {
    s(v, key).parse().unwrap()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key} in {v}"))
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key} in {v}"))
}

fn time(text: &str) -> SystemTime {
    parse_rfc3339(text).unwrap_or_else(|| panic!("bad time {text}"))
}

fn range(v: &Value) -> Option<(SystemTime, SystemTime)> {
    let r = v.as_array().unwrap();
    assert_eq!(r.len(), 2);
    Some((time(r[0].as_str().unwrap()), time(r[1].as_str().unwrap())))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn selected(v: &Value) -> Option<&str> {
    match &v["selected"] {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => panic!("bad selected {other}"),
    }
}

/// Checks one classic result; returns 1 (a selection checked).
fn check_classic(
    d: &Discovery,
    r: &Value,
    hmac_key: &str,
    buckets: &ClassicBuckets,
    now: SystemTime,
) -> usize {
    let client = ip(s(r, "client_ip"));
    let i = &r["intermediate"];
    let value = discovery_value(hmac_key, client);
    assert_eq!(u64::from(value), n(i, "discovery_value"), "{r}");
    let bucket_index = buckets.bucket_index(value).unwrap();
    assert_eq!(bucket_index as u64, n(i, "bucket_index"), "{r}");
    let bucket = buckets.bucket(bucket_index).unwrap();
    assert_eq!(bucket.len() as u64, n(i, "bucket_size"), "{r}");
    let hour = unix_seconds(now) / TIME_GRANULARITY_SECS;
    assert_eq!(hour, n(i, "time_strategy_value") as i64, "{r}");
    assert_eq!(
        hour % bucket.len() as i64,
        n(i, "index_in_bucket") as i64,
        "{r}"
    );
    let got = d.select(client, now).map(|s| s.ip_address.as_str());
    assert_eq!(got, selected(r), "classic {r}");
    1
}

/// Checks one consistent result; returns 1.
fn check_consistent(d: &Discovery, r: &Value, ring: &ConsistentRing, now: SystemTime) -> usize {
    let client = ip(s(r, "client_ip"));
    let hash = xxhash64(&ip_16_bytes(client));
    if r.get("xxhash64").is_some() {
        assert_eq!(hash, u64_str(r, "xxhash64"), "{r}");
    }
    assert_eq!(
        ring.partition_of_hash(hash).unwrap() as u64,
        n(r, "partition"),
        "{r}"
    );
    let got = d.select(client, now).map(|s| s.ip_address.as_str());
    assert_eq!(got, selected(r), "consistent {r}");
    // The key kept instead of the address selects the same.
    let key = ClientKey::new(client, "unused by consistent");
    assert_eq!(
        d.select_key(key, now).map(|s| s.ip_address.as_str()),
        selected(r)
    );
    1
}

#[test]
fn discovery_vectors() {
    let v = load();
    let hmac_key = s(&v, "hmac_key");
    let mut checked = 0;

    for c in arr(&v, "client_ips") {
        let client = ip(s(c, "input"));
        assert_eq!(canonical_ip_string(client), s(c, "canonical_string"), "{c}");
        assert_eq!(
            hex::encode(ip_16_bytes(client)),
            s(c, "parsed_16_bytes"),
            "{c}"
        );
        assert_eq!(
            xxhash64(&ip_16_bytes(client)),
            u64_str(c, "xxhash64_of_16_bytes"),
            "{c}"
        );
    }
    assert_eq!(arr(&v, "client_ips").len(), 20);

    for set in arr(&v, "server_sets") {
        let name = s(set, "name");
        let date_range = range(&set["discovery_date_range"]);
        let ips: Vec<&str> = arr(set, "servers")
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        let servers: Vec<DiscoveryServer> = ips
            .iter()
            .map(|&ip| DiscoveryServer {
                ip_address: ip.to_owned(),
                encoded_server_entry: format!("entry for {ip}"),
                date_range,
            })
            .collect();

        // classic
        let classic = &set["classic"];
        let buckets = ClassicBuckets::new(ips.len());
        assert_eq!(buckets.len() as u64, n(classic, "bucket_count"), "{name}");
        for (i, expected) in arr(classic, "buckets").iter().enumerate() {
            let got: Vec<&str> = ips[buckets.bucket(i).unwrap()].to_vec();
            let expected: Vec<&str> = expected
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
                .collect();
            assert_eq!(got, expected, "{name} bucket {i}");
        }
        for by_time in arr(classic, "by_time") {
            let now = time(s(by_time, "time"));
            assert_eq!(unix_seconds(now), n(by_time, "unix") as i64);
            let d = Discovery::new(servers.clone(), Strategy::Classic, hmac_key, now);
            for r in arr(by_time, "results") {
                checked += check_classic(&d, r, hmac_key, &buckets, now);
            }
        }

        // consistent
        let consistent = &set["consistent"];
        let ring = ConsistentRing::new(&ips);
        assert_eq!(
            ring.partition_count() as u64,
            n(consistent, "partition_count")
        );
        for point in arr(consistent, "ring") {
            let ip = s(point, "server_ip");
            assert_eq!(format!("{ip}0"), s(point, "ring_key"));
            assert_eq!(ring_point(ip), u64_str(point, "xxhash64"), "{point}");
        }
        for p in arr(consistent, "partitions") {
            let partition = n(p, "partition");
            assert_eq!(
                partition_point(partition),
                u64_str(p, "xxhash64_of_le_u64"),
                "{p}"
            );
            let owner = ring.owner(usize::try_from(partition).unwrap()).unwrap();
            assert_eq!(ips[owner], s(p, "owner"), "{name} {p}");
        }
        let now = time("2026-08-01T12:34:56Z");
        let d = Discovery::new(servers.clone(), Strategy::Consistent, hmac_key, now);
        for r in arr(consistent, "results") {
            checked += check_consistent(&d, r, &ring, now);
        }
    }

    // Date range filtering: only servers in range take part, in list order.
    let f = &v["date_range_filtering"];
    let now = time(s(f, "time"));
    let servers: Vec<DiscoveryServer> = arr(f, "servers")
        .iter()
        .map(|x| DiscoveryServer {
            ip_address: s(x, "server_ip").to_owned(),
            encoded_server_entry: String::new(),
            date_range: range(&x["discovery_date_range"]),
        })
        .collect();
    let expected: Vec<&str> = arr(f, "discoverable_at_time")
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let classic = Discovery::new(servers.clone(), Strategy::Classic, hmac_key, now);
    let set = classic.set_at(now);
    let got: Vec<&str> = set
        .indexes
        .iter()
        .map(|&i| servers[i].ip_address.as_str())
        .collect();
    assert_eq!(got, expected);
    let buckets = ClassicBuckets::new(expected.len());
    for r in arr(f, "classic") {
        checked += check_classic(&classic, r, hmac_key, &buckets, now);
    }
    let consistent = Discovery::new(servers, Strategy::Consistent, hmac_key, now);
    let ring = ConsistentRing::new(&expected);
    for r in arr(f, "consistent") {
        checked += check_consistent(&consistent, r, &ring, now);
    }

    assert_eq!(checked, 200, "every selection in the file is checked");
}
