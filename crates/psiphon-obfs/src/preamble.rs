//! The client's first flight (wire spec 1.3, 1.4):
//! `[P ‖ T] ‖ seed ‖ RC4c2s(magic ‖ padding_len ‖ padding [‖ prefix header])`.

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::keys::{CipherPair, Direction, MAGIC, SEED_LEN};
use crate::prefix::{encode_prefix_header, terminated_prefix};
use crate::prng::Prng;

/// A built client preamble.
#[derive(Debug)]
pub(crate) struct ClientPreamble {
    /// The bytes to send, all of them already in wire form.
    pub(crate) bytes: Vec<u8>,
    /// Length of the padding field.
    pub(crate) padding_len: usize,
}

/// Builds the preamble. The padding comes first from `padding_prng` (as in tunnel-core), and
/// the encrypted part starts the client-to-server RC4 stream of `ciphers`.
pub(crate) fn build_client_preamble(
    config: &ClientConfig,
    seed: &[u8; SEED_LEN],
    ciphers: &mut CipherPair,
    padding_prng: &mut Prng,
) -> Result<ClientPreamble> {
    let padding = padding_prng.padding(config.min_padding, config.max_padding);
    let padding_len = u32::try_from(padding.len()).map_err(|_| Error::Internal {
        what: "padding length overflow",
    })?;

    let mut bytes = Vec::new();
    if let Some(prefix) = &config.prefix {
        bytes = terminated_prefix(&config.keyword, prefix.bytes(), Direction::ClientToServer)?;
    }
    bytes.extend_from_slice(seed);
    let encrypted_from = bytes.len();
    bytes.extend_from_slice(&MAGIC.to_be_bytes());
    bytes.extend_from_slice(&padding_len.to_be_bytes());
    bytes.extend_from_slice(&padding);
    if let Some(prefix) = &config.prefix {
        encode_prefix_header(prefix.name(), &mut bytes)?;
    }
    if let Some(encrypted) = bytes.get_mut(encrypted_from..) {
        ciphers.client_to_server.apply(encrypted);
    }
    Ok(ClientPreamble {
        bytes,
        padding_len: padding.len(),
    })
}
