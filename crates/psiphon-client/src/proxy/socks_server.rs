//! The local SOCKS proxy: a tokio accept loop around [`super::socks::SocksHandshake`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::socks::{Action, Host, SocksHandshake, reply};
use super::{DialError, Dialer, ProxyError, Shutdown, accept_loop, bind_listener};
use crate::notice::Notices;

/// How long a client may take to finish the SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most handshake bytes buffered before the request is complete.
const MAX_HANDSHAKE_BYTES: usize = 1024;

/// The local SOCKS4/4a/5 proxy.
pub struct SocksProxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    dialer: Arc<dyn Dialer>,
    notices: Notices,
}

impl std::fmt::Debug for SocksProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocksProxy")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl SocksProxy {
    /// Listens on `listen` (port 0: the OS picks one) and emits `ListeningSocksProxyPort`
    /// with the real port, or `SocksProxyPortInUse` and an error.
    pub async fn bind(
        listen: SocketAddr,
        dialer: Arc<dyn Dialer>,
        notices: Notices,
    ) -> Result<SocksProxy, ProxyError> {
        let (listener, local_addr) = bind_listener(
            "SOCKS",
            listen,
            &notices,
            Notices::socks_proxy_port_in_use,
            Notices::listening_socks_proxy_port,
        )
        .await?;
        Ok(SocksProxy {
            listener,
            local_addr,
            dialer,
            notices,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves clients until `shutdown` is triggered; then every client connection is closed.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ProxyError> {
        let dialer = self.dialer;
        accept_loop(
            "SOCKS",
            self.listener,
            self.notices,
            shutdown,
            move |stream| serve_client(stream, Arc::clone(&dialer)),
        )
        .await
    }
}

/// Serves one SOCKS client: handshake, dial, reply, relay.
async fn serve_client(mut client: TcpStream, dialer: Arc<dyn Dialer>) -> Result<(), String> {
    let handshake = async {
        let mut hs = SocksHandshake::new();
        let mut buf: Vec<u8> = Vec::with_capacity(64);
        let mut chunk = [0u8; 512];
        loop {
            let (used, action) = hs.advance(&buf);
            buf.drain(..used.min(buf.len()));
            match action {
                Action::NeedMore => {
                    if buf.len() >= MAX_HANDSHAKE_BYTES {
                        return Err("SOCKS handshake too long".to_owned());
                    }
                    let n = client
                        .read(&mut chunk)
                        .await
                        .map_err(|e| format!("SOCKS handshake read: {e}"))?;
                    if n == 0 {
                        return Err("SOCKS client closed during handshake".to_owned());
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
                Action::Write(bytes) => client
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("SOCKS handshake write: {e}"))?,
                Action::Refuse(bytes, err) => {
                    if !bytes.is_empty() {
                        let _ = client.write_all(&bytes).await;
                    }
                    return Err(format!("SOCKS request refused: {err}"));
                }
                Action::Connect(req) => return Ok((req, buf)),
            }
        }
    };
    let (req, early) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "SOCKS handshake timed out".to_owned())??;
    let host = match &req.host {
        Host::Ip(ip) => ip.to_string(),
        Host::Domain(d) => d.clone(),
    };
    let mut upstream = match dialer.dial(host, req.port).await {
        Ok(s) => s,
        Err(e) => {
            let refused = matches!(e, DialError::Refused(_));
            let _ = client.write_all(&reply(req.version, false, refused)).await;
            return Err(format!("SOCKS dial failed: {e}"));
        }
    };
    client
        .write_all(&reply(req.version, true, false))
        .await
        .map_err(|e| format!("SOCKS reply write: {e}"))?;
    // Bytes the client sent right after its request (optimistic data) go first.
    if !early.is_empty() {
        upstream
            .write_all(&early)
            .await
            .map_err(|e| format!("SOCKS relay: {e}"))?;
    }
    // A reset mid-transfer is the client's or the site's business, not a proxy error.
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        super::RELAY_BUFFER,
        super::RELAY_BUFFER,
    )
    .await;
    Ok(())
}
