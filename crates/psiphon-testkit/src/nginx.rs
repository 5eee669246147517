//! A real nginx on 127.0.0.1 serving a directory, for download tests: `/` at full speed,
//! `/slow/` the same files at a limited rate (to cut a download in the middle), and optionally
//! an HTTPS listener with a fresh self-signed certificate.
//!
//! Test fixture code: a setup step that cannot work panics with the reason, as a test would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

#[derive(Debug)]
pub struct Nginx {
    pub port: u16,
    /// The HTTPS port, when started with TLS.
    pub tls_port: Option<u16>,
    /// The self-signed certificate (for 127.0.0.1) the HTTPS port presents.
    pub certificate: Option<Vec<u8>>,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Starts nginx, or returns `None` (with a note) when it is not installed and the run does
/// not require it (`PSIPHON_REQUIRE_NGINX` unset).
pub fn start(root: &Path, slow_rate: &str) -> Option<Nginx> {
    start_inner(root, slow_rate, false)
}

/// Like [`start`], plus an HTTPS listener with a fresh self-signed certificate for 127.0.0.1.
pub fn start_tls(root: &Path) -> Option<Nginx> {
    start_inner(root, "1m", true)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_inner(root: &Path, slow_rate: &str, tls: bool) -> Option<Nginx> {
    if !Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("PSIPHON_REQUIRE_NGINX").is_none(),
            "PSIPHON_REQUIRE_NGINX is set but {NGINX} is missing"
        );
        eprintln!("skipping: {NGINX} not installed (apt-get install nginx)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    let root_text = root.display();
    let (tls_port, certificate, tls_conf) = if tls {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let p = free_port();
        let conf = format!(
            "server {{\n    listen 127.0.0.1:{p} ssl;\n    ssl_certificate {d}/cert.pem;\n\
             ssl_certificate_key {d}/key.pem;\n    root {root_text};\n  }}\n"
        );
        (Some(p), Some(ck.cert.der().to_vec()), conf)
    } else {
        (None, None, String::new())
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         default_type application/octet-stream;\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {root_text};\n\
         location /slow/ {{ alias {root_text}/; limit_rate {slow_rate}; }}\n  }}\n{tls_conf}}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(NGINX)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Bounded wait for the port: at most 10 s.
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start; see {d}/error.log"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Nginx {
        port,
        tls_port,
        certificate,
        root: root.to_owned(),
        child,
        _dir: dir,
    })
}

impl Nginx {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn tls_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.tls_port.unwrap())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
