//! A channel as a tokio byte stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Shared, TX_HIGH_WATER};
use crate::channel::ChannelId;
use crate::session::ChannelRead;

/// An open SSH channel: read what the peer sends, write to the peer. Reading is what grants
/// the peer more window, so a channel nobody reads stalls only itself. `shutdown` sends EOF;
/// dropping closes the channel.
#[derive(Debug)]
pub struct Channel {
    shared: Arc<Shared>,
    id: ChannelId,
}

impl Channel {
    pub(super) fn new(shared: Arc<Shared>, id: ChannelId) -> Self {
        Channel { shared, id }
    }

    /// Our id for this channel.
    pub fn id(&self) -> ChannelId {
        self.id
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "ssh connection closed")
}

impl AsyncRead for Channel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        let dst = buf.initialize_unfilled();
        match inner.session.channel_read(this.id, dst) {
            Ok(ChannelRead::Data(n)) => {
                buf.advance(n);
                this.shared.after(&mut inner);
                Poll::Ready(Ok(()))
            }
            Ok(ChannelRead::Eof) => {
                this.shared.after(&mut inner);
                Poll::Ready(Ok(()))
            }
            Ok(ChannelRead::Pending) => {
                if inner.closed.is_some() {
                    return Poll::Ready(Err(closed()));
                }
                inner.read_wakers.insert(this.id, cx.waker().clone());
                this.shared.after(&mut inner);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut inner = this.shared.lock();
        if inner.closed.is_some() {
            return Poll::Ready(Err(closed()));
        }
        if inner.session.pending_transmit() >= TX_HIGH_WATER {
            inner.tx_wakers.push(cx.waker().clone());
            this.shared.writer.notify_one();
            return Poll::Pending;
        }
        match inner.session.channel_write(this.id, data) {
            Ok(0) if !data.is_empty() => {
                inner.write_wakers.insert(this.id, cx.waker().clone());
                Poll::Pending
            }
            Ok(n) => {
                this.shared.after(&mut inner);
                Poll::Ready(Ok(n))
            }
            Err(_) => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.shared.with(|s| s.channel_eof(this.id));
        Poll::Ready(r.map_err(io::Error::other))
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let id = self.id;
        let _ = self.shared.with(|s| s.channel_close(id));
        let mut inner = self.shared.lock();
        inner.read_wakers.remove(&id);
        inner.write_wakers.remove(&id);
    }
}

/// Closes a channel whose open was abandoned before the answer came.
pub(super) struct OpenGuard {
    shared: Arc<Shared>,
    id: ChannelId,
    armed: bool,
}

impl OpenGuard {
    pub(super) fn new(shared: Arc<Shared>, id: ChannelId) -> Self {
        OpenGuard {
            shared,
            id,
            armed: true,
        }
    }

    pub(super) fn into_channel(mut self) -> Channel {
        self.armed = false;
        Channel::new(Arc::clone(&self.shared), self.id)
    }

    pub(super) fn forget(mut self) {
        self.armed = false;
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.armed {
            let id = self.id;
            let _ = self.shared.with(|s| s.channel_close(id));
            self.shared.lock().open_waiters.remove(&id);
        }
    }
}
