//! Byte-level activity of a tunnel's underlying stream, for liveness: when the client has sent
//! something after the last byte it received, and nothing has arrived for a while, the server
//! is likely gone (a blackholed server looks exactly like this: our writes, then silence), and
//! the controller probes at once instead of waiting for the next periodic keepalive.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the stream last moved bytes each way: an event counter orders reads and writes
/// exactly (two can fall in the same millisecond), a clock measures the quiet.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    events: AtomicU64,
    last_read_event: AtomicU64,
    last_write_event: AtomicU64,
    last_read_ms: AtomicU64,
}

impl Activity {
    /// A fresh record.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            origin: Instant::now(),
            events: AtomicU64::new(0),
            last_read_event: AtomicU64::new(0),
            last_write_event: AtomicU64::new(0),
            last_read_ms: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn read(&self) {
        let e = self.events.fetch_add(1, Ordering::Relaxed) + 1;
        self.last_read_event.store(e, Ordering::Relaxed);
        self.last_read_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn wrote(&self) {
        let e = self.events.fetch_add(1, Ordering::Relaxed) + 1;
        self.last_write_event.store(e, Ordering::Relaxed);
    }

    /// Whether the client wrote after the last read, and nothing has been read for `quiet`.
    pub fn stalled(&self, quiet: Duration) -> bool {
        let read = self.last_read_event.load(Ordering::Relaxed);
        let write = self.last_write_event.load(Ordering::Relaxed);
        let quiet_ms = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX);
        let since_read = self
            .now_ms()
            .saturating_sub(self.last_read_ms.load(Ordering::Relaxed));
        write > read && since_read >= quiet_ms
    }
}

/// A stream that records its activity.
#[derive(Debug)]
pub struct ActivityIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> ActivityIo<S> {
    /// Wraps `inner`, recording into `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        ActivityIo { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_then_silence_is_a_stall_and_an_answer_clears_it() {
        let (a, mut b) = tokio::io::duplex(1024);
        let act = Activity::new();
        let mut s = ActivityIo::new(a, act.clone());
        assert!(!act.stalled(Duration::ZERO), "nothing happened yet");
        s.write_all(b"ping").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(act.stalled(Duration::ZERO));
        assert!(
            !act.stalled(Duration::from_secs(3600)),
            "not quiet long enough"
        );
        b.write_all(b"pong").await.unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            !act.stalled(Duration::ZERO),
            "the last byte came after our write"
        );
    }
}
