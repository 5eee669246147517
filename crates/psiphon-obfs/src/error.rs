//! The crate's error type and its fault classification.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::history::PeerMatch;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who is at fault for an [`Error`], and where. A controller reads this to decide on fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something on this machine failed (a local I/O error, our own SSH layer misbehaving).
    Local,
    /// The network path looks interfered with: the peer went silent, reset or closed the
    /// connection during the obfuscation handshake.
    Blocked,
    /// The server refused us. (An OSSH server never says so on the wire; kept for callers that
    /// map other protocols onto the same kinds.)
    ServerRejected,
    /// The peer sent something malformed, foreign or replayed (on a server: a probe).
    Remote,
    /// The configuration handed to this crate is invalid.
    Config,
    /// A bug or an impossible state inside this crate.
    Internal,
}

/// What the obfuscation layer was doing when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Server: reading the client's seed message (preamble).
    ClientPreamble,
    /// Server: looking for the client's prefix terminator.
    PrefixTerminator,
    /// Server: reading the prefix header that follows a prefixed preamble.
    PrefixHeader,
    /// Client: skipping the server's prefix reply.
    ServerPrefix,
    /// Either side: reading the peer's identification (version) lines.
    IdentificationLine,
    /// Either side: reading the peer's obfuscated key exchange packets.
    KexPacket,
    /// Either side: writing obfuscated bytes.
    Write,
    /// Either side: flushing or shutting down the inner transport.
    Flush,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientPreamble => "reading the client preamble",
            Self::PrefixTerminator => "scanning for the prefix terminator",
            Self::PrefixHeader => "reading the prefix header",
            Self::ServerPrefix => "skipping the server prefix",
            Self::IdentificationLine => "reading identification lines",
            Self::KexPacket => "reading key exchange packets",
            Self::Write => "writing",
            Self::Flush => "flushing",
        })
    }
}

/// Why a server rejected a client's first flight.
///
/// The texts of the first variants are tunnel-core's, so logs line up with psiphond's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProbeReason {
    /// The magic value was wrong and no prefix terminator followed within the search limit.
    NoTerminator,
    /// A prefix terminator was found, but the preamble after it has a wrong magic value.
    InvalidMagicAfterPrefix,
    /// The magic value was right but the padding length is above 8192.
    PaddingLength,
    /// The prefix header has an unknown version.
    PrefixHeaderVersion,
    /// The prefix header names a spec longer than 4096 bytes.
    PrefixHeaderLength,
    /// The client closed the connection before the preamble was complete.
    Truncated,
}

impl fmt::Display for ProbeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoTerminator => "no prefix terminator or invalid magic value",
            Self::InvalidMagicAfterPrefix => "invalid magic value",
            Self::PaddingLength => "invalid padding length",
            Self::PrefixHeaderVersion => "invalid prefix header version",
            Self::PrefixHeaderLength => "invalid prefix header length",
            Self::Truncated => "unexpected EOF",
        })
    }
}

/// Every error this crate returns. [`Error::kind`] says who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid OSSH configuration: {what}")]
    Config {
        /// What is wrong.
        what: &'static str,
    },
    /// Server side: the client's first flight is not a valid OSSH preamble for our keyword.
    #[error("client preamble rejected: {reason}")]
    Probe {
        /// The check that failed.
        reason: ProbeReason,
    },
    /// Server side: the client's obfuscation seed was seen before (a replayed first flight).
    #[error("duplicate obfuscation seed, first seen {elapsed:?} ago (peer {peer})")]
    ReplayedSeed {
        /// How long ago the seed was first recorded.
        elapsed: Duration,
        /// Whether the earlier connection came from the same peer address.
        peer: PeerMatch,
    },
    /// The obfuscation handshake did not complete before the deadline.
    #[error("OSSH handshake timed out after {timeout:?} while {step}")]
    HandshakeTimeout {
        /// The configured deadline.
        timeout: Duration,
        /// Where the handshake was at the deadline.
        step: Step,
    },
    /// The peer closed the connection before the obfuscated phase was over.
    #[error("peer closed the connection while {step}")]
    UnexpectedEof {
        /// Where the handshake was.
        step: Step,
    },
    /// The peer sent bytes that cannot be obfuscated SSH.
    #[error("malformed data from peer while {step}: {what}")]
    Malformed {
        /// Where the handshake was.
        step: Step,
        /// What was wrong.
        what: &'static str,
    },
    /// The local SSH layer handed us bytes that are not SSH (we parse them to pad packets).
    #[error("the local SSH layer wrote an invalid {what}")]
    LocalProtocol {
        /// What was wrong.
        what: &'static str,
    },
    /// An I/O error on the inner transport.
    #[error("I/O error while {step}")]
    Io {
        /// Where the handshake was.
        step: Step,
        /// The transport's error.
        #[source]
        source: io::Error,
    },
    /// A cryptographic primitive failed, or another state that should be impossible.
    #[error("internal error: {what}")]
    Internal {
        /// What failed.
        what: &'static str,
    },
}

impl Error {
    /// Who is at fault.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } => ErrorKind::Config,
            Self::Probe { .. } | Self::ReplayedSeed { .. } | Self::Malformed { .. } => {
                ErrorKind::Remote
            }
            Self::HandshakeTimeout { .. } | Self::UnexpectedEof { .. } => ErrorKind::Blocked,
            Self::Io { source, .. } => match source.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::TimedOut => ErrorKind::Blocked,
                _ => ErrorKind::Local,
            },
            Self::LocalProtocol { .. } => ErrorKind::Local,
            Self::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// Finds this crate's error inside an [`io::Error`] returned by [`crate::ObfuscatedStream`]'s
    /// `AsyncRead`/`AsyncWrite` methods, to read its [`kind`](Self::kind).
    #[must_use]
    pub fn from_io(err: &io::Error) -> Option<&Self> {
        err.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }

    pub(crate) fn io(step: Step, source: io::Error) -> Self {
        Self::Io { step, source }
    }

    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Self::Io { source, .. } => source.kind(),
            Self::UnexpectedEof { .. } => io::ErrorKind::UnexpectedEof,
            Self::HandshakeTimeout { .. } => io::ErrorKind::TimedOut,
            Self::Config { .. } => io::ErrorKind::InvalidInput,
            Self::Probe { .. }
            | Self::ReplayedSeed { .. }
            | Self::Malformed { .. }
            | Self::LocalProtocol { .. } => io::ErrorKind::InvalidData,
            Self::Internal { .. } => io::ErrorKind::Other,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        Self::new(err.io_kind(), err)
    }
}
