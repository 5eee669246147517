//! The whole system, as a person uses it: `psinet quickstart` (as a process, exactly the README's
//! first command, and in-process), real curl through each local proxy over OSSH and over SSH,
//! 64 MiB with SHA-256 checked, many transfers at once, and the servers killed and restarted
//! under the client. Needs curl (skips without it unless `PSIPHON_REQUIRE_CURL` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use aws_lc_rs::digest;
use psiphon_netops::quickstart;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const BIG: usize = 64 << 20;

/// Deterministic pseudo-random bytes: the origin serves them, the test hashes them.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

fn expected_sha256(len: usize) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        fill(&mut buf[..n], &mut state);
        ctx.update(&buf[..n]);
        left -= n;
    }
    hex(ctx.finish().as_ref())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An HTTP origin serving `BIG` deterministic bytes at every path (keep-alive off).
async fn big_origin() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let hdr = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
                );
                if s.write_all(hdr.as_bytes()).await.is_err() {
                    return;
                }
                let mut state = 0x2545_f491_4f6c_dd1du64;
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = BIG;
                while left > 0 {
                    let n = left.min(buf.len());
                    fill(&mut buf[..n], &mut state);
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// Runs curl with `proxy_args` to `url`; returns the SHA-256 of the body and its length.
async fn curl_sha(proxy_args: &[String], url: &str) -> (String, usize) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "120"])
        .args(proxy_args)
        .arg(url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "curl {proxy_args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        hex(digest::digest(&digest::SHA256, &out.stdout).as_ref()),
        out.stdout.len(),
    )
}

fn proxy_variants(net: &quickstart::Network) -> Vec<(&'static str, Vec<String>)> {
    vec![
        (
            "socks5-hostname",
            vec!["--socks5-hostname".into(), net.socks.to_string()],
        ),
        ("socks4a", vec!["--socks4a".into(), net.socks.to_string()]),
        (
            "http CONNECT",
            vec![
                "-p".into(),
                "--proxy".into(),
                format!("http://{}", net.http),
            ],
        ),
        (
            "http forward",
            vec!["--proxy".into(), format!("http://{}", net.http)],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_through_every_proxy_over_ossh_and_ssh() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let origin = big_origin().await;
    let url = format!("http://127.0.0.1:{origin}/big.bin");
    let want = expected_sha256(BIG);
    for protocol in ["OSSH", "SSH"] {
        let net = quickstart::start_with(None, &[protocol]).await.unwrap();
        let notices = std::fs::read_to_string(&net.notices_path).unwrap();
        assert!(
            notices.contains(&format!("\"protocol\":\"{protocol}\"")),
            "{protocol}: {notices}"
        );
        for (name, args) in proxy_variants(&net) {
            let (sha, len) = curl_sha(&args, &url).await;
            assert_eq!(len, BIG, "{protocol} via {name}");
            assert_eq!(sha, want, "{protocol} via {name}: SHA-256 differs");
        }
        net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_transfers() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let net = quickstart::start(None).await.unwrap();
    let home = net.home_page.clone();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let args = proxy_variants(&net)[i % 4].1.clone();
        let home = home.clone();
        set.spawn(async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "60"])
                .args(&args)
                .arg(&home)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("through a Psiphon tunnel"));
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_restart_and_the_client_reconnects_on_the_same_ports() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let mut net = quickstart::start(None).await.unwrap();
    let socks = net.socks;
    let args = vec!["--socks5-hostname".to_owned(), socks.to_string()];
    let (sha, _) = curl_sha(&args, &net.home_page).await;
    assert!(!sha.is_empty());
    net.restart_servers().await.unwrap();
    // New requests succeed through the same port once the client has reconnected (the proxy
    // holds them until a tunnel is up).
    let (sha2, _) = curl_sha(&args, &net.home_page).await;
    assert_eq!(sha, sha2);
    assert_eq!(net.socks, socks, "the proxy port never changes");
    // The notices file is written by the client's notice task: give it a moment to catch up
    // (at most 10 s, checked every 50 ms).
    let tunnels = |text: &str| -> Vec<&'static str> {
        text.lines()
            .filter(|l| l.contains("\"noticeType\":\"Tunnels\""))
            .map(|l| if l.contains("\"count\":1") { "1" } else { "0" })
            .collect()
    };
    let mut counts = Vec::new();
    for _ in 0..200 {
        counts = tunnels(&std::fs::read_to_string(&net.notices_path).unwrap());
        if counts.windows(3).any(|w| w == ["1", "0", "1"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        counts.windows(3).any(|w| w == ["1", "0", "1"]),
        "Tunnels notices: {counts:?}"
    );
    net.shutdown().await;
}

/// The README's first command, as a process: it prints the proxies and a curl command that
/// works, and stops cleanly on Ctrl-C (SIGINT).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psinet_quickstart_as_a_user_runs_it() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_psinet"))
        .args(["quickstart", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut curl_cmd = None;
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            if curl_cmd.is_none() && l.trim_start().starts_with("curl --socks5-hostname") {
                curl_cmd = Some(l.trim().to_owned());
            }
            let done = l.contains("Press Ctrl-C");
            seen.push(l);
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("quickstart never became ready:\n{}", seen.join("\n")));
    let cmd = curl_cmd.unwrap_or_else(|| panic!("no curl command printed:\n{}", seen.join("\n")));
    let parts: Vec<&str> = cmd.split_whitespace().collect();
    let out = tokio::process::Command::new(parts[0])
        .args(["-sS", "--max-time", "20"])
        .args(&parts[1..])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("through a Psiphon tunnel"));
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "quickstart exit status {status}");
    let rest: Vec<String> = {
        let mut v = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            v.push(l);
        }
        v
    };
    assert!(rest.iter().any(|l| l.contains("Stopped.")), "{rest:?}");
    // Privacy: the servers' logs never hold the client's address.
    for i in 0..2 {
        let log =
            std::fs::read_to_string(dir.path().join(format!("server-{i}/psiphond.log"))).unwrap();
        assert!(log.contains("server_tunnel"), "server-{i} logged no tunnel");
        assert!(
            !log.contains("127.0.0.1"),
            "server-{i} log holds a client address:\n{log}"
        );
    }
}
