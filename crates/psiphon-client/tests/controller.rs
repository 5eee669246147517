//! The controller: picks a working server among dead ones, and when the server dies, notices,
//! waits, and reconnects, while forwards asked for in between wait for the new tunnel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{echo_origin, params, test_server};
use psiphon_client::controller::{Controller, Observer, Settings};
use psiphon_client::datastore::{Datastore, Source};
use psiphon_client::tunnel::{self, Tunnel};
use psiphon_protocol::{ServerEntry, TunnelProtocol};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Debug)]
enum Seen {
    Up(TunnelProtocol),
    Down,
    Failed,
    Connected,
}

struct Recorder(mpsc::UnboundedSender<Seen>, Mutex<Vec<String>>);

impl Observer for Recorder {
    fn tunnel_up(&self, t: &Tunnel) {
        let _ = self.0.send(Seen::Up(t.protocol));
    }
    fn tunnel_down(&self, reason: &str) {
        self.1.lock().unwrap().push(reason.to_owned());
        let _ = self.0.send(Seen::Down);
    }
    fn candidate_failed(&self, _: &ServerEntry, _: TunnelProtocol, _: &tunnel::Error) {
        let _ = self.0.send(Seen::Failed);
    }
    fn connected(&self, _: &str) {
        let _ = self.0.send(Seen::Connected);
    }
}

async fn next_up(rx: &mut mpsc::UnboundedReceiver<Seen>) -> TunnelProtocol {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(Seen::Up(p)) = rx.recv().await {
                return p;
            }
        }
    })
    .await
    .expect("no tunnel came up")
}

async fn echo_through(active: &psiphon_client::controller::ActiveTunnel, origin: u16) {
    let mut ch = active
        .open("127.0.0.1", origin, Duration::from_secs(30))
        .await
        .unwrap();
    ch.write_all(b"ping").await.unwrap();
    ch.shutdown().await.unwrap();
    let mut got = Vec::new();
    ch.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_live_server_and_reconnects_after_it_restarts() {
    let mut server = test_server().await;
    let origin = echo_origin().await;
    // Two dead candidates (nothing listens on their ports) and the live one.
    let dead: Vec<ServerEntry> = (0..2)
        .map(|_| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut f = server.entry.fields().clone();
            f.insert(
                "ipAddress".into(),
                json!(format!("127.0.0.{}", 2 + port % 200)),
            );
            f.insert("sshPort".into(), json!(port));
            f.insert("sshObfuscatedPort".into(), json!(port));
            ServerEntry::from_fields(f).unwrap()
        })
        .collect();
    let mut entries = dead;
    entries.push(server.entry.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder(tx, Mutex::new(Vec::new())));
    let settings = Settings {
        round_pause: Duration::from_millis(100),
        establish_timeout: Duration::from_secs(5),
        keepalive_period: (Duration::from_secs(1), Duration::from_secs(2)),
        keepalive_timeout: Duration::from_secs(2),
        ..Settings::default()
    };
    let (controller, active) =
        Controller::new(params(), store_of(entries), settings, recorder.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller.run(async move {
        let _ = stop_rx.await;
    }));

    next_up(&mut rx).await;
    assert!(active.is_up());
    echo_through(&active, origin).await;

    // The server dies: the controller notices, and forwards wait for the next tunnel.
    server.stop().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(rx.recv().await, Some(Seen::Down)) {}
    })
    .await
    .expect("the controller did not notice the dead tunnel");
    let waiting = {
        let active = active.clone();
        tokio::spawn(async move { echo_through(&active, origin).await })
    };
    server.start().await;
    next_up(&mut rx).await;
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .unwrap()
        .unwrap();
    echo_through(&active, origin).await;

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert!(!active.is_up(), "no tunnel is advertised after shutdown");
    let reasons = recorder.1.lock().unwrap().clone();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("closed") || r.contains("keepalive")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_fail_clearly_when_no_tunnel_comes() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let (controller, active) = Controller::new(
        params(),
        store_of(Vec::new()),
        Settings {
            round_pause: Duration::from_millis(50),
            ..Settings::default()
        },
        Arc::new(Recorder(tx, Mutex::new(Vec::new()))),
    );
    let run = tokio::spawn(controller.run(std::future::pending()));
    let err = active
        .open("example.org", 80, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, psiphon_client::controller::ForwardError::NoTunnel),
        "{err}"
    );
    run.abort();
}

fn store_of(entries: Vec<ServerEntry>) -> Arc<Datastore> {
    let store = Datastore::in_memory().unwrap();
    store.store_all(entries, Source::Embedded).unwrap();
    Arc::new(store)
}

/// Records the store-related events too.
struct StoreRecorder(mpsc::UnboundedSender<String>);

impl Observer for StoreRecorder {
    fn tunnel_up(&self, t: &Tunnel) {
        let _ = self
            .0
            .send(format!("up {}", t.entry.region().unwrap_or("")));
    }
    fn tunnel_down(&self, _: &str) {}
    fn candidate_failed(&self, _: &ServerEntry, _: TunnelProtocol, _: &tunnel::Error) {}
    fn connected(&self, _: &str) {}
    fn no_candidates(&self) {
        let _ = self.0.send("no candidates".into());
    }
    fn pruned(&self, tag: &str) {
        let _ = self.0.send(format!("pruned {tag}"));
    }
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, what: &str) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Some(s) if s == what => return,
                Some(_) => {}
                None => panic!("observer gone while waiting for {what:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never saw {what:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_region_limits_the_candidates() {
    let server = test_server().await; // region CA
    let store = store_of(vec![server.entry.clone()]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        round_pause: Duration::from_millis(50),
        egress_region: "US".into(),
        ..Settings::default()
    };
    let (controller, active) = Controller::new(
        params(),
        store.clone(),
        settings.clone(),
        Arc::new(StoreRecorder(tx)),
    );
    let run = tokio::spawn(controller.run(std::future::pending()));
    expect(&mut rx, "no candidates").await;
    assert!(
        !active.is_up(),
        "a server outside the egress region was used"
    );
    run.abort();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        egress_region: "CA".into(),
        ..settings
    };
    let (controller, _active) = Controller::new(
        params(),
        store.clone(),
        settings,
        Arc::new(StoreRecorder(tx)),
    );
    let run = tokio::spawn(controller.run(std::future::pending()));
    expect(&mut rx, "up CA").await;
    assert_eq!(
        store.affinity().unwrap().as_deref(),
        Some("127.0.0.1"),
        "the server that worked becomes the affinity server"
    );
    run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_the_server_names_invalid_are_pruned() {
    let server = test_server().await;
    let store = store_of(vec![server.entry.clone()]);
    let mut doomed = server.entry.fields().clone();
    doomed.insert("ipAddress".into(), json!("192.0.2.10"));
    doomed.insert("tag".into(), json!("invalid-1"));
    store
        .store(ServerEntry::from_fields(doomed).unwrap(), Source::Remote)
        .unwrap();
    assert_eq!(store.count().unwrap(), 2);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        status_period: Duration::from_millis(200),
        keepalive_period: (Duration::from_millis(100), Duration::from_millis(200)),
        check_tags_period: Duration::ZERO,
        prune_minimum_age: Duration::ZERO,
        // The doomed entry is unreachable; make sure the live one is the one dialed.
        target: Some("127.0.0.1".into()),
        ..Settings::default()
    };
    let (controller, _active) = Controller::new(
        params(),
        store.clone(),
        settings,
        Arc::new(StoreRecorder(tx)),
    );
    let run = tokio::spawn(controller.run(std::future::pending()));
    expect(&mut rx, "pruned invalid-1").await;
    assert!(store.entry("192.0.2.10").unwrap().is_none());
    assert!(
        store.entry("127.0.0.1").unwrap().is_some(),
        "valid entries stay"
    );
    run.abort();
}

/// Records which protocols were attempted, in order, and what came up.
struct OrderRecorder(mpsc::UnboundedSender<String>);

impl Observer for OrderRecorder {
    fn tunnel_up(&self, t: &Tunnel) {
        let _ = self.0.send(format!("up {}", t.protocol.name()));
    }
    fn tunnel_down(&self, _: &str) {}
    fn candidate_failed(&self, _: &ServerEntry, p: TunnelProtocol, _: &tunnel::Error) {
        let _ = self.0.send(format!("failed {}", p.name()));
    }
    fn attempting(&self, _: &ServerEntry, p: TunnelProtocol) {
        let _ = self.0.send(format!("try {}", p.name()));
    }
    fn connected(&self, _: &str) {}
    fn tunnels(&self, n: usize) {
        let _ = self.0.send(format!("tunnels {n}"));
    }
    fn establish_timeout(&self, _: Duration) {
        let _ = self.0.send("timeout".into());
    }
}

async fn events_until(rx: &mut mpsc::UnboundedReceiver<String>, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = rx.recv().await {
            let done = e == last;
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never saw {last:?}; saw {seen:?}"));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_protocol_is_tried_last_next_time_on_the_same_network() {
    let server = test_server().await;
    // OSSH is "blocked": its port refuses (nothing listens there); SSH works.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut f = server.entry.fields().clone();
    f.insert("sshObfuscatedPort".into(), json!(closed));
    let store = store_of(vec![ServerEntry::from_fields(f).unwrap()]);
    let settings = Settings {
        network_id: "wifi-cafe".into(),
        ..Settings::default()
    };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (c, _a) = Controller::new(
        params(),
        store.clone(),
        settings.clone(),
        Arc::new(OrderRecorder(tx)),
    );
    let run = tokio::spawn(c.run(std::future::pending()));
    let first = events_until(&mut rx, "up SSH").await;
    run.abort();
    assert_eq!(
        first.first().map(String::as_str),
        Some("try OSSH"),
        "{first:?}"
    );
    assert!(first.iter().any(|e| e == "failed OSSH"), "{first:?}");

    // Next run on the same network: SSH first.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (c, _a) = Controller::new(
        params(),
        store.clone(),
        settings.clone(),
        Arc::new(OrderRecorder(tx)),
    );
    let run = tokio::spawn(c.run(std::future::pending()));
    let second = events_until(&mut rx, "up SSH").await;
    run.abort();
    // (OSSH may still be tried second: the race launches every candidate within
    // milliseconds; what replay changes is the order.)
    assert_eq!(
        second.first().map(String::as_str),
        Some("try SSH"),
        "{second:?}"
    );

    // Another network has no such memory: OSSH first again.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let other = Settings {
        network_id: "home".into(),
        ..settings
    };
    let (c, _a) = Controller::new(params(), store, other, Arc::new(OrderRecorder(tx)));
    let run = tokio::spawn(c.run(std::future::pending()));
    let third = events_until(&mut rx, "up SSH").await;
    run.abort();
    assert_eq!(
        third.first().map(String::as_str),
        Some("try OSSH"),
        "{third:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_tunnels_spreads_forwards() {
    let a = test_server().await;
    let b = test_server().await;
    let origin = echo_origin().await;
    // Both test servers listen on 127.0.0.1, and the datastore keys entries by address: give
    // the pool two distinct servers by reaching b as 127.0.0.2 through a local forwarder.
    let b2 = relabel_as(&b.entry, "127.0.0.2").await;
    let store = store_of(vec![a.entry.clone(), b2]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        pool_size: 2,
        ..Settings::default()
    };
    let (c, active) = Controller::new(params(), store, settings, Arc::new(OrderRecorder(tx)));
    let run = tokio::spawn(c.run(std::future::pending()));
    events_until(&mut rx, "tunnels 2").await;
    assert_eq!(active.count(), 2);
    for _ in 0..4 {
        echo_through(&active, origin).await;
    }
    let sessions = (
        a.sessions.lock().unwrap().len(),
        b.sessions.lock().unwrap().len(),
    );
    assert!(sessions.0 >= 1 && sessions.1 >= 1, "{sessions:?}");
    run.abort();
}

/// Forwards 127.0.0.2:<same ports> to the entry's 127.0.0.1 ports, and returns the entry
/// relabelled with the new address.
async fn relabel_as(entry: &ServerEntry, ip: &str) -> ServerEntry {
    for port in [
        entry.ssh_port().unwrap(),
        entry.ssh_obfuscated_port().unwrap(),
    ] {
        let l = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut s).await;
                });
            }
        });
    }
    let mut f = entry.fields().clone();
    f.insert("ipAddress".into(), json!(ip));
    ServerEntry::from_fields(f).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_gives_up_at_the_establish_deadline() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = test_server().await;
    let mut f = server.entry.fields().clone();
    f.insert("sshPort".into(), json!(closed));
    f.insert("sshObfuscatedPort".into(), json!(closed));
    drop(server);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        round_pause: Duration::from_millis(100),
        establish_deadline: Some(Duration::from_millis(800)),
        ..Settings::default()
    };
    let (c, _a) = Controller::new(
        params(),
        store_of(vec![ServerEntry::from_fields(f).unwrap()]),
        settings,
        Arc::new(OrderRecorder(tx)),
    );
    let run = tokio::spawn(c.run(std::future::pending()));
    events_until(&mut rx, "timeout").await;
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the controller stops after the deadline")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_attempts_are_cancelled_and_their_sockets_closed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let server = test_server().await;
    // Tarpits: accept TCP and never answer, on 127.0.0.10..40 (the same port on each).
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let first = tokio::net::TcpListener::bind("127.0.0.10:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![first];
    for i in 11..=40 {
        listeners.push(
            tokio::net::TcpListener::bind(format!("127.0.0.{i}:{port}"))
                .await
                .unwrap(),
        );
    }
    for l in listeners {
        let (open, accepted) = (open.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                open.fetch_add(1, Ordering::SeqCst);
                accepted.fetch_add(1, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(c.read(&mut buf).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    let mut entries: Vec<ServerEntry> = (10..=40)
        .map(|i| {
            let mut f = server.entry.fields().clone();
            f.insert("ipAddress".into(), json!(format!("127.0.0.{i}")));
            f.insert("sshPort".into(), json!(port));
            f.insert("sshObfuscatedPort".into(), json!(port));
            ServerEntry::from_fields(f).unwrap()
        })
        .collect();
    entries.push(server.entry.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let settings = Settings {
        establish_timeout: Duration::from_secs(3),
        ..Settings::default()
    };
    let (c, _active) = Controller::new(
        params(),
        store_of(entries),
        settings,
        Arc::new(OrderRecorder(tx)),
    );
    let run = tokio::spawn(c.run(std::future::pending()));
    events_until(&mut rx, "tunnels 1").await;
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "no tarpit was dialed: the test proves nothing"
    );
    // Every losing attempt's socket is closed once the winner is chosen (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        open.load(Ordering::SeqCst),
        0,
        "sockets left open after the round (of {} accepted)",
        accepted.load(Ordering::SeqCst)
    );
    run.abort();
}

/// A TCP relay to `port` on 127.0.0.1, listening on `ip`, that can be frozen: sockets stay
/// open but no byte moves either way, as when a censor starts dropping a server's packets.
async fn freezable_relay(ip: &str, port: u16) -> (u16, Arc<std::sync::atomic::AtomicBool>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let frozen = Arc::new(AtomicBool::new(false));
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let relay_port = l.local_addr().unwrap().port();
    let f = frozen.clone();
    tokio::spawn(async move {
        while let Ok((c, _)) = l.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let (cr, cw) = c.into_split();
                let (sr, sw) = s.into_split();
                let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                            mut w: tokio::net::tcp::OwnedWriteHalf,
                            f: Arc<AtomicBool>| async move {
                    let mut buf = vec![0u8; 16384];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if f.load(Ordering::SeqCst) {
                            // Blackholed: swallow everything from now on, keep the socket.
                            while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
                            return;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let a = tokio::spawn(pump(cr, sw, f.clone()));
                let b = tokio::spawn(pump(sr, cw, f));
                let _ = (a.await, b.await);
            });
        }
    });
    (relay_port, frozen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_silent_mid_transfer_is_detected_quickly() {
    use std::sync::atomic::Ordering;
    let server = test_server().await;
    let origin = echo_origin().await;
    let (relay, frozen) = freezable_relay("127.0.0.5", server.entry.ssh_port().unwrap()).await;
    let mut f = server.entry.fields().clone();
    f.insert("ipAddress".into(), json!("127.0.0.5"));
    f.insert("sshPort".into(), json!(relay));
    f.insert("capabilities".into(), json!(["ssh-api-requests", "SSH"]));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let recorder = Arc::new(Recorder(tx, Mutex::new(Vec::new())));
    let settings = Settings {
        // Periodic keepalives far away: only the stall probe can notice in time.
        keepalive_period: (Duration::from_secs(300), Duration::from_secs(300)),
        keepalive_timeout: Duration::from_secs(2),
        stall_probe_after: Duration::from_secs(1),
        ..Settings::default()
    };
    let (c, active) = Controller::new(
        params(),
        store_of(vec![ServerEntry::from_fields(f).unwrap()]),
        settings,
        recorder.clone(),
    );
    let run = tokio::spawn(c.run(std::future::pending()));
    next_up(&mut rx).await;
    let mut ch = active
        .open("127.0.0.1", origin, Duration::from_secs(10))
        .await
        .unwrap();
    ch.write_all(b"before").await.unwrap();
    let mut buf = [0u8; 6];
    ch.read_exact(&mut buf).await.unwrap();

    // The censor blackholes the server; the client keeps sending.
    frozen.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let _ = ch.write_all(&[7u8; 1000]).await;
    tokio::time::timeout(Duration::from_secs(20), async {
        while !matches!(rx.recv().await, Some(Seen::Down)) {}
    })
    .await
    .expect("a silent server was not detected within 20 s");
    eprintln!(
        "LIVENESS stall_detected_ms={}",
        started.elapsed().as_millis()
    );
    run.abort();
}
