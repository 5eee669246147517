//! The connection protocol (RFC 4254) as run by a [`Session`]: channels with windows granted
//! as the application reads, and global requests answered in order.

use super::{ChannelRead, Event, InboundRequest, Phase, RequestId, Session};
use crate::channel::{ChanState, Channel, ChannelId};
use crate::error::{Error, Result, sanitize};
use crate::msg;
use crate::wire::{Reader, WriteExt};

/// Our own cap on one data packet, whatever the peer allows (OpenSSH uses the same).
const OUR_MAX_DATA: usize = 32 * 1024;

impl Session {
    fn require_connected(&self) -> Result<()> {
        match self.phase {
            Phase::Connected => Ok(()),
            Phase::Closed => Err(Error::ConnectionClosed),
            _ => Err(Error::protocol("not authenticated yet")),
        }
    }

    fn alloc_channel_id(&mut self) -> Result<u32> {
        if self.channels.len() >= self.config.max_channels {
            return Err(Error::Config("too many channels".into()));
        }
        loop {
            let id = self.next_channel;
            self.next_channel = self.next_channel.wrapping_add(1);
            if !self.channels.contains_key(&id) {
                return Ok(id);
            }
        }
    }

    fn chan(&mut self, id: u32) -> Result<&mut Channel> {
        self.channels
            .get_mut(&id)
            .ok_or_else(|| Error::protocol(format!("unknown channel {id}")))
    }

    /// Opens a channel of type `kind` with type-specific `extra` data (e.g. a `direct-tcpip`
    /// target). Wait for [`Event::ChannelOpened`] or [`Event::ChannelOpenFailed`].
    pub fn open_channel(&mut self, kind: &str, extra: &[u8]) -> Result<ChannelId> {
        self.require_connected()?;
        let id = self.alloc_channel_id()?;
        let ch = Channel::new(
            ChanState::Opening,
            kind.to_owned(),
            self.config.channel_window,
            self.config.channel_max_packet,
        );
        let mut p = Vec::with_capacity(32 + kind.len() + extra.len());
        p.put_u8(msg::CHANNEL_OPEN);
        p.put_string(kind.as_bytes());
        p.put_u32(id);
        p.put_u32(ch.local_window);
        p.put_u32(ch.local_max_packet);
        p.extend_from_slice(extra);
        self.channels.insert(id, ch);
        self.send(p)?;
        Ok(ChannelId(id))
    }

    /// Accepts a channel the peer asked for.
    pub fn accept_channel(&mut self, id: ChannelId) -> Result<()> {
        let ch = self.chan(id.0)?;
        if ch.state != ChanState::AwaitingAccept {
            return Err(Error::Internal("accept of a channel not awaiting it"));
        }
        ch.state = ChanState::Open;
        let mut p = Vec::with_capacity(17);
        p.put_u8(msg::CHANNEL_OPEN_CONFIRMATION);
        p.put_u32(ch.remote_id);
        p.put_u32(id.0);
        p.put_u32(ch.local_window);
        p.put_u32(ch.local_max_packet);
        self.send(p)
    }

    /// Refuses a channel the peer asked for, with an RFC 4254 reason code.
    pub fn reject_channel(&mut self, id: ChannelId, reason: u32, description: &str) -> Result<()> {
        let ch = self.chan(id.0)?;
        if ch.state != ChanState::AwaitingAccept {
            return Err(Error::Internal("reject of a channel not awaiting it"));
        }
        let remote = ch.remote_id;
        self.channels.remove(&id.0);
        self.send_open_failure(remote, reason, description)
    }

    fn send_open_failure(&mut self, remote: u32, reason: u32, description: &str) -> Result<()> {
        let mut p = Vec::new();
        p.put_u8(msg::CHANNEL_OPEN_FAILURE);
        p.put_u32(remote);
        p.put_u32(reason);
        p.put_string(description.as_bytes());
        p.put_string(b"");
        self.send(p)
    }

    /// How many bytes `channel_write` would take now.
    pub fn channel_writable(&self, id: ChannelId) -> usize {
        match self.channels.get(&id.0) {
            Some(ch) if ch.state == ChanState::Open && !ch.eof_sent && !ch.close_sent => {
                if self.kex.sending_blocked() {
                    0
                } else {
                    ch.remote_window as usize
                }
            }
            _ => 0,
        }
    }

    /// Sends as much of `data` as the peer's window allows. Returns how many bytes went; 0
    /// means wait for [`Event::ChannelWritable`]. Errors if the channel is closed for writing.
    pub fn channel_write(&mut self, id: ChannelId, data: &[u8]) -> Result<usize> {
        self.require_connected()?;
        let kex_blocked = self.kex.sending_blocked();
        let ch = self
            .channels
            .get_mut(&id.0)
            .ok_or(Error::ConnectionClosed)?;
        if ch.eof_sent || ch.close_sent || ch.close_received {
            return Err(Error::ConnectionClosed);
        }
        if ch.state != ChanState::Open {
            return Err(Error::Internal("write to a channel that is not open"));
        }
        if kex_blocked || ch.remote_window == 0 {
            ch.write_blocked = true;
            return Ok(0);
        }
        let max_packet = (ch.remote_max_packet as usize).clamp(1, OUR_MAX_DATA);
        let total = data.len().min(ch.remote_window as usize);
        let remote = ch.remote_id;
        ch.remote_window -= u32::try_from(total).map_err(|_| Error::Internal("window"))?;
        for chunk in data[..total].chunks(max_packet) {
            let mut header = [0u8; 9];
            header[0] = msg::CHANNEL_DATA;
            header[1..5].copy_from_slice(&remote.to_be_bytes());
            let len = u32::try_from(chunk.len()).map_err(|_| Error::Internal("chunk"))?;
            header[5..9].copy_from_slice(&len.to_be_bytes());
            self.seal_parts(&[&header, chunk])?;
        }
        Ok(total)
    }

    /// Copies received data out. Reading is what grants the peer more window.
    pub fn channel_read(&mut self, id: ChannelId, out: &mut [u8]) -> Result<ChannelRead> {
        let Some(ch) = self.channels.get_mut(&id.0) else {
            return Ok(ChannelRead::Eof);
        };
        let n = ch.recv.read(out);
        if n == 0 {
            ch.read_notified = false;
            let ended = ch.eof_received || ch.close_received;
            if ch.finished() {
                self.channels.remove(&id.0);
                self.events.push_back(Event::ChannelClosed(id));
            }
            return Ok(if ended {
                ChannelRead::Eof
            } else {
                ChannelRead::Pending
            });
        }
        ch.consumed = ch
            .consumed
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if ch.state == ChanState::Open
            && !ch.close_sent
            && !ch.close_received
            && ch.consumed >= ch.local_window_max / 2
        {
            let grant = ch.consumed;
            ch.consumed = 0;
            ch.local_window = ch.local_window.saturating_add(grant);
            let mut p = Vec::with_capacity(9);
            p.put_u8(msg::CHANNEL_WINDOW_ADJUST);
            p.put_u32(ch.remote_id);
            p.put_u32(grant);
            self.send(p)?;
        }
        Ok(ChannelRead::Data(n))
    }

    /// The channel's type, e.g. `direct-tcpip`.
    pub fn channel_kind(&self, id: ChannelId) -> Option<&str> {
        self.channels.get(&id.0).map(|c| c.kind.as_str())
    }

    /// Bytes received on the channel and not read yet.
    pub fn channel_buffered(&self, id: ChannelId) -> usize {
        self.channels.get(&id.0).map_or(0, |c| c.recv.len())
    }

    /// Sends EOF: we will write no more.
    pub fn channel_eof(&mut self, id: ChannelId) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&id.0) else {
            return Ok(());
        };
        if ch.eof_sent || ch.close_sent || ch.state != ChanState::Open {
            return Ok(());
        }
        ch.eof_sent = true;
        let mut p = Vec::with_capacity(5);
        p.put_u8(msg::CHANNEL_EOF);
        p.put_u32(ch.remote_id);
        self.send(p)
    }

    /// Closes the channel; unread data is dropped.
    pub fn channel_close(&mut self, id: ChannelId) -> Result<()> {
        let Some(ch) = self.channels.get_mut(&id.0) else {
            return Ok(());
        };
        ch.recv.clear();
        match ch.state {
            ChanState::AwaitingAccept => {
                return self.reject_channel(id, msg::open_failure::CONNECT_FAILED, "");
            }
            // The close goes out once the open is confirmed (see on_open_confirmation).
            ChanState::Opening => {
                ch.close_pending = true;
                return Ok(());
            }
            ChanState::Open => {}
        }
        if !ch.close_sent {
            ch.close_sent = true;
            let mut p = Vec::with_capacity(5);
            p.put_u8(msg::CHANNEL_CLOSE);
            p.put_u32(ch.remote_id);
            self.send(p)?;
        }
        if ch_finished(self, id) {
            self.channels.remove(&id.0);
            self.events.push_back(Event::ChannelClosed(id));
        }
        Ok(())
    }

    /// Sends a global request. Returns the id its [`Event::GlobalReply`] will carry when
    /// `want_reply` is set.
    pub fn global_request(
        &mut self,
        name: &str,
        data: &[u8],
        want_reply: bool,
    ) -> Result<Option<RequestId>> {
        self.require_connected()?;
        let mut p = Vec::with_capacity(16 + name.len() + data.len());
        p.put_u8(msg::GLOBAL_REQUEST);
        p.put_string(name.as_bytes());
        p.put_bool(want_reply);
        p.extend_from_slice(data);
        self.send(p)?;
        if !want_reply {
            return Ok(None);
        }
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.outbound_requests.push_back(id);
        Ok(Some(id))
    }

    /// Answers an inbound global request. Replies go out in the order the requests came.
    pub fn reply_global_request(
        &mut self,
        id: RequestId,
        success: bool,
        data: &[u8],
    ) -> Result<()> {
        let Some(req) = self.inbound_requests.iter_mut().find(|r| r.id == id) else {
            return Err(Error::Internal("reply to an unknown request"));
        };
        req.reply = Some((success, data.to_vec()));
        self.flush_request_replies()
    }

    fn flush_request_replies(&mut self) -> Result<()> {
        while let Some(front) = self.inbound_requests.front() {
            if front.reply.is_none() {
                break;
            }
            let Some(InboundRequest {
                reply: Some((ok, data)),
                ..
            }) = self.inbound_requests.pop_front()
            else {
                break;
            };
            let mut p = Vec::with_capacity(1 + data.len());
            p.put_u8(if ok {
                msg::REQUEST_SUCCESS
            } else {
                msg::REQUEST_FAILURE
            });
            if ok {
                p.extend_from_slice(&data);
            }
            self.send(p)?;
        }
        Ok(())
    }

    pub(super) fn wake_blocked_writers(&mut self) {
        for (id, ch) in &mut self.channels {
            if ch.write_blocked && ch.remote_window > 0 {
                ch.write_blocked = false;
                self.events
                    .push_back(Event::ChannelWritable(ChannelId(*id)));
            }
        }
    }

    fn notify_readable(&mut self, id: u32) {
        if let Some(ch) = self.channels.get_mut(&id)
            && !ch.read_notified
        {
            ch.read_notified = true;
            self.events.push_back(Event::ChannelReadable(ChannelId(id)));
        }
    }

    pub(super) fn on_connection_message(&mut self, kind: u8, payload: &[u8]) -> Result<()> {
        let mut r = Reader::new(&payload[1..]);
        match kind {
            msg::GLOBAL_REQUEST => {
                let name = r.utf8()?.to_owned();
                let want_reply = r.bool()?;
                let data = r.rest().to_vec();
                self.on_global_request(name, want_reply, data)
            }
            msg::REQUEST_SUCCESS | msg::REQUEST_FAILURE => {
                let id = self
                    .outbound_requests
                    .pop_front()
                    .ok_or_else(|| Error::protocol("reply to no global request"))?;
                let success = kind == msg::REQUEST_SUCCESS;
                let data = if success {
                    r.rest().to_vec()
                } else {
                    Vec::new()
                };
                self.events
                    .push_back(Event::GlobalReply { id, success, data });
                Ok(())
            }
            msg::CHANNEL_OPEN => self.on_channel_open(&mut r),
            msg::CHANNEL_OPEN_CONFIRMATION => self.on_open_confirmation(&mut r),
            msg::CHANNEL_OPEN_FAILURE => {
                let id = r.u32()?;
                let reason = r.u32()?;
                let description = sanitize(r.string().unwrap_or(b""));
                let ch = self.chan(id)?;
                if ch.state != ChanState::Opening {
                    return Err(Error::protocol("open failure for an open channel"));
                }
                let wanted = !ch.close_pending;
                self.channels.remove(&id);
                if wanted {
                    self.events.push_back(Event::ChannelOpenFailed {
                        id: ChannelId(id),
                        reason,
                        description,
                    });
                }
                Ok(())
            }
            msg::CHANNEL_WINDOW_ADJUST => {
                let id = r.u32()?;
                let add = r.u32()?;
                let ch = self.chan(id)?;
                // Saturate rather than fail: some peers send (2^32 - 1) windows.
                ch.remote_window = ch.remote_window.saturating_add(add);
                if ch.write_blocked && !self.kex.sending_blocked() {
                    let ch = self.chan(id)?;
                    ch.write_blocked = false;
                    self.events.push_back(Event::ChannelWritable(ChannelId(id)));
                }
                Ok(())
            }
            msg::CHANNEL_DATA | msg::CHANNEL_EXTENDED_DATA => {
                let id = r.u32()?;
                if kind == msg::CHANNEL_EXTENDED_DATA {
                    let _code = r.u32()?;
                }
                let data = r.string()?;
                let ch = self.chan(id)?;
                if ch.state != ChanState::Open || ch.eof_received || ch.close_received {
                    return Err(Error::protocol("data on a channel that is not open"));
                }
                let len = u32::try_from(data.len()).map_err(|_| Error::protocol("data length"))?;
                if len > ch.local_window || len > ch.local_max_packet {
                    return Err(Error::protocol("peer exceeded the channel window"));
                }
                ch.local_window -= len;
                if kind == msg::CHANNEL_EXTENDED_DATA || ch.close_sent {
                    // Nobody reads stderr-style data on a tunnel, or data after our close:
                    // count it as consumed so the window does not shrink.
                    ch.consumed = ch.consumed.saturating_add(len);
                    return Ok(());
                }
                ch.recv.push(data);
                self.notify_readable(id);
                Ok(())
            }
            msg::CHANNEL_EOF => {
                let id = r.u32()?;
                self.chan(id)?.eof_received = true;
                self.notify_readable(id);
                Ok(())
            }
            msg::CHANNEL_CLOSE => {
                let id = r.u32()?;
                let ch = self.chan(id)?;
                if ch.close_received {
                    return Err(Error::protocol("channel closed twice"));
                }
                ch.close_received = true;
                let remote = ch.remote_id;
                if !ch.close_sent {
                    ch.close_sent = true;
                    let mut p = Vec::with_capacity(5);
                    p.put_u8(msg::CHANNEL_CLOSE);
                    p.put_u32(remote);
                    self.send(p)?;
                }
                if ch_finished(self, ChannelId(id)) {
                    self.channels.remove(&id);
                    self.events.push_back(Event::ChannelClosed(ChannelId(id)));
                } else {
                    self.notify_readable(id);
                }
                // A writer blocked on this channel must learn it is gone.
                if let Some(ch) = self.channels.get_mut(&id)
                    && ch.write_blocked
                {
                    ch.write_blocked = false;
                    self.events.push_back(Event::ChannelWritable(ChannelId(id)));
                }
                Ok(())
            }
            msg::CHANNEL_REQUEST => {
                let id = r.u32()?;
                let _name = r.string()?;
                let want_reply = r.bool()?;
                let remote = self.chan(id)?.remote_id;
                if want_reply {
                    let mut p = Vec::with_capacity(5);
                    p.put_u8(msg::CHANNEL_FAILURE);
                    p.put_u32(remote);
                    self.send(p)?;
                }
                Ok(())
            }
            // We send no channel requests, so these answer nothing of ours.
            msg::CHANNEL_SUCCESS | msg::CHANNEL_FAILURE => Ok(()),
            _ => Err(Error::Internal("connection message range")),
        }
    }

    fn on_global_request(&mut self, name: String, want_reply: bool, data: Vec<u8>) -> Result<()> {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        if name == msg::KEEPALIVE {
            if want_reply {
                let reply = if self.config.keepalive_reply_padding {
                    let mut len = [0u8; 1];
                    aws_lc_rs::rand::fill(&mut len).map_err(|_| Error::Crypto("rng"))?;
                    let mut pad = vec![0u8; usize::from(len[0])];
                    aws_lc_rs::rand::fill(&mut pad).map_err(|_| Error::Crypto("rng"))?;
                    (true, pad)
                } else {
                    (false, Vec::new())
                };
                self.inbound_requests.push_back(InboundRequest {
                    id,
                    reply: Some(reply),
                });
                self.flush_request_replies()?;
            }
            return Ok(());
        }
        if want_reply {
            let full = self.inbound_requests.len() >= self.config.max_pending_requests;
            // When too many are pending, this one is refused, still in its turn.
            let reply = if full {
                Some((false, Vec::new()))
            } else {
                None
            };
            self.inbound_requests
                .push_back(InboundRequest { id, reply });
            if full {
                return self.flush_request_replies();
            }
        }
        self.events.push_back(Event::GlobalRequest {
            id,
            name,
            want_reply,
            data,
        });
        Ok(())
    }

    fn on_channel_open(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let kind = r.utf8()?.to_owned();
        let remote = r.u32()?;
        let window = r.u32()?;
        let max_packet = r.u32()?;
        let extra = r.rest().to_vec();
        let id = match self.alloc_channel_id() {
            Ok(id) => id,
            Err(_) => {
                return self.send_open_failure(
                    remote,
                    msg::open_failure::RESOURCE_SHORTAGE,
                    "too many channels",
                );
            }
        };
        let mut ch = Channel::new(
            ChanState::AwaitingAccept,
            kind.clone(),
            self.config.channel_window,
            self.config.channel_max_packet,
        );
        ch.remote_id = remote;
        ch.remote_window = window;
        ch.remote_max_packet = max_packet;
        self.channels.insert(id, ch);
        self.events.push_back(Event::ChannelOpenRequest {
            id: ChannelId(id),
            kind,
            extra,
        });
        Ok(())
    }

    fn on_open_confirmation(&mut self, r: &mut Reader<'_>) -> Result<()> {
        let id = r.u32()?;
        let remote = r.u32()?;
        let window = r.u32()?;
        let max_packet = r.u32()?;
        let extra = r.rest().to_vec();
        let ch = self.chan(id)?;
        if ch.state != ChanState::Opening {
            return Err(Error::protocol("confirmation for a channel not opening"));
        }
        ch.state = ChanState::Open;
        ch.remote_id = remote;
        ch.remote_window = window;
        ch.remote_max_packet = max_packet;
        if ch.close_pending {
            // The application gave up while the open was in flight.
            ch.close_pending = false;
            ch.close_sent = true;
            let mut p = Vec::with_capacity(5);
            p.put_u8(msg::CHANNEL_CLOSE);
            p.put_u32(remote);
            return self.send(p);
        }
        self.events.push_back(Event::ChannelOpened {
            id: ChannelId(id),
            extra,
        });
        Ok(())
    }
}

fn ch_finished(s: &Session, id: ChannelId) -> bool {
    s.channels.get(&id.0).is_some_and(Channel::finished)
}
