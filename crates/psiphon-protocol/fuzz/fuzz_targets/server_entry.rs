//! Server entry and list decoding never panic; decoded entries re-encode to themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psiphon_protocol::{ServerEntry, decode_server_entry_list};

fuzz_target!(|data: &[u8]| {
    // Raw JSON (the part after the legacy prefix).
    if let Ok(entry) = ServerEntry::from_json(data) {
        let again = ServerEntry::decode(&entry.encode()).expect("re-encoded entry decodes");
        assert_eq!(again.signed_message(), entry.signed_message());
        let _ = entry.verify_signature("4ph+G8MMWAiTYuq2M7llQ1H6IDrRLsUWmGDCziOsN0g=");
        let _ = entry.supported_protocols();
        let _ = entry.diagnostic_id();
    }
    // Encoded lines.
    let text = String::from_utf8_lossy(data);
    let _ = ServerEntry::decode(&text);
    let _ = decode_server_entry_list(&text, Some("REMOTE"), None);
});
