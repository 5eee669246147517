//! A benchmark tunnel made of this crate only: our SSH server relaying `direct-tcpip`, and our
//! SSH client serving a minimal SOCKS5 front, so `../shared/bench` can measure it with curl and
//! nginx next to OpenSSH's `ssh -D` (see docs/benchmarks.md).
//!
//! ```text
//! ssh_tunnel server --listen 127.0.0.1:2223                 # prints its host key, then serves
//! ssh_tunnel client --server 127.0.0.1:2223 --host-key KEY --socks 127.0.0.1:1090 \
//!                   [--cipher aes128-gcm@openssh.com] [--mac hmac-sha2-256]
//! ```
//! Both run until killed. The password is fixed: this is a benchmark, not a product.

use std::error::Error;
use std::sync::Arc;

use psiphon_ssh::{
    CipherAlg, ClientAuth, ClientConfig, Connection, Handle, Incoming, MacAlg, PrivateKey,
    PublicKey, ServerConfig, parse_direct_tcpip_extra,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("server") => server(&args).await,
        Some("client") => client(&args).await,
        _ => Err("usage: ssh_tunnel server --listen ADDR | client --server ADDR --host-key B64 --socks ADDR [--cipher C] [--mac M]".into()),
    }
}

async fn server(args: &[String]) -> BoxResult<()> {
    let listen = arg(args, "--listen").unwrap_or_else(|| "127.0.0.1:2223".into());
    let key = Arc::new(PrivateKey::generate_ed25519()?);
    let listener = TcpListener::bind(&listen).await?;
    println!("{}", key.public_key().to_base64());
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let cfg = ServerConfig::new(key.clone());
        tokio::spawn(async move {
            let check = Box::new(|u: &str, p: &[u8]| u == USER && p == PASSWORD.as_bytes());
            if let Ok(conn) = psiphon_ssh::accept(tcp, cfg, check).await {
                relay_forwards(conn).await;
            }
        });
    }
}

async fn relay_forwards(mut conn: Connection) {
    while let Some(item) = conn.next_incoming().await {
        match item {
            Incoming::Channel(c) if c.kind() == "direct-tcpip" => {
                tokio::spawn(async move {
                    let Ok((host, port)) = parse_direct_tcpip_extra(c.extra()) else {
                        return;
                    };
                    match TcpStream::connect((host.as_str(), port)).await {
                        Ok(mut tcp) => {
                            let _ = tcp.set_nodelay(true);
                            if let Ok(mut ch) = c.accept() {
                                let _ = tokio::io::copy_bidirectional_with_sizes(
                                    &mut ch,
                                    &mut tcp,
                                    64 * 1024,
                                    64 * 1024,
                                )
                                .await;
                            }
                        }
                        Err(_) => c.reject(psiphon_ssh::msg::open_failure::CONNECT_FAILED, ""),
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

async fn client(args: &[String]) -> BoxResult<()> {
    let server = arg(args, "--server").ok_or("--server is required")?;
    let host_key =
        PublicKey::from_base64(&arg(args, "--host-key").ok_or("--host-key is required")?)?;
    let socks = arg(args, "--socks").unwrap_or_else(|| "127.0.0.1:1090".into());
    let mut cfg = ClientConfig::new(USER, ClientAuth::Password(PASSWORD.into()), host_key);
    if let Some(c) = arg(args, "--cipher") {
        cfg.common.ciphers = vec![CipherAlg::from_name(&c).ok_or("unknown cipher")?];
    }
    if let Some(m) = arg(args, "--mac") {
        cfg.common.macs = vec![MacAlg::from_name(&m).ok_or("unknown mac")?];
    }
    let tcp = TcpStream::connect(&server).await?;
    tcp.set_nodelay(true)?;
    let conn = psiphon_ssh::connect(tcp, cfg).await?;
    let listener = TcpListener::bind(&socks).await?;
    eprintln!("SOCKS5 on {socks}");
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (s, _) = r?;
                s.set_nodelay(true)?;
                let h = conn.handle();
                tokio::spawn(async move { let _ = socks5(s, h).await; });
            }
            e = conn.closed() => return Err(e.into()),
        }
    }
}

/// SOCKS5 CONNECT without authentication: just enough for curl.
async fn socks5(mut s: TcpStream, h: Handle) -> BoxResult<()> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    s.read_exact(&mut methods).await?;
    s.write_all(&[5, 0]).await?;
    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            let mut name = vec![0u8; usize::from(n[0])];
            s.read_exact(&mut name).await?;
            String::from_utf8(name)?
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => return Err("bad address type".into()),
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).await?;
    match h.open_direct_tcpip(&host, u16::from_be_bytes(port)).await {
        Ok(mut ch) => {
            s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            tokio::io::copy_bidirectional_with_sizes(&mut s, &mut ch, 64 * 1024, 64 * 1024).await?;
        }
        Err(_) => s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?,
    }
    Ok(())
}
