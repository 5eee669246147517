//! The Go-compatible JSON parser never panics, and canonical output is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psiphon_protocol::gojson;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = gojson::from_slice(data) {
        let canonical = gojson::to_canonical_string(&value);
        let reparsed = gojson::from_slice(canonical.as_bytes()).expect("canonical output parses");
        assert_eq!(gojson::to_canonical_string(&reparsed), canonical);
        let ordered = gojson::to_ordered_string(&value);
        assert!(gojson::from_slice(ordered.as_bytes()).is_ok());
    }
    let _ = gojson::compact(data);
});
