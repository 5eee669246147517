//! The local proxies apps point at: SOCKS4/4a/5 ([`SocksProxy`]) and HTTP ([`HttpProxy`]).
//!
//! The proxies know nothing of SSH: every connection they make goes through a [`Dialer`], which
//! the tunnel implements by opening a `direct-tcpip` channel (and tests implement with plain
//! TCP). The protocol parsing is sans-IO ([`socks`], [`http`]); the servers are thin tokio
//! loops around it.

pub mod http;
mod http_server;
pub mod socks;
mod socks_server;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::notice::Notices;

pub use http_server::HttpProxy;
pub use psiphon_protocol::ErrorKind;
pub use socks_server::SocksProxy;

/// Relay buffer per direction: 64 KiB moves bulk data with a quarter of the wake-ups of
/// tokio's default 8 KiB (measured with `scripts/bench-client.sh`); a client has few forwards.
pub(crate) const RELAY_BUFFER: usize = 64 * 1024;

/// A byte stream both ways; blanket-implemented for every `AsyncRead + AsyncWrite`.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite + ?Sized> AsyncReadWrite for T {}

/// A tunneled connection, as a [`Dialer`] returns it.
pub type ProxyStream = Box<dyn AsyncReadWrite + Unpin + Send>;

/// What [`Dialer::dial`] returns.
pub type DialFuture = Pin<Box<dyn Future<Output = Result<ProxyStream, DialError>> + Send>>;

/// Opens tunneled connections for the proxies.
pub trait Dialer: Send + Sync + 'static {
    /// Opens a tunneled connection to `host:port`. `host` may be a domain name (the server
    /// resolves it), an IPv4 address, or an IPv6 address without brackets.
    fn dial(&self, host: String, port: u16) -> DialFuture;
}

/// Why a [`Dialer`] could not connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The server (or the channel) refused the connection: SOCKS "connection refused".
    #[error("connection refused: {0}")]
    Refused(String),
    /// No tunnel is available, or the connection failed: SOCKS "general failure", HTTP 502.
    #[error("no tunnel available: {0}")]
    Unavailable(String),
    /// The dial timed out: SOCKS "general failure", HTTP 504.
    #[error("timed out: {0}")]
    TimedOut(String),
}

/// Errors of the local proxies.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The configured port is taken (the `*ProxyPortInUse` notice was emitted).
    #[error("{proxy} proxy: {addr} is already in use")]
    PortInUse {
        /// `"SOCKS"` or `"HTTP"`.
        proxy: &'static str,
        /// The address we tried to listen on.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: io::Error,
    },
    /// Binding the listener failed for another reason.
    #[error("{proxy} proxy: cannot listen on {addr}")]
    Bind {
        /// `"SOCKS"` or `"HTTP"`.
        proxy: &'static str,
        /// The address we tried to listen on.
        addr: SocketAddr,
        /// The bind error.
        #[source]
        source: io::Error,
    },
    /// Accepting a client failed in a way that stops the proxy.
    #[error("{proxy} proxy: accept failed")]
    Accept {
        /// `"SOCKS"` or `"HTTP"`.
        proxy: &'static str,
        /// The accept error.
        #[source]
        source: io::Error,
    },
}

impl ProxyError {
    /// Who is at fault: a taken port is the configuration's, the rest this machine's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::PortInUse { .. } => ErrorKind::Config,
            ProxyError::Bind { .. } | ProxyError::Accept { .. } => ErrorKind::Local,
        }
    }
}

/// How many clients one proxy serves at once; further clients wait in the accept queue.
pub const MAX_CLIENTS: usize = 4096;

/// A proxy's shutdown switch: [`Shutdown::trigger`] stops its accept loop and closes every
/// client connection it serves.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A switch not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Stops every proxy run with this switch.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once [`Shutdown::trigger`] has been called.
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // Errors only if the sender is gone, which `self` prevents.
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Binds a proxy listener, emitting the port-in-use notice when appropriate.
/// Binds a proxy's listener and reports it: `listening` with the real port (port 0 lets the OS
/// pick), or `in_use` and an error when the port is taken.
async fn bind_listener(
    proxy: &'static str,
    addr: SocketAddr,
    notices: &Notices,
    in_use: fn(&Notices, u16),
    listening: fn(&Notices, u16),
) -> Result<(TcpListener, SocketAddr), ProxyError> {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(source) if source.kind() == io::ErrorKind::AddrInUse => {
            in_use(notices, addr.port());
            return Err(ProxyError::PortInUse {
                proxy,
                addr,
                source,
            });
        }
        Err(source) => {
            return Err(ProxyError::Bind {
                proxy,
                addr,
                source,
            });
        }
    };
    let local = listener.local_addr().map_err(|source| ProxyError::Bind {
        proxy,
        addr,
        source,
    })?;
    listening(notices, local.port());
    Ok((listener, local))
}

/// The accept loop shared by both proxies: a semaphore before accept, TCP_NODELAY, one task
/// per client owned by a `JoinSet` (so they all end with the loop).
async fn accept_loop<F, Fut>(
    proxy: &'static str,
    listener: TcpListener,
    notices: Notices,
    shutdown: Shutdown,
    serve: F,
) -> Result<(), ProxyError>
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut tasks = JoinSet::new();
    let stop = shutdown.triggered();
    tokio::pin!(stop);
    loop {
        // Reap finished clients so the set stays small.
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut stop => return Ok(()),
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => return Ok(()),
            },
        };
        let accepted = tokio::select! {
            _ = &mut stop => return Ok(()),
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_transient_accept_error(&e) => {
                notices.local_proxy_error(proxy, &format!("accept: {e}"));
                // Back off briefly (e.g. out of file descriptors) instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(source) => return Err(ProxyError::Accept { proxy, source }),
        };
        let _ = stream.set_nodelay(true);
        let fut = serve(stream);
        let notices = notices.clone();
        tasks.spawn(async move {
            if let Err(message) = fut.await {
                notices.local_proxy_error(proxy, &message);
            }
            drop(permit);
        });
    }
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    !matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn shutdown_resolves_after_trigger() {
        let s = Shutdown::new();
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.triggered().await });
        s.trigger();
        waiter.await.unwrap();
        // Already triggered: resolves at once.
        s.triggered().await;
    }
}
