//! Tunnel protocols as plug-ins (design.md, "Transports are plug-ins"): on the client, a
//! [`TunnelDialer`] turns a connected stream into the stream SSH runs over; on the server, a
//! [`TunnelAcceptor`] does the same for an accepted one. The client's controller and the
//! server's listener loop look a protocol up ([`dialer_for`], [`acceptor_for`]) and never match
//! on its name: adding TLS-OSSH or meek adds a type here and a line in each lookup.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use psiphon_obfs::{
    ClientConfig as OsshClientConfig, Keyword, ObfuscatedStream, PeerMatch, ProbeReason,
};
use psiphon_protocol::{ServerEntry, TunnelProtocol};

use crate::BoxIo;

/// The client side of one tunnel protocol.
pub trait TunnelDialer: Send + Sync + std::fmt::Debug {
    /// The protocol it implements.
    fn protocol(&self) -> TunnelProtocol;
    /// Wraps a connected stream into the one SSH runs over (no I/O yet: obfuscation layers
    /// send their first bytes with SSH's). Errors say what the entry lacks.
    fn wrap(&self, entry: &ServerEntry, stream: BoxIo) -> Result<BoxIo, String>;
    /// Whether SSH runs under an obfuscation layer (then no encrypt-then-MAC is offered, as
    /// tunnel-core does: ETM leaves packet lengths in clear).
    fn obfuscated_ssh(&self) -> bool;
}

/// Why an accepted connection did not become a tunnel stream. Deliberately uninformative:
/// a probe gets silence; the server logs a count, and an `irregular_tunnel` event when
/// [`AcceptError::irregular`] says the first flight was foreign or replayed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AcceptError {
    /// What went wrong (may hold peer-derived detail: not for logs).
    pub message: String,
    /// Set when the peer's first flight was rejected as tunnel-core's psiphond logs as an
    /// `irregular_tunnel`.
    pub irregular: Option<Irregular>,
}

impl AcceptError {
    /// An error that is not irregular (I/O, timeout, configuration).
    pub fn new(message: impl Into<String>) -> AcceptError {
        AcceptError {
            message: message.into(),
            irregular: None,
        }
    }

    /// The irregularity, if any.
    pub fn irregular(&self) -> Option<&Irregular> {
        self.irregular.as_ref()
    }
}

/// A rejected first flight, described only by fixed texts and numbers safe to log (no
/// address, no payload).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Irregular {
    /// tunnel-core's error text: `invalid magic value`, `invalid padding length`,
    /// `duplicate obfuscation seed`, ...
    pub tunnel_error: String,
    /// For a replayed seed: how long ago it was first seen, and whether from the same
    /// address (`equal`, `unequal` or `unknown`; never the address).
    pub duplicate: Option<(Duration, &'static str)>,
}

impl Irregular {
    /// From an OSSH accept error: probes (except a plain early EOF) and replayed seeds.
    pub fn from_obfs(error: &psiphon_obfs::Error) -> Option<Irregular> {
        match error {
            psiphon_obfs::Error::Probe { reason } if *reason != ProbeReason::Truncated => {
                Some(Irregular {
                    tunnel_error: reason.to_string(),
                    duplicate: None,
                })
            }
            psiphon_obfs::Error::ReplayedSeed { elapsed, peer } => Some(Irregular {
                tunnel_error: "duplicate obfuscation seed".to_owned(),
                duplicate: Some((
                    *elapsed,
                    match peer {
                        PeerMatch::Equal => "equal",
                        PeerMatch::Unequal => "unequal",
                        PeerMatch::Unknown => "unknown",
                    },
                )),
            }),
            _ => None,
        }
    }
}

/// The server side of one tunnel protocol.
pub trait TunnelAcceptor: Send + Sync + std::fmt::Debug {
    /// The protocol it serves.
    fn protocol(&self) -> TunnelProtocol;
    /// Whether SSH runs under an obfuscation layer here (the server then offers the SSH
    /// algorithms tunnel-core uses under OSSH).
    fn obfuscated(&self) -> bool;
    /// Turns an accepted stream into the one SSH runs over. `peer` is used only by layers
    /// that need it (OSSH's seed replay history) and is not kept.
    fn accept<'a>(
        &'a self,
        stream: BoxIo,
        peer: IpAddr,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, AcceptError>> + Send + 'a>>;
}

/// Plain SSH: the stream as it is.
#[derive(Debug)]
pub struct Ssh;

impl TunnelDialer for Ssh {
    fn protocol(&self) -> TunnelProtocol {
        TunnelProtocol::Ssh
    }

    fn obfuscated_ssh(&self) -> bool {
        false
    }

    fn wrap(&self, _entry: &ServerEntry, stream: BoxIo) -> Result<BoxIo, String> {
        Ok(stream)
    }
}

impl TunnelAcceptor for Ssh {
    fn protocol(&self) -> TunnelProtocol {
        TunnelProtocol::Ssh
    }

    fn obfuscated(&self) -> bool {
        false
    }

    fn accept<'a>(
        &'a self,
        stream: BoxIo,
        _peer: IpAddr,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, AcceptError>> + Send + 'a>> {
        Box::pin(async move { Ok(stream) })
    }
}

/// Obfuscated SSH: the entry's `sshObfuscatedKey` on the client; the server's keyword and seed
/// history on the server.
#[derive(Debug, Default)]
pub struct Ossh {
    server: Option<Arc<psiphon_obfs::ServerConfig>>,
}

impl Ossh {
    /// The server side with its OSSH config.
    pub fn server(config: Arc<psiphon_obfs::ServerConfig>) -> Ossh {
        Ossh {
            server: Some(config),
        }
    }
}

impl TunnelDialer for Ossh {
    fn protocol(&self) -> TunnelProtocol {
        TunnelProtocol::Ossh
    }

    fn obfuscated_ssh(&self) -> bool {
        true
    }

    fn wrap(&self, entry: &ServerEntry, stream: BoxIo) -> Result<BoxIo, String> {
        let key = entry
            .ssh_obfuscated_key()
            .ok_or_else(|| "no sshObfuscatedKey".to_owned())?;
        let keyword = Keyword::new(key).map_err(|e| e.to_string())?;
        let ossh = ObfuscatedStream::client(stream, &OsshClientConfig::new(keyword))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(ossh))
    }
}

impl TunnelAcceptor for Ossh {
    fn protocol(&self) -> TunnelProtocol {
        TunnelProtocol::Ossh
    }

    fn obfuscated(&self) -> bool {
        true
    }

    fn accept<'a>(
        &'a self,
        stream: BoxIo,
        peer: IpAddr,
    ) -> Pin<Box<dyn Future<Output = Result<BoxIo, AcceptError>> + Send + 'a>> {
        Box::pin(async move {
            let config = self
                .server
                .as_ref()
                .ok_or_else(|| AcceptError::new("OSSH acceptor without a server config"))?;
            let s = ObfuscatedStream::accept_from(stream, config, Some(peer))
                .await
                .map_err(|e| AcceptError {
                    message: e.to_string(),
                    irregular: Irregular::from_obfs(&e),
                })?;
            Ok(Box::new(s) as BoxIo)
        })
    }
}

/// The protocols implemented here, in the client's default preference order.
pub const IMPLEMENTED: [TunnelProtocol; 2] = [TunnelProtocol::Ossh, TunnelProtocol::Ssh];

/// The client side of a protocol, if implemented.
pub fn dialer_for(protocol: TunnelProtocol) -> Option<&'static dyn TunnelDialer> {
    static OSSH: Ossh = Ossh { server: None };
    static SSH: Ssh = Ssh;
    match protocol {
        TunnelProtocol::Ossh => Some(&OSSH),
        TunnelProtocol::Ssh => Some(&SSH),
        _ => None,
    }
}

/// What server-side acceptors may need.
#[derive(Debug, Default, Clone)]
pub struct AcceptorConfig {
    /// OSSH's keyword and seed history (required for OSSH).
    pub ossh: Option<Arc<psiphon_obfs::ServerConfig>>,
}

/// The server side of a protocol, if implemented and configured.
pub fn acceptor_for(
    protocol: TunnelProtocol,
    config: &AcceptorConfig,
) -> Option<Arc<dyn TunnelAcceptor>> {
    match protocol {
        TunnelProtocol::Ossh => config
            .ossh
            .clone()
            .map(|c| Arc::new(Ossh::server(c)) as Arc<dyn TunnelAcceptor>),
        TunnelProtocol::Ssh => Some(Arc::new(Ssh)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use psiphon_obfs::SeedHistory;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const KEY: &str = "6b9e1f0e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccdde";

    #[test]
    fn lookups() {
        for p in IMPLEMENTED {
            assert_eq!(dialer_for(p).map(TunnelDialer::protocol), Some(p));
        }
        assert!(dialer_for(TunnelProtocol::TlsOssh).is_none());
        let none = AcceptorConfig::default();
        assert!(
            acceptor_for(TunnelProtocol::Ossh, &none).is_none(),
            "OSSH needs its key"
        );
        assert!(
            !acceptor_for(TunnelProtocol::Ssh, &none)
                .unwrap()
                .obfuscated()
        );
    }

    #[tokio::test]
    async fn ssh_runs_over_each_dialer_and_acceptor_pair() {
        let host = Arc::new(psiphon_ssh::PrivateKey::generate_ed25519().unwrap());
        let entry = ServerEntry::from_json(
            format!(r#"{{"ipAddress":"192.0.2.1","sshObfuscatedKey":"{KEY}"}}"#).as_bytes(),
        )
        .unwrap();
        let config = AcceptorConfig {
            ossh: Some(Arc::new(psiphon_obfs::ServerConfig::new(
                Keyword::new(KEY).unwrap(),
                Arc::new(SeedHistory::default()),
            ))),
        };
        for protocol in IMPLEMENTED {
            let acceptor = acceptor_for(protocol, &config).unwrap();
            let (a, b) = tokio::io::duplex(1 << 16);
            let server_host = host.clone();
            let server = tokio::spawn(async move {
                let s = acceptor
                    .accept(Box::new(b), "192.0.2.9".parse().unwrap())
                    .await
                    .unwrap();
                let mut conn = psiphon_ssh::accept(
                    s,
                    psiphon_ssh::ServerConfig::new(server_host),
                    Box::new(|_: &str, p: &[u8]| p == b"pw"),
                )
                .await
                .unwrap();
                if let Some(psiphon_ssh::Incoming::Channel(c)) = conn.next_incoming().await {
                    let mut ch = c.accept().unwrap();
                    let mut buf = [0u8; 5];
                    ch.read_exact(&mut buf).await.unwrap();
                    ch.write_all(&buf).await.unwrap();
                    ch.shutdown().await.unwrap();
                }
            });
            let stream = dialer_for(protocol)
                .unwrap()
                .wrap(&entry, Box::new(a))
                .unwrap();
            let cfg = psiphon_ssh::ClientConfig::new(
                "u",
                psiphon_ssh::ClientAuth::Password("pw".into()),
                host.public_key().clone(),
            );
            let work = async {
                let conn = psiphon_ssh::connect(stream, cfg).await.unwrap();
                let mut ch = conn
                    .handle()
                    .open_direct_tcpip("example.org", 80)
                    .await
                    .unwrap();
                ch.write_all(b"hello").await.unwrap();
                let mut back = Vec::new();
                ch.read_to_end(&mut back).await.unwrap();
                assert_eq!(back, b"hello", "{protocol}");
            };
            tokio::time::timeout(std::time::Duration::from_secs(20), work)
                .await
                .unwrap_or_else(|_| panic!("{protocol}: SSH over the plug-in timed out"));
            server.await.unwrap();
        }

        // An entry without the key cannot be wrapped.
        let bare = ServerEntry::from_json(br#"{"ipAddress":"192.0.2.1"}"#).unwrap();
        let (a, _b) = tokio::io::duplex(64);
        let err = dialer_for(TunnelProtocol::Ossh)
            .unwrap()
            .wrap(&bare, Box::new(a))
            .err()
            .unwrap();
        assert!(err.contains("sshObfuscatedKey"), "{err}");
    }

    #[test]
    fn irregular_accept_errors() {
        use psiphon_obfs::Error as E;
        let probe = Irregular::from_obfs(&E::Probe {
            reason: ProbeReason::InvalidMagicAfterPrefix,
        })
        .unwrap();
        assert_eq!(probe.tunnel_error, "invalid magic value");
        assert!(probe.duplicate.is_none());
        let replay = Irregular::from_obfs(&E::ReplayedSeed {
            elapsed: Duration::from_millis(1500),
            peer: PeerMatch::Unequal,
        })
        .unwrap();
        assert_eq!(replay.tunnel_error, "duplicate obfuscation seed");
        assert_eq!(
            replay.duplicate,
            Some((Duration::from_millis(1500), "unequal"))
        );
        // An early EOF or a timeout is not irregular.
        assert!(
            Irregular::from_obfs(&E::Probe {
                reason: ProbeReason::Truncated
            })
            .is_none()
        );
        assert!(
            Irregular::from_obfs(&E::HandshakeTimeout {
                timeout: Duration::from_secs(1),
                step: psiphon_obfs::Step::ClientPreamble,
            })
            .is_none()
        );
    }
}
