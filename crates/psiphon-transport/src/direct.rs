//! Direct TCP: the dialer used when there is no upstream proxy, and to reach the proxy itself.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::{BoxIo, DialError, NetDialer};

/// Plain TCP to `host:port`, with `TCP_NODELAY` on.
///
/// A name is resolved with the system resolver and its addresses are tried in order; the
/// timeout covers resolution and every attempt.
#[derive(Debug, Clone)]
pub struct Direct {
    /// Give up after this long.
    pub connect_timeout: Duration,
}

impl Direct {
    /// A direct dialer that gives up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Direct {
        Direct { connect_timeout }
    }

    async fn dial(&self, host: &str, port: u16) -> Result<BoxIo, DialError> {
        let host = crate::unbracket(host);
        let target = crate::target_string(host, port);
        let stream = tokio::time::timeout(self.connect_timeout, connect(host, port, &target))
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

async fn connect(host: &str, port: u16, target: &str) -> Result<TcpStream, DialError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return TcpStream::connect((ip, port))
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
    for addr in addrs {
        match TcpStream::connect(addr).await {
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
