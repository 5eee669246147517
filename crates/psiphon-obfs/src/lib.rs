#![doc = include_str!("../README.md")]

mod acceptor;
mod config;
mod error;
mod history;
mod keys;
mod preamble;
mod prefix;
pub mod prng;
mod session;
mod stream;

pub use acceptor::{AcceptStep, Acceptor};
pub use config::{
    ClientConfig, ClientPrefix, DEFAULT_HANDSHAKE_TIMEOUT, MIN_PADDING, ServerConfig,
};
pub use error::{Error, ErrorKind, ProbeReason, Result, Step};
pub use history::{Admission, Duplicate, HistoryMode, PeerMatch, SeedHistory, SeedHistoryConfig};
pub use keys::{
    Direction, HASH_ITERATIONS, KEY_LEN, Keyword, MAGIC, MAX_PADDING, PREAMBLE_HEADER_LEN,
    Rc4Stream, SEED_LEN, derive_key,
};
pub use prefix::{
    PREFIX_HEADER_VERSION, PREFIX_MAX_LEN, PREFIX_MAX_NAME_LEN, TERMINATOR_LEN, prefix_terminator,
};
pub use session::{MAX_PACKET_LEN, Metrics, PADDING_PRNG_SALT, Role, SSH_MSG_NEWKEYS, Session};
pub use stream::ObfuscatedStream;
