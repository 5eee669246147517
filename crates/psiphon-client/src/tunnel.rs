//! One tunnel to one server: transport dial, OSSH, SSH with the Psiphon password payload, the
//! `psiphon-handshake`, then `psiphon-connected`, `psiphon-status` and keepalives.
//!
//! Policy (which server, which protocol, when to retry) belongs to the caller; this module only
//! knows how to build and use one tunnel.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use psiphon_protocol::api::{
    self, ApiParams, ConnectedResponse, HandshakeResponse, StatusResponse,
};
use psiphon_protocol::{ServerEntry, SshPasswordPayload, TunnelProtocol};
use psiphon_ssh::{ClientAuth, ClientConfig, Connection, Handle, MacAlg, PublicKey};

use crate::config::ApiEncoding;

/// Who this client is, as the Psiphon API reports it.
#[derive(Debug, Clone)]
pub struct ClientParams {
    /// 32 hex digits, one per client process (tunnel-core's `SessionId`).
    pub session_id: String,
    /// `PropagationChannelId`.
    pub propagation_channel_id: String,
    /// `SponsorId`.
    pub sponsor_id: String,
    /// `ClientVersion` (an integer string).
    pub client_version: String,
    /// `ClientPlatform`.
    pub client_platform: String,
    /// `DeviceRegion`: the device's own region setting (sent when not empty; psiphond keeps it
    /// next to the GeoIP region in its per-domain statistics).
    pub device_region: String,
    /// `TargetAPIEncoding`: packed CBOR (the default) or JSON request bodies.
    pub api_encoding: ApiEncoding,
}

impl ClientParams {
    fn base(&self) -> ApiParams {
        let params = ApiParams::base(
            &self.propagation_channel_id,
            &self.sponsor_id,
            &self.client_version,
            &self.client_platform,
        )
        .with_str("session_id", &self.session_id);
        if self.device_region.is_empty() {
            params
        } else {
            params.with_str("device_region", &self.device_region)
        }
    }

    /// A request body in the configured encoding. A request the packed form cannot carry (a
    /// parameter without a packed key, a value it cannot represent) goes as JSON, which every
    /// server accepts.
    fn body(&self, params: &ApiParams) -> Vec<u8> {
        match self.api_encoding {
            ApiEncoding::Cbor => params
                .to_packed()
                .unwrap_or_else(|_| params.to_json().into_bytes()),
            ApiEncoding::Json => params.to_json().into_bytes(),
        }
    }
}

/// Where a tunnel failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server entry lacks what this protocol needs.
    #[error("server entry unusable for {protocol}: {reason}")]
    Entry {
        /// The protocol.
        protocol: TunnelProtocol,
        /// What is missing.
        reason: String,
    },
    /// The network dialer (direct or through the upstream proxy) failed.
    #[error("{protocol} dial failed: {source}")]
    Net {
        /// The protocol.
        protocol: TunnelProtocol,
        /// Why.
        #[source]
        source: psiphon_transport::DialError,
    },
    /// The TCP connection failed.
    #[error("{protocol} dial failed: {source}")]
    Dial {
        /// The protocol.
        protocol: TunnelProtocol,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The whole establishment (dial, OSSH, SSH) took too long.
    #[error("{protocol} establishment timed out after {0:?}", .timeout)]
    Timeout {
        /// The protocol.
        protocol: TunnelProtocol,
        /// The limit.
        timeout: Duration,
    },
    /// The SSH layer failed.
    #[error("{step}: {source}")]
    Ssh {
        /// What we were doing.
        step: &'static str,
        /// The SSH error.
        #[source]
        source: psiphon_ssh::Error,
    },
    /// An API request failed or its response was malformed.
    #[error("{request}: {reason}")]
    Api {
        /// The request name.
        request: &'static str,
        /// What went wrong.
        reason: String,
    },
}

/// Who is at fault, for choosing what to try next.
pub use psiphon_ssh::ErrorKind;

impl Error {
    /// Who is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Entry { .. } => ErrorKind::Config,
            Error::Net { source, .. } => source.kind(),
            Error::Dial { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset => {
                    ErrorKind::Blocked
                }
                std::io::ErrorKind::TimedOut => ErrorKind::Blocked,
                _ => ErrorKind::Local,
            },
            Error::Timeout { .. } => ErrorKind::Blocked,
            Error::Ssh { source, .. } => source.kind(),
            Error::Api { .. } => ErrorKind::ServerRejected,
        }
    }
}

/// An established, handshaken tunnel.
#[derive(Debug)]
pub struct Tunnel {
    conn: Connection,
    /// The server's entry.
    pub entry: ServerEntry,
    /// The protocol used.
    pub protocol: TunnelProtocol,
    /// What the server said in the handshake.
    pub handshake: HandshakeResponse,
    /// How long dial + OSSH + SSH + handshake took.
    pub establishment: Duration,
    /// Byte activity of the underlying stream (liveness).
    pub activity: std::sync::Arc<crate::activity::Activity>,
}

fn entry_error(protocol: TunnelProtocol, reason: &str) -> Error {
    Error::Entry {
        protocol,
        reason: reason.to_owned(),
    }
}

/// A plausible OpenSSH client identification, as tunnel-core picks one per dial.
fn client_version_string() -> String {
    let mut r = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut r);
    format!("SSH-2.0-OpenSSH_{}.{}", 7 + (r[0] % 2), r[1] % 10)
}

/// Dials `entry` over `protocol` (OSSH or SSH), authenticates and runs the handshake.
pub async fn establish(
    entry: &ServerEntry,
    protocol: TunnelProtocol,
    params: &ClientParams,
    timeout: Duration,
) -> Result<Tunnel, Error> {
    let start = Instant::now();
    let net = psiphon_transport::Direct::new(timeout);
    let work = async {
        let stream = connect(entry, protocol, &net).await?;
        handshake_over(stream, entry, protocol, params).await
    };
    let (conn, handshake, activity) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout { protocol, timeout })??;
    Ok(Tunnel {
        conn,
        entry: entry.clone(),
        protocol,
        handshake,
        establishment: start.elapsed(),
        activity,
    })
}

/// The TCP address a protocol dials for an entry.
pub fn dial_address(entry: &ServerEntry, protocol: TunnelProtocol) -> Result<SocketAddr, Error> {
    psiphon_transport::dialer_for(protocol)
        .ok_or_else(|| entry_error(protocol, "this protocol is not implemented"))?;
    let port = entry
        .dial_port(protocol)
        .map_err(|e| entry_error(protocol, &e.to_string()))?;
    Ok(SocketAddr::new(entry.ip_address(), port))
}

/// The first step of a dial: a stream to the protocol's port through `net` (direct TCP or the
/// upstream proxy; the caller bounds the time).
pub async fn connect(
    entry: &ServerEntry,
    protocol: TunnelProtocol,
    net: &dyn psiphon_transport::NetDialer,
) -> Result<psiphon_transport::BoxIo, Error> {
    let addr = dial_address(entry, protocol)?;
    net.connect(&addr.ip().to_string(), addr.port())
        .await
        .map_err(|source| Error::Net { protocol, source })
}

/// The rest of a dial over a connected stream: the protocol's obfuscation layer, SSH, and the
/// Psiphon handshake. `started` is when the dial began (for `establishment`).
pub async fn establish_over(
    stream: psiphon_transport::BoxIo,
    entry: &ServerEntry,
    protocol: TunnelProtocol,
    params: &ClientParams,
    timeout: Duration,
    started: Instant,
) -> Result<Tunnel, Error> {
    let (conn, handshake, activity) =
        tokio::time::timeout(timeout, handshake_over(stream, entry, protocol, params))
            .await
            .map_err(|_| Error::Timeout { protocol, timeout })??;
    Ok(Tunnel {
        conn,
        entry: entry.clone(),
        protocol,
        handshake,
        establishment: started.elapsed(),
        activity,
    })
}

async fn handshake_over(
    stream: psiphon_transport::BoxIo,
    entry: &ServerEntry,
    protocol: TunnelProtocol,
    params: &ClientParams,
) -> Result<
    (
        Connection,
        HandshakeResponse,
        std::sync::Arc<crate::activity::Activity>,
    ),
    Error,
> {
    let transport = psiphon_transport::dialer_for(protocol)
        .ok_or_else(|| entry_error(protocol, "this protocol is not implemented"))?;
    let port = entry
        .dial_port(protocol)
        .map_err(|e| entry_error(protocol, &e.to_string()))?;
    let host_key = entry
        .ssh_host_key()
        .ok_or_else(|| entry_error(protocol, "no sshHostKey"))?;
    let host_key =
        PublicKey::from_base64(host_key).map_err(|e| entry_error(protocol, &e.to_string()))?;
    let user = entry
        .ssh_username()
        .ok_or_else(|| entry_error(protocol, "no sshUsername"))?;
    let password = entry
        .ssh_password()
        .ok_or_else(|| entry_error(protocol, "no sshPassword"))?;
    let payload = SshPasswordPayload {
        session_id: params.session_id.clone(),
        ssh_password: password.to_owned(),
        client_capabilities: vec!["server-requests".to_owned()],
        sponsor_id: params.sponsor_id.clone(),
    };
    let mut ssh = ClientConfig::new(user, ClientAuth::Password(payload.to_json()), host_key);
    ssh.common.version = client_version_string();
    // Under an obfuscation layer, encrypt-then-MAC would show packet lengths in clear:
    // tunnel-core never offers it there. Plain SSH offers every MAC (tunnel-core servers
    // truncate their lists, sometimes to ETM and SHA-1 forms only).
    ssh.common.macs = if transport.obfuscated_ssh() {
        MacAlg::ALL
            .iter()
            .copied()
            .filter(|m| !m.is_etm())
            .collect()
    } else {
        MacAlg::ALL.to_vec()
    };

    let activity = crate::activity::Activity::new();
    let stream: psiphon_transport::BoxIo =
        Box::new(crate::activity::ActivityIo::new(stream, activity.clone()));
    let wrapped = transport
        .wrap(entry, stream)
        .map_err(|reason| entry_error(protocol, &reason))?;
    let conn = psiphon_ssh::connect(wrapped, ssh)
        .await
        .map_err(|source| Error::Ssh {
            step: "ssh handshake",
            source,
        })?;

    let mut handshake_params = params
        .base()
        .with_relay_protocol(protocol)
        .with_dial_port_number(port);
    if params.api_encoding == ApiEncoding::Cbor {
        handshake_params =
            handshake_params.with_str(api::API_RESPONSE_VERSION_PARAM, api::API_RESPONSE_V1);
    }
    let body = params.body(&handshake_params);
    let reply = request(&conn.handle(), api::HANDSHAKE_REQUEST_NAME, &body).await?;
    // A CBOR response when asked for one; a server that does not know the request answers in
    // JSON, which is always an object.
    let decoded = if reply.first() == Some(&b'{') {
        HandshakeResponse::from_json(&reply)
    } else {
        HandshakeResponse::from_cbor(&reply)
    };
    let handshake = decoded.map_err(|e| Error::Api {
        request: api::HANDSHAKE_REQUEST_NAME,
        reason: e.to_string(),
    })?;
    Ok((conn, handshake, activity))
}

async fn request(handle: &Handle, name: &'static str, body: &[u8]) -> Result<Vec<u8>, Error> {
    match handle.global_request(name, body).await {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(Error::Api {
            request: name,
            reason: "refused by the server".to_owned(),
        }),
        Err(source) => Err(Error::Ssh { step: name, source }),
    }
}

impl Tunnel {
    /// A handle for opening port forwards.
    pub fn handle(&self) -> Handle {
        self.conn.handle()
    }

    /// Sends `psiphon-connected`; returns the server's `connected_timestamp`, which the client
    /// keeps as `last_connected`.
    pub async fn connected(
        &self,
        params: &ClientParams,
        last_connected: Option<&str>,
    ) -> Result<String, Error> {
        let ms = i64::try_from(self.establishment.as_millis()).unwrap_or(i64::MAX);
        let body = params.body(
            &params
                .base()
                .with_last_connected(last_connected)
                .with_establishment_duration_ms(ms),
        );
        let reply = request(&self.handle(), api::CONNECTED_REQUEST_NAME, &body).await?;
        let r = ConnectedResponse::from_json(&reply).map_err(|e| Error::Api {
            request: api::CONNECTED_REQUEST_NAME,
            reason: e.to_string(),
        })?;
        Ok(r.connected_timestamp)
    }

    /// Sends `psiphon-status` with the given `statusData` object.
    pub async fn status(
        &self,
        params: &ClientParams,
        status_data: serde_json::Value,
    ) -> Result<StatusResponse, Error> {
        let body = params.body(&params.base().with_status_data(status_data));
        let reply = request(&self.handle(), api::STATUS_REQUEST_NAME, &body).await?;
        StatusResponse::from_json(&reply).map_err(|e| Error::Api {
            request: api::STATUS_REQUEST_NAME,
            reason: e.to_string(),
        })
    }

    /// One `keepalive@openssh.com` with 0–255 random bytes; an answer (success or failure)
    /// within `timeout` means the tunnel is alive.
    pub async fn keepalive(&self, timeout: Duration) -> Result<Duration, Error> {
        let mut len = [0u8; 1];
        let _ = aws_lc_rs::rand::fill(&mut len);
        let mut payload = vec![0u8; usize::from(len[0])];
        let _ = aws_lc_rs::rand::fill(&mut payload);
        let start = Instant::now();
        match tokio::time::timeout(
            timeout,
            self.handle()
                .global_request(psiphon_ssh::msg::KEEPALIVE, &payload),
        )
        .await
        {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(source)) => Err(Error::Ssh {
                step: "keepalive",
                source,
            }),
            Err(_) => Err(Error::Ssh {
                step: "keepalive",
                source: psiphon_ssh::Error::Unresponsive,
            }),
        }
    }

    /// Waits until the SSH connection closes.
    pub async fn closed(&self) -> psiphon_ssh::Error {
        self.conn.closed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(api_encoding: ApiEncoding) -> ClientParams {
        ClientParams {
            session_id: "0123456789abcdef0123456789abcdef".into(),
            propagation_channel_id: "24BCA4EE20BEB92C".into(),
            sponsor_id: "721AE60D76700F5A".into(),
            client_version: "400".into(),
            client_platform: "Android_13_com.example".into(),
            device_region: "IR".into(),
            api_encoding,
        }
    }

    #[test]
    fn every_request_is_packed_cbor_by_default_and_json_when_configured() {
        let p = params(ApiEncoding::default());
        let handshake = p
            .base()
            .with_relay_protocol(TunnelProtocol::Ossh)
            .with_dial_port_number(443)
            .with_str(api::API_RESPONSE_VERSION_PARAM, api::API_RESPONSE_V1);
        let connected = p
            .base()
            .with_last_connected(None)
            .with_establishment_duration_ms(1234);
        // What the controller sends: tags to check and per-domain bytes.
        let status = p.base().with_status_data(json!({
            "check_server_entry_tags": ["dGFn"],
            "host_bytes": {"example.org": 4096, "(OTHER)": 17},
        }));
        for request in [&handshake, &connected, &status] {
            let body = p.body(request);
            // Packed, not the JSON fallback, and it decodes to the same parameters.
            assert!(api::is_packed(&body), "{}", request.to_json());
            let back = ApiParams::from_packed(&body).unwrap();
            assert_eq!(back.to_json(), request.to_json());
            assert_eq!(back.optional_str("device_region"), Some("IR"));
        }
        let json_params = params(ApiEncoding::Json);
        let body = json_params.body(&status);
        assert_eq!(body.first(), Some(&b'{'));
        assert_eq!(
            ApiParams::from_json(&body).unwrap().to_json(),
            status.to_json()
        );
    }

    #[test]
    fn no_device_region_is_sent_when_none_is_configured() {
        let mut p = params(ApiEncoding::Json);
        p.device_region.clear();
        assert!(p.base().get("device_region").is_none());
    }
}
