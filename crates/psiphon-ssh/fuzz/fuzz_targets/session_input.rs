//! Arbitrary bytes at a fresh server's and client's door (identification line, plaintext KEX
//! packets), cut into reads at arbitrary points.

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use psiphon_ssh::{ClientAuth, ClientConfig, PrivateKey, ServerConfig, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let Ok(key) = PrivateKey::ed25519_from_seed(&[1u8; 32]) else {
        return;
    };
    let key = Arc::new(key);
    let now = Instant::now();
    let Ok(mut server) = Session::server(
        ServerConfig::new(key.clone()),
        Box::new(|_: &str, _: &[u8]| false),
        now,
    ) else {
        return;
    };
    let client_cfg = ClientConfig::new(
        "u",
        ClientAuth::Password("p".into()),
        key.public_key().clone(),
    );
    let Ok(mut client) = Session::client(client_cfg, now) else {
        return;
    };
    for piece in input.chunks(usize::from(cut).max(1)) {
        let a = server.feed(piece, now);
        let b = client.feed(piece, now);
        if a.is_err() && b.is_err() {
            return;
        }
    }
});
