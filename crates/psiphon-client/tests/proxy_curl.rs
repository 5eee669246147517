//! The local proxies against real curl and an origin HTTP server on 127.0.0.1, with a dialer
//! that connects directly over TCP.
//!
//! Needs `curl` (Debian package `curl`). Without it these tests print a message and pass,
//! unless `PSIPHON_REQUIRE_CURL` is set, in which case they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use psiphon_client::notice::Notices;
use psiphon_client::proxy::http::{ChunkedScanner, parse_request_head};
use psiphon_client::proxy::{
    DialError, DialFuture, Dialer, HttpProxy, ProxyError, ProxyStream, Shutdown, SocksProxy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIG_LEN: usize = 3 * 1024 * 1024 + 17;
const SMALL: &[u8] = b"hello from the origin\n";

fn big_body() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BIG_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

/// A small origin: `/small`, `/big` (Content-Length), `/chunked`, `/echo` (POST with
/// Content-Length: echoes the body), `/close` (close-delimited). Keeps connections alive.
async fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let big = Arc::new(big_body());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let big = Arc::clone(&big);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let (head, n) = loop {
                        if let Ok(Some(x)) = parse_request_head(&buf) {
                            break x;
                        }
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    };
                    buf.drain(..n);
                    let len: usize = head
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    let chunked = head.headers.iter().any(|(k, v)| {
                        k.eq_ignore_ascii_case("transfer-encoding")
                            && v.eq_ignore_ascii_case("chunked")
                    });
                    // A chunked body is echoed raw, framing included.
                    let len = if chunked {
                        let mut scanner = ChunkedScanner::new();
                        let mut seen = scanner.feed(&buf).unwrap();
                        while !scanner.is_done() {
                            let n = s.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            seen += scanner.feed(&chunk[..n]).unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        seen
                    } else {
                        len
                    };
                    while buf.len() < len {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body: Vec<u8> = buf.drain(..len).collect();
                    // The proxy must have rewritten to origin form and stripped hop-by-hop headers.
                    assert!(head.target.starts_with('/'), "{}", head.target);
                    assert!(
                        !head
                            .headers
                            .iter()
                            .any(|(k, _)| k.eq_ignore_ascii_case("proxy-connection"))
                    );
                    let out: Vec<u8> = match head.target.as_str() {
                        "/small" => [
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", SMALL.len())
                                .into_bytes(),
                            SMALL.to_vec(),
                        ]
                        .concat(),
                        "/big" => [
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len())
                                .into_bytes(),
                            big.to_vec(),
                        ]
                        .concat(),
                        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunk-\r\n5\r\ned ok\r\n0\r\n\r\n".to_vec(),
                        "/echo" => [
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                                .into_bytes(),
                            body,
                        ]
                        .concat(),
                        "/close" => {
                            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nuntil close").await;
                            return;
                        }
                        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
                    };
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    let close = head.headers.iter().any(|(k, v)| {
                        k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
                    });
                    if close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Connects directly over TCP, resolving names locally.
struct DirectDialer {
    dials: AtomicUsize,
}

impl Dialer for DirectDialer {
    fn dial(&self, host: String, port: u16) -> DialFuture {
        self.dials.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| DialError::Unavailable(e.to_string()))?;
            let mut last = DialError::Unavailable("no address".into());
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(Box::new(s) as ProxyStream),
                    Err(e) => last = DialError::Unavailable(e.to_string()),
                }
            }
            Err(last)
        })
    }
}

/// Fails every dial with a fixed error.
struct FailingDialer(DialError);

impl Dialer for FailingDialer {
    fn dial(&self, _host: String, _port: u16) -> DialFuture {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
}

struct CurlOut {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

async fn curl(args: &[&str]) -> CurlOut {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "--noproxy", ""])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    CurlOut {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn start_socks(dialer: Arc<dyn Dialer>) -> (SocketAddr, Shutdown) {
    let proxy = SocksProxy::bind(
        "127.0.0.1:0".parse().unwrap(),
        dialer,
        Notices::stderr(false),
    )
    .await
    .unwrap();
    let addr = proxy.local_addr();
    let shutdown = Shutdown::new();
    tokio::spawn(proxy.run(shutdown.clone()));
    (addr, shutdown)
}

async fn start_http(dialer: Arc<dyn Dialer>) -> (SocketAddr, Shutdown) {
    let proxy = HttpProxy::bind(
        "127.0.0.1:0".parse().unwrap(),
        dialer,
        Notices::stderr(false),
    )
    .await
    .unwrap();
    let addr = proxy.local_addr();
    let shutdown = Shutdown::new();
    tokio::spawn(proxy.run(shutdown.clone()));
    (addr, shutdown)
}

fn direct() -> Arc<DirectDialer> {
    Arc::new(DirectDialer {
        dials: AtomicUsize::new(0),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_dialects_with_curl() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let origin = start_origin().await;
    let dialer = direct();
    let (proxy, _stop) = start_socks(dialer.clone()).await;
    let p = proxy.to_string();
    let big_sum = sha256(&big_body());
    let by_name = format!("http://localhost:{}", origin.port());
    let by_ip = format!("http://{origin}");
    for (flag, base) in [
        ("--socks5-hostname", &by_name),
        ("--socks5", &by_ip),
        ("--socks4a", &by_name),
        ("--socks4", &by_ip),
    ] {
        let out = curl(&[flag, &p, &format!("{base}/small")]).await;
        assert_eq!(out.code, 0, "{flag}: {}", out.stderr);
        assert_eq!(out.stdout, SMALL, "{flag}");
        let out = curl(&[flag, &p, &format!("{base}/big")]).await;
        assert_eq!(out.code, 0, "{flag}: {}", out.stderr);
        assert_eq!(out.stdout.len(), BIG_LEN, "{flag}");
        assert_eq!(sha256(&out.stdout), big_sum, "{flag}");
    }
    // SOCKS5 with credentials (RFC 1929; ignored).
    let out = curl(&[
        "-x",
        &format!("socks5h://user:pass@{p}"),
        &format!("{by_name}/small"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, SMALL);
    assert!(dialer.dials.load(Ordering::Relaxed) >= 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_with_curl() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let origin = start_origin().await;
    let dialer = direct();
    let (proxy, _stop) = start_http(dialer.clone()).await;
    let x = format!("http://{proxy}");
    let base = format!("http://localhost:{}", origin.port());
    let big_sum = sha256(&big_body());

    // Absolute-URI GET, and a CONNECT tunnel (-p) to the same http URL.
    for tunnel in [false, true] {
        let mut args = vec!["-x", x.as_str()];
        if tunnel {
            args.push("-p");
        }
        let url = format!("{base}/big");
        let out = curl(&[args.as_slice(), &[url.as_str()]].concat()).await;
        assert_eq!(out.code, 0, "tunnel={tunnel}: {}", out.stderr);
        assert_eq!(sha256(&out.stdout), big_sum, "tunnel={tunnel}");
    }

    // Keep-alive: three sequential requests on one client connection (curl reuses it and
    // reports 0 new connections for the later ones), including a chunked response.
    let urls: Vec<String> = ["/small", "/chunked", "/small"]
        .iter()
        .map(|p| format!("{base}{p}"))
        .collect();
    let out = curl(&[
        "-x",
        &x,
        "-w",
        "[%{num_connects}]",
        &urls[0],
        &urls[1],
        &urls[2],
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "hello from the origin\n[1]chunk-ed ok[0]hello from the origin\n[0]"
    );

    // A close-delimited response: the proxy closes the client connection after it.
    let out = curl(&["-x", &x, &format!("{base}/close"), &format!("{base}/small")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"until closehello from the origin\n");

    // A 2 MiB upload (curl sends Expect: 100-continue; the proxy answers it).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload");
    let upload: Vec<u8> = big_body()[..2 * 1024 * 1024].to_vec();
    std::fs::write(&file, &upload).unwrap();
    let out = curl(&[
        "-x",
        &x,
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/echo"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sha256(&out.stdout), sha256(&upload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_failures_reach_curl() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let refuse: Arc<dyn Dialer> = Arc::new(FailingDialer(DialError::Refused("no".into())));
    let unavailable: Arc<dyn Dialer> = Arc::new(FailingDialer(DialError::Unavailable("x".into())));
    let timeout: Arc<dyn Dialer> = Arc::new(FailingDialer(DialError::TimedOut("x".into())));

    let (socks, _s1) = start_socks(Arc::clone(&refuse)).await;
    for flag in ["--socks5-hostname", "--socks4a"] {
        let out = curl(&[flag, &socks.to_string(), "http://example.invalid/"]).await;
        // CURLE_PROXY (97): the proxy refused.
        assert_eq!(out.code, 97, "{flag}: {}", out.stderr);
    }

    for (dialer, status) in [(&refuse, 502), (&unavailable, 502), (&timeout, 504)] {
        let (http, _s) = start_http(Arc::clone(dialer)).await;
        let x = format!("http://{http}");
        let out = curl(&[
            "-x",
            &x,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://example.invalid/",
        ])
        .await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, status.to_string().as_bytes());
        let out = curl(&["-p", "-x", &x, "http://example.invalid/"]).await;
        // CURLE_RECV_ERROR (56): CONNECT tunnel failed.
        assert_eq!(out.code, 56, "{}", out.stderr);
        assert!(out.stderr.contains(&status.to_string()), "{}", out.stderr);
    }
}

/// Sends `bytes`, then reads until the proxy closes; returns what it sent back.
async fn send_garbage(proxy: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut back = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut back))
        .await
        .expect("proxy did not close");
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_closed_cleanly_and_proxies_keep_serving() {
    let origin = start_origin().await;
    let (socks, _s1) = start_socks(direct()).await;
    let (http, _s2) = start_http(direct()).await;
    let garbage: [&[u8]; 5] = [
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 70_000],
        b"\x05\x01\x00\x05\x09\x00",
        b"",
    ];
    for g in garbage {
        send_garbage(socks, g).await;
        let back = send_garbage(http, g).await;
        // An origin-form request is answered 400; the rest is just closed (a reply to a
        // flood may be lost to the reset the close causes).
        if g.starts_with(b"GET") {
            assert!(
                back.starts_with(b"HTTP/1.1 400 "),
                "{:?}",
                String::from_utf8_lossy(&back)
            );
        }
    }
    // SOCKS5 BIND → "command not supported".
    let back = send_garbage(
        socks,
        b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50",
    )
    .await;
    assert_eq!(back, b"\x05\x00\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00");

    // Still serving: one SOCKS5 request by hand.
    let mut s = TcpStream::connect(socks).await.unwrap();
    let mut req = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&origin.port().to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut reply = [0u8; 12];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply, [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    s.write_all(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    assert!(resp.ends_with(SMALL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients() {
    let origin = start_origin().await;
    let (socks, _s1) = start_socks(direct()).await;
    let (http, _s2) = start_http(direct()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u16 {
        tasks.spawn(async move {
            if i % 2 == 0 {
                let mut s = TcpStream::connect(socks).await.unwrap();
                let mut req = vec![5, 1, 0, 5, 1, 0, 3, 9];
                req.extend_from_slice(b"localhost");
                req.extend_from_slice(&origin.port().to_be_bytes());
                s.write_all(&req).await.unwrap();
                s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut resp = Vec::new();
                s.read_to_end(&mut resp).await.unwrap();
                assert_eq!(&resp[..12], [5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
                assert_eq!(sha256(&resp[resp.len() - BIG_LEN..]), sha256(&big_body()));
            } else {
                let mut s = TcpStream::connect(http).await.unwrap();
                let req = format!(
                    "GET http://127.0.0.1:{}/small HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\n\r\n",
                    origin.port()
                );
                // Two requests pipelined on one connection, the second asking to close.
                s.write_all(req.as_bytes()).await.unwrap();
                s.write_all(req.replace("keep-alive", "close").as_bytes()).await.unwrap();
                let mut resp = Vec::new();
                s.read_to_end(&mut resp).await.unwrap();
                let text = String::from_utf8(resp).unwrap();
                assert_eq!(text.matches("hello from the origin").count(), 2, "{text}");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    if !psiphon_testkit::have_curl() {
        return;
    }
    let x = format!("http://{http}");
    let url = format!("http://{origin}/big");
    let mut curls = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (x, url) = (x.clone(), url.clone());
        curls.spawn(async move { curl(&["-x", &x, &url]).await });
    }
    let want = sha256(&big_body());
    while let Some(out) = curls.join_next().await {
        let out = out.unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(sha256(&out.stdout), want);
    }
}

#[tokio::test]
async fn port_notices_and_port_in_use() {
    let (notices, mut rx) = Notices::channel(16, false);
    let proxy = SocksProxy::bind("127.0.0.1:0".parse().unwrap(), direct(), notices.clone())
        .await
        .unwrap();
    let port = proxy.local_addr().port();
    let line = rx.recv().await.unwrap();
    assert!(
        line.contains(&format!(
            "\"data\":{{\"port\":{port}}},\"noticeType\":\"ListeningSocksProxyPort\""
        )),
        "{line}"
    );
    let err = HttpProxy::bind(proxy.local_addr(), direct(), notices.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::PortInUse { proxy: "HTTP", .. }),
        "{err}"
    );
    assert_eq!(err.kind(), psiphon_client::proxy::ErrorKind::Config);
    let line = rx.recv().await.unwrap();
    assert!(
        line.contains(&format!(
            "\"data\":{{\"port\":{port}}},\"noticeType\":\"HttpProxyPortInUse\""
        )),
        "{line}"
    );

    // Shutdown stops the accept loop and run returns.
    let stop = Shutdown::new();
    let run = tokio::spawn(proxy.run(stop.clone()));
    stop.trigger();
    run.await.unwrap().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_is_relayed_unchanged_and_keep_alive_follows() {
    let origin = start_origin().await;
    let (http, _s) = start_http(direct()).await;
    let mut s = TcpStream::connect(http).await.unwrap();
    let body = b"5;x=y\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: t\r\n\r\n";
    let req = format!(
        "POST http://127.0.0.1:{}/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        origin.port()
    );
    let second = format!(
        "GET http://127.0.0.1:{}/small HTTP/1.1\r\nConnection: close\r\n\r\n",
        origin.port()
    );
    // Everything in one write: the proxy must split the body from the next request.
    s.write_all(&[req.as_bytes(), body, second.as_bytes()].concat())
        .await
        .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8(resp).unwrap();
    let want = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\nhello from the origin\n",
        body.len(),
        String::from_utf8_lossy(body),
        SMALL.len()
    );
    assert_eq!(text, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_clients_with_curl() {
    if !psiphon_testkit::have_curl() {
        return;
    }
    let origin = start_origin().await;
    let (http, _s) = start_http(direct()).await;
    // --proxy1.0: HTTP/1.0 CONNECT; -0: HTTP/1.0 GET through the proxy.
    let out = curl(&[
        "--proxy1.0",
        &http.to_string(),
        "-p",
        &format!("http://{origin}/small"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, SMALL);
    let out = curl(&[
        "-0",
        "-x",
        &format!("http://{http}"),
        &format!("http://{origin}/small"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, SMALL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_client_connections() {
    let origin = start_origin().await;
    let proxy = HttpProxy::bind(
        "127.0.0.1:0".parse().unwrap(),
        direct(),
        Notices::stderr(false),
    )
    .await
    .unwrap();
    let addr = proxy.local_addr();
    let stop = Shutdown::new();
    let run = tokio::spawn(proxy.run(stop.clone()));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("CONNECT {origin} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = [0u8; 19];
    s.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HTTP/1.1 200 OK\r\n\r\n");
    stop.trigger();
    run.await.unwrap().unwrap();
    // The tunnel is gone: EOF (or a reset), not a hang.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("connection left open after shutdown");
    assert!(r.is_err() || rest.is_empty());
}
