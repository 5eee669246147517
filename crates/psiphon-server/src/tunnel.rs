//! One client connection: OSSH and SSH handshake, authentication, API requests, port
//! forwards, and the `server_tunnel` event at disconnect.
//!
//! Privacy: the peer address is used only for the OSSH seed history, the GeoIP lookup and
//! discovery's key (a hash and an HMAC byte, kept until the API handshake), and is dropped once
//! the SSH handshake ends; destinations are never logged.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use psiphon_protocol::SshPasswordPayload;
use psiphon_ssh::msg::{channel_type, open_failure};
use psiphon_ssh::{Connection, Incoming, IncomingChannel, IncomingRequest, PasswordCheck};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;

use crate::api::{ApiContext, ApiState};
use crate::bogon::is_bogon;
use crate::deadline::ReadDeadline;
use crate::discovery::ClientKey;
use crate::server::{Protocol, Shared};
use crate::throttle::{Throttle, Throttled};
use crate::time::rfc3339_millis;
use crate::traffic_rules::{Client, TrafficRules};

mod limits;
use limits::{ForwardLimits, ForwardLru};

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The password callback: parses the payload, compares user and password in constant time,
/// keeps the payload for the tunnel. Failures are only counted.
fn password_check(
    shared: &Arc<Shared>,
    slot: Arc<Mutex<Option<SshPasswordPayload>>>,
) -> PasswordCheck {
    let shared = Arc::clone(shared);
    Box::new(move |user, password| {
        let accepted = SshPasswordPayload::parse(password).ok().filter(|p| {
            let user_ok = ct_eq(user, &shared.config.ssh_user_name);
            let password_ok = ct_eq(&p.ssh_password, &shared.config.ssh_password);
            user_ok & password_ok
        });
        match accepted {
            Some(payload) => {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
                true
            }
            None => {
                shared
                    .counters
                    .auth_failures
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    })
}

/// Serves one accepted TCP connection until it closes or the server shuts down.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    protocol: Protocol,
    tcp: TcpStream,
    peer: IpAddr,
    handshake_permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) {
    let start_time = SystemTime::now();
    let start = Instant::now();
    // The one use of the address besides the OSSH seed history: GeoIP, now; only the derived
    // fields are kept.
    let geo = shared.geoip.lookup(peer);
    // Rules before authentication: the establishment rates of the rules for this address.
    let protocol_name = protocol.protocol().name();
    let rules = shared.rules.current().select(&Client {
        tunnel_protocol: protocol_name,
        geo: &geo,
        handshake: None,
        first_tunnel_in_session: true,
    });
    let throttle = Arc::new(Throttle::new(rules.rate_limits.limits(false)));
    // And discovery's key, kept until the API handshake in place of the address.
    let client_key = ClientKey::new(peer, &shared.config.discovery_value_hmac_key);
    let _ = tcp.set_nodelay(true);
    let listener_port = tcp.local_addr().map_or(0, |a| a.port());
    let tcp = ReadDeadline::new(
        Throttled::new(tcp, Arc::clone(&throttle)),
        shared.config.read_deadline,
    );
    let slot = Arc::new(Mutex::new(None));
    let check = password_check(&shared, Arc::clone(&slot));
    let handshake = async {
        let stream = protocol
            .accept(Box::new(tcp), peer)
            .await
            .map_err(|e| e.irregular)?;
        let ssh = if protocol.obfuscated() {
            shared.ssh_under_ossh.clone()
        } else {
            shared.ssh.clone()
        };
        psiphon_ssh::accept(stream, ssh, check)
            .await
            .map_err(|_| None)
    };
    let result = tokio::select! {
        r = tokio::time::timeout(shared.config.handshake_timeout, handshake) => r,
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    drop(handshake_permit);
    let payload = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    let (conn, payload) = match (result, payload) {
        (Ok(Ok(conn)), Some(payload)) => (conn, payload),
        (result, _) => {
            shared
                .counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            if let Ok(Err(Some(irregular))) = result {
                log_irregular(&shared, &protocol, listener_port, &geo, &irregular);
            }
            return;
        }
    };
    // All tunnels of a session share its first GeoIP lookup; rules again for the session.
    let (geo, first_tunnel_in_session) =
        shared
            .geoip
            .session(&payload.session_id, geo, Instant::now());
    let session_rules = shared.rules.current().select(&Client {
        tunnel_protocol: protocol_name,
        geo: &geo,
        handshake: None,
        first_tunnel_in_session,
    });
    if session_rules != rules {
        throttle.set_limits(session_rules.rate_limits.limits(false));
    }
    let tunnel = Tunnel {
        shared: Arc::clone(&shared),
        protocol,
        payload,
        api: ApiState::default(),
        stats: Arc::new(ForwardStats::default()),
        forwards: JoinSet::new(),
        limits: None,
        throttle,
        first_tunnel_in_session,
        start_time,
        start,
        geo,
        client_key: Some(client_key),
    };
    tunnel.run(conn, shutdown).await;
    shared.counters.tunnels.fetch_add(1, Ordering::Relaxed);
}

/// Logs an `irregular_tunnel` event, as tunnel-core's psiphond: the error text, the listener,
/// the client's GeoIP fields and, for a replayed seed, how long ago and whether from the same
/// address. Never the address itself.
fn log_irregular(
    shared: &Shared,
    protocol: &Protocol,
    listener_port: u16,
    geo: &crate::geoip::GeoFields,
    irregular: &psiphon_transport::Irregular,
) {
    let mut f = Map::new();
    f.insert(
        "tunnel_error".to_owned(),
        Value::from(irregular.tunnel_error.clone()),
    );
    f.insert(
        "listener_protocol".to_owned(),
        Value::from(protocol.protocol().name()),
    );
    f.insert(
        "listener_port_number".to_owned(),
        Value::from(listener_port),
    );
    if let Some((elapsed, same_peer)) = irregular.duplicate {
        f.insert(
            "duplicate_seed_type".to_owned(),
            Value::from("obfuscator-seed"),
        );
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        f.insert("duplicate_elapsed_time_ms".to_owned(), Value::from(ms));
        f.insert("duplicate_client_ip".to_owned(), Value::from(same_peer));
    }
    geo.log_into(&mut f);
    shared.log.event("irregular_tunnel", f);
}

/// Byte and port-forward counts of one tunnel.
#[derive(Debug, Default)]
struct ForwardStats {
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    current: AtomicU64,
    peak: AtomicU64,
    total: AtomicU64,
    dialing: AtomicU64,
    peak_dialing: AtomicU64,
}

/// Decrements the open count when a forward ends (also when aborted).
struct OpenForward(Arc<ForwardStats>);

impl OpenForward {
    fn new(stats: &Arc<ForwardStats>) -> OpenForward {
        stats.total.fetch_add(1, Ordering::Relaxed);
        let now = stats.current.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak.fetch_max(now, Ordering::Relaxed);
        OpenForward(Arc::clone(stats))
    }
}

impl Drop for OpenForward {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Tunnel {
    shared: Arc<Shared>,
    protocol: Protocol,
    payload: SshPasswordPayload,
    api: ApiState,
    geo: crate::geoip::GeoFields,
    /// Discovery's key of the client address, dropped once the handshake is done.
    client_key: Option<ClientKey>,
    stats: Arc<ForwardStats>,
    forwards: JoinSet<()>,
    /// The rules and forward limits selected after the API handshake.
    limits: Option<ForwardLimits>,
    throttle: Arc<Throttle>,
    first_tunnel_in_session: bool,
    start_time: SystemTime,
    start: Instant,
}

impl Tunnel {
    async fn run(mut self, mut conn: Connection, mut shutdown: watch::Receiver<bool>) {
        let mut rules_reloaded = self.shared.rules.subscribe();
        loop {
            while self.forwards.try_join_next().is_some() {}
            let incoming = tokio::select! {
                incoming = conn.next_incoming() => incoming,
                _ = shutdown.wait_for(|stop| *stop) => None,
                Ok(()) = rules_reloaded.changed() => {
                    self.reselect_rules();
                    continue;
                }
            };
            match incoming {
                None => break,
                Some(Incoming::GlobalRequest(request)) => self.request(request),
                Some(Incoming::Channel(channel)) => self.channel(channel),
                Some(_) => {}
            }
        }
        drop(conn);
        self.forwards.shutdown().await;
        self.log_tunnel();
    }

    /// After a rules reload, as tunnel-core: the client's rules are selected again and its
    /// rate limits start afresh; forwards already open keep their timeouts.
    fn reselect_rules(&mut self) {
        let set = self.shared.rules.current();
        let handshake = self.api.handshake();
        let rules = set.select(&Client {
            tunnel_protocol: self.protocol.protocol().name(),
            geo: &self.geo,
            handshake: handshake.map(|h| &h.params),
            first_tunnel_in_session: self.first_tunnel_in_session,
        });
        self.throttle
            .set_limits(rules.rate_limits.limits(handshake.is_some()));
        if let Some(limits) = &self.limits {
            self.limits = Some(ForwardLimits::new(rules, Arc::clone(&limits.lru)));
        }
    }

    fn request(&mut self, request: IncomingRequest) {
        // One consistent psinet for the request, even if a reload lands meanwhile.
        let psinet = self.shared.psinet.current();
        let rules_set = self.shared.rules.current();
        let ctx = ApiContext {
            psinet: &psinet.database,
            log: &self.shared.log,
            session_id: &self.payload.session_id,
            own_encoded_server_entries: &self.shared.config.own_encoded_server_entries,
            geo: &self.geo,
            discovery: Some(&psinet.discovery),
            client_key: self.client_key,
            traffic_rules: Some((
                &rules_set,
                Client {
                    tunnel_protocol: self.protocol.protocol().name(),
                    geo: &self.geo,
                    handshake: None,
                    first_tunnel_in_session: self.first_tunnel_in_session,
                },
            )),
        };
        let name = request.name().to_owned();
        match self
            .api
            .handle(&name, request.data(), &ctx, SystemTime::now())
        {
            Some(body) => request.reply(true, &body),
            None => request.reply(false, &[]),
        }
        self.add_domain_bytes();
        if let Some(h) = self.api.handshake() {
            self.client_key = None;
            if self.limits.is_none() {
                // Rules selected with the handshake's parameters apply from now on.
                let rules = h.rules.clone().unwrap_or_default();
                self.throttle.set_limits(rules.rate_limits.limits(true));
                self.limits = Some(ForwardLimits::new(rules, Arc::default()));
            }
        }
    }

    /// Hands the status request's accepted `host_bytes` to the server's buckets, with this
    /// client's GeoIP and handshake fields (never its address).
    fn add_domain_bytes(&mut self) {
        let reported = self.api.take_host_bytes();
        let Some(h) = self.api.handshake() else {
            return;
        };
        if reported.is_empty() {
            return;
        }
        let reporter = crate::domain_bytes::Reporter {
            client_region: self.geo.region.clone(),
            client_asn: self.geo.asn.clone(),
            sponsor_id: h.sponsor_id.clone(),
            client_platform: h.client_platform.clone(),
            device_region: h.device_region.clone(),
        };
        for (domain, bytes) in reported {
            self.shared.domain_bytes.add(&domain, &reporter, bytes);
        }
    }

    fn channel(&mut self, channel: IncomingChannel) {
        let kind = channel.kind();
        if kind != channel_type::DIRECT_TCPIP && kind != channel_type::DIRECT_TCPIP_NO_SPLIT_TUNNEL
        {
            channel.reject(open_failure::UNKNOWN_CHANNEL_TYPE, "unknown channel type");
            return;
        }
        let Some(limits) = &self.limits else {
            channel.reject(
                open_failure::ADMINISTRATIVELY_PROHIBITED,
                "port forward before handshake",
            );
            return;
        };
        let Ok((host, port)) = psiphon_ssh::parse_direct_tcpip_extra(channel.extra()) else {
            channel.reject(open_failure::CONNECT_FAILED, "invalid port forward");
            return;
        };
        // As tunnel-core, requests wait for a dial slot in a queue of MaxTCPPortForwardCount
        // + MaxTCPDialingPortForwardCount; beyond that they are refused.
        let Ok(queued) = Arc::clone(&limits.queue).try_acquire_owned() else {
            channel.reject(open_failure::RESOURCE_SHORTAGE, "too many port forwards");
            return;
        };
        let dial_slots = Arc::clone(&limits.dial_slots);
        let forward = Forward {
            open: OpenForward::new(&self.stats),
            queued,
            allow_bogons: self.shared.config.allow_bogons,
            dial_timeout: limits.rules.dial_tcp_port_forward_timeout,
            idle_timeout: limits.rules.idle_tcp_port_forward_timeout,
            rules: Arc::clone(&limits.rules),
            shared: Arc::clone(&self.shared),
            lru: Arc::clone(&limits.lru),
            epoch: self.start,
        };
        self.forwards.spawn(async move {
            let Ok(dial_permit) = dial_slots.acquire_owned().await else {
                return;
            };
            forward.run(channel, host, port, dial_permit).await;
        });
    }

    fn log_tunnel(&self) {
        let handshake = self.api.handshake();
        let mut f = Map::new();
        let mut put = |k: &str, v: Value| {
            f.insert(k.to_owned(), v);
        };
        let load = |a: &AtomicU64| Value::from(a.load(Ordering::Relaxed));
        put("session_id", Value::from(self.payload.session_id.clone()));
        put(
            "relay_protocol",
            Value::from(self.protocol.protocol().name()),
        );
        put("handshake_completed", Value::from(handshake.is_some()));
        put("start_time", Value::from(rfc3339_millis(self.start_time)));
        let duration_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        put("duration", Value::from(duration_ms));
        put("bytes_up_tcp", load(&self.stats.bytes_up));
        put("bytes_down_tcp", load(&self.stats.bytes_down));
        put("bytes_up_udp", Value::from(0));
        put("bytes_down_udp", Value::from(0));
        put(
            "peak_concurrent_port_forward_count_tcp",
            load(&self.stats.peak),
        );
        put("total_port_forward_count_tcp", load(&self.stats.total));
        put(
            "peak_concurrent_dialing_port_forward_count_tcp",
            load(&self.stats.peak_dialing),
        );
        put("peak_concurrent_port_forward_count_udp", Value::from(0));
        put("total_port_forward_count_udp", Value::from(0));
        put(
            "status_request_count",
            Value::from(self.api.status_requests()),
        );
        put(
            "api_request_rejected_count",
            Value::from(self.api.rejected_requests()),
        );
        self.geo.log_into(&mut f);
        match handshake {
            // The handshake's parameters as sent (client_platform unnormalised, as
            // tunnel-core logs it).
            Some(h) => f.extend(h.log_fields.clone()),
            None => {
                f.insert(
                    "sponsor_id".to_owned(),
                    Value::from(self.payload.sponsor_id.clone()),
                );
            }
        }
        self.shared.log.event("server_tunnel", f);
    }
}

/// One port forward's settings and accounting.
struct Forward {
    open: OpenForward,
    /// A place in the dial queue, given back once dialled.
    queued: OwnedSemaphorePermit,
    allow_bogons: bool,
    dial_timeout: Duration,
    idle_timeout: Duration,
    rules: Arc<TrafficRules>,
    shared: Arc<Shared>,
    lru: Arc<Mutex<ForwardLru>>,
    /// The tunnel's start: activity times of its forwards are measured from it.
    epoch: Instant,
}

enum DialError {
    /// A bogon, or a destination the traffic rules refuse.
    Prohibited,
    Failed,
}

async fn dial(
    host: &str,
    port: u16,
    allow_bogons: bool,
    rules: &TrafficRules,
    shared: &Shared,
) -> Result<TcpStream, DialError> {
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| DialError::Failed)?
        .next()
        .ok_or(DialError::Failed)?;
    if !allow_bogons && is_bogon(addr.ip()) {
        return Err(DialError::Prohibited);
    }
    // Ports, subnets and ASNs are checked on the resolved address.
    if !rules.allow_tcp(addr.ip(), port, |ip| shared.geoip.lookup(ip).asn) {
        return Err(DialError::Prohibited);
    }
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|_| DialError::Failed)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

impl Forward {
    async fn run(
        self,
        channel: IncomingChannel,
        host: String,
        port: u16,
        dial_permit: OwnedSemaphorePermit,
    ) {
        let stats = &self.open.0;
        let dialing = stats.dialing.fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak_dialing.fetch_max(dialing, Ordering::Relaxed);
        let dialed = tokio::time::timeout(
            self.dial_timeout,
            dial(&host, port, self.allow_bogons, &self.rules, &self.shared),
        )
        .await;
        stats.dialing.fetch_sub(1, Ordering::Relaxed);
        drop(dial_permit);
        drop(self.queued);
        drop(host);
        let tcp = match dialed {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(DialError::Prohibited)) => {
                channel.reject(
                    open_failure::ADMINISTRATIVELY_PROHIBITED,
                    "destination not allowed",
                );
                return;
            }
            _ => {
                channel.reject(open_failure::CONNECT_FAILED, "dial failed");
                return;
            }
        };
        let epoch = self.epoch;
        let activity = Arc::new(AtomicU64::new(millis_since(epoch)));
        // At MaxTCPPortForwardCount, the least recently active forward is closed.
        let (_lru_entry, close) =
            ForwardLru::register(&self.lru, self.rules.max_tcp_port_forward_count, &activity);
        let Ok(channel) = channel.accept() else {
            return;
        };
        let mut up = Counted {
            inner: channel,
            bytes: &stats.bytes_up,
            activity: &activity,
            epoch,
        };
        let mut down = Counted {
            inner: tcp,
            bytes: &stats.bytes_down,
            activity: &activity,
            epoch,
        };
        // 32 KiB per direction (one SSH data packet): 4x fewer wake-ups than tokio's default,
        // at a memory cost a server with many forwards can carry.
        let relay =
            tokio::io::copy_bidirectional_with_sizes(&mut up, &mut down, 32 * 1024, 32 * 1024);
        let idle = idle_watch(&activity, epoch, self.idle_timeout);
        tokio::select! {
            _ = relay => {}
            () = idle => {}
            () = close.notified() => {}
        }
    }
}

/// Completes once no byte has moved for `timeout`.
async fn idle_watch(activity: &AtomicU64, epoch: Instant, timeout: Duration) {
    let tick = (timeout / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(tick).await;
        let last = Duration::from_millis(activity.load(Ordering::Relaxed));
        if epoch.elapsed().saturating_sub(last) >= timeout {
            return;
        }
    }
}

/// Counts bytes read through it and notes the time of the last activity.
struct Counted<'a, S> {
    inner: S,
    bytes: &'a AtomicU64,
    activity: &'a AtomicU64,
    epoch: Instant,
}

impl<S> Counted<'_, S> {
    fn touch(&self) {
        self.activity
            .store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let n = buf.filled().len().saturating_sub(before);
            if n > 0 {
                this.bytes
                    .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                this.touch();
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}
