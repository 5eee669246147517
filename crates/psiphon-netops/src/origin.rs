//! A tiny web server on loopback for `psinet quickstart`: the sponsor's home page, reachable
//! through the tunnel even on a machine with no Internet, so the printed curl command works.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The page served at every path.
pub const HOME_PAGE: &str = "<!doctype html>\n<title>psiphon-rs quickstart</title>\n\
<h1>You reached this page through a Psiphon tunnel.</h1>\n\
<p>This is the quickstart network's home page, served on loopback.</p>\n";

/// A running origin.
#[derive(Debug)]
pub struct Origin {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Origin {
    /// Starts serving on 127.0.0.1 at an OS-assigned port.
    pub async fn start() -> std::io::Result<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // Read the request head (bounded), answer, close.
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while n < buf.len() {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(m) => n += m,
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HOME_PAGE}",
                        HOME_PAGE.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(Origin { addr, task })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The home page URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
