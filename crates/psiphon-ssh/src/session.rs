//! The sans-IO SSH session: bytes in, events and bytes out, time passed in.
//!
//! [`Session`] holds the whole state of one SSH connection, client or server: version
//! exchange, key exchange and rekeying, authentication, and the connection protocol. It never
//! touches a socket or a clock. A driver feeds it received bytes with [`Session::feed`], takes
//! the bytes to send with [`Session::take_transmit`], reacts to [`Event`]s, and calls
//! [`Session::handle_timeout`] when [`Session::poll_timeout`] says so.

mod connection;
mod kexing;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::channel::{Channel, ChannelId};
use crate::cipher::{Opener, Sealer};
use crate::config::{ClientAuth, ClientConfig, Config, PasswordCheck, ServerConfig};
use crate::error::{Error, Result, sanitize};
use crate::keys::PublicKey;
use crate::msg;
use crate::wire::{Reader, WriteExt};

use kexing::KexState;

/// Identifies an inbound global request awaiting the application's reply, or an outbound one
/// awaiting the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// What happened, for the driver or application to act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The first key exchange finished; `host_key` is the server's key.
    HandshakeDone {
        /// The server's host key.
        host_key: PublicKey,
    },
    /// Authentication succeeded (client: we are in; server: the peer is).
    Authenticated {
        /// The user name.
        user: String,
    },
    /// The server sent a banner during authentication (sanitised, bounded).
    Banner(String),
    /// The peer wants to open a channel; answer with `accept_channel` or `reject_channel`.
    ChannelOpenRequest {
        /// Our id for the channel.
        id: ChannelId,
        /// The channel type, e.g. `direct-tcpip`.
        kind: String,
        /// The type-specific data after the standard fields.
        extra: Vec<u8>,
    },
    /// A channel we asked for is open.
    ChannelOpened {
        /// The channel.
        id: ChannelId,
        /// Type-specific data in the confirmation.
        extra: Vec<u8>,
    },
    /// A channel we asked for was refused; the id is gone.
    ChannelOpenFailed {
        /// The channel.
        id: ChannelId,
        /// The RFC 4254 reason code.
        reason: u32,
        /// The peer's description (sanitised).
        description: String,
    },
    /// The channel has data, EOF or a close to read.
    ChannelReadable(ChannelId),
    /// The channel can take more data.
    ChannelWritable(ChannelId),
    /// Both sides have closed the channel and it has nothing left to read.
    ChannelClosed(ChannelId),
    /// The peer sent a global request. If `want_reply`, answer with `reply_global_request`.
    GlobalRequest {
        /// Our id for the reply.
        id: RequestId,
        /// The request name.
        name: String,
        /// Whether the peer waits for a reply.
        want_reply: bool,
        /// Request-specific data.
        data: Vec<u8>,
    },
    /// The peer answered one of our global requests.
    GlobalReply {
        /// The id `global_request` returned.
        id: RequestId,
        /// Success or failure.
        success: bool,
        /// Response-specific data (empty on failure).
        data: Vec<u8>,
    },
    /// A key re-exchange finished.
    Rekeyed,
}

/// Result of reading from a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRead {
    /// This many bytes were copied.
    Data(usize),
    /// No data now; wait for [`Event::ChannelReadable`].
    Pending,
    /// The peer sent EOF (or closed) and everything before it has been read.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the peer's identification line.
    Version,
    /// First key exchange.
    Handshake,
    /// Authenticating.
    Auth,
    /// Authenticated; channels and global requests flow.
    Connected,
    /// Finished, by error or disconnect.
    Closed,
}

enum Role {
    Client {
        config: ClientConfig,
        auth_sent: bool,
        service_requested: bool,
        server_sig_algs: Option<Vec<String>>,
    },
    Server {
        config: ServerConfig,
        check_password: PasswordCheck,
        auth_attempts: u32,
        service_accepted: bool,
    },
}

impl Role {
    fn is_client(&self) -> bool {
        matches!(self, Role::Client { .. })
    }
}

struct InboundRequest {
    id: RequestId,
    reply: Option<(bool, Vec<u8>)>,
}

/// One SSH connection's state.
pub struct Session {
    role: Role,
    config: Config,
    phase: Phase,

    our_version: Vec<u8>,
    peer_version: Option<Vec<u8>>,
    banner_bytes: usize,

    rx: Vec<u8>,
    rx_pos: usize,
    tx: Vec<u8>,

    sealer: Sealer,
    opener: Opener,
    send_seq: u32,
    recv_seq: u32,
    /// Packets received so far (for the strict-KEX "KEXINIT first" rule).
    recv_count: u64,

    kex: KexState,
    session_id: Option<Vec<u8>>,
    host_key: Option<PublicKey>,
    strict: bool,
    bytes_since_kex: u64,
    packets_since_kex: u64,
    last_kex_at: Instant,
    /// Non-KEX payloads produced while a key exchange was running.
    queued: VecDeque<Vec<u8>>,

    channels: HashMap<u32, Channel>,
    next_channel: u32,
    inbound_requests: VecDeque<InboundRequest>,
    outbound_requests: VecDeque<RequestId>,
    next_request: u64,

    events: VecDeque<Event>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.role.is_client())
            .field("phase", &self.phase)
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

/// Bytes of received input we buffer beyond one maximal packet before refusing more.
const RX_SLACK: usize = 64 * 1024;

impl Session {
    /// A client session. Its identification line and KEXINIT are ready to send at once.
    pub fn client(config: ClientConfig, now: Instant) -> Result<Self> {
        let common = config.common.clone();
        Self::new(
            Role::Client {
                config,
                auth_sent: false,
                service_requested: false,
                server_sig_algs: None,
            },
            common,
            now,
        )
    }

    /// A server session, with the password check for this connection.
    pub fn server(
        config: ServerConfig,
        check_password: PasswordCheck,
        now: Instant,
    ) -> Result<Self> {
        if config.host_keys.is_empty() {
            return Err(Error::Config("server has no host key".into()));
        }
        let common = config.common.clone();
        Self::new(
            Role::Server {
                config,
                check_password,
                auth_attempts: 0,
                service_accepted: false,
            },
            common,
            now,
        )
    }

    fn new(role: Role, config: Config, now: Instant) -> Result<Self> {
        if config.ciphers.is_empty() {
            return Err(Error::Config("no ciphers configured".into()));
        }
        if config.kex.is_empty() {
            return Err(Error::Config("no key exchange methods configured".into()));
        }
        if !config.version.starts_with("SSH-2.0-") || config.version.len() > 253 {
            return Err(Error::Config(
                "version must start with SSH-2.0- and fit 255 bytes".into(),
            ));
        }
        let mut s = Session {
            role,
            our_version: config.version.as_bytes().to_vec(),
            config,
            phase: Phase::Version,
            peer_version: None,
            banner_bytes: 0,
            rx: Vec::new(),
            rx_pos: 0,
            tx: Vec::new(),
            sealer: Sealer::none(),
            opener: Opener::none(),
            send_seq: 0,
            recv_seq: 0,
            recv_count: 0,
            kex: KexState::Idle,
            session_id: None,
            host_key: None,
            strict: false,
            bytes_since_kex: 0,
            packets_since_kex: 0,
            last_kex_at: now,
            queued: VecDeque::new(),
            channels: HashMap::new(),
            next_channel: 0,
            inbound_requests: VecDeque::new(),
            outbound_requests: VecDeque::new(),
            next_request: 0,
            events: VecDeque::new(),
        };
        s.tx.extend_from_slice(&s.our_version);
        s.tx.extend_from_slice(b"\r\n");
        s.start_kex(now)?;
        Ok(s)
    }

    /// Whether this is the client side.
    pub fn is_client(&self) -> bool {
        self.role.is_client()
    }

    /// Whether the session has ended (an error or a disconnect).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether authentication has completed.
    pub fn is_authenticated(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The peer's identification line, once received.
    pub fn peer_version(&self) -> Option<&[u8]> {
        self.peer_version.as_deref()
    }

    /// The server's host key, once the first key exchange is done.
    pub fn host_key(&self) -> Option<&PublicKey> {
        self.host_key.as_ref()
    }

    /// Bytes waiting to be sent; a driver should stop producing data while this is large.
    pub fn pending_transmit(&self) -> usize {
        self.tx.len()
    }

    /// Moves the bytes to send into `out` (which is cleared first).
    pub fn take_transmit(&mut self, out: &mut Vec<u8>) {
        out.clear();
        std::mem::swap(out, &mut self.tx);
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Closed || self.session_id.is_none() {
            return None;
        }
        Some(self.last_kex_at + self.config.rekey_interval)
    }

    /// Advances timers: starts a rekey when the interval has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        self.guard(|s| s.maybe_rekey(now))
    }

    /// Starts a key re-exchange now (after the first one finished).
    pub fn rekey(&mut self, now: Instant) -> Result<()> {
        self.guard(|s| {
            if s.session_id.is_some() && s.kex.is_idle() {
                s.start_kex(now)?;
            }
            Ok(())
        })
    }

    /// Sends SSH_MSG_DISCONNECT and closes the session.
    pub fn disconnect(&mut self, reason: u32, description: &str) {
        if self.phase == Phase::Closed {
            return;
        }
        let mut p = Vec::new();
        p.put_u8(msg::DISCONNECT);
        p.put_u32(reason);
        p.put_string(description.as_bytes());
        p.put_string(b"");
        // A disconnect may be sent at any time, even during a key exchange.
        let _ = self.seal(&p);
        self.phase = Phase::Closed;
    }

    /// Feeds bytes received from the peer and processes every complete packet.
    ///
    /// An error closes the session: the caller should send what `take_transmit` still holds
    /// (a DISCONNECT, possibly) and drop the connection.
    pub fn feed(&mut self, data: &[u8], now: Instant) -> Result<()> {
        if self.phase == Phase::Closed {
            return Err(Error::ConnectionClosed);
        }
        if self.rx_pos > 0
            && (self.rx_pos >= self.rx.len() / 2 || self.rx.len() + data.len() > self.rx.capacity())
        {
            self.rx.drain(..self.rx_pos);
            self.rx_pos = 0;
        }
        self.rx.extend_from_slice(data);
        self.guard(|s| s.process(now))
    }

    /// Runs `f`, and on error closes the session with a DISCONNECT that says why.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        match f(self) {
            Ok(v) => Ok(v),
            Err(e) => {
                let reason = match &e {
                    Error::Mac => Some(msg::disconnect::MAC_ERROR),
                    Error::NoCommonAlgorithm { .. } => Some(msg::disconnect::KEY_EXCHANGE_FAILED),
                    Error::HostKeyRejected | Error::HostKeySignature => {
                        Some(msg::disconnect::HOST_KEY_NOT_VERIFIABLE)
                    }
                    Error::Protocol(_) | Error::PacketLength(_) => {
                        Some(msg::disconnect::PROTOCOL_ERROR)
                    }
                    _ => None,
                };
                if let Some(reason) = reason {
                    self.disconnect(reason, "");
                }
                self.phase = Phase::Closed;
                Err(e)
            }
        }
    }

    fn process(&mut self, now: Instant) -> Result<()> {
        if self.phase == Phase::Version && !self.read_version()? {
            return Ok(());
        }
        loop {
            if self.phase == Phase::Closed {
                return Ok(());
            }
            let buf = &mut self.rx[self.rx_pos..];
            let Some(opened) = self.opener.open(self.recv_seq, buf)? else {
                let limit =
                    usize::try_from(crate::cipher::MAX_PACKET_LEN).unwrap_or(usize::MAX) + RX_SLACK;
                if self.rx.len() - self.rx_pos > limit {
                    return Err(Error::protocol("receive buffer overflow"));
                }
                return Ok(());
            };
            let start = self.rx_pos + opened.start;
            let end = self.rx_pos + opened.end;
            self.rx_pos += opened.consumed;
            self.recv_seq = self.recv_seq.wrapping_add(1);
            self.recv_count += 1;
            self.bytes_since_kex += opened.consumed as u64;
            self.packets_since_kex += 1;
            // Take the payload out of the buffer's borrow: dispatch may need `&mut self`.
            let payload = std::mem::take(&mut self.rx);
            let r = self.dispatch(&payload[start..end], now);
            self.rx = payload;
            r?;
            self.maybe_rekey(now)?;
        }
    }

    /// Reads the peer's identification line; skips lines before it (RFC 4253 §4.2).
    fn read_version(&mut self) -> Result<bool> {
        loop {
            let avail = &self.rx[self.rx_pos..];
            let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                if avail.len() > 255
                    || self.banner_bytes + avail.len() > self.config.max_banner_bytes
                {
                    return Err(Error::Version("identification line too long".into()));
                }
                return Ok(false);
            };
            let line_len = nl + 1;
            self.banner_bytes += line_len;
            if self.banner_bytes > self.config.max_banner_bytes {
                return Err(Error::Version("too many banner lines".into()));
            }
            let mut line = &avail[..nl];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.starts_with(b"SSH-") {
                if line.len() > 253 {
                    return Err(Error::Version("identification line too long".into()));
                }
                if !(line.starts_with(b"SSH-2.0-") || line.starts_with(b"SSH-1.99-")) {
                    return Err(Error::Version(format!(
                        "unsupported protocol: {}",
                        sanitize(line)
                    )));
                }
                self.peer_version = Some(line.to_vec());
                self.rx_pos += line_len;
                self.phase = Phase::Handshake;
                return Ok(true);
            }
            if !self.role.is_client() {
                // RFC 4253 lets only servers send lines before the version.
                return Err(Error::Version(
                    "client sent text before its identification".into(),
                ));
            }
            self.rx_pos += line_len;
        }
    }

    /// Seals one payload into the transmit buffer, now.
    fn seal(&mut self, payload: &[u8]) -> Result<()> {
        self.seal_parts(&[payload])
    }

    /// Seals one payload given in parts (see `Sealer::seal_parts`).
    fn seal_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        let before = self.tx.len();
        self.sealer.seal_parts(self.send_seq, parts, &mut self.tx)?;
        self.send_seq = self.send_seq.wrapping_add(1);
        self.bytes_since_kex += (self.tx.len() - before) as u64;
        self.packets_since_kex += 1;
        Ok(())
    }

    /// Sends a non-KEX payload, or queues it while a key exchange runs (RFC 4253 §7.1).
    fn send(&mut self, payload: Vec<u8>) -> Result<()> {
        if self.phase == Phase::Closed {
            return Err(Error::ConnectionClosed);
        }
        if self.kex.sending_blocked() {
            self.queued.push_back(payload);
            Ok(())
        } else {
            self.seal(&payload)
        }
    }

    /// Processes `payload` as if it had arrived decrypted and authenticated: lets a fuzzer or
    /// test reach the message parsers behind the MAC. Only with the `fuzzing` feature.
    #[cfg(feature = "fuzzing")]
    pub fn inject_payload_for_fuzzing(&mut self, payload: &[u8], now: Instant) -> Result<()> {
        if self.phase == Phase::Closed {
            return Err(Error::ConnectionClosed);
        }
        self.recv_count += 1;
        self.guard(|s| s.dispatch(payload, now))
    }

    fn dispatch(&mut self, payload: &[u8], now: Instant) -> Result<()> {
        let Some(&kind) = payload.first() else {
            return Err(Error::protocol("empty packet"));
        };
        if self.kex.swallow_guess() {
            return Ok(());
        }
        let is_kex_msg = matches!(kind, msg::KEXINIT | msg::NEWKEYS | 30..=49);
        if self.strict && self.session_id.is_none() && !is_kex_msg && kind != msg::DISCONNECT {
            return Err(Error::protocol(format!(
                "message {kind} during strict key exchange"
            )));
        }
        match kind {
            msg::DISCONNECT => {
                let mut r = Reader::new(&payload[1..]);
                let reason = r.u32()?;
                let description = sanitize(r.string().unwrap_or(b""));
                self.phase = Phase::Closed;
                Err(Error::Disconnected {
                    reason,
                    description,
                })
            }
            msg::IGNORE | msg::DEBUG | msg::UNIMPLEMENTED => Ok(()),
            msg::KEXINIT => self.on_kexinit(payload, now),
            msg::NEWKEYS => self.on_newkeys(now),
            30..=49 => self.on_kex_message(payload, now),
            msg::EXT_INFO => self.on_ext_info(payload),
            msg::SERVICE_REQUEST => self.on_service_request(payload),
            msg::SERVICE_ACCEPT => self.on_service_accept(),
            msg::USERAUTH_REQUEST => self.on_userauth_request(payload),
            msg::USERAUTH_FAILURE => self.on_userauth_failure(payload),
            msg::USERAUTH_SUCCESS => self.on_userauth_success(),
            msg::USERAUTH_BANNER => {
                let mut r = Reader::new(&payload[1..]);
                let text = r.string()?;
                self.events.push_back(Event::Banner(sanitize(text)));
                Ok(())
            }
            msg::GLOBAL_REQUEST..=msg::CHANNEL_FAILURE => {
                if self.phase != Phase::Connected {
                    return Err(Error::protocol(format!(
                        "message {kind} before authentication"
                    )));
                }
                self.on_connection_message(kind, payload)
            }
            _ => {
                let mut p = Vec::new();
                p.put_u8(msg::UNIMPLEMENTED);
                p.put_u32(self.recv_seq.wrapping_sub(1));
                self.send(p)
            }
        }
    }

    // ---- authentication ----

    fn on_ext_info(&mut self, payload: &[u8]) -> Result<()> {
        let Role::Client {
            server_sig_algs, ..
        } = &mut self.role
        else {
            return Ok(());
        };
        let mut r = Reader::new(&payload[1..]);
        let n = r.u32()?;
        for _ in 0..n.min(64) {
            let name = r.string()?;
            let value = r.string()?;
            if name == b"server-sig-algs" {
                let v = String::from_utf8_lossy(value);
                *server_sig_algs = Some(v.split(',').take(64).map(str::to_owned).collect());
            }
        }
        Ok(())
    }

    fn client_start_auth(&mut self) -> Result<()> {
        if let Role::Client {
            service_requested, ..
        } = &mut self.role
            && !*service_requested
        {
            *service_requested = true;
            let mut p = Vec::new();
            p.put_u8(msg::SERVICE_REQUEST);
            p.put_string(b"ssh-userauth");
            self.send(p)?;
        }
        Ok(())
    }

    fn on_service_request(&mut self, payload: &[u8]) -> Result<()> {
        let Role::Server {
            service_accepted, ..
        } = &mut self.role
        else {
            return Err(Error::protocol("service request sent to a client"));
        };
        let mut r = Reader::new(&payload[1..]);
        let name = r.string()?;
        if name != b"ssh-userauth" || *service_accepted || self.phase != Phase::Auth {
            self.disconnect(
                msg::disconnect::SERVICE_NOT_AVAILABLE,
                "service not available",
            );
            return Err(Error::protocol("unexpected service request"));
        }
        *service_accepted = true;
        let mut p = Vec::new();
        p.put_u8(msg::SERVICE_ACCEPT);
        p.put_string(b"ssh-userauth");
        self.send(p)
    }

    fn on_service_accept(&mut self) -> Result<()> {
        let Role::Client {
            config,
            auth_sent,
            server_sig_algs,
            ..
        } = &mut self.role
        else {
            return Err(Error::protocol("service accept sent to a server"));
        };
        if *auth_sent || self.phase != Phase::Auth {
            return Err(Error::protocol("unexpected service accept"));
        }
        *auth_sent = true;
        let mut p = Vec::new();
        p.put_u8(msg::USERAUTH_REQUEST);
        p.put_string(config.user.as_bytes());
        p.put_string(b"ssh-connection");
        match &config.auth {
            ClientAuth::Password(pw) => {
                p.put_string(b"password");
                p.put_bool(false);
                p.put_string(pw.as_bytes());
            }
            ClientAuth::PublicKey(key) => {
                let algs = key.signing_algorithms();
                let alg = match server_sig_algs {
                    Some(server) => algs
                        .iter()
                        .find(|a| server.iter().any(|s| s == *a))
                        .copied(),
                    None => algs.last().copied(),
                }
                .ok_or_else(|| {
                    Error::Config("server accepts none of our key's algorithms".into())
                })?;
                let blob = key.public_key().blob().to_vec();
                let session_id = self
                    .session_id
                    .clone()
                    .ok_or(Error::Internal("no session id"))?;
                let mut signed = Vec::new();
                signed.put_string(&session_id);
                signed.put_u8(msg::USERAUTH_REQUEST);
                signed.put_string(config.user.as_bytes());
                signed.put_string(b"ssh-connection");
                signed.put_string(b"publickey");
                signed.put_bool(true);
                signed.put_string(alg.as_bytes());
                signed.put_string(&blob);
                let sig = key.sign(alg, &signed)?;
                p.put_string(b"publickey");
                p.put_bool(true);
                p.put_string(alg.as_bytes());
                p.put_string(&blob);
                p.put_string(&sig);
            }
        }
        self.send(p)
    }

    fn on_userauth_request(&mut self, payload: &[u8]) -> Result<()> {
        let Role::Server {
            config,
            check_password,
            auth_attempts,
            service_accepted,
        } = &mut self.role
        else {
            return Err(Error::protocol("auth request sent to a client"));
        };
        if !*service_accepted || self.phase != Phase::Auth {
            // After success further requests are ignored (RFC 4252 §5.1).
            if self.phase == Phase::Connected {
                return Ok(());
            }
            return Err(Error::protocol("auth request before service accept"));
        }
        let mut r = Reader::new(&payload[1..]);
        let user = r.utf8()?.to_owned();
        let service = r.string()?;
        let method = r.string()?;
        if service != b"ssh-connection" {
            return Err(Error::protocol("auth for unknown service"));
        }
        let accepted = if method == b"password" {
            *auth_attempts += 1;
            let change = r.bool()?;
            let password = r.string()?;
            !change && check_password(&user, password)
        } else {
            if method != b"none" {
                *auth_attempts += 1;
            }
            false
        };
        if accepted {
            self.phase = Phase::Connected;
            self.send(vec![msg::USERAUTH_SUCCESS])?;
            self.events.push_back(Event::Authenticated { user });
            return Ok(());
        }
        if *auth_attempts >= config.max_auth_attempts {
            self.disconnect(
                msg::disconnect::NO_MORE_AUTH_METHODS_AVAILABLE,
                "too many attempts",
            );
            return Err(Error::AuthFailed {
                methods: "password".into(),
            });
        }
        let mut p = Vec::new();
        p.put_u8(msg::USERAUTH_FAILURE);
        p.put_name_list(&["password"]);
        p.put_bool(false);
        self.send(p)
    }

    fn on_userauth_failure(&mut self, payload: &[u8]) -> Result<()> {
        if !self.role.is_client() {
            return Err(Error::protocol("auth failure sent to a server"));
        }
        let mut r = Reader::new(&payload[1..]);
        let methods = sanitize(r.string()?);
        Err(Error::AuthFailed { methods })
    }

    fn on_userauth_success(&mut self) -> Result<()> {
        let Role::Client {
            config, auth_sent, ..
        } = &self.role
        else {
            return Err(Error::protocol("auth success sent to a server"));
        };
        if !*auth_sent || self.phase != Phase::Auth {
            return Err(Error::protocol("unexpected auth success"));
        }
        let user = config.user.clone();
        self.phase = Phase::Connected;
        self.events.push_back(Event::Authenticated { user });
        Ok(())
    }
}
