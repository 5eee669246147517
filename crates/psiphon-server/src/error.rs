//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A config, traffic rules or psinet file, or a command-line flag, is wrong.
    Config,
    /// The local system refused (file, socket).
    Local,
    /// A bug or an impossible state.
    Internal,
}

/// Everything that can fail in psiphond outside a single client's tunnel (those failures are
/// counted, not returned).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value in a file is invalid.
    #[error("{file}: {key}: {reason}")]
    ConfigValue {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A file as a whole is invalid (not JSON, not an object).
    #[error("{file}: {reason}")]
    ConfigFile {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A command-line flag is wrong.
    #[error("{0}")]
    Usage(String),
    /// A tunnel protocol this server does not (yet) run.
    #[error("unsupported tunnel protocol {0:?} (supported: SSH, OSSH)")]
    UnsupportedProtocol(String),
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Binding a listener failed.
    #[error("listening for {protocol} on {address}: {source}")]
    Listen {
        /// The tunnel protocol.
        protocol: String,
        /// The local address (the server's own).
        address: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Making keys failed.
    #[error("generating {what}: {reason}")]
    Generate {
        /// Which key.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ConfigValue { .. }
            | Error::ConfigFile { .. }
            | Error::Usage(_)
            | Error::UnsupportedProtocol(_) => ErrorKind::Config,
            Error::Read { .. } | Error::Write { .. } | Error::Listen { .. } => ErrorKind::Local,
            Error::Generate { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn value(file: &str, key: &str, reason: impl Into<String>) -> Error {
        Error::ConfigValue {
            file: file.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
