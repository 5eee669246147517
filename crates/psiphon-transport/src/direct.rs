//! Direct TCP: the dialer used when there is no upstream proxy, and to reach the proxy itself.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use crate::{BoxIo, DialError, NetDialer};

/// Plain TCP to `host:port`, with `TCP_NODELAY` on.
///
/// A name is resolved with the system resolver and its addresses are tried in order; the
/// timeout covers resolution and every attempt. With a local address, every connection is
/// made from it (a multi-homed host choosing its way out), and addresses of the other family
/// are skipped.
#[derive(Debug, Clone)]
pub struct Direct {
    /// Give up after this long.
    pub connect_timeout: Duration,
    /// Bind each connection to this local address (port chosen by the system).
    pub local_address: Option<IpAddr>,
}

impl Direct {
    /// A direct dialer that gives up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Direct {
        Direct {
            connect_timeout,
            local_address: None,
        }
    }

    /// Makes every connection from `local` instead of the address the routing table picks.
    #[must_use]
    pub fn with_local_address(mut self, local: IpAddr) -> Direct {
        self.local_address = Some(local);
        self
    }

    async fn dial(&self, host: &str, port: u16) -> Result<BoxIo, DialError> {
        let host = crate::unbracket(host);
        let target = crate::target_string(host, port);
        let connect = connect(host, port, &target, self.local_address);
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| DialError::ConnectTimeout {
                target: target.clone(),
                timeout: self.connect_timeout,
            })??;
        stream
            .set_nodelay(true)
            .map_err(|source| DialError::Socket { target, source })?;
        Ok(Box::new(stream))
    }
}

/// One TCP connection to `addr`, from `local` when given.
async fn connect_one(addr: SocketAddr, local: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr).await;
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(addr).await
}

async fn connect(
    host: &str,
    port: u16,
    target: &str,
    local: Option<IpAddr>,
) -> Result<TcpStream, DialError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return connect_one(SocketAddr::new(ip, port), local)
            .await
            .map_err(|source| DialError::Connect {
                target: target.to_owned(),
                source,
            });
    }
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| DialError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    let mut last = None;
    // With a local address, only targets of its family can be reached from it.
    let reachable = |a: &SocketAddr| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4());
    for addr in addrs.filter(reachable) {
        match connect_one(addr, local).await {
            Ok(s) => return Ok(s),
            Err(source) => last = Some(source),
        }
    }
    Err(match last {
        Some(source) => DialError::Connect {
            target: target.to_owned(),
            source,
        },
        None => DialError::NoAddress {
            host: host.to_owned(),
        },
    })
}

impl NetDialer for Direct {
    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>> {
        Box::pin(self.dial(host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connects_by_ip_and_by_name_and_reports_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                s.write_all(b"hi").await.unwrap();
            }
        });
        let d = Direct::new(Duration::from_secs(5));
        for host in ["127.0.0.1", "localhost"] {
            let mut s = d.connect(host, port).await.unwrap();
            let mut got = [0u8; 2];
            s.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hi");
        }
        server.await.unwrap();

        // the listener is gone: the port is closed
        let err = d.connect("127.0.0.1", port).await.err().unwrap();
        assert!(matches!(err, DialError::Connect { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Blocked);
        assert!(!err.is_upstream_proxy_error());
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
    }

    #[tokio::test]
    async fn a_local_address_is_the_source_of_every_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let local: IpAddr = "127.61.62.63".parse().unwrap();
        let d = Direct::new(Duration::from_secs(5)).with_local_address(local);
        for host in ["127.0.0.1", "localhost"] {
            let (dialed, accepted) = tokio::join!(d.connect(host, port), listener.accept());
            dialed.unwrap();
            assert_eq!(accepted.unwrap().1.ip(), local, "dialing {host}");
        }
        // An IPv6 literal cannot be reached from an IPv4 source: an error naming the target.
        let err = d.connect("::1", port).await.err().unwrap();
        assert!(err.to_string().contains(&format!("[::1]:{port}")), "{err}");
    }

    #[tokio::test]
    async fn ipv6_literal_targets_are_bracketed_in_messages() {
        let d = Direct::new(Duration::from_secs(5));
        // port 1 on ::1 is closed, or IPv6 is unavailable: either way it fails, naming [::1]:1
        for host in ["::1", "[::1]"] {
            let err = d.connect(host, 1).await.err().unwrap();
            assert!(matches!(err, DialError::Connect { .. }), "{err:?}");
            assert!(err.to_string().contains("[::1]:1"), "{err}");
        }
    }
}
