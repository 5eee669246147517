//! Properties of discovery and of the psinet time parser, over random inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use psiphon_server::discovery::{
    ClassicBuckets, ConsistentRing, Discovery, DiscoveryServer, Strategy, canonical_ip_string,
};
use psiphon_server::time::{parse_rfc3339, rfc3339, rfc3339_millis};

proptest! {
    #[test]
    fn rfc3339_round_trips(secs in 0u64..8_000_000_000, millis in 0u64..1000) {
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis);
        prop_assert_eq!(parse_rfc3339(&rfc3339_millis(t)), Some(t));
        prop_assert_eq!(
            parse_rfc3339(&rfc3339(t)),
            Some(UNIX_EPOCH + Duration::from_secs(secs))
        );
    }

    #[test]
    fn rfc3339_never_panics(text in "\\PC{0,40}") {
        let _ = parse_rfc3339(&text);
    }

    #[test]
    fn every_server_owns_exactly_one_partition(
        members in proptest::collection::btree_set(any::<u32>(), 0..200)
    ) {
        let names: Vec<String> = members.iter().map(|&m| Ipv4Addr::from(m).to_string()).collect();
        let ring = ConsistentRing::new(&names);
        let owners: BTreeSet<usize> = (0..names.len()).filter_map(|p| ring.owner(p)).collect();
        prop_assert_eq!(owners.len(), names.len());
    }

    #[test]
    fn classic_buckets_partition_the_list(n in 0usize..2000, value: u8, secs: u32) {
        let b = ClassicBuckets::new(n);
        let covered: Vec<usize> = (0..b.len()).flat_map(|i| b.bucket(i).unwrap()).collect();
        prop_assert_eq!(covered, (0..n).collect::<Vec<_>>());
        match b.select(value, i64::from(secs)) {
            Some(i) => prop_assert!(i < n),
            None => prop_assert_eq!(n, 0),
        }
    }

    #[test]
    fn a_selected_server_is_discoverable(
        ranges in proptest::collection::vec((0u64..100, 0u64..100), 0..30),
        now in 0u64..120,
        client: u128,
        classic: bool,
    ) {
        let servers: Vec<DiscoveryServer> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(a, len))| DiscoveryServer {
                ip_address: format!("192.0.2.{i}"),
                encoded_server_entry: String::new(),
                date_range: Some((
                    UNIX_EPOCH + Duration::from_secs(a),
                    UNIX_EPOCH + Duration::from_secs(a + len),
                )),
            })
            .collect();
        let strategy = if classic { Strategy::Classic } else { Strategy::Consistent };
        let now = UNIX_EPOCH + Duration::from_secs(now);
        let d = Discovery::new(servers.clone(), strategy, "key", UNIX_EPOCH);
        let client = IpAddr::V6(Ipv6Addr::from(client));
        let any_discoverable = servers.iter().any(|s| s.is_discoverable(now));
        match d.select(client, now) {
            Some(s) => prop_assert!(s.is_discoverable(now)),
            // Both strategies find one whenever any is discoverable.
            None => prop_assert!(!any_discoverable),
        }
        // Go's form: v4-mapped addresses print as a dotted quad.
        let text = canonical_ip_string(client);
        prop_assert_eq!(text.contains('.'), client.to_canonical().is_ipv4());
    }
}
