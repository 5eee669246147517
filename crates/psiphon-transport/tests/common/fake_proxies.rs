//! Small proxies written for the tests, for what tinyproxy and danted cannot show: the request
//! head as received (custom headers), a reply coalesced with the destination's first bytes,
//! SOCKS5 user/password success (danted checks system accounts), garbage and silence.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

async fn listen() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// An HTTP CONNECT proxy that reports each request head on the channel, connects, reads the
/// destination's first `banner_len` bytes, and writes `200` and those bytes in one write.
pub async fn http_connect_proxy(banner_len: usize) -> (u16, mpsc::Receiver<String>) {
    let (listener, port) = listen().await;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    let Ok(b) = client.read_u8().await else {
                        return;
                    };
                    head.push(b);
                }
                let head = String::from_utf8(head).unwrap();
                let target = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                    .unwrap()
                    .to_owned();
                tx.send(head).await.unwrap();
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                let mut reply = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
                let mut banner = vec![0u8; banner_len];
                upstream.read_exact(&mut banner).await.unwrap();
                reply.extend_from_slice(&banner);
                client.write_all(&reply).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, rx)
}

/// A SOCKS5 proxy that insists on user/password authentication (RFC 1929) with these
/// credentials, then connects anywhere.
pub async fn socks5_user_pass_proxy(user: &'static str, pass: &'static str) -> u16 {
    let (listener, port) = listen().await;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = serve_socks5(client, user, pass).await;
            });
        }
    });
    port
}

async fn serve_socks5(mut c: TcpStream, user: &str, pass: &str) -> std::io::Result<()> {
    let (version, n) = (c.read_u8().await?, c.read_u8().await?);
    assert_eq!(version, 5);
    let mut methods = vec![0u8; usize::from(n)];
    c.read_exact(&mut methods).await?;
    if !methods.contains(&2) {
        return c.write_all(&[5, 0xff]).await;
    }
    c.write_all(&[5, 2]).await?;
    assert_eq!(c.read_u8().await?, 1);
    let mut u = vec![0u8; usize::from(c.read_u8().await?)];
    c.read_exact(&mut u).await?;
    let mut p = vec![0u8; usize::from(c.read_u8().await?)];
    c.read_exact(&mut p).await?;
    if u != user.as_bytes() || p != pass.as_bytes() {
        return c.write_all(&[1, 1]).await;
    }
    c.write_all(&[1, 0]).await?;
    let mut head = [0u8; 4];
    c.read_exact(&mut head).await?;
    assert_eq!(&head[..3], &[5, 1, 0]);
    let host = match head[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a).await?;
            std::net::Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut name = vec![0u8; usize::from(c.read_u8().await?)];
            c.read_exact(&mut name).await?;
            String::from_utf8(name).unwrap()
        }
        other => panic!("address type {other}"),
    };
    let port = c.read_u16().await?;
    match TcpStream::connect((host.as_str(), port)).await {
        Ok(mut upstream) => {
            c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
            tokio::io::copy_bidirectional(&mut c, &mut upstream).await?;
            Ok(())
        }
        Err(_) => c.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await,
    }
}

/// A "proxy" that reads what it is sent and answers `reply`, then either holds the connection
/// until the client closes it (`hold`) or closes it.
pub async fn scripted_proxy(reply: &'static [u8], hold: bool) -> u16 {
    let (listener, port) = listen().await;
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if c.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                if !reply.is_empty() {
                    c.write_all(reply).await.unwrap();
                }
                // drain until the client goes away
                while hold && c.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    port
}
