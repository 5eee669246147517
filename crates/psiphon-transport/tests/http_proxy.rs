//! HTTP CONNECT upstream proxy against a real tinyproxy (Basic authentication), plus an
//! in-test CONNECT proxy that shows the request head (CustomHeaders) and coalesces its reply
//! with the destination's first bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{LIMIT, Running, closed_port, dial_and_echo, echo_server, program, through};
use psiphon_transport::{DialError, ErrorKind, NetDialer};
use tokio::io::AsyncReadExt;

async fn tinyproxy(basic_auth: bool) -> Option<Running> {
    let bin = program("tinyproxy")?;
    let auth = if basic_auth {
        "BasicAuth user pass\n"
    } else {
        ""
    };
    // No ConnectPort line: CONNECT is allowed to every port.
    Some(
        Running::start(
            &bin,
            "tinyproxy.conf",
            &["-d", "-c"],
            "Accepting connections",
            |port| {
                format!(
                    "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 10\n\
                 MaxClients 20\nLogLevel Info\n{auth}"
                )
            },
        )
        .await,
    )
}

async fn dial_err(dialer: &dyn NetDialer, host: &str, port: u16) -> DialError {
    match tokio::time::timeout(LIMIT, dialer.connect(host, port))
        .await
        .expect("dial timed out")
    {
        Ok(_) => panic!("dial to {host}:{port} succeeded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn tinyproxy_with_basic_auth_carries_bytes() {
    let Some(proxy) = tinyproxy(true).await else {
        return;
    };
    let echo = echo_server(b"").await;
    let d = through(&format!("http://user:pass@127.0.0.1:{}", proxy.port));
    dial_and_echo(&d, "127.0.0.1", echo).await;
    // by name too: tinyproxy resolves it
    dial_and_echo(&d, "localhost", echo).await;
    assert!(proxy.log().contains("CONNECT"), "{}", proxy.log());
    proxy.stop().await;
}

#[tokio::test]
async fn tinyproxy_without_auth_carries_a_banner_then_bytes() {
    let Some(proxy) = tinyproxy(false).await else {
        return;
    };
    let echo = echo_server(b"SSH-2.0-test\r\n").await;
    let d = through(&format!("http://127.0.0.1:{}", proxy.port));
    let mut s = d.connect("127.0.0.1", echo).await.unwrap();
    let mut banner = [0u8; 14];
    tokio::time::timeout(LIMIT, s.read_exact(&mut banner))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-test\r\n");
    common::round_trip(&mut s).await;
    proxy.stop().await;
}

#[tokio::test]
async fn tinyproxy_wrong_password_is_an_upstream_proxy_error() {
    let Some(proxy) = tinyproxy(true).await else {
        return;
    };
    let echo = echo_server(b"").await;
    let d = through(&format!("http://user:wrong%21@127.0.0.1:{}", proxy.port));
    let e = dial_err(&d, "127.0.0.1", echo).await;
    assert!(matches!(e, DialError::ProxyAuth { .. }), "{e:?}");
    assert!(e.is_upstream_proxy_error());
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.full_message();
    assert!(
        msg.contains(&format!("http proxy 127.0.0.1:{}", proxy.port)),
        "{msg}"
    );
    assert!(
        !msg.contains("wrong") && !msg.contains("user"),
        "credentials leaked: {msg}"
    );

    // no credentials at all: tinyproxy answers 407
    let d = through(&format!("http://127.0.0.1:{}", proxy.port));
    let e = dial_err(&d, "127.0.0.1", echo).await;
    assert!(e.is_upstream_proxy_error(), "{e:?}");
    assert!(e.to_string().contains("407"), "{e}");
    assert!(e.to_string().contains("has none"), "{e}");
    proxy.stop().await;
}

#[tokio::test]
async fn tinyproxy_closed_target_is_not_an_upstream_proxy_error() {
    let Some(proxy) = tinyproxy(true).await else {
        return;
    };
    let d = through(&format!("http://user:pass@127.0.0.1:{}", proxy.port));
    let closed = closed_port();
    let target = closed.port;
    let e = dial_err(&d, "127.0.0.1", target).await;
    assert!(matches!(e, DialError::TargetFailed { .. }), "{e:?}");
    assert!(!e.is_upstream_proxy_error());
    assert_eq!(e.kind(), ErrorKind::Blocked);
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{target}")),
        "{e}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn closed_http_proxy_port_is_an_upstream_proxy_error() {
    let closed = closed_port();
    let d = through(&format!("http://user:pass@127.0.0.1:{}", closed.port));
    let e = dial_err(&d, "127.0.0.1", 22).await;
    assert!(matches!(e, DialError::ProxyUnreachable { .. }), "{e:?}");
    assert!(e.is_upstream_proxy_error());
    assert_eq!(e.kind(), ErrorKind::Local);
    assert!(
        e.full_message().contains("Connection refused") || e.full_message().contains("refused"),
        "{}",
        e.full_message()
    );
}

#[tokio::test]
async fn custom_headers_reach_the_proxy_and_early_bytes_are_kept() {
    let echo = echo_server(b"BANNER").await;
    let (port, mut heads) = common::fake_proxies::http_connect_proxy(6).await;
    let d = through(&format!("http://al%20ice:p%40ss@127.0.0.1:{port}"))
        .with_custom_headers(vec![
            ("X-Psiphon-Test".into(), "one".into()),
            ("X-Psiphon-Test".into(), "two".into()),
            ("User-Agent".into(), "psiphon-rs-test".into()),
        ])
        .unwrap();
    let mut s = d.connect("127.0.0.1", echo).await.unwrap();
    let head = tokio::time::timeout(LIMIT, heads.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        head,
        format!(
            "CONNECT 127.0.0.1:{echo} HTTP/1.1\r\nHost: 127.0.0.1:{echo}\r\n\
             X-Psiphon-Test: one\r\nX-Psiphon-Test: two\r\nUser-Agent: psiphon-rs-test\r\n\
             Proxy-Authorization: Basic YWwgaWNlOnBAc3M=\r\n\r\n"
        )
    );
    // the proxy sent "200" and the destination's banner in one write: nothing is lost
    let mut banner = [0u8; 6];
    s.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"BANNER");
    common::round_trip(&mut s).await;
}

#[test]
fn bad_custom_headers_are_config_errors() {
    let e = through("http://127.0.0.1:1")
        .with_custom_headers(vec![("X-Bad".into(), "a\r\nInjected: yes".into())])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("X-Bad"), "{e}");
    assert!(!e.to_string().contains("Injected"), "{e}");
}
