//! The Psiphon network inside a censor lab: one `psiphond` in the servers namespace serving
//! every server address (it binds 0.0.0.0), nginx on the origin host, and `psiphon` clients
//! in the client namespace whose notices are read as they come.
//!
//! The binaries are this workspace's `psiphond` and `psiphon`, found next to the test's own
//! directory (`target/<profile>/`, the parent of `deps/`). `cargo test --workspace` builds them
//! before running any test; with `-p psiphon-testkit` alone run `cargo build --bins` first.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use psiphon_protocol::ServerEntry;
use psiphon_testkit::lab::{Lab, Node};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

pub const NGINX: &str = "/usr/sbin/nginx";
pub const OSSH_PORT: u16 = 9999;
pub const SSH_PORT: u16 = 2222;

/// A binary of this workspace, built in the same profile as this test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --bins`; `cargo test --workspace` \
         builds them before running tests)",
        path.display()
    );
    path
}

fn have(program: &str, arg: &str, require_env: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os(require_env).is_none(),
            "{program} is required ({require_env} is set) but missing"
        );
        eprintln!("skipping: {program} is not installed");
    }
    ok
}

/// Whether the lab and the programs the scenarios use are here (else the test skips).
pub fn ready() -> bool {
    Lab::available().unwrap()
        && have("curl", "--version", "PSIPHON_REQUIRE_CURL")
        && have(NGINX, "-v", "PSIPHON_REQUIRE_NGINX")
}

/// A running `psiphond` answering on every server address.
pub struct Servers {
    child: tokio::process::Child,
    base: ServerEntry,
    pub dir: tempfile::TempDir,
}

impl Servers {
    /// `psiphond generate` (OSSH and SSH), then `psiphond run` bound to 0.0.0.0 in the servers
    /// namespace, with `AllowBogons` (the origin is in 198.18.0.0/15). Waits until it listens.
    pub async fn start(lab: &Lab) -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let psiphond = workspace_bin("psiphond");
        let status = std::process::Command::new(&psiphond)
            .current_dir(d)
            .args(["-ipaddress", "198.19.1.1"])
            .args(["-protocol", &format!("OSSH:{OSSH_PORT}")])
            .args(["-protocol", &format!("SSH:{SSH_PORT}")])
            .arg("-config")
            .arg(d.join("psiphond.config"))
            .arg("-trafficRules")
            .arg(d.join("psiphond-traffic-rules.config"))
            .arg("-psinet")
            .arg(d.join("psinet.json"))
            .arg("-serverEntry")
            .arg(d.join("server-entry.dat"))
            .arg("generate")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "psiphond generate: {status}");
        let path = d.join("psiphond.config");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["ServerIPAddress"] = json!("0.0.0.0");
        config["AllowBogons"] = json!(true);
        config["LogFilename"] = json!(d.join("psiphond.log"));
        std::fs::write(&path, config.to_string()).unwrap();
        let base = ServerEntry::decode(
            std::fs::read_to_string(d.join("server-entry.dat"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        let stderr = std::fs::File::create(d.join("psiphond.stderr")).unwrap();
        let child = lab
            .tokio_command(Node::Servers, &psiphond)
            .arg("-config")
            .arg(&path)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let log = d.join("psiphond.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Bounded: 30 s, checked every 50 ms.
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("server started") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "psiphond did not start: {text}\n{}",
                std::fs::read_to_string(d.join("psiphond.stderr")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Servers { child, base, dir }
    }

    /// The diagnostic id the client reports for server `ip` (the first 8 characters of the
    /// tag [`Servers::entry`] gives it).
    pub fn diagnostic_id(ip: Ipv4Addr) -> String {
        let o = ip.octets();
        format!("L{:03}{:03}x", o[2], o[3])
            .chars()
            .take(8)
            .collect()
    }

    /// The server entry for address `ip`: the generated one with `ipAddress` and `tag` changed.
    pub fn entry(&self, ip: Ipv4Addr) -> String {
        let mut e = self.base.clone();
        e.set("ipAddress", json!(ip.to_string())).unwrap();
        let tag = format!("{}{}", Self::diagnostic_id(ip), "-lab-server-entry-tag");
        e.set("tag", json!(tag)).unwrap();
        e.encode()
    }

    /// A server list file (one encoded entry per line) for these addresses.
    pub fn write_list(&self, path: &Path, ips: &[Ipv4Addr]) {
        let lines: Vec<String> = ips.iter().map(|ip| self.entry(*ip)).collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// nginx on the origin host (198.18.3.2:80) serving a directory; its access log says who
/// asked.
pub struct Origin {
    child: tokio::process::Child,
    pub www: tempfile::TempDir,
    dir: tempfile::TempDir,
    pub address: Ipv4Addr,
}

/// The deterministic content of the origin's `big.bin` (`len` bytes).
pub fn big_content(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

impl Origin {
    /// Starts nginx with `index.html` and `big.bin` of `big` bytes.
    pub async fn start(lab: &Lab, big: usize) -> Origin {
        let address = lab.address(Node::Origin).unwrap();
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), "hello from the lab origin\n").unwrap();
        std::fs::write(www.path().join("big.bin"), big_content(big)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let root = www.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log;\n\
             pid {d}/nginx.pid;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             default_type application/octet-stream;\n\
             server {{\n    listen {address}:80;\n    root {root};\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = lab
            .tokio_command(Node::Origin, NGINX)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Bounded: 100 probes, 100 ms apart.
        for _ in 0..100 {
            let ok = lab
                .command(Node::Origin, "curl")
                .args(["-sf", "-o", "/dev/null", "--max-time", "2"])
                .arg(format!("http://{address}/index.html"))
                .status()
                .unwrap()
                .success();
            if ok {
                return Origin {
                    child,
                    www,
                    dir,
                    address,
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "nginx on the origin did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The client addresses in the access log, in order.
    pub fn requesters(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One notice and when it was read.
#[derive(Debug, Clone)]
pub struct Notice {
    pub at: Instant,
    pub value: Value,
}

impl Notice {
    pub fn kind(&self) -> &str {
        self.value["noticeType"].as_str().unwrap_or("")
    }
    pub fn data(&self) -> &Value {
        &self.value["data"]
    }
    /// A `Tunnels` notice with a count of at least one.
    pub fn tunnel_up(&self) -> bool {
        self.kind() == "Tunnels" && self.data()["count"].as_u64().is_some_and(|c| c >= 1)
    }
    pub fn tunnel_down(&self) -> bool {
        self.kind() == "Tunnels" && self.data()["count"].as_u64() == Some(0)
    }
}

/// A `psiphon` process in the client namespace.
pub struct Client {
    child: tokio::process::Child,
    notices: Arc<Mutex<Vec<Notice>>>,
    changed: watch::Receiver<usize>,
    pub started: Instant,
    pub http_port: u16,
    pub socks_port: u16,
}

/// A client config: tunnel-core keys, proxies on free ports, diagnostic notices on.
pub fn client_config(extra: Value) -> Value {
    let mut c = json!({
        "PropagationChannelId": "24BCA4EE20BEB92C",
        "SponsorId": "721AE60D76700F5A",
        "LocalSocksProxyPort": 0,
        "LocalHttpProxyPort": 0,
        "EmitDiagnosticNotices": true,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

impl Client {
    /// Starts `psiphon` with `config` (written into `data_root`) and waits (bounded, 30 s)
    /// until both local proxies listen.
    pub async fn start(
        lab: &Lab,
        config: &Value,
        server_list: Option<&Path>,
        data_root: &Path,
    ) -> Client {
        let config_path = data_root.join("client.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut cmd = lab.tokio_command(Node::Client, workspace_bin("psiphon"));
        cmd.current_dir(data_root)
            .arg("--config")
            .arg(&config_path)
            .arg("--data-root")
            .arg(data_root);
        if let Some(list) = server_list {
            cmd.arg("--server-list").arg(list);
        }
        let started = Instant::now();
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let notices = Arc::new(Mutex::new(Vec::new()));
        let (tx, changed) = watch::channel(0usize);
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = notices.clone();
        let log_path = data_root.join("notices.log");
        tokio::spawn(async move {
            let mut log = std::fs::File::create(log_path).ok();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = log.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{line}");
                }
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"noticeType": "NotJSON", "data": {"line": line}}));
                let n = {
                    let mut v = sink.lock().unwrap();
                    v.push(Notice {
                        at: Instant::now(),
                        value,
                    });
                    v.len()
                };
                let _ = tx.send(n);
            }
        });
        let mut client = Client {
            child,
            notices,
            changed,
            started,
            http_port: 0,
            socks_port: 0,
        };
        let port = |kind: &'static str| {
            move |n: &Notice| n.kind() == kind && n.data()["port"].as_u64().is_some()
        };
        let http = client
            .wait_for(0, Duration::from_secs(30), port("ListeningHttpProxyPort"))
            .await;
        let socks = client
            .wait_for(0, Duration::from_secs(30), port("ListeningSocksProxyPort"))
            .await;
        let (Some((_, http)), Some((_, socks))) = (http, socks) else {
            panic!("the client's proxies did not start:\n{}", client.dump());
        };
        client.http_port = u16::try_from(http.data()["port"].as_u64().unwrap()).unwrap();
        client.socks_port = u16::try_from(socks.data()["port"].as_u64().unwrap()).unwrap();
        client
    }

    /// The first notice at index `from` or later matching `pred`, waiting at most `timeout`.
    pub async fn wait_for(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Notice) -> bool,
    ) -> Option<(usize, Notice)> {
        let mut changed = self.changed.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let v = self.notices.lock().unwrap();
                if let Some((i, n)) = v.iter().enumerate().skip(from).find(|(_, n)| pred(n)) {
                    return Some((i, n.clone()));
                }
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the client exited (no more notices).
                Ok(Err(_)) | Err(_) => {
                    let v = self.notices.lock().unwrap();
                    return v
                        .iter()
                        .enumerate()
                        .skip(from)
                        .find(|(_, n)| pred(n))
                        .map(|(i, n)| (i, n.clone()));
                }
            }
        }
    }

    /// Notices read so far.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices.lock().unwrap().clone()
    }

    /// Every notice so far, one per line (for failure messages).
    pub fn dump(&self) -> String {
        self.notices()
            .iter()
            .map(|n| n.value.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the client (SIGKILL) and waits for it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// What one curl run through the client's HTTP proxy gave.
#[derive(Debug)]
pub struct Fetch {
    pub ok: bool,
    pub body: Vec<u8>,
    pub seconds: f64,
    pub stderr: String,
}

/// curl in the client namespace through the client's HTTP proxy.
pub async fn fetch(lab: &Lab, proxy_port: u16, url: &str, max_time: Duration) -> Fetch {
    let start = Instant::now();
    let out = lab
        .tokio_command(Node::Client, "curl")
        .args(["-sS", "--fail", "--noproxy", "", "--max-time"])
        .arg(max_time.as_secs().to_string())
        .arg("--proxy")
        .arg(format!("http://127.0.0.1:{proxy_port}"))
        .arg(url)
        .output()
        .await
        .unwrap();
    Fetch {
        ok: out.status.success(),
        body: out.stdout,
        seconds: start.elapsed().as_secs_f64(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The median of `v` (sorted in place); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}
