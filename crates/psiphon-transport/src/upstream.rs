//! Dialing through the user's upstream proxy (`UpstreamProxyURL`): HTTP CONNECT, SOCKS4a,
//! SOCKS5. The protocol cores are sans-IO; [`UpstreamProxy`] pumps their bytes.

mod handshake;
mod http_connect;
mod socks4a;
mod socks5;
mod url;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument as _;
use zeroize::Zeroizing;

pub use self::url::{Credentials, ProxyScheme, UpstreamProxyUrl};
use crate::io::Prefixed;
use crate::{BoxIo, ConfigError, DialError, NetDialer};
use handshake::{Handshake, HandshakeError, Progress};

/// A [`NetDialer`] that reaches every destination through an upstream proxy.
///
/// The proxy itself is reached with `inner` (normally [`Direct`](crate::Direct)). The proxy
/// resolves names: a destination name is passed to it as is (SOCKS4a, SOCKS5 address type 3,
/// the CONNECT authority).
#[derive(Debug)]
pub struct UpstreamProxy {
    url: UpstreamProxyUrl,
    name: String,
    custom_headers: Vec<(String, String)>,
    inner: Arc<dyn NetDialer>,
    handshake_timeout: Duration,
}

impl UpstreamProxy {
    /// How long the proxy handshake may take, from the proxy's TCP connection to the tunnel
    /// being open, unless set with [`UpstreamProxy::with_handshake_timeout`].
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

    /// A dialer through the proxy at `url`, reached with `inner`.
    pub fn new(url: UpstreamProxyUrl, inner: Arc<dyn NetDialer>) -> UpstreamProxy {
        UpstreamProxy {
            name: url.describe(),
            url,
            custom_headers: Vec::new(),
            inner,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Headers added to every HTTP CONNECT request, in order (tunnel-core's `CustomHeaders`;
    /// a header with several values is several pairs). A `Host` entry replaces the request's
    /// `Host` header; only the first `User-Agent` is sent; `Content-Length`,
    /// `Transfer-Encoding` and `Trailer` are left out, as Go's request writer does; a
    /// `Proxy-Authorization` entry is replaced by Basic credentials when the URL has some.
    /// SOCKS proxies ignore them. Fails on a name that is not an HTTP token or a value with a
    /// line break.
    pub fn with_custom_headers(
        mut self,
        headers: Vec<(String, String)>,
    ) -> Result<UpstreamProxy, ConfigError> {
        check_custom_headers(&headers)?;
        self.custom_headers = headers;
        Ok(self)
    }

    /// Sets the limit on the proxy handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> UpstreamProxy {
        self.handshake_timeout = timeout;
        self
    }

    /// The proxy's URL (its `Display` hides the credentials).
    pub fn url(&self) -> &UpstreamProxyUrl {
        &self.url
    }

    async fn dial(&self, host: &str, port: u16) -> Result<BoxIo, DialError> {
        let host = crate::unbracket(host);
        let creds = self.url.credentials();
        let core: Result<Box<dyn Handshake>, HandshakeError> = match self.url.scheme() {
            ProxyScheme::Http => {
                http_connect::HttpConnect::new(host, port, &self.custom_headers, creds)
                    .map(|c| Box::new(c) as Box<dyn Handshake>)
            }
            ProxyScheme::Socks4a => {
                socks4a::Socks4a::new(host, port, creds.map_or("", Credentials::username))
                    .map(|c| Box::new(c) as Box<dyn Handshake>)
            }
            ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
                socks5::Socks5::new(host, port, creds).map(|c| Box::new(c) as Box<dyn Handshake>)
            }
        };
        let mut core = core.map_err(|e| self.handshake_error(e, "", host, port))?;

        let mut stream = self
            .inner
            .connect(self.url.host(), self.url.port())
            .await
            .map_err(|e| DialError::ProxyUnreachable {
                proxy: self.name.clone(),
                source: Box::new(e),
            })?;

        let result = tokio::time::timeout(
            self.handshake_timeout,
            self.exchange(&mut *core, &mut stream),
        )
        .await;
        match result {
            Ok(Ok(leftover)) => {
                tracing::debug!(proxy = %self.name, "upstream proxy tunnel open");
                Ok(Prefixed::wrap(leftover, stream))
            }
            Ok(Err(Failure::Handshake(e))) => Err(self.handshake_error(e, core.step(), host, port)),
            Ok(Err(Failure::Dial(e))) => Err(e),
            Err(_elapsed) if core.target_requested() => Err(DialError::TargetTimeout {
                proxy: self.name.clone(),
                target: crate::target_string(host, port),
                timeout: self.handshake_timeout,
            }),
            Err(_elapsed) => Err(DialError::ProxyTimeout {
                proxy: self.name.clone(),
                during: core.step(),
                timeout: self.handshake_timeout,
            }),
        }
    }

    /// Pumps bytes between `core` and the proxy until the tunnel is open; returns the bytes
    /// read past the handshake.
    async fn exchange(
        &self,
        core: &mut dyn Handshake,
        stream: &mut BoxIo,
    ) -> Result<Vec<u8>, Failure> {
        self.send(stream, core.start()).await?;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let progress = core.receive(&buf).map_err(Failure::Handshake)?;
            match progress {
                Progress::NeedMore { max } => {
                    let window = chunk.get_mut(..max.clamp(1, 4096)).ok_or_else(internal)?;
                    let n = stream.read(window).await.map_err(|source| {
                        Failure::Dial(DialError::ProxyIo {
                            proxy: self.name.clone(),
                            during: core.step(),
                            source,
                        })
                    })?;
                    if n == 0 {
                        return Err(Failure::Dial(DialError::ProxyClosed {
                            proxy: self.name.clone(),
                            during: core.step(),
                        }));
                    }
                    buf.extend_from_slice(window.get(..n).ok_or_else(internal)?);
                }
                Progress::Send { consumed, bytes } => {
                    buf = buf.get(consumed..).ok_or_else(internal)?.to_vec();
                    self.send(stream, bytes).await?;
                }
                Progress::Done { consumed } => {
                    return Ok(buf.get(consumed..).ok_or_else(internal)?.to_vec());
                }
            }
        }
    }

    async fn send(&self, stream: &mut BoxIo, bytes: Vec<u8>) -> Result<(), Failure> {
        // requests may hold credentials: wipe them once written
        let bytes = Zeroizing::new(bytes);
        let io_err = |source| {
            Failure::Dial(DialError::ProxyIo {
                proxy: self.name.clone(),
                during: "sending the handshake",
                source,
            })
        };
        stream.write_all(&bytes).await.map_err(io_err)?;
        stream.flush().await.map_err(io_err)
    }

    fn handshake_error(
        &self,
        e: HandshakeError,
        during: &'static str,
        host: &str,
        port: u16,
    ) -> DialError {
        let proxy = self.name.clone();
        match e {
            HandshakeError::Malformed(detail) => DialError::ProxyProtocol {
                proxy,
                during,
                detail,
            },
            HandshakeError::Auth(detail) => DialError::ProxyAuth { proxy, detail },
            HandshakeError::ProxyRefused(detail) => DialError::ProxyRefused { proxy, detail },
            HandshakeError::TargetFailed(detail) => DialError::TargetFailed {
                proxy,
                target: crate::target_string(host, port),
                detail,
            },
            HandshakeError::InvalidTarget(reason) => DialError::InvalidTarget {
                proxy,
                target: crate::target_string(&host.escape_debug().to_string(), port),
                reason,
            },
        }
    }
}

/// Checks `CustomHeaders` entries (name, value) once, at configuration time: names must be
/// HTTP tokens, values free of line breaks and control bytes. Errors name the header, never
/// its value.
pub fn check_custom_headers(headers: &[(String, String)]) -> Result<(), ConfigError> {
    for (name, value) in headers {
        http_connect::validate_header(name, value)?;
    }
    Ok(())
}

/// How [`UpstreamProxy::exchange`] stopped short.
enum Failure {
    /// The core refused the proxy's bytes.
    Handshake(HandshakeError),
    /// The stream failed.
    Dial(DialError),
}

fn internal() -> Failure {
    Failure::Dial(DialError::Internal {
        detail: "a handshake core consumed more bytes than it was given",
    })
}

impl NetDialer for UpstreamProxy {
    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>> {
        // one span per attempt; it names the proxy, never the credentials or the destination
        let span = tracing::debug_span!("upstream_proxy_dial", proxy = %self.name);
        Box::pin(
            async move {
                let result = self.dial(host, port).await;
                if let Err(e) = &result {
                    tracing::debug!(
                        kind = %e.kind(),
                        upstream_proxy_error = e.is_upstream_proxy_error(),
                        "upstream proxy dial failed"
                    );
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Hands out in-memory streams whose far end writes `script` one byte at a time, then
    /// answers "ping" with "pong"; counts the dials.
    #[derive(Debug, Default)]
    struct Scripted {
        script: Vec<u8>,
        dials: AtomicUsize,
        fail: bool,
    }

    impl NetDialer for Scripted {
        fn connect<'a>(
            &'a self,
            host: &'a str,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = Result<BoxIo, DialError>> + Send + 'a>> {
            self.dials.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if self.fail {
                    return Err(DialError::Connect {
                        target: crate::target_string(host, port),
                        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    });
                }
                let (near, mut far) = tokio::io::duplex(4096);
                let script = self.script.clone();
                tokio::spawn(async move {
                    for b in script {
                        far.write_all(&[b]).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    // the handshake bytes we were sent come first; answer "ping" after them
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 256];
                    while !seen.ends_with(b"ping") {
                        match far.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    far.write_all(b"pong").await.unwrap();
                });
                Ok(Box::new(near) as BoxIo)
            })
        }
    }

    fn proxy(url: &str, inner: Arc<Scripted>) -> UpstreamProxy {
        UpstreamProxy::new(UpstreamProxyUrl::parse(url).unwrap(), inner)
    }

    #[tokio::test]
    async fn byte_by_byte_replies_and_early_destination_bytes() {
        // SOCKS5: method, login, reply with a name as bound address, then the banner
        let mut script = vec![5, 2, 1, 0, 5, 0, 0, 3, 4];
        script.extend_from_slice(b"name\x00\x16SSH-2.0-x\r\n");
        let inner = Arc::new(Scripted {
            script,
            ..Scripted::default()
        });
        let d = proxy("socks5://u:p@10.0.0.1:1080", inner.clone());
        let mut s = d.connect("example.com", 22).await.unwrap();
        let mut banner = [0u8; 11];
        s.read_exact(&mut banner).await.unwrap();
        assert_eq!(&banner, b"SSH-2.0-x\r\n");
        // then the far end answers, proving the stream is the tunnel
        s.write_all(b"ping").await.unwrap();
        let mut pong = [0u8; 4];
        s.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"pong");
        assert_eq!(inner.dials.load(Ordering::SeqCst), 1);

        // HTTP: the banner arrives in the same bytes as the head
        let inner = Arc::new(Scripted {
            script: b"HTTP/1.1 200 OK\r\n\r\nSSH-2.0-x\r\n".to_vec(),
            ..Scripted::default()
        });
        let mut s = proxy("http://10.0.0.1:3128", inner)
            .connect("10.0.0.2", 22)
            .await
            .unwrap();
        s.read_exact(&mut banner).await.unwrap();
        assert_eq!(&banner, b"SSH-2.0-x\r\n");
    }

    #[tokio::test]
    async fn an_unexpressible_destination_fails_before_dialing() {
        let inner = Arc::new(Scripted::default());
        let e = proxy("socks4a://10.0.0.1:1080", inner.clone())
            .connect("2001:db8::1", 22)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, DialError::InvalidTarget { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "cannot ask upstream socks4a proxy 10.0.0.1:1080 for [2001:db8::1]:22: \
             SOCKS4a cannot carry an IPv6 address"
        );
        assert_eq!(inner.dials.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failed_dial_to_the_proxy_keeps_its_cause() {
        let inner = Arc::new(Scripted {
            fail: true,
            ..Scripted::default()
        });
        let e = proxy("socks5://alice:secret@[2001:db8::5]", inner)
            .connect("example.com", 443)
            .await
            .err()
            .unwrap();
        assert!(e.is_upstream_proxy_error());
        let msg = e.full_message();
        assert!(
            msg.starts_with(
                "cannot reach upstream socks5 proxy [2001:db8::5]:1080: \
                 TCP connect to [2001:db8::5]:1080 failed: "
            ),
            "{msg}"
        );
        assert!(!msg.contains("alice") && !msg.contains("secret"), "{msg}");
    }
}
