//! Server-side checks of API request parameters, following psiphond's rules (which follow
//! the legacy `psi_web` ones).

use std::net::IpAddr;

use serde_json::Value;

use super::params::{ApiParams, LAST_CONNECTED_NONE};
use crate::error::{Error, Result};
use crate::password::{is_hex_digits, is_sponsor_id};
use crate::server_entry::go_base64_decode;
use crate::tunnel_protocol::is_valid_relay_protocol;

/// A client platform after psiphond's normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientPlatform {
    /// Contains "android" in any case.
    Android,
    /// Starts with "iOS".
    Ios,
    /// Starts with "Windows".
    Windows,
    /// Anything else.
    Other,
}

impl ClientPlatform {
    /// The normalised name psiphond logs (`Android`, `iOS`, `Windows`, `Other`).
    pub const fn name(self) -> &'static str {
        match self {
            ClientPlatform::Android => "Android",
            ClientPlatform::Ios => "iOS",
            ClientPlatform::Windows => "Windows",
            ClientPlatform::Other => "Other",
        }
    }

    /// Android and iOS.
    pub const fn is_mobile(self) -> bool {
        matches!(self, ClientPlatform::Android | ClientPlatform::Ios)
    }
}

/// Normalises a reported `client_platform` (e.g. `Android_13_com.psiphon3` is Android).
pub fn normalize_client_platform(client_platform: &str) -> ClientPlatform {
    if client_platform.to_lowercase().contains("android") {
        ClientPlatform::Android
    } else if client_platform.starts_with("iOS") {
        ClientPlatform::Ios
    } else if client_platform.starts_with("Windows") {
        ClientPlatform::Windows
    } else {
        ClientPlatform::Other
    }
}

/// `client_platform` may not contain whitespace (Unicode `White_Space`).
pub fn is_client_platform(value: &str) -> bool {
    !value.chars().any(char::is_whitespace)
}

/// An integer in decimal (optional sign), within `i64`, like Go's `strconv.Atoi`.
pub fn is_int_string(value: &str) -> bool {
    value.parse::<i64>().is_ok()
}

/// A float Go's `strconv.ParseFloat` reads (decimal and exponent forms, `Inf`, `NaN`; hex
/// floats are not accepted here).
pub fn is_float_string(value: &str) -> bool {
    value.parse::<f64>().is_ok()
}

/// `"0"` or `"1"`.
pub fn is_boolean_flag(value: &str) -> bool {
    value == "0" || value == "1"
}

/// Two upper-case ASCII letters.
pub fn is_region_code(value: &str) -> bool {
    value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase())
}

/// An IPv4 or IPv6 address.
pub fn is_ip_address(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok()
}

/// Standard padded base64 (Go's `StdEncoding`).
pub fn is_base64(value: &str) -> bool {
    go_base64_decode("param", value).is_ok()
}

/// `http`, `socks5` or `socks4a`, any case.
pub fn is_upstream_proxy_type(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "http" | "socks5" | "socks4a"
    )
}

/// A server entry source tunnel-core knows: `EMBEDDED`, `REMOTE`, `DISCOVERY`, `TARGET`,
/// `OBFUSCATED`, `EXCHANGED`, `DSL-*`, `PUSH-*`.
pub fn is_server_entry_source(value: &str) -> bool {
    matches!(
        value,
        "EMBEDDED" | "REMOTE" | "DISCOVERY" | "TARGET" | "OBFUSCATED" | "EXCHANGED"
    ) || value.starts_with("DSL-")
        || value.starts_with("PUSH-")
}

/// A geohash of 1 to 12 characters.
pub fn is_geohash(value: &str) -> bool {
    const ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";
    (1..=12).contains(&value.len()) && value.chars().all(|c| ALPHABET.contains(c))
}

/// A domain name as psiphond checks it: at most 255 bytes, an optional trailing dot, every
/// label non-empty, not starting or ending with `-`, and ending in a letter, digit or `-`.
pub fn is_domain(value: &str) -> bool {
    if value.len() > 255 {
        return false;
    }
    let value = value.strip_suffix('.').unwrap_or(value);
    value.split('.').all(|label| {
        !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

/// `<host>:<port>` with an IP or domain host and a decimal port (any size, as psiphond
/// accepts for failed-tunnel reports).
pub fn is_dial_address(value: &str) -> bool {
    let mut parts = value.split(':');
    let (Some(host), Some(port), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    (is_ip_address(host) || is_domain(host))
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && is_int_string(port)
}

/// A host header: a dial address, or a bare IP or domain.
pub fn is_host_header(value: &str) -> bool {
    if value.contains(':') {
        is_dial_address(value)
    } else {
        is_ip_address(value) || is_domain(value)
    }
}

/// A date as psiphond's ISO 8601 layout `2006-01-02T15:04:05.999999999Z0700` reads it:
/// optional fractional seconds, and `Z` or a `±hhmm` offset (no colon). Calendar ranges are
/// checked.
pub fn is_iso8601_date(value: &str) -> bool {
    parse_iso8601(value.as_bytes()).is_some()
}

/// `last_connected`: `"None"` or an ISO 8601 date (see [`is_iso8601_date`]).
pub fn is_last_connected(value: &str) -> bool {
    value == LAST_CONNECTED_NONE || is_iso8601_date(value)
}

fn parse_iso8601(s: &[u8]) -> Option<()> {
    fn num(s: &[u8], at: usize, len: usize) -> Option<u32> {
        let digits = s.get(at..at + len)?;
        digits.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    }
    fn lit(s: &[u8], at: usize, c: u8) -> Option<()> {
        (s.get(at) == Some(&c)).then_some(())
    }
    let year = num(s, 0, 4)?;
    lit(s, 4, b'-')?;
    let month = num(s, 5, 2)?;
    lit(s, 7, b'-')?;
    let day = num(s, 8, 2)?;
    lit(s, 10, b'T')?;
    // Go reads the hour with one or two digits.
    let (hour, mut at) = match num(s, 11, 2) {
        Some(h) => (h, 13),
        None => (num(s, 11, 1)?, 12),
    };
    lit(s, at, b':')?;
    let minute = num(s, at + 1, 2)?;
    lit(s, at + 3, b':')?;
    let second = num(s, at + 4, 2)?;
    at += 6;
    if matches!(s.get(at), Some(b'.' | b',')) && s.get(at + 1).is_some_and(u8::is_ascii_digit) {
        at += 1;
        while s.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
    }
    match s.get(at)? {
        b'Z' => at += 1,
        b'+' | b'-' => {
            let offset_hour = num(s, at + 1, 2)?;
            let offset_minute = num(s, at + 3, 2)?;
            if offset_hour > 24 || offset_minute > 60 {
                return None;
            }
            at += 5;
        }
        _ => return None,
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    let valid = at == s.len()
        && (1..=days_in_month).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then_some(())
}

/// The check applied to a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Any,
    Hex,
    SponsorId,
    Int,
    Float,
    Flag,
    ClientPlatform,
    RelayProtocol,
    Region,
    GeoHash,
    Iso8601,
    LastConnected,
    Base64,
    Ip,
    Domain,
    DialAddress,
    HostHeader,
    UpstreamProxyType,
    ServerEntrySource,
    /// Any JSON value (not checked here; the user of the parameter checks it).
    Json,
    /// A JSON object.
    Object,
}

impl Check {
    fn accepts(self, value: &str) -> bool {
        match self {
            Check::Any | Check::Json | Check::Object => true,
            Check::Hex => is_hex_digits(value),
            Check::SponsorId => is_sponsor_id(value),
            Check::Int => is_int_string(value),
            Check::Float => is_float_string(value),
            Check::Flag => is_boolean_flag(value),
            Check::ClientPlatform => is_client_platform(value),
            Check::RelayProtocol => is_valid_relay_protocol(value),
            Check::Region => is_region_code(value),
            Check::GeoHash => is_geohash(value),
            Check::Iso8601 => is_iso8601_date(value),
            Check::LastConnected => is_last_connected(value),
            Check::Base64 => is_base64(value),
            Check::Ip => is_ip_address(value),
            Check::Domain => is_domain(value),
            Check::DialAddress => is_dial_address(value),
            Check::HostHeader => is_host_header(value),
            Check::UpstreamProxyType => is_upstream_proxy_type(value),
            Check::ServerEntrySource => is_server_entry_source(value),
        }
    }
}

const REQUIRED: u8 = 0;
const OPTIONAL: u8 = 1;
const ARRAY: u8 = 2;

/// (name, check, flags)
type Spec = (&'static str, Check, u8);

const BASE_PARAMS: &[Spec] = &[
    ("propagation_channel_id", Check::Hex, REQUIRED),
    ("sponsor_id", Check::SponsorId, REQUIRED),
    ("client_version", Check::Int, REQUIRED),
    ("client_platform", Check::ClientPlatform, REQUIRED),
    ("client_features", Check::Any, OPTIONAL | ARRAY),
    ("client_build_rev", Check::Hex, OPTIONAL),
    ("device_region", Check::Any, OPTIONAL),
    ("device_location", Check::GeoHash, OPTIONAL),
    ("egress_region", Check::Region, OPTIONAL),
    ("network_type", Check::Any, OPTIONAL),
    ("applied_tactics_tag", Check::Any, OPTIONAL),
    ("compress_response", Check::Int, OPTIONAL),
];

/// The dial parameters psiphond checks that this crate knows; others pass unchecked.
const DIAL_PARAMS: &[Spec] = &[
    ("relay_protocol", Check::RelayProtocol, REQUIRED),
    ("ssh_client_version", Check::Any, OPTIONAL),
    ("upstream_proxy_type", Check::UpstreamProxyType, OPTIONAL),
    (
        "upstream_proxy_custom_header_names",
        Check::Any,
        OPTIONAL | ARRAY,
    ),
    ("fronting_provider_id", Check::Any, OPTIONAL),
    ("meek_dial_address", Check::DialAddress, OPTIONAL),
    ("meek_resolved_ip_address", Check::Ip, OPTIONAL),
    ("meek_sni_server_name", Check::Domain, OPTIONAL),
    ("meek_host_header", Check::HostHeader, OPTIONAL),
    ("meek_transformed_host_name", Check::Flag, OPTIONAL),
    ("user_agent", Check::Any, OPTIONAL),
    ("tls_profile", Check::Any, OPTIONAL),
    ("tls_version", Check::Any, OPTIONAL),
    ("server_entry_region", Check::Region, OPTIONAL),
    ("server_entry_source", Check::ServerEntrySource, OPTIONAL),
    ("server_entry_timestamp", Check::Iso8601, OPTIONAL),
    ("dial_port_number", Check::Int, OPTIONAL),
    ("quic_version", Check::Any, OPTIONAL),
    ("quic_dial_sni_address", Check::Any, OPTIONAL),
    ("upstream_bytes_fragmented", Check::Int, OPTIONAL),
    ("upstream_min_bytes_written", Check::Int, OPTIONAL),
    ("upstream_max_bytes_written", Check::Int, OPTIONAL),
    ("upstream_min_delayed", Check::Int, OPTIONAL),
    ("upstream_max_delayed", Check::Int, OPTIONAL),
    ("padding", Check::Any, OPTIONAL),
    ("pad_response", Check::Int, OPTIONAL),
    ("is_replay", Check::Flag, OPTIONAL),
    ("replay_ignored_change", Check::Flag, OPTIONAL),
    ("dial_duration", Check::Int, OPTIONAL),
    ("candidate_number", Check::Int, OPTIONAL),
    ("established_tunnels_count", Check::Int, OPTIONAL),
    ("upstream_ossh_padding", Check::Int, OPTIONAL),
    ("meek_cookie_size", Check::Int, OPTIONAL),
    ("meek_limit_request", Check::Int, OPTIONAL),
    ("meek_redial_probability", Check::Float, OPTIONAL),
    ("meek_tls_padding", Check::Int, OPTIONAL),
    ("network_latency_multiplier", Check::Float, OPTIONAL),
    ("split_tunnel", Check::Flag, OPTIONAL),
    ("split_tunnel_regions", Check::Region, OPTIONAL | ARRAY),
    ("seed_transform", Check::Any, OPTIONAL),
    ("ossh_prefix", Check::Any, OPTIONAL),
    ("tls_fragmented", Check::Flag, OPTIONAL),
    ("tls_padding", Check::Int, OPTIONAL),
    ("tls_ossh_sni_server_name", Check::Domain, OPTIONAL),
    ("tls_ossh_transformed_host_name", Check::Flag, OPTIONAL),
    ("steering_ip", Check::Ip, OPTIONAL),
    ("server_entry_count", Check::Int, OPTIONAL),
    ("unique_candidate_estimate", Check::Int, OPTIONAL),
    ("candidates_moved_to_front", Check::Int, OPTIONAL),
    ("first_fronted_meek_candidate", Check::Int, OPTIONAL),
];

const HANDSHAKE_ONLY_PARAMS: &[Spec] = &[
    ("missing_server_entry_signature", Check::Base64, OPTIONAL),
    ("missing_server_entry_provider_id", Check::Base64, OPTIONAL),
    ("enable_proxy_protocol_headers", Check::Flag, OPTIONAL),
    ("authorizations", Check::Any, OPTIONAL | ARRAY),
    ("stored_tactics_tag", Check::Any, OPTIONAL),
    ("speed_test_samples", Check::Json, OPTIONAL),
];

const CONNECTED_ONLY_PARAMS: &[Spec] = &[
    ("last_connected", Check::LastConnected, REQUIRED),
    ("establishment_duration", Check::Int, OPTIONAL),
];

const STATUS_ONLY_PARAMS: &[Spec] = &[("statusData", Check::Object, REQUIRED)];

fn validate(params: &ApiParams, specs: &[Spec]) -> Result<()> {
    for &(name, check, flags) in specs {
        let Some(value) = params.get(name) else {
            if flags & OPTIONAL != 0 {
                continue;
            }
            return Err(Error::MissingParam(name.to_owned()));
        };
        let type_error = |expected| Error::ParamType {
            name: name.to_owned(),
            expected,
        };
        if check == Check::Json {
            continue;
        }
        if check == Check::Object {
            if !value.is_object() {
                return Err(type_error("object"));
            }
            continue;
        }
        let items: Vec<&Value> = if flags & ARRAY != 0 {
            value
                .as_array()
                .ok_or_else(|| type_error("array"))?
                .iter()
                .collect()
        } else {
            vec![value]
        };
        for item in items {
            let text = item.as_str().ok_or_else(|| type_error("string"))?;
            if !check.accepts(text) {
                return Err(Error::InvalidParam {
                    name: name.to_owned(),
                    value: text.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Checks the parameters every request must carry: `propagation_channel_id` (hex),
/// `sponsor_id` (16 hex), `client_version` (integer string), `client_platform` (no
/// whitespace), and the optional base parameters when present.
pub fn validate_base_params(params: &ApiParams) -> Result<()> {
    validate(params, BASE_PARAMS)
}

/// Checks a `psiphon-handshake` request: base parameters, `relay_protocol` (a tunnel
/// protocol name) and the dial and handshake parameters this crate knows.
pub fn validate_handshake_params(params: &ApiParams) -> Result<()> {
    validate(params, HANDSHAKE_ONLY_PARAMS)?;
    validate(params, BASE_PARAMS)?;
    validate(params, DIAL_PARAMS)
}

/// Checks a `psiphon-connected` request: `last_connected` (`"None"` or a date) plus base
/// parameters.
pub fn validate_connected_params(params: &ApiParams) -> Result<()> {
    validate(params, CONNECTED_ONLY_PARAMS)?;
    validate(params, BASE_PARAMS)
}

/// Checks a `psiphon-status` request: base parameters plus the `statusData` object.
pub fn validate_status_params(params: &ApiParams) -> Result<()> {
    validate(params, BASE_PARAMS)?;
    validate(params, STATUS_ONLY_PARAMS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> ApiParams {
        ApiParams::base("FEDCBA9876543210", "0123456789ABCDEF", "189", "Android_13")
    }

    #[test]
    fn base_params() {
        validate_base_params(&base()).unwrap();
        let e = validate_base_params(&base().with_str("sponsor_id", "0123")).unwrap_err();
        assert_eq!(e.to_string(), "invalid param: sponsor_id: 0123");
        let e = validate_base_params(&base().with_str("client_version", "1.2")).unwrap_err();
        assert!(matches!(e, Error::InvalidParam { .. }));
        let e =
            validate_base_params(&base().with_str("client_platform", "Windows 10")).unwrap_err();
        assert!(matches!(e, Error::InvalidParam { .. }));
        let e = validate_base_params(&base().with("client_version", json!(189))).unwrap_err();
        assert!(matches!(
            e,
            Error::ParamType {
                expected: "string",
                ..
            }
        ));
        let e =
            validate_base_params(&base().with("propagation_channel_id", Value::Null)).unwrap_err();
        assert_eq!(e.to_string(), "missing param: propagation_channel_id");
        let e = validate_base_params(&base().with("client_features", json!(["a", 1]))).unwrap_err();
        assert!(matches!(e, Error::ParamType { .. }));
        validate_base_params(&base().with_client_features(["VPN"])).unwrap();
    }

    #[test]
    fn handshake_connected_status() {
        let e = validate_handshake_params(&base()).unwrap_err();
        assert_eq!(e.to_string(), "missing param: relay_protocol");
        validate_handshake_params(&base().with_str("relay_protocol", "INPROXY-WEBRTC-OSSH"))
            .unwrap();
        let e = validate_handshake_params(&base().with_str("relay_protocol", "FOO")).unwrap_err();
        assert!(matches!(e, Error::InvalidParam { .. }));

        assert!(validate_connected_params(&base()).is_err());
        validate_connected_params(&base().with_last_connected(None)).unwrap();
        validate_connected_params(&base().with_last_connected(Some("2026-08-01T12:00:00Z")))
            .unwrap();
        assert!(validate_connected_params(&base().with_last_connected(Some("yesterday"))).is_err());

        assert!(validate_status_params(&base()).is_err());
        validate_status_params(&base().with_status_data(json!({"host_bytes": {}}))).unwrap();
        assert!(validate_status_params(&base().with_status_data(json!([]))).is_err());
    }

    #[test]
    fn dates() {
        for ok in [
            "2026-08-01T12:00:00Z",
            "2026-08-01T12:00:00.123456789Z",
            "2026-08-01T12:00:00.1234567891234Z",
            "2024-02-29T23:59:59+0100",
            "2026-08-01T1:00:00Z",
        ] {
            assert!(is_iso8601_date(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-08-01",
            "2026-08-01T12:00:00",
            "2026-08-01T12:00:00+01:00",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-08-01T24:00:00Z",
            "2026-08-01T12:60:00Z",
            "2026-08-01T12:00:00Zjunk",
            "2026-08-01T12:00:00.Z",
        ] {
            assert!(!is_iso8601_date(bad), "{bad}");
        }
        assert!(is_last_connected("None"));
    }

    #[test]
    fn small_validators() {
        assert_eq!(
            normalize_client_platform("Android_13_com.psiphon3"),
            ClientPlatform::Android
        );
        assert_eq!(
            normalize_client_platform("xANDROIDx"),
            ClientPlatform::Android
        );
        assert_eq!(normalize_client_platform("iOS-app"), ClientPlatform::Ios);
        assert_eq!(normalize_client_platform("ios"), ClientPlatform::Other);
        assert_eq!(
            normalize_client_platform("Windows_10"),
            ClientPlatform::Windows
        );
        assert_eq!(normalize_client_platform("Linux").name(), "Other");
        assert!(!is_client_platform("a\u{a0}b"));
        assert!(is_int_string("-5") && is_int_string("+5") && !is_int_string(""));
        assert!(!is_int_string("99999999999999999999"));
        assert!(is_region_code("US") && !is_region_code("us") && !is_region_code("USA"));
        assert!(is_geohash("u4pruydqqvj") && !is_geohash("a") && !is_geohash(""));
        assert!(is_domain("www.example.com.") && !is_domain("-a.com") && !is_domain("a..b"));
        assert!(is_dial_address("example.com:443") && !is_dial_address("example.com"));
        assert!(is_dial_address("192.0.2.1:0") && !is_dial_address("[::1]:443"));
        assert!(is_host_header("example.com") && is_host_header("192.0.2.1:80"));
        assert!(is_server_entry_source("DSL-foo") && !is_server_entry_source("dsl"));
        assert!(is_upstream_proxy_type("SOCKS5") && !is_upstream_proxy_type("socks"));
        assert!(is_base64("uXQyVe16loonSKRddaoeDpgV38qDXvQ4qCdTplnjZ7s=") && !is_base64("!"));
    }
}
