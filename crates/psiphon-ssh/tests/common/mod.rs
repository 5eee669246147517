//! Helpers shared by the integration tests: an origin server that hashes what it sends, real
//! OpenSSH processes with readiness read from their logs, and small utilities.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_lc_rs::digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Bytes the origin serves on each connection and the SHA-256 of what it sent.
pub struct Origin {
    pub port: u16,
    pub sent: mpsc::UnboundedReceiver<(usize, Vec<u8>)>,
}

/// Starts an origin on 127.0.0.1:0 that writes `len` pseudo-random bytes to every connection,
/// then closes it, and reports `(len, sha256)` of what it wrote.
pub async fn origin(len: usize) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let tx = tx.clone();
            let mut x = seed | 1;
            tokio::spawn(async move {
                s.set_nodelay(true).ok();
                let mut ctx = digest::Context::new(&digest::SHA256);
                let mut left = len;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let n = left.min(buf.len());
                    for chunk in buf[..n].chunks_mut(8) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
                    }
                    ctx.update(&buf[..n]);
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = s.shutdown().await;
                let _ = tx.send((len, ctx.finish().as_ref().to_vec()));
            });
        }
    });
    Origin { port, sent: rx }
}

/// Reads a stream to its end, returning `(len, sha256)`.
pub async fn drain_hash<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> (usize, Vec<u8>) {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
        ctx.update(&buf[..n]);
    }
    (total, ctx.finish().as_ref().to_vec())
}

/// A port that was free a moment ago (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Whether Debian's OpenSSH is installed. Without it the test is skipped, unless
/// `PSIPHON_REQUIRE_OPENSSH` is set (as in CI), when a missing OpenSSH is a failure.
pub fn have_openssh() -> bool {
    let present = Path::new("/usr/sbin/sshd").exists()
        && Path::new("/usr/bin/ssh").exists()
        && Path::new("/usr/bin/ssh-keygen").exists();
    if !present {
        assert!(
            std::env::var_os("PSIPHON_REQUIRE_OPENSSH").is_none(),
            "OpenSSH is required (PSIPHON_REQUIRE_OPENSSH is set) but /usr/sbin/sshd, /usr/bin/ssh \
             or /usr/bin/ssh-keygen is missing: apt-get install openssh-client openssh-server"
        );
        eprintln!(
            "skipping: OpenSSH is not installed (apt-get install openssh-client openssh-server)"
        );
    }
    present
}

/// A child process whose stderr we watch for a line, killed on drop.
pub struct Watched {
    pub child: Child,
    pub lines: mpsc::UnboundedReceiver<String>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Watched {
    pub fn spawn(mut cmd: Command) -> Watched {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                log2.lock().unwrap().push(l.clone());
                let _ = tx.send(l);
            }
        });
        Watched {
            child,
            lines: rx,
            log,
        }
    }

    /// Waits (at most 20 s) for a stderr line containing `needle`.
    pub async fn wait_for(&mut self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = self.lines.recv().await {
                if l.contains(needle) {
                    return true;
                }
            }
            false
        })
        .await;
        if found != Ok(true) {
            panic!(
                "never saw {needle:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
        }
    }

    pub fn dump(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

pub fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    let mut args = vec!["-q", "-t", kind, "-N", "", "-f"];
    let p = path.to_str().unwrap().to_owned();
    args.push(&p);
    if kind == "rsa" {
        args.extend(["-b", "2048"]);
    }
    let st = std::process::Command::new("/usr/bin/ssh-keygen")
        .args(&args)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
    path
}

/// Connects to a port that a child process has just logged as listening. OpenSSH's `ssh`
/// logs "Local forwarding listening" a moment before its listener accepts, so a refused
/// connection is retried, at most 200 times over at most ~2 s; any other error is returned.
pub async fn connect_ready(port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    for _ in 0..200 {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("unreachable")))
}

/// SOCKS5 CONNECT (no auth) through a proxy at `proxy`, to 127.0.0.1:`port`.
pub async fn socks5_connect(proxy: u16, port: u16) -> TcpStream {
    let mut s = connect_ready(proxy).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(r, [5, 0]);
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 0, "SOCKS5 CONNECT refused");
    s
}
