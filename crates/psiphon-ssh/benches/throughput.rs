//! Bulk throughput of our SSH client↔server over loopback TCP, per cipher.
//!
//! `cargo bench -p psiphon-ssh --bench throughput [-- MIB] [NAME...]` moves MIB (default 512) MiB from the
//! server to the client through one `direct-tcpip`-style channel in one process (two tokio worker
//! threads, like a client and a server sharing the machine's two cores) and prints MB/s
//! (10^6 bytes/s). The data is produced and consumed in memory, so the figure is the SSH
//! stack's cost alone; `docs/benchmarks.md` has the curl/nginx comparison with OpenSSH.

use std::sync::Arc;
use std::time::Instant;

use psiphon_ssh::{
    CipherAlg, ClientAuth, ClientConfig, Incoming, MacAlg, PrivateKey, ServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn run(cipher: CipherAlg, mac: Option<MacAlg>, bytes: usize) -> BoxResult<f64> {
    let key = Arc::new(PrivateKey::generate_ed25519()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server_key = key.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut conn = psiphon_ssh::accept(
            tcp,
            ServerConfig::new(server_key),
            Box::new(|_: &str, p: &[u8]| p == b"pw"),
        )
        .await?;
        if let Some(Incoming::Channel(c)) = conn.next_incoming().await {
            let mut ch = c.accept()?;
            let block = vec![0x5au8; 256 * 1024];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(block.len());
                ch.write_all(&block[..n]).await?;
                left -= n;
            }
            ch.shutdown().await?;
            let mut rest = Vec::new();
            ch.read_to_end(&mut rest).await?;
        }
        BoxResult::Ok(())
    });
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut cfg = ClientConfig::new(
        "u",
        ClientAuth::Password("pw".into()),
        key.public_key().clone(),
    );
    cfg.common.ciphers = vec![cipher];
    if let Some(m) = mac {
        cfg.common.macs = vec![m];
    }
    let conn = psiphon_ssh::connect(tcp, cfg).await?;
    let mut ch = conn.handle().open_direct_tcpip("origin", 80).await?;
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    loop {
        let n = ch.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(ch);
    server.await??;
    if got != bytes {
        return Err(format!("short transfer: {got} of {bytes}").into());
    }
    Ok(got as f64 / secs / 1e6)
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mib: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(512);
    // Any other argument selects the cases whose name contains it (e.g. `chacha`).
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cases = [
        (CipherAlg::Aes128Gcm, None),
        (CipherAlg::Aes256Gcm, None),
        (CipherAlg::ChaCha20Poly1305, None),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256Etm)),
        (CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256)),
        (CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha512)),
    ];
    println!("our SSH client<->server over loopback TCP, {mib} MiB per run, median of 3");
    for (cipher, mac) in cases {
        let name = match mac {
            Some(m) => format!("{} + {}", cipher.name(), m.name()),
            None => cipher.name().to_owned(),
        };
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(rt.block_on(run(cipher, mac, mib << 20))?);
        }
        runs.sort_by(f64::total_cmp);
        println!(
            "RESULT {name:<45} {:>7.0} MB/s  (min {:.0}, max {:.0})",
            runs[1], runs[0], runs[2]
        );
    }
    Ok(())
}
