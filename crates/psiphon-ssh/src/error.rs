//! Errors of the SSH layer, each with a kind that says who is at fault.

use std::fmt;

/// Who is at fault for an [`Error`], and so what a caller should do next.
///
/// The tunnel controller reads this to choose the next server and protocol: a `Blocked`
/// error suggests censorship of this server or protocol on this network, `ServerRejected`
/// says the server is reachable but refused us (wrong credentials, unknown host key), and so
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Our own side failed: a local I/O error, a closed handle, a bad argument.
    Local,
    /// The peer vanished or went silent during the handshake (reset, EOF, timeout): on a
    /// censored network this is what blocking looks like.
    Blocked,
    /// The peer answered but refused us: authentication failed, host key mismatch, no common
    /// algorithm, a disconnect message.
    ServerRejected,
    /// The peer broke the protocol (bad MAC, malformed packet, oversized packet).
    Remote,
    /// Our configuration is unusable (no host key, empty algorithm list).
    Config,
    /// A state that should be impossible; a bug in this crate.
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::Local => "local",
            ErrorKind::Blocked => "blocked",
            ErrorKind::ServerRejected => "rejected by peer",
            ErrorKind::Remote => "peer protocol error",
            ErrorKind::Config => "configuration",
            ErrorKind::Internal => "internal",
        };
        f.write_str(s)
    }
}

/// An error from the SSH core or its driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent something that is not valid SSH at this point.
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    /// A packet whose length is out of bounds or not aligned.
    #[error("bad packet length {0}")]
    PacketLength(u32),
    /// Message authentication failed: the packet was altered or the keys disagree.
    #[error("packet authentication failed")]
    Mac,
    /// The peer's identification line was missing, too long, or not SSH-2.0.
    #[error("bad identification: {0}")]
    Version(String),
    /// No algorithm in common for this negotiation step.
    #[error("no common {what} algorithm (ours: {ours}; theirs: {theirs})")]
    NoCommonAlgorithm {
        /// Which list failed: kex, host key, cipher, mac.
        what: &'static str,
        /// Our list.
        ours: String,
        /// The peer's list.
        theirs: String,
    },
    /// The server's host key signature did not verify.
    #[error("host key signature invalid")]
    HostKeySignature,
    /// The host key check callback refused the server's key.
    #[error("host key not accepted")]
    HostKeyRejected,
    /// Authentication failed; `methods` are what the server would still accept.
    #[error("authentication failed (server accepts: {methods})")]
    AuthFailed {
        /// The server's list of methods that can continue.
        methods: String,
    },
    /// The peer sent SSH_MSG_DISCONNECT.
    #[error("peer disconnected (reason {reason}): {description}")]
    Disconnected {
        /// The RFC 4253 reason code.
        reason: u32,
        /// The peer's description, sanitised.
        description: String,
    },
    /// The connection ended (EOF) before the handshake finished.
    #[error("connection closed during {0}")]
    ClosedDuring(&'static str),
    /// The handshake did not finish in time.
    #[error("timed out during {0}")]
    Timeout(&'static str),
    /// The peer stopped answering keepalives or the connection idled out.
    #[error("peer unresponsive")]
    Unresponsive,
    /// The underlying stream failed.
    #[error("i/o error during {during}")]
    Io {
        /// What we were doing.
        during: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The peer refused to open a channel.
    #[error("channel open refused (reason {reason}): {description}")]
    ChannelOpenFailed {
        /// The RFC 4254 reason code (or Psiphon's private 0xFE000000 split-tunnel code).
        reason: u32,
        /// The peer's description, sanitised.
        description: String,
    },
    /// The connection has already closed.
    #[error("connection closed")]
    ConnectionClosed,
    /// The connection closed, for this reason.
    #[error("connection closed: {reason}")]
    Closed {
        /// Who was at fault.
        kind: ErrorKind,
        /// What happened.
        reason: String,
    },
    /// The configuration cannot be used.
    #[error("configuration: {0}")]
    Config(String),
    /// A cryptographic primitive failed where it should not.
    #[error("crypto failure in {0}")]
    Crypto(&'static str),
    /// An impossible state.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Protocol(_) | Error::PacketLength(_) | Error::Mac | Error::HostKeySignature => {
                ErrorKind::Remote
            }
            Error::Version(_) => ErrorKind::Remote,
            Error::NoCommonAlgorithm { .. }
            | Error::HostKeyRejected
            | Error::AuthFailed { .. }
            | Error::Disconnected { .. }
            | Error::ChannelOpenFailed { .. } => ErrorKind::ServerRejected,
            Error::ClosedDuring(_) | Error::Timeout(_) | Error::Unresponsive => ErrorKind::Blocked,
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::TimedOut => ErrorKind::Blocked,
                _ => ErrorKind::Local,
            },
            Error::ConnectionClosed => ErrorKind::Local,
            Error::Closed { kind, .. } => *kind,
            Error::Config(_) => ErrorKind::Config,
            Error::Crypto(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into())
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Keeps printable ASCII of a peer-supplied string, bounded, so it is safe to show and log.
pub(crate) fn sanitize(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(256)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}
