//! The censor lab scenarios: the real `psiphond` and `psiphon` in network namespaces behind a
//! router that blackholes, resets, blocks ports, adds latency and loss. Each scenario asserts
//! what a user sees (a tunnel, a page through the local proxy, which protocol won) and prints
//! its measurement as `LAB <scenario> key=value ...` on stderr.
//!
//! Needs root, iproute2, nftables, curl and nginx (skips without them unless
//! `PSIPHON_REQUIRE_LAB` is set), and the workspace binaries built (`cargo build --bins`).
//! Run: `cargo test -p psiphon-testkit --test censor_lab -- --nocapture`. Scenarios run one at a
//! time (they share the machine's CPUs; timings would skew). `PSIPHON_LAB_RUNS` sets how many
//! fresh clients scenario 1 and the benchmark start (default 3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod world;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use psiphon_protocol::auth_package::PackageSigningKey;
use psiphon_testkit::lab::{Censor, Lab, LabError, Node};
use serde_json::json;
use world::{Client, OSSH_PORT, Origin, SSH_PORT, Servers, client_config, fetch, median};

/// One scenario at a time in this process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// tunnel-core's establish timeout: a run that has no tunnel by then counts as failed.
const FIRST_TUNNEL_LIMIT: Duration = Duration::from_secs(300);

fn runs() -> usize {
    std::env::var("PSIPHON_LAB_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// Which lab server a diagnostic id names.
fn server_of(lab: &Lab, diagnostic_id: &str) -> Option<Ipv4Addr> {
    lab.server_addresses()
        .iter()
        .copied()
        .find(|ip| Servers::diagnostic_id(*ip) == diagnostic_id)
}

/// Waits for the first `Tunnels` >= 1 at or after notice `from`; returns it with the
/// `ActiveTunnel` that came with it (server and protocol).
async fn tunnel_up(
    client: &Client,
    from: usize,
    limit: Duration,
) -> Option<(usize, Instant, String, String)> {
    let (i, up) = client.wait_for(from, limit, |n| n.tunnel_up()).await?;
    let (_, active) = client
        .wait_for(from, Duration::from_secs(5), |n| n.kind() == "ActiveTunnel")
        .await?;
    let id = active.data()["diagnosticID"].as_str()?.to_owned();
    let protocol = active.data()["protocol"].as_str()?.to_owned();
    Some((i, up.at, id, protocol))
}

/// curl through the client's HTTP proxy to the origin's index page; the origin must have seen
/// the request come from a server address (through the tunnel), not from the client.
async fn browse(lab: &Lab, client: &Client, origin: &Origin) {
    let before = origin.requesters().len();
    let got = fetch(
        lab,
        client.http_port,
        &origin.url("/index.html"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        got.ok,
        "curl through the proxy: {}\nnotices:\n{}",
        got.stderr,
        client.dump()
    );
    assert_eq!(got.body, b"hello from the lab origin\n");
    let who = origin.requesters();
    let from = who.get(before).cloned().unwrap_or_default();
    assert!(
        from == "198.19.0.2",
        "the origin saw the request from {from:?}, not from a server"
    );
}

/// Scenario 1's network: 100 servers, 90 blackholed, 5 resetting, 5 reachable.
struct Hundred {
    lab: Lab,
    _servers: Servers,
    origin: Origin,
    list: tempfile::TempDir,
    reachable: Vec<Ipv4Addr>,
}

async fn hundred() -> Hundred {
    let lab = Lab::builder().servers(100).build().unwrap();
    let s = lab.server_addresses().to_vec();
    lab.censor(
        &Censor::new()
            .blackhole(s[..90].iter().copied())
            .reset(s[90..95].iter().copied()),
    )
    .unwrap();
    let servers = Servers::start(&lab).await;
    let origin = Origin::start(&lab, 1024).await;
    let list = tempfile::tempdir().unwrap();
    servers.write_list(&list.path().join("servers.dat"), &s);
    Hundred {
        reachable: s[95..].to_vec(),
        lab,
        _servers: servers,
        origin,
        list,
    }
}

/// Fresh clients (empty data roots) against [`Hundred`]: time to first tunnel of each run,
/// `None` for a run with no tunnel within [`FIRST_TUNNEL_LIMIT`].
async fn first_tunnels(
    net: &Hundred,
    label: &str,
    extra: serde_json::Value,
    runs: usize,
) -> Vec<Option<Duration>> {
    let mut times = Vec::new();
    for run in 0..runs {
        let data = tempfile::tempdir().unwrap();
        let client = Client::start(
            &net.lab,
            &client_config(extra.clone()),
            Some(&net.list.path().join("servers.dat")),
            data.path(),
        )
        .await;
        let up = tunnel_up(&client, 0, FIRST_TUNNEL_LIMIT).await;
        match up {
            Some((_, at, id, protocol)) => {
                let took = at - client.started;
                eprintln!(
                    "LAB {label} run={run} first_tunnel_ms={} protocol={protocol}",
                    took.as_millis()
                );
                let server = server_of(&net.lab, &id);
                assert!(
                    server.is_some_and(|ip| net.reachable.contains(&ip)),
                    "tunnel to {id} ({server:?}), not a reachable server"
                );
                browse(&net.lab, &client, &net.origin).await;
                times.push(Some(took));
            }
            None => {
                eprintln!(
                    "LAB {label} run={run} first_tunnel_ms=timeout limit_ms={}",
                    FIRST_TUNNEL_LIMIT.as_millis()
                );
                times.push(None);
            }
        }
        client.stop().await;
    }
    times
}

fn summarize(label: &str, times: &[Option<Duration>]) {
    let mut ms: Vec<f64> = times
        .iter()
        .map(|t| t.unwrap_or(FIRST_TUNNEL_LIMIT).as_secs_f64() * 1000.0)
        .collect();
    let timeouts = times.iter().filter(|t| t.is_none()).count();
    let med = median(&mut ms).unwrap_or(f64::NAN);
    eprintln!(
        "LAB {label} runs={} timeouts={timeouts} median_first_tunnel_ms={med:.0} min_ms={:.0} max_ms={:.0}",
        times.len(),
        ms.first().copied().unwrap_or(f64::NAN),
        ms.last().copied().unwrap_or(f64::NAN),
    );
}

/// The harness itself: isolation (no default route anywhere, nothing in the root namespace),
/// and each censor primitive and netem seen from the client with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_isolation_and_censor_primitives() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let lab = Lab::builder().servers(3).proxy(true).build().unwrap();
    let names: Vec<String> = [
        Node::Client,
        Node::Router,
        Node::Servers,
        Node::Origin,
        Node::Proxy,
    ]
    .iter()
    .map(|n| lab.namespace(*n))
    .collect();
    for node in [Node::Client, Node::Servers, Node::Origin, Node::Proxy] {
        let routes = lab.command(node, "ip").args(["route"]).output().unwrap();
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(!routes.contains("default"), "{node:?}: {routes}");
    }
    let root = std::process::Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .unwrap();
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(
        !root.contains("198.18.") && !root.contains("198.19."),
        "the root namespace has a lab route: {root}"
    );
    let origin = Origin::start(&lab, 16).await;
    let url = origin.url("/index.html");
    // curl's exit code: 0 fine, 7 refused (reset), 28 timed out (silence).
    let curl = |extra: &'static [&'static str]| {
        let status = lab
            .command(Node::Client, "curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--connect-timeout",
                "2",
                "--max-time",
                "4",
            ])
            .args(extra)
            .arg(&url)
            .status()
            .unwrap();
        status.code()
    };
    assert_eq!(curl(&[]), Some(0), "open lab");
    let o = origin.address;
    lab.censor(&Censor::new().blackhole([o])).unwrap();
    assert_eq!(curl(&[]), Some(28), "blackhole");
    lab.censor(&Censor::new().reset([o])).unwrap();
    assert_eq!(curl(&[]), Some(7), "reset");
    lab.censor(&Censor::new().drop_tcp_port(80)).unwrap();
    assert_eq!(curl(&[]), Some(28), "port 80 dropped");
    lab.censor(&Censor::new().confine(Node::Client, [Node::Proxy]))
        .unwrap();
    assert_eq!(curl(&[]), Some(28), "client confined to the proxy");
    lab.censor(&Censor::new()).unwrap();
    assert_eq!(curl(&[]), Some(0), "open again");
    // 100 ms each way on the client's link: connect takes one RTT >= 200 ms (when the kernel
    // has netem).
    match lab.delay(Node::Client, Duration::from_millis(100)) {
        Ok(()) => {
            let out = lab
                .command(Node::Client, "curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_connect}",
                    "--max-time",
                    "5",
                ])
                .arg(&url)
                .output()
                .unwrap();
            let connect: f64 = String::from_utf8_lossy(&out.stdout).parse().unwrap();
            assert!(connect >= 0.2, "connect took {connect} s with 200 ms RTT");
            lab.clear_delay(Node::Client);
        }
        Err(LabError::NoNetem) => eprintln!("LAB lab netem=unsupported (kernel)"),
        Err(e) => panic!("{e}"),
    }
    // Loss: with 50 % each way, most of 20 quick connects fail.
    lab.censor(&Censor::new().lose(Node::Client, 500)).unwrap();
    let mut failed = 0;
    for _ in 0..20 {
        let status = lab
            .command(Node::Client, "curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "0.5"])
            .arg(&url)
            .status()
            .unwrap();
        failed += usize::from(!status.success());
    }
    assert!(failed >= 5, "only {failed} of 20 failed at 50 % loss");
    lab.censor(&Censor::new()).unwrap();
    // The userspace delay line (any kernel): 100 ms each way, connect >= 200 ms.
    let wired = Lab::builder()
        .delay(Node::Origin, Duration::from_millis(100))
        .build()
        .unwrap();
    let far = Origin::start(&wired, 16).await;
    let out = wired
        .command(Node::Client, "curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{time_connect}",
            "--max-time",
            "5",
        ])
        .arg(far.url("/index.html"))
        .output()
        .unwrap();
    let connect: f64 = String::from_utf8_lossy(&out.stdout).parse().unwrap();
    assert!(
        connect >= 0.2,
        "connect took {connect} s through the delay line"
    );
    drop(far);
    drop(wired);
    // SYNs the client sent to servers are observed (one to an OSSH port, dropped).
    let server = lab.server_addresses()[0];
    lab.censor(&Censor::new().blackhole([server])).unwrap();
    let _ = lab
        .command(Node::Client, "curl")
        .args(["-s", "--connect-timeout", "1"])
        .arg(format!("http://{server}:{OSSH_PORT}/"))
        .status()
        .unwrap();
    let seen = lab.observations().unwrap();
    assert_eq!(seen.first_syn_port, Some(OSSH_PORT), "{seen:?}");
    assert!(
        seen.syns(OSSH_PORT) >= 1 && seen.syns(SSH_PORT) == 0,
        "{seen:?}"
    );
    drop(origin);
    drop(lab);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for n in names {
        assert!(!list.contains(&n), "{n} left behind: {list}");
    }
}

/// Scenario 1: 100 servers, 90 blackholed, 5 reset, 5 reachable: every fresh client gets a
/// tunnel to a reachable server and browses through it. Reports time to first tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario1_ninety_of_a_hundred_blackholed() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let net = hundred().await;
    let times = first_tunnels(&net, "scenario1", json!({}), runs()).await;
    summarize("scenario1", &times);
    assert!(
        times.iter().all(Option::is_some),
        "a run had no tunnel within {FIRST_TUNNEL_LIMIT:?}"
    );
}

/// Benchmark (reported, not asserted): scenario 1 with ConnectionWorkerPoolSize 10 and with a
/// one-at-a-time dialer (1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: minutes per run with a one-at-a-time dialer; run with --ignored"]
async fn benchmark_first_tunnel_pool_10_vs_1() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let net = hundred().await;
    for pool in [10, 1] {
        let label = format!("bench_pool{pool}");
        let times = first_tunnels(
            &net,
            &label,
            json!({"ConnectionWorkerPoolSize": pool}),
            runs(),
        )
        .await;
        summarize(&label, &times);
    }
}

/// Ten reachable servers with the OSSH port dropped at the router on every one of them.
async fn ossh_blocked() -> (Lab, Servers, Origin, tempfile::TempDir) {
    let lab = Lab::builder().servers(10).build().unwrap();
    lab.censor(&Censor::new().drop_tcp_port(OSSH_PORT)).unwrap();
    let servers = Servers::start(&lab).await;
    let origin = Origin::start(&lab, 1024).await;
    let list = tempfile::tempdir().unwrap();
    servers.write_list(&list.path().join("servers.dat"), lab.server_addresses());
    (lab, servers, origin, list)
}

/// Scenario 2, first run: OSSH blocked on every server, SSH open: the client tries OSSH, then
/// gets its tunnel over SSH by itself, and browses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario2_ossh_blocked_client_switches_to_ssh() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (lab, _servers, origin, list) = ossh_blocked().await;
    let data = tempfile::tempdir().unwrap();
    let client = Client::start(
        &lab,
        &client_config(json!({})),
        Some(&list.path().join("servers.dat")),
        data.path(),
    )
    .await;
    let Some((_, at, _, protocol)) = tunnel_up(&client, 0, Duration::from_secs(120)).await else {
        panic!("no tunnel with OSSH blocked:\n{}", client.dump());
    };
    let seen = lab.observations().unwrap();
    eprintln!(
        "LAB scenario2 first_tunnel_ms={} protocol={protocol} ossh_syns={} ssh_syns={}",
        (at - client.started).as_millis(),
        seen.syns(OSSH_PORT),
        seen.syns(SSH_PORT)
    );
    assert_eq!(protocol, "SSH");
    assert!(seen.syns(OSSH_PORT) >= 1, "OSSH was never tried: {seen:?}");
    browse(&lab, &client, &origin).await;
    client.stop().await;
}

/// Scenario 2, next run on the same network (same data root): SSH is tried first (replay of
/// what worked), seen as the first SYN the censor sees going to the SSH port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario2_next_run_tries_ssh_first() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let (lab, _servers, origin, list) = ossh_blocked().await;
    let data = tempfile::tempdir().unwrap();
    let config = client_config(json!({}));
    let list = list.path().join("servers.dat");
    let client = Client::start(&lab, &config, Some(&list), data.path()).await;
    let first = tunnel_up(&client, 0, Duration::from_secs(120)).await;
    assert!(
        first.as_ref().is_some_and(|t| t.3 == "SSH"),
        "first run: {first:?}\n{}",
        client.dump()
    );
    client.stop().await;
    // The same network, observations reset.
    lab.censor(&Censor::new().drop_tcp_port(OSSH_PORT)).unwrap();
    let client = Client::start(&lab, &config, Some(&list), data.path()).await;
    let Some((_, at, _, protocol)) = tunnel_up(&client, 0, Duration::from_secs(120)).await else {
        panic!("second run: no tunnel:\n{}", client.dump());
    };
    let seen = lab.observations().unwrap();
    eprintln!(
        "LAB scenario2 next_run first_tunnel_ms={} protocol={protocol} first_syn_port={:?} ossh_syns={} ssh_syns={}",
        (at - client.started).as_millis(),
        seen.first_syn_port,
        seen.syns(OSSH_PORT),
        seen.syns(SSH_PORT)
    );
    assert_eq!(protocol, "SSH");
    assert_eq!(
        seen.first_syn_port,
        Some(SSH_PORT),
        "the next run's first attempt went to port {:?}: {seen:?}",
        seen.first_syn_port
    );
    browse(&lab, &client, &origin).await;
    client.stop().await;
}

/// Scenario 3: the active server is blackholed in the middle of a download: the tunnel is
/// replaced by one to another server, the proxy port stays the same and the next request
/// through it succeeds. Reports the time from the blackhole to the new tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario3_active_server_blackholed_mid_transfer() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let lab = Lab::builder().servers(10).build().unwrap();
    let servers = Servers::start(&lab).await;
    let origin = Origin::start(&lab, 32 << 20).await;
    let list = tempfile::tempdir().unwrap();
    let list = list.path().join("servers.dat");
    servers.write_list(&list, lab.server_addresses());
    let data = tempfile::tempdir().unwrap();
    let client = Client::start(&lab, &client_config(json!({})), Some(&list), data.path()).await;
    let Some((i, _, id, _)) = tunnel_up(&client, 0, Duration::from_secs(120)).await else {
        panic!("no tunnel:\n{}", client.dump());
    };
    let active = server_of(&lab, &id).unwrap();
    // A slow download through the tunnel (200 KiB/s of 32 MiB: minutes), into a file.
    let part = data.path().join("big.part");
    let mut download = lab
        .tokio_command(Node::Client, "curl")
        .args([
            "-sS",
            "--noproxy",
            "",
            "--limit-rate",
            "200k",
            "--max-time",
            "600",
        ])
        .arg("--proxy")
        .arg(format!("http://127.0.0.1:{}", client.http_port))
        .arg("-o")
        .arg(&part)
        .arg(origin.url("/big.bin"))
        .spawn()
        .unwrap();
    // Bounded: 30 s for the first bytes to land.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 64 * 1024 {
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let blackholed_at = Instant::now();
    lab.censor(&Censor::new().blackhole([active])).unwrap();
    let Some((down, _)) = client
        .wait_for(i, Duration::from_secs(400), |n| n.tunnel_down())
        .await
    else {
        panic!(
            "the tunnel to a blackholed server was never declared down:\n{}",
            client.dump()
        );
    };
    let Some((_, up_at, new_id, protocol)) =
        tunnel_up(&client, down, Duration::from_secs(300)).await
    else {
        panic!("no new tunnel after the blackhole:\n{}", client.dump());
    };
    let recovery = up_at - blackholed_at;
    let new_server = server_of(&lab, &new_id).unwrap();
    assert_ne!(new_server, active, "reconnected to the blackholed server");
    let ports: Vec<u64> = client
        .notices()
        .iter()
        .filter(|n| n.kind() == "ListeningHttpProxyPort")
        .filter_map(|n| n.data()["port"].as_u64())
        .collect();
    assert_eq!(
        ports,
        [u64::from(client.http_port)],
        "the proxy port changed"
    );
    browse(&lab, &client, &origin).await;
    // Did the interrupted download end by itself (the proxy closed it when the tunnel died)?
    let interrupted = match download.try_wait().unwrap() {
        Some(status) => format!("ended({status})"),
        None => "still_stalled".to_owned(),
    };
    let _ = download.start_kill();
    let have = std::fs::metadata(&part).map_or(0, |m| m.len());
    eprintln!(
        "LAB scenario3 recovery_ms={} down_after_ms={} protocol={protocol} partial_bytes={have} interrupted_download={interrupted}",
        recovery.as_millis(),
        (client.notices()[down].at - blackholed_at).as_millis(),
    );
    client.stop().await;
}

/// Scenario 4: every known server blocked (5 silent, 5 resetting); a remote server list on the
/// origin host names 5 new ones: the list is fetched directly and a new server connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario4_all_blocked_remote_list_brings_new_servers() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    let lab = Lab::builder().servers(15).build().unwrap();
    let s = lab.server_addresses().to_vec();
    lab.censor(
        &Censor::new()
            .blackhole(s[..5].iter().copied())
            .reset(s[5..10].iter().copied()),
    )
    .unwrap();
    let servers = Servers::start(&lab).await;
    let origin = Origin::start(&lab, 1024).await;
    let key = PackageSigningKey::generate(2048).unwrap();
    let fresh: Vec<String> = s[10..].iter().map(|ip| servers.entry(*ip)).collect();
    std::fs::write(
        origin.www.path().join("server_list_compressed"),
        key.sign_package(&fresh.join("\n")).unwrap(),
    )
    .unwrap();
    let list = tempfile::tempdir().unwrap();
    let list = list.path().join("servers.dat");
    servers.write_list(&list, &s[..10]);
    let data = tempfile::tempdir().unwrap();
    let url = origin.url("/server_list_compressed");
    let config = client_config(json!({
        "RemoteServerListURLs": [{
            "URL": base64::engine::general_purpose::STANDARD.encode(&url),
            "OnlyAfterAttempts": 0
        }],
        "RemoteServerListSignaturePublicKey": key.public_key_base64(),
    }));
    let client = Client::start(&lab, &config, Some(&list), data.path()).await;
    let Some((_, at, id, protocol)) = tunnel_up(&client, 0, FIRST_TUNNEL_LIMIT).await else {
        panic!("no tunnel:\n{}", client.dump());
    };
    let fetched = client
        .notices()
        .iter()
        .find(|n| n.kind() == "RemoteServerListResourceDownloaded")
        .map(|n| n.at);
    let server = server_of(&lab, &id).unwrap();
    eprintln!(
        "LAB scenario4 first_tunnel_ms={} list_fetched_ms={:?} protocol={protocol}",
        (at - client.started).as_millis(),
        fetched.map(|f| (f - client.started).as_millis()),
    );
    assert!(
        fetched.is_some(),
        "the remote list was not fetched:\n{}",
        client.dump()
    );
    assert!(
        s[10..].contains(&server),
        "the tunnel is to {server}, not a server from the remote list"
    );
    assert!(
        origin.requesters().iter().any(|r| r == "198.18.1.2"),
        "the list was not fetched from the client's address"
    );
    browse(&lab, &client, &origin).await;
    client.stop().await;
}

/// Scenario 5: the client's link has 100 ms delay (the lab's delay line) and 2 % loss
/// (nftables) in each direction, a 200 ms RTT: a tunnel comes up and an 8 MiB transfer
/// completes intact. Reports throughput.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario5_high_latency_and_loss() {
    if !world::ready() {
        return;
    }
    let _serial = SERIAL.lock().await;
    const BIG: usize = 8 << 20;
    let lab = Lab::builder()
        .servers(5)
        .delay(Node::Client, Duration::from_millis(100))
        .build()
        .unwrap();
    lab.censor(&Censor::new().lose(Node::Client, 20)).unwrap();
    let servers = Servers::start(&lab).await;
    let origin = Origin::start(&lab, BIG).await;
    let list = tempfile::tempdir().unwrap();
    let list = list.path().join("servers.dat");
    servers.write_list(&list, lab.server_addresses());
    let data = tempfile::tempdir().unwrap();
    let client = Client::start(&lab, &client_config(json!({})), Some(&list), data.path()).await;
    let Some((_, at, _, protocol)) = tunnel_up(&client, 0, Duration::from_secs(180)).await else {
        panic!("no tunnel at 200 ms RTT and 2 % loss:\n{}", client.dump());
    };
    browse(&lab, &client, &origin).await;
    let got = fetch(
        &lab,
        client.http_port,
        &origin.url("/big.bin"),
        Duration::from_secs(300),
    )
    .await;
    assert!(got.ok, "{BIG} bytes through the tunnel: {}", got.stderr);
    assert!(
        got.body == world::big_content(BIG),
        "the {BIG} bytes arrived altered"
    );
    let kib_s = BIG as f64 / 1024.0 / got.seconds;
    let rules = lab
        .command(Node::Router, "nft")
        .args(["list", "table", "inet", psiphon_testkit::lab::TABLE])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&rules.stdout)
        .lines()
        .filter(|l| l.contains("numgen"))
    {
        eprintln!("LAB scenario5 loss_rule {}", l.trim());
    }
    eprintln!(
        "LAB scenario5 rtt_ms=200 loss_each_way=2% first_tunnel_ms={} protocol={protocol} bytes={BIG} seconds={:.2} throughput_kib_s={kib_s:.0}",
        (at - client.started).as_millis(),
        got.seconds
    );
    client.stop().await;
}

/// tinyproxy in the proxy namespace, allowing CONNECT to any port from the client's subnet.
fn start_tinyproxy(lab: &Lab, dir: &std::path::Path) -> tokio::process::Child {
    let conf = dir.join("tinyproxy.conf");
    let log = dir.join("tinyproxy.log");
    std::fs::write(
        &conf,
        format!(
            "Port 8888\nListen 198.18.2.2\nTimeout 600\nMaxClients 100\nAllow 198.18.1.0/24\n\
             LogLevel Connect\nLogFile \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    lab.tokio_command(Node::Proxy, "tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("tinyproxy.stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// Scenario 6: direct egress blocked (the client reaches only its network's HTTP proxy):
/// with `UpstreamProxyURL` the tunnel goes through the proxy, and no SYN goes to a server
/// directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario6_upstream_http_proxy_required() {
    if !world::ready() {
        return;
    }
    let tinyproxy_ok = std::process::Command::new("tinyproxy")
        .arg("-v")
        .output()
        .is_ok();
    if !tinyproxy_ok {
        assert!(
            std::env::var_os("PSIPHON_REQUIRE_LAB").is_none(),
            "tinyproxy is required (PSIPHON_REQUIRE_LAB is set) but missing"
        );
        eprintln!("skipping: tinyproxy is not installed");
        return;
    }
    let _serial = SERIAL.lock().await;
    let lab = Lab::builder().servers(5).proxy(true).build().unwrap();
    lab.censor(&Censor::new().confine(Node::Client, [Node::Proxy]))
        .unwrap();
    let servers = Servers::start(&lab).await;
    let origin = Origin::start(&lab, 1024).await;
    let dir = tempfile::tempdir().unwrap();
    let _proxy = start_tinyproxy(&lab, dir.path());
    // The network as the user finds it: the origin only through the proxy (bounded: 50 tries
    // while tinyproxy starts), never directly.
    let via_proxy = |proxy: &str| {
        lab.command(Node::Client, "curl")
            .args([
                "-sf",
                "-o",
                "/dev/null",
                "--max-time",
                "3",
                "--noproxy",
                "",
                "--proxy",
            ])
            .arg(proxy)
            .arg(origin.url("/index.html"))
            .status()
            .unwrap()
            .success()
    };
    let mut proxied = false;
    for _ in 0..50 {
        proxied = via_proxy("http://198.18.2.2:8888");
        if proxied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(proxied, "the origin is not reachable through tinyproxy");
    let direct = lab
        .command(Node::Client, "curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "2"])
        .arg(origin.url("/index.html"))
        .status()
        .unwrap();
    assert!(!direct.success(), "direct egress is not blocked");
    let list = dir.path().join("servers.dat");
    servers.write_list(&list, lab.server_addresses());
    let data = tempfile::tempdir().unwrap();
    let config = client_config(json!({"UpstreamProxyURL": "http://198.18.2.2:8888"}));
    let client = Client::start(&lab, &config, Some(&list), data.path()).await;
    let up = tunnel_up(&client, 0, Duration::from_secs(60)).await;
    let seen = lab.observations().unwrap();
    let Some((_, at, _, protocol)) = up else {
        panic!(
            "no tunnel through the upstream proxy (direct SYNs to servers: {:?}):\n{}",
            seen.syns_per_port,
            client.dump()
        );
    };
    eprintln!(
        "LAB scenario6 first_tunnel_ms={} protocol={protocol}",
        (at - client.started).as_millis()
    );
    assert!(
        seen.syns_per_port.is_empty(),
        "the client dialed servers directly: {:?}",
        seen.syns_per_port
    );
    let log = std::fs::read_to_string(dir.path().join("tinyproxy.log")).unwrap_or_default();
    assert!(log.contains("CONNECT"), "tinyproxy saw no CONNECT: {log}");
    browse(&lab, &client, &origin).await;
    client.stop().await;
}
