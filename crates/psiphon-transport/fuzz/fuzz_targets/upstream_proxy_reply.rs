//! Arbitrary proxy replies, cut into reads at arbitrary points, through the public dialer:
//! HTTP CONNECT, SOCKS4a and SOCKS5 (with and without credentials) reply parsing.

#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use psiphon_transport::{BoxIo, DialError, NetDialer, UpstreamProxy, UpstreamProxyUrl};
use tokio::io::AsyncWriteExt;

/// Hands out one in-memory stream whose far end plays `reply` in pieces of `step` bytes.
#[derive(Debug)]
struct Replay {
    reply: Vec<u8>,
    step: usize,
}

impl NetDialer for Replay {
    fn connect<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>> {
        Box::pin(async move {
            let (near, mut far) = tokio::io::duplex(64 * 1024);
            let reply = self.reply.clone();
            let step = self.step;
            tokio::spawn(async move {
                for piece in reply.chunks(step) {
                    if far.write_all(piece).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                // end of reply (the dialer sees EOF at once, not a timeout), but keep taking
                // what the dialer writes
                let _ = far.shutdown().await;
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut far, &mut sink).await;
            });
            Ok(Box::new(near) as BoxIo)
        })
    }
}

const URLS: [&str; 6] = [
    "http://127.0.0.1:8080",
    "http://u:p@127.0.0.1:8080",
    "socks4a://id@127.0.0.1:1080",
    "socks5://127.0.0.1",
    "socks5://u:p@127.0.0.1",
    "socks5h://u@127.0.0.1",
];

const TARGETS: [&str; 3] = ["192.0.2.1", "2001:db8::1", "example.com"];

fuzz_target!(|data: &[u8]| {
    let Some((&[which, cut], reply)) = data.split_first_chunk::<2>() else {
        return;
    };
    let Some(url) = URLS.get(usize::from(which) % URLS.len()) else {
        return;
    };
    let Some(target) = TARGETS.get(usize::from(which / 8) % TARGETS.len()) else {
        return;
    };
    let Ok(url) = UpstreamProxyUrl::parse(url) else {
        return;
    };
    let replay = Replay {
        reply: reply.to_vec(),
        step: usize::from(cut).max(1),
    };
    let dialer = UpstreamProxy::new(url, Arc::new(replay))
        .with_handshake_timeout(std::time::Duration::from_secs(1));
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    rt.block_on(async {
        let _ = dialer.connect(target, 22).await;
    });
});
