//! The errors of `psinet`'s network commands. Each names the file, the record or the argument
//! at fault.

use std::path::PathBuf;

/// Why a `psinet` command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database file does not exist.
    #[error(
        "no psinet database at {}: create one with `psinet init --db {}` (or set --db / PSINET_DB)",
        path.display(), path.display()
    )]
    NoDatabase {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The statistics store does not exist.
    #[error(
        "no statistics store at {}: ingest psiphond logs first with `psinet stats ingest \
         --stats-db {} LOG...` (or set --stats-db / PSINET_STATS_DB)",
        path.display(), path.display()
    )]
    NoStatsDatabase {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `init` was asked to create a database that exists.
    #[error("{} already exists: psinet init does not overwrite a database", path.display())]
    DatabaseExists {
        /// The existing file.
        path: PathBuf,
    },
    /// SQLite failed.
    #[error("database {}: {what}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer psinet.
    #[error(
        "database {} has schema version {found}; this psinet knows versions up to {known}: \
         use a newer psinet",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this program knows.
        known: i64,
    },
    /// A stored value is not what this program wrote.
    #[error("database {}: {what} is damaged: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which record or key.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A command-line argument is invalid.
    #[error("{arg} {value:?}: {reason}")]
    InvalidArgument {
        /// The argument, e.g. `--ip`.
        arg: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A record that was named does not exist.
    #[error("no {what} {name:?}{hint}")]
    NotFound {
        /// "sponsor", "propagation channel", "server".
        what: &'static str,
        /// The id or name given.
        name: String,
        /// Where to look, e.g. " (see `psinet sponsor list`)".
        hint: &'static str,
    },
    /// A record would duplicate another.
    #[error("{what} {value:?} already exists{detail}")]
    Duplicate {
        /// "sponsor id", "server IP address", ...
        what: &'static str,
        /// The duplicated value.
        value: String,
        /// More context, e.g. " (server 1a2b3c4d)".
        detail: String,
    },
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// "writing", "reading", "creating directory", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file to write exists and `--force` was not given.
    #[error("{} already exists (pass --force to overwrite)", path.display())]
    FileExists {
        /// The file.
        path: PathBuf,
    },
    /// A key, entry or package operation failed.
    #[error("{what}: {source}")]
    Protocol {
        /// What was being done.
        what: String,
        /// The protocol crate's error.
        #[source]
        source: psiphon_protocol::Error,
    },
    /// psiphond's generator failed.
    #[error("generating the psiphond files: {0}")]
    Generate(#[source] psiphon_server::Error),
    /// The system random source failed.
    #[error("the system random source failed")]
    Random,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error::Io`] maker for `map_err`.
pub(crate) fn io(
    what: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { what, path, source }
}

/// An [`Error::Protocol`] maker for `map_err`.
pub(crate) fn protocol(what: impl Into<String>) -> impl FnOnce(psiphon_protocol::Error) -> Error {
    let what = what.into();
    move |source| Error::Protocol { what, source }
}
