//! Load generator for psiphond's idle-tunnel memory: opens N tunnels (each a distinct client
//! session: OSSH or SSH, then the SSH handshake and the Psiphon handshake) to the server in a
//! server entry file, holds them open and idle, and waits until stdin closes.
//!
//! Usage: idle_tunnels SERVER_ENTRY_FILE COUNT [OSSH|SSH] [CONCURRENCY]
//! `scripts/bench-idle-tunnels.sh` runs it against a release psiphond and reads the server's
//! memory; see docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use psiphon_client::config::ApiEncoding;
use psiphon_client::tunnel::{self, ClientParams};
use psiphon_protocol::{ServerEntry, TunnelProtocol, make_session_id};
use tokio::sync::Semaphore;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: idle_tunnels SERVER_ENTRY_FILE COUNT [OSSH|SSH] [CONCURRENCY]";
    let entry_text = std::fs::read_to_string(args.get(1).expect(usage)).unwrap();
    let entry = ServerEntry::decode(entry_text.trim()).unwrap();
    let count: usize = args.get(2).expect(usage).parse().expect(usage);
    let protocol: TunnelProtocol = args
        .get(3)
        .map_or("OSSH", String::as_str)
        .parse()
        .expect(usage);
    let concurrency: usize = args.get(4).map_or(32, |c| c.parse().expect(usage));

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let entry = entry.clone();
        tasks.spawn(async move {
            let params = ClientParams {
                session_id: make_session_id().unwrap(),
                propagation_channel_id: "24BCA4EE20BEB92C".into(),
                sponsor_id: "721AE60D76700F5A".into(),
                client_version: "1".into(),
                client_platform: "Linux_idle_tunnels".into(),
                device_region: String::new(),
                api_encoding: ApiEncoding::Cbor,
            };
            let t = tunnel::establish(&entry, protocol, &params, Duration::from_secs(60)).await;
            drop(permit);
            t
        });
    }
    let mut tunnels = Vec::with_capacity(count);
    let mut failed = 0usize;
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            Ok(t) => tunnels.push(t),
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("idle_tunnels: a tunnel failed: {e}");
                }
            }
        }
    }
    println!(
        "idle_tunnels: {} tunnels up, {failed} failed, in {:.1} s",
        tunnels.len(),
        started.elapsed().as_secs_f64()
    );
    // Hold them idle until stdin closes (the script measures the server meanwhile).
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)
    })
    .await;
    let alive = tunnels.len();
    drop(tunnels);
    println!("idle_tunnels: closed {alive} tunnels");
}
