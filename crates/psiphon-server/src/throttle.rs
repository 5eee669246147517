//! Rate limiting of a client's connection, as tunnel-core's throttled conn: reads (client to
//! server, upstream) and writes (server to client, downstream) each pass an unthrottled
//! allowance, then a token bucket of `rate` bytes per second holding at most one second of
//! tokens. The limits can be replaced while the connection runs (after the API handshake);
//! that resets the allowances and buckets, as tunnel-core does.
//!
//! [`Bucket`] is the sans-IO core (time passed in); [`Throttled`] the stream wrapper.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The limits of one connection (0 bytes per second = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes read before reads are throttled.
    pub read_unthrottled_bytes: u64,
    /// Read rate after the allowance.
    pub read_bytes_per_second: u64,
    /// Bytes written before writes are throttled.
    pub write_unthrottled_bytes: u64,
    /// Write rate after the allowance.
    pub write_bytes_per_second: u64,
    /// Close the connection when an allowance is used up instead of throttling.
    pub close_after_exhausted: bool,
}

/// The most bytes one throttled read or write moves: the bucket may go this far into debt.
const MAX_CHUNK: u64 = 64 * 1024;

/// What a bucket allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Up to this many bytes (`u64::MAX`: no limit).
    Bytes(u64),
    /// Nothing until this time.
    WaitUntil(Instant),
    /// The unthrottled allowance is used up and the connection is to be closed.
    Exhausted,
}

/// One direction's allowance and token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    unthrottled_left: u64,
    had_allowance: bool,
    close_after_exhausted: bool,
    rate: u64,
    /// Tokens at `base_time`, and bytes consumed since.
    base_time: Instant,
    base_tokens: i128,
    consumed: i128,
}

impl Bucket {
    /// A full bucket.
    pub fn new(unthrottled: u64, rate: u64, close_after_exhausted: bool, now: Instant) -> Bucket {
        Bucket {
            unthrottled_left: unthrottled,
            had_allowance: unthrottled > 0,
            close_after_exhausted,
            rate,
            base_time: now,
            base_tokens: i128::from(rate),
            consumed: 0,
        }
    }

    fn tokens(&mut self, now: Instant) -> i128 {
        let nanos = i128::try_from(now.saturating_duration_since(self.base_time).as_nanos())
            .unwrap_or(i128::MAX / 4);
        let rate = i128::from(self.rate);
        let earned = nanos.saturating_mul(rate) / 1_000_000_000;
        let tokens = self.base_tokens + earned - self.consumed;
        if tokens > rate {
            // Idle long enough to fill up: restart the accounting from a full bucket.
            self.base_time = now;
            self.base_tokens = rate;
            self.consumed = 0;
            return rate;
        }
        tokens
    }

    /// How many bytes may move now.
    pub fn allowance(&mut self, now: Instant) -> Allowance {
        if self.unthrottled_left > 0 {
            return Allowance::Bytes(self.unthrottled_left);
        }
        if self.close_after_exhausted && self.had_allowance {
            return Allowance::Exhausted;
        }
        if self.rate == 0 {
            return Allowance::Bytes(u64::MAX);
        }
        let tokens = self.tokens(now);
        if tokens > 0 {
            return Allowance::Bytes(MAX_CHUNK.min(self.rate));
        }
        // The time at which the bucket holds one token again.
        let rate = i128::from(self.rate);
        let needed = self.consumed - self.base_tokens + 1;
        let nanos = (needed.saturating_mul(1_000_000_000) + rate - 1) / rate;
        let wait = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        Allowance::WaitUntil(self.base_time + wait)
    }

    /// Records `n` bytes moved.
    pub fn consume(&mut self, n: u64, now: Instant) {
        let free = n.min(self.unthrottled_left);
        self.unthrottled_left -= free;
        let throttled = n - free;
        if throttled > 0 && self.rate > 0 {
            // Bring the accounting up to date first, so idle time is capped.
            let _ = self.tokens(now);
            self.consumed += i128::from(throttled);
        }
    }
}

#[derive(Debug)]
struct Buckets {
    read: Bucket,
    write: Bucket,
}

impl Buckets {
    fn new(limits: Limits, now: Instant) -> Buckets {
        Buckets {
            read: Bucket::new(
                limits.read_unthrottled_bytes,
                limits.read_bytes_per_second,
                limits.close_after_exhausted,
                now,
            ),
            write: Bucket::new(
                limits.write_unthrottled_bytes,
                limits.write_bytes_per_second,
                limits.close_after_exhausted,
                now,
            ),
        }
    }
}

/// The limits of one client connection, shared by its stream and its tunnel.
#[derive(Debug)]
pub struct Throttle {
    buckets: Mutex<Buckets>,
}

impl Throttle {
    /// Starts with `limits`.
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            buckets: Mutex::new(Buckets::new(limits, Instant::now())),
        }
    }

    /// Replaces the limits; allowances and buckets start afresh.
    pub fn set_limits(&self, limits: Limits) {
        *self.lock() = Buckets::new(limits, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A stream whose reads and writes pass a [`Throttle`].
pub struct Throttled<S> {
    inner: S,
    throttle: Arc<Throttle>,
    read_wait: Option<Pin<Box<Sleep>>>,
    write_wait: Option<Pin<Box<Sleep>>>,
}

impl<S> std::fmt::Debug for Throttled<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttled")
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

impl<S> Throttled<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, throttle: Arc<Throttle>) -> Throttled<S> {
        Throttled {
            inner,
            throttle,
            read_wait: None,
            write_wait: None,
        }
    }
}

fn exhausted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "unthrottled allowance exhausted",
    )
}

/// Waits out `wait`, then asks `allowance` until it allows some bytes.
fn poll_allowance(
    cx: &mut Context<'_>,
    wait: &mut Option<Pin<Box<Sleep>>>,
    mut allowance: impl FnMut() -> Allowance,
) -> Poll<io::Result<u64>> {
    loop {
        if let Some(sleep) = wait {
            ready!(sleep.as_mut().poll(cx));
            *wait = None;
        }
        match allowance() {
            Allowance::Bytes(n) => return Poll::Ready(Ok(n)),
            Allowance::Exhausted => return Poll::Ready(Err(exhausted())),
            Allowance::WaitUntil(t) => {
                *wait = Some(Box::pin(tokio::time::sleep_until(t.into())));
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Throttled<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let throttle = Arc::clone(&this.throttle);
        let allowed = ready!(poll_allowance(cx, &mut this.read_wait, || {
            throttle.lock().read.allowance(Instant::now())
        }))?;
        let limit = usize::try_from(allowed).unwrap_or(usize::MAX);
        let n = if limit >= buf.remaining() {
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            buf.filled().len().saturating_sub(before)
        } else {
            let mut sub = ReadBuf::new(buf.initialize_unfilled_to(limit));
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut sub))?;
            let n = sub.filled().len();
            buf.advance(n);
            n
        };
        this.throttle
            .lock()
            .read
            .consume(u64::try_from(n).unwrap_or(u64::MAX), Instant::now());
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Throttled<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let throttle = Arc::clone(&this.throttle);
        let allowed = ready!(poll_allowance(cx, &mut this.write_wait, || {
            throttle.lock().write.allowance(Instant::now())
        }))?;
        let limit = usize::try_from(allowed)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..limit]))?;
        this.throttle
            .lock()
            .write
            .consume(u64::try_from(n).unwrap_or(u64::MAX), Instant::now());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_then_rate_with_one_second_of_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100, 1000, false, t0);
        assert_eq!(b.allowance(t0), Allowance::Bytes(100));
        b.consume(100, t0);
        // A full bucket: one second's worth may go now, in chunks.
        assert_eq!(b.allowance(t0), Allowance::Bytes(1000));
        b.consume(1000, t0);
        let Allowance::WaitUntil(at) = b.allowance(t0) else {
            panic!("should wait");
        };
        assert_eq!(at, t0 + Duration::from_millis(1));
        // Half a second later, 500 tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.allowance(t1), Allowance::Bytes(1000));
        b.consume(700, t1);
        let Allowance::WaitUntil(at) = b.allowance(t1) else {
            panic!("should wait");
        };
        assert_eq!(at, t0 + Duration::from_millis(701));
        // Idle for long: capped at one second's worth again.
        let t2 = t0 + Duration::from_secs(60);
        b.consume(1000, t2);
        assert!(matches!(b.allowance(t2), Allowance::WaitUntil(_)));
    }

    #[test]
    fn over_time_the_rate_holds() {
        // 10 s of greedy consumption at 1000 B/s moves at most 11000 bytes plus one chunk.
        let t0 = Instant::now();
        let mut b = Bucket::new(0, 1000, false, t0);
        let mut now = t0;
        let mut moved = 0;
        while now < t0 + Duration::from_secs(10) {
            match b.allowance(now) {
                Allowance::Bytes(n) => {
                    b.consume(n, now);
                    moved += n;
                }
                Allowance::WaitUntil(t) => now = t,
                Allowance::Exhausted => panic!(),
            }
        }
        assert!((10_000..=12_000).contains(&moved), "{moved}");
    }

    #[test]
    fn no_rate_is_unlimited_and_close_after_exhausted() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0, 0, false, t0);
        assert_eq!(b.allowance(t0), Allowance::Bytes(u64::MAX));
        let mut b = Bucket::new(10, 1000, true, t0);
        b.consume(4, t0);
        assert_eq!(b.allowance(t0), Allowance::Bytes(6));
        b.consume(6, t0);
        assert_eq!(b.allowance(t0), Allowance::Exhausted);
        // Without an allowance, close_after_exhausted never closes: it throttles.
        let mut b = Bucket::new(0, 1000, true, t0);
        assert_eq!(b.allowance(t0), Allowance::Bytes(1000));
    }
}
