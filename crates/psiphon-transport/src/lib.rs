#![doc = include_str!("../README.md")]

mod direct;
mod error;
mod io;
mod upstream;

use std::future::Future;
use std::pin::Pin;

pub use direct::Direct;
pub use error::{ConfigError, DialError, ErrorKind};
pub use io::{BoxIo, Io};
pub use upstream::{Credentials, ProxyScheme, UpstreamProxy, UpstreamProxyUrl};

/// "Give me a TCP-like stream to `host:port`": the seam under every tunnel protocol.
///
/// `host` is a name or an IP literal (IPv6 without brackets). Implementations: [`Direct`]
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

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn target_string(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
