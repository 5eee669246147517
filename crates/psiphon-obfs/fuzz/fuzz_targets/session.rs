//! Arbitrary bytes into both sides of an established session: the client's read side (server
//! prefix, identification lines, KEX packets), and the write side's SSH packet parser.

#![no_main]

use libfuzzer_sys::fuzz_target;
use psiphon_obfs::{ClientConfig, ClientPrefix, Keyword, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let Ok(keyword) = Keyword::new("fuzz-keyword") else {
        return;
    };
    let mut config = ClientConfig::new(keyword);
    if flags & 1 == 1 {
        if let Ok(prefix) = ClientPrefix::new("p", b"GET / HTTP/1.1\r\n".to_vec()) {
            config = config.with_prefix(prefix);
        }
    }
    let Ok(mut session) = Session::client_with_seed(&config, [flags; 16]) else {
        return;
    };
    let step = usize::from(flags >> 1).max(1);
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        if session.decode(piece, &mut out).is_err() {
            break;
        }
    }
    let _ = session.eof_error();
    out.clear();
    for piece in input.chunks(step) {
        if session.encode(piece, &mut out).is_err() {
            break;
        }
    }
});
