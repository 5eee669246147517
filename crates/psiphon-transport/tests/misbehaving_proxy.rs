//! Proxies that answer nonsense or nothing: upstream proxy errors, except silence after the
//! destination was requested (the proxy is then most likely waiting on a silent destination).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{LIMIT, through};
use psiphon_transport::{DialError, ErrorKind, NetDialer};

async fn dial_err(dialer: &dyn NetDialer) -> DialError {
    match tokio::time::timeout(LIMIT, dialer.connect("192.0.2.1", 22))
        .await
        .expect("dial timed out")
    {
        Ok(_) => panic!("dial succeeded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn malformed_replies_are_upstream_proxy_errors() {
    for (scheme, reply, expect) in [
        ("http", &b"SSH-2.0-OpenSSH\r\n"[..], "not an HTTP response"),
        ("http", &b"HTTP/1.1 abc\r\n\r\n"[..], "bad status line"),
        (
            "socks5",
            &b"HTTP/1.1 400 Bad Request\r\n\r\n"[..],
            "expected 5",
        ),
        (
            "socks4a",
            &b"\x05\x00\x00\x00\x00\x00\x00\x00"[..],
            "expected 0",
        ),
    ] {
        let port = common::fake_proxies::scripted_proxy(reply, true).await;
        let e = dial_err(&through(&format!("{scheme}://127.0.0.1:{port}"))).await;
        assert!(
            matches!(e, DialError::ProxyProtocol { .. }),
            "{scheme}: {e:?}"
        );
        assert!(e.is_upstream_proxy_error());
        assert_eq!(e.kind(), ErrorKind::Local);
        assert!(e.to_string().contains(expect), "{e}");
    }
}

#[tokio::test]
async fn a_proxy_that_hangs_up_is_an_upstream_proxy_error() {
    // half a SOCKS5 method reply, then the connection closes
    let port = common::fake_proxies::scripted_proxy(b"\x05", false).await;
    let e = dial_err(&through(&format!("socks5://127.0.0.1:{port}"))).await;
    assert!(matches!(e, DialError::ProxyClosed { .. }), "{e:?}");
    assert!(e.is_upstream_proxy_error());
    assert!(e.to_string().contains("method selection"), "{e}");
}

#[tokio::test]
async fn a_silent_proxy_before_the_destination_is_requested_is_an_upstream_proxy_error() {
    let port = common::fake_proxies::scripted_proxy(b"\x05", true).await;
    let d = through(&format!("socks5://127.0.0.1:{port}"))
        .with_handshake_timeout(Duration::from_millis(300));
    let e = dial_err(&d).await;
    assert!(matches!(e, DialError::ProxyTimeout { .. }), "{e:?}");
    assert!(e.is_upstream_proxy_error());
    assert!(e.to_string().contains("method selection"), "{e}");
}

#[tokio::test]
async fn silence_after_the_connect_request_is_the_destination_not_the_proxy() {
    let port = common::fake_proxies::scripted_proxy(b"", true).await;
    let d = through(&format!("http://127.0.0.1:{port}"))
        .with_handshake_timeout(Duration::from_millis(300));
    let e = dial_err(&d).await;
    assert!(matches!(e, DialError::TargetTimeout { .. }), "{e:?}");
    assert!(!e.is_upstream_proxy_error());
    assert_eq!(e.kind(), ErrorKind::Blocked);
}
