//! Packed API parameters: the compact CBOR form of an API request body that tunnel-core
//! clients send whenever the server entry has the `ssh-api-requests` capability.
//!
//! A packed body is the two bytes `00 01` followed by a CBOR map from small integer keys to
//! values. Each known parameter name has a fixed key and a conversion that makes its value
//! compact on the wire (hex and base64 strings as byte strings, decimal strings as
//! integers, ...); [`decode_packed_params`] undoes the conversions, so it yields the same
//! [`ApiParams`] a JSON body with the same parameters would (hex IDs come back in the case the
//! key's conversion dictates).
//!
//! As in tunnel-core, decoding skips keys it does not know (so newer clients can add
//! parameters) while encoding refuses names it has no key for
//! ([`PackedError::UnknownParameter`]). Unlike tunnel-core, decoding rejects a map with a
//! repeated key, and values of a type JSON cannot hold (byte strings, tags, non-finite
//! floats) where the parameter has no conversion; no tunnel-core client sends either.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Number, Value};

use super::cbor::{self, Cbor, CborError};
use super::params::ApiParams;
use crate::gojson;
use crate::server_entry::go_base64_decode;

/// First two bytes of a packed body: a zero byte (which no JSON body starts with), then the
/// packing version.
pub const PACKED_API_PARAMETERS_PREFIX: [u8; 2] = [0x00, 0x01];

/// Largest packed body [`decode_packed_params`] reads: an SSH packet's maximum, which bounds
/// every request already; the limit keeps the decoder's work bounded on its own.
pub const MAX_PACKED_PARAMS_BYTES: usize = 256 * 1024;

/// Why packed parameters could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackedError {
    /// The body does not start with [`PACKED_API_PARAMETERS_PREFIX`].
    #[error("not packed API parameters (no 00 01 prefix)")]
    NotPacked,
    /// The body is longer than [`MAX_PACKED_PARAMS_BYTES`].
    #[error("packed API parameters are {0} bytes, more than the maximum")]
    TooLarge(usize),
    /// The CBOR is malformed, truncated, too deep or too large.
    #[error("invalid packed API parameters: {0}")]
    Cbor(#[from] CborError),
    /// The CBOR item is not a map.
    #[error("packed API parameters are not a CBOR map")]
    NotAMap,
    /// A map key is not an integer within `i64`.
    #[error("packed API parameter key is a {0}, not an integer")]
    InvalidKey(&'static str),
    /// A map key appears twice.
    #[error("duplicate packed API parameter key: {0}")]
    DuplicateKey(u64),
    /// A known key's value does not have the type its conversion expects.
    #[error("unpack {name} failed: {reason}")]
    Unpack {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Encoding: a parameter name with no packed key. The text is tunnel-core's.
    #[error("unknown parameter name: {0}")]
    UnknownParameter(String),
    /// Encoding: a value its conversion cannot pack (e.g. odd-length hex).
    #[error("pack {name} failed: {reason}")]
    Pack {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How a parameter's value is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    /// As is (strings, arrays of strings, ...).
    Raw,
    /// Decimal string as a CBOR integer.
    Int,
    /// Decimal string as a double; unpacked with six decimals (Go's `%f`).
    Float,
    /// Hex string as bytes; unpacked in lower case.
    LowerHex,
    /// Hex string as bytes; unpacked in upper case.
    UpperHex,
    /// Standard padded base64 as bytes.
    Base64,
    /// Standard unpadded base64 as bytes.
    UnpaddedBase64,
    /// Signed authorizations as a byte string holding a CBOR array of maps.
    Authorizations,
    /// A JSON object carried as its JSON text in a byte string (`statusData`).
    RawJson,
    /// An array of JSON objects as a CBOR array of maps (`speed_test_samples`).
    JsonMaps,
}

use Conv::{
    Authorizations, Base64, Float, Int, JsonMaps, LowerHex, Raw, RawJson, UnpaddedBase64, UpperHex,
};

/// tunnel-core's packing table: key `i + 1` is `SPECS[i]`. Keys are never reused or
/// renumbered; new parameters are appended.
const SPECS: &[(u64, &str, Conv)] = &[
    (1, "authorizations", Authorizations),
    (2, "stored_tactics_tag", LowerHex),
    (3, "speed_test_samples", JsonMaps),
    (4, "applied_tactics_tag", LowerHex),
    (5, "client_session_id", LowerHex),
    (6, "propagation_channel_id", UpperHex),
    (7, "sponsor_id", UpperHex),
    (8, "client_version", Int),
    (9, "client_platform", Raw),
    (10, "client_features", Raw),
    (11, "client_build_rev", Raw),
    (12, "device_region", Raw),
    (13, "device_location", Raw),
    (14, "session_id", LowerHex),
    (15, "relay_protocol", Raw),
    (16, "ssh_client_version", Raw),
    (17, "upstream_proxy_type", Raw),
    (18, "upstream_proxy_custom_header_names", Raw),
    (19, "fronting_provider_id", UpperHex),
    (20, "meek_dial_address", Raw),
    (21, "meek_resolved_ip_address", Raw),
    (22, "meek_sni_server_name", Raw),
    (23, "meek_host_header", Raw),
    (24, "meek_transformed_host_name", Int),
    (25, "user_agent", Raw),
    (26, "tls_profile", Raw),
    (27, "tls_version", Raw),
    (28, "server_entry_region", Raw),
    (29, "server_entry_source", Raw),
    (30, "server_entry_timestamp", Raw),
    (31, "dial_port_number", Int),
    (32, "quic_version", Raw),
    (33, "quic_dial_sni_address", Raw),
    (34, "quic_disable_client_path_mtu_discovery", Int),
    (35, "upstream_bytes_fragmented", Int),
    (36, "upstream_min_bytes_written", Int),
    (37, "upstream_max_bytes_written", Int),
    (38, "upstream_min_delayed", Int),
    (39, "upstream_max_delayed", Int),
    (40, "padding", Raw),
    (41, "pad_response", Int),
    (42, "is_replay", Int),
    (43, "egress_region", Raw),
    (44, "dial_duration", Int),
    (45, "candidate_number", Int),
    (46, "established_tunnels_count", Int),
    (47, "upstream_ossh_padding", Int),
    (48, "meek_cookie_size", Int),
    (49, "meek_limit_request", Int),
    (50, "meek_redial_probability", Float),
    (51, "meek_tls_padding", Int),
    (52, "network_latency_multiplier", Float),
    (53, "client_bpf", Raw),
    (54, "network_type", Raw),
    (55, "conjure_cached", Raw),
    (56, "conjure_delay", Raw),
    (57, "conjure_transport", Raw),
    (58, "conjure_prefix", Raw),
    (59, "conjure_stun", Raw),
    (60, "conjure_empty_packet", Int),
    (61, "conjure_network", Raw),
    (62, "conjure_port_number", Int),
    (63, "split_tunnel", Raw),
    (64, "split_tunnel_regions", Raw),
    (65, "dns_preresolved", Raw),
    (66, "dns_preferred", Raw),
    (67, "dns_transform", Raw),
    (68, "dns_attempt", Int),
    (69, "http_transform", Raw),
    (70, "seed_transform", Raw),
    (71, "ossh_prefix", Raw),
    (72, "tls_fragmented", Int),
    (73, "tls_padding", Int),
    (74, "tls_ossh_sni_server_name", Raw),
    (75, "tls_ossh_transformed_host_name", Int),
    (76, "inproxy_connection_id", UnpaddedBase64),
    (77, "inproxy_relay_packet", UnpaddedBase64),
    (78, "inproxy_broker_is_replay", Int),
    (79, "inproxy_broker_transport", Raw),
    (80, "inproxy_broker_fronting_provider_id", UpperHex),
    (81, "inproxy_broker_dial_address", Raw),
    (82, "inproxy_broker_resolved_ip_address", Raw),
    (83, "inproxy_broker_sni_server_name", Raw),
    (84, "inproxy_broker_host_header", Raw),
    (85, "inproxy_broker_transformed_host_name", Int),
    (86, "inproxy_broker_user_agent", Raw),
    (87, "inproxy_broker_tls_profile", Raw),
    (88, "inproxy_broker_tls_version", Raw),
    (89, "inproxy_broker_tls_fragmented", Int),
    (90, "inproxy_broker_tls_padding", Int),
    (91, "inproxy_broker_client_bpf", Raw),
    (92, "inproxy_broker_upstream_bytes_fragmented", Int),
    (93, "inproxy_broker_upstream_min_bytes_written", Int),
    (94, "inproxy_broker_upstream_max_bytes_written", Int),
    (95, "inproxy_broker_upstream_min_delayed", Int),
    (96, "inproxy_broker_upstream_max_delayed", Int),
    (97, "inproxy_broker_http_transform", Raw),
    (98, "inproxy_broker_dns_preresolved", Raw),
    (99, "inproxy_broker_dns_preferred", Raw),
    (100, "inproxy_broker_dns_transform", Raw),
    (101, "inproxy_broker_dns_attempt", Int),
    (102, "inproxy_webrtc_dns_preresolved", Raw),
    (103, "inproxy_webrtc_dns_preferred", Raw),
    (104, "inproxy_webrtc_dns_transform", Raw),
    (105, "inproxy_webrtc_dns_attempt", Int),
    (106, "inproxy_webrtc_stun_server", Raw),
    (107, "inproxy_webrtc_stun_server_resolved_ip_address", Raw),
    (108, "inproxy_webrtc_stun_server_RFC5780", Raw),
    (
        109,
        "inproxy_webrtc_stun_server_RFC5780_resolved_ip_address",
        Raw,
    ),
    (110, "inproxy_webrtc_randomize_dtls", Int),
    (111, "inproxy_webrtc_padded_messages_sent", Int),
    (112, "inproxy_webrtc_padded_messages_received", Int),
    (113, "inproxy_webrtc_decoy_messages_sent", Int),
    (114, "inproxy_webrtc_decoy_messages_received", Int),
    (115, "inproxy_webrtc_local_ice_candidate_type", Raw),
    (116, "inproxy_webrtc_local_ice_candidate_is_initiator", Int),
    (117, "inproxy_webrtc_local_ice_candidate_is_IPv6", Int),
    (118, "inproxy_webrtc_local_ice_candidate_port", Int),
    (119, "inproxy_webrtc_remote_ice_candidate_type", Raw),
    (120, "inproxy_webrtc_remote_ice_candidate_is_IPv6", Int),
    (121, "inproxy_webrtc_remote_ice_candidate_port", Int),
    (122, "missing_server_entry_signature", Base64),
    (123, "missing_server_entry_provider_id", Base64),
    (124, "last_connected", Raw),
    (125, "establishment_duration", Int),
    (126, "client_download_timestamp", Raw),
    (127, "tunneled", Int),
    (128, "url", Raw),
    (129, "etag", Raw),
    (130, "bytes", Int),
    (131, "duration", Int),
    (132, "server_entry_tag", Base64),
    (133, "client_failed_timestamp", Raw),
    (134, "record_probability", Float),
    (135, "liveness_test_upstream_bytes", Int),
    (136, "liveness_test_sent_upstream_bytes", Int),
    (137, "liveness_test_downstream_bytes", Int),
    (138, "liveness_test_received_downstream_bytes", Int),
    (139, "bytes_up", Int),
    (140, "bytes_down", Int),
    (141, "tunnel_error", Raw),
    (142, "statusData", RawJson),
    (143, "inproxy_webrtc_local_ice_candidate_is_private_IP", Int),
    (
        144,
        "inproxy_webrtc_remote_ice_candidate_is_private_IP",
        Int,
    ),
    (145, "tls_sent_ticket", Int),
    (146, "tls_did_resume", Int),
    (147, "quic_sent_ticket", Int),
    (148, "quic_did_resume", Int),
    (149, "quic_dial_early", Int),
    (150, "quic_obfuscated_psk", Int),
    (151, "dns_qname_random_casing", Int),
    (152, "dns_qname_must_match", Int),
    (153, "dns_qname_mismatches", Int),
    (154, "inproxy_broker_dns_qname_random_casing", Int),
    (155, "inproxy_broker_dns_qname_must_match", Int),
    (156, "inproxy_broker_dns_qname_mismatches", Int),
    (157, "inproxy_webrtc_dns_qname_random_casing", Int),
    (158, "inproxy_webrtc_dns_qname_must_match", Int),
    (159, "inproxy_webrtc_dns_qname_mismatches", Int),
    (160, "inproxy_dial_nat_discovery_duration", Int),
    (161, "inproxy_dial_failed_attempts_duration", Int),
    (162, "inproxy_dial_webrtc_ice_gathering_duration", Int),
    (163, "inproxy_dial_broker_offer_duration", Int),
    (164, "inproxy_dial_webrtc_connection_duration", Int),
    (165, "inproxy_broker_is_reuse", Int),
    (166, "inproxy_webrtc_use_media_streams", Int),
    (167, "shadowsocks_prefix", Raw),
    (168, "psiphon_api_response_version", Int),
    (169, "server_entry_count", Int),
    (170, "replay_ignored_change", Int),
    (171, "dsl_prioritized", Int),
    (172, "unique_candidate_estimate", Int),
    (173, "candidates_moved_to_front", Int),
    (174, "first_fronted_meek_candidate", Int),
    (175, "dsl_prioritized_reason", Raw),
    (176, "enable_proxy_protocol_headers", Int),
    (177, "dsl_prioritized_tunnel_protocol", Raw),
    (178, "inproxy_webrtc_dtls_fingerprint", Raw),
    (179, "light_proxy_id", UnpaddedBase64),
    (180, "light_proxy_entry_tracker", Int),
    (181, "light_proxy_dial_IPv4", Int),
    (182, "light_proxy_dial_IPv6", Int),
    (183, "light_proxy_dial_failed", Int),
    (184, "tunnel_personal_light_proxy_id", UnpaddedBase64),
    (185, "light_proxy_dial_canceled", Int),
];

fn spec_by_key(key: u64) -> Option<(&'static str, Conv)> {
    let index = usize::try_from(key.checked_sub(1)?).ok()?;
    SPECS
        .get(index)
        .filter(|(k, _, _)| *k == key)
        .map(|(_, name, conv)| (*name, *conv))
}

fn spec_by_name(name: &str) -> Option<(u64, &'static str, Conv)> {
    SPECS.iter().find(|(_, n, _)| *n == name).copied()
}

/// The packed key of a parameter name, if it has one.
pub fn packed_key(name: &str) -> Option<u64> {
    spec_by_name(name).map(|(key, _, _)| key)
}

/// The parameter name of a packed key, if known.
pub fn packed_name(key: u64) -> Option<&'static str> {
    spec_by_key(key).map(|(name, _)| name)
}

/// Whether a request body is packed (starts with [`PACKED_API_PARAMETERS_PREFIX`]); other
/// bodies are JSON.
pub fn is_packed(body: &[u8]) -> bool {
    body.starts_with(&PACKED_API_PARAMETERS_PREFIX)
}

/// Decodes a packed request body (prefix included) into the parameters a JSON body would
/// give. Never panics; every malformed input is an error.
pub fn decode_packed_params(body: &[u8]) -> Result<ApiParams, PackedError> {
    let payload = body
        .strip_prefix(&PACKED_API_PARAMETERS_PREFIX)
        .ok_or(PackedError::NotPacked)?;
    if body.len() > MAX_PACKED_PARAMS_BYTES {
        return Err(PackedError::TooLarge(body.len()));
    }
    let Cbor::Map(pairs) = cbor::decode(payload)? else {
        return Err(PackedError::NotAMap);
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut params = ApiParams::new();
    for (key, value) in pairs {
        let key = match key {
            Cbor::Unsigned(k) if i64::try_from(k).is_ok() => k,
            // A negative key is a valid Go int no table entry has: skipped as unknown.
            Cbor::Negative(n) if i64::try_from(n).is_ok() => continue,
            other => return Err(PackedError::InvalidKey(other.type_name())),
        };
        if !seen.insert(key) {
            return Err(PackedError::DuplicateKey(key));
        }
        let Some((name, conv)) = spec_by_key(key) else {
            continue;
        };
        let value = unpack(conv, value).map_err(|reason| PackedError::Unpack { name, reason })?;
        params.insert(name, value);
    }
    Ok(params)
}

/// Encodes parameters as a packed body (prefix included), as tunnel-core's client does:
/// canonical CBOR, every name must have a packed key.
pub fn encode_packed_params(params: &ApiParams) -> Result<Vec<u8>, PackedError> {
    let mut pairs = Vec::with_capacity(params.len());
    for (name, value) in params.iter() {
        let (key, name, conv) =
            spec_by_name(name).ok_or_else(|| PackedError::UnknownParameter(name.to_owned()))?;
        let packed = pack(conv, value).map_err(|reason| PackedError::Pack { name, reason })?;
        pairs.push((Cbor::Unsigned(key), packed));
    }
    let mut body = PACKED_API_PARAMETERS_PREFIX.to_vec();
    body.extend_from_slice(&cbor::encode(&Cbor::Map(pairs)));
    Ok(body)
}

/// Go's `base64.RawStdEncoding`: no padding, lenient about trailing bits.
const GO_RAW_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

fn expected(what: &str, got: &Cbor) -> String {
    format!("expected {what}, got {}", got.type_name())
}

/// Go's `fmt.Sprintf("%f", f)`.
pub(crate) fn go_percent_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{f:.6}")
    }
}

fn unpack(conv: Conv, value: Cbor) -> Result<Value, String> {
    match (conv, value) {
        (Raw, v) => cbor_to_json(v, 0),
        (Int, Cbor::Unsigned(n)) => Ok(Value::String(n.to_string())),
        (Int, Cbor::Negative(n)) => i64::try_from(n)
            .map(|n| Value::String((-1 - n).to_string()))
            .map_err(|_| "integer out of range".to_owned()),
        (Float, Cbor::Float(f)) => Ok(Value::String(go_percent_f(f))),
        (LowerHex, Cbor::Bytes(b)) => Ok(Value::String(hex::encode(b))),
        (UpperHex, Cbor::Bytes(b)) => Ok(Value::String(hex::encode_upper(b))),
        (Base64, Cbor::Bytes(b)) => Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(b),
        )),
        (UnpaddedBase64, Cbor::Bytes(b)) => Ok(Value::String(GO_RAW_STD_BASE64.encode(b))),
        (Authorizations, Cbor::Bytes(b)) => unpack_authorizations(&b),
        (RawJson, Cbor::Bytes(b)) => match gojson::from_slice(&b).map_err(|e| e.to_string())? {
            object @ Value::Object(_) => Ok(object),
            // Go unmarshals `null` into a nil map, which reads as an empty one.
            Value::Null => Ok(Value::Object(Map::new())),
            _ => Err("expected a JSON object".to_owned()),
        },
        (JsonMaps, Cbor::Null) => Ok(Value::Null),
        (JsonMaps, Cbor::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Cbor::Map(_) => cbor_to_json(item, 0),
                other => Err(expected("a map", &other)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (Int, v) => Err(expected("an integer", &v)),
        (Float, v) => Err(expected("a float", &v)),
        (LowerHex | UpperHex | Base64 | UnpaddedBase64 | Authorizations | RawJson, v) => {
            Err(expected("a byte string", &v))
        }
        (JsonMaps, v) => Err(expected("an array", &v)),
    }
}

/// A CBOR item as the JSON value a Go `interface{}` holding it would marshal to, for the
/// types JSON has.
fn cbor_to_json(item: Cbor, depth: usize) -> Result<Value, String> {
    if depth > cbor::MAX_DEPTH {
        return Err("nested too deeply".to_owned());
    }
    Ok(match item {
        Cbor::Unsigned(n) => Value::from(n),
        Cbor::Negative(n) => Value::from(
            i64::try_from(n)
                .map(|n| -1 - n)
                .map_err(|_| "integer out of range".to_owned())?,
        ),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Null | Cbor::Undefined => Value::Null,
        Cbor::Float(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| "non-finite float".to_owned())?,
        Cbor::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| cbor_to_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(pairs) => {
            let mut map = Map::new();
            for (k, v) in pairs {
                let Cbor::Text(k) = k else {
                    return Err(expected("text map keys", &k));
                };
                map.insert(k, cbor_to_json(v, depth + 1)?);
            }
            Value::Object(map)
        }
        other @ (Cbor::Bytes(_) | Cbor::Tag(..) | Cbor::Simple(_)) => {
            return Err(format!("unsupported {}", other.type_name()));
        }
    })
}

/// A JSON value as CBOR (objects as text-keyed maps).
fn json_to_cbor(value: &Value) -> Cbor {
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Cbor::Unsigned(u),
            (None, Some(i), _) => Cbor::int(i),
            (_, _, Some(f)) => Cbor::Float(f),
            _ => Cbor::Null,
        },
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(items) => Cbor::Array(items.iter().map(json_to_cbor).collect()),
        Value::Object(map) => Cbor::Map(
            map.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), json_to_cbor(v)))
                .collect(),
        ),
    }
}

/// Go's `strconv.Atoi`: optional sign, ASCII digits, within 64 bits.
fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn pack(conv: Conv, value: &Value) -> Result<Cbor, String> {
    let text = || value.as_str().ok_or_else(|| "expected a string".to_owned());
    match conv {
        Raw | JsonMaps => Ok(json_to_cbor(value)),
        Int => match value {
            Value::String(s) => go_atoi(s)
                .map(Cbor::int)
                .ok_or_else(|| format!("invalid integer {s:?}")),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(Cbor::int(i)),
                // Go converts a float64 with int(): truncation.
                #[allow(clippy::cast_possible_truncation)]
                (None, Some(f)) => Ok(Cbor::int(f.trunc() as i64)),
                _ => Err("integer out of range".to_owned()),
            },
            _ => Err("expected a string or a number".to_owned()),
        },
        Float => match value {
            Value::String(s) => s
                .parse::<f64>()
                .map(Cbor::Float)
                .map_err(|_| format!("invalid float {s:?}")),
            Value::Number(n) => n
                .as_f64()
                .map(Cbor::Float)
                .ok_or_else(|| "invalid float".to_owned()),
            _ => Err("expected a string or a number".to_owned()),
        },
        LowerHex | UpperHex => hex::decode(text()?)
            .map(Cbor::Bytes)
            .map_err(|e| e.to_string()),
        Base64 => go_base64_decode("packed parameter", text()?)
            .map(Cbor::Bytes)
            .map_err(|e| e.to_string()),
        UnpaddedBase64 => {
            let cleaned: String = text()?
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect();
            GO_RAW_STD_BASE64
                .decode(cleaned)
                .map(Cbor::Bytes)
                .map_err(|e| e.to_string())
        }
        Authorizations => pack_authorizations(value),
        // The client holds `statusData` as raw JSON text; ours is a value, written as our
        // JSON bodies write it.
        RawJson => match value {
            Value::Null => Ok(Cbor::Null),
            v => Ok(Cbor::Bytes(gojson::to_canonical_string(v).into_bytes())),
        },
    }
}

// Authorizations: each is base64 of the JSON
// {"Authorization":{"ID":b64,"AccessType":s,"Expires":t},"SigningKeyID":b64,"Signature":b64}
// and packs to the CBOR map {1: ID, 2: AccessType, 3: Expires, 4: SigningKeyID,
// 5: Signature}, empty fields left out. `Expires` is carried as RFC 3339 text, in the form
// Go writes a parsed time back (see `go_rfc3339_nano`).

const AUTH_ID: u64 = 1;
const AUTH_ACCESS_TYPE: u64 = 2;
const AUTH_EXPIRES: u64 = 3;
const AUTH_SIGNING_KEY_ID: u64 = 4;
const AUTH_SIGNATURE: u64 = 5;
/// Go's zero `time.Time`, which `omitempty` leaves out.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Re-writes an RFC 3339 time as Go does when it parses it (`time.RFC3339`) and writes it
/// back (`time.RFC3339Nano`): the fraction without trailing zeros (none if zero, at most nine
/// digits, further ones dropped), the offset kept, `Z` for a zero offset. `None` when Go would
/// not parse it.
fn go_rfc3339_nano(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b'T')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut fraction = String::new();
    if let Some(after) = rest.strip_prefix(['.', ',']) {
        let n = after.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        fraction = after.get(..n.min(9))?.trim_end_matches('0').to_owned();
        rest = after.get(n..)?;
    }
    let zone = if rest == "Z" {
        "Z".to_owned()
    } else {
        let zb = rest.as_bytes();
        if zb.len() != 6 || !matches!(zb[0], b'+' | b'-') || zb[3] != b':' {
            return None;
        }
        let (zh, zm) = (num_of(rest.get(1..3)?)?, num_of(rest.get(4..6)?)?);
        if zh > 23 || zm > 59 {
            return None;
        }
        if zh == 0 && zm == 0 {
            "Z".to_owned()
        } else {
            rest.to_owned()
        }
    };
    let fraction = if fraction.is_empty() {
        String::new()
    } else {
        format!(".{fraction}")
    };
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{zone}"
    ))
}

fn num_of(digits: &str) -> Option<u32> {
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// A field of a JSON object, matched case-insensitively as Go's decoder does.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn pack_authorizations(value: &Value) -> Result<Cbor, String> {
    let items = value
        .as_array()
        .ok_or_else(|| "expected an array of strings".to_owned())?;
    let mut packed = Vec::with_capacity(items.len());
    for item in items {
        let encoded = item
            .as_str()
            .ok_or_else(|| "expected an array of strings".to_owned())?;
        let json = go_base64_decode("authorization", encoded).map_err(|e| e.to_string())?;
        let signed = gojson::from_slice(&json).map_err(|e| e.to_string())?;
        let signed = signed
            .as_object()
            .ok_or_else(|| "authorization is not a JSON object".to_owned())?;
        let auth = field(signed, "Authorization")
            .and_then(Value::as_object)
            .ok_or_else(|| "authorization has no Authorization object".to_owned())?;
        let bytes = |map: &Map<String, Value>, name: &str| -> Result<Vec<u8>, String> {
            match field(map, name) {
                None => Ok(Vec::new()),
                Some(Value::String(s)) => go_base64_decode("authorization", s)
                    .map_err(|e| format!("authorization {name}: {e}")),
                Some(_) => Err(format!("authorization {name} is not a string")),
            }
        };
        let text = |map: &Map<String, Value>, name: &str| -> Result<String, String> {
            match field(map, name) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("authorization {name} is not a string")),
            }
        };
        let mut pairs = Vec::new();
        let mut put_bytes = |key, b: Vec<u8>| {
            if !b.is_empty() {
                pairs.push((Cbor::Unsigned(key), Cbor::Bytes(b)));
            }
        };
        put_bytes(AUTH_ID, bytes(auth, "ID")?);
        let access_type = text(auth, "AccessType")?;
        let expires = text(auth, "Expires")?;
        put_bytes(AUTH_SIGNING_KEY_ID, bytes(signed, "SigningKeyID")?);
        put_bytes(AUTH_SIGNATURE, bytes(signed, "Signature")?);
        if !access_type.is_empty() {
            pairs.push((Cbor::Unsigned(AUTH_ACCESS_TYPE), Cbor::Text(access_type)));
        }
        // Go parses Expires into a time.Time and writes it back with RFC3339Nano.
        let expires = if expires.is_empty() {
            ZERO_TIME.to_owned()
        } else {
            go_rfc3339_nano(&expires).ok_or("authorization Expires is not RFC 3339")?
        };
        if expires != ZERO_TIME {
            pairs.push((Cbor::Unsigned(AUTH_EXPIRES), Cbor::Text(expires)));
        }
        packed.push(Cbor::Map(pairs));
    }
    Ok(Cbor::Bytes(cbor::encode(&Cbor::Array(packed))))
}

fn unpack_authorizations(bytes: &[u8]) -> Result<Value, String> {
    let Cbor::Array(items) = cbor::decode(bytes).map_err(|e| e.to_string())? else {
        return Err("authorizations are not a CBOR array".to_owned());
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Cbor::Map(pairs) = item else {
            return Err(expected("an authorization map", &item));
        };
        let mut id = None;
        let mut access_type = String::new();
        let mut expires = ZERO_TIME.to_owned();
        let mut signing_key_id = None;
        let mut signature = None;
        for (key, value) in pairs {
            let slot = match key {
                Cbor::Unsigned(AUTH_ID) => &mut id,
                Cbor::Unsigned(AUTH_SIGNING_KEY_ID) => &mut signing_key_id,
                Cbor::Unsigned(AUTH_SIGNATURE) => &mut signature,
                Cbor::Unsigned(AUTH_ACCESS_TYPE) => {
                    match value {
                        Cbor::Text(s) => access_type = s,
                        Cbor::Null => access_type.clear(),
                        other => return Err(expected("AccessType text", &other)),
                    }
                    continue;
                }
                Cbor::Unsigned(AUTH_EXPIRES) => {
                    let text = match value {
                        Cbor::Text(s) => s,
                        Cbor::Tag(0, inner) => match *inner {
                            Cbor::Text(s) => s,
                            other => return Err(expected("Expires as RFC 3339 text", &other)),
                        },
                        Cbor::Null => ZERO_TIME.to_owned(),
                        other => return Err(expected("Expires as RFC 3339 text", &other)),
                    };
                    expires = go_rfc3339_nano(&text)
                        .ok_or_else(|| "authorization Expires is not RFC 3339".to_owned())?;
                    continue;
                }
                // Unknown fields are ignored, as Go's struct decoding does.
                _ => continue,
            };
            *slot = match value {
                Cbor::Bytes(b) => Some(b),
                Cbor::Null => None,
                other => return Err(expected("a byte string", &other)),
            };
        }
        let b64 = |b: &Option<Vec<u8>>| match b {
            Some(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            None => Value::Null,
        };
        // Go's json.Marshal of the two structs: fields in declaration order.
        let mut authorization = Map::new();
        authorization.insert("ID".to_owned(), b64(&id));
        authorization.insert("AccessType".to_owned(), Value::String(access_type));
        authorization.insert("Expires".to_owned(), Value::String(expires));
        let mut signed = Map::new();
        signed.insert("Authorization".to_owned(), Value::Object(authorization));
        signed.insert("SigningKeyID".to_owned(), b64(&signing_key_id));
        signed.insert("Signature".to_owned(), b64(&signature));
        let json = gojson::to_ordered_string(&Value::Object(signed));
        out.push(Value::String(
            base64::engine::general_purpose::STANDARD.encode(json),
        ));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(cbor_hex: &str) -> Vec<u8> {
        [
            PACKED_API_PARAMETERS_PREFIX.to_vec(),
            hex::decode(cbor_hex).unwrap(),
        ]
        .concat()
    }

    #[test]
    fn table_is_tunnel_cores() {
        for (i, (key, name, _)) in SPECS.iter().enumerate() {
            assert_eq!(usize::try_from(*key).unwrap(), i + 1);
            assert_eq!(packed_key(name), Some(*key));
            assert_eq!(packed_name(*key), Some(*name));
        }
        assert_eq!(SPECS.len(), 185);
        assert_eq!(packed_key("statusData"), Some(142));
        assert_eq!(packed_key("psiphon_api_response_version"), Some(168));
        assert_eq!(packed_name(0), None);
        assert_eq!(packed_name(186), None);
        assert_eq!(packed_key("server_secret"), None);
    }

    #[test]
    fn go_float_format() {
        assert_eq!(go_percent_f(1.5), "1.500000");
        assert_eq!(go_percent_f(-0.0), "-0.000000");
        assert_eq!(go_percent_f(1.0 / 128.0), "0.007812"); // a tie: round half to even
        assert_eq!(go_percent_f(3.0 / 128.0), "0.023438");
        assert_eq!(go_percent_f(1e21), "1000000000000000000000.000000");
        assert_eq!(go_percent_f(f64::NAN), "NaN");
        assert_eq!(go_percent_f(f64::INFINITY), "+Inf");
        assert_eq!(go_percent_f(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn decodes_lenient_forms_and_skips_unknown_keys() {
        // {8: 189 (non-shortest head), 9: "ab" (indefinite), 999: "x", -5: 1}
        let params = decode_packed_params(&body("a4081900bd097f61616162ff1903e761782401")).unwrap();
        assert_eq!(params.get_str("client_version").unwrap(), "189");
        assert_eq!(params.get_str("client_platform").unwrap(), "ab");
        assert_eq!(params.len(), 2);
        // Negative integers and floats through their conversions.
        let params = decode_packed_params(&body("a2182c201834f93e00")).unwrap();
        assert_eq!(params.get_str("dial_duration").unwrap(), "-1");
        assert_eq!(
            params.get_str("network_latency_multiplier").unwrap(),
            "1.500000"
        );
        // Key 63 split_tunnel has no conversion: a NaN float is not a JSON value.
        assert!(decode_packed_params(&body("a1183ff97e00")).is_err());
        // Empty map, and null for an unconverted value (reads as absent).
        assert!(decode_packed_params(&body("a0")).unwrap().is_empty());
        let params = decode_packed_params(&body("a109f6")).unwrap();
        assert!(params.get("client_platform").is_none());
        // statusData: JSON text in a byte string; null reads as an empty object.
        let params = decode_packed_params(&body("a1188e477b2261223a317d")).unwrap();
        assert_eq!(params.get_object("statusData").unwrap()["a"], 1);
        let params = decode_packed_params(&body("a1188e446e756c6c")).unwrap();
        assert!(params.get_object("statusData").unwrap().is_empty());
        // speed_test_samples: an array of text-keyed maps.
        let params = decode_packed_params(&body("a10381a26174187b6172624e4c")).unwrap();
        assert_eq!(
            params.get("speed_test_samples").unwrap(),
            &serde_json::json!([{"t": 123, "r": "NL"}])
        );
    }

    #[test]
    fn rejects_malformed_bodies() {
        let cases: &[(&[u8], &str)] = &[
            (b"{}", "not packed"),
            (&[0x00], "not packed"),
            (&[0x00, 0x02, 0xa0], "not packed"),
            (&[0x00, 0x01], "truncated"),
            (&[0x00, 0x01, 0xa1, 0x08], "truncated"),
            (&[0x00, 0x01, 0xa0, 0x00], "trailing"),
            (&[0x00, 0x01, 0x80], "not a CBOR map"),
            // {"a": 1}: a text key.
            (
                &[0x00, 0x01, 0xa1, 0x61, 0x61, 0x01],
                "key is a text string",
            ),
            // {8: 1, 8: 2}
            (&[0x00, 0x01, 0xa2, 0x08, 0x01, 0x08, 0x02], "duplicate"),
            // {8: "189"}: client_version must be an integer.
            (
                &[0x00, 0x01, 0xa1, 0x08, 0x63, 0x31, 0x38, 0x39],
                "unpack client_version",
            ),
            // {6: "AB"}: propagation_channel_id must be bytes.
            (
                &[0x00, 0x01, 0xa1, 0x06, 0x62, 0x41, 0x42],
                "unpack propagation_channel_id",
            ),
            // {52: 1}: network_latency_multiplier must be a float.
            (
                &[0x00, 0x01, 0xa1, 0x18, 0x34, 0x01],
                "unpack network_latency_multiplier",
            ),
            // {9: h'00'}: bytes where JSON has no such type.
            (
                &[0x00, 0x01, 0xa1, 0x09, 0x41, 0x00],
                "unpack client_platform",
            ),
            // {1: h'01'}: authorizations that are not CBOR.
            (
                &[0x00, 0x01, 0xa1, 0x01, 0x41, 0x01],
                "unpack authorizations",
            ),
            // {142: h'5b5d'}: statusData JSON that is not an object.
            (
                &[0x00, 0x01, 0xa1, 0x18, 0x8e, 0x42, 0x5b, 0x5d],
                "unpack statusData",
            ),
            // {8: -(2^64)}: out of range.
            (
                &[
                    0x00, 0x01, 0xa1, 0x08, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                ],
                "out of range",
            ),
        ];
        for (input, want) in cases {
            let err = decode_packed_params(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:02x?}: {err}");
        }
        let deep = [vec![0x00, 0x01, 0xa1, 0x0a], vec![0x81; 64], vec![0x00]].concat();
        assert!(decode_packed_params(&deep).is_err());
        let huge = [vec![0x00, 0x01], vec![0; MAX_PACKED_PARAMS_BYTES]].concat();
        assert!(matches!(
            decode_packed_params(&huge),
            Err(PackedError::TooLarge(_))
        ));
    }

    #[test]
    fn rfc3339_as_go_rewrites_it() {
        let cases = [
            ("2026-09-01T00:00:00Z", Some("2026-09-01T00:00:00Z")),
            (
                "2026-09-01T00:00:00.500000000Z",
                Some("2026-09-01T00:00:00.5Z"),
            ),
            ("2026-09-01T00:00:00.000Z", Some("2026-09-01T00:00:00Z")),
            (
                "2026-09-01T00:00:00,25+02:00",
                Some("2026-09-01T00:00:00.25+02:00"),
            ),
            (
                "2026-09-01T00:00:00.1234567891Z",
                Some("2026-09-01T00:00:00.123456789Z"),
            ),
            ("2026-09-01T00:00:00+00:00", Some("2026-09-01T00:00:00Z")),
            (
                "2024-02-29T23:59:59-05:30",
                Some("2024-02-29T23:59:59-05:30"),
            ),
            ("2023-02-29T00:00:00Z", None),
            ("2026-09-01t00:00:00Z", None),
            ("2026-09-01T24:00:00Z", None),
            ("2026-09-01T00:00:60Z", None),
            ("2026-09-01T00:00:00", None),
            ("2026-09-01T00:00:00.Z", None),
            ("2026-09-01T00:00:00+2:00", None),
            ("2026-9-01T00:00:00Z", None),
            ("", None),
            ("2026-09-01T00:00:00Zé", None),
            ("2026-09-01T00:00:00+é:00", None),
            ("2026-09-01T00:00:00+0é:0", None),
            ("2026-09-01T00:00:00.9é", None),
        ];
        for (input, want) in cases {
            assert_eq!(go_rfc3339_nano(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn pack_errors() {
        let pack_err = |name: &str, value: Value| {
            ApiParams::new()
                .with(name, value)
                .to_packed()
                .unwrap_err()
                .to_string()
        };
        assert!(pack_err("sponsor_id", "ABC".into()).starts_with("pack sponsor_id failed"));
        assert!(pack_err("client_version", "1.0".into()).starts_with("pack client_version"));
        assert!(pack_err("client_version", " 1".into()).starts_with("pack client_version"));
        assert!(pack_err("network_latency_multiplier", "x".into()).starts_with("pack"));
        assert!(pack_err("server_entry_tag", "!!".into()).starts_with("pack"));
        assert!(pack_err("authorizations", "x".into()).starts_with("pack"));
        assert!(pack_err("authorizations", serde_json::json!(["e30="])).starts_with("pack"));
        // Integers accept Go's Atoi forms and JSON numbers (floats truncated).
        let ok = |name: &str, value: Value| {
            let body = ApiParams::new().with(name, value).to_packed().unwrap();
            decode_packed_params(&body).unwrap()
        };
        assert_eq!(
            ok("client_version", "+7".into())
                .get_str("client_version")
                .unwrap(),
            "7"
        );
        assert_eq!(
            ok("client_version", 7.9.into())
                .get_str("client_version")
                .unwrap(),
            "7"
        );
        assert_eq!(
            ok("dial_duration", (-3).into())
                .get_str("dial_duration")
                .unwrap(),
            "-3"
        );
    }
}
