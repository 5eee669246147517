//! Shared pieces of the upstream proxy tests: a local echo server, real proxy programs run
//! from temporary configs, and small in-test proxies for what the real ones cannot show.
#![allow(dead_code)]

pub mod fake_proxies;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use psiphon_transport::{BoxIo, Direct, NetDialer, UpstreamProxy, UpstreamProxyUrl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Set (by scripts/test.sh) when tinyproxy and danted are installed: a missing one then fails
/// the test instead of skipping it.
pub const REQUIRE_ENV: &str = "PSIPHON_REQUIRE_UPSTREAM_PROXIES";

/// The program's path, or `None` (after saying why) when it is not installed and not required.
pub fn program(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&dirs)
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os(REQUIRE_ENV).is_none(),
            "{name} is not installed but {REQUIRE_ENV} is set"
        );
        eprintln!("skipping: {name} is not installed (apt-get install tinyproxy dante-server)");
    }
    found
}

/// A port that was free a moment ago (for programs that cannot bind port 0 themselves).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A port nothing listens on, kept bound (without listening) so no parallel test takes it:
/// a connection to it is refused.
pub struct ClosedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ClosedPort {
        port: socket.local_addr().unwrap().port(),
        _socket: socket,
    }
}

/// An echo server on 127.0.0.1; optionally greets each connection with `banner` first, as an
/// SSH server does.
pub async fn echo_server(banner: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if s.write_all(banner).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A dialer through `url`, reaching the proxy directly.
pub fn through(url: &str) -> UpstreamProxy {
    UpstreamProxy::new(
        UpstreamProxyUrl::parse(url).unwrap(),
        Arc::new(Direct::new(LIMIT)),
    )
}

/// Writes 64 KiB of patterned bytes and checks they come back intact.
pub async fn round_trip(stream: &mut BoxIo) {
    let data: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = async {
        w.write_all(&data).await.unwrap();
        w.flush().await.unwrap();
    };
    let reader = async {
        let mut got = vec![0u8; data.len()];
        r.read_exact(&mut got).await.unwrap();
        got
    };
    let ((), got) = tokio::time::timeout(LIMIT, async { tokio::join!(writer, reader) })
        .await
        .expect("echo through the proxy timed out");
    assert!(got == data, "bytes came back altered");
}

/// Dials `host:port` through `dialer` and round-trips bytes.
pub async fn dial_and_echo(dialer: &dyn NetDialer, host: &str, port: u16) {
    let mut s = tokio::time::timeout(LIMIT, dialer.connect(host, port))
        .await
        .expect("dial timed out")
        .unwrap_or_else(|e| panic!("dial through the proxy failed: {}", e.full_message()));
    round_trip(&mut s).await;
}

/// A proxy program running in the foreground from a config in a temporary directory; killed
/// when dropped.
pub struct Running {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts `program` with the config `make_conf(port)` written to `conf_name`, on a free
    /// port, and waits until it has logged `ready` (which it does only once listening) and
    /// accepts connections. Retries on another port if the program exits first (the free port
    /// was taken in between).
    pub async fn start(
        program: &Path,
        conf_name: &str,
        args: &[&str],
        ready: &str,
        make_conf: impl Fn(u16) -> String,
    ) -> Running {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let conf = dir.path().join(conf_name);
            std::fs::write(&conf, make_conf(port)).unwrap();
            let log = dir.path().join("log");
            let log_file = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(program);
            cmd.args(args)
                .arg(&conf)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .kill_on_drop(true);
            let mut child = cmd.spawn().unwrap();
            let deadline = tokio::time::Instant::now() + LIMIT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    eprintln!(
                        "{} exited ({status}) on port {port}:\n{last_log}",
                        program.display()
                    );
                    break;
                }
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                if logged.contains(ready)
                    && tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                {
                    return Running {
                        port,
                        child,
                        log,
                        _dir: dir,
                    };
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} did not listen on {port} within {LIMIT:?}:\n{}",
                    program.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("{} would not start:\n{last_log}", program.display());
    }

    /// What the program logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the program and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
