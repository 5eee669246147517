//! The obfuscation keyword, key derivation and the RC4 streams (wire spec 1.1, 1.2).

use std::fmt;

use aws_lc_rs::digest;
use rc4::consts::U16;
use rc4::{KeyInit, Rc4, StreamCipher};

use crate::error::{Error, Result};

/// Length of the client's obfuscation seed.
pub const SEED_LEN: usize = 16;
/// Length of each RC4 key.
pub const KEY_LEN: usize = 16;
/// Extra SHA-1 rounds after the first one in the key derivation.
pub const HASH_ITERATIONS: usize = 6000;
/// The magic value that follows the seed, big-endian, encrypted.
pub const MAGIC: u32 = 0x0BF5_CA7E;
/// Largest padding in the client preamble.
pub const MAX_PADDING: usize = 8192;
/// Seed, magic and padding length: the fixed-size start of a preamble.
pub const PREAMBLE_HEADER_LEN: usize = SEED_LEN + 8;

/// The per-server obfuscation secret (`sshObfuscatedKey` in a server entry).
///
/// Used as the raw bytes of the string as given (by convention 64 hex characters); it is not
/// hex-decoded. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyword(Box<[u8]>);

impl Keyword {
    /// Takes the keyword string as it appears in the server entry or server config.
    ///
    /// # Errors
    /// [`Error::Config`] if it is empty.
    pub fn new(keyword: &str) -> Result<Self> {
        if keyword.is_empty() {
            return Err(Error::Config {
                what: "empty obfuscation keyword",
            });
        }
        Ok(Self(keyword.as_bytes().into()))
    }

    /// The bytes that enter the key derivation.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keyword(<redacted>)")
    }
}

/// Which way bytes travel; selects the key derivation and terminator labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server, label `client_to_server`.
    ClientToServer,
    /// Server to client, label `server_to_client`.
    ServerToClient,
}

impl Direction {
    /// The label mixed into key derivation and prefix terminators.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::ClientToServer => "client_to_server",
            Self::ServerToClient => "server_to_client",
        }
    }

    /// Parses a label; anything but the two exact labels is `None`.
    #[must_use]
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "client_to_server" => Some(Self::ClientToServer),
            "server_to_client" => Some(Self::ServerToClient),
            _ => None,
        }
    }
}

/// RC4 key for one direction: SHA-1(seed ‖ keyword ‖ label), then 6000 further SHA-1 rounds
/// over the digest, truncated to 16 bytes. `keyword` is [`Keyword::as_bytes`]; the primitive
/// itself also accepts the empty keyword, which a configuration never does.
///
/// # Errors
/// [`Error::Internal`] only if the digest were shorter than a key, which SHA-1 never is.
pub fn derive_key(
    seed: &[u8; SEED_LEN],
    keyword: &[u8],
    direction: Direction,
) -> Result<[u8; KEY_LEN]> {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(seed);
    ctx.update(keyword);
    ctx.update(direction.label().as_bytes());
    let mut hash = ctx.finish();
    for _ in 0..HASH_ITERATIONS {
        hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, hash.as_ref());
    }
    let truncated = hash.as_ref().get(..KEY_LEN).ok_or(Error::Internal {
        what: "digest shorter than an RC4 key",
    })?;
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(truncated);
    Ok(key)
}

/// One continuous RC4 keystream (no bytes dropped), applied in place.
pub struct Rc4Stream(Rc4<U16>);

impl Rc4Stream {
    /// Starts a keystream at offset 0.
    #[must_use]
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(Rc4::new(&(*key).into()))
    }

    /// XORs the next `buf.len()` keystream bytes into `buf`.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

impl fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rc4Stream(..)")
    }
}

/// Both directions' streams for one connection.
#[derive(Debug)]
pub(crate) struct CipherPair {
    pub(crate) client_to_server: Rc4Stream,
    pub(crate) server_to_client: Rc4Stream,
}

impl CipherPair {
    pub(crate) fn derive(seed: &[u8; SEED_LEN], keyword: &Keyword) -> Result<Self> {
        Ok(Self {
            client_to_server: Rc4Stream::new(&derive_key(
                seed,
                keyword.as_bytes(),
                Direction::ClientToServer,
            )?),
            server_to_client: Rc4Stream::new(&derive_key(
                seed,
                keyword.as_bytes(),
                Direction::ServerToClient,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_must_not_be_empty() {
        assert_eq!(
            Keyword::new("").unwrap_err().kind(),
            crate::ErrorKind::Config
        );
        assert_eq!(Keyword::new("ab").unwrap().as_bytes(), b"ab");
    }

    #[test]
    fn keyword_debug_is_redacted() {
        let k = Keyword::new("secret-keyword").unwrap();
        assert!(!format!("{k:?}").contains("secret"));
    }

    #[test]
    fn rc4_stream_is_continuous_across_calls() {
        let key = [7u8; KEY_LEN];
        let mut a = Rc4Stream::new(&key);
        let mut b = Rc4Stream::new(&key);
        let mut data = *b"continuous stream across calls!!";
        a.apply(&mut data[..5]);
        a.apply(&mut data[5..]);
        assert_ne!(&data, b"continuous stream across calls!!");
        b.apply(&mut data);
        assert_eq!(&data, b"continuous stream across calls!!");
    }

    #[test]
    fn direction_labels_round_trip() {
        for d in [Direction::ClientToServer, Direction::ServerToClient] {
            assert_eq!(Direction::from_label(d.label()), Some(d));
        }
        assert_eq!(Direction::from_label("server_to_clint"), None);
    }
}
