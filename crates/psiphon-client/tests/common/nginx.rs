//! A real nginx on 127.0.0.1 serving a directory, for the download tests: `/` at full speed,
//! `/slow/` the same files at a limited rate (to cut a download in the middle).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NGINX: &str = "/usr/sbin/nginx";

pub struct Nginx {
    pub port: u16,
    pub root: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Starts nginx, or returns `None` (with a note) when it is not installed and the run does
/// not require it (`PSIPHON_REQUIRE_NGINX` unset).
pub fn start(root: &Path, slow_rate: &str) -> Option<Nginx> {
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
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let root_text = root.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         default_type application/octet-stream;\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {root_text};\n\
         location /slow/ {{ alias {root_text}/; limit_rate {slow_rate}; }}\n  }}\n}}\n"
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
        root: root.to_owned(),
        child,
        _dir: dir,
    })
}

impl Nginx {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
