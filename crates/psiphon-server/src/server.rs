//! Listeners: one per tunnel protocol, a bound on concurrent handshakes, graceful shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use psiphon_obfs::{Keyword, SeedHistory};
use psiphon_ssh::MacAlg;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::log::{EventLog, Level};
use crate::reload::PsinetStore;
use crate::traffic_rules::RulesStore;
use crate::tunnel;

/// A listener's tunnel protocol: its plug-in from psiphon-transport.
pub(crate) type Protocol = Arc<dyn psiphon_transport::TunnelAcceptor>;

/// Counters over the server's life.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) auth_failures: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) tunnels: AtomicU64,
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Password checks that failed.
    pub auth_failures: u64,
    /// Connections that did not complete the OSSH/SSH handshake (probes, timeouts, bad auth).
    pub handshake_failures: u64,
    /// Tunnels that completed the SSH handshake and have ended.
    pub tunnels: u64,
}

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) psinet: PsinetStore,
    pub(crate) rules: RulesStore,
    pub(crate) log: EventLog,
    pub(crate) ssh: psiphon_ssh::ServerConfig,
    /// SSH under OSSH: no encrypt-then-MAC, as tunnel-core (ETM leaks packet lengths).
    pub(crate) ssh_under_ossh: psiphon_ssh::ServerConfig,
    pub(crate) handshakes: Arc<Semaphore>,
    pub(crate) counters: Counters,
    pub(crate) geoip: crate::geoip::GeoIp,
    /// `host_bytes` buckets, logged as `domain_dest_bytes`.
    pub(crate) domain_bytes: crate::domain_bytes::DomainBytes,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addrs: BTreeMap<String, SocketAddr>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Opens the log, reads the psinet database and traffic rules, binds one listener per
    /// protocol in `TunnelProtocolPorts` on `ServerIPAddress` and starts serving.
    ///
    /// # Errors
    /// [`Error::Read`], [`Error::ConfigFile`]/[`Error::ConfigValue`] for the referenced
    /// files, [`Error::Listen`] if a port cannot be bound.
    pub async fn start(config: Config) -> Result<Server> {
        let log = EventLog::open(
            config.log_filename.as_deref(),
            &config.host_id,
            Level::from_name(&config.log_level),
        )?;
        for warning in &config.warnings {
            log.message(Level::Warning, warning);
        }
        let geoip = crate::geoip::GeoIp::open(&config.geoip_database_filenames)?;
        let psinet = PsinetStore::open(
            config.psinet_database_filename.as_deref(),
            config.discovery_strategy,
            &config.discovery_value_hmac_key,
            std::time::SystemTime::now(),
        )?;
        let rules = RulesStore::open(config.traffic_rules_filename.as_deref())?;
        for warning in &rules.current().warnings {
            log.message(Level::Warning, warning);
        }
        let mut ssh = psiphon_ssh::ServerConfig::new(Arc::clone(&config.ssh_private_key));
        ssh.common.version = config.ssh_server_version.clone();
        let mut ssh_under_ossh = ssh.clone();
        ssh_under_ossh.common.macs = MacAlg::ALL
            .iter()
            .copied()
            .filter(|m| !m.is_etm())
            .collect();
        let obfs = if config.tunnel_protocol_ports.contains_key("OSSH") {
            let keyword = Keyword::new(&config.obfuscated_ssh_key)
                .map_err(|e| Error::value("config", "ObfuscatedSSHKey", e.to_string()))?;
            let obfs = psiphon_obfs::ServerConfig::new(keyword, Arc::new(SeedHistory::default()))
                .with_handshake_timeout(config.handshake_timeout)
                .map_err(|e| Error::value("config", "handshake timeout", e.to_string()))?;
            Some(Arc::new(obfs))
        } else {
            None
        };
        let acceptors = psiphon_transport::AcceptorConfig { ossh: obfs };
        let ip: IpAddr = config
            .server_ip_address
            .parse()
            .map_err(|_| Error::value("config", "ServerIPAddress", "not an IP address"))?;

        let mut bound = Vec::new();
        let mut addrs = BTreeMap::new();
        for (name, &port) in &config.tunnel_protocol_ports {
            let protocol = psiphon_protocol::TunnelProtocol::from_name(name)
                .and_then(|p| psiphon_transport::acceptor_for(p, &acceptors))
                .ok_or_else(|| Error::UnsupportedProtocol(name.clone()))?;
            let listener = TcpListener::bind((ip, port))
                .await
                .map_err(|source| Error::Listen {
                    protocol: name.clone(),
                    address: format!("{ip}:{port}"),
                    source,
                })?;
            let local = listener.local_addr().map_err(|source| Error::Listen {
                protocol: name.clone(),
                address: format!("{ip}:{port}"),
                source,
            })?;
            addrs.insert(name.clone(), local);
            bound.push((protocol, listener));
        }

        let handshakes = Arc::new(Semaphore::new(config.max_concurrent_ssh_handshakes));
        let shared = Arc::new(Shared {
            config,
            psinet,
            rules,
            log,
            ssh,
            ssh_under_ossh,
            handshakes,
            counters: Counters::default(),
            geoip,
            domain_bytes: crate::domain_bytes::DomainBytes::default(),
        });
        let (shutdown, _) = watch::channel(false);
        let mut listeners: Vec<JoinHandle<()>> = bound
            .into_iter()
            .map(|(protocol, listener)| {
                tokio::spawn(listen(
                    Arc::clone(&shared),
                    protocol,
                    listener,
                    shutdown.subscribe(),
                ))
            })
            .collect();
        listeners.push(tokio::spawn(crate::reload::watch_files(
            Arc::clone(&shared),
            shutdown.subscribe(),
        )));
        listeners.push(tokio::spawn(log_domain_bytes(
            Arc::clone(&shared),
            shutdown.subscribe(),
        )));
        listeners.push(tokio::spawn(summarize_auth_failures(
            Arc::clone(&shared),
            shutdown.subscribe(),
        )));
        let ports: Vec<String> = addrs
            .iter()
            .map(|(name, addr)| format!("{name}:{}", addr.port()))
            .collect();
        shared.log.message(
            Level::Info,
            &format!(
                "discovery: {} strategy, {} discovery servers in psinet",
                shared.config.discovery_strategy.name(),
                shared.psinet.current().database.discovery_servers.len()
            ),
        );
        shared.log.message(
            Level::Info,
            &format!("server started, listening for {}", ports.join(", ")),
        );
        Ok(Server {
            addrs,
            shutdown,
            listeners,
            shared,
        })
    }

    /// The bound address of a protocol's listener (useful with port 0).
    pub fn local_addr(&self, protocol: &str) -> Option<SocketAddr> {
        self.addrs.get(protocol).copied()
    }

    /// The server's counters so far.
    pub fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        ServerStats {
            auth_failures: c.auth_failures.load(Ordering::Relaxed),
            handshake_failures: c.handshake_failures.load(Ordering::Relaxed),
            tunnels: c.tunnels.load(Ordering::Relaxed),
        }
    }

    /// Opens the log file again by name: after a log rotation renamed it, new lines go to a
    /// new file (`psiphond` calls this on SIGHUP).
    ///
    /// # Errors
    /// [`Error::Write`] if the file cannot be opened; the old one stays in use.
    pub fn reopen_log(&self) -> Result<()> {
        self.shared.log.reopen()
    }

    /// Logs the `domain_dest_bytes` buckets now rather than at the end of the period.
    pub fn flush_domain_bytes(&self) {
        self.shared.domain_bytes.flush(&self.shared.log);
    }

    /// Stops accepting, disconnects every client, waits until each tunnel has logged its
    /// `server_tunnel` event, then logs the remaining `domain_dest_bytes` buckets.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for listener in std::mem::take(&mut self.listeners) {
            let _ = listener.await;
        }
        self.shared.domain_bytes.flush(&self.shared.log);
        let stats = self.stats();
        self.shared.log.message(
            Level::Info,
            &format!(
                "server stopped: {} tunnels, {} auth failures, {} failed handshakes",
                stats.tunnels, stats.auth_failures, stats.handshake_failures
            ),
        );
    }
}

/// Runs a server until `shutdown` completes, then stops it gracefully.
///
/// # Errors
/// As [`Server::start`].
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let server = Server::start(config).await?;
    shutdown.await;
    server.shutdown().await;
    Ok(())
}

/// Logs the `domain_dest_bytes` buckets every `DestinationBytesPeriodSeconds`, or sooner when
/// the buckets reach their soft bound. The last ones are logged by [`Server::shutdown`].
async fn log_domain_bytes(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = shared.config.destination_bytes_period;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(period) => {}
            () = shared.domain_bytes.flush_requested() => {}
        }
        shared.domain_bytes.flush(&shared.log);
    }
}

/// How often auth failures are summarised (tunnel-core logs them every 30 minutes).
const AUTH_FAILURE_SUMMARY_PERIOD: Duration = Duration::from_secs(30 * 60);

/// Logs the number of failed password checks per period, never who failed.
async fn summarize_auth_failures(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut reported = 0;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(AUTH_FAILURE_SUMMARY_PERIOD) => {}
        }
        let total = shared.counters.auth_failures.load(Ordering::Relaxed);
        if total > reported {
            shared.log.message(
                Level::Warning,
                &format!(
                    "{} SSH authentication failures in the last 30 minutes",
                    total - reported
                ),
            );
            reported = total;
        }
    }
}

async fn listen(
    shared: Arc<Shared>,
    protocol: Protocol,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        // A permit before accept: at most MaxConcurrentSSHHandshakes handshakes at once.
        let permit = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            permit = Arc::clone(&shared.handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                conns.spawn(tunnel::serve(
                    Arc::clone(&shared),
                    Arc::clone(&protocol),
                    tcp,
                    peer.ip(),
                    permit,
                    shutdown.clone(),
                ));
            }
            Err(_) => {
                // Out of descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
