//! The tokio adaptor over in-memory pipes: echo, and the server's silence towards probes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ssh_packet;
use psiphon_obfs::{
    ClientConfig, Error, ErrorKind, Keyword, ObfuscatedStream, ProbeReason, SeedHistory,
    ServerConfig, Session, Step,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const KEYWORD: &str = "5a0b7c2d9e4f61a3b8c5d2e7f0a9b4c15a0b7c2d9e4f61a3b8c5d2e7f0a9b4c1";
const TIMEOUT: Duration = Duration::from_secs(30);

fn keyword() -> Keyword {
    Keyword::new(KEYWORD).unwrap()
}

fn server_config(history: Arc<SeedHistory>) -> ServerConfig {
    ServerConfig::new(keyword(), history)
        .with_handshake_timeout(TIMEOUT)
        .unwrap()
}

/// An SSH-like first flight: version line, a KEXINIT-ish packet, NEWKEYS, then "encrypted" bytes.
fn flight(version: &str, tail: &[u8]) -> Vec<u8> {
    let mut out = format!("{version}\r\n").into_bytes();
    out.extend(ssh_packet(&[20, 1, 2, 3, 4, 5, 6, 7], 7));
    out.extend(ssh_packet(&[21], 10));
    out.extend_from_slice(tail);
    out
}

/// Reads until EOF and returns everything read.
async fn read_all(io: &mut DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    io.read_to_end(&mut out).await.unwrap();
    out
}

fn spawn_accept(
    io: DuplexStream,
    config: ServerConfig,
) -> JoinHandle<(Result<ObfuscatedStream<DuplexStream>, Error>, Duration)> {
    tokio::spawn(async move {
        let start = Instant::now();
        let result = ObfuscatedStream::accept(io, &config).await;
        (result, start.elapsed())
    })
}

#[tokio::test]
async fn client_and_server_echo() {
    let (client_io, server_io) = duplex(64 * 1024);
    let config = server_config(Arc::default());
    let server = tokio::spawn(async move {
        let mut server = ObfuscatedStream::accept(server_io, &config).await.unwrap();
        // Read the client's flight as its SSH stack would: line, then packets, then raw bytes.
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"after newkeys") {
            let n = server.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF before the whole flight");
            got.extend_from_slice(&buf[..n]);
        }
        server
            .write_all(&flight("SSH-2.0-Server", b"server raw"))
            .await
            .unwrap();
        server.flush().await.unwrap();
        // Echo raw bytes until the client closes.
        let mut echo = [0u8; 64];
        loop {
            let n = server.read(&mut echo).await.unwrap();
            if n == 0 {
                break;
            }
            server.write_all(&echo[..n]).await.unwrap();
            server.flush().await.unwrap();
        }
        (got, server.session().metrics())
    });

    let config = ClientConfig::new(keyword());
    let mut client = ObfuscatedStream::client(client_io, &config).unwrap();
    client.send_preamble().await.unwrap();
    client
        .write_all(&flight("SSH-2.0-Client", b"after newkeys"))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let expected = flight("SSH-2.0-Server", b"server raw");
    let mut got = Vec::new();
    let mut buf = [0u8; 100];
    while !got.ends_with(b"server raw") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // Version line and raw tail arrive unchanged; packets may carry extra padding.
    assert!(got.starts_with(b"SSH-2.0-Server\r\n"));
    assert!(got.len() >= expected.len());
    assert!(client.session().write_is_raw() && client.session().read_is_raw());

    client.write_all(b"ping through the tunnel").await.unwrap();
    client.flush().await.unwrap();
    let mut echoed = [0u8; 23];
    client.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    client.shutdown().await.unwrap();
    drop(client);

    let (server_got, metrics) = server.await.unwrap();
    assert!(server_got.starts_with(b"SSH-2.0-Client\r\n"));
    assert!(server_got.ends_with(b"after newkeys"));
    assert!(metrics.downstream_padding.is_some());
}

/// Runs a rejected connection: writes the probe, then `more`, and keeps the connection open.
/// Asserts the server said nothing, answered only at the deadline, and returns its error.
async fn probe(config: ServerConfig, send: &[u8], more: &[u8]) -> Error {
    let (mut client_io, server_io) = duplex(1 << 20);
    let server = spawn_accept(server_io, config);
    client_io.write_all(send).await.unwrap();
    client_io.write_all(more).await.unwrap();
    let heard = read_all(&mut client_io).await;
    let (result, elapsed) = server.await.unwrap();
    assert!(
        heard.is_empty(),
        "server wrote {} bytes to a probe",
        heard.len()
    );
    assert!(
        elapsed >= TIMEOUT,
        "server hung up after {elapsed:?}, before its deadline"
    );
    match result {
        Ok(_) => panic!("probe accepted"),
        Err(err) => err,
    }
}

#[tokio::test(start_paused = true)]
async fn garbage_gets_silence_until_the_deadline() {
    let err = probe(server_config(Arc::default()), &[0x55; 3000], &[0x17; 4096]).await;
    assert!(
        matches!(
            err,
            Error::HandshakeTimeout {
                step: Step::PrefixTerminator,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::Blocked);
}

#[tokio::test(start_paused = true)]
async fn wrong_keyword_gets_silence() {
    let other = ClientConfig::new(Keyword::new("some-other-keyword").unwrap());
    let mut preamble = Vec::new();
    let mut session = Session::client(&other).unwrap();
    session
        .encode(b"SSH-2.0-Client\r\n", &mut preamble)
        .unwrap();
    let history = Arc::new(SeedHistory::default());
    let err = probe(server_config(history.clone()), &preamble, &[0x17; 4096]).await;
    assert!(matches!(err, Error::HandshakeTimeout { .. }), "{err}");
    assert!(
        history.is_empty(),
        "a seed behind a bad magic value was recorded"
    );
}

#[tokio::test(start_paused = true)]
async fn truncated_preamble_gets_silence() {
    let mut preamble = Vec::new();
    Session::client(&ClientConfig::new(keyword()))
        .unwrap()
        .start(&mut preamble);
    // Nothing follows: more bytes would only complete the padding.
    let err = probe(server_config(Arc::default()), &preamble[..30], &[]).await;
    assert!(
        matches!(
            err,
            Error::HandshakeTimeout {
                step: Step::ClientPreamble,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn replayed_seed_gets_silence_and_a_replay_error() {
    let history = Arc::new(SeedHistory::default());
    let mut first_flight = Vec::new();
    let config = ClientConfig::new(keyword());
    let mut session = Session::client_with_seed(&config, [9; 16]).unwrap();
    session
        .encode(&flight("SSH-2.0-Client", b""), &mut first_flight)
        .unwrap();

    // The original connection is accepted.
    let (mut client_io, server_io) = duplex(1 << 20);
    let server = spawn_accept(server_io, server_config(history.clone()));
    client_io.write_all(&first_flight).await.unwrap();
    let (accepted, _) = server.await.unwrap();
    assert!(accepted.is_ok());

    // A censor replays it byte for byte.
    // Talking on after the rejection changes nothing.
    let err = probe(server_config(history), &first_flight, &[0x17; 4096]).await;
    assert!(matches!(err, Error::ReplayedSeed { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Remote);
}

#[tokio::test(start_paused = true)]
async fn a_prober_that_hangs_up_ends_the_discard_early() {
    let (mut client_io, server_io) = duplex(1 << 16);
    let server = spawn_accept(server_io, server_config(Arc::default()));
    client_io.write_all(&[0x55; 100]).await.unwrap();
    drop(client_io);
    let (result, elapsed) = server.await.unwrap();
    assert!(elapsed < TIMEOUT);
    let err = result.expect_err("garbage accepted");
    assert!(
        matches!(
            err,
            Error::Probe {
                reason: ProbeReason::NoTerminator
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn client_sees_a_silent_hang_up_as_blocked() {
    let (client_io, mut server_io) = duplex(1 << 16);
    let mut client = ObfuscatedStream::client(client_io, &ClientConfig::new(keyword())).unwrap();
    client.send_preamble().await.unwrap();
    // The "server" reads the preamble and hangs up without a word.
    let mut buf = [0u8; 16];
    server_io.read_exact(&mut buf).await.unwrap();
    drop(server_io);
    let err = client.read(&mut [0u8; 64]).await.unwrap_err();
    let ours = Error::from_io(&err).expect("adaptor error carries the crate error");
    assert!(
        matches!(
            ours,
            Error::UnexpectedEof {
                step: Step::IdentificationLine
            }
        ),
        "{ours}"
    );
    assert_eq!(ours.kind(), ErrorKind::Blocked);
}

#[tokio::test]
async fn client_rejects_a_non_ssh_server() {
    let (client_io, mut server_io) = duplex(1 << 16);
    let mut client = ObfuscatedStream::client(client_io, &ClientConfig::new(keyword())).unwrap();
    client.send_preamble().await.unwrap();
    // 2 KiB without a CRLF can't be identification lines, whatever the keystream did to it.
    let noise: Vec<u8> = (0..2048u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    server_io.write_all(&noise).await.unwrap();
    let err = client.read(&mut [0u8; 64]).await.unwrap_err();
    let ours = Error::from_io(&err).expect("adaptor error carries the crate error");
    assert_eq!(ours.kind(), ErrorKind::Remote, "{ours}");
}
