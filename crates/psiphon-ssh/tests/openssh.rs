//! Interoperability with Debian's OpenSSH (`ssh`, `sshd`).
//!
//! Each test starts its own OpenSSH process on 127.0.0.1 with a config and keys in a temporary
//! directory, waits for the readiness line in its log, and moves 64 MiB through a forward,
//! comparing SHA-256 at both ends. Rekeys happen mid-transfer (`RekeyLimit 1M` on the OpenSSH
//! side, `rekey_bytes` = 1 MiB on ours). Tests skip when OpenSSH is missing unless
//! `PSIPHON_REQUIRE_OPENSSH` is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Watched, drain_hash, free_port, have_openssh, keygen, origin, socks5_connect};
use psiphon_ssh::{
    CipherAlg, ClientAuth, ClientConfig, Connection, Incoming, KexAlg, MacAlg, PrivateKey,
    PublicKey, ServerConfig, parse_direct_tcpip_extra,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

const SIXTY_FOUR_MIB: usize = 64 << 20;
const USER: &str = "psiphon_0123456789abcdef";
const PASSWORD: &str = "a-long-psiphon-style-password-0123456789abcdef";

/// Relays every `direct-tcpip` channel to its destination, as a server does.
async fn serve_forwards(mut conn: Connection) {
    while let Some(item) = conn.next_incoming().await {
        match item {
            Incoming::Channel(c) if c.kind() == "direct-tcpip" => {
                let (host, port) = parse_direct_tcpip_extra(c.extra()).unwrap();
                tokio::spawn(async move {
                    match TcpStream::connect((host.as_str(), port)).await {
                        Ok(mut tcp) => {
                            tcp.set_nodelay(true).ok();
                            let mut ch = c.accept().unwrap();
                            let _ = tokio::io::copy_bidirectional(&mut ch, &mut tcp).await;
                        }
                        Err(_) => {
                            c.reject(psiphon_ssh::msg::open_failure::CONNECT_FAILED, "refused")
                        }
                    }
                });
            }
            Incoming::Channel(c) => {
                c.reject(psiphon_ssh::msg::open_failure::UNKNOWN_CHANNEL_TYPE, "")
            }
            Incoming::GlobalRequest(r) => r.reply(false, &[]),
            _ => {}
        }
    }
}

/// Our server on 127.0.0.1:0 with an RSA-2048 host key (as Psiphon servers have).
async fn start_our_server(rekey_bytes: u64) -> u16 {
    let key = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tcp.set_nodelay(true).ok();
            let mut cfg = ServerConfig::new(key.clone());
            cfg.common.rekey_bytes = rekey_bytes;
            tokio::spawn(async move {
                let check = Box::new(|u: &str, p: &[u8]| u == USER && p == PASSWORD.as_bytes());
                if let Ok(conn) = psiphon_ssh::accept(tcp, cfg, check).await {
                    serve_forwards(conn).await;
                }
            });
        }
    });
    port
}

/// `ssh -N` against our server with the given extra options, password from SSH_ASKPASS.
fn ssh_client(dir: &Path, server_port: u16, extra: &[String]) -> Watched {
    let askpass = dir.join("askpass.sh");
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{PASSWORD}'\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut cmd = Command::new("/usr/bin/ssh");
    cmd.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .args(["-v", "-N", "-F", "/dev/null"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args([
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .args(["-o", "RekeyLimit=1M"])
        .args(["-p", &server_port.to_string()])
        .args(extra)
        .arg(format!("{USER}@127.0.0.1"));
    Watched::spawn(cmd)
}

async fn fetch_via_local_forward(cipher_args: &[&str]) {
    fetch_via_local_forward_sized(cipher_args, SIXTY_FOUR_MIB, &[]).await;
}

/// As [`fetch_via_local_forward`] with `size` bytes, checking that `ssh -v`'s log has each of
/// `expect_in_log` (the algorithms it reports negotiating).
async fn fetch_via_local_forward_sized(cipher_args: &[&str], size: usize, expect_in_log: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut origin = origin(size).await;
    let server = start_our_server(1 << 20).await;
    let local = free_port();
    let mut extra: Vec<String> = cipher_args.iter().map(|s| (*s).to_owned()).collect();
    extra.extend([
        "-L".to_owned(),
        format!("127.0.0.1:{local}:127.0.0.1:{}", origin.port),
    ]);
    let mut ssh = ssh_client(dir.path(), server, &extra);
    ssh.wait_for("Local forwarding listening on").await;
    let s = common::connect_ready(local).await.unwrap_or_else(|e| {
        panic!(
            "connect to ssh -L port {local}: {e}; ssh log:\n{}",
            ssh.dump()
        )
    });
    let got = tokio::time::timeout(Duration::from_secs(120), drain_hash(s))
        .await
        .expect("transfer stalled");
    let sent = origin.sent.recv().await.unwrap();
    assert_eq!(
        got.0,
        size,
        "ssh {cipher_args:?}: short transfer; log:\n{}",
        ssh.dump()
    );
    for needle in expect_in_log {
        assert!(
            ssh.dump().contains(needle),
            "ssh {cipher_args:?}: log lacks {needle:?}:\n{}",
            ssh.dump()
        );
    }
    assert!(got == sent, "ssh {cipher_args:?}: SHA-256 differs");
    let rekeys = ssh.dump().matches("SSH2_MSG_KEXINIT sent").count();
    assert!(
        rekeys >= 3,
        "expected rekeys mid-transfer, saw {rekeys} KEXINITs:\n{}",
        ssh.dump()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_local_forward_each_cipher() {
    if !have_openssh() {
        return;
    }
    for cipher in CipherAlg::ALL {
        fetch_via_local_forward(&["-c", cipher.name()]).await;
    }
    // The CTR ciphers with each non-ETM MAC (the ETM ones are OpenSSH's default choice above).
    fetch_via_local_forward(&["-c", "aes128-ctr", "-m", "hmac-sha2-256"]).await;
    fetch_via_local_forward(&["-c", "aes256-ctr", "-m", "hmac-sha2-512"]).await;
}

/// `ssh` forcing each of the key exchange methods, ciphers, MACs and the `ssh-rsa` host key
/// signature that psiphon-tunnel-core's randomised lists can leave as the only choice. 4 MiB
/// each, with rekeys every 1 MiB; the SHA-1 methods that OpenSSH 9.2 disables by default are
/// named explicitly, which enables them for the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_forcing_each_legacy_algorithm() {
    if !have_openssh() {
        return;
    }
    const FOUR_MIB: usize = 4 << 20;
    for kex in KexAlg::ALL {
        let name = kex.name();
        fetch_via_local_forward_sized(
            &["-o", &format!("KexAlgorithms={name}")],
            FOUR_MIB,
            &[&format!("kex: algorithm: {name}")],
        )
        .await;
    }
    for (cipher, mac) in [
        ("aes192-ctr", "hmac-sha2-256"),
        ("aes192-ctr", "hmac-sha2-512-etm@openssh.com"),
        ("aes128-ctr", "hmac-sha1"),
        ("aes256-ctr", "hmac-sha1-96"),
        ("aes192-ctr", "hmac-sha1"),
    ] {
        fetch_via_local_forward_sized(
            &["-c", cipher, "-m", mac],
            FOUR_MIB,
            &[&format!("server->client cipher: {cipher} MAC: {mac} ")],
        )
        .await;
    }
    fetch_via_local_forward_sized(
        &[
            "-o",
            "HostKeyAlgorithms=ssh-rsa",
            "-o",
            "KexAlgorithms=diffie-hellman-group14-sha1",
            "-c",
            "aes128-ctr",
            "-m",
            "hmac-sha1",
        ],
        FOUR_MIB,
        &["kex: host key algorithm: ssh-rsa"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_dynamic_socks_forward() {
    if !have_openssh() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut origin = origin(SIXTY_FOUR_MIB).await;
    let server = start_our_server(1 << 20).await;
    let socks = free_port();
    let mut ssh = ssh_client(
        dir.path(),
        server,
        &["-D".to_owned(), format!("127.0.0.1:{socks}")],
    );
    ssh.wait_for("Local forwarding listening on").await;
    let s = socks5_connect(socks, origin.port).await;
    let got = tokio::time::timeout(Duration::from_secs(120), drain_hash(s))
        .await
        .expect("transfer stalled");
    let sent = origin.sent.recv().await.unwrap();
    assert_eq!(got.0, SIXTY_FOUR_MIB);
    assert!(got == sent, "SHA-256 differs");
}

/// A private sshd on 127.0.0.1 that accepts `client_key` for the current user.
struct Sshd {
    port: u16,
    host_key: PublicKey,
    _proc: Watched,
    _dir: tempfile::TempDir,
}

async fn start_sshd(host_key_type: &str, client_key: &PrivateKey) -> Sshd {
    start_sshd_with(host_key_type, client_key, "").await
}

/// As [`start_sshd`] with extra `sshd_config` lines.
async fn start_sshd_with(host_key_type: &str, client_key: &PrivateKey, extra: &str) -> Sshd {
    let dir = tempfile::tempdir().unwrap();
    let host_key = keygen(dir.path(), "host_key", host_key_type);
    let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let auth = dir.path().join("authorized_keys");
    std::fs::write(&auth, format!("{}\n", client_key.public_key().to_openssh())).unwrap();
    // sshd insists on its privilege-separation directory, even when run by hand.
    std::fs::create_dir_all("/run/sshd").ok();
    let port = free_port();
    let cfg = dir.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n\
             StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n\
             AllowTcpForwarding yes\nRekeyLimit 1M\nLogLevel DEBUG\n{extra}",
            host_key.display(),
            auth.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("/usr/sbin/sshd");
    cmd.args(["-D", "-e", "-f"]).arg(&cfg);
    let mut proc = Watched::spawn(cmd);
    proc.wait_for("Server listening on").await;
    Sshd {
        port,
        host_key: PublicKey::from_openssh(&host_pub).unwrap(),
        _proc: proc,
        _dir: dir,
    }
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let out = std::process::Command::new("id")
                .arg("-un")
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
}

async fn our_client(
    sshd: &Sshd,
    key: Arc<PrivateKey>,
    cipher: CipherAlg,
    mac: Option<MacAlg>,
) -> Connection {
    our_client_with(sshd, key, cipher, mac, |_| {}).await
}

/// As [`our_client`], with `tweak` applied to the client's configuration last.
async fn our_client_with(
    sshd: &Sshd,
    key: Arc<PrivateKey>,
    cipher: CipherAlg,
    mac: Option<MacAlg>,
    tweak: impl FnOnce(&mut ClientConfig),
) -> Connection {
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut cfg = ClientConfig::new(
        current_user(),
        ClientAuth::PublicKey(key),
        sshd.host_key.clone(),
    );
    cfg.common.ciphers = vec![cipher];
    if let Some(m) = mac {
        cfg.common.macs = vec![m];
    }
    cfg.common.rekey_bytes = 1 << 20;
    tweak(&mut cfg);
    tokio::time::timeout(Duration::from_secs(20), psiphon_ssh::connect(tcp, cfg))
        .await
        .expect("handshake with sshd timed out")
        .unwrap_or_else(|e| {
            panic!(
                "connect to sshd ({cipher:?}/{mac:?}): {e}\nsshd log:\n{}",
                sshd._proc.dump()
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_to_sshd_each_cipher() {
    if !have_openssh() {
        return;
    }
    let mut origin = origin(SIXTY_FOUR_MIB).await;
    let key = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let sshd = start_sshd("ed25519", &key).await;
    let mut cases: Vec<(CipherAlg, Option<MacAlg>)> = CipherAlg::ALL
        .into_iter()
        .map(|c| {
            (
                c,
                if c.is_aead() {
                    None
                } else {
                    Some(MacAlg::HmacSha256Etm)
                },
            )
        })
        .collect();
    cases.push((CipherAlg::Aes128Ctr, Some(MacAlg::HmacSha256)));
    cases.push((CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha512)));
    cases.push((CipherAlg::Aes256Ctr, Some(MacAlg::HmacSha512Etm)));
    for (cipher, mac) in cases {
        let conn = our_client(&sshd, key.clone(), cipher, mac).await;
        let ch = conn
            .handle()
            .open_direct_tcpip("127.0.0.1", origin.port)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(120), drain_hash(ch))
            .await
            .expect("stalled");
        let sent = origin.sent.recv().await.unwrap();
        assert_eq!(got.0, SIXTY_FOUR_MIB, "{cipher:?}/{mac:?}");
        assert!(got == sent, "{cipher:?}/{mac:?}: SHA-256 differs");
        let log = sshd._proc.dump();
        assert!(
            log.matches("rekeying").count() + log.matches("KEX done").count() >= 2,
            "no rekey seen"
        );
    }
}

/// Our client forcing each key exchange method, the new cipher and MACs, and an `ssh-rsa`
/// host key signature against `sshd`, whose config enables the SHA-1 ones OpenSSH 9.2 leaves
/// out by default. 4 MiB each through a forward, rekeying every 1 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_to_sshd_forcing_each_legacy_algorithm() {
    if !have_openssh() {
        return;
    }
    const FOUR_MIB: usize = 4 << 20;
    let mut origin = origin(FOUR_MIB).await;
    let key = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let sshd = start_sshd_with(
        "rsa",
        &key,
        "KexAlgorithms +diffie-hellman-group14-sha1\nMACs +hmac-sha1-96\n\
         HostKeyAlgorithms +ssh-rsa\n",
    )
    .await;
    type Tweak = Box<dyn FnOnce(&mut ClientConfig)>;
    let mut cases: Vec<(String, CipherAlg, Option<MacAlg>, Tweak)> = Vec::new();
    for kex in KexAlg::ALL {
        cases.push((
            format!("kex: algorithm: {}", kex.name()),
            CipherAlg::Aes128Gcm,
            None,
            Box::new(move |c: &mut ClientConfig| c.common.kex = vec![kex]),
        ));
    }
    for (cipher, mac) in [
        (CipherAlg::Aes192Ctr, MacAlg::HmacSha256Etm),
        (CipherAlg::Aes128Ctr, MacAlg::HmacSha1),
        (CipherAlg::Aes256Ctr, MacAlg::HmacSha1_96),
        (CipherAlg::Aes192Ctr, MacAlg::HmacSha1),
    ] {
        cases.push((
            format!(
                "client->server cipher: {} MAC: {} ",
                cipher.name(),
                mac.name()
            ),
            cipher,
            Some(mac),
            Box::new(|_: &mut ClientConfig| {}),
        ));
    }
    cases.push((
        "kex: host key algorithm: ssh-rsa".to_owned(),
        CipherAlg::Aes256Gcm,
        None,
        Box::new(|c: &mut ClientConfig| c.host_key_algorithms = vec!["ssh-rsa"]),
    ));
    for (needle, cipher, mac, tweak) in cases {
        let conn = our_client_with(&sshd, key.clone(), cipher, mac, tweak).await;
        let ch = conn
            .handle()
            .open_direct_tcpip("127.0.0.1", origin.port)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(120), drain_hash(ch))
            .await
            .expect("stalled");
        let sent = origin.sent.recv().await.unwrap();
        assert_eq!(got.0, FOUR_MIB, "{needle}");
        assert!(got == sent, "{needle}: SHA-256 differs");
        assert!(
            sshd._proc.dump().contains(&needle),
            "sshd log lacks {needle:?}:\n{}",
            sshd._proc.dump()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_to_sshd_rsa_host_key_and_rsa_user_key() {
    if !have_openssh() {
        return;
    }
    let mut origin = origin(4 << 20).await;
    let key = Arc::new(PrivateKey::generate_rsa(2048).unwrap());
    let sshd = start_sshd("rsa", &key).await;
    let conn = our_client(&sshd, key.clone(), CipherAlg::Aes128Gcm, None).await;
    let ch = conn
        .handle()
        .open_direct_tcpip("127.0.0.1", origin.port)
        .await
        .unwrap();
    let got = drain_hash(ch).await;
    assert!(got == origin.sent.recv().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_line_unread_channel_next_to_busy_one_with_sshd() {
    if !have_openssh() {
        return;
    }
    let mut origin = origin(16 << 20).await;
    let key = Arc::new(PrivateKey::generate_ed25519().unwrap());
    let sshd = start_sshd("ed25519", &key).await;
    let conn = our_client(&sshd, key.clone(), CipherAlg::Aes128Gcm, None).await;
    let h = conn.handle();
    // This channel's origin pushes 16 MiB that nobody reads.
    let stuck = h.open_direct_tcpip("127.0.0.1", origin.port).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        let busy = h.open_direct_tcpip("127.0.0.1", origin.port).await.unwrap();
        let got = drain_hash(busy).await;
        assert_eq!(got.0, 16 << 20);
        // OpenSSH answers keepalive@openssh.com with failure: an answer is what matters.
        for _ in 0..3 {
            h.global_request("keepalive@openssh.com", b"")
                .await
                .unwrap();
        }
        got
    })
    .await
    .expect("busy channel or keepalives stalled behind the unread channel");
    let first = origin.sent.recv().await;
    let _ = first;
    drop(stuck);
    assert_eq!(result.0, 16 << 20);
}
