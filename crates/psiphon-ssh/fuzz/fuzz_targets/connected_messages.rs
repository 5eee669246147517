//! Arbitrary messages, as if decrypted and authenticated, into an authenticated server and
//! client: the connection-protocol parsers behind the MAC.

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use psiphon_ssh::{ClientAuth, ClientConfig, PrivateKey, ServerConfig, Session};

fn connected() -> Option<(Session, Session)> {
    let key = Arc::new(PrivateKey::ed25519_from_seed(&[1u8; 32]).ok()?);
    let now = Instant::now();
    let cfg = ClientConfig::new(
        "u",
        ClientAuth::Password("p".into()),
        key.public_key().clone(),
    );
    let mut c = Session::client(cfg, now).ok()?;
    let mut s = Session::server(
        ServerConfig::new(key),
        Box::new(|_: &str, p: &[u8]| p == b"p"),
        now,
    )
    .ok()?;
    let mut buf = Vec::new();
    for _ in 0..20 {
        c.take_transmit(&mut buf);
        s.feed(&buf, now).ok()?;
        s.take_transmit(&mut buf);
        c.feed(&buf, now).ok()?;
    }
    (c.is_authenticated() && s.is_authenticated()).then_some((c, s))
}

fuzz_target!(|data: &[u8]| {
    let Some((mut c, mut s)) = connected() else {
        return;
    };
    // Messages are length-prefixed by one byte in the input.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (msg, next) = tail.split_at(n);
        let _ = s.inject_payload_for_fuzzing(msg, Instant::now());
        let _ = c.inject_payload_for_fuzzing(msg, Instant::now());
        while s.poll_event().is_some() {}
        while c.poll_event().is_some() {}
        rest = next;
    }
});
