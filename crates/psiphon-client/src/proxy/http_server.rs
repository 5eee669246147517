//! The local HTTP proxy: `CONNECT` tunnels and absolute-URI requests, a tokio loop around
//! [`super::http`].
//!
//! Each forwarded request gets its own tunneled connection, sent with `Connection: close`;
//! the response is relayed by its framing (length, chunked, or until close), so the client
//! connection stays open for its next request unless the client or a close-delimited response
//! ends it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::http::{
    Body, ChunkedScanner, Forward, HttpError, ProxyRequest, classify, error_response,
    parse_request_head, parse_response_head, response_body, rewrite_response_head,
};
use super::{DialError, Dialer, ProxyError, ProxyStream, Shutdown, accept_loop, bind_listener};
use crate::notice::Notices;

/// How long a client may take to send a request head (and how long an idle kept-alive
/// connection is kept).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the origin may take to start its response (tunnel-core's origin timeout is 15 s
/// for the connection; a slow origin gets this long to answer).
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(120);

const READ_CHUNK: usize = 16 * 1024;

/// The local HTTP proxy.
pub struct HttpProxy {
    listener: TcpListener,
    local_addr: SocketAddr,
    dialer: Arc<dyn Dialer>,
    notices: Notices,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl HttpProxy {
    /// Listens on `listen` (port 0: the OS picks one) and emits `ListeningHttpProxyPort`
    /// with the real port, or `HttpProxyPortInUse` and an error.
    pub async fn bind(
        listen: SocketAddr,
        dialer: Arc<dyn Dialer>,
        notices: Notices,
    ) -> Result<HttpProxy, ProxyError> {
        let (listener, local_addr) = bind_listener(
            "HTTP",
            listen,
            &notices,
            Notices::http_proxy_port_in_use,
            Notices::listening_http_proxy_port,
        )
        .await?;
        Ok(HttpProxy {
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
            "HTTP",
            self.listener,
            self.notices,
            shutdown,
            move |stream| serve_client(stream, Arc::clone(&dialer)),
        )
        .await
    }
}

/// A head parser from [`super::http`].
type HeadParser<T> = fn(&[u8]) -> Result<Option<(T, usize)>, HttpError>;

/// Reads into `buf` until `parse` finds a complete head; `Ok(None)` on a clean EOF before any
/// byte.
async fn read_head<R, T>(
    src: &mut R,
    buf: &mut Vec<u8>,
    parse: HeadParser<T>,
) -> Result<Option<T>, ReadHeadError>
where
    R: AsyncRead + Unpin,
{
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if !buf.is_empty() {
            match parse(buf) {
                Ok(Some((head, n))) => {
                    buf.drain(..n.min(buf.len()));
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(e) => return Err(ReadHeadError::Http(e)),
            }
        }
        let n = src
            .read(&mut chunk)
            .await
            .map_err(|e| ReadHeadError::Io(e.to_string()))?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ReadHeadError::Io("connection closed mid-head".into()))
            };
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

enum ReadHeadError {
    Http(HttpError),
    Io(String),
}

/// Copies one body framed as `body` from `buf` (bytes already read) then `src` to `dst`.
/// Bytes after the body stay in `buf`.
async fn relay_body<R, W>(
    body: Body,
    buf: &mut Vec<u8>,
    src: &mut R,
    dst: &mut W,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; READ_CHUNK];
    match body {
        Body::None => Ok(()),
        Body::Fixed(mut left) => {
            while left > 0 {
                if buf.is_empty() {
                    let want = usize::try_from(left).unwrap_or(READ_CHUNK).min(READ_CHUNK);
                    let n = src
                        .read(chunk.get_mut(..want).unwrap_or_default())
                        .await
                        .map_err(|e| format!("body read: {e}"))?;
                    if n == 0 {
                        return Err("body truncated".into());
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                dst.write_all(buf.get(..take).unwrap_or_default())
                    .await
                    .map_err(|e| format!("body write: {e}"))?;
                buf.drain(..take);
                left -= u64::try_from(take).unwrap_or(left);
            }
            Ok(())
        }
        Body::Chunked => {
            let mut scanner = ChunkedScanner::new();
            loop {
                if !buf.is_empty() {
                    let n = scanner.feed(buf).map_err(|e| e.to_string())?;
                    dst.write_all(buf.get(..n).unwrap_or_default())
                        .await
                        .map_err(|e| format!("body write: {e}"))?;
                    buf.drain(..n.min(buf.len()));
                }
                if scanner.is_done() {
                    return Ok(());
                }
                let n = src
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("body read: {e}"))?;
                if n == 0 {
                    return Err("chunked body truncated".into());
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        }
        Body::UntilClose => {
            dst.write_all(buf)
                .await
                .map_err(|e| format!("body write: {e}"))?;
            buf.clear();
            tokio::io::copy(src, dst)
                .await
                .map_err(|e| format!("body relay: {e}"))?;
            Ok(())
        }
    }
}

fn dial_error_response(e: &DialError) -> Vec<u8> {
    match e {
        DialError::TimedOut(_) => error_response(504, "Gateway Timeout", "tunnel dial timed out"),
        // The server's reason ("dial failed", "destination not allowed", ...): never an
        // address, so safe to show.
        DialError::Refused(why) => error_response(
            502,
            "Bad Gateway",
            &format!("the tunnel server refused the connection: {why}"),
        ),
        _ => error_response(502, "Bad Gateway", "no tunnel available"),
    }
}

/// Serves one HTTP proxy client: requests in sequence until either side closes.
async fn serve_client(mut client: TcpStream, dialer: Arc<dyn Dialer>) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let head = match tokio::time::timeout(
            REQUEST_HEAD_TIMEOUT,
            read_head(&mut client, &mut buf, parse_request_head),
        )
        .await
        {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(head))) => head,
            Ok(Err(ReadHeadError::Io(e))) => return Err(format!("HTTP request read: {e}")),
            Ok(Err(ReadHeadError::Http(e))) => {
                let _ = client
                    .write_all(&error_response(400, "Bad Request", &e.to_string()))
                    .await;
                return Err(format!("HTTP request refused: {e}"));
            }
        };
        let request = match classify(&head) {
            Ok(r) => r,
            Err(e) => {
                let _ = client
                    .write_all(&error_response(400, "Bad Request", &e.to_string()))
                    .await;
                return Err(format!("HTTP request refused: {e}"));
            }
        };
        match request {
            ProxyRequest::Connect { host, port } => {
                let mut upstream = match dialer.dial(host, port).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = client.write_all(&dial_error_response(&e)).await;
                        return Err(format!("HTTP CONNECT dial failed: {e}"));
                    }
                };
                client
                    .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
                    .await
                    .map_err(|e| format!("HTTP CONNECT reply: {e}"))?;
                if !buf.is_empty() {
                    upstream
                        .write_all(&buf)
                        .await
                        .map_err(|e| format!("HTTP CONNECT relay: {e}"))?;
                }
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    super::RELAY_BUFFER,
                    super::RELAY_BUFFER,
                )
                .await;
                return Ok(());
            }
            ProxyRequest::Forward(fwd) => {
                let keep_going = forward(&mut client, &mut buf, fwd, &*dialer).await?;
                if !keep_going {
                    let _ = client.shutdown().await;
                    return Ok(());
                }
            }
        }
    }
}

/// Forwards one absolute-URI request and relays its response; returns whether the client
/// connection can carry another request.
async fn forward(
    client: &mut TcpStream,
    buf: &mut Vec<u8>,
    fwd: Forward,
    dialer: &dyn Dialer,
) -> Result<bool, String> {
    let mut upstream: ProxyStream = match dialer.dial(fwd.host, fwd.port).await {
        Ok(s) => s,
        Err(e) => {
            let _ = client.write_all(&dial_error_response(&e)).await;
            return Err(format!("HTTP dial failed: {e}"));
        }
    };
    upstream
        .write_all(&fwd.head)
        .await
        .map_err(|e| format!("HTTP request write: {e}"))?;
    if fwd.expect_continue && fwd.body != Body::None {
        client
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| format!("HTTP 100 write: {e}"))?;
    }
    relay_body(fwd.body, buf, client, &mut upstream).await?;
    upstream
        .flush()
        .await
        .map_err(|e| format!("HTTP request flush: {e}"))?;

    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let head = match tokio::time::timeout(
            RESPONSE_HEAD_TIMEOUT,
            read_head(&mut upstream, &mut rbuf, parse_response_head),
        )
        .await
        {
            Err(_) => {
                let _ = client
                    .write_all(&error_response(
                        504,
                        "Gateway Timeout",
                        "origin did not answer",
                    ))
                    .await;
                return Err("HTTP origin timed out".into());
            }
            Ok(Ok(Some(h))) => h,
            Ok(Ok(None)) | Ok(Err(ReadHeadError::Io(_))) => {
                let _ = client
                    .write_all(&error_response(
                        502,
                        "Bad Gateway",
                        "origin closed the connection",
                    ))
                    .await;
                return Err("HTTP origin closed without a response".into());
            }
            Ok(Err(ReadHeadError::Http(e))) => {
                let _ = client
                    .write_all(&error_response(
                        502,
                        "Bad Gateway",
                        "malformed response from origin",
                    ))
                    .await;
                return Err(format!("HTTP origin response: {e}"));
            }
        };
        if head.status == 101 {
            // We strip Upgrade, so this is unexpected; relay it as a raw tunnel.
            client
                .write_all(&rewrite_response_head(&head, false))
                .await
                .map_err(|e| format!("HTTP response write: {e}"))?;
            client
                .write_all(&rbuf)
                .await
                .map_err(|e| format!("HTTP response write: {e}"))?;
            let _ = tokio::io::copy_bidirectional_with_sizes(
                client,
                &mut upstream,
                super::RELAY_BUFFER,
                super::RELAY_BUFFER,
            )
            .await;
            return Ok(false);
        }
        if head.status < 200 {
            // An interim response (100, 103): pass it on and wait for the final one.
            client
                .write_all(&rewrite_response_head(&head, false))
                .await
                .map_err(|e| format!("HTTP response write: {e}"))?;
            continue;
        }
        let body = match response_body(&head, fwd.is_head) {
            Ok(b) => b,
            Err(e) => {
                let _ = client
                    .write_all(&error_response(
                        502,
                        "Bad Gateway",
                        "malformed response from origin",
                    ))
                    .await;
                return Err(format!("HTTP origin response: {e}"));
            }
        };
        let keep_alive = fwd.keep_alive && body != Body::UntilClose;
        client
            .write_all(&rewrite_response_head(&head, !keep_alive))
            .await
            .map_err(|e| format!("HTTP response write: {e}"))?;
        relay_body(body, &mut rbuf, &mut upstream, client).await?;
        client
            .flush()
            .await
            .map_err(|e| format!("HTTP response flush: {e}"))?;
        return Ok(keep_alive);
    }
}
