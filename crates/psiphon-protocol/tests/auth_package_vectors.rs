//! Authenticated data packages against tunnel-core's vectors (`auth-package.json`), plus
//! tampering, wrong keys, bad compression, the streaming reader's escape rules, and a
//! sign → open property.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{load, s};
use proptest::prelude::*;
use psiphon_protocol::auth_package::{
    self, DataReader, PackageSigningKey, ZlibReader, open_package, open_package_uncompressed,
    verify_stream,
};
use psiphon_protocol::{Error, ErrorKind};
use serde_json::Value;

fn vectors() -> Value {
    load("auth-package.json")
}

fn vector_key(v: &Value) -> (PackageSigningKey, String) {
    let keys = &v["keys"];
    let der = STANDARD
        .decode(s(keys, "private_key_pkcs1_der_base64"))
        .unwrap();
    let key = PackageSigningKey::from_pkcs1_der(&der).unwrap();
    let public = s(keys, "public_key_pkix_der_base64").to_owned();
    assert_eq!(key.public_key_base64(), public);
    (key, public)
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Both passes of the streaming reader over a compressed package.
fn stream_open(compressed: &[u8], public: &str) -> Result<String, Error> {
    verify_stream(ZlibReader::new(compressed), public)?;
    let mut data = Vec::new();
    DataReader::new(ZlibReader::new(compressed))?
        .read_to_end(&mut data)
        .map_err(|e| {
            *e.into_inner()
                .and_then(|i| i.downcast::<Error>().ok())
                .expect("DataReader errors wrap the crate's Error")
        })?;
    Ok(String::from_utf8(data).unwrap())
}

#[test]
fn key_and_digest() {
    let v = vectors();
    let (key, public) = vector_key(&v);
    assert_eq!(key.modulus_bits(), 2048);
    assert_eq!(
        hex::encode(auth_package::public_key_digest(&public)),
        s(&v["keys"], "signing_public_key_digest")
    );
}

#[test]
fn every_package_vector() {
    let v = vectors();
    let (key, public) = vector_key(&v);
    let packages = v["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 3);
    for p in packages {
        let name = s(p, "name");
        let data = s(p, "data");
        let json = hex::decode(s(p, "package_json_hex")).unwrap();
        assert_eq!(json, s(p, "package_json").as_bytes(), "{name}");
        assert_eq!(
            hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                data.as_bytes()
            )),
            s(p, "data_sha256"),
            "{name}"
        );

        // PKCS#1 v1.5 is deterministic: our package is tunnel-core's, byte for byte.
        let ours = key.sign_package_uncompressed(data).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            s(p, "package_json"),
            "{name}"
        );
        let parsed: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            hex::encode(
                STANDARD
                    .decode(parsed["signature"].as_str().unwrap())
                    .unwrap()
            ),
            s(p, "signature"),
            "{name}"
        );

        // Go's zlib bytes decompress to the package JSON.
        let compressed = hex::decode(s(p, "package_zlib_hex")).unwrap();
        let mut inflated = Vec::new();
        ZlibReader::new(compressed.as_slice())
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, json, "{name}");

        // Whole-buffer reader: always ok.
        assert_eq!(p["read_result"], "ok", "{name}");
        assert_eq!(open_package(&compressed, &public).unwrap(), data, "{name}");
        assert_eq!(open_package_uncompressed(&json, &public).unwrap(), data);

        // Streaming reader: ok, or tunnel-core's error.
        match &p["streaming_read_result"] {
            Value::String(ok) if ok == "ok" => {
                assert_eq!(stream_open(&compressed, &public).unwrap(), data, "{name}");
            }
            failure => {
                let want = s(failure, "message");
                let err = stream_open(&compressed, &public).unwrap_err();
                assert!(err.to_string().contains(want), "{name}: {err} vs {want}");
                assert_eq!(err.kind(), ErrorKind::Remote);
            }
        }

        // Our compressed package opens both ways too.
        let ours = key.sign_package(data).unwrap();
        assert_eq!(open_package(&ours, &public).unwrap(), data);
    }
}

#[test]
fn failure_vectors() {
    let v = vectors();
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    for f in failures {
        let name = s(f, "name");
        let public = s(f, "public_key_pkix_base64");
        let compressed = hex::decode(s(f, "package_zlib_hex")).unwrap();
        let whole = open_package(&compressed, public).unwrap_err();
        let streamed = stream_open(&compressed, public).unwrap_err();
        let want_whole = s(&f["read_error"], "message");
        let want_stream = s(&f["streaming_read_error"], "message");
        assert!(whole.to_string().contains(want_whole), "{name}: {whole}");
        assert!(
            streamed.to_string().contains(want_stream),
            "{name}: {streamed}"
        );
        match name {
            "tampered_data" => {
                assert!(matches!(whole, Error::PackageSignature), "{whole:?}");
                assert!(matches!(streamed, Error::PackageSignature), "{streamed:?}");
            }
            "wrong_key" => {
                assert!(matches!(whole, Error::PackageKeyDigest), "{whole:?}");
                assert!(matches!(streamed, Error::PackageKeyDigest), "{streamed:?}");
            }
            other => panic!("unknown failure vector {other}"),
        }
    }
}

#[test]
fn tampering_wrong_keys_and_bad_compression_are_told_apart() {
    let v = vectors();
    let (key, public) = vector_key(&v);
    let data = "line one\nline two\n";
    let json = String::from_utf8(key.sign_package_uncompressed(data).unwrap()).unwrap();

    // Altered data, same signature.
    let tampered = zlib(json.replace("line two", "line 2!!").as_bytes());
    assert!(matches!(
        open_package(&tampered, &public),
        Err(Error::PackageSignature)
    ));
    assert!(matches!(
        stream_open(&tampered, &public),
        Err(Error::PackageSignature)
    ));

    // Signature bytes altered.
    let parsed: Value = serde_json::from_str(&json).unwrap();
    let mut sig = STANDARD
        .decode(parsed["signature"].as_str().unwrap())
        .unwrap();
    sig[10] ^= 1;
    let bad_sig = json.replace(
        parsed["signature"].as_str().unwrap(),
        &STANDARD.encode(&sig),
    );
    assert!(matches!(
        open_package_uncompressed(bad_sig.as_bytes(), &public),
        Err(Error::PackageSignature)
    ));

    // Another key: the digest says so before the signature is tried.
    let other = PackageSigningKey::generate(2048).unwrap();
    let package = key.sign_package(data).unwrap();
    let err = open_package(&package, &other.public_key_base64()).unwrap_err();
    assert!(matches!(err, Error::PackageKeyDigest), "{err:?}");
    assert!(matches!(
        stream_open(&package, &other.public_key_base64()),
        Err(Error::PackageKeyDigest)
    ));
    // A package that claims our key's digest but was signed by another key.
    let forged = other.sign_package_uncompressed(data).unwrap();
    let forged = String::from_utf8(forged).unwrap().replace(
        &STANDARD.encode(auth_package::public_key_digest(&other.public_key_base64())),
        &STANDARD.encode(auth_package::public_key_digest(&public)),
    );
    assert!(matches!(
        open_package_uncompressed(forged.as_bytes(), &public),
        Err(Error::PackageSignature)
    ));

    // Bad keys are configuration errors.
    for bad in ["", "not base64!", "AAAA"] {
        let err = open_package(&package, bad).unwrap_err();
        assert!(
            matches!(err, Error::PackagePublicKey(_)),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Config);
    }

    // Compression: cut anywhere, not zlib at all, damaged.
    for cut in [1, 2, package.len() / 3, package.len() - 1] {
        let err = open_package(&package[..cut], &public).unwrap_err();
        assert!(matches!(err, Error::PackageTruncated), "cut {cut}: {err:?}");
        let err = stream_open(&package[..cut], &public).unwrap_err();
        assert!(matches!(err, Error::PackageTruncated), "cut {cut}: {err:?}");
    }
    for not_zlib in [&b""[..], json.as_bytes(), &[0x1f, 0x8b, 8, 0, 0, 0]] {
        let err = open_package(not_zlib, &public).unwrap_err();
        assert!(matches!(err, Error::PackageNotZlib(_)), "{err:?}");
        assert!(matches!(
            stream_open(not_zlib, &public),
            Err(Error::PackageNotZlib(_))
        ));
    }
    let mut damaged = package.clone();
    let n = damaged.len();
    damaged[n - 2] ^= 0x55;
    assert!(matches!(
        open_package(&damaged, &public),
        Err(Error::PackageCorrupt(_))
    ));

    // Every error names the package.
    for e in [
        Error::PackageSignature,
        Error::PackageKeyDigest,
        Error::PackageTruncated,
    ] {
        assert!(e.to_string().contains("authenticated package"), "{e}");
    }
}

/// The package JSON with the fields in another order and with whitespace: both readers take it.
#[test]
fn streaming_reader_follows_tunnel_cores_json_rules() {
    let v = vectors();
    let (key, public) = vector_key(&v);
    let data = "a\nb";
    let parsed: Value =
        serde_json::from_slice(&key.sign_package_uncompressed(data).unwrap()).unwrap();
    let (d, sig) = (
        parsed["signingPublicKeyDigest"].as_str().unwrap(),
        parsed["signature"].as_str().unwrap(),
    );
    let build = |body: String| zlib(body.as_bytes());

    let reordered = build(format!(
        " \r\n{{\n\t\"signature\" : \"{sig}\",\n \"signingPublicKeyDigest\":\"{d}\" ,\"data\"\n:\n\"a\\nb\"\n}}\n "
    ));
    assert_eq!(stream_open(&reordered, &public).unwrap(), data);
    assert_eq!(open_package(&reordered, &public).unwrap(), data);

    let cases: Vec<(String, &str)> = vec![
        // Escapes other than \n inside values.
        (
            format!(r#"{{"data":"a\tb","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#),
            "unsupported escaped character",
        ),
        (
            format!(r#"{{"data":"a\u000ab","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#),
            "unsupported escaped character",
        ),
        (
            format!(r#"{{"data":"a\"b","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#),
            "unsupported escaped character",
        ),
        // Any escape in a key.
        (
            format!(r#"{{"d\u0061ta":"a\nb","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#),
            "unsupported escaped character",
        ),
        // Unknown keys, non-string values, structure.
        (
            format!(
                r#"{{"data":"a\nb","extra":"x","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#
            ),
            "unexpected key 'extra'",
        ),
        (
            format!(r#"{{"data":1,"signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#),
            "while seeking value start",
        ),
        (r#"["data"]"#.to_owned(), "while seeking object start"),
        ("{}".to_owned(), "while seeking key start"),
        (
            format!(r#"{{"data":"a\nb","signingPublicKeyDigest":"{d}","signature":"{sig}",}}"#),
            "while seeking key start",
        ),
        (
            format!(r#"{{"data":"a\nb","signingPublicKeyDigest":"{d}","signature":"{sig}"}} x"#),
            "after object end",
        ),
        (
            format!(r#"{{"data":"a\nb","signingPublicKeyDigest":"{d}","signature":"{sig}""#),
            "unexpected EOF before object end",
        ),
        (
            format!(r#"{{"data":"a\nb","signingPublicKeyDigest":"{d}","signature":"{sig}"#),
            "unexpected EOF before object end",
        ),
        (
            format!(
                r#"{{"data":"a\nb","data":"c","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#
            ),
            "duplicate key 'data'",
        ),
        (
            format!(r#"{{"data":"a\nb","signingPublicKeyDigest":"{d}"}}"#),
            "missing expected field",
        ),
        (
            format!(r#"{{"signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#),
            "missing expected field",
        ),
    ];
    for (json, want) in cases {
        let err = stream_open(&build(json.clone()), &public).unwrap_err();
        assert!(
            err.to_string().contains(want),
            "{json}\n  got: {err}\n  want: {want}"
        );
        assert_eq!(err.kind(), ErrorKind::Remote);
    }

    // The whole-buffer reader accepts every JSON escape: \u000a is the newline.
    let escaped =
        format!(r#"{{"data":"a\u000ab","signingPublicKeyDigest":"{d}","signature":"{sig}"}}"#);
    assert_eq!(open_package(&build(escaped), &public).unwrap(), data);
}

#[test]
fn a_large_list_streams_line_by_line() {
    let v = vectors();
    let (key, public) = vector_key(&v);
    let line = "3020".repeat(300);
    let data: String = (0..5000).map(|i| format!("{line}{i:08}\n")).collect();
    let package = key.sign_package(&data).unwrap();
    verify_stream(ZlibReader::new(package.as_slice()), &public).unwrap();
    let reader = BufReader::new(DataReader::new(ZlibReader::new(package.as_slice())).unwrap());
    let mut count = 0;
    for (i, l) in reader.lines().enumerate() {
        assert_eq!(l.unwrap(), format!("{line}{i:08}"));
        count += 1;
    }
    assert_eq!(count, 5000);
}

/// A reader that hands out one byte per call, so every token and escape of the package
/// straddles buffer refills.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((b, rest)), Some(slot)) => {
                *slot = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn byte_at_a_time_input_and_one_byte_reads() {
    let v = vectors();
    let (key, public) = vector_key(&v);
    let data = "\n\na\nbb\n\nccc\n";
    let json = key.sign_package_uncompressed(data).unwrap();
    let compressed = key.sign_package(data).unwrap();
    verify_stream(Trickle(&json), &public).unwrap();
    verify_stream(ZlibReader::new(Trickle(&compressed)), &public).unwrap();
    let mut reader = DataReader::new(ZlibReader::new(Trickle(&compressed))).unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte).unwrap() {
            0 => break,
            n => out.extend_from_slice(&byte[..n]),
        }
    }
    assert_eq!(out, data.as_bytes());
    // Tampering is still caught byte by byte.
    let tampered = String::from_utf8(json).unwrap().replace("ccc", "cdc");
    assert!(matches!(
        verify_stream(Trickle(tampered.as_bytes()), &public),
        Err(Error::PackageSignature)
    ));
}

/// What Go's encoder escapes with anything other than `\n`.
fn go_escapes_otherwise(data: &str) -> bool {
    data.chars().any(|c| {
        matches!(c, '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}')
            || (c < ' ' && c != '\n')
    })
}

fn proptest_key() -> &'static (PackageSigningKey, String) {
    static KEY: std::sync::OnceLock<(PackageSigningKey, String)> = std::sync::OnceLock::new();
    KEY.get_or_init(|| vector_key(&vectors()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_then_open_round_trips(data in ".{0,200}", lines in prop::collection::vec("[0-9a-f]{0,40}", 0..20)) {
        let (key, public) = proptest_key();
        for data in [data, lines.join("\n")] {
            let package = key.sign_package(&data).unwrap();
            prop_assert_eq!(&open_package(&package, public).unwrap(), &data);
            match stream_open(&package, public) {
                Ok(streamed) => {
                    prop_assert!(!go_escapes_otherwise(&data));
                    prop_assert_eq!(&streamed, &data);
                }
                Err(e) => {
                    prop_assert!(go_escapes_otherwise(&data), "{e}");
                    prop_assert!(e.to_string().contains("unsupported escaped character"));
                }
            }
        }
    }

    #[test]
    fn any_flipped_byte_is_caught(data in "[0-9a-f\n]{1,100}", index in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (key, public) = proptest_key();
        let mut json = key.sign_package_uncompressed(&data).unwrap();
        let i = index.index(json.len());
        json[i] ^= 1 << bit;
        // Either it fails, or the flip did not change what was signed (e.g. whitespace-free
        // JSON cannot absorb a flip, but a flipped key letter's case can match Go's lookup).
        if let Ok(opened) = open_package_uncompressed(&json, public) {
            prop_assert_eq!(opened, data.clone());
        }
        if let Ok(streamed) = stream_open(&zlib(&json), public) {
            prop_assert_eq!(streamed, data);
        }
    }
}
