//! Our client against our server over in-memory pipes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Duration;

use psiphon_ssh::{
    CipherAlg, ClientAuth, ClientConfig, Connection, ErrorKind, Incoming, KexAlg, MacAlg,
    PrivateKey, ServerConfig, parse_direct_tcpip_extra,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "psiphon_0123456789abcdef";
const PASSWORD: &str = "correct horse";

fn server_config(key: Arc<PrivateKey>) -> ServerConfig {
    ServerConfig::new(key)
}

/// Serves echo on every channel and answers global requests by echoing their data.
async fn serve(mut conn: Connection) {
    while let Some(item) = conn.next_incoming().await {
        match item {
            Incoming::Channel(c) => {
                let Ok(mut ch) = c.accept() else { return };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match ch.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if ch.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = ch.shutdown().await;
                });
            }
            Incoming::GlobalRequest(r) => {
                let data = r.data().to_vec();
                let ok = r.name() != "refuse-me";
                r.reply(ok, &data);
            }
            _ => {}
        }
    }
}

async fn pair(
    client_cfg: ClientConfig,
    server_cfg: ServerConfig,
) -> (
    psiphon_ssh::Result<Connection>,
    psiphon_ssh::Result<Connection>,
) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let server = tokio::spawn(async move {
        psiphon_ssh::accept(
            b,
            server_cfg,
            Box::new(|u: &str, p: &[u8]| u == USER && p == PASSWORD.as_bytes()),
        )
        .await
    });
    let client = psiphon_ssh::connect(a, client_cfg).await;
    let server = server.await.unwrap();
    (client, server)
}

fn client_config(host: &PrivateKey) -> ClientConfig {
    ClientConfig::new(
        USER,
        ClientAuth::Password(PASSWORD.into()),
        host.public_key().clone(),
    )
}

async fn echo_roundtrip(conn: &Connection, len: usize) {
    let ch = conn
        .handle()
        .open_direct_tcpip("example.org", 443)
        .await
        .unwrap();
    let (mut rd, mut wr) = tokio::io::split(ch);
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let expect = data.clone();
    let w = tokio::spawn(async move {
        wr.write_all(&data).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut got = Vec::new();
    rd.read_to_end(&mut got).await.unwrap();
    let _wr = w.await.unwrap();
    assert_eq!(got.len(), expect.len());
    assert!(got == expect, "echoed bytes differ");
}

#[tokio::test]
async fn password_auth_channels_and_global_requests() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let (client, server) = pair(client_config(&host), server_config(host.clone())).await;
    let client = client.unwrap();
    tokio::spawn(serve(server.unwrap()));
    assert_eq!(client.handle().host_key().as_ref(), Some(host.public_key()));
    echo_roundtrip(&client, 1 << 20).await;
    let reply = client
        .handle()
        .global_request("psiphon-handshake", b"{\"x\":1}")
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some(&b"{\"x\":1}"[..]));
    let refused = client
        .handle()
        .global_request("refuse-me", b"")
        .await
        .unwrap();
    assert_eq!(refused, None);
    let ka = client
        .handle()
        .global_request("keepalive@openssh.com", b"")
        .await
        .unwrap();
    assert!(
        ka.is_some_and(|p| p.len() <= 255),
        "keepalive answered with success and padding"
    );
}

#[tokio::test]
async fn every_cipher_and_mac_works() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    for cipher in CipherAlg::ALL {
        let macs: Vec<Option<MacAlg>> = if cipher.is_aead() {
            vec![None]
        } else {
            MacAlg::ALL.into_iter().map(Some).collect()
        };
        for mac in macs {
            // Each forced alone on both sides.
            let mut c = client_config(&host);
            let mut s = server_config(host.clone());
            c.common.ciphers = vec![cipher];
            s.common.ciphers = vec![cipher];
            if let Some(m) = mac {
                c.common.macs = vec![m];
                s.common.macs = vec![m];
            }
            let (client, server) = pair(c, s).await;
            let client = client.unwrap_or_else(|e| panic!("{cipher:?}/{mac:?}: {e}"));
            tokio::spawn(serve(server.unwrap()));
            echo_roundtrip(&client, 300_000).await;
        }
    }
}

/// Every key exchange method, forced alone on both sides, through the first exchange (strict
/// KEX and ext-info on) and a rekey, with a CTR cipher and an SHA-1 MAC to mix hash lengths.
#[tokio::test]
async fn every_kex_method_works_and_rekeys() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    for kex in KexAlg::ALL {
        for (cipher, mac) in [
            (CipherAlg::Aes128Gcm, MacAlg::HmacSha256Etm),
            (CipherAlg::Aes256Ctr, MacAlg::HmacSha1),
        ] {
            let mut c = client_config(&host);
            let mut s = server_config(host.clone());
            c.common.kex = vec![kex];
            s.common.kex = vec![kex];
            c.common.ciphers = vec![cipher];
            c.common.macs = vec![mac];
            let (client, server) = pair(c, s).await;
            let client = client.unwrap_or_else(|e| panic!("{kex:?}: {e}"));
            tokio::spawn(serve(server.unwrap()));
            echo_roundtrip(&client, 20_000).await;
            client.handle().rekey().unwrap();
            echo_roundtrip(&client, 20_000).await;
        }
    }
}

#[tokio::test]
async fn disjoint_kex_lists_fail_with_no_common_algorithm() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let mut c = client_config(&host);
    let mut s = server_config(host.clone());
    c.common.kex = vec![KexAlg::Curve25519];
    s.common.kex = vec![KexAlg::EcdhP256, KexAlg::Dh14Sha1];
    let (client, _server) = pair(c, s).await;
    let err = client.unwrap_err();
    assert!(
        matches!(
            err,
            psiphon_ssh::Error::NoCommonAlgorithm {
                what: "key exchange",
                ..
            }
        ),
        "{err}"
    );
}

/// A client that accepts only `ssh-rsa` (as some psiphon-tunnel-core dials do) gets an
/// RSA/SHA-1 host key signature from our server; the other RSA names still work.
#[tokio::test]
async fn ssh_rsa_host_key_signature() {
    let host = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    for alg in ["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"] {
        let mut c = client_config(&host);
        c.host_key_algorithms = vec![alg];
        let (client, server) = pair(c, server_config(host.clone())).await;
        let client = client.unwrap_or_else(|e| panic!("{alg}: {e}"));
        tokio::spawn(serve(server.unwrap()));
        echo_roundtrip(&client, 10_000).await;
    }
    // An Ed25519-only server cannot satisfy an ssh-rsa-only client.
    let ed = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let mut c = client_config(&ed);
    c.host_key_algorithms = vec!["ssh-rsa"];
    let (client, _server) = pair(c, server_config(ed.clone())).await;
    let err = client.unwrap_err();
    assert!(
        matches!(
            err,
            psiphon_ssh::Error::NoCommonAlgorithm {
                what: "host key",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn rsa_host_key_and_public_key_client_auth_fail_cleanly() {
    let host = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    let (client, server) = pair(client_config(&host), server_config(host.clone())).await;
    let client = client.unwrap();
    tokio::spawn(serve(server.unwrap()));
    echo_roundtrip(&client, 10_000).await;

    // Our server takes passwords only: a key is refused with a clear error.
    let user_key = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let c = ClientConfig::new(
        USER,
        ClientAuth::PublicKey(user_key),
        host.public_key().clone(),
    );
    let (client, _server) = pair(c, server_config(host.clone())).await;
    let err = client.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServerRejected, "{err}");
}

#[tokio::test]
async fn wrong_password_and_wrong_host_key_are_rejected() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let c = ClientConfig::new(
        USER,
        ClientAuth::Password("nope".into()),
        host.public_key().clone(),
    );
    let (client, _) = pair(c, server_config(host.clone())).await;
    let err = client.unwrap_err();
    assert!(
        matches!(err, psiphon_ssh::Error::AuthFailed { .. }),
        "{err}"
    );

    let other = PrivateKey::generate_ed25519().unwrap();
    let (client, _) = pair(client_config(&other), server_config(host.clone())).await;
    let err = client.unwrap_err();
    assert!(matches!(err, psiphon_ssh::Error::HostKeyRejected), "{err}");
    assert_eq!(err.kind(), ErrorKind::ServerRejected);
}

#[tokio::test]
async fn rekeys_from_both_sides_mid_transfer() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let mut c = client_config(&host);
    c.common.rekey_bytes = 256 * 1024;
    let mut s = server_config(host.clone());
    s.common.rekey_bytes = 300 * 1024;
    let (client, server) = pair(c, s).await;
    let client = client.unwrap();
    tokio::spawn(serve(server.unwrap()));
    echo_roundtrip(&client, 8 << 20).await;
    client.handle().rekey().unwrap();
    echo_roundtrip(&client, 1 << 20).await;
}

#[tokio::test]
async fn an_unread_channel_does_not_stall_others() {
    let host = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let mut s = server_config(host.clone());
    s.common.channel_window = 64 * 1024;
    let mut c = client_config(&host);
    c.common.channel_window = 64 * 1024;
    let (client, server) = pair(c, s).await;
    let client = client.unwrap();
    tokio::spawn(serve(server.unwrap()));
    // Fill one channel's echo in both directions and never read it.
    let mut stuck = client.handle().open_direct_tcpip("a", 1).await.unwrap();
    let junk = vec![1u8; 48 * 1024];
    stuck.write_all(&junk).await.unwrap();
    // Others still flow, and keepalives still answer.
    tokio::time::timeout(Duration::from_secs(20), async {
        echo_roundtrip(&client, 4 << 20).await;
        assert!(
            client
                .handle()
                .global_request("keepalive@openssh.com", b"")
                .await
                .unwrap()
                .is_some()
        );
    })
    .await
    .expect("other channels stalled behind an unread one");
    drop(stuck);
}

#[tokio::test]
async fn direct_tcpip_extra_roundtrip() {
    let extra = psiphon_ssh::direct_tcpip_extra("example.org", 443);
    assert_eq!(
        parse_direct_tcpip_extra(&extra).unwrap(),
        ("example.org".to_owned(), 443)
    );
    assert!(parse_direct_tcpip_extra(&extra[..5]).is_err());
}
