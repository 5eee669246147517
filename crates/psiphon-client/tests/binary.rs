//! The `psiphon` binary as a user runs it: tunnel-core's config file and flags, notices on
//! stderr, a SOCKS proxy that carries traffic, and clear errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{echo_origin, test_server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_psiphon");

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_serves_socks_and_warns_about_unknown_keys() {
    let server = test_server().await;
    let origin = echo_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "client.json",
        r#"{"PropagationChannelId":"24BCA4EE20BEB92C","SponsorId":"721AE60D76700F5A",
            "LocalSocksProxyPort":0,"LocalHttpProxyPort":0,"NotARealKey":true}"#,
    );
    // A bad line first: it is skipped with a warning, the good entry is used.
    let list = write(
        dir.path(),
        "servers.dat",
        &format!("zz-not-hex\n{}\n", server.entry.encode()),
    );
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .arg("-config")
        .arg(&config)
        .arg("-serverList")
        .arg(&list)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut socks_port = None;
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let v: serde_json::Value =
                serde_json::from_str(&l).unwrap_or_else(|e| panic!("not a JSON notice: {l}: {e}"));
            if v["noticeType"] == "ListeningSocksProxyPort" {
                socks_port = v["data"]["port"].as_u64();
            }
            let up = v["noticeType"] == "Tunnels" && v["data"]["count"] == 1;
            seen.push(l);
            if up {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no tunnel; notices:\n{}", seen.join("\n")));
    let all = seen.join("\n");
    assert!(all.contains("NotARealKey"), "unknown key not named: {all}");
    assert!(
        all.contains("skipping server entry on line 1"),
        "bad line not reported: {all}"
    );
    assert!(
        !all.contains("127.0.0.1"),
        "a server address leaked into notices: {all}"
    );

    // SOCKS5 CONNECT through the tunnel to the echo origin.
    let port = u16::try_from(socks_port.unwrap()).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await.unwrap();
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&origin.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 0, "SOCKS CONNECT failed");
    s.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "--config is required"),
        (vec!["--config".into(), dir.path().join("missing.json").display().to_string()], "missing.json"),
        (
            vec!["--config".into(), write(dir.path(), "port.json", r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A","LocalSocksProxyPort":"abc"}"#).display().to_string()],
            "port.json: LocalSocksProxyPort",
        ),
        (vec!["--config".into(), write(dir.path(), "json.json", "{not json").display().to_string()], "json.json"),
        (
            vec!["--config".into(), write(dir.path(), "ok.json", r#"{"PropagationChannelId":"AB","SponsorId":"721AE60D76700F5A"}"#).display().to_string()],
            "no server entries",
        ),
        (
            vec![
                "--config".into(),
                dir.path().join("ok.json").display().to_string(),
                "--server-list".into(),
                write(dir.path(), "junk.dat", "not an entry\n\x00\x01\n").display().to_string(),
            ],
            "no usable server entries",
        ),
    ];
    for (args, expect) in cases {
        let out = Command::new(BIN)
            .current_dir(dir.path())
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains(expect),
            "{args:?}: expected {expect:?} in:\n{text}"
        );
        assert!(!text.contains("panicked"), "{args:?} panicked:\n{text}");
    }
}
