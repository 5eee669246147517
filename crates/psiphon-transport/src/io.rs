//! The stream type dialers hand out, and a wrapper that replays bytes read too early.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A TCP-like byte stream: what a [`NetDialer`](crate::NetDialer) returns.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + ?Sized> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// A stream that first yields bytes that were already read from `inner` (bytes a proxy sent
/// right after its reply, in the same segment), then reads `inner`.
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: BoxIo,
}

impl Prefixed {
    /// `inner`, or `inner` behind `prefix` when there is one.
    pub(crate) fn wrap(prefix: Vec<u8>, inner: BoxIo) -> BoxIo {
        if prefix.is_empty() {
            inner
        } else {
            Box::new(Prefixed {
                prefix,
                pos: 0,
                inner,
            })
        }
    }
}

impl std::fmt::Debug for Prefixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixed")
            .field("buffered", &self.prefix.len().saturating_sub(self.pos))
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rest = this.prefix.get(this.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        this.pos += n;
        if this.pos >= this.prefix.len() {
            this.prefix = Vec::new();
            this.pos = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn prefix_comes_first_then_the_stream_both_ways() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Prefixed::wrap(b"early".to_vec(), Box::new(a));
        b.write_all(b" later").await.unwrap();
        let mut got = [0u8; 3];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ear");
        let mut got = [0u8; 8];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ly later");
        s.write_all(b"up").await.unwrap();
        let mut got = [0u8; 2];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"up");
    }
}
