//! Server entry encoding, canonical JSON and signatures against tunnel-core's vectors.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{hex_text, load, s};
use psiphon_protocol::{
    Error, ErrorKind, ServerEntry, ServerEntrySigningKey, TunnelProtocol, decode_server_entry_list,
    diagnostic_id, generate_server_entry_tag,
};
use serde_json::Value;

fn vectors() -> Value {
    load("server-entry.json")
}

fn signing_key(v: &Value) -> ServerEntrySigningKey {
    let key = &v["signing_key"];
    let pair = ServerEntrySigningKey::from_base64_pair(
        s(key, "public_key_base64"),
        s(key, "private_key_base64"),
    )
    .unwrap();
    let seed: [u8; 32] = hex::decode(s(key, "ed25519_seed"))
        .unwrap()
        .try_into()
        .unwrap();
    let from_seed = ServerEntrySigningKey::from_seed(seed).unwrap();
    assert_eq!(from_seed.public_key_base64(), s(key, "public_key_base64"));
    assert_eq!(from_seed.private_key_base64(), s(key, "private_key_base64"));
    assert_eq!(hex::encode(pair.key_id()), s(key, "public_key_id"));
    pair
}

#[test]
fn entry_a_realistic() {
    let v = vectors();
    let key = signing_key(&v);
    let public = s(&v["signing_key"], "public_key_base64");
    let a = &v["entry_a_realistic"];

    // Unsigned, struct order: decoding and re-encoding keeps the bytes.
    let unsigned = ServerEntry::decode(s(a, "encoded_unsigned")).unwrap();
    assert_eq!(unsigned.encode(), s(a, "encoded_unsigned"));
    assert_eq!(
        hex_text(a, "encoded_unsigned"),
        format!("0 0 0 0 {}", s(a, "json_struct_order"))
    );
    assert_eq!(unsigned.signed_message(), s(a, "canonical_signed_message"));
    assert_eq!(
        hex::encode(unsigned.signed_message()),
        s(a, "canonical_signed_message_hex")
    );

    // Ed25519 is deterministic: our signature is tunnel-core's.
    let mut signed = unsigned.clone();
    signed.sign(&key);
    assert_eq!(signed.signature(), Some(s(a, "signature")));
    assert_eq!(signed.encode(), s(a, "encoded_signed_struct_order"));
    assert_eq!(signed.encode_sorted(), s(a, "encoded_signed_sorted_keys"));
    assert_eq!(s(a, "verify_result"), "ok");

    for field in ["encoded_signed_struct_order", "encoded_signed_sorted_keys"] {
        let entry = ServerEntry::decode(s(a, field)).unwrap();
        entry.verify_signature(public).unwrap();
        assert_eq!(entry.signature(), Some(s(a, "signature")));
    }
    let sorted = ServerEntry::decode(s(a, "encoded_signed_sorted_keys")).unwrap();
    assert_eq!(sorted.encode(), s(a, "encoded_signed_sorted_keys"));

    // Typed accessors on a realistic entry.
    assert_eq!(sorted.ip_address().to_string(), "192.0.2.45");
    assert_eq!(sorted.ssh_port(), Some(22));
    assert_eq!(sorted.ssh_obfuscated_port(), Some(995));
    assert_eq!(sorted.ssh_username(), Some("psiphon_4aeee6607e0fddd4"));
    assert_eq!(sorted.region(), Some("NL"));
    assert_eq!(sorted.configuration_version(), 1);
    assert_eq!(
        sorted.tag(),
        Some("uXQyVe16loonSKRddaoeDpgV38qDXvQ4qCdTplnjZ7s=")
    );
    assert_eq!(
        sorted.provider_id(),
        Some("AA7B3C0BF079FCE483657A242F2BBFFC")
    );
    assert!(sorted.supports_ssh_api_requests());
    assert_eq!(sorted.dial_port(TunnelProtocol::Ossh).unwrap(), 995);
    assert_eq!(sorted.dial_port(TunnelProtocol::TlsOssh).unwrap(), 443);
    assert_eq!(
        sorted.dial_port(TunnelProtocol::UnfrontedMeekOssh).unwrap(),
        8080
    );
    assert_eq!(
        sorted.dial_port(TunnelProtocol::FrontedMeekOssh).unwrap(),
        443
    );
    assert_eq!(sorted.dial_port(TunnelProtocol::QuicOssh).unwrap(), 443);
    assert!(!sorted.supports(TunnelProtocol::ShadowsocksOssh));
}

#[test]
fn entry_b_tricky_canonical_json() {
    let v = vectors();
    let key = signing_key(&v);
    let public = s(&v["signing_key"], "public_key_base64");
    let b = &v["entry_b_tricky"];

    let entry = ServerEntry::decode(s(b, "encoded_input")).unwrap();
    let message = entry.signed_message();
    assert_eq!(message, s(b, "canonical_signed_message"));
    assert_eq!(hex::encode(&message), s(b, "canonical_signed_message_hex"));

    let mut signed = entry.clone();
    signed.sign(&key);
    assert_eq!(signed.signature(), Some(s(b, "signature")));
    assert_eq!(signed.encode_sorted(), s(b, "encoded_signed_sorted_keys"));

    let inserted = ServerEntry::decode(s(b, "encoded_input_with_signature_inserted")).unwrap();
    assert_eq!(s(b, "verify_result_input_with_signature_inserted"), "ok");
    inserted.verify_signature(public).unwrap();
    ServerEntry::decode(s(b, "encoded_signed_sorted_keys"))
        .unwrap()
        .verify_signature(public)
        .unwrap();
}

#[test]
fn entry_c_legacy_prefix() {
    let v = vectors();
    let c = &v["entry_c_legacy_prefix"];
    assert_eq!(hex_text(c, "encoded"), s(c, "encoded_text"));
    let entry = ServerEntry::decode(s(c, "encoded")).unwrap();
    assert_eq!(entry.encode(), s(c, "encoded"));
    assert_eq!(entry.ip_address_str(), "198.51.100.23");
    assert_eq!(entry.web_server_port(), Some("8443"));
    assert_eq!(entry.ssh_obfuscated_port(), Some(53));
    assert!(!entry.supports_ssh_api_requests());
    assert!(entry.has_capability("handshake"));
    assert!(entry.supports(TunnelProtocol::Ssh));
}

#[test]
fn entry_d_derived_tag() {
    let v = vectors();
    let public = s(&v["signing_key"], "public_key_base64");
    let a = &v["entry_a_realistic"];
    let d = &v["entry_d_derived_tag"];

    let mut entry = ServerEntry::decode(s(a, "encoded_signed_sorted_keys")).unwrap();
    entry.set_local_source("EMBEDDED");
    entry.set_local_timestamp("2026-08-01T12:34:56Z");
    entry.remove("tag");
    assert!(entry.set_derived_tag_from_secret());
    assert_eq!(entry.tag(), Some(s(d, "derived_tag")));
    assert!(entry.is_local_derived_tag());
    assert_eq!(entry.signed_message(), s(d, "canonical_signed_message"));
    let err = entry.verify_signature(public).unwrap_err();
    assert_eq!(err.to_string(), s(&d["verify_error"], "message"));
    assert!(matches!(err, Error::InvalidSignature));
    assert_eq!(err.kind(), ErrorKind::Remote);
}

#[test]
fn verification_failures() {
    let v = vectors();
    let failures = v["verification_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 7);
    for case in failures {
        let entry = ServerEntry::decode(s(case, "encoded")).unwrap();
        let err = entry
            .verify_signature(s(case, "public_key"))
            .expect_err(s(case, "name"));
        assert_eq!(
            err.to_string(),
            s(&case["error"], "message"),
            "{}",
            s(case, "name")
        );
    }
}

#[test]
fn tags() {
    let v = vectors();
    for case in v["tags"].as_array().unwrap() {
        let tag = generate_server_entry_tag(s(case, "ip_address"), s(case, "web_server_secret"));
        assert_eq!(tag, s(case, "tag"));
        assert_eq!(diagnostic_id(&tag), s(case, "diagnostic_id"));
    }
}

#[test]
fn list_decoding() {
    let v = vectors();
    let l = &v["list_decoding"];
    let decoded = decode_server_entry_list(s(l, "encoded_list"), Some("REMOTE"), None);
    let ips: Vec<&str> = decoded
        .entries
        .iter()
        .map(ServerEntry::ip_address_str)
        .collect();
    let expected: Vec<&str> = l["decoded_ip_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ips, expected);
    assert_eq!(decoded.errors.len(), 1);
    assert_eq!(decoded.errors[0].line, 2);
    assert!(matches!(
        decoded.errors[0].error,
        Error::InvalidIpAddress(_)
    ));
}
