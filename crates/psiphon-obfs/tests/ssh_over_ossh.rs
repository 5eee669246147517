//! Our SSH client and server talking through our OSSH layer over real loopback TCP: the whole
//! wire stack of an OSSH tunnel, including the server's identification-line padding and the
//! unaligned random padding both sides add to pre-NEWKEYS packets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Duration;

use psiphon_obfs::{
    ClientConfig, Keyword, ObfuscatedStream, SeedHistory, SeedHistoryConfig, ServerConfig,
};
use psiphon_ssh::{CipherAlg, ClientAuth, Incoming, PrivateKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEYWORD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

async fn tunnel_roundtrip(cipher: CipherAlg, len: usize) {
    let host = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let history = Arc::new(SeedHistory::new(SeedHistoryConfig::default()));
    let server_host = host.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let cfg = ServerConfig::new(Keyword::new(KEYWORD).unwrap(), history);
        let ossh = ObfuscatedStream::accept(tcp, &cfg).await.unwrap();
        let mut conn = psiphon_ssh::accept(
            ossh,
            psiphon_ssh::ServerConfig::new(server_host),
            Box::new(|_: &str, p: &[u8]| p == b"secret"),
        )
        .await
        .unwrap();
        while let Some(item) = conn.next_incoming().await {
            if let Incoming::Channel(c) = item {
                let mut ch = c.accept().unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(&mut ch);
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                });
            }
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let ossh =
        ObfuscatedStream::client(tcp, &ClientConfig::new(Keyword::new(KEYWORD).unwrap())).unwrap();
    let mut cfg = psiphon_ssh::ClientConfig::new(
        "psiphon_0011223344556677",
        ClientAuth::Password("secret".into()),
        host.public_key().clone(),
    );
    cfg.common.ciphers = vec![cipher];
    let conn = tokio::time::timeout(Duration::from_secs(20), psiphon_ssh::connect(ossh, cfg))
        .await
        .expect("OSSH+SSH handshake timed out")
        .unwrap();
    let ch = conn
        .handle()
        .open_direct_tcpip("example.org", 443)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(ch);
    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::new();
    rd.read_to_end(&mut got).await.unwrap();
    let _wr = writer.await.unwrap();
    assert!(got == expect, "{cipher:?}: echoed bytes differ");
    drop(conn);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_over_ossh_every_cipher() {
    for cipher in CipherAlg::ALL {
        tunnel_roundtrip(cipher, 2 << 20).await;
    }
}
