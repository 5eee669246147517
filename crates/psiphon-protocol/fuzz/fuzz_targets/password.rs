//! SSH password parsing never panics; accepted payloads round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psiphon_protocol::SshPasswordPayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = SshPasswordPayload::parse(data) {
        let json = payload.to_json();
        assert_eq!(SshPasswordPayload::parse(json.as_bytes()).expect("round trip"), payload);
    }
});
