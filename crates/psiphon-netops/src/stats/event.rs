//! One psiphond log line, reduced to what the statistics need.
//!
//! psiphond (tunnel-core's and ours) writes one JSON object per line with `event_name` and an
//! RFC 3339 `timestamp`. Three events count:
//!
//! | event | fields kept |
//! |---|---|
//! | `server_tunnel` | `sponsor_id`, `client_region`, `client_asn`, `client_isp`, `relay_protocol`, `duration` (ms), `bytes_up_tcp` + `bytes_up_udp`, `bytes_down_tcp` + `bytes_down_udp` |
//! | `unique_user` | `sponsor_id`, `client_region`, `client_asn`, `client_isp` |
//! | `domain_dest_bytes` | `sponsor_id`, `client_region`, `client_asn`, `domain`, `bytes` (or `bytes_tcp` + `bytes_udp`) |
//!
//! Every other field is dropped unread. A kept text value that looks like an address or a URL
//! is replaced by [`REDACTED`], so a misconfigured logger cannot smuggle one into the store.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// What a kept value that looks like an address or URL is stored as.
pub const REDACTED: &str = "(redacted)";

/// The longest kept text value; longer ones are cut (GeoIP names and mapped domains are short).
const MAX_TEXT: usize = 128;

/// The dimensions every event has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Where {
    /// UTC day, days since 1970-01-01.
    pub day: i64,
    /// `sponsor_id`.
    pub sponsor_id: String,
    /// `client_region`.
    pub region: String,
    /// `client_asn`.
    pub asn: String,
}

/// A log line that counts, reduced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `server_tunnel`: one session.
    Session {
        /// Day, sponsor, region, ASN.
        at: Where,
        /// `client_isp`.
        isp: String,
        /// `relay_protocol`.
        protocol: String,
        /// `duration`, milliseconds.
        duration_ms: i64,
        /// Bytes from the client.
        bytes_up: i64,
        /// Bytes to the client.
        bytes_down: i64,
    },
    /// `unique_user`: one user's first connection of a UTC day.
    UniqueUser {
        /// Day, sponsor, region, ASN.
        at: Where,
        /// `client_isp`.
        isp: String,
    },
    /// `domain_dest_bytes`: bytes to one (regex-mapped) domain.
    DomainBytes {
        /// Day, sponsor, region, ASN.
        at: Where,
        /// `domain`.
        domain: String,
        /// Bytes.
        bytes: i64,
    },
}

/// What one line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// An event the statistics count.
    Event {
        /// The event.
        event: Event,
        /// Address-like fields the line carried (dropped).
        address_fields: usize,
        /// Kept values replaced by [`REDACTED`].
        redacted: usize,
    },
    /// A JSON object with another or no `event_name` (a message, `failed_tunnel`, ...).
    Ignored,
}

/// True if a field's name suggests it holds an address: `addr` (so `address`) anywhere, a
/// word `ip`, `ips`, `ipv4`, `ipv6` or `mac` between `_`s, or `IP`/`Ip` as a camelCase word
/// (`client_ip`, `upstream_ip_address`, `clientAddress`, `clientIP`). It errs on the side of
/// counting too many.
pub fn is_address_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("address")
        || lower.contains("addr")
        || lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| matches!(w, "ip" | "ips" | "ipv4" | "ipv6" | "mac"))
        || camel_ip(name)
}

/// `clientIP`, `clientIp`, `ipAddr`: an `IP`/`Ip` word in camelCase.
fn camel_ip(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let starts_word = i == 0 || b.get(i - 1).is_some_and(u8::is_ascii_lowercase);
        let is_ip = b.get(i) == Some(&b'I') && matches!(b.get(i + 1), Some(b'P' | b'p'));
        let ends_word = b.get(i + 2).is_none_or(|c| !c.is_ascii_lowercase());
        if starts_word && is_ip && ends_word {
            return true;
        }
        i += 1;
    }
    false
}

/// The UTC day (days since 1970-01-01) of an RFC 3339 timestamp, e.g.
/// `2026-11-21T17:25:03.123Z` or `2026-11-21T23:25:03.1+06:00`.
pub fn utc_day(timestamp: &str) -> Option<i64> {
    let date_time = timestamp.get(..19)?;
    let rest = timestamp.get(19..)?;
    let base = crate::time::parse(&format!("{date_time}Z"))?;
    let rest = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            frac.get(digits..)?
        }
        None => rest,
    };
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match rest.split_at_checked(1)? {
                ("+", hm) => (1, hm),
                ("-", hm) => (-1, hm),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let h: i64 = h.parse().ok()?;
            let m: i64 = m.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    Some((base - offset).div_euclid(86_400))
}

/// A kept text value: absent or not a string is "", an address or URL is [`REDACTED`].
fn text(fields: &Map<String, Value>, key: &str, redacted: &mut usize) -> String {
    let value = match fields.get(key) {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Number(n)) => return n.to_string(),
        _ => return String::new(),
    };
    if looks_like_address(value) {
        *redacted += 1;
        return REDACTED.to_owned();
    }
    let mut end = value.len().min(MAX_TEXT);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.get(..end).unwrap_or_default().to_owned()
}

/// An IP address (with or without a port or brackets), a URL, or a path.
fn looks_like_address(value: &str) -> bool {
    let v = value.trim();
    let unbracketed = v.trim_start_matches('[');
    let host = unbracketed
        .split(']')
        .next()
        .unwrap_or(unbracketed)
        .rsplit_once(':')
        .filter(|(h, p)| !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(
            unbracketed.split(']').next().unwrap_or(unbracketed),
            |(h, _)| h,
        );
    v.parse::<IpAddr>().is_ok()
        || host.parse::<IpAddr>().is_ok()
        || v.contains("://")
        || v.contains('/')
        || v.contains('@')
}

/// A byte or millisecond count: a non-negative JSON integer, else 0 (clamped to `i64::MAX`).
fn count(fields: &Map<String, Value>, key: &str) -> i64 {
    fields
        .get(key)
        .and_then(Value::as_u64)
        .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// Address-like field names in `fields` and in any object nested in it.
fn count_address_fields(fields: &Map<String, Value>) -> usize {
    fields
        .iter()
        .map(|(k, v)| {
            let nested = match v {
                Value::Object(m) => count_address_fields(m),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_object)
                    .map(count_address_fields)
                    .sum(),
                _ => 0,
            };
            usize::from(is_address_field(k)) + nested
        })
        .sum()
}

/// Reads one log line.
///
/// # Errors
/// A reason, when the line is not a JSON object or a counted event lacks a valid `timestamp`.
pub fn parse_line(line: &str) -> Result<Parsed, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("not a JSON object".to_owned());
    };
    let name = fields.get("event_name").and_then(Value::as_str);
    if !matches!(
        name,
        Some("server_tunnel" | "unique_user" | "domain_dest_bytes")
    ) {
        return Ok(Parsed::Ignored);
    }
    let day = match fields.get("timestamp") {
        Some(Value::String(t)) => {
            utc_day(t).ok_or_else(|| format!("timestamp {t:?} is not RFC 3339"))?
        }
        _ => return Err("no timestamp".to_owned()),
    };
    let address_fields = count_address_fields(&fields);
    let mut redacted = 0;
    let at = Where {
        day,
        sponsor_id: text(&fields, "sponsor_id", &mut redacted),
        region: text(&fields, "client_region", &mut redacted),
        asn: text(&fields, "client_asn", &mut redacted),
    };
    let event = match name {
        Some("server_tunnel") => Event::Session {
            isp: text(&fields, "client_isp", &mut redacted),
            protocol: text(&fields, "relay_protocol", &mut redacted),
            duration_ms: count(&fields, "duration"),
            bytes_up: count(&fields, "bytes_up_tcp").saturating_add(count(&fields, "bytes_up_udp")),
            bytes_down: count(&fields, "bytes_down_tcp")
                .saturating_add(count(&fields, "bytes_down_udp")),
            at,
        },
        Some("unique_user") => Event::UniqueUser {
            isp: text(&fields, "client_isp", &mut redacted),
            at,
        },
        _ => Event::DomainBytes {
            domain: text(&fields, "domain", &mut redacted),
            bytes: if fields.contains_key("bytes") {
                count(&fields, "bytes")
            } else {
                count(&fields, "bytes_tcp").saturating_add(count(&fields, "bytes_udp"))
            },
            at,
        },
    };
    Ok(Parsed::Event {
        event,
        address_fields,
        redacted,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn kept_texts(event: &Event) -> Vec<&str> {
        match event {
            Event::Session {
                at, isp, protocol, ..
            } => vec![&at.sponsor_id, &at.region, &at.asn, isp, protocol],
            Event::UniqueUser { at, isp } => vec![&at.sponsor_id, &at.region, &at.asn, isp],
            Event::DomainBytes { at, domain, .. } => {
                vec![&at.sponsor_id, &at.region, &at.asn, domain]
            }
        }
        .into_iter()
        .map(String::as_str)
        .collect()
    }

    proptest! {
        /// Any line: an answer, never a panic.
        #[test]
        fn any_line_is_answered(line in ".{0,300}") {
            let _ = parse_line(&line);
        }

        /// Whatever fields a counted event carries, an IPv4 or IPv6 address, with or without
        /// a port, or a URL, in any field, never comes out in a kept value.
        #[test]
        fn no_address_is_kept(
            event in prop::sample::select(vec!["server_tunnel", "unique_user", "domain_dest_bytes"]),
            v4 in any::<[u8; 4]>(),
            v6 in any::<[u16; 8]>(),
            port in any::<u16>(),
            keys in prop::collection::vec(
                prop::sample::select(vec![
                    "sponsor_id", "client_region", "client_asn", "client_isp",
                    "relay_protocol", "domain", "client_ip", "other",
                ]),
                1..6,
            ),
            form in 0usize..5,
        ) {
            let v4 = std::net::Ipv4Addr::from(v4).to_string();
            let v6 = std::net::Ipv6Addr::from(v6).to_string();
            let value = match form {
                0 => v4.clone(),
                1 => format!("{v4}:{port}"),
                2 => v6.clone(),
                3 => format!("[{v6}]:{port}"),
                _ => format!("https://{v4}/x"),
            };
            let mut fields = Map::new();
            fields.insert("event_name".into(), Value::from(event));
            fields.insert("timestamp".into(), Value::from("2026-11-21T10:00:00Z"));
            for k in &keys {
                fields.insert((*k).to_owned(), Value::from(value.clone()));
            }
            let line = Value::Object(fields).to_string();
            let Ok(Parsed::Event { event, .. }) = parse_line(&line) else {
                return Err(TestCaseError::fail(format!("not an event: {line}")));
            };
            for text in kept_texts(&event) {
                prop_assert!(!text.contains(&v4) && !text.contains(&v6), "{text} from {line}");
            }
        }
    }

    #[test]
    fn address_fields() {
        for name in [
            "client_ip",
            "upstream_ip_address",
            "meek_dial_ip_address",
            "clientAddress",
            "clientIP",
            "ipAddr",
            "IP",
            "peer_addr",
            "relayed_steering_ip",
            "blocklist_ip_address",
            "client_mac",
            "meek_dial_address",
            "meek_resolved_ip_address",
            "inproxy_broker_resolved_ip_address",
            "steering_ip",
        ] {
            assert!(is_address_field(name), "{name}");
        }
        for name in [
            "client_platform",
            "relay_protocol",
            "is_first_tunnel_in_session",
            "sponsor_id",
            "client_region",
            "ssh_protocol_bytes",
            "authorized_access_types",
            "tip",
            "shipping",
            "network_latency_multiplier",
        ] {
            assert!(!is_address_field(name), "{name}");
        }
    }

    #[test]
    fn days_of_timestamps() {
        let day = crate::time::parse("2026-11-21").unwrap() / 86_400;
        assert_eq!(utc_day("2026-11-21T17:25:03Z"), Some(day));
        assert_eq!(utc_day("2026-11-21T17:25:03.123456789Z"), Some(day));
        assert_eq!(utc_day("2026-11-21T23:59:59.999Z"), Some(day));
        assert_eq!(utc_day("2026-11-22T05:00:00+06:00"), Some(day));
        assert_eq!(utc_day("2026-11-21T20:00:00-04:00"), Some(day + 1));
        for bad in [
            "2026-11-21",
            "2026-11-21T17:25:03",
            "2026-11-21T17:25:03.Z",
            "2026-11-21T17:25:03+6",
            "yesterday",
        ] {
            assert_eq!(utc_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines() {
        let line = r#"{"event_name":"server_tunnel","timestamp":"2026-11-21T17:25:03.1Z","client_ip":"198.51.100.7","sponsor_id":"ABCDEF0123456789","client_region":"CA","client_asn":"64500","client_isp":"Example_ISP","relay_protocol":"OSSH","duration":1500,"bytes_up_tcp":10,"bytes_up_udp":1,"bytes_down_tcp":100,"bytes_down_udp":2,"session_id":"x"}"#;
        let Parsed::Event {
            event,
            address_fields,
            redacted,
        } = parse_line(line).unwrap()
        else {
            panic!("not an event");
        };
        assert_eq!((address_fields, redacted), (1, 0));
        let Event::Session {
            at,
            isp,
            protocol,
            duration_ms,
            bytes_up,
            bytes_down,
        } = event
        else {
            panic!("{event:?}");
        };
        assert_eq!(at.region, "CA");
        assert_eq!(at.asn, "64500");
        assert_eq!(isp, "Example_ISP");
        assert_eq!(protocol, "OSSH");
        assert_eq!((duration_ms, bytes_up, bytes_down), (1500, 11, 102));

        let line = r#"{"event_name":"domain_dest_bytes","timestamp":"2026-11-21T17:25:03Z","domain":"203.0.113.9","sponsor_id":"https://x.example/a","bytes_tcp":5,"bytes_udp":6}"#;
        let Parsed::Event {
            event: Event::DomainBytes { at, domain, bytes },
            redacted,
            ..
        } = parse_line(line).unwrap()
        else {
            panic!("not domain bytes");
        };
        assert_eq!(
            (domain.as_str(), at.sponsor_id.as_str()),
            (REDACTED, REDACTED)
        );
        assert_eq!((bytes, redacted), (11, 2));

        let nested = r#"{"event_name":"unique_user","timestamp":"2026-11-21T00:00:00Z","meek":{"peer_address":"x","list":[{"clientIp":"y"}]}}"#;
        assert!(matches!(
            parse_line(nested),
            Ok(Parsed::Event {
                address_fields: 2,
                ..
            })
        ));
        assert_eq!(
            parse_line(r#"{"level":"info","msg":"hello"}"#),
            Ok(Parsed::Ignored)
        );
        assert_eq!(
            parse_line(r#"{"event_name":"failed_tunnel","timestamp":"x"}"#),
            Ok(Parsed::Ignored)
        );
        assert!(parse_line("not json").is_err());
        assert!(parse_line("[1]").is_err());
        assert!(parse_line(r#"{"event_name":"unique_user"}"#).is_err());
        assert!(parse_line(r#"{"event_name":"unique_user","timestamp":"today"}"#).is_err());
        for v in ["[2001:db8::1]:443", "192.0.2.1:80", "2001:db8::1", "a@b"] {
            assert!(looks_like_address(v), "{v}");
        }
        for v in ["example.org", "(OTHER)", "CA", "64500", "Example_ISP"] {
            assert!(!looks_like_address(v), "{v}");
        }
    }
}
