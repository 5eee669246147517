//! Per-channel state: windows, the receive buffer, EOF/close flags.

use std::collections::VecDeque;

/// A channel's identifier on our side (the "local" or "recipient" channel number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub u32);

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ch{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChanState {
    /// We sent CHANNEL_OPEN and await confirmation.
    Opening,
    /// The peer asked to open; the application has not decided yet.
    AwaitingAccept,
    /// Open in both directions (possibly half-closed by EOF or close flags).
    Open,
}

/// Received bytes not yet read by the application, as a queue of chunks.
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    chunks: VecDeque<Vec<u8>>,
    head_offset: usize,
    len: usize,
}

impl RecvBuf {
    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_back(data.to_vec());
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies up to `out.len()` bytes out, returning how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let avail = &front[self.head_offset..];
            let take = avail.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&avail[..take]);
            n += take;
            self.head_offset += take;
            if self.head_offset == front.len() {
                self.chunks.pop_front();
                self.head_offset = 0;
            }
        }
        self.len -= n;
        n
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.head_offset = 0;
        self.len = 0;
    }
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub state: ChanState,
    pub kind: String,
    /// The peer's number for this channel (valid once open or when the peer opened it).
    pub remote_id: u32,
    /// How many more bytes the peer may send us.
    pub local_window: u32,
    /// The window we advertise and refill to.
    pub local_window_max: u32,
    pub local_max_packet: u32,
    /// Bytes the application consumed that we have not granted back yet.
    pub consumed: u32,
    /// How many more bytes we may send.
    pub remote_window: u32,
    pub remote_max_packet: u32,
    pub recv: RecvBuf,
    pub eof_received: bool,
    pub eof_sent: bool,
    pub close_received: bool,
    pub close_sent: bool,
    /// The application closed the channel before the peer confirmed the open.
    pub close_pending: bool,
    /// The application tried to write and found no window; tell it when there is some.
    pub write_blocked: bool,
    /// A readable event is outstanding (avoids one event per packet).
    pub read_notified: bool,
}

impl Channel {
    pub(crate) fn new(state: ChanState, kind: String, window: u32, max_packet: u32) -> Self {
        Channel {
            state,
            kind,
            remote_id: 0,
            local_window: window,
            local_window_max: window,
            local_max_packet: max_packet,
            consumed: 0,
            remote_window: 0,
            remote_max_packet: 0,
            recv: RecvBuf::default(),
            eof_received: false,
            eof_sent: false,
            close_received: false,
            close_sent: false,
            close_pending: false,
            write_blocked: false,
            read_notified: false,
        }
    }

    /// Whether the channel can be forgotten: closed both ways and nothing left to read.
    pub(crate) fn finished(&self) -> bool {
        self.close_received && self.close_sent && self.recv.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recvbuf_reads_across_chunks() {
        let mut b = RecvBuf::default();
        b.push(b"hello ");
        b.push(b"world");
        let mut out = [0u8; 4];
        assert_eq!(b.read(&mut out), 4);
        assert_eq!(&out, b"hell");
        let mut out = [0u8; 32];
        assert_eq!(b.read(&mut out), 7);
        assert_eq!(&out[..7], b"o world");
        assert!(b.is_empty());
        assert_eq!(b.read(&mut out), 0);
    }
}
