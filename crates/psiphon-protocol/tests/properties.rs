//! Property tests: round trips of every encoder through its parser, and signatures that
//! break when any byte of the signed message changes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use proptest::prelude::*;
use psiphon_protocol::api::ApiParams;
use psiphon_protocol::server_entry::verify_signed_message;
use psiphon_protocol::{Error, ServerEntry, ServerEntrySigningKey, SshPasswordPayload, gojson};
use serde_json::{Map, Number, Value};

/// Strings that exercise the escaping rules: HTML characters, line/paragraph separators,
/// control characters, quotes, non-ASCII and astral characters, plus anything else.
fn tricky_string() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("<".to_owned()),
        Just(">".to_owned()),
        Just("&".to_owned()),
        Just("\u{2028}".to_owned()),
        Just("\u{2029}".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("/".to_owned()),
        Just("\u{7f}".to_owned()),
        Just("é中😀".to_owned()),
        Just("\u{fffd}".to_owned()),
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        any::<char>().prop_map(|c| c.to_string()),
        "[a-zA-Z0-9 ]{0,8}",
    ];
    prop::collection::vec(pieces, 0..8).prop_map(|v| v.concat())
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        (-1000i32..1000).prop_map(|i| Value::from(f64::from(i) / 8.0)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// What Go holds after decoding: every number a float64.
fn as_go_holds(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::Number(Number::from_f64(n.as_f64().unwrap()).unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(as_go_holds).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), as_go_holds(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn without_numbers(v: &Value) -> Value {
    match v {
        Value::Number(_) => Value::Null,
        Value::Array(items) => Value::Array(items.iter().map(without_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn entry_fields() -> impl Strategy<Value = Map<String, Value>> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<[u8; 16]>().prop_map(|b| std::net::Ipv6Addr::from(b).to_string()),
    ];
    (
        ip,
        any::<u16>(),
        tricky_string(),
        tricky_string(),
        prop::collection::vec(tricky_string(), 0..4),
        // Real certificates are base64: the legacy prefix is space-separated.
        prop::option::of("[A-Za-z0-9+/=]{0,24}"),
        prop::collection::vec(("x_[a-z]{1,6}", json_value()), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(ip, port, username, region, capabilities, certificate, extra, disable)| {
                let mut m = Map::new();
                m.insert("ipAddress".into(), Value::String(ip));
                m.insert("sshPort".into(), Value::from(port));
                m.insert("sshUsername".into(), Value::String(username));
                m.insert("region".into(), Value::String(region));
                m.insert(
                    "capabilities".into(),
                    Value::Array(capabilities.into_iter().map(Value::String).collect()),
                );
                if let Some(certificate) = certificate {
                    m.insert("webServerCertificate".into(), Value::String(certificate));
                    m.insert("webServerPort".into(), Value::String("8443".into()));
                }
                m.insert("disableOSSHPrefix".into(), Value::Bool(disable));
                for (k, v) in extra {
                    m.insert(k, v);
                }
                m
            },
        )
}

fn signing_key() -> &'static ServerEntrySigningKey {
    static KEY: OnceLock<ServerEntrySigningKey> = OnceLock::new();
    KEY.get_or_init(|| ServerEntrySigningKey::generate().unwrap())
}

proptest! {
    #[test]
    fn canonical_json_parses_back(value in json_value()) {
        let text = gojson::to_canonical_string(&value);
        let ours = gojson::from_slice(text.as_bytes()).unwrap();
        prop_assert_eq!(as_go_holds(&ours), as_go_holds(&value));
        // An independent parser agrees on everything but float rounding (serde_json's default
        // float parser is not correctly rounded).
        let theirs: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(without_numbers(&theirs), without_numbers(&value));
        // Canonical output is a fixed point.
        prop_assert_eq!(gojson::to_canonical_string(&ours), text.clone());
        // Nothing a browser could mistake for markup, no raw separators.
        let has_unescaped = text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']);
        prop_assert!(!has_unescaped);
        prop_assert!(!text.bytes().any(|b| b < 0x20));
    }

    #[test]
    fn ordered_json_parses_back(value in json_value()) {
        let text = gojson::to_ordered_string(&value);
        let ours = gojson::from_slice(text.as_bytes()).unwrap();
        prop_assert_eq!(as_go_holds(&ours), as_go_holds(&value));
        prop_assert_eq!(gojson::compact(text.as_bytes()).unwrap(), text);
    }

    #[test]
    fn server_entry_round_trip(fields in entry_fields()) {
        let entry = ServerEntry::from_fields(fields.clone()).unwrap();
        let decoded = ServerEntry::decode(&entry.encode()).unwrap();
        prop_assert_eq!(as_go_holds(&Value::Object(decoded.fields().clone())),
                        as_go_holds(&Value::Object(fields.clone())));
        // Stored order survives encode/decode.
        let keys: Vec<&String> = decoded.fields().keys().collect();
        let expected: Vec<&String> = fields.keys().collect();
        prop_assert_eq!(keys, expected);
        let sorted = ServerEntry::decode(&entry.encode_sorted().to_uppercase()).unwrap();
        prop_assert_eq!(as_go_holds(&Value::Object(sorted.into_fields())),
                        as_go_holds(&Value::Object(fields)));
        prop_assert_eq!(decoded.ssh_username(), entry.ssh_username());
        prop_assert_eq!(decoded.capabilities(), entry.capabilities());
    }

    #[test]
    fn signatures_cover_every_byte(fields in entry_fields(), index in any::<prop::sample::Index>(),
                                   bit in 0u8..8) {
        let key = signing_key();
        let public = key.public_key_base64();
        let mut entry = ServerEntry::from_fields(fields).unwrap();
        entry.sign(key);
        entry.verify_signature(&public).unwrap();
        // Through an encode/decode, as a client receives it.
        ServerEntry::decode(&entry.encode()).unwrap().verify_signature(&public).unwrap();

        let signature = entry.signature().unwrap().to_owned();
        let mut message = entry.signed_message().into_bytes();
        verify_signed_message(&public, &signature, &message).unwrap();
        let i = index.index(message.len());
        message[i] ^= 1 << bit;
        prop_assert!(matches!(
            verify_signed_message(&public, &signature, &message),
            Err(Error::InvalidSignature)
        ));
    }

    #[test]
    fn changed_field_breaks_signature(fields in entry_fields(), region in tricky_string()) {
        let key = signing_key();
        let mut entry = ServerEntry::from_fields(fields).unwrap();
        entry.sign(key);
        let before = entry.region().map(str::to_owned);
        entry.set("region", Value::String(region.clone())).unwrap();
        let result = entry.verify_signature(&key.public_key_base64());
        if before.as_deref().unwrap_or_default() == region.as_str() {
            prop_assert!(result.is_ok());
        } else {
            prop_assert!(matches!(result, Err(Error::InvalidSignature)));
        }
    }

    #[test]
    fn password_payload_round_trip(session in "[0-9a-fA-F]{32}", password in tricky_string(),
                                   capabilities in prop::collection::vec(tricky_string(), 0..3),
                                   sponsor in prop::option::of("[0-9A-F]{16}")) {
        let payload = SshPasswordPayload {
            session_id: session,
            ssh_password: password,
            client_capabilities: capabilities.into_iter().filter(|c| !c.is_empty()).collect(),
            sponsor_id: sponsor.unwrap_or_default(),
        };
        prop_assert_eq!(SshPasswordPayload::parse(payload.to_json().as_bytes()).unwrap(), payload);
    }

    #[test]
    fn api_params_round_trip(pairs in prop::collection::vec((tricky_string(), json_value()), 0..8)) {
        let params: ApiParams = pairs.into_iter().collect();
        let parsed = ApiParams::from_json(params.to_json().as_bytes()).unwrap();
        prop_assert_eq!(parsed.to_json(), params.to_json());
    }
}
