//! The SSH-aware obfuscation layer (wire spec 1.6) as a sans-IO state machine.
//!
//! A [`Session`] sits between a local SSH stack and the network. [`Session::encode`] takes what
//! the SSH stack writes and appends the wire bytes; [`Session::decode`] takes wire bytes and
//! appends what the SSH stack should read. Neither does I/O or looks at a clock.

mod packet;
mod read;
mod write;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::keys::{CipherPair, Keyword, SEED_LEN};
use crate::preamble::build_client_preamble;
use crate::prng::{Prng, PrngSeed, fill_random};

use read::{ReadSide, ReadState};
use write::{WriteSide, WriteState};

pub use packet::{MAX_PACKET_LEN, SSH_MSG_NEWKEYS};

/// Salt of the PRNG that draws identification-line and KEX packet padding.
pub const PADDING_PRNG_SALT: &str = "obfuscated-ssh-padding";

/// Which end of the connection a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends the preamble.
    Client,
    /// Validated the preamble.
    Server,
}

/// Padding sizes, for the metrics psiphond and tunnel-core log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// Client: padding length in its preamble (`upstream_ossh_padding`).
    pub upstream_padding: Option<usize>,
    /// Server: length of its identification-line padding, once sent (`downstream_ossh_padding`).
    pub downstream_padding: Option<usize>,
}

/// One obfuscated SSH connection's state, both directions.
#[derive(Debug)]
pub struct Session {
    role: Role,
    write: WriteSide,
    read: ReadSide,
    legacy_padding: bool,
    padding_seed: PrngSeed,
    upstream_padding: Option<usize>,
    prefixed: bool,
}

impl Session {
    /// A client session with a fresh random obfuscation seed. Nothing is sent until the first
    /// [`encode`](Self::encode) or [`start`](Self::start).
    ///
    /// # Errors
    /// [`Error::Internal`] if the system random source fails.
    pub fn client(config: &ClientConfig) -> Result<Self> {
        let mut seed = [0u8; SEED_LEN];
        fill_random(&mut seed)?;
        Self::client_with_seed(config, seed)
    }

    /// A client session with a given obfuscation seed. Real connections must use
    /// [`client`](Self::client); this exists to reproduce known-answer vectors.
    ///
    /// # Errors
    /// [`Error::Internal`] if the system random source fails (drawing the padding seed, or
    /// padding a short prefix).
    pub fn client_with_seed(config: &ClientConfig, seed: [u8; SEED_LEN]) -> Result<Self> {
        let padding_seed = match &config.padding_seed {
            Some(seed) => seed.clone(),
            None => PrngSeed::generate()?,
        };
        let mut ciphers = CipherPair::derive(&seed, &config.keyword)?;
        let mut preamble_prng = Prng::new(&padding_seed);
        let preamble = build_client_preamble(config, &seed, &mut ciphers, &mut preamble_prng)?;
        let kex_prng = Prng::with_salt(&padding_seed, PADDING_PRNG_SALT)?;
        let read_state = if config.prefix.is_some() {
            ReadState::ServerPrefix {
                header: Vec::new(),
                scan: None,
            }
        } else {
            ReadState::IdentificationLines
        };
        Ok(Self {
            role: Role::Client,
            write: WriteSide::new(
                WriteState::ClientPreamble(preamble.bytes),
                ciphers.client_to_server,
                kex_prng,
            ),
            read: ReadSide::new(read_state, ciphers.server_to_client, config.keyword.clone()),
            legacy_padding: false,
            padding_seed,
            upstream_padding: Some(preamble.padding_len),
            prefixed: config.prefix.is_some(),
        })
    }

    /// A server session after a valid preamble. `reply` is the prefix reply (`P' ‖ T'`) or empty.
    pub(crate) fn server(
        keyword: Keyword,
        ciphers: CipherPair,
        padding_seed: PrngSeed,
        reply: Vec<u8>,
    ) -> Result<Self> {
        let kex_prng = Prng::with_salt(&padding_seed, PADDING_PRNG_SALT)?;
        let prefixed = !reply.is_empty();
        Ok(Self {
            role: Role::Server,
            write: WriteSide::new(
                WriteState::ServerGreeting(reply),
                ciphers.server_to_client,
                kex_prng,
            ),
            read: ReadSide::new(
                ReadState::IdentificationLines,
                ciphers.client_to_server,
                keyword,
            ),
            legacy_padding: false,
            padding_seed,
            upstream_padding: None,
            prefixed,
        })
    }

    /// Which end this is.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether a prefix was sent (client) or received (server).
    #[must_use]
    pub fn is_prefixed(&self) -> bool {
        self.prefixed
    }

    /// Appends the client preamble, or the server's prefix reply and identification-line
    /// padding, if not sent yet. [`encode`](Self::encode) does this by itself; call it to put
    /// the first flight on the wire before the SSH stack writes.
    pub fn start(&mut self, to_wire: &mut Vec<u8>) {
        self.write.start(to_wire);
    }

    /// Obfuscates bytes written by the local SSH stack, appending wire bytes to `to_wire`.
    /// Incomplete SSH packets are held back until the rest arrives; the NEWKEYS packet and
    /// everything before it leave in the call that completes it.
    ///
    /// # Errors
    /// [`Error::LocalProtocol`] if the input is not an SSH version line followed by SSH
    /// binary packets.
    pub fn encode(&mut self, from_ssh: &[u8], to_wire: &mut Vec<u8>) -> Result<()> {
        self.write.encode(from_ssh, self.legacy_padding, to_wire)
    }

    /// Deobfuscates wire bytes, appending what the SSH stack should read to `to_ssh`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the peer's bytes are not obfuscated SSH for our keys.
    pub fn decode(&mut self, from_wire: &[u8], to_ssh: &mut Vec<u8>) -> Result<()> {
        if self.read.decode(from_wire, to_ssh)? {
            self.legacy_padding = true;
        }
        Ok(())
    }

    /// What an end of the peer's stream means now: `None` if it may end here, otherwise the
    /// error to report (the peer left during the obfuscated phase).
    #[must_use]
    pub fn eof_error(&self) -> Option<Error> {
        self.read.eof_error()
    }

    /// Whether the write direction has passed NEWKEYS and now sends bytes unchanged.
    #[must_use]
    pub fn write_is_raw(&self) -> bool {
        self.write.is_raw()
    }

    /// Whether the read direction has passed NEWKEYS and now delivers bytes unchanged.
    #[must_use]
    pub fn read_is_raw(&self) -> bool {
        self.read.is_raw()
    }

    /// Padding sizes for logging.
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        Metrics {
            upstream_padding: self.upstream_padding,
            downstream_padding: self.write.greeting_padding,
        }
    }

    /// The seed behind this connection's padding: store it to replay the same traffic shape
    /// later with [`ClientConfig::with_padding_seed`]. On a server it came from the client.
    #[must_use]
    pub fn padding_seed(&self) -> &PrngSeed {
        &self.padding_seed
    }

    /// A PRNG for another replayable choice, derived from this connection's padding seed
    /// (tunnel-core's `GetDerivedPRNG`). On a server the seed came from the client's padding.
    ///
    /// # Errors
    /// See [`PrngSeed::salted`].
    pub fn derived_prng(&self, salt: &str) -> Result<Prng> {
        Prng::with_salt(&self.padding_seed, salt)
    }
}
