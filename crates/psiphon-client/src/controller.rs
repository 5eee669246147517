//! The controller: keeps one tunnel up. It races candidates (the last good server first), keeps
//! the first tunnel that completes its handshake, watches it with keepalives, sends `connected`
//! and `status`, and re-establishes when it dies — while the local proxies keep listening and
//! wait (bounded) for the next tunnel through [`ActiveTunnel`].
//!
//! This is the simple controller of issue 3; issue 5 brings the fast racing engine (wide TCP
//! connects, adaptive timeouts, replay per network).

use std::sync::Arc;
use std::time::Duration;

use psiphon_protocol::{ServerEntry, TunnelProtocol};
use psiphon_ssh::{Channel, Handle};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::tunnel::{self, ClientParams, Tunnel};

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
    entries: Vec<ServerEntry>,
    settings: Settings,
    observer: Arc<dyn Observer>,
    active: watch::Sender<Option<Handle>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("entries", &self.entries.len())
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
    /// A controller over `entries` (already validated; the first is tried first on the first
    /// round).
    pub fn new(
        params: ClientParams,
        entries: Vec<ServerEntry>,
        settings: Settings,
        observer: Arc<dyn Observer>,
    ) -> (Self, ActiveTunnel) {
        let (tx, rx) = watch::channel(None);
        (
            Controller {
                params,
                entries,
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

    /// Candidates for a round: the affinity server first, the rest shuffled; each with the
    /// protocols it supports (OSSH before SSH).
    fn candidates(&self, affinity: Option<&str>) -> Vec<(ServerEntry, TunnelProtocol)> {
        let mut rest: Vec<&ServerEntry> = self
            .entries
            .iter()
            .filter(|e| Some(e.ip_address_str()) != affinity)
            .collect();
        shuffle(&mut rest);
        let first = self
            .entries
            .iter()
            .filter(|e| Some(e.ip_address_str()) == affinity);
        first
            .chain(rest)
            .flat_map(|e| {
                self.protocols_for(e)
                    .into_iter()
                    .map(move |p| (e.clone(), p))
            })
            .collect()
    }

    /// One round: up to `workers` dials at once; the first handshaken tunnel wins and the others
    /// are cancelled (their sockets close when their tasks are aborted).
    async fn establish_round(&self, affinity: Option<&str>) -> Option<Tunnel> {
        let mut queue = self.candidates(affinity).into_iter();
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
        None
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut affinity: Option<String> = None;
        let mut last_connected: Option<String> = None;
        loop {
            let round = tokio::select! {
                t = self.establish_round(affinity.as_deref()) => t,
                () = &mut shutdown => break,
            };
            let Some(tunnel) = round else {
                let pause = jitter(self.settings.round_pause, 10);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = &mut shutdown => break,
                }
            };
            affinity = Some(tunnel.entry.ip_address_str().to_owned());
            let _ = self.active.send(Some(tunnel.handle()));
            self.observer.tunnel_up(&tunnel);
            if let Ok(ts) = tunnel
                .connected(&self.params, last_connected.as_deref())
                .await
            {
                self.observer.connected(&ts);
                last_connected = Some(ts);
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
                let _ = tunnel.status(&self.params, serde_json::json!({})).await;
                next_status = tokio::time::Instant::now() + jitter(self.settings.status_period, 50);
            }
        }
    }
}
