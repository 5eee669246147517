use super::filter::wildcard;
use super::*;

#[test]
fn generated_rules_parse_to_defaults() {
    let text = generated_rules_json().to_string();
    let set = TrafficRulesSet::parse(&text, "t").unwrap();
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    let geo = GeoFields::none();
    let client = Client {
        tunnel_protocol: "OSSH",
        geo: &geo,
        handshake: None,
        first_tunnel_in_session: true,
    };
    assert_eq!(set.select(&client), TrafficRules::default());
}

fn client<'a>(geo: &'a GeoFields, handshake: Option<&'a ApiParams>) -> Client<'a> {
    Client {
        tunnel_protocol: "OSSH",
        geo,
        handshake,
        first_tunnel_in_session: true,
    }
}

fn geo(region: &str, asn: &str) -> GeoFields {
    GeoFields {
        region: region.to_owned(),
        asn: asn.to_owned(),
        ..GeoFields::none()
    }
}

const RULES: &str = r#"{
    "DefaultRules": {
        "RateLimits": {"ReadBytesPerSecond": 1000, "WriteBytesPerSecond": 2000,
                       "WriteUnthrottledBytes": 500},
        "MaxTCPPortForwardCount": 2,
        "DisallowTCPPorts": [25, [6000, 6010]],
        "DisallowSubnets": ["10.0.0.0/8"]
    },
    "FilteredRules": [
        {"Filter": {"Regions": ["IR"], "TunnelProtocols": ["OSSH"]},
         "ExceptFilter": {"ASNs": ["64500"]},
         "Rules": {"RateLimits": {"ReadBytesPerSecond": 0}, "DisableDiscovery": true}},
        {"Filter": {"HandshakeParameters": {"sponsor_id": ["AB*"], "client_platform": ["Android*"]},
                    "MinClientVersion": 100, "MaxClientVersion": 200},
         "Rules": {"AllowTCPPorts": [443], "AllowSubnets": ["192.0.2.0/24"],
                   "IdleTCPPortForwardTimeoutMilliseconds": 5000}},
        {"Filter": {"APIProtocol": "ssh"}, "Rules": {"MaxTCPDialingPortForwardCount": 3}}
    ]
}"#;

#[test]
fn defaults_then_the_first_matching_filter() {
    let set = TrafficRulesSet::parse(RULES, "rules.config").unwrap();
    let none = GeoFields::none();
    let r = set.select(&client(&none, None));
    assert_eq!(r.rate_limits.read_bytes_per_second, 1000);
    assert_eq!(r.rate_limits.write_bytes_per_second, 2000);
    assert_eq!(r.rate_limits.write_unthrottled_bytes, 500);
    assert_eq!(r.max_tcp_port_forward_count, 2);
    assert!(!r.disable_discovery);
    // Before the handshake, only the establishment rates apply.
    assert_eq!(r.rate_limits.limits(false).read_bytes_per_second, 0);
    assert_eq!(r.rate_limits.limits(true).read_bytes_per_second, 1000);

    // Region and protocol match; the except filter takes one ASN out.
    let iran = geo("IR", "1");
    let r = set.select(&client(&iran, None));
    assert_eq!(r.rate_limits.read_bytes_per_second, 0);
    assert_eq!(r.rate_limits.write_bytes_per_second, 2000);
    assert!(r.disable_discovery);
    let excepted = geo("IR", "64500");
    assert!(!set.select(&client(&excepted, None)).disable_discovery);
    let ssh = Client {
        tunnel_protocol: "SSH",
        ..client(&iran, None)
    };
    assert!(!set.select(&ssh).disable_discovery);

    // Handshake parameters (wildcards) and client version, only after the handshake.
    let params = ApiParams::base("X", "ABCDEF", "150", "Android_13");
    let r = set.select(&client(&none, Some(&params)));
    assert!(r.allow_tcp_ports.contains(443));
    assert_eq!(r.idle_tcp_port_forward_timeout, Duration::from_secs(5));
    let old = ApiParams::base("X", "ABCDEF", "99", "Android_13");
    let r = set.select(&client(&none, Some(&old)));
    assert!(r.allow_tcp_ports.is_empty());
    // Which falls through to the APIProtocol filter, which needs the handshake.
    assert_eq!(r.max_tcp_dialing_port_forward_count, 3);
    let other = ApiParams::base("X", "XYZ", "150", "Android_13");
    assert!(
        set.select(&client(&none, Some(&other)))
            .allow_tcp_ports
            .is_empty()
    );
    assert_eq!(
        set.select(&client(&none, None))
            .max_tcp_dialing_port_forward_count,
        DEFAULT_MAX_TCP_DIALING_PORT_FORWARD_COUNT
    );
}

#[test]
fn ports_and_subnets_as_tunnel_core_orders_them() {
    let set = TrafficRulesSet::parse(RULES, "rules.config").unwrap();
    let none = GeoFields::none();
    let asn = |_| "1".to_owned();
    let r = set.select(&client(&none, None));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(r.allow_tcp(ip("198.51.100.1"), 80, asn));
    assert!(!r.allow_tcp(ip("198.51.100.1"), 25, asn));
    assert!(!r.allow_tcp(ip("198.51.100.1"), 6005, asn));
    assert!(r.allow_tcp(ip("198.51.100.1"), 6011, asn));
    assert!(!r.allow_tcp(ip("10.1.2.3"), 80, asn));
    assert!(!r.allow_tcp(ip("::ffff:10.1.2.3"), 80, asn));
    // With AllowTCPPorts, other ports only to AllowSubnets (the filtered rules replace the
    // default lists they set, and keep the rest).
    let params = ApiParams::base("X", "ABCDEF", "150", "Android_13");
    let r = set.select(&client(&none, Some(&params)));
    assert!(r.allow_tcp(ip("198.51.100.1"), 443, asn));
    assert!(!r.allow_tcp(ip("198.51.100.1"), 80, asn));
    assert!(r.allow_tcp(ip("192.0.2.7"), 80, asn));
    assert!(!r.allow_tcp(ip("192.0.2.7"), 25, asn));
    // ASNs.
    let mut r = TrafficRules {
        disallow_asns: vec!["64501".to_owned()],
        ..TrafficRules::default()
    };
    assert!(!r.allow_tcp(ip("198.51.100.1"), 80, |_| "64501".to_owned()));
    r.allow_tcp_ports = PortList {
        ranges: vec![(443, 443)],
    };
    r.allow_asns = vec!["64502".to_owned()];
    assert!(r.allow_tcp(ip("198.51.100.1"), 80, |_| "64502".to_owned()));
    assert!(!r.allow_tcp(ip("198.51.100.1"), 80, |_| "64503".to_owned()));
    let v6 = Subnet::parse("2001:db8::/32").unwrap();
    assert!(v6.contains(ip("2001:db8::1")) && !v6.contains(ip("2001:db9::1")));
    assert!(Subnet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    assert!(Subnet::parse("1.2.3.4/33").is_none());
}

#[test]
fn unthrottle_first_tunnel_only() {
    let text = r#"{"DefaultRules":{"RateLimits":{"ReadUnthrottledBytes":100,
        "WriteUnthrottledBytes":100,"UnthrottleFirstTunnelOnly":true}}}"#;
    let set = TrafficRulesSet::parse(text, "t").unwrap();
    let none = GeoFields::none();
    assert_eq!(
        set.select(&client(&none, None))
            .rate_limits
            .read_unthrottled_bytes,
        100
    );
    let later = Client {
        first_tunnel_in_session: false,
        ..client(&none, None)
    };
    assert_eq!(set.select(&later).rate_limits.write_unthrottled_bytes, 0);
    let params =
        ApiParams::base("X", "ABCDEF", "1", "Windows").with_str("established_tunnels_count", "2");
    let r = set.select(&client(&none, Some(&params)));
    assert_eq!(r.rate_limits.read_unthrottled_bytes, 0);
}

#[test]
fn errors_name_the_file_and_key_and_unknown_keys_are_reported() {
    for (text, key) in [
        (
            r#"{"DefaultRules":{"MaxTCPPortForwardCount":"x"}}"#,
            "MaxTCPPortForwardCount",
        ),
        (
            r#"{"DefaultRules":{"RateLimits":{"ReadBytesPerSecond":-1}}}"#,
            "DefaultRules.RateLimits.ReadBytesPerSecond",
        ),
        (
            r#"{"FilteredRules":[{"Rules":{"AllowTCPPorts":[70000]}}]}"#,
            "FilteredRules[0].Rules.AllowTCPPorts",
        ),
        (
            r#"{"FilteredRules":[{},{"Rules":{"DisallowSubnets":["10.0.0.0"]}}]}"#,
            "FilteredRules[1].Rules.DisallowSubnets",
        ),
        (
            r#"{"FilteredRules":[{"Filter":{"HandshakeParameters":{"sponsor_id":"x"}}}]}"#,
            "FilteredRules[0].Filter.HandshakeParameters.sponsor_id",
        ),
        (
            r#"{"DefaultRules":{"DisableDiscovery":1}}"#,
            "DisableDiscovery",
        ),
        (r#"{"FilteredRules":{}}"#, "FilteredRules"),
    ] {
        let err = TrafficRulesSet::parse(text, "rules.config").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("rules.config") && msg.contains(key),
            "{msg} should name {key}"
        );
    }
    let set = TrafficRulesSet::parse(
        r#"{"DefaultRules":{"MaxTCPPortForwardCount":1,"Bogus":1},"MeekRateLimiterRegions":[]}"#,
        "rules.config",
    )
    .unwrap();
    assert_eq!(set.warnings.len(), 1);
    assert!(set.warnings[0].contains("DefaultRules.Bogus"));
}

#[test]
fn wildcards() {
    assert!(wildcard("*", ""));
    assert!(wildcard("AB*", "ABCDEF"));
    assert!(wildcard("*DEF", "ABCDEF"));
    assert!(wildcard("A?C*F", "ABCDEF"));
    assert!(!wildcard("AB", "ABC"));
    assert!(!wildcard("*X*", "ABC"));
}

#[test]
fn reload_keeps_the_old_rules_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.config");
    let log_path = dir.path().join("log");
    let log = EventLog::open(Some(&log_path), "h", Level::Info).unwrap();
    std::fs::write(&path, r#"{"DefaultRules":{"MaxTCPPortForwardCount":1}}"#).unwrap();
    let store = RulesStore::open(Some(&path)).unwrap();
    let none = GeoFields::none();
    let max = |store: &RulesStore| {
        store
            .current()
            .select(&client(&none, None))
            .max_tcp_port_forward_count
    };
    assert_eq!(max(&store), 1);
    assert_eq!(store.reload_if_changed(&log), ReloadOutcome::Unchanged);
    std::fs::write(&path, r#"{"DefaultRules":{"MaxTCPPortForwardCount":7}}"#).unwrap();
    bump_mtime(&path);
    assert_eq!(store.reload_if_changed(&log), ReloadOutcome::Reloaded);
    assert_eq!(max(&store), 7);
    std::fs::write(&path, r#"{"DefaultRules":{"MaxTCPPortForwardCount":-7}}"#).unwrap();
    bump_mtime(&path);
    assert_eq!(store.reload_if_changed(&log), ReloadOutcome::Failed);
    assert_eq!(max(&store), 7);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("\"error\"")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains("rules.config") && errors[0].contains("MaxTCPPortForwardCount"),
        "{text}"
    );
}

fn bump_mtime(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    let t = std::fs::metadata(path).unwrap().modified().unwrap() + Duration::from_secs(2);
    f.set_modified(t).unwrap();
}

#[test]
fn the_readme_example_parses() {
    let readme = include_str!("../../README.md");
    // The README's example rules file: the JSON block that holds `DefaultRules`.
    let at = readme.find("\"DefaultRules\"").unwrap();
    let start = readme[..at].rfind("```json\n").unwrap() + "```json\n".len();
    let len = readme[start..].find("```").unwrap();
    let set = TrafficRulesSet::parse(&readme[start..start + len], "README.md").unwrap();
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    let iran = geo("IR", "1");
    let params = ApiParams::base("X", "ABCDEF", "1", "Windows");
    let r = set.select(&client(&iran, Some(&params)));
    assert_eq!(r.rate_limits.read_bytes_per_second, 1_000_000);
    assert!(r.disallow_tcp_ports.contains(6665));
}

proptest::proptest! {
    #[test]
    fn any_rules_text_is_read_or_refused_without_panicking(text in ".{0,200}") {
        let _ = TrafficRulesSet::parse(&text, "t");
        let _ = Subnet::parse(&text);
    }

    #[test]
    fn any_json_rules_value_selects_without_panicking(
        port in proptest::prelude::any::<u64>(),
        rate in proptest::prelude::any::<i64>(),
        prefix in 0u8..140,
        version in proptest::prelude::any::<i64>(),
    ) {
        let text = format!(
            r#"{{"DefaultRules":{{"AllowTCPPorts":[{port},[1,{port}]],
                "RateLimits":{{"ReadBytesPerSecond":{rate}}},
                "AllowSubnets":["10.0.0.0/{prefix}"]}},
              "FilteredRules":[{{"Filter":{{"MinClientVersion":{version}}},"Rules":{{}}}}]}}"#
        );
        if let Ok(set) = TrafficRulesSet::parse(&text, "t") {
            let none = GeoFields::none();
            let params = ApiParams::base("X", "S", "5", "Windows");
            let r = set.select(&client(&none, Some(&params)));
            let _ = r.allow_tcp("10.1.2.3".parse().unwrap(), 80, |_| String::new());
        }
    }
}
