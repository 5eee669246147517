//! The controller: keeps a pool of tunnels up (`TunnelPoolSize`, default 1). Each round races
//! the candidates with [`establish::race`] (connects wide, handshakes narrow, the affinity
//! server first), ordered with what worked on this network before ([`replay`]); it watches
//! each tunnel with keepalives (and a probe when a port forward fails), sends `connected` and
//! `status`, stores discovered servers, prunes invalid ones, and re-establishes when a tunnel
//! dies — while the local proxies keep listening and wait (bounded) through [`ActiveTunnel`].

pub mod establish;
pub mod replay;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use psiphon_protocol::time::{parse_rfc3339, rfc3339, rfc3339_hour};
use psiphon_protocol::{ServerEntry, TunnelProtocol};
use psiphon_ssh::{Channel, Handle};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::datastore::{Datastore, KEY_LAST_CONNECTED, Source};
use crate::host_bytes::{HostBytes, HostRegexes};
use crate::tunnel::{self, ClientParams, Tunnel};
use establish::{Candidate, RaceSettings};
use replay::Replay;

/// How long shutdown waits for the tunnels' final status requests.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(5);

/// Key-value key of the last `check_server_entry_tags` report.
const KEY_LAST_TAG_CHECK: &str = "lastCheckServerEntryTags";

/// What the controller reports as it works; the binary turns these into notices.
pub trait Observer: Send + Sync + 'static {
    /// A tunnel was established (`ActiveTunnel`, `Homepage`, ...).
    fn tunnel_up(&self, tunnel: &Tunnel);
    /// A tunnel failed and was dropped from the pool.
    fn tunnel_down(&self, reason: &str);
    /// The number of tunnels up changed (`Tunnels`).
    fn tunnels(&self, _count: usize) {}
    /// No tunnel came within the establish timeout; the controller stops
    /// (`EstablishTunnelTimeout`).
    fn establish_timeout(&self, _timeout: Duration) {}
    /// The upstream proxy itself failed (`UpstreamProxyError`).
    fn upstream_proxy_error(&self, _message: &str) {}
    /// A candidate's dial started (`ConnectingServer`, diagnostic).
    fn attempting(&self, _entry: &ServerEntry, _protocol: TunnelProtocol) {}
    /// A candidate failed (diagnostic).
    fn candidate_failed(
        &self,
        entry: &ServerEntry,
        protocol: TunnelProtocol,
        error: &tunnel::Error,
    );
    /// `psiphon-connected` returned this timestamp.
    fn connected(&self, timestamp: &str);
    /// No stored entry is a candidate (empty store, or nothing matches the egress region and
    /// protocols): a remote server list fetch is due.
    fn no_candidates(&self) {}
    /// A round ended with every candidate failed: a remote server list fetch is due.
    fn round_failed(&self) {}
    /// The handshake's discovery entries were stored (`count` of them).
    fn discovered(&self, _count: usize) {}
    /// The server named this entry invalid and it was pruned.
    fn pruned(&self, _tag: &str) {}
    /// A stored entry was dropped or skipped (bad signature, storage trouble).
    fn warning(&self, _message: &str) {}
}

/// Controller settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Handshakes in flight at once (`ConnectionWorkerPoolSize`).
    pub workers: usize,
    /// TCP connects in flight at once (the wide part of the race).
    pub connect_width: usize,
    /// Pause between two connect launches (`StaggerConnectionWorkersMilliseconds`).
    pub stagger: Duration,
    /// Connect timeout before any server answered; it doubles after a round with no answer
    /// at all (up to `max_connect_timeout`) and shrinks to a few round trips once one answers.
    pub initial_connect_timeout: Duration,
    /// The longest connect timeout.
    pub max_connect_timeout: Duration,
    /// Limit for OSSH + SSH + handshake after the connect.
    pub establish_timeout: Duration,
    /// Head start of the affinity server (`EstablishTunnelServerAffinityGracePeriodMilliseconds`).
    pub affinity_grace: Duration,
    /// Tunnels to keep up (`TunnelPoolSize`).
    pub pool_size: usize,
    /// Probe the server when it has sent nothing this long after something we sent.
    pub stall_probe_after: Duration,
    /// Give up (and stop) when no tunnel came within this long (`EstablishTunnelTimeoutSeconds`).
    pub establish_deadline: Option<Duration>,
    /// The network's identity for replay (`NetworkID`).
    pub network_id: String,
    /// How TCP connections are made: direct, or through `UpstreamProxyURL`.
    pub net: Arc<dyn psiphon_transport::NetDialer>,
    /// Protocols allowed (`LimitTunnelProtocols`); empty = SSH and OSSH.
    pub protocols: Vec<TunnelProtocol>,
    /// Keepalive period and timeout.
    pub keepalive_period: (Duration, Duration),
    /// How long a keepalive may wait for its answer.
    pub keepalive_timeout: Duration,
    /// `psiphon-status` period.
    pub status_period: Duration,
    /// Pause between failed rounds.
    pub round_pause: Duration,
    /// `EgressRegion`: only servers of this region are candidates (empty = any).
    pub egress_region: String,
    /// `TargetServerEntry`'s address: only this server is a candidate.
    pub target: Option<String>,
    /// `ServerEntrySignaturePublicKey`: stored entries that carry a signature must verify.
    pub entry_signature_key: Option<String>,
    /// Entries younger than this are not pruned (`ServerEntryMinimumAgeForPruning`).
    pub prune_minimum_age: Duration,
    /// How often `psiphon-status` carries `check_server_entry_tags`
    /// (`CheckServerEntryTagsPeriod`).
    pub check_tags_period: Duration,
    /// Most tags sent in one check.
    pub check_tags_max: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 10,
            connect_width: 64,
            stagger: Duration::from_millis(2),
            initial_connect_timeout: Duration::from_secs(2),
            max_connect_timeout: Duration::from_secs(20),
            establish_timeout: Duration::from_secs(20),
            affinity_grace: Duration::from_millis(500),
            pool_size: 1,
            stall_probe_after: Duration::from_secs(10),
            establish_deadline: None,
            network_id: String::new(),
            net: Arc::new(psiphon_transport::Direct::new(Duration::from_secs(20))),
            protocols: Vec::new(),
            keepalive_period: (Duration::from_secs(60), Duration::from_secs(120)),
            keepalive_timeout: Duration::from_secs(30),
            status_period: Duration::from_secs(300),
            round_pause: Duration::from_secs(2),
            egress_region: String::new(),
            target: None,
            entry_signature_key: None,
            prune_minimum_age: Duration::from_secs(7 * 86_400),
            check_tags_period: Duration::from_secs(90 * 86_400),
            check_tags_max: 1000,
        }
    }
}

/// How long a port forward's channel open may wait for the server's answer.
const CHANNEL_OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// One tunnel of the pool as the proxies see it.
#[derive(Debug, Clone)]
struct Live {
    handle: Handle,
    /// Asks the tunnel's monitor for an immediate keepalive (a forward failed oddly).
    probe: Arc<Notify>,
    /// Per-domain byte counts, when the handshake returned regexes.
    host_bytes: Option<Arc<HostBytes>>,
}

/// The pool's tunnels, shared with the local proxies.
#[derive(Debug, Clone)]
pub struct ActiveTunnel {
    rx: watch::Receiver<Vec<Live>>,
    next: Arc<AtomicUsize>,
}

/// Why a port forward could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No tunnel came up within the wait.
    #[error("no tunnel available")]
    NoTunnel,
    /// The server refused the forward (e.g. a disallowed destination).
    #[error("refused by the server: {0}")]
    Refused(String),
    /// The tunnel failed while opening.
    #[error("tunnel failed: {0}")]
    Failed(String),
}

impl ActiveTunnel {
    /// Opens a `direct-tcpip` forward on a tunnel of the pool (spread round-robin), waiting up
    /// to `wait` for one to be up.
    pub async fn open(
        &self,
        host: &str,
        port: u16,
        wait: Duration,
    ) -> Result<Channel, ForwardError> {
        self.open_counted(host, port, wait).await.map(|(ch, _)| ch)
    }

    /// As [`ActiveTunnel::open`], also handing out the tunnel's per-domain byte counts (when
    /// its handshake returned `https_request_regexes`) for the caller to count the forward in.
    pub async fn open_counted(
        &self,
        host: &str,
        port: u16,
        wait: Duration,
    ) -> Result<(Channel, Option<Arc<HostBytes>>), ForwardError> {
        let mut rx = self.rx.clone();
        let live = tokio::time::timeout(wait, async {
            rx.wait_for(|v| v.iter().any(|l| !l.handle.is_closed()))
                .await
                .map(|v| {
                    let up: Vec<Live> = v
                        .iter()
                        .filter(|l| !l.handle.is_closed())
                        .cloned()
                        .collect();
                    let i = self.next.fetch_add(1, Ordering::Relaxed) % up.len().max(1);
                    up.into_iter().nth(i)
                })
        })
        .await
        .map_err(|_| ForwardError::NoTunnel)?
        .map_err(|_| ForwardError::NoTunnel)?
        .ok_or(ForwardError::NoTunnel)?;
        // A server that stopped answering would leave the open pending forever: bound it,
        // and treat a timeout like any odd failure (probe the tunnel).
        let opened = tokio::time::timeout(
            CHANNEL_OPEN_TIMEOUT,
            live.handle.open_direct_tcpip(host, port),
        )
        .await;
        let Ok(opened) = opened else {
            live.probe.notify_one();
            return Err(ForwardError::Failed(format!(
                "the server did not answer within {CHANNEL_OPEN_TIMEOUT:?}"
            )));
        };
        opened
            .map(|ch| (ch, live.host_bytes.clone()))
            .map_err(|e| match e {
                psiphon_ssh::Error::ChannelOpenFailed { description, .. } => {
                    ForwardError::Refused(description)
                }
                other => {
                    // Not a refusal: the tunnel itself may be dead. Probe it now rather than
                    // at the next keepalive.
                    live.probe.notify_one();
                    ForwardError::Failed(other.to_string())
                }
            })
    }

    /// Whether a tunnel is up now.
    pub fn is_up(&self) -> bool {
        self.rx.borrow().iter().any(|l| !l.handle.is_closed())
    }

    /// How many tunnels are up now.
    pub fn count(&self) -> usize {
        self.rx
            .borrow()
            .iter()
            .filter(|l| !l.handle.is_closed())
            .count()
    }
}

/// A tunnel in the pool (the tunnel itself lives in its monitor task).
#[derive(Debug)]
struct PoolTunnel {
    id: u64,
    ip: String,
    handle: Handle,
    probe: Arc<Notify>,
    host_bytes: Option<Arc<HostBytes>>,
}

/// Keeps a tunnel up until `shutdown` resolves.
pub struct Controller {
    params: ClientParams,
    store: Arc<Datastore>,
    settings: Settings,
    observer: Arc<dyn Observer>,
    active: watch::Sender<Vec<Live>>,
    replay: Replay,
    /// Per-domain bytes of tunnels that went down before a status request took them: sent
    /// with the next status request of any tunnel. Memory only: a record of the domains a
    /// person used is not left on their disk.
    unsent_host_bytes: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("store", &self.store.path())
            .finish_non_exhaustive()
    }
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    if n == 0 { 0 } else { u64::from_le_bytes(b) % n }
}

fn jitter(d: Duration, fraction_pct: u64) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let spread = ms * fraction_pct / 100;
    Duration::from_millis(ms - spread + random_below(2 * spread + 1))
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = usize::try_from(random_below(u64::try_from(i + 1).unwrap_or(1))).unwrap_or(0);
        v.swap(i, j);
    }
}

impl Controller {
    /// A controller over the entries in `store` (the affinity server first).
    pub fn new(
        params: ClientParams,
        store: Arc<Datastore>,
        settings: Settings,
        observer: Arc<dyn Observer>,
    ) -> (Self, ActiveTunnel) {
        let (tx, rx) = watch::channel(Vec::new());
        let replay = Replay::new(&settings.network_id);
        (
            Controller {
                params,
                store,
                settings,
                observer,
                active: tx,
                replay,
                unsent_host_bytes: std::sync::Mutex::default(),
            },
            ActiveTunnel {
                rx,
                next: Arc::new(AtomicUsize::new(0)),
            },
        )
    }

    /// The protocols to try for an entry, best first: the one that worked with this server
    /// on this network, then the allowed protocols it supports in preference order, with the
    /// ones blocked on this network last.
    fn protocols_for(&self, entry: &ServerEntry) -> Vec<TunnelProtocol> {
        let allowed: &[TunnelProtocol] = if self.settings.protocols.is_empty() {
            &psiphon_transport::tunnel::IMPLEMENTED
        } else {
            &self.settings.protocols
        };
        let usable: Vec<TunnelProtocol> = allowed
            .iter()
            .copied()
            .filter(|p| psiphon_transport::dialer_for(*p).is_some() && entry.supports(*p))
            .collect();
        let (mut open, blocked): (Vec<_>, Vec<_>) = usable
            .into_iter()
            .partition(|p| !self.replay.is_blocked(&self.store, *p));
        open.extend(blocked);
        if let Some(p) = self
            .replay
            .server_protocol(&self.store, entry.ip_address_str())
            && let Some(i) = open.iter().position(|q| *q == p)
        {
            let p = open.remove(i);
            open.insert(0, p);
        }
        open
    }

    /// The stored entries that may be dialed: by target, egress region and signature.
    fn eligible_entries(&self) -> Vec<ServerEntry> {
        let entries = match self.store.entries() {
            Ok((entries, corrupt)) => {
                if corrupt > 0 {
                    self.observer.warning(&format!(
                        "datastore: {corrupt} unreadable server entries skipped"
                    ));
                }
                entries
            }
            Err(e) => {
                self.observer.warning(&e.to_string());
                Vec::new()
            }
        };
        entries
            .into_iter()
            .filter(|e| match &self.settings.target {
                Some(ip) => e.ip_address_str() == ip,
                None => {
                    self.settings.egress_region.is_empty()
                        || e.region() == Some(self.settings.egress_region.as_str())
                }
            })
            .filter(|e| self.signature_ok(e))
            .collect()
    }

    /// tunnel-core verifies stored entries that carry a signature when it has the key; one
    /// that fails is deleted.
    fn signature_ok(&self, e: &ServerEntry) -> bool {
        let (Some(key), Some(_)) = (self.settings.entry_signature_key.as_deref(), e.signature())
        else {
            return true;
        };
        match e.verify_signature(key) {
            Ok(()) => true,
            Err(err) => {
                let _ = self.store.delete(e.ip_address_str());
                self.observer.warning(&format!(
                    "deleted server entry {}: bad signature: {err}",
                    e.diagnostic_id()
                ));
                false
            }
        }
    }

    /// Candidates for a round, skipping servers in `exclude` (already in the pool): the
    /// affinity server's protocols first; then every other server's best protocol (servers
    /// with a replay record on this network first, the rest shuffled); then second choices.
    fn candidates(&self, exclude: &HashSet<String>) -> Vec<Candidate> {
        let affinity = self.store.affinity().ok().flatten();
        let entries: Vec<ServerEntry> = self
            .eligible_entries()
            .into_iter()
            .filter(|e| !exclude.contains(e.ip_address_str()))
            .collect();
        let (first, mut rest): (Vec<ServerEntry>, Vec<ServerEntry>) = entries
            .into_iter()
            .partition(|e| Some(e.ip_address_str()) == affinity.as_deref());
        shuffle(&mut rest);
        rest.sort_by_key(|e| {
            self.replay
                .server_protocol(&self.store, e.ip_address_str())
                .is_none()
        });
        let mut out = Vec::new();
        for e in first {
            for p in self.protocols_for(&e) {
                out.push(Candidate {
                    entry: e.clone(),
                    protocol: p,
                    affinity: true,
                });
            }
        }
        let per_server: Vec<(ServerEntry, Vec<TunnelProtocol>)> = rest
            .into_iter()
            .map(|e| {
                let ps = self.protocols_for(&e);
                (e, ps)
            })
            .collect();
        let rounds = per_server.iter().map(|(_, ps)| ps.len()).max().unwrap_or(0);
        for choice in 0..rounds {
            for (e, ps) in &per_server {
                if let Some(p) = ps.get(choice) {
                    out.push(Candidate {
                        entry: e.clone(),
                        protocol: *p,
                        affinity: false,
                    });
                }
            }
        }
        out
    }

    fn race_settings(&self, initial_connect_timeout: Duration) -> RaceSettings {
        RaceSettings {
            connect_width: self.settings.connect_width,
            workers: self.settings.workers,
            stagger: self.settings.stagger,
            initial_connect_timeout,
            max_connect_timeout: self.settings.max_connect_timeout,
            handshake_timeout: self.settings.establish_timeout,
            affinity_grace: self.settings.affinity_grace,
            net: self.settings.net.clone(),
        }
    }

    /// Remembers what a round taught about this network.
    fn learn(&self, winner: Option<&Tunnel>, report: &establish::RoundReport) {
        let Some(t) = winner else {
            return;
        };
        let ip = t.entry.ip_address_str();
        self.replay.succeeded(&self.store, ip, t.protocol);
        // Another protocol failed as blocking looks on the very server that just worked
        // with this one: that protocol is blocked on this network.
        for (protocol, servers) in &report.blocked_on {
            if *protocol != t.protocol && servers.contains(ip) {
                self.replay.blocked(&self.store, *protocol);
            }
        }
    }

    /// Hands the pool to the proxies.
    fn publish(&self, pool: &[PoolTunnel]) {
        let _ = self.active.send(
            pool.iter()
                .map(|p| Live {
                    handle: p.handle.clone(),
                    probe: p.probe.clone(),
                    host_bytes: p.host_bytes.clone(),
                })
                .collect(),
        );
    }

    /// Runs until `shutdown` resolves (or, with `establish_deadline`, until no tunnel came in
    /// time).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let me = Arc::new(self);
        tokio::pin!(shutdown);
        let (down_tx, mut down_rx) = mpsc::unbounded_channel::<(u64, String)>();
        let mut monitors: JoinSet<()> = JoinSet::new();
        // Tells the monitors to send their final status before the tunnels close.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut pool: Vec<PoolTunnel> = Vec::new();
        let mut next_id = 0u64;
        let mut initial_timeout = me.settings.initial_connect_timeout;
        let mut waiting_since = tokio::time::Instant::now();
        loop {
            let want = me.settings.pool_size.max(1);
            if pool.len() >= want {
                tokio::select! {
                    d = down_rx.recv() => {
                        if let Some((id, reason)) = d {
                            me.drop_tunnel(&mut pool, id, &reason, &mut waiting_since);
                        }
                    }
                    () = &mut shutdown => break,
                }
                continue;
            }
            if pool.is_empty()
                && let Some(limit) = me.settings.establish_deadline
                && waiting_since.elapsed() >= limit
            {
                me.observer.establish_timeout(limit);
                break;
            }
            let exclude: HashSet<String> = pool.iter().map(|p| p.ip.clone()).collect();
            let candidates = me.candidates(&exclude);
            let round = async {
                if candidates.is_empty() {
                    me.observer.no_candidates();
                    return None;
                }
                let settings = me.race_settings(initial_timeout);
                let (t, report) =
                    establish::race(candidates, &settings, &me.params, &me.observer).await;
                if t.is_none() {
                    me.observer.round_failed();
                    if report.fastest_connect.is_none() {
                        // Nobody answered at all: maybe a slow path. Wait longer next time.
                        initial_timeout =
                            (initial_timeout * 2).min(me.settings.max_connect_timeout);
                    }
                } else {
                    initial_timeout = me.settings.initial_connect_timeout;
                }
                me.learn(t.as_ref(), &report);
                t
            };
            let tunnel = tokio::select! {
                t = round => t,
                d = down_rx.recv() => {
                    if let Some((id, reason)) = d {
                        me.drop_tunnel(&mut pool, id, &reason, &mut waiting_since);
                    }
                    continue;
                }
                () = &mut shutdown => break,
            };
            let Some(tunnel) = tunnel else {
                let pause = jitter(me.settings.round_pause, 10);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    d = down_rx.recv() => {
                        if let Some((id, reason)) = d {
                            me.drop_tunnel(&mut pool, id, &reason, &mut waiting_since);
                        }
                    }
                    () = &mut shutdown => break,
                }
                continue;
            };
            if let Err(e) = me.store.set_affinity(tunnel.entry.ip_address_str()) {
                me.observer.warning(&e.to_string());
            }
            let id = next_id;
            next_id += 1;
            let probe = Arc::new(Notify::new());
            // tunnel-core counts per-domain bytes only when the handshake returned regexes.
            let (regexes, problems) = HostRegexes::compile(&tunnel.handshake.https_request_regexes);
            for problem in &problems {
                me.observer.warning(problem);
            }
            let host_bytes = regexes.map(HostBytes::new);
            pool.push(PoolTunnel {
                id,
                ip: tunnel.entry.ip_address_str().to_owned(),
                handle: tunnel.handle(),
                probe: probe.clone(),
                host_bytes: host_bytes.clone(),
            });
            me.publish(&pool);
            me.observer.tunnel_up(&tunnel);
            me.observer.tunnels(pool.len());
            me.store_discovered(&tunnel);
            // One tunnel of a pool reports `connected`: the first one up.
            let report_connected = pool.len() == 1;
            let monitor = me.clone();
            let down = down_tx.clone();
            let stop = stop_rx.clone();
            monitors.spawn(async move {
                // `connected` runs beside the liveness watch, never before it: a server that
                // goes silent right away must not leave the tunnel unwatched.
                let connected = async {
                    if report_connected {
                        let last = monitor.store.get(KEY_LAST_CONNECTED).ok().flatten();
                        if let Ok(ts) = tunnel.connected(&monitor.params, last.as_deref()).await {
                            let _ = monitor.store.set(KEY_LAST_CONNECTED, Some(&ts));
                            monitor.observer.connected(&ts);
                        }
                    }
                    std::future::pending::<()>().await;
                };
                let reason = tokio::select! {
                    r = monitor.operate(&tunnel, &probe, host_bytes.as_deref(), stop) => r,
                    () = connected => String::new(),
                };
                monitor.keep_unsent(host_bytes.as_deref());
                let _ = down.send((id, reason));
            });
        }
        // As tunnel-core, a last status request carries what was counted since the previous
        // one (only when there is something to report; bounded by FINAL_STATUS_WAIT).
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(FINAL_STATUS_WAIT, async {
            while monitors.join_next().await.is_some() {}
        })
        .await;
        monitors.abort_all();
        // Wait for the aborted monitors to be gone, so everything they hold (tunnels, the
        // datastore) is released when `run` returns.
        while monitors.join_next().await.is_some() {}
        let _ = me.active.send(Vec::new());
    }

    fn drop_tunnel(
        &self,
        pool: &mut Vec<PoolTunnel>,
        id: u64,
        reason: &str,
        waiting_since: &mut tokio::time::Instant,
    ) {
        let before = pool.len();
        pool.retain(|p| p.id != id);
        if pool.len() != before {
            self.publish(pool);
            self.observer.tunnel_down(reason);
            self.observer.tunnels(pool.len());
            if pool.is_empty() {
                *waiting_since = tokio::time::Instant::now();
            }
        }
    }

    /// Stores the handshake's `encoded_server_list` with source DISCOVERY, stamped with the
    /// server's time truncated to the hour (tunnel-core's rule).
    fn store_discovered(&self, tunnel: &Tunnel) {
        let list = &tunnel.handshake.encoded_server_list;
        if list.is_empty() {
            return;
        }
        let stamp = parse_rfc3339(&tunnel.handshake.server_timestamp)
            .map_or_else(|| rfc3339_hour(std::time::SystemTime::now()), rfc3339_hour);
        let mut good = Vec::new();
        for encoded in list {
            match ServerEntry::decode(encoded) {
                Ok(mut e) => {
                    if !self.signature_ok(&e) {
                        continue;
                    }
                    e.set_local_timestamp(&stamp);
                    good.push(e);
                }
                Err(err) => self
                    .observer
                    .warning(&format!("skipping a discovered server entry: {err}")),
            }
        }
        let n = good.len();
        match self.store.store_all(good, Source::Discovery) {
            Ok(_) => self.observer.discovered(n),
            Err(e) => self.observer.warning(&e.to_string()),
        }
    }

    /// The `statusData` for a status request: `check_server_entry_tags` when that check is
    /// due (then the check time is recorded).
    fn status_data(&self) -> serde_json::Value {
        let due = self
            .store
            .get(KEY_LAST_TAG_CHECK)
            .ok()
            .flatten()
            .and_then(|t| parse_rfc3339(&t))
            .is_none_or(|t| {
                std::time::SystemTime::now()
                    .duration_since(t)
                    .map_or(true, |age| age >= self.settings.check_tags_period)
            });
        if !due {
            return serde_json::json!({});
        }
        let tags = self
            .store
            .tags(self.settings.check_tags_max)
            .unwrap_or_default();
        if tags.is_empty() {
            return serde_json::json!({});
        }
        let _ = self.store.set(
            KEY_LAST_TAG_CHECK,
            Some(&rfc3339(std::time::SystemTime::now())),
        );
        serde_json::json!({ "check_server_entry_tags": tags })
    }

    /// The per-domain bytes no status request has taken yet from tunnels that are gone.
    fn unsent(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.unsent_host_bytes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps what a finished tunnel counted but never reported, for the next status request.
    fn keep_unsent(&self, host_bytes: Option<&HostBytes>) {
        if let Some(h) = host_bytes {
            let mut unsent = self.unsent();
            for (name, n) in h.take() {
                crate::host_bytes::add_bounded(&mut unsent, &name, n);
            }
        }
    }

    /// Sends `psiphon-status` and prunes what the server names invalid. The tunnel's
    /// per-domain byte counts go along as `host_bytes` (when its handshake returned regexes),
    /// with those of earlier tunnels that went down before reporting them; taken out on
    /// success, put back (into this tunnel's counts) on failure.
    async fn send_status(&self, tunnel: &Tunnel, host_bytes: Option<&HostBytes>) {
        let mut data = self.status_data();
        let taken = host_bytes.map(|h| {
            let mut taken = h.take();
            for (name, n) in std::mem::take(&mut *self.unsent()) {
                crate::host_bytes::add_bounded(&mut taken, &name, n);
            }
            taken
        });
        if let (Some(taken), Some(object)) = (&taken, data.as_object_mut()) {
            let hosts: serde_json::Map<String, serde_json::Value> = taken
                .iter()
                .map(|(name, n)| (name.clone(), serde_json::Value::from(*n)))
                .collect();
            object.insert("host_bytes".to_owned(), serde_json::Value::Object(hosts));
        }
        let result = tunnel.status(&self.params, data).await;
        if result.is_err()
            && let (Some(stats), Some(taken)) = (host_bytes, taken)
        {
            stats.put_back(taken);
        }
        if let Ok(response) = result {
            for tag in &response.invalid_server_entry_tags {
                match self.store.prune(tag, self.settings.prune_minimum_age) {
                    Ok(true) => self.observer.pruned(tag),
                    Ok(false) => {}
                    Err(e) => self.observer.warning(&e.to_string()),
                }
            }
        }
    }

    /// Watches a tunnel until it fails; returns why. A probe request (a port forward failed
    /// as if the tunnel were dead) triggers an immediate keepalive with a short timeout.
    async fn operate(
        &self,
        tunnel: &Tunnel,
        probe: &Notify,
        host_bytes: Option<&HostBytes>,
        mut stop: watch::Receiver<bool>,
    ) -> String {
        let (lo, hi) = self.settings.keepalive_period;
        let mut next_status = tokio::time::Instant::now() + jitter(self.settings.status_period, 50);
        loop {
            let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(0);
            let wait = lo + Duration::from_millis(random_below(span + 1));
            let probe_timeout = self.settings.keepalive_timeout.min(Duration::from_secs(5));
            let stall = self.settings.stall_probe_after;
            let timeout = tokio::select! {
                e = tunnel.closed() => return format!("ssh connection closed: {e}"),
                r = stop.wait_for(|s| *s) => {
                    drop(r);
                    None
                }
                () = tokio::time::sleep(wait) => Some(self.settings.keepalive_timeout),
                () = probe.notified() => Some(probe_timeout),
                // We sent and the server has said nothing since: probe now (a blackholed
                // server looks like this), not at the next periodic keepalive.
                () = async {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if tunnel.activity.stalled(stall) {
                            return;
                        }
                    }
                } => Some(probe_timeout),
            };
            let Some(timeout) = timeout else {
                if host_bytes.is_some_and(|h| !h.is_empty() || !self.unsent().is_empty()) {
                    self.send_status(tunnel, host_bytes).await;
                }
                return "shutdown".to_owned();
            };
            if let Err(e) = tunnel.keepalive(timeout).await {
                return format!("keepalive failed: {e}");
            }
            if tokio::time::Instant::now() >= next_status {
                self.send_status(tunnel, host_bytes).await;
                next_status = tokio::time::Instant::now() + jitter(self.settings.status_period, 50);
            }
        }
    }
}
