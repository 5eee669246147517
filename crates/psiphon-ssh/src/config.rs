//! Configuration of the SSH core, client and server.

use std::sync::Arc;
use std::time::Duration;

use crate::cipher::{CipherAlg, MacAlg};
use crate::kex::KexAlg;
use crate::keys::{PrivateKey, PublicKey};

/// Settings both sides share.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our identification string without CRLF, e.g. `SSH-2.0-OpenSSH_8.9`.
    pub version: String,
    /// Key exchange methods in our order of preference.
    pub kex: Vec<KexAlg>,
    /// Ciphers in our order of preference.
    pub ciphers: Vec<CipherAlg>,
    /// MACs (used only with non-AEAD ciphers) in our order of preference. Psiphon's obfuscated
    /// protocols drop the ETM variants, which show packet lengths in clear.
    pub macs: Vec<MacAlg>,
    /// Start a new key exchange after this many bytes in either direction.
    pub rekey_bytes: u64,
    /// Start a new key exchange after this much time.
    pub rekey_interval: Duration,
    /// Receive window per channel; also the most a channel buffers.
    pub channel_window: u32,
    /// Largest data packet we accept on a channel.
    pub channel_max_packet: u32,
    /// Most channels open at once; further opens are refused with RESOURCE_SHORTAGE.
    pub max_channels: usize,
    /// Most inbound global requests awaiting the application's reply; more are refused.
    pub max_pending_requests: usize,
    /// Reply to `keepalive@openssh.com` with success and 0–256 random bytes, as psiphond does
    /// (rather than failure, as OpenSSH does).
    pub keepalive_reply_padding: bool,
    /// Most bytes of identification lines and pre-version banner lines we read.
    pub max_banner_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: "SSH-2.0-OpenSSH_9.2".to_owned(),
            kex: KexAlg::ALL.to_vec(),
            ciphers: CipherAlg::ALL.to_vec(),
            macs: MacAlg::ALL.to_vec(),
            rekey_bytes: 1 << 30,
            rekey_interval: Duration::from_secs(3600),
            channel_window: 2 * 1024 * 1024,
            channel_max_packet: 32 * 1024,
            max_channels: 4096,
            max_pending_requests: 64,
            keepalive_reply_padding: true,
            max_banner_bytes: 16 * 1024,
        }
    }
}

/// How the client proves who it is.
#[derive(Clone)]
pub enum ClientAuth {
    /// `password` method. For Psiphon this is the JSON password payload.
    Password(String),
    /// `publickey` method with this key.
    PublicKey(Arc<PrivateKey>),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Password(_) => f.write_str("Password(<redacted>)"),
            ClientAuth::PublicKey(k) => write!(f, "PublicKey({k:?})"),
        }
    }
}

/// Decides whether a server's host key is the one we expect.
pub type HostKeyCheck = Arc<dyn Fn(&PublicKey) -> bool + Send + Sync>;

/// Client settings.
#[derive(Clone)]
pub struct ClientConfig {
    /// Shared settings.
    pub common: Config,
    /// The user name to authenticate as.
    pub user: String,
    /// The authentication method.
    pub auth: ClientAuth,
    /// Called once with the server's host key, after its signature verified; `false` aborts.
    pub host_key_check: HostKeyCheck,
    /// Host key signature algorithms we accept, in our order of preference; names we cannot
    /// verify are left out of our offer. Default: [`ClientConfig::HOST_KEY_ALGORITHMS`].
    pub host_key_algorithms: Vec<&'static str>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("common", &self.common)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field("host_key_algorithms", &self.host_key_algorithms)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Every host key signature algorithm we can verify, best first.
    pub const HOST_KEY_ALGORITHMS: [&'static str; 4] =
        ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];

    /// A client that accepts only a server presenting exactly `expected` (byte equality of the
    /// key blob, as psiphon-tunnel-core checks a server entry's `sshHostKey`).
    pub fn new(user: impl Into<String>, auth: ClientAuth, expected: PublicKey) -> Self {
        ClientConfig {
            common: Config::default(),
            user: user.into(),
            auth,
            host_key_check: Arc::new(move |k| *k == expected),
            host_key_algorithms: Self::HOST_KEY_ALGORITHMS.to_vec(),
        }
    }

    /// A client that accepts any host key. Only for tests and tools: without a host key check
    /// anyone on the path can read the tunnel.
    pub fn dangerously_accept_any_host_key(user: impl Into<String>, auth: ClientAuth) -> Self {
        ClientConfig {
            common: Config::default(),
            user: user.into(),
            auth,
            host_key_check: Arc::new(|_| true),
            host_key_algorithms: Self::HOST_KEY_ALGORITHMS.to_vec(),
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Shared settings.
    pub common: Config,
    /// Host keys; at least one.
    pub host_keys: Vec<Arc<PrivateKey>>,
    /// Authentication attempts allowed before we disconnect.
    pub max_auth_attempts: u32,
}

impl ServerConfig {
    /// A server with one host key and default settings.
    pub fn new(host_key: Arc<PrivateKey>) -> Self {
        ServerConfig {
            common: Config {
                version: "SSH-2.0-Psiphon".to_owned(),
                ..Config::default()
            },
            host_keys: vec![host_key],
            max_auth_attempts: 10,
        }
    }
}

/// The server's password check: `(user, password) -> accept`. It runs once per attempt; a
/// Psiphon server parses the JSON payload here and compares in constant time.
pub type PasswordCheck = Box<dyn FnMut(&str, &[u8]) -> bool + Send>;
