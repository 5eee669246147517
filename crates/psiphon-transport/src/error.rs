//! Errors of dialing, each with a kind that says who is at fault, and configuration errors.

use std::error::Error as _;
use std::io;
use std::time::Duration;

/// Who is at fault for an error; the same enum as the SSH layer's, so the client's controller
/// maps a single one.
pub use psiphon_ssh::ErrorKind;

/// An unusable upstream proxy setting. Messages never contain the URL's user name or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `UpstreamProxyURL` could not be parsed or names something we cannot use.
    #[error("UpstreamProxyURL: {0}")]
    ProxyUrl(String),
    /// A `CustomHeaders` entry cannot be sent in an HTTP request.
    #[error("CustomHeaders: header {name:?}: {reason}")]
    Header {
        /// The header name as configured.
        name: String,
        /// What is wrong with it (the value is never quoted: it may hold a secret).
        reason: &'static str,
    },
}

impl ConfigError {
    /// Always [`ErrorKind::Config`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// A failed attempt to get a stream to `host:port`.
///
/// `proxy` fields name the upstream proxy as `<scheme> proxy <host>:<port>`, never with its
/// credentials. Errors about the proxy itself leave the destination out, since they are shown to
/// the user as `UpstreamProxyError` notices.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The destination's name did not resolve.
    #[error("resolving {host}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// The name resolved to no address at all.
    #[error("{host} resolved to no address")]
    NoAddress {
        /// The name.
        host: String,
    },
    /// The TCP connection was refused, reset or failed.
    #[error("TCP connect to {target} failed")]
    Connect {
        /// `host:port`.
        target: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The TCP handshake did not finish in time.
    #[error("TCP connect to {target} timed out after {timeout:?}")]
    ConnectTimeout {
        /// `host:port`.
        target: String,
        /// The limit.
        timeout: Duration,
    },
    /// A socket option could not be set on a connected socket.
    #[error("configuring the socket to {target}")]
    Socket {
        /// `host:port`.
        target: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// The upstream proxy could not be reached at all.
    #[error("cannot reach upstream {proxy}")]
    ProxyUnreachable {
        /// Which proxy.
        proxy: String,
        /// Why the dial to it failed.
        #[source]
        source: Box<DialError>,
    },
    /// Reading from or writing to the upstream proxy failed.
    #[error("upstream {proxy}: i/o error {during}")]
    ProxyIo {
        /// Which proxy.
        proxy: String,
        /// The handshake step.
        during: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The upstream proxy closed the connection before the handshake finished.
    #[error("upstream {proxy} closed the connection {during}")]
    ProxyClosed {
        /// Which proxy.
        proxy: String,
        /// The handshake step.
        during: &'static str,
    },
    /// The upstream proxy's reply is not valid for its protocol.
    #[error("upstream {proxy} sent a malformed reply {during}: {detail}")]
    ProxyProtocol {
        /// Which proxy.
        proxy: String,
        /// The handshake step.
        during: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The upstream proxy wants credentials we do not have, or refused the ones we sent.
    #[error("upstream {proxy}: authentication failed: {detail}")]
    ProxyAuth {
        /// Which proxy.
        proxy: String,
        /// The proxy's answer.
        detail: String,
    },
    /// The upstream proxy refused the request itself (not the destination): it does not support
    /// CONNECT, the command or the address type.
    #[error("upstream {proxy} refused the request: {detail}")]
    ProxyRefused {
        /// Which proxy.
        proxy: String,
        /// The proxy's answer.
        detail: String,
    },
    /// The upstream proxy went silent before the request for the destination was sent.
    #[error("upstream {proxy} timed out {during} after {timeout:?}")]
    ProxyTimeout {
        /// Which proxy.
        proxy: String,
        /// The handshake step.
        during: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The upstream proxy answered that it could not reach the destination, or that its rules
    /// forbid it (a proxy that only allows some ports).
    #[error("upstream {proxy} could not connect to {target}: {detail}")]
    TargetFailed {
        /// Which proxy.
        proxy: String,
        /// `host:port`.
        target: String,
        /// The proxy's answer.
        detail: String,
    },
    /// The upstream proxy did not answer the request for the destination in time: the proxy is
    /// most likely waiting on a silent destination.
    #[error("upstream {proxy} did not answer the request for {target} within {timeout:?}")]
    TargetTimeout {
        /// Which proxy.
        proxy: String,
        /// `host:port`.
        target: String,
        /// The limit.
        timeout: Duration,
    },
    /// The destination cannot be expressed in this proxy protocol (an IPv6 address over
    /// SOCKS4a, a name longer than 255 bytes over SOCKS5, control characters).
    #[error("cannot ask upstream {proxy} for {target}: {reason}")]
    InvalidTarget {
        /// Which proxy.
        proxy: String,
        /// The destination as given, with control characters escaped.
        target: String,
        /// Why.
        reason: &'static str,
    },
    /// A state that should be impossible; a bug in this crate.
    #[error("internal error: {detail}")]
    Internal {
        /// What went wrong.
        detail: &'static str,
    },
}

impl DialError {
    /// Who is at fault.
    ///
    /// - [`ErrorKind::Blocked`]: the destination did not answer, refused or reset the
    ///   connection, or the upstream proxy reported it could not (or may not) reach it; on a
    ///   censored network this is what blocking looks like.
    /// - [`ErrorKind::Local`]: our own network: no route, the upstream proxy is unreachable,
    ///   broken or does not speak its protocol, or the destination cannot be put into the proxy
    ///   protocol.
    /// - [`ErrorKind::Config`]: the upstream proxy refused the credentials in the URL, or wants
    ///   some and the URL has none.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DialError::Resolve { .. }
            | DialError::NoAddress { .. }
            | DialError::ConnectTimeout { .. }
            | DialError::TargetFailed { .. }
            | DialError::TargetTimeout { .. } => ErrorKind::Blocked,
            DialError::Connect { source, .. } => connect_error_kind(source),
            DialError::ProxyAuth { .. } => ErrorKind::Config,
            DialError::Socket { .. }
            | DialError::ProxyUnreachable { .. }
            | DialError::ProxyIo { .. }
            | DialError::ProxyClosed { .. }
            | DialError::ProxyProtocol { .. }
            | DialError::ProxyRefused { .. }
            | DialError::ProxyTimeout { .. }
            | DialError::InvalidTarget { .. } => ErrorKind::Local,
            DialError::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// True when the upstream proxy itself failed: unreachable, refused our credentials,
    /// closed, went silent or answered nonsense during its own handshake, or does not support
    /// the request. The client reports these as tunnel-core's `UpstreamProxyError` notice,
    /// since only the user can fix them.
    ///
    /// False when the proxy worked and reported that the destination is unreachable or
    /// forbidden (those are [`ErrorKind::Blocked`], like a direct dial that fails), and for
    /// errors of direct dials.
    pub fn is_upstream_proxy_error(&self) -> bool {
        matches!(
            self,
            DialError::ProxyUnreachable { .. }
                | DialError::ProxyIo { .. }
                | DialError::ProxyClosed { .. }
                | DialError::ProxyProtocol { .. }
                | DialError::ProxyAuth { .. }
                | DialError::ProxyRefused { .. }
                | DialError::ProxyTimeout { .. }
        )
    }

    /// This error and its sources, joined with `": "`: the text for a notice.
    pub fn full_message(&self) -> String {
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// Socket errors that mean our own host or network is at fault; the rest happen on the path
/// or at the destination.
fn connect_error_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown
        | io::ErrorKind::AddrNotAvailable
        | io::ErrorKind::AddrInUse
        | io::ErrorKind::PermissionDenied
        | io::ErrorKind::Unsupported
        | io::ErrorKind::InvalidInput
        | io::ErrorKind::OutOfMemory => ErrorKind::Local,
        _ => ErrorKind::Blocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> String {
        "http proxy 127.0.0.1:8080".to_owned()
    }

    #[test]
    fn proxy_failures_are_upstream_proxy_errors_and_target_failures_are_not() {
        let unreachable = DialError::ProxyUnreachable {
            proxy: proxy(),
            source: Box::new(DialError::Connect {
                target: "127.0.0.1:8080".to_owned(),
                source: io::Error::from(io::ErrorKind::ConnectionRefused),
            }),
        };
        assert!(unreachable.is_upstream_proxy_error());
        assert_eq!(unreachable.kind(), ErrorKind::Local);
        assert!(
            unreachable
                .full_message()
                .starts_with("cannot reach upstream http proxy 127.0.0.1:8080: TCP connect to"),
            "{}",
            unreachable.full_message()
        );

        let auth = DialError::ProxyAuth {
            proxy: proxy(),
            detail: "407".to_owned(),
        };
        assert!(auth.is_upstream_proxy_error());
        assert_eq!(auth.kind(), ErrorKind::Config);

        let target = DialError::TargetFailed {
            proxy: proxy(),
            target: "192.0.2.1:22".to_owned(),
            detail: "502 Bad Gateway".to_owned(),
        };
        assert!(!target.is_upstream_proxy_error());
        assert_eq!(target.kind(), ErrorKind::Blocked);

        let timeout = DialError::TargetTimeout {
            proxy: proxy(),
            target: "192.0.2.1:22".to_owned(),
            timeout: Duration::from_secs(1),
        };
        assert!(!timeout.is_upstream_proxy_error());
        assert_eq!(timeout.kind(), ErrorKind::Blocked);
    }

    #[test]
    fn direct_connect_errors_split_local_from_path() {
        let refused = DialError::Connect {
            target: "192.0.2.1:22".to_owned(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(refused.kind(), ErrorKind::Blocked);
        assert!(!refused.is_upstream_proxy_error());
        let no_route = DialError::Connect {
            target: "192.0.2.1:22".to_owned(),
            source: io::Error::from(io::ErrorKind::NetworkUnreachable),
        };
        assert_eq!(no_route.kind(), ErrorKind::Local);
    }
}
