//! The controller: keeps one tunnel up. It races candidates (the last good server first), keeps
//! the first tunnel that completes its handshake, watches it with keepalives, sends `connected`
//! and `status`, and re-establishes when it dies — while the local proxies keep listening and
//! wait (bounded) for the next tunnel through [`ActiveTunnel`].
//!
//! This is the simple controller of issue 3; issue 5 brings the fast racing engine (wide TCP
//! connects, adaptive timeouts, replay per network).

use std::sync::Arc;
use std::time::Duration;

use psiphon_protocol::time::{parse_rfc3339, rfc3339, rfc3339_hour};
use psiphon_protocol::{ServerEntry, TunnelProtocol};
use psiphon_ssh::{Channel, Handle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::datastore::{Datastore, KEY_LAST_CONNECTED, Source};
use crate::tunnel::{self, ClientParams, Tunnel};

/// Key-value key of the last `check_server_entry_tags` report.
const KEY_LAST_TAG_CHECK: &str = "lastCheckServerEntryTags";

/// What the controller reports as it works; the binary turns these into notices.
pub trait Observer: Send + Sync + 'static {
    /// A tunnel was established (`Tunnels` 1, `ActiveTunnel`, `Homepage`, ...).
    fn tunnel_up(&self, tunnel: &Tunnel);
    /// The tunnel count changed to 0.
    fn tunnel_down(&self, reason: &str);
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
    /// Dials in flight at once (`ConnectionWorkerPoolSize`).
    pub workers: usize,
    /// Limit for dial + OSSH + SSH + handshake of one candidate.
    pub establish_timeout: Duration,
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
            establish_timeout: Duration::from_secs(20),
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

/// The current tunnel, shared with the local proxies.
#[derive(Debug, Clone)]
pub struct ActiveTunnel {
    rx: watch::Receiver<Option<Handle>>,
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
    /// Opens a `direct-tcpip` forward on the active tunnel, waiting up to `wait` for one to be up.
    pub async fn open(
        &self,
        host: &str,
        port: u16,
        wait: Duration,
    ) -> Result<Channel, ForwardError> {
        let mut rx = self.rx.clone();
        let handle = tokio::time::timeout(wait, async {
            rx.wait_for(|h| h.as_ref().is_some_and(|h| !h.is_closed()))
                .await
                .map(|h| h.clone())
        })
        .await
        .map_err(|_| ForwardError::NoTunnel)?
        .map_err(|_| ForwardError::NoTunnel)?
        .ok_or(ForwardError::NoTunnel)?;
        handle
            .open_direct_tcpip(host, port)
            .await
            .map_err(|e| match e {
                psiphon_ssh::Error::ChannelOpenFailed { description, .. } => {
                    ForwardError::Refused(description)
                }
                other => ForwardError::Failed(other.to_string()),
            })
    }

    /// Whether a tunnel is up now.
    pub fn is_up(&self) -> bool {
        self.rx.borrow().as_ref().is_some_and(|h| !h.is_closed())
    }
}

/// Keeps a tunnel up until `shutdown` resolves.
pub struct Controller {
    params: ClientParams,
    store: Arc<Datastore>,
    settings: Settings,
    observer: Arc<dyn Observer>,
    active: watch::Sender<Option<Handle>>,
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
        let (tx, rx) = watch::channel(None);
        (
            Controller {
                params,
                store,
                settings,
                observer,
                active: tx,
            },
            ActiveTunnel { rx },
        )
    }

    fn protocols_for(&self, entry: &ServerEntry) -> Vec<TunnelProtocol> {
        let allowed: &[TunnelProtocol] = if self.settings.protocols.is_empty() {
            &[TunnelProtocol::Ossh, TunnelProtocol::Ssh]
        } else {
            &self.settings.protocols
        };
        allowed
            .iter()
            .copied()
            .filter(|p| {
                matches!(p, TunnelProtocol::Ossh | TunnelProtocol::Ssh) && entry.supports(*p)
            })
            .collect()
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

    /// Candidates for a round: the affinity server first, the rest shuffled; each with the
    /// protocols it supports (OSSH before SSH).
    fn candidates(&self) -> Vec<(ServerEntry, TunnelProtocol)> {
        let affinity = self.store.affinity().ok().flatten();
        let entries = self.eligible_entries();
        let (first, mut rest): (Vec<ServerEntry>, Vec<ServerEntry>) = entries
            .into_iter()
            .partition(|e| Some(e.ip_address_str()) == affinity.as_deref());
        shuffle(&mut rest);
        first
            .into_iter()
            .chain(rest)
            .flat_map(|e| {
                self.protocols_for(&e)
                    .into_iter()
                    .map(move |p| (e.clone(), p))
            })
            .collect()
    }

    /// One round: up to `workers` dials at once; the first handshaken tunnel wins and the others
    /// are cancelled (their sockets close when their tasks are aborted).
    async fn establish_round(&self) -> Option<Tunnel> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            self.observer.no_candidates();
            return None;
        }
        let mut queue = candidates.into_iter();
        let mut set = JoinSet::new();
        let spawn = |set: &mut JoinSet<_>, entry: ServerEntry, protocol: TunnelProtocol| {
            let params = self.params.clone();
            let timeout = self.settings.establish_timeout;
            set.spawn(async move {
                let r = tunnel::establish(&entry, protocol, &params, timeout).await;
                (entry, protocol, r)
            });
        };
        for _ in 0..self.settings.workers.max(1) {
            if let Some((e, p)) = queue.next() {
                spawn(&mut set, e, p);
            }
        }
        while let Some(done) = set.join_next().await {
            let Ok((entry, protocol, result)) = done else {
                continue;
            };
            match result {
                Ok(t) => {
                    set.abort_all();
                    return Some(t);
                }
                Err(e) => {
                    self.observer.candidate_failed(&entry, protocol, &e);
                    if let Some((e, p)) = queue.next() {
                        spawn(&mut set, e, p);
                    }
                }
            }
        }
        self.observer.round_failed();
        None
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let round = tokio::select! {
                t = self.establish_round() => t,
                () = &mut shutdown => break,
            };
            let Some(tunnel) = round else {
                let pause = jitter(self.settings.round_pause, 10);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            };
            if let Err(e) = self.store.set_affinity(tunnel.entry.ip_address_str()) {
                self.observer.warning(&e.to_string());
            }
            let _ = self.active.send(Some(tunnel.handle()));
            self.observer.tunnel_up(&tunnel);
            self.store_discovered(&tunnel);
            let last_connected = self.store.get(KEY_LAST_CONNECTED).ok().flatten();
            if let Ok(ts) = tunnel
                .connected(&self.params, last_connected.as_deref())
                .await
            {
                let _ = self.store.set(KEY_LAST_CONNECTED, Some(&ts));
                self.observer.connected(&ts);
            }
            let reason = tokio::select! {
                r = self.operate(&tunnel) => r,
                () = &mut shutdown => {
                    let _ = self.active.send(None);
                    break;
                }
            };
            let _ = self.active.send(None);
            self.observer.tunnel_down(&reason);
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

    /// Sends `psiphon-status` and prunes what the server names invalid.
    async fn send_status(&self, tunnel: &Tunnel) {
        let data = self.status_data();
        if let Ok(response) = tunnel.status(&self.params, data).await {
            for tag in &response.invalid_server_entry_tags {
                match self.store.prune(tag, self.settings.prune_minimum_age) {
                    Ok(true) => self.observer.pruned(tag),
                    Ok(false) => {}
                    Err(e) => self.observer.warning(&e.to_string()),
                }
            }
        }
    }

    /// Watches a tunnel until it fails; returns why.
    async fn operate(&self, tunnel: &Tunnel) -> String {
        let (lo, hi) = self.settings.keepalive_period;
        let mut next_status = tokio::time::Instant::now() + jitter(self.settings.status_period, 50);
        loop {
            let span = u64::try_from(hi.saturating_sub(lo).as_millis()).unwrap_or(0);
            let wait = lo + Duration::from_millis(random_below(span + 1));
            tokio::select! {
                e = tunnel.closed() => return format!("ssh connection closed: {e}"),
                () = tokio::time::sleep(wait) => {}
            }
            if let Err(e) = tunnel.keepalive(self.settings.keepalive_timeout).await {
                return format!("keepalive failed: {e}");
            }
            if tokio::time::Instant::now() >= next_status {
                self.send_status(tunnel).await;
                next_status = tokio::time::Instant::now() + jitter(self.settings.status_period, 50);
            }
        }
    }
}
