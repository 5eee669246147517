//! Client and server configuration, validated when built.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::history::SeedHistory;
use crate::keys::{Keyword, MAX_PADDING};
use crate::prefix::{PREFIX_MAX_LEN, PREFIX_MAX_NAME_LEN};
use crate::prng::{PRNG_SEED_LEN, PrngSeed};

/// Smallest preamble padding: the server uses the first 32 padding bytes as its PRNG seed.
pub const MIN_PADDING: usize = PRNG_SEED_LEN;

/// Default server deadline for the obfuscation handshake (psiphond's SSH handshake timeout).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A prefix the client sends before its preamble, so the first flight looks like another
/// protocol, and the name of the spec that tells the server which reply prefix to send.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientPrefix {
    name: String,
    bytes: Vec<u8>,
}

impl ClientPrefix {
    /// `bytes` is the generated prefix (padded with random bytes to 24 if shorter); `name` is
    /// the spec name sent in the prefix header.
    ///
    /// # Errors
    /// [`Error::Config`] if the name is longer than 4096 bytes or the prefix longer than 64 KiB.
    pub fn new(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let name = name.into();
        let bytes = bytes.into();
        if name.len() > PREFIX_MAX_NAME_LEN {
            return Err(Error::Config {
                what: "prefix spec name longer than 4096 bytes",
            });
        }
        if bytes.len() > PREFIX_MAX_LEN {
            return Err(Error::Config {
                what: "prefix longer than 65536 bytes",
            });
        }
        Ok(Self { name, bytes })
    }

    /// The spec name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prefix bytes as given.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for ClientPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPrefix")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Client side settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub(crate) keyword: Keyword,
    pub(crate) min_padding: usize,
    pub(crate) max_padding: usize,
    pub(crate) padding_seed: Option<PrngSeed>,
    pub(crate) prefix: Option<ClientPrefix>,
}

impl ClientConfig {
    /// Defaults: padding 32..=8192, a fresh padding seed per connection, no prefix.
    #[must_use]
    pub fn new(keyword: Keyword) -> Self {
        Self {
            keyword,
            min_padding: MIN_PADDING,
            max_padding: MAX_PADDING,
            padding_seed: None,
            prefix: None,
        }
    }

    /// Sets the preamble padding range as tunnel-core honours `ObfuscatedSSHMinPadding` and
    /// `MaxPadding`: each bound is used only if within `[32, 8192]` (and max only if `>= min`);
    /// otherwise the default (32 or 8192) stays.
    #[must_use]
    pub fn with_padding_range(mut self, min: Option<usize>, max: Option<usize>) -> Self {
        let in_range = |v: usize| (MIN_PADDING..=MAX_PADDING).contains(&v);
        self.min_padding = min.filter(|v| in_range(*v)).unwrap_or(MIN_PADDING);
        self.max_padding = max
            .filter(|v| in_range(*v) && *v >= self.min_padding)
            .unwrap_or(MAX_PADDING);
        self
    }

    /// Replays padding: the preamble padding comes from a PRNG with this seed, and the KEX
    /// packet padding from one derived from it. Without it, each connection draws a fresh seed.
    #[must_use]
    pub fn with_padding_seed(mut self, seed: PrngSeed) -> Self {
        self.padding_seed = Some(seed);
        self
    }

    /// Sends `prefix` before the preamble.
    #[must_use]
    pub fn with_prefix(mut self, prefix: ClientPrefix) -> Self {
        self.prefix = Some(prefix);
        self
    }

    /// The padding range in effect, inclusive.
    #[must_use]
    pub fn padding_range(&self) -> (usize, usize) {
        (self.min_padding, self.max_padding)
    }
}

/// Server side settings, shared by all connections of a listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub(crate) keyword: Keyword,
    pub(crate) history: Arc<SeedHistory>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) prefix_replies: HashMap<String, Vec<u8>>,
}

impl ServerConfig {
    /// A server for `keyword` that records seeds in `history` (share one history between all
    /// listeners using the same keyword). Handshake timeout 30 s, no configured prefix replies.
    #[must_use]
    pub fn new(keyword: Keyword, history: Arc<SeedHistory>) -> Self {
        Self {
            keyword,
            history,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            prefix_replies: HashMap::new(),
        }
    }

    /// How long a client has to present a valid preamble; after a rejection, how long the
    /// server keeps reading and discarding before it closes.
    ///
    /// # Errors
    /// [`Error::Config`] if zero.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Result<Self> {
        if timeout.is_zero() {
            return Err(Error::Config {
                what: "zero handshake timeout",
            });
        }
        self.handshake_timeout = timeout;
        Ok(self)
    }

    /// The prefix to answer with when a prefixed client names spec `name` (padded with random
    /// bytes to 24 if shorter). Unknown names get 24 random bytes.
    ///
    /// # Errors
    /// [`Error::Config`] if the name is longer than 4096 bytes or the prefix longer than 64 KiB.
    pub fn with_prefix_reply(
        mut self,
        name: impl Into<String>,
        prefix: impl Into<Vec<u8>>,
    ) -> Result<Self> {
        let reply = ClientPrefix::new(name, prefix)?;
        self.prefix_replies.insert(reply.name, reply.bytes);
        Ok(self)
    }

    /// The handshake deadline.
    #[must_use]
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The shared seed history.
    #[must_use]
    pub fn history(&self) -> &Arc<SeedHistory> {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_bounds_are_honoured_only_within_range() {
        let k = Keyword::new("k").unwrap();
        let c = |min, max| ClientConfig::new(k.clone()).with_padding_range(min, max);
        assert_eq!(c(None, None).padding_range(), (32, 8192));
        assert_eq!(c(Some(0), Some(8192)).padding_range(), (32, 8192));
        assert_eq!(c(Some(32), Some(48)).padding_range(), (32, 48));
        assert_eq!(c(Some(100), Some(50)).padding_range(), (100, 8192));
        assert_eq!(c(Some(40), Some(9000)).padding_range(), (40, 8192));
        assert_eq!(c(Some(8193), Some(31)).padding_range(), (32, 8192));
    }

    #[test]
    fn limits_are_checked() {
        assert!(ClientPrefix::new("x".repeat(4097), vec![]).is_err());
        assert!(ClientPrefix::new("x", vec![0; 65537]).is_err());
        let server = ServerConfig::new(Keyword::new("k").unwrap(), Arc::default());
        assert!(
            server
                .clone()
                .with_handshake_timeout(Duration::ZERO)
                .is_err()
        );
        assert!(server.with_prefix_reply("x".repeat(4097), vec![]).is_err());
    }
}
