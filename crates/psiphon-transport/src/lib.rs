#![doc = include_str!("../README.md")]

mod direct;
mod error;
mod io;
pub mod tunnel;
mod upstream;

use std::future::Future;
use std::pin::Pin;

pub use direct::Direct;
pub use error::{ConfigError, DialError, ErrorKind};
pub use io::{BoxIo, Io};
pub use tunnel::{
    AcceptError, AcceptorConfig, Irregular, TunnelAcceptor, TunnelDialer, acceptor_for, dialer_for,
};
pub use upstream::{
    Credentials, ProxyScheme, UpstreamProxy, UpstreamProxyUrl, check_custom_headers,
};

/// "Give me a TCP-like stream to `host:port`": the seam under every tunnel protocol.
///
/// `host` is a name or an IP literal (IPv6 without brackets; brackets are tolerated). Implementations: [`Direct`]
/// (plain TCP) and [`UpstreamProxy`] (through the user's proxy). Dropping the returned future
/// cancels the attempt and closes whatever it opened.
pub trait NetDialer: Send + Sync + std::fmt::Debug {
    /// Opens a stream to `host:port`.
    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>>;
}

impl<T: NetDialer + ?Sized> NetDialer for std::sync::Arc<T> {
    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>> {
        (**self).connect(host, port)
    }
}

impl<T: NetDialer + ?Sized> NetDialer for Box<T> {
    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>> {
        (**self).connect(host, port)
    }
}

/// `host` without the brackets a caller may have put around an IPv6 literal.
pub(crate) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .filter(|h| h.contains(':'))
        .unwrap_or(host)
}

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn target_string(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn errors_and_dialers_cross_threads() {
        assert_send_sync::<DialError>();
        assert_send_sync::<ConfigError>();
        assert_send_sync::<Direct>();
        assert_send_sync::<UpstreamProxy>();
        assert_send_sync::<std::sync::Arc<dyn NetDialer>>();
    }

    #[test]
    fn ipv6_hosts_are_bracketed_once() {
        assert_eq!(target_string("2001:db8::1", 22), "[2001:db8::1]:22");
        assert_eq!(target_string("10.0.0.1", 22), "10.0.0.1:22");
        assert_eq!(unbracket("[::1]"), "::1");
        assert_eq!(unbracket("::1"), "::1");
        assert_eq!(unbracket("[x]"), "[x]");
        assert_eq!(unbracket("h"), "h");
    }
}
