//! What a server entry offers: capabilities, tunnel protocols and their dial ports.

use super::{FRONTED_MEEK_HTTP_PORT, FRONTED_MEEK_HTTPS_PORT, ServerEntry};
use crate::error::{Error, Result};
use crate::tunnel_protocol::{CAPABILITY_SSH_API_REQUESTS, TunnelProtocol, capabilities_include};

impl ServerEntry {
    /// Whether the entry has capability `capability`, with tunnel-core's matching rules (see
    /// [`capabilities_include`]).
    pub fn has_capability(&self, capability: &str) -> bool {
        capabilities_include(self.capabilities(), capability)
    }

    /// Whether the entry advertises `protocol`.
    pub fn supports(&self, protocol: TunnelProtocol) -> bool {
        self.has_capability(protocol.capability())
    }

    /// Whether the server accepts API requests over SSH (`ssh-api-requests`); without it a
    /// client must use the legacy web API.
    pub fn supports_ssh_api_requests(&self) -> bool {
        self.has_capability(CAPABILITY_SSH_API_REQUESTS)
    }

    /// Whether the server runs `protocol` with the legacy (v1) passthrough messages, i.e.
    /// lists `<capability>-PASSTHROUGH` exactly.
    pub fn uses_legacy_passthrough(&self, protocol: TunnelProtocol) -> bool {
        let legacy = format!("{}-PASSTHROUGH", protocol.capability());
        self.capabilities().contains(&legacy.as_str())
    }

    /// Whether the QUIC-OSSH server accepts only QUIC v1 (`QUICv1` without `QUIC`).
    pub fn supports_only_quic_v1(&self) -> bool {
        let caps = self.capabilities();
        caps.contains(&"QUICv1") && !caps.contains(&"QUIC")
    }

    /// The port to dial for `protocol`: the entry's port field for direct protocols, 443/80
    /// on the CDN for fronted meek. TLS-OSSH falls back to `meekServerPort` when
    /// `tlsOSSHPort` is absent.
    pub fn dial_port(&self, protocol: TunnelProtocol) -> Result<u16> {
        if !self.supports(protocol) {
            return Err(Error::ProtocolNotSupported(protocol.name()));
        }
        let port = match protocol {
            TunnelProtocol::Ssh => self.ssh_port(),
            TunnelProtocol::Ossh => self.ssh_obfuscated_port(),
            TunnelProtocol::TlsOssh => self.tls_ossh_port().or(self.meek_server_port()),
            TunnelProtocol::UnfrontedMeekOssh
            | TunnelProtocol::UnfrontedMeekHttpsOssh
            | TunnelProtocol::UnfrontedMeekSessionTicketOssh => self.meek_server_port(),
            TunnelProtocol::FrontedMeekOssh | TunnelProtocol::FrontedMeekQuicOssh => {
                Some(FRONTED_MEEK_HTTPS_PORT)
            }
            TunnelProtocol::FrontedMeekHttpOssh => Some(FRONTED_MEEK_HTTP_PORT),
            TunnelProtocol::QuicOssh => self.ssh_obfuscated_quic_port(),
            TunnelProtocol::ShadowsocksOssh => self.ssh_shadowsocks_port(),
            TunnelProtocol::TapdanceOssh => self.get_port("sshObfuscatedTapdancePort"),
            TunnelProtocol::ConjureOssh => self.get_port("sshObfuscatedConjurePort"),
        };
        port.ok_or(Error::MissingDialPort(protocol.name()))
    }

    /// The protocols this entry supports and has a dial port for, in tunnel-core's order,
    /// leaving out disabled and default-disabled ones.
    pub fn supported_protocols(&self) -> Vec<TunnelProtocol> {
        TunnelProtocol::ALL
            .into_iter()
            .filter(|p| !p.is_default_disabled() && self.dial_port(*p).is_ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn entry(v: Value) -> ServerEntry {
        match v {
            Value::Object(m) => ServerEntry::from_fields(m).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn protocols_and_ports() {
        let e = entry(json!({
            "ipAddress": "192.0.2.1", "sshPort": 22, "sshObfuscatedPort": 995,
            "meekServerPort": 8443, "sshObfuscatedQUICPort": 443,
            "capabilities": ["SSH", "OSSH", "UNFRONTED-MEEK-HTTPS-PASSTHROUGH-v2", "QUICv1",
                             "FRONTED-MEEK", "ssh-api-requests", "CONJURE", "SHADOWSOCKS"]
        }));
        assert_eq!(e.dial_port(TunnelProtocol::Ssh).unwrap(), 22);
        assert_eq!(e.dial_port(TunnelProtocol::Ossh).unwrap(), 995);
        assert_eq!(e.dial_port(TunnelProtocol::TlsOssh).unwrap(), 8443);
        assert_eq!(
            e.dial_port(TunnelProtocol::UnfrontedMeekHttpsOssh).unwrap(),
            8443
        );
        assert_eq!(e.dial_port(TunnelProtocol::FrontedMeekOssh).unwrap(), 443);
        assert_eq!(e.dial_port(TunnelProtocol::QuicOssh).unwrap(), 443);
        assert!(matches!(
            e.dial_port(TunnelProtocol::UnfrontedMeekOssh),
            Err(Error::ProtocolNotSupported(_))
        ));
        assert!(matches!(
            e.dial_port(TunnelProtocol::ShadowsocksOssh),
            Err(Error::MissingDialPort(_))
        ));
        assert!(e.supports_ssh_api_requests());
        assert!(e.supports_only_quic_v1());
        assert!(!e.uses_legacy_passthrough(TunnelProtocol::UnfrontedMeekHttpsOssh));
        assert_eq!(
            e.supported_protocols(),
            vec![
                TunnelProtocol::Ssh,
                TunnelProtocol::Ossh,
                TunnelProtocol::TlsOssh,
                TunnelProtocol::UnfrontedMeekHttpsOssh,
                TunnelProtocol::FrontedMeekOssh,
                TunnelProtocol::QuicOssh,
            ]
        );
    }
}
