//! One round of establishment: race connects wide, handshakes narrow (design.md).
//!
//! A TCP connect costs one SYN; an OSSH + SSH + API handshake costs CPU and bytes. So the round
//! starts TCP connects to many candidates at once (`connect_width`, staggered by `stagger`),
//! gives up on silence after a timeout that shrinks to a few round trips of the fastest answer
//! seen, and runs the expensive handshake only on connects that succeeded, at most `workers` at
//! a time, first come first served. The first handshaken tunnel wins; everything else in
//! flight is dropped at once (tasks aborted, sockets closed).
//!
//! The affinity server's candidates go first, alone, for `affinity_grace` (or until they
//! fail). A server that rejects us is not tried again this round.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use psiphon_protocol::{ServerEntry, TunnelProtocol};
use psiphon_transport::{BoxIo, NetDialer};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Observer;
use crate::tunnel::{self, ClientParams, ErrorKind, Tunnel};

/// One thing to try: a server over one protocol.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The server.
    pub entry: ServerEntry,
    /// The protocol.
    pub protocol: TunnelProtocol,
    /// Whether this is the affinity server (tried first, with a head start).
    pub affinity: bool,
}

/// Round tuning.
#[derive(Debug, Clone)]
pub struct RaceSettings {
    /// TCP connects in flight at once.
    pub connect_width: usize,
    /// Handshakes (OSSH + SSH + API) in flight at once (`ConnectionWorkerPoolSize`).
    pub workers: usize,
    /// Pause between launching two connects (`StaggerConnectionWorkersMilliseconds`).
    pub stagger: Duration,
    /// Connect timeout until some server has answered.
    pub initial_connect_timeout: Duration,
    /// Never wait longer than this for a connect.
    pub max_connect_timeout: Duration,
    /// Limit for the handshake after the connect.
    pub handshake_timeout: Duration,
    /// Head start of the affinity server.
    pub affinity_grace: Duration,
    /// How TCP connections are made (direct, or through the upstream proxy).
    pub net: Arc<dyn NetDialer>,
}

/// What a round saw, for the replay memory.
#[derive(Debug, Default)]
pub struct RoundReport {
    /// Per protocol: servers (IP) where it failed as blocking looks (silence, reset).
    pub blocked_on: HashMap<TunnelProtocol, HashSet<String>>,
    /// The fastest connect round trip seen.
    pub fastest_connect: Option<Duration>,
    /// Candidates attempted.
    pub attempted: usize,
}

enum Done {
    Connected {
        index: usize,
        stream: BoxIo,
        started: std::time::Instant,
        rtt: Duration,
    },
    Failed {
        index: usize,
        error: tunnel::Error,
        /// Whether it failed in the handshake (else in the connect).
        handshake: bool,
    },
    Handshaken {
        index: usize,
        tunnel: Box<Tunnel>,
    },
}

/// A connect that gives up when the (shrinking) connect timeout says so.
async fn timed_connect(
    entry: ServerEntry,
    protocol: TunnelProtocol,
    net: Arc<dyn NetDialer>,
    timeout: watch::Receiver<Duration>,
) -> Result<(BoxIo, Duration), tunnel::Error> {
    let start = Instant::now();
    let mut timeout = timeout;
    let connect = tunnel::connect(&entry, protocol, &*net);
    tokio::pin!(connect);
    loop {
        let deadline = start + *timeout.borrow_and_update();
        tokio::select! {
            r = &mut connect => return r.map(|s| (s, start.elapsed())),
            () = tokio::time::sleep_until(deadline) => {
                if start + *timeout.borrow() <= Instant::now() {
                    return Err(tunnel::Error::Dial {
                        protocol,
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no answer within {:?}", start.elapsed()),
                        ),
                    });
                }
            }
            changed = timeout.changed() => {
                if changed.is_err() {
                    // The round is over; its owner aborts this task.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// The connect timeout once a server answered in `rtt`: a few round trips, plus room for one
/// lost SYN on a slow path, within the configured bounds.
pub fn adaptive_timeout(rtt: Duration, settings: &RaceSettings) -> Duration {
    (rtt * 4 + Duration::from_millis(500))
        .max(Duration::from_millis(500))
        .min(settings.max_connect_timeout)
}

/// Runs one round over `candidates` (in order). Returns the winning tunnel, if any, and what
/// the round saw.
pub async fn race(
    candidates: Vec<Candidate>,
    settings: &RaceSettings,
    params: &ClientParams,
    observer: &Arc<dyn Observer>,
) -> (Option<Tunnel>, RoundReport) {
    let mut report = RoundReport::default();
    let mut affinity: VecDeque<usize> = VecDeque::new();
    let mut rest: VecDeque<usize> = VecDeque::new();
    for (i, c) in candidates.iter().enumerate() {
        if c.affinity {
            affinity.push_back(i);
        } else {
            rest.push_back(i);
        }
    }
    let (timeout_tx, timeout_rx) = watch::channel(settings.initial_connect_timeout);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut connecting = 0usize;
    let mut handshaking = 0usize;
    let mut affinity_in_flight = 0usize;
    let mut waiting: VecDeque<(usize, BoxIo, std::time::Instant)> = VecDeque::new();
    let mut rejected: HashSet<String> = HashSet::new();
    let round_start = Instant::now();
    let grace_end = round_start + settings.affinity_grace;
    let mut next_launch = round_start;

    loop {
        // Start handshakes on connected streams while workers are free.
        while handshaking < settings.workers.max(1) {
            let Some((index, stream, started)) = waiting.pop_front() else {
                break;
            };
            let c = &candidates[index];
            if rejected.contains(c.entry.ip_address_str()) {
                continue;
            }
            handshaking += 1;
            let (entry, protocol) = (c.entry.clone(), c.protocol);
            let params = params.clone();
            let timeout = settings.handshake_timeout;
            tasks.spawn(async move {
                match tunnel::establish_over(stream, &entry, protocol, &params, timeout, started)
                    .await
                {
                    Ok(tunnel) => Done::Handshaken {
                        index,
                        tunnel: Box::new(tunnel),
                    },
                    Err(error) => Done::Failed {
                        index,
                        error,
                        handshake: true,
                    },
                }
            });
        }

        // What may be launched now: affinity candidates always; the rest once the affinity
        // server has had its head start or has nothing left in play.
        let affinity_pending = !affinity.is_empty() || affinity_in_flight > 0;
        let rest_allowed = !affinity_pending || Instant::now() >= grace_end;
        let can_launch = connecting < settings.connect_width.max(1)
            && (!affinity.is_empty() || (rest_allowed && !rest.is_empty()));

        if tasks.is_empty() && !can_launch {
            if affinity.is_empty() && rest.is_empty() && waiting.is_empty() {
                return (None, report);
            }
            if !rest_allowed {
                tokio::time::sleep_until(grace_end).await;
                continue;
            }
        }

        let launch_at = if can_launch { Some(next_launch) } else { None };
        let grace_wake = if affinity_pending && !rest_allowed && !rest.is_empty() {
            Some(grace_end)
        } else {
            None
        };
        tokio::select! {
            () = tokio::time::sleep_until(launch_at.unwrap_or(round_start)), if launch_at.is_some() => {
                let next = affinity.pop_front().or_else(|| if rest_allowed { rest.pop_front() } else { None });
                let Some(index) = next else { continue };
                let c = &candidates[index];
                if rejected.contains(c.entry.ip_address_str()) {
                    continue;
                }
                report.attempted += 1;
                connecting += 1;
                observer.attempting(&c.entry, c.protocol);
                if c.affinity {
                    affinity_in_flight += 1;
                }
                let (entry, protocol) = (c.entry.clone(), c.protocol);
                let rx = timeout_rx.clone();
                let net = settings.net.clone();
                tasks.spawn(async move {
                    let started = std::time::Instant::now();
                    match timed_connect(entry, protocol, net, rx).await {
                        Ok((stream, rtt)) => Done::Connected { index, stream, started, rtt },
                        Err(error) => Done::Failed { index, error, handshake: false },
                    }
                });
                next_launch = Instant::now() + settings.stagger;
            }
            () = tokio::time::sleep_until(grace_wake.unwrap_or(round_start)), if grace_wake.is_some() => {}
            joined = tasks.join_next(), if !tasks.is_empty() => {
                let Some(Ok(done)) = joined else { continue };
                match done {
                    Done::Connected { index, stream, started, rtt } => {
                        connecting -= 1;
                        if report.fastest_connect.is_none_or(|f| rtt < f) {
                            report.fastest_connect = Some(rtt);
                            let t = adaptive_timeout(rtt, settings);
                            if t < *timeout_tx.borrow() {
                                let _ = timeout_tx.send(t);
                            }
                        }
                        waiting.push_back((index, stream, started));
                    }
                    Done::Handshaken { index, tunnel } => {
                        let _ = index;
                        tasks.abort_all();
                        return (Some(*tunnel), report);
                    }
                    Done::Failed { index, error, handshake } => {
                        let c = &candidates[index];
                        if handshake {
                            handshaking = handshaking.saturating_sub(1);
                        } else {
                            connecting = connecting.saturating_sub(1);
                        }
                        if c.affinity {
                            affinity_in_flight = affinity_in_flight.saturating_sub(1);
                        }
                        match error.kind() {
                            ErrorKind::ServerRejected => {
                                rejected.insert(c.entry.ip_address_str().to_owned());
                            }
                            ErrorKind::Blocked => {
                                report
                                    .blocked_on
                                    .entry(c.protocol)
                                    .or_default()
                                    .insert(c.entry.ip_address_str().to_owned());
                            }
                            _ => {}
                        }
                        if let tunnel::Error::Net { source, .. } = &error
                            && source.is_upstream_proxy_error()
                        {
                            observer.upstream_proxy_error(&source.full_message());
                        }
                        observer.candidate_failed(&c.entry, c.protocol, &error);
                    }
                }
            }
            // Nothing to wait for (only possible if a task died without reporting): the
            // round is over rather than stuck.
            else => return (None, report),
        }
    }
}
