//! Server-entry signatures at client start: with `ServerEntrySignaturePublicKey`, a signed entry
//! that does not verify is dropped with a warning; unsigned entries stay (tunnel-core's rule).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use psiphon_client::app::verify_entries;
use psiphon_client::notice::Notices;
use psiphon_protocol::{ServerEntry, ServerEntrySigningKey};
use serde_json::json;

fn entry(ip: &str) -> ServerEntry {
    ServerEntry::from_fields(
        json!({"ipAddress": ip, "sshPort": 22, "capabilities": ["SSH"]})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_signatures_are_dropped_with_a_warning() {
    let key = ServerEntrySigningKey::generate().unwrap();
    let mut good = entry("192.0.2.1");
    good.sign(&key);
    let mut tampered = entry("192.0.2.2");
    tampered.sign(&key);
    let mut fields = tampered.fields().clone();
    fields.insert("sshPort".into(), json!(2222));
    let tampered = ServerEntry::from_fields(fields).unwrap();
    let unsigned = entry("192.0.2.3");

    let (notices, mut rx) = Notices::channel(16, false);
    let kept = verify_entries(
        vec![good, tampered, unsigned],
        Some(&key.public_key_base64()),
        &notices,
    );
    let ips: Vec<&str> = kept.iter().map(|e| e.ip_address_str()).collect();
    assert_eq!(ips, vec!["192.0.2.1", "192.0.2.3"]);
    let warning = rx.try_recv().expect("a warning for the dropped entry");
    assert!(
        warning.contains("bad signature") && warning.contains("\"Warning\""),
        "{warning}"
    );
    assert!(
        !warning.contains("192.0.2.2"),
        "addresses stay out of notices: {warning}"
    );

    // Without a configured key nothing is checked.
    let kept = verify_entries(kept, None, &notices);
    assert_eq!(kept.len(), 2);
}
