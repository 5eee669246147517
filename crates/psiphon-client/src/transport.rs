//! Tunnel protocols as plug-ins (design.md, "Transports are plug-ins"): each protocol turns a
//! connected byte stream into the stream SSH runs over. The tunnel and the controller look a
//! protocol up here and never match on its name; adding TLS-OSSH or meek adds a type and a
//! line in [`for_protocol`].

use psiphon_obfs::{ClientConfig as OsshConfig, Keyword, ObfuscatedStream};
use psiphon_protocol::{ServerEntry, TunnelProtocol};
pub use psiphon_transport::{BoxIo, Io};

/// The client side of one tunnel protocol.
pub trait TunnelTransport: Send + Sync + std::fmt::Debug {
    /// The protocol it implements.
    fn protocol(&self) -> TunnelProtocol;
    /// Wraps a connected stream into the one SSH runs over (with no I/O yet: obfuscation
    /// layers send their first bytes with SSH's). Errors say what the entry lacks.
    fn wrap(&self, entry: &ServerEntry, stream: BoxIo) -> Result<BoxIo, String>;
}

/// Plain SSH: the stream as it is.
#[derive(Debug)]
pub struct Ssh;

impl TunnelTransport for Ssh {
    fn protocol(&self) -> TunnelProtocol {
        TunnelProtocol::Ssh
    }

    fn wrap(&self, _entry: &ServerEntry, stream: BoxIo) -> Result<BoxIo, String> {
        Ok(stream)
    }
}

/// Obfuscated SSH with the entry's `sshObfuscatedKey`.
#[derive(Debug)]
pub struct Ossh;

impl TunnelTransport for Ossh {
    fn protocol(&self) -> TunnelProtocol {
        TunnelProtocol::Ossh
    }

    fn wrap(&self, entry: &ServerEntry, stream: BoxIo) -> Result<BoxIo, String> {
        let key = entry
            .ssh_obfuscated_key()
            .ok_or_else(|| "no sshObfuscatedKey".to_owned())?;
        let keyword = Keyword::new(key).map_err(|e| e.to_string())?;
        let ossh = ObfuscatedStream::client(stream, &OsshConfig::new(keyword))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(ossh))
    }
}

/// The protocols this client implements, in default preference order.
pub const IMPLEMENTED: [TunnelProtocol; 2] = [TunnelProtocol::Ossh, TunnelProtocol::Ssh];

/// The transport for a protocol, if this client implements it.
pub fn for_protocol(protocol: TunnelProtocol) -> Option<&'static dyn TunnelTransport> {
    static OSSH: Ossh = Ossh;
    static SSH: Ssh = Ssh;
    match protocol {
        TunnelProtocol::Ossh => Some(&OSSH),
        TunnelProtocol::Ssh => Some(&SSH),
        _ => None,
    }
}
