//! SOCKS5 and SOCKS4a upstream proxies against a real Dante server (`danted`), plus an in-test
//! SOCKS5 server for a successful user/password login.
//!
//! Dante's `username` method checks the host's system accounts, and these tests create none:
//! against Dante they test the `none` method (success) and the `username` method with no or
//! wrong credentials (failure). Success with a user name and password is tested against
//! `fake_proxies::socks5_user_pass_proxy`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{LIMIT, Running, closed_port, dial_and_echo, echo_server, program, through};
use psiphon_transport::{DialError, ErrorKind, NetDialer};

/// danted with the `none` or `username` SOCKS method, on 127.0.0.1 both sides, its pid file in
/// the temporary directory (never the system service's).
async fn danted(method: &str) -> Option<Running> {
    let bin = program("danted")?;
    // As root Dante wants to know which users to switch to; as anyone else it stays put.
    let users = if running_as_root() {
        "user.privileged: root\nuser.unprivileged: nobody\n"
    } else {
        ""
    };
    Some(
        Running::start(
            &bin,
            "danted.conf",
            &["-N", "1", "-p", "danted.pid", "-f"],
            "running",
            |port| {
                format!(
                    "logoutput: stderr\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: 127.0.0.1\n\
                 clientmethod: none\n\
                 socksmethod: {method}\n\
                 {users}\
                 client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
                 socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }}\n"
                )
            },
        )
        .await,
    )
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
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
async fn dante_socks5_carries_bytes_to_an_address_and_a_name() {
    let Some(proxy) = danted("none").await else {
        return;
    };
    let echo = echo_server(b"").await;
    for scheme in ["socks5", "socks5h"] {
        let d = through(&format!("{scheme}://127.0.0.1:{}", proxy.port));
        dial_and_echo(&d, "127.0.0.1", echo).await;
        dial_and_echo(&d, "localhost", echo).await;
    }
    proxy.stop().await;
}

#[tokio::test]
async fn dante_socks4a_carries_bytes_to_an_address() {
    // Dante speaks SOCKS4 but not the 4a name extension, so only an address is tested here;
    // the name form is covered byte by byte in the unit tests.
    let Some(proxy) = danted("none").await else {
        return;
    };
    let echo = echo_server(b"").await;
    let d = through(&format!("socks4a://someone@127.0.0.1:{}", proxy.port));
    dial_and_echo(&d, "127.0.0.1", echo).await;
    let e = dial_err(&d, "::1", echo).await;
    assert!(matches!(e, DialError::InvalidTarget { .. }), "{e:?}");
    assert!(!e.is_upstream_proxy_error());
    proxy.stop().await;
}

#[tokio::test]
async fn dante_refusing_our_credentials_is_an_upstream_proxy_error() {
    let Some(proxy) = danted("username").await else {
        return;
    };
    let echo = echo_server(b"").await;
    // no system account has this password
    let d = through(&format!(
        "socks5://nobody:not-the-password@127.0.0.1:{}",
        proxy.port
    ));
    let e = dial_err(&d, "127.0.0.1", echo).await;
    assert!(matches!(e, DialError::ProxyAuth { .. }), "{e:?}");
    assert!(e.is_upstream_proxy_error());
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(!e.full_message().contains("not-the-password"), "{e}");

    // no credentials: Dante accepts none of our methods
    let d = through(&format!("socks5://127.0.0.1:{}", proxy.port));
    let e = dial_err(&d, "127.0.0.1", echo).await;
    assert!(matches!(e, DialError::ProxyAuth { .. }), "{e:?}");
    assert!(e.to_string().contains("has no user name"), "{e}");
    proxy.stop().await;
}

#[tokio::test]
async fn dante_closed_target_is_not_an_upstream_proxy_error() {
    let Some(proxy) = danted("none").await else {
        return;
    };
    let closed = closed_port();
    let target = closed.port;
    for scheme in ["socks5", "socks4a"] {
        let d = through(&format!("{scheme}://127.0.0.1:{}", proxy.port));
        let e = dial_err(&d, "127.0.0.1", target).await;
        assert!(
            matches!(e, DialError::TargetFailed { .. }),
            "{scheme}: {e:?}"
        );
        assert!(!e.is_upstream_proxy_error());
        assert_eq!(e.kind(), ErrorKind::Blocked);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn closed_socks_proxy_ports_are_upstream_proxy_errors() {
    for scheme in ["socks5", "socks4a"] {
        let closed = closed_port();
        let d = through(&format!("{scheme}://u:p@127.0.0.1:{}", closed.port));
        let e = dial_err(&d, "127.0.0.1", 22).await;
        assert!(
            matches!(e, DialError::ProxyUnreachable { .. }),
            "{scheme}: {e:?}"
        );
        assert!(e.is_upstream_proxy_error());
    }
}

#[tokio::test]
async fn socks5_user_pass_login_against_the_test_server() {
    let echo = echo_server(b"").await;
    let port = common::fake_proxies::socks5_user_pass_proxy("alice", "p:ss w@rd").await;
    let d = through(&format!("socks5://alice:p%3Ass%20w%40rd@127.0.0.1:{port}"));
    dial_and_echo(&d, "127.0.0.1", echo).await;
    dial_and_echo(&d, "localhost", echo).await;

    let d = through(&format!("socks5://alice:wrong@127.0.0.1:{port}"));
    let e = dial_err(&d, "127.0.0.1", echo).await;
    assert!(matches!(e, DialError::ProxyAuth { .. }), "{e:?}");
    assert!(e.is_upstream_proxy_error());

    let d = through(&format!("socks5://alice:p%3Ass%20w%40rd@127.0.0.1:{port}"));
    let closed = closed_port();
    let e = dial_err(&d, "127.0.0.1", closed.port).await;
    assert!(matches!(e, DialError::TargetFailed { .. }), "{e:?}");
    assert!(!e.is_upstream_proxy_error());
}
