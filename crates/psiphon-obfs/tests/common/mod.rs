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
