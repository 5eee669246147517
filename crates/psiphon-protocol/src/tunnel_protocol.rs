//! Tunnel protocol names and the server entry capabilities that advertise them.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Capability: the server accepts Psiphon API requests as SSH requests.
pub const CAPABILITY_SSH_API_REQUESTS: &str = "ssh-api-requests";
/// Capability: the server runs the legacy HTTPS web API.
pub const CAPABILITY_UNTUNNELED_WEB_API_REQUESTS: &str = "handshake";
/// Client capability (SSH password payload): the client accepts server-to-client requests.
pub const CLIENT_CAPABILITY_SERVER_REQUESTS: &str = "server-requests";
/// Prefix of in-proxy variants of tunnel protocols (`INPROXY-WEBRTC-OSSH`, ...).
pub const INPROXY_PROTOCOL_PREFIX: &str = "INPROXY-WEBRTC-";
/// Capability suffix that hides a passthrough-enabled protocol from older clients.
pub const PASSTHROUGH_SUFFIX: &str = "-PASSTHROUGH";
/// Capability suffix for the second passthrough message version.
pub const PASSTHROUGH_V2_SUFFIX: &str = "-PASSTHROUGH-v2";
/// Capability suffix for tactics requests over a meek protocol.
pub const TACTICS_SUFFIX: &str = "-TACTICS";

/// A tunnel protocol (the transport stack under SSH), as named on the wire in
/// `relay_protocol`, in tactics and in configuration.
///
/// In-proxy variants (`INPROXY-WEBRTC-<name>`) are not modelled yet; see
/// [`is_valid_relay_protocol`] for the server-side name check that accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TunnelProtocol {
    /// `SSH`: plain SSH.
    Ssh,
    /// `OSSH`: obfuscated SSH over TCP.
    Ossh,
    /// `TLS-OSSH`: OSSH inside TLS.
    TlsOssh,
    /// `UNFRONTED-MEEK-OSSH`: meek over HTTP, direct to the server.
    UnfrontedMeekOssh,
    /// `UNFRONTED-MEEK-HTTPS-OSSH`: meek over HTTPS, direct to the server.
    UnfrontedMeekHttpsOssh,
    /// `UNFRONTED-MEEK-SESSION-TICKET-OSSH`: meek over HTTPS with obfuscated session tickets.
    UnfrontedMeekSessionTicketOssh,
    /// `FRONTED-MEEK-OSSH`: meek over HTTPS through a CDN.
    FrontedMeekOssh,
    /// `FRONTED-MEEK-HTTP-OSSH`: meek over HTTP through a CDN.
    FrontedMeekHttpOssh,
    /// `QUIC-OSSH`: OSSH over obfuscated QUIC.
    QuicOssh,
    /// `FRONTED-MEEK-QUIC-OSSH`: meek over QUIC through a CDN.
    FrontedMeekQuicOssh,
    /// `SHADOWSOCKS-OSSH`: OSSH inside Shadowsocks.
    ShadowsocksOssh,
    /// `TAPDANCE-OSSH`: refraction networking (disabled in tunnel-core).
    TapdanceOssh,
    /// `CONJURE-OSSH`: refraction networking.
    ConjureOssh,
}

impl TunnelProtocol {
    /// Every protocol, in tunnel-core's order (`SupportedTunnelProtocols`).
    pub const ALL: [TunnelProtocol; 13] = [
        TunnelProtocol::Ssh,
        TunnelProtocol::Ossh,
        TunnelProtocol::TlsOssh,
        TunnelProtocol::UnfrontedMeekOssh,
        TunnelProtocol::UnfrontedMeekHttpsOssh,
        TunnelProtocol::UnfrontedMeekSessionTicketOssh,
        TunnelProtocol::FrontedMeekOssh,
        TunnelProtocol::FrontedMeekHttpOssh,
        TunnelProtocol::QuicOssh,
        TunnelProtocol::FrontedMeekQuicOssh,
        TunnelProtocol::TapdanceOssh,
        TunnelProtocol::ConjureOssh,
        TunnelProtocol::ShadowsocksOssh,
    ];

    /// The wire name, e.g. `"UNFRONTED-MEEK-HTTPS-OSSH"`.
    pub const fn name(self) -> &'static str {
        match self {
            TunnelProtocol::Ssh => "SSH",
            TunnelProtocol::Ossh => "OSSH",
            TunnelProtocol::TlsOssh => "TLS-OSSH",
            TunnelProtocol::UnfrontedMeekOssh => "UNFRONTED-MEEK-OSSH",
            TunnelProtocol::UnfrontedMeekHttpsOssh => "UNFRONTED-MEEK-HTTPS-OSSH",
            TunnelProtocol::UnfrontedMeekSessionTicketOssh => "UNFRONTED-MEEK-SESSION-TICKET-OSSH",
            TunnelProtocol::FrontedMeekOssh => "FRONTED-MEEK-OSSH",
            TunnelProtocol::FrontedMeekHttpOssh => "FRONTED-MEEK-HTTP-OSSH",
            TunnelProtocol::QuicOssh => "QUIC-OSSH",
            TunnelProtocol::FrontedMeekQuicOssh => "FRONTED-MEEK-QUIC-OSSH",
            TunnelProtocol::ShadowsocksOssh => "SHADOWSOCKS-OSSH",
            TunnelProtocol::TapdanceOssh => "TAPDANCE-OSSH",
            TunnelProtocol::ConjureOssh => "CONJURE-OSSH",
        }
    }

    /// The server entry capability that advertises this protocol: the name without its
    /// trailing `-OSSH` (`SSH` stays `SSH`).
    pub fn capability(self) -> &'static str {
        let name = self.name();
        name.strip_suffix("-OSSH").unwrap_or(name)
    }

    /// The capability for tactics requests over this protocol (`<capability>-TACTICS`).
    pub fn tactics_capability(self) -> String {
        format!("{}{TACTICS_SUFFIX}", self.capability())
    }

    /// Looks a wire name up (exact, case-sensitive, as tunnel-core compares).
    pub fn from_name(name: &str) -> Option<TunnelProtocol> {
        TunnelProtocol::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Everything but `SSH` runs obfuscated SSH.
    pub const fn uses_obfuscated_ssh(self) -> bool {
        !matches!(self, TunnelProtocol::Ssh)
    }

    /// Meek (HTTP(S)/QUIC request-response transport) protocols.
    pub const fn uses_meek(self) -> bool {
        matches!(
            self,
            TunnelProtocol::UnfrontedMeekOssh
                | TunnelProtocol::UnfrontedMeekHttpsOssh
                | TunnelProtocol::UnfrontedMeekSessionTicketOssh
                | TunnelProtocol::FrontedMeekOssh
                | TunnelProtocol::FrontedMeekHttpOssh
                | TunnelProtocol::FrontedMeekQuicOssh
        )
    }

    /// Protocols dialled through a CDN rather than to the server's address.
    pub const fn uses_fronted_meek(self) -> bool {
        matches!(
            self,
            TunnelProtocol::FrontedMeekOssh
                | TunnelProtocol::FrontedMeekHttpOssh
                | TunnelProtocol::FrontedMeekQuicOssh
        )
    }

    /// QUIC (UDP) protocols.
    pub const fn uses_quic(self) -> bool {
        matches!(
            self,
            TunnelProtocol::QuicOssh | TunnelProtocol::FrontedMeekQuicOssh
        )
    }

    /// TCP protocols (all but the QUIC ones).
    pub const fn uses_tcp(self) -> bool {
        !self.uses_quic()
    }

    /// TapDance and Conjure.
    pub const fn uses_refraction_networking(self) -> bool {
        matches!(
            self,
            TunnelProtocol::TapdanceOssh | TunnelProtocol::ConjureOssh
        )
    }

    /// Protocols whose servers may run a passthrough (probe forwarding) mechanism.
    pub const fn supports_passthrough(self) -> bool {
        matches!(
            self,
            TunnelProtocol::UnfrontedMeekHttpsOssh
                | TunnelProtocol::UnfrontedMeekSessionTicketOssh
                | TunnelProtocol::UnfrontedMeekOssh
                | TunnelProtocol::TlsOssh
        )
    }

    /// Disabled entirely in tunnel-core (cannot be enabled by tactics): `TAPDANCE-OSSH`.
    pub const fn is_disabled(self) -> bool {
        matches!(self, TunnelProtocol::TapdanceOssh)
    }

    /// Not selected unless explicitly enabled: `FRONTED-MEEK-QUIC-OSSH`, `TAPDANCE-OSSH`,
    /// `CONJURE-OSSH`.
    pub const fn is_default_disabled(self) -> bool {
        matches!(
            self,
            TunnelProtocol::FrontedMeekQuicOssh
                | TunnelProtocol::TapdanceOssh
                | TunnelProtocol::ConjureOssh
        )
    }
}

impl fmt::Display for TunnelProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TunnelProtocol {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TunnelProtocol::from_name(s).ok_or_else(|| Error::UnknownTunnelProtocol(s.to_owned()))
    }
}

/// Whether `name` is a tunnel protocol psiphond accepts as `relay_protocol`: one of
/// [`TunnelProtocol::ALL`], or an in-proxy variant `INPROXY-WEBRTC-<name>` of one that is
/// not refraction networking.
pub fn is_valid_relay_protocol(name: &str) -> bool {
    match name.strip_prefix(INPROXY_PROTOCOL_PREFIX) {
        Some(inner) => {
            TunnelProtocol::from_name(inner).is_some_and(|p| !p.uses_refraction_networking())
        }
        None => TunnelProtocol::from_name(name).is_some(),
    }
}

/// A capability string with its passthrough markers removed and `QUICv1` read as `QUIC`,
/// which is how tunnel-core matches capabilities against protocols.
pub fn normalize_capability(capability: &str) -> String {
    let stripped = capability
        .replace(PASSTHROUGH_V2_SUFFIX, "")
        .replace(PASSTHROUGH_SUFFIX, "");
    if stripped == "QUICv1" {
        TunnelProtocol::QuicOssh.capability().to_owned()
    } else {
        stripped
    }
}

/// Whether a list of capabilities contains `required`, with tunnel-core's matching rules:
/// passthrough markers ignored, `QUICv1` counts as `QUIC`, and `TLS` is also implied by
/// `UNFRONTED-MEEK-HTTPS-PASSTHROUGH-v2` and `UNFRONTED-MEEK-SESSION-TICKET-PASSTHROUGH-v2`
/// (those servers accept TLS-OSSH on the meek port).
pub fn capabilities_include<'a>(
    capabilities: impl IntoIterator<Item = &'a str>,
    required: &str,
) -> bool {
    let tls = TunnelProtocol::TlsOssh.capability();
    capabilities.into_iter().any(|capability| {
        if normalize_capability(capability) == required {
            return true;
        }
        required == tls
            && [
                TunnelProtocol::UnfrontedMeekHttpsOssh,
                TunnelProtocol::UnfrontedMeekSessionTicketOssh,
            ]
            .iter()
            .any(|p| capability.strip_suffix(PASSTHROUGH_V2_SUFFIX) == Some(p.capability()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_capabilities() {
        for p in TunnelProtocol::ALL {
            assert_eq!(p.name().parse::<TunnelProtocol>().unwrap(), p);
            assert!(is_valid_relay_protocol(p.name()));
        }
        assert_eq!(TunnelProtocol::Ssh.capability(), "SSH");
        assert_eq!(TunnelProtocol::TlsOssh.capability(), "TLS");
        assert_eq!(TunnelProtocol::QuicOssh.capability(), "QUIC");
        assert_eq!(
            TunnelProtocol::UnfrontedMeekSessionTicketOssh.capability(),
            "UNFRONTED-MEEK-SESSION-TICKET"
        );
        assert_eq!(
            TunnelProtocol::FrontedMeekOssh.tactics_capability(),
            "FRONTED-MEEK-TACTICS"
        );
        assert!("ossh".parse::<TunnelProtocol>().is_err());
        assert!(is_valid_relay_protocol("INPROXY-WEBRTC-OSSH"));
        assert!(!is_valid_relay_protocol("INPROXY-WEBRTC-CONJURE-OSSH"));
        assert!(!is_valid_relay_protocol("INPROXY-WEBRTC-"));
        assert!(!is_valid_relay_protocol("OSSH "));
    }

    #[test]
    fn capability_matching() {
        let caps = [
            "UNFRONTED-MEEK-HTTPS-PASSTHROUGH-v2",
            "QUICv1",
            "OSSH-PASSTHROUGH",
        ];
        assert!(capabilities_include(caps, "UNFRONTED-MEEK-HTTPS"));
        assert!(capabilities_include(caps, "TLS"));
        assert!(capabilities_include(caps, "QUIC"));
        assert!(capabilities_include(caps, "OSSH"));
        assert!(!capabilities_include(caps, "SSH"));
        assert!(!capabilities_include(["UNFRONTED-MEEK-HTTPS"], "TLS"));
        assert!(!capabilities_include(
            ["UNFRONTED-MEEK-HTTPS-PASSTHROUGH"],
            "TLS"
        ));
    }
}
