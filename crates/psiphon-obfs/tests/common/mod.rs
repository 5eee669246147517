//! Shared helpers for the integration tests: loading tunnel-core's known-answer vectors.

#![allow(dead_code)]
// each test binary uses a different subset
// Test support: a malformed vector file should stop the test with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value;

/// `shared/reference/vectors`, beside the project root, or `$PSIPHON_VECTORS_DIR`.
pub fn vectors_dir() -> PathBuf {
    match std::env::var_os("PSIPHON_VECTORS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/vectors"
        )),
    }
}

/// Parses one vector file; fails the test with a clear message if it is missing.
pub fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read known-answer vectors {}: {e}. They live in shared/reference/vectors \
             beside the project root; set PSIPHON_VECTORS_DIR to point elsewhere.",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A list-valued field.
pub fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("field {key} is not a list"))
}

/// A string field.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} is not a string"))
}

/// A hex field, decoded.
pub fn bytes(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(text(v, key)).unwrap_or_else(|e| panic!("field {key} is not hex: {e}"))
}

/// A hex field of a fixed length.
pub fn array<const N: usize>(v: &Value, key: &str) -> [u8; N] {
    bytes(v, key)
        .try_into()
        .unwrap_or_else(|_| panic!("field {key} is not {N} bytes"))
}

/// An optional unsigned integer field.
pub fn opt_usize(v: &Value, key: &str) -> Option<usize> {
    v[key].as_u64().map(|n| usize::try_from(n).unwrap())
}

/// An unsigned integer field.
pub fn num(v: &Value, key: &str) -> usize {
    opt_usize(v, key).unwrap_or_else(|| panic!("field {key} is not a number"))
}

/// The bytes a literal prefix regex generates. The specs in the vectors are literals with `\.`,
/// `\r`, `\n` and `\xHH` escapes; anything else that would make them a real pattern is refused.
pub fn literal_regex(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('r') => out.push(b'\r'),
                Some('n') => out.push(b'\n'),
                Some('x') => {
                    let hi = chars.next().unwrap();
                    let lo = chars.next().unwrap();
                    out.push(u8::from_str_radix(&format!("{hi}{lo}"), 16).unwrap());
                }
                Some(other) if other.is_ascii_punctuation() => out.push(other as u8),
                other => panic!("unsupported escape {other:?} in {spec}"),
            },
            '[' | ']' | '(' | ')' | '{' | '}' | '*' | '+' | '?' | '|' | '^' | '$' | '.' => {
                panic!("{spec} is not a literal")
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// The generator of a prefix spec (`[[name_or_regex, generator]]`, exactly one pair).
pub fn spec_literal(spec: &Value) -> Vec<u8> {
    let pairs = spec.as_array().expect("spec is a list");
    assert_eq!(pairs.len(), 1, "prefix specs have exactly one pair");
    literal_regex(pairs[0][1].as_str().expect("generator is a string"))
}

/// An SSH binary packet around `payload` with `padding` bytes of padding (values arbitrary).
pub fn ssh_packet(payload: &[u8], padding: u8) -> Vec<u8> {
    let packet_len = u32::try_from(1 + payload.len() + usize::from(padding)).unwrap();
    let mut out = packet_len.to_be_bytes().to_vec();
    out.push(padding);
    out.extend_from_slice(payload);
    out.extend(std::iter::repeat_n(0xA5, usize::from(padding)));
    out
}

/// What an SSH stack writes during its first flight: version line, KEX packets, NEWKEYS, then
/// (already encrypted, here arbitrary) bytes.
#[derive(Debug, Clone)]
pub struct SshFlight {
    pub version: Vec<u8>,
    /// (payload, padding length) of each packet before NEWKEYS; no payload starts with 21.
    pub packets: Vec<(Vec<u8>, u8)>,
    pub newkeys_padding: u8,
    pub tail: Vec<u8>,
}

impl SshFlight {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.version.clone();
        for (payload, padding) in &self.packets {
            out.extend(ssh_packet(payload, *padding));
        }
        out.extend(ssh_packet(&[21], self.newkeys_padding));
        out.extend_from_slice(&self.tail);
        out
    }

    /// Checks that `delivered` carries the same version line, payloads and tail; packet padding
    /// may have grown (the obfuscation layer adds some), up to 255 bytes.
    pub fn assert_delivered(&self, delivered: &[u8]) {
        let end = delivered
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("no version line")
            + 2;
        assert_eq!(&delivered[..end], self.version.as_slice(), "version line");
        let mut rest = &delivered[end..];
        let mut payloads = Vec::new();
        loop {
            let packet_len =
                usize::try_from(u32::from_be_bytes(rest[..4].try_into().unwrap())).unwrap();
            let padding = usize::from(rest[4]);
            assert!(padding < packet_len);
            let payload = rest[5..4 + packet_len - padding].to_vec();
            rest = &rest[4 + packet_len..];
            let newkeys = payload == [21];
            payloads.push(payload);
            if newkeys {
                break;
            }
        }
        let mut expected: Vec<Vec<u8>> = self.packets.iter().map(|(p, _)| p.clone()).collect();
        expected.push(vec![21]);
        assert_eq!(payloads, expected, "payloads");
        assert_eq!(rest, self.tail.as_slice(), "bytes after NEWKEYS");
    }
}

/// A proptest strategy for [`SshFlight`].
pub fn ssh_flight() -> impl proptest::strategy::Strategy<Value = SshFlight> {
    use proptest::prelude::*;
    let version = "[A-Za-z0-9_.]{1,40}".prop_map(|s| format!("SSH-2.0-{s}\r\n").into_bytes());
    let payload = (
        (1u8..=255).prop_filter("not NEWKEYS", |t| *t != 21),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(t, mut body)| {
            body.insert(0, t);
            body
        });
    let packet = (payload, 4u8..=255);
    (
        version,
        proptest::collection::vec(packet, 0..6),
        4u8..=255,
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(version, packets, newkeys_padding, tail)| SshFlight {
            version,
            packets,
            newkeys_padding,
            tail,
        })
}

/// Cuts `data` at the given fractions (each in 0..1000) into consecutive pieces.
pub fn split_at_points(data: &[u8], points: &[u16]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points
        .iter()
        .map(|p| data.len() * usize::from(*p) / 1000)
        .collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain(std::iter::once(data.len())) {
        pieces.push(data[start..cut].to_vec());
        start = cut;
    }
    pieces
}
