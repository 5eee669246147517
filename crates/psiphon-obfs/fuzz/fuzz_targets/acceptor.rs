//! Arbitrary first flights at a server's door, cut into reads at arbitrary points.

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use psiphon_obfs::{AcceptStep, Acceptor, Keyword, SeedHistory, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let Ok(keyword) = Keyword::new("fuzz-keyword") else {
        return;
    };
    let config = ServerConfig::new(keyword, Arc::new(SeedHistory::default()));
    let mut acceptor = Acceptor::new(&config, None);
    let step = usize::from(cut).max(1);
    for piece in input.chunks(step) {
        match acceptor.feed(piece, Instant::now()) {
            AcceptStep::NeedMore => {}
            AcceptStep::Accepted { .. } | AcceptStep::Rejected(_) => return,
        }
    }
    let _ = acceptor.eof();
});
