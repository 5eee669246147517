//! Loads the known-answer vectors produced by running psiphon-tunnel-core.
//!
//! They live in the project's sibling `shared/reference/vectors/` directory; set
//! `PSIPHON_VECTORS_DIR` to read them from elsewhere.

// Shared by several test binaries, each using a subset; a failed unwrap is a failed test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value;

pub fn vectors_dir() -> PathBuf {
    match std::env::var_os("PSIPHON_VECTORS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/reference/vectors/"
        )),
    }
}

/// Parses one vector file; panics with a clear message if it is missing.
pub fn load(name: &str) -> Value {
    let path = vectors_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read known-answer vectors {}: {e}\n\
             They come from the project's sibling directory shared/reference/vectors/; \
             set PSIPHON_VECTORS_DIR to their directory.",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("vector file {} is not JSON: {e}", path.display()))
}

/// A string field of a vector object.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector has no string field {key:?}"))
}

/// Hex-decodes a field and returns it as text.
pub fn hex_text(v: &Value, key: &str) -> String {
    String::from_utf8(hex::decode(s(v, key)).expect("hex")).expect("utf-8")
}
