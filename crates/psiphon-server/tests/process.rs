#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::io::Read as _;
use std::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_psiphond");

fn wait_for_log(path: &Path, needle: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(start.elapsed() < timeout, "no {needle:?} in log: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn generate_then_run_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "--ipaddress",
            "127.0.0.1",
            "-protocol",
            "OSSH:0",
            "-protocol=SSH:0",
            "-logFilename",
            "psiphond.log",
            "generate",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    for name in [
        "psiphond.config",
        "psiphond-traffic-rules.config",
        "psinet.json",
        "server-entry.dat",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    let bad = Command::new(BIN)
        .current_dir(dir.path())
        .args(["-protocol", "QUIC-OSSH:443", "generate"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("QUIC-OSSH"));

    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["-config", "psiphond.config", "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log_path = dir.path().join("psiphond.log");
    let log = wait_for_log(&log_path, "server started", Duration::from_secs(30));
    let line = log.lines().find(|l| l.contains("server started")).unwrap();
    let ssh_port: u16 = line
        .split("SSH:")
        .nth(2)
        .or_else(|| line.split("SSH:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no SSH port in {line}"));
    // The plain SSH listener answers with its identification line.
    let mut tcp = TcpStream::connect(("127.0.0.1", ssh_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 15];
    tcp.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"SSH-2.0-Psiphon");
    drop(tcp);

    // Log rotation: rename the file, SIGHUP, and the server writes a new one.
    let rotated = dir.path().join("psiphond.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let start = Instant::now();
    while !log_path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no new log file after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("psiphond did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    wait_for_log(&log_path, "server stopped", Duration::from_secs(1));
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("server started") && !old.contains("server stopped"));
    assert!(
        !std::fs::read_to_string(&log_path)
            .unwrap()
            .contains("server started")
    );
}
