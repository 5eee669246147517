//! The whole client, as the `psiphon` binary and `psinet quickstart` run it: local proxies in
//! front of the controller's active tunnel, with tunnel-core's notices.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use psiphon_protocol::{ServerEntry, TunnelProtocol};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::controller::{ActiveTunnel, Controller, ForwardError, Observer, Settings};
use crate::datastore::{DATA_DIRECTORY, Datastore, Source, StoreSummary};
use crate::notice::{NoticeFlags, Notices, obj};
use crate::proxy::{DialError, DialFuture, Dialer, HttpProxy, Shutdown, SocksProxy};
use crate::remote_list::{self, Fetcher};
use crate::tunnel::{self, ClientParams, Tunnel};

/// tunnel-core's `MAX_TUNNEL_POOL_SIZE`.
const MAX_TUNNEL_POOL_SIZE: usize = 32;

/// How long a new port forward waits for a tunnel before it fails.
const FORWARD_WAIT: Duration = Duration::from_secs(20);

/// The proxies' dialer: a `direct-tcpip` channel on the active tunnel.
#[derive(Debug, Clone)]
struct TunnelDialer(ActiveTunnel);

impl Dialer for TunnelDialer {
    fn dial(&self, host: String, port: u16) -> DialFuture {
        let active = self.0.clone();
        Box::pin(async move {
            match active.open_counted(&host, port, FORWARD_WAIT).await {
                Ok((ch, None)) => Ok(Box::new(ch) as crate::proxy::ProxyStream),
                Ok((ch, Some(stats))) => Ok(Box::new(crate::host_bytes::Counted::new(ch, stats))
                    as crate::proxy::ProxyStream),
                Err(ForwardError::Refused(why)) => Err(DialError::Refused(why)),
                Err(ForwardError::NoTunnel) => Err(DialError::Unavailable("no tunnel".to_owned())),
                Err(ForwardError::Failed(why)) => Err(DialError::Unavailable(why)),
            }
        })
    }
}

/// Turns controller events into tunnel-core's notices.
struct NoticeObserver {
    notices: Notices,
    client_version: String,
    store: Arc<Datastore>,
    fetcher: Arc<OnceLock<Arc<Fetcher>>>,
}

impl NoticeObserver {
    fn request_fetch(&self) {
        if let Some(f) = self.fetcher.get() {
            f.request();
        }
    }
}

/// Emits `AvailableEgressRegions` with the regions the store holds.
pub fn available_egress_regions(store: &Datastore, notices: &Notices) {
    if let Ok(regions) = store.regions() {
        let list: Vec<serde_json::Value> = regions.into_iter().map(Into::into).collect();
        notices.emit_with(
            "AvailableEgressRegions",
            NoticeFlags::NONE,
            obj([("regions", list.into())]),
        );
    }
}

impl Observer for NoticeObserver {
    fn tunnel_up(&self, t: &Tunnel) {
        let id = t.entry.diagnostic_id();
        self.notices.active_tunnel(&id, t.protocol.name());
        self.notices
            .connected_server_region(t.entry.region().unwrap_or(""));
        let h = &t.handshake;
        if !h.client_region.is_empty() {
            self.notices.client_region(&h.client_region);
        }
        for url in &h.homepages {
            self.notices.homepage(url);
        }
        if h.upgrade_client_version.is_empty() {
            self.notices.client_is_latest_version(&self.client_version);
        } else {
            self.notices
                .client_upgrade_available(&h.upgrade_client_version);
        }
        if !h.server_timestamp.is_empty() {
            self.notices.server_timestamp(&id, &h.server_timestamp);
        }
        self.notices.traffic_rate_limits(
            &id,
            h.upstream_bytes_per_second,
            h.downstream_bytes_per_second,
        );
    }

    fn tunnel_down(&self, reason: &str) {
        self.notices.info(&format!("tunnel failed: {reason}"));
    }

    fn tunnels(&self, count: usize) {
        self.notices
            .tunnels(u64::try_from(count).unwrap_or(u64::MAX));
    }

    fn establish_timeout(&self, timeout: Duration) {
        self.notices
            .establish_tunnel_timeout(&format!("{}s", timeout.as_secs()));
    }

    fn upstream_proxy_error(&self, message: &str) {
        self.notices.upstream_proxy_error(message);
    }

    fn attempting(&self, entry: &ServerEntry, protocol: TunnelProtocol) {
        self.notices.emit_with(
            "ConnectingServer",
            NoticeFlags::DIAGNOSTIC,
            obj([
                ("diagnosticID", entry.diagnostic_id().into()),
                ("region", entry.region().unwrap_or("").into()),
                ("protocol", protocol.name().into()),
            ]),
        );
    }

    fn candidate_failed(
        &self,
        entry: &ServerEntry,
        protocol: TunnelProtocol,
        error: &tunnel::Error,
    ) {
        self.notices.info(&format!(
            "server {} {} failed: {error}",
            entry.diagnostic_id(),
            protocol.name()
        ));
    }

    fn connected(&self, _timestamp: &str) {}

    fn no_candidates(&self) {
        self.request_fetch();
    }

    fn round_failed(&self) {
        self.request_fetch();
    }

    fn discovered(&self, count: usize) {
        self.notices
            .info(&format!("stored {count} discovered server entries"));
        available_egress_regions(&self.store, &self.notices);
    }

    fn pruned(&self, tag: &str) {
        self.notices.emit_with(
            "PruneServerEntry",
            NoticeFlags::DIAGNOSTIC,
            obj([("serverEntryTag", tag.into())]),
        );
    }

    fn warning(&self, message: &str) {
        self.notices.warning(message);
    }
}

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A local proxy could not listen.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// `UpstreamProxyURL` or `CustomHeaders` is unusable.
    #[error("upstream proxy: {0}")]
    UpstreamProxy(#[from] psiphon_transport::ConfigError),
    /// The datastore could not be used.
    #[error(transparent)]
    Datastore(#[from] crate::datastore::DatastoreError),
    /// `ListenInterface` names an interface; only "", "any" and IP addresses are supported.
    #[error("ListenInterface: {0:?} is not supported (use \"any\" or an IP address)")]
    ListenInterface(String),
}

/// How the client reaches the network: directly (from `OutboundBindAddress` when set), or
/// through `UpstreamProxyURL` (with `CustomHeaders`) for every connection it makes.
pub fn network_dialer(
    config: &Config,
) -> Result<Arc<dyn psiphon_transport::NetDialer>, StartError> {
    let mut direct = psiphon_transport::Direct::new(Duration::from_secs(20));
    if let Some(local) = config.outbound_bind_address {
        direct = direct.with_local_address(local);
    }
    let direct = Arc::new(direct);
    let Some(url) = config.upstream_proxy_url.as_deref() else {
        return Ok(direct);
    };
    let url = psiphon_transport::UpstreamProxyUrl::parse(url)?;
    let proxy = psiphon_transport::UpstreamProxy::new(url, direct)
        .with_custom_headers(config.custom_headers.clone())?;
    Ok(Arc::new(proxy))
}

/// The address of `TargetServerEntry`, when set and decodable.
fn target_address(config: &Config) -> Option<String> {
    let target = config.target_server_entry.as_deref()?;
    ServerEntry::decode(target.trim())
        .ok()
        .map(|e| e.ip_address_str().to_owned())
}

/// A running client.
#[derive(Debug)]
pub struct Client {
    /// The SOCKS proxy's address, unless disabled.
    pub socks: Option<SocketAddr>,
    /// The HTTP proxy's address, unless disabled.
    pub http: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    proxies: Shutdown,
    task: JoinHandle<()>,
    finished: tokio::sync::watch::Receiver<bool>,
}

/// With `ServerEntrySignaturePublicKey` configured, entries that carry a signature must verify;
/// one that does not is dropped with a warning (tunnel-core's rule: unsigned entries from
/// embedded and remote lists stay usable).
pub fn verify_entries(
    entries: Vec<ServerEntry>,
    public_key: Option<&str>,
    notices: &Notices,
) -> Vec<ServerEntry> {
    let Some(key) = public_key.filter(|k| !k.is_empty()) else {
        return entries;
    };
    entries
        .into_iter()
        .filter(|e| {
            if e.signature().is_none() {
                return true;
            }
            match e.verify_signature(key) {
                Ok(()) => true,
                Err(err) => {
                    let msg = format!(
                        "dropping server entry {}: bad signature: {err}",
                        e.diagnostic_id()
                    );
                    notices.emit_with("Warning", NoticeFlags::NONE, obj([("message", msg.into())]));
                    false
                }
            }
        })
        .collect()
}

/// Stores entries from a list (embedded, `--server-list`, `TargetServerEntry`) after the
/// signature check of [`verify_entries`].
pub fn import_entries(
    store: &Datastore,
    entries: Vec<ServerEntry>,
    source: Source,
    public_key: Option<&str>,
    notices: &Notices,
) -> Result<StoreSummary, crate::datastore::DatastoreError> {
    let entries = verify_entries(entries, public_key, notices);
    store.store_all(entries, source)
}

/// The data directory under the data root (`DataRootDirectory`, default: the current
/// directory), as tunnel-core lays it out.
pub fn data_directory(config: &Config) -> PathBuf {
    config
        .data_root_directory
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(DATA_DIRECTORY)
}

/// Starts the proxies, the controller over the entries in `store`, and (when
/// `RemoteServerListURLs` is set) the remote server list fetcher.
pub async fn start(
    config: &Config,
    store: Arc<Datastore>,
    notices: Notices,
) -> Result<Client, StartError> {
    let session_id = match &config.session_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => psiphon_protocol::make_session_id().unwrap_or_else(|_| "0".repeat(32)),
    };
    notices.session_id(&session_id);
    let params = ClientParams {
        session_id,
        propagation_channel_id: config.propagation_channel_id.clone(),
        sponsor_id: config.sponsor_id.clone(),
        client_version: config.client_version.clone(),
        client_platform: config.client_platform.clone(),
        device_region: config.device_region.clone(),
        api_encoding: config.target_api_encoding.unwrap_or_default(),
    };
    let net = network_dialer(config)?;
    let settings = Settings {
        net: net.clone(),
        workers: config
            .connection_worker_pool_size
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(10)
            .max(1),
        protocols: config.limit_tunnel_protocols.clone(),
        pool_size: config
            .tunnel_pool_size
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
            .clamp(1, MAX_TUNNEL_POOL_SIZE),
        // tunnel-core's default is 300 s; 0 means no limit.
        establish_deadline: match config.establish_tunnel_timeout_seconds {
            None => Some(Duration::from_secs(300)),
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        },
        network_id: config.network_id.clone(),
        stagger: Duration::from_millis(config.stagger_connection_workers_ms.unwrap_or(2)),
        round_pause: Duration::from_secs(config.establish_tunnel_pause_period_seconds.unwrap_or(2)),
        affinity_grace: Duration::from_millis(
            config
                .establish_tunnel_server_affinity_grace_period_ms
                .unwrap_or(500),
        ),
        egress_region: config.egress_region.clone(),
        target: target_address(config),
        entry_signature_key: config.server_entry_signature_public_key.clone(),
        ..Settings::default()
    };
    available_egress_regions(&store, &notices);
    let fetcher_cell = Arc::new(OnceLock::new());
    let observer = Arc::new(NoticeObserver {
        notices: notices.clone(),
        client_version: config.client_version.clone(),
        store: store.clone(),
        fetcher: fetcher_cell.clone(),
    });
    let (controller, active) = Controller::new(params, store.clone(), settings, observer);
    let fetcher = match (
        config.remote_server_list_urls.is_empty() || config.disable_remote_server_list_fetcher,
        &config.remote_server_list_signature_public_key,
    ) {
        (false, Some(key)) => {
            let dir = data_directory(config);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                notices.warning(&format!("data directory {}: {e}", dir.display()));
            }
            let mut s = remote_list::Settings::new(
                config.remote_server_list_urls.clone(),
                key.clone(),
                dir.join("remote_server_list"),
            );
            s.entry_signature_key = config.server_entry_signature_public_key.clone();
            s.net = net.clone();
            if let Some(ms) = config.fetch_remote_server_list_retry_period_ms {
                s.retry_period = Duration::from_millis(ms);
            }
            let f = Fetcher::new(s, store.clone(), Some(active.clone()), notices.clone());
            let _ = fetcher_cell.set(f.clone());
            Some(f)
        }
        _ => None,
    };
    let dialer: Arc<dyn Dialer> = Arc::new(TunnelDialer(active));
    let proxies = Shutdown::new();
    let listen = match config.listen_ip() {
        Some(ip) => ip,
        None => config
            .listen_interface
            .parse()
            .map_err(|_| StartError::ListenInterface(config.listen_interface.clone()))?,
    };
    let socks = if config.disable_local_socks_proxy {
        None
    } else {
        let p = SocksProxy::bind(
            SocketAddr::new(listen, config.local_socks_proxy_port),
            dialer.clone(),
            notices.clone(),
        )
        .await?;
        let addr = p.local_addr();
        tokio::spawn(p.run(proxies.clone()));
        Some(addr)
    };
    let http = if config.disable_local_http_proxy {
        None
    } else {
        let p = HttpProxy::bind(
            SocketAddr::new(listen, config.local_http_proxy_port),
            dialer,
            notices.clone(),
        )
        .await?;
        let addr = p.local_addr();
        tokio::spawn(p.run(proxies.clone()));
        Some(addr)
    };
    let (stop, stopped) = oneshot::channel();
    let (fetch_stop, fetch_stopped) = oneshot::channel::<()>();
    let fetch_task = fetcher.map(|f| {
        let regions_store = store.clone();
        let regions_notices = notices.clone();
        tokio::spawn(async move {
            f.run(async move {
                let _ = fetch_stopped.await;
            })
            .await;
            available_egress_regions(&regions_store, &regions_notices);
        })
    });
    let (finished_tx, finished) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        controller
            .run(async move {
                let _ = stopped.await;
            })
            .await;
        let _ = finished_tx.send(true);
        let _ = fetch_stop.send(());
        if let Some(t) = fetch_task {
            let _ = t.await;
        }
    });
    Ok(Client {
        socks,
        http,
        stop: Some(stop),
        proxies,
        task,
        finished,
    })
}

impl Client {
    /// Resolves when the controller has stopped by itself (`EstablishTunnelTimeout`); a
    /// console program then exits, as tunnel-core's does.
    pub async fn stopped(&self) {
        let mut rx = self.finished.clone();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Stops the controller and the proxies, and waits for the controller to finish.
    pub async fn shutdown(mut self) {
        self.proxies.trigger();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM: when a console program should shut down.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
