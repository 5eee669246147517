#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Remote server lists fetched from a real nginx on 127.0.0.1 (Range and ETag): a full fetch,
//! a fetch cut off half way then resumed, 304 on refetch, a tampered package and a wrong key
//! rejected with nothing stored; and the `psiphon` binary starting from nothing but the list
//! URL and key, then browsing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use psiphon_client::datastore::Datastore;
use psiphon_client::notice::Notices;
use psiphon_client::remote_list::{FetchError, Fetched, Fetcher, Settings};
use psiphon_protocol::ServerEntry;
use psiphon_protocol::auth_package::PackageSigningKey;

fn fake_entries(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut noise = [0u8; 96];
            aws_lc_rs::rand::fill(&mut noise).unwrap();
            let region = ["US", "CA", "DE"][i % 3];
            let json = serde_json::json!({
                "ipAddress": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                "sshPort": 22,
                "sshUsername": "psiphon_0123456789abcdef",
                "sshPassword": hex::encode(&noise[..32]),
                "sshObfuscatedKey": hex::encode(&noise[32..64]),
                "webServerSecret": hex::encode(&noise[64..]),
                "capabilities": ["SSH", "OSSH", "ssh-api-requests"],
                "region": region,
                "tag": format!("tag-{i}"),
            });
            hex::encode(format!("0 0 0 0 {json}"))
        })
        .collect()
}

struct Setup {
    key: PackageSigningKey,
    package: Vec<u8>,
    www: tempfile::TempDir,
    nginx: psiphon_testkit::nginx::Nginx,
}

fn setup(entries: &[String], slow_rate: &str) -> Option<Setup> {
    let key = PackageSigningKey::generate(2048).unwrap();
    let package = key.sign_package(&entries.join("\n")).unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("server_list_compressed"), &package).unwrap();
    let nginx = psiphon_testkit::nginx::start(www.path(), slow_rate)?;
    Some(Setup {
        key,
        package,
        www,
        nginx,
    })
}

fn fetcher(
    url: String,
    key: String,
    data: &std::path::Path,
    store: Arc<Datastore>,
) -> Arc<Fetcher> {
    let urls = vec![psiphon_client::config::TransferUrl {
        url,
        only_after_attempts: 0,
        skip_verify: false,
        request_headers: Vec::new(),
    }];
    let s = Settings::new(urls, key, data.join("remote_server_list"));
    Fetcher::new(s, store, None, Notices::channel(4096, true).0)
}

fn fetcher_with_timeout(
    url: String,
    key: String,
    data: &std::path::Path,
    store: Arc<Datastore>,
    timeout: Duration,
) -> Arc<Fetcher> {
    let urls = vec![psiphon_client::config::TransferUrl {
        url,
        only_after_attempts: 0,
        skip_verify: false,
        request_headers: Vec::new(),
    }];
    let mut s = Settings::new(urls, key, data.join("remote_server_list"));
    s.timeout = timeout;
    Fetcher::new(s, store, None, Notices::channel(4096, true).0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_fetch_then_304() {
    let entries = fake_entries(300);
    let Some(s) = setup(&entries, "1m") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Datastore::in_memory().unwrap());
    let url = s.nginx.url("/server_list_compressed");
    let f = fetcher(
        url.clone(),
        s.key.public_key_base64(),
        data.path(),
        store.clone(),
    );

    let first = f.fetch(0).await.unwrap();
    let Fetched::Stored {
        bytes,
        summary,
        skipped,
        tunneled,
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(bytes, u64::try_from(s.package.len()).unwrap());
    assert_eq!((summary.written, skipped, tunneled), (300, 0, false));
    assert_eq!(store.count().unwrap(), 300);
    let stored = store.entry("10.0.0.7").unwrap().unwrap();
    assert_eq!(stored.local_source(), Some("REMOTE"));
    assert_eq!(store.regions().unwrap(), ["CA", "DE", "US"]);
    let etag = store.url_etag(&url).unwrap().expect("the ETag is kept");
    assert!(etag.starts_with('"'), "{etag}");
    assert!(f.last_success().is_some());

    // Unchanged on the server: If-None-Match gets a 304 and nothing is downloaded.
    assert_eq!(f.fetch(0).await.unwrap(), Fetched::Unchanged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_download_resumes_where_it_stopped() {
    // ~0.9 MB of entries served at 256 KiB/s from /slow/: a 1.5 s limit cuts it part way.
    let entries = fake_entries(6000);
    let Some(s) = setup(&entries, "256k") else {
        return;
    };
    let total = u64::try_from(s.package.len()).unwrap();
    assert!(
        total > 600_000,
        "package is {total} bytes; the test needs it large"
    );
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Datastore::in_memory().unwrap());
    let key = s.key.public_key_base64();

    let cut = fetcher_with_timeout(
        s.nginx.url("/slow/server_list_compressed"),
        key.clone(),
        data.path(),
        store.clone(),
        Duration::from_millis(1500),
    );
    let err = cut.fetch(0).await.unwrap_err();
    assert!(matches!(err, FetchError::Timeout(_)), "{err}");
    let part = data.path().join("remote_server_list.part");
    let have = std::fs::metadata(&part).unwrap().len();
    assert!(have > 0 && have < total, "partial {have} of {total}");
    assert!(data.path().join("remote_server_list.part.etag").exists());
    assert_eq!(
        store.count().unwrap(),
        0,
        "nothing is stored from a partial list"
    );

    // Resumed (same resource, same ETag): only the remaining bytes cross the network.
    let resume = fetcher(
        s.nginx.url("/server_list_compressed"),
        key,
        data.path(),
        store.clone(),
    );
    let Fetched::Stored { bytes, summary, .. } = resume.fetch(0).await.unwrap() else {
        panic!("not stored")
    };
    eprintln!("cut at {have} of {total} bytes; resumed with {bytes} bytes");
    assert_eq!(bytes, total - have, "resumed from the partial");
    assert_eq!(summary.written, 6000);
    assert!(!part.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_packages_and_wrong_keys_store_nothing() {
    let entries = fake_entries(50);
    let Some(s) = setup(&entries, "1m") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Datastore::in_memory().unwrap());
    let url = s.nginx.url("/server_list_compressed");

    // Signed by another key.
    let other = PackageSigningKey::generate(2048).unwrap();
    let f = fetcher(
        url.clone(),
        other.public_key_base64(),
        data.path(),
        store.clone(),
    );
    let err = f.fetch(0).await.unwrap_err();
    assert!(matches!(err, FetchError::Authentication(_)), "{err}");
    assert_eq!(store.count().unwrap(), 0);
    assert_eq!(
        store.url_etag(&url).unwrap(),
        None,
        "no ETag for a rejected list"
    );
    assert!(f.last_success().is_none());

    // The data altered after signing (one entry's region changed), re-compressed.
    let json = psiphon_protocol::auth_package::ZlibReader::new(s.package.as_slice());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::BufReader::new(json), &mut text).unwrap();
    let victim = &entries[3];
    let decoded = String::from_utf8(hex::decode(victim).unwrap()).unwrap();
    let altered = hex::encode(decoded.replace("\"US\"", "\"XX\""));
    assert_ne!(&altered, victim);
    let tampered_json = text.replace(victim.as_str(), &altered);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, tampered_json.as_bytes()).unwrap();
    std::fs::write(
        s.www.path().join("server_list_compressed"),
        z.finish().unwrap(),
    )
    .unwrap();
    let f = fetcher(
        url.clone(),
        s.key.public_key_base64(),
        data.path(),
        store.clone(),
    );
    let err = f.fetch(0).await.unwrap_err();
    assert!(matches!(err, FetchError::Authentication(_)), "{err}");
    assert_eq!(store.count().unwrap(), 0);
    assert!(
        !data.path().join("remote_server_list").exists(),
        "the rejected file is removed"
    );

    // Not even zlib.
    std::fs::write(
        s.www.path().join("server_list_compressed"),
        b"<html>captive portal</html>",
    )
    .unwrap();
    let err = f.fetch(0).await.unwrap_err();
    assert!(matches!(err, FetchError::Authentication(_)), "{err}");
    assert_eq!(store.count().unwrap(), 0);

    // The genuine package again: accepted.
    std::fs::write(s.www.path().join("server_list_compressed"), &s.package).unwrap();
    assert!(matches!(f.fetch(0).await.unwrap(), Fetched::Stored { .. }));
    assert_eq!(store.count().unwrap(), 50);
    let e: ServerEntry = store.entry("10.0.0.3").unwrap().unwrap();
    assert_eq!(e.region(), Some("US"));
}

/// Runs `psiphon` until it reports a tunnel; returns the child and its HTTP proxy port.
async fn run_client(
    config: &std::path::Path,
    data_root: &std::path::Path,
) -> (tokio::process::Child, u16, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_psiphon"))
        .current_dir(data_root)
        .arg("--config")
        .arg(config)
        .arg("--data-root")
        .arg(data_root)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut http = None;
    let mut seen = Vec::new();
    let up = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = lines.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            if v["noticeType"] == "ListeningHttpProxyPort" {
                http = v["data"]["port"].as_u64();
            }
            let up = v["noticeType"] == "Tunnels" && v["data"]["count"] == 1;
            seen.push(l);
            if up {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(up, Ok(true)),
        "no tunnel; notices:\n{}",
        seen.join("\n")
    );
    // Keep draining notices so the client never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, u16::try_from(http.unwrap()).unwrap(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_only_the_list_url_and_key_connects_and_browses() {
    use base64::Engine as _;
    if !psiphon_testkit::have_curl() {
        return;
    }
    let server = common::test_server().await;
    let key = PackageSigningKey::generate(2048).unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("server_list_compressed"),
        key.sign_package(&server.entry.encode()).unwrap(),
    )
    .unwrap();
    std::fs::write(www.path().join("index.html"), "hello from the origin\n").unwrap();
    let Some(nginx) = psiphon_testkit::nginx::start(www.path(), "1m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("client.json");
    let list_url = nginx.url("/server_list_compressed");
    std::fs::write(
        &config,
        serde_json::json!({
            "PropagationChannelId": "24BCA4EE20BEB92C",
            "SponsorId": "721AE60D76700F5A",
            "LocalSocksProxyPort": 0,
            "LocalHttpProxyPort": 0,
            "EmitDiagnosticNotices": true,
            "RemoteServerListURLs": [{
                "URL": base64::engine::general_purpose::STANDARD.encode(&list_url),
                "OnlyAfterAttempts": 0
            }],
            "RemoteServerListSignaturePublicKey": key.public_key_base64(),
        })
        .to_string(),
    )
    .unwrap();

    let (mut child, http, seen) = run_client(&config, dir.path()).await;
    let all = seen.join("\n");
    assert!(all.contains("RemoteServerListResourceDownloaded"), "{all}");
    assert!(
        !all.contains("/server_list_compressed"),
        "the list URL leaked: {all}"
    );
    let page = nginx.url("/index.html");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "30", "--noproxy", "", "-x"])
        .arg(format!("http://127.0.0.1:{http}"))
        .arg(&page)
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from the origin\n",
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.kill().await.unwrap();

    // Next run: the list host is gone, but the datastore remembers the server.
    drop(nginx);
    let (mut child, _http, seen) = run_client(&config, dir.path()).await;
    let all = seen.join("\n");
    assert!(!all.contains("RemoteServerListResourceDownloaded"), "{all}");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_lists_verify_the_certificate_unless_skip_verify() {
    let entries = fake_entries(20);
    let key = PackageSigningKey::generate(2048).unwrap();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("server_list_compressed"),
        key.sign_package(&entries.join("\n")).unwrap(),
    )
    .unwrap();
    let Some(nginx) = psiphon_testkit::nginx::start_tls(www.path()) else {
        return;
    };
    let url = nginx.tls_url("/server_list_compressed");
    let make = |skip_verify: bool, trust: bool, data: &std::path::Path, store: Arc<Datastore>| {
        let urls = vec![psiphon_client::config::TransferUrl {
            url: url.clone(),
            only_after_attempts: 0,
            skip_verify,
            request_headers: Vec::new(),
        }];
        let mut s = Settings::new(
            urls,
            key.public_key_base64(),
            data.join("remote_server_list"),
        );
        if trust {
            s.tls_roots = vec![nginx.certificate.clone().unwrap().into()];
        }
        Fetcher::new(s, store, None, Notices::channel(4096, true).0)
    };

    // An unknown self-signed certificate is refused...
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Datastore::in_memory().unwrap());
    let err = make(false, false, data.path(), store.clone())
        .fetch(0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Connect { .. }) && err.to_string().contains("TLS"),
        "{err}"
    );
    assert_eq!(store.count().unwrap(), 0);

    // ...accepted when trusted...
    let got = make(false, true, data.path(), store.clone())
        .fetch(0)
        .await
        .unwrap();
    assert!(matches!(got, Fetched::Stored { .. }), "{got:?}");
    assert_eq!(store.count().unwrap(), 20);

    // ...and with SkipVerify (the package signature still protects the list).
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Datastore::in_memory().unwrap());
    let got = make(true, false, data.path(), store.clone())
        .fetch(0)
        .await
        .unwrap();
    assert!(matches!(got, Fetched::Stored { .. }), "{got:?}");
    assert_eq!(store.count().unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_go_through_the_tunnel_and_not_again_within_the_stale_period() {
    use psiphon_client::controller::{Controller, Observer, Settings as ControllerSettings};
    struct Quiet;
    impl Observer for Quiet {
        fn tunnel_up(&self, _: &psiphon_client::tunnel::Tunnel) {}
        fn tunnel_down(&self, _: &str) {}
        fn candidate_failed(
            &self,
            _: &ServerEntry,
            _: psiphon_protocol::TunnelProtocol,
            _: &psiphon_client::tunnel::Error,
        ) {
        }
        fn connected(&self, _: &str) {}
    }
    let entries = fake_entries(10);
    let Some(s) = setup(&entries, "1m") else {
        return;
    };
    let server = common::test_server().await;
    let tunnel_store = Arc::new(Datastore::in_memory().unwrap());
    tunnel_store
        .store(
            server.entry.clone(),
            psiphon_client::datastore::Source::Embedded,
        )
        .unwrap();
    let (controller, active) = Controller::new(
        common::params(),
        tunnel_store,
        ControllerSettings::default(),
        Arc::new(Quiet),
    );
    let run = tokio::spawn(controller.run(std::future::pending()));
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(Datastore::in_memory().unwrap());
    let urls = vec![psiphon_client::config::TransferUrl {
        url: s.nginx.url("/server_list_compressed"),
        only_after_attempts: 0,
        skip_verify: false,
        request_headers: Vec::new(),
    }];
    let settings = Settings::new(
        urls,
        s.key.public_key_base64(),
        data.path().join("remote_server_list"),
    );
    let (notices, mut lines) = Notices::channel(4096, true);
    let fetcher = Fetcher::new(settings, store.clone(), Some(active.clone()), notices);
    // Wait (bounded) for the tunnel, then fetch: it goes through the tunnel.
    let up = tokio::time::timeout(Duration::from_secs(30), async {
        while !active.is_up() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(up.is_ok(), "no tunnel");
    let got = fetcher.fetch(0).await.unwrap();
    assert!(
        matches!(got, Fetched::Stored { tunneled: true, .. }),
        "{got:?}"
    );
    assert_eq!(store.count().unwrap(), 10);

    // The running fetcher declines a new request within the stale period (6 h).
    let task = tokio::spawn(fetcher.clone().run(std::future::pending()));
    while lines.try_recv().is_ok() {}
    fetcher.request();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fetching = 0;
    while let Ok(line) = lines.try_recv() {
        if line.contains("fetching common remote server list") {
            fetching += 1;
        }
    }
    assert_eq!(fetching, 0, "fetched again within the stale period");
    task.abort();
    run.abort();
}
