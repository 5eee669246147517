//! The tokio adaptor: an obfuscated SSH transport over any `AsyncRead + AsyncWrite`.

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use crate::acceptor::{AcceptStep, Acceptor};
use crate::config::{ClientConfig, ServerConfig};
use crate::error::{Error, Result, Step};
use crate::session::Session;

/// Size of the buffer used to read the inner transport while obfuscation is on.
const READ_CHUNK: usize = 16 * 1024;

/// An SSH transport with Psiphon's obfuscation applied: hand it to the SSH stack as its socket.
///
/// Writes are accepted whole and may be held in an internal buffer until the inner transport
/// takes them; call `flush` (SSH stacks do after each packet) to push them out. Errors from
/// `AsyncRead`/`AsyncWrite` carry this crate's [`Error`] while obfuscation is on; get it back
/// with [`Error::from_io`].
#[derive(Debug)]
pub struct ObfuscatedStream<S> {
    inner: S,
    session: Session,
    /// Wire bytes produced by the session and not yet written.
    outgoing: Vec<u8>,
    written: usize,
    /// Bytes for the SSH stack not yet read.
    incoming: Vec<u8>,
    delivered: usize,
    scratch: Box<[u8]>,
}

impl<S> ObfuscatedStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// A client over `stream`. Lazy like tunnel-core: the preamble goes out with the first
    /// write; call [`send_preamble`](Self::send_preamble) to send it now.
    ///
    /// # Errors
    /// [`Error::Internal`] if the system random source fails.
    pub fn client(stream: S, config: &ClientConfig) -> Result<Self> {
        Ok(Self::from_session(stream, Session::client(config)?))
    }

    /// Wraps a prepared session (for example one made with [`Session::client_with_seed`]).
    pub fn from_session(stream: S, session: Session) -> Self {
        Self {
            inner: stream,
            session,
            outgoing: Vec::new(),
            written: 0,
            incoming: Vec::new(),
            delivered: 0,
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Server: validates the client's preamble within the configured handshake timeout.
    ///
    /// On any failure nothing is ever written: the connection is read and discarded until the
    /// client closes it or the deadline passes, then dropped, and the error returned says why.
    ///
    /// # Errors
    /// [`Error::Probe`] or [`Error::ReplayedSeed`] for a rejected first flight (after the
    /// discard), [`Error::HandshakeTimeout`] if the preamble was still incomplete at the
    /// deadline, [`Error::Io`] if reading failed.
    pub async fn accept(stream: S, config: &ServerConfig) -> Result<Self> {
        Self::accept_from(stream, config, None).await
    }

    /// [`accept`](Self::accept) with the peer's address, which the seed history keeps for two
    /// minutes to tell retries from replays.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub async fn accept_from(
        mut stream: S,
        config: &ServerConfig,
        peer: Option<IpAddr>,
    ) -> Result<Self> {
        let timeout = config.handshake_timeout();
        let deadline = Instant::now() + timeout;
        let mut acceptor = Acceptor::new(config, peer);
        let mut buf = vec![0u8; READ_CHUNK];
        let rejection = loop {
            let n = match timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_elapsed) => {
                    return Err(Error::HandshakeTimeout {
                        timeout,
                        step: acceptor.step(),
                    });
                }
                Ok(Err(err)) => return Err(Error::io(acceptor.step(), err)),
                Ok(Ok(0)) => return Err(acceptor.eof()),
                Ok(Ok(n)) => n,
            };
            let input = buf.get(..n).unwrap_or_default();
            match acceptor.feed(input, Instant::now().into_std()) {
                AcceptStep::NeedMore => {}
                AcceptStep::Accepted { session, leftover } => {
                    let mut this = Self::from_session(stream, session);
                    this.session.decode(&leftover, &mut this.incoming)?;
                    return Ok(this);
                }
                AcceptStep::Rejected(err) => break err,
            }
        };
        // Anti-probing: say nothing, swallow everything, hang up only at the deadline.
        loop {
            match timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
        debug!(error = %rejection, "closing rejected OSSH connection");
        Err(rejection)
    }

    /// Puts the client preamble (or the server's first flight) on the wire now and flushes.
    ///
    /// # Errors
    /// [`Error::Io`] if writing fails.
    pub async fn send_preamble(&mut self) -> Result<()> {
        self.session.start(&mut self.outgoing);
        self.flush()
            .await
            .map_err(|err| Error::io(Step::Flush, err))
    }

    /// The obfuscation state, for metrics and derived PRNGs.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The inner transport.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Writes out everything in `outgoing`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.outgoing.get(self.written..).filter(|p| !p.is_empty()) {
            let n = match ready!(Pin::new(&mut self.inner).poll_write(cx, pending)) {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "inner transport accepted no bytes",
                    )));
                }
                Ok(n) => n,
                Err(err) => return Poll::Ready(Err(Error::io(Step::Write, err).into())),
            };
            self.written = self.written.saturating_add(n);
        }
        self.outgoing.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncRead for ObfuscatedStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(ready) = this
                .incoming
                .get(this.delivered..)
                .filter(|r| !r.is_empty())
            {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(ready.get(..n).unwrap_or_default());
                this.delivered = this.delivered.saturating_add(n);
                return Poll::Ready(Ok(()));
            }
            this.incoming.clear();
            this.delivered = 0;
            if this.session.read_is_raw() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = ReadBuf::new(&mut this.scratch);
            if let Err(err) = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk)) {
                return Poll::Ready(Err(Error::io(Step::KexPacket, err).into()));
            }
            let filled = chunk.filled();
            if filled.is_empty() {
                return Poll::Ready(match this.session.eof_error() {
                    Some(err) => Err(err.into()),
                    None => Ok(()),
                });
            }
            this.session.decode(filled, &mut this.incoming)?;
        }
    }
}

impl<S> AsyncWrite for ObfuscatedStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.session.write_is_raw() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.session.encode(buf, &mut this.outgoing)?;
        // The bytes are ours now; push what the transport takes and keep the rest for later.
        if let Poll::Ready(Err(err)) = this.poll_drain(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
