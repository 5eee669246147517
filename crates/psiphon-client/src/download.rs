//! Resumable HTTP downloads, as tunnel-core's `ResumeDownload` (wire spec section 5.4):
//! partial data in `<file>.part` with the response ETag in `<file>.part.etag`; a resumed
//! request sends `Range: bytes=<partial size>-` and `If-Match: <partial etag>`, a fresh one
//! `If-None-Match: <last etag>`. 200 and 206 write (200 restarts the file), 304 means
//! unchanged, 412 means the resource changed under the partial (which is dropped), 416 means
//! the partial is already whole. The completed file is renamed into place.
//!
//! The HTTP/1.1 exchange runs over any byte stream, so the same code fetches directly or
//! through a tunnel's `direct-tcpip` channel.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// Any byte stream a download can run over (TCP, a tunnel channel, TLS over either).
pub use psiphon_transport::Io;

/// An `http://` or `https://` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https`: TLS to the host.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80 unless given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http[s]://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<HttpUrl, DownloadError> {
        let bad = |why: &str| DownloadError::Url(format!("{}: {why}", redact_url(url)));
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("expected an http:// or https:// URL"));
        };
        let default_port = if tls { 443 } else { 80 };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("user info in the URL is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if tail.is_empty() => default_port,
                None => return Err(bad("junk after the host")),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = path.split('#').next().unwrap_or("/").to_owned();
        Ok(HttpUrl {
            tls,
            host,
            port,
            path,
        })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The URL with its path hidden, for errors and notices (tunnel-core redacts download URLs
/// unless told to emit network parameters).
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split('/').next().unwrap_or_default();
            format!("{scheme}://{host}/[redacted]")
        }
        None => "[redacted]".to_owned(),
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The URL is not one this client can fetch.
    #[error("bad download URL {0}")]
    Url(String),
    /// Connecting or exchanging bytes failed.
    #[error("download: {0}")]
    Io(#[from] std::io::Error),
    /// The response was not HTTP this client understands.
    #[error("download: bad HTTP response: {0}")]
    Protocol(String),
    /// A status the protocol does not allow here.
    #[error("download: unexpected HTTP status {0}")]
    Status(u16),
    /// The resource changed while a partial download was kept (412); the partial was dropped.
    #[error(
        "download: the resource changed since the partial download (412); starting over next time"
    )]
    Changed,
    /// The download took longer than allowed (the partial is kept for next time).
    #[error("download: timed out after {0:?} (partial data kept for resuming)")]
    Timeout(Duration),
    /// Local file trouble.
    #[error("download file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a download did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downloaded {
    /// The complete file is now at the destination; `bytes` came over the network this time.
    Complete {
        /// The response ETag (may be empty if the server sent none).
        etag: String,
        /// Body bytes received by this request.
        bytes: u64,
    },
    /// 304: the resource has not changed since `If-None-Match`.
    NotModified,
}

/// A request to make.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Where from.
    pub url: &'a HttpUrl,
    /// Where to: the completed file; partial data lives beside it.
    pub destination: &'a Path,
    /// The ETag of the last complete download, for `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: &'a str,
    /// Extra request headers (a `TransferURL`'s `RequestHeaders`).
    pub headers: &'a [(String, String)],
}

fn part_paths(destination: &Path) -> (PathBuf, PathBuf) {
    let mut part = destination.as_os_str().to_owned();
    part.push(".part");
    let mut etag = part.clone();
    etag.push(".etag");
    (PathBuf::from(part), PathBuf::from(etag))
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::File {
        path: path.to_owned(),
        source,
    }
}

/// Runs one resumable download over `stream` (already connected to the URL's host).
pub async fn download<S>(stream: S, req: &Request<'_>) -> Result<Downloaded, DownloadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (part, part_etag) = part_paths(req.destination);
    let partial_size = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
    let partial_etag = if partial_size > 0 {
        match tokio::fs::read_to_string(&part_etag).await {
            Ok(e) if !e.is_empty() => Some(e),
            // A partial without its ETag cannot be resumed safely: start over.
            _ => {
                let _ = tokio::fs::remove_file(&part).await;
                let _ = tokio::fs::remove_file(&part_etag).await;
                None
            }
        }
    } else {
        None
    };
    let partial_size = if partial_etag.is_some() {
        partial_size
    } else {
        0
    };

    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
        req.url.path,
        req.url.host_header(),
        req.user_agent
    );
    head.push_str(&format!("Range: bytes={partial_size}-\r\n"));
    match (&partial_etag, req.if_none_match) {
        (Some(etag), _) => head.push_str(&format!("If-Match: {etag}\r\n")),
        (None, Some(etag)) if !etag.is_empty() => {
            head.push_str(&format!("If-None-Match: {etag}\r\n"));
        }
        _ => {}
    }
    for (name, value) in req.headers {
        if name.contains(['\r', '\n', ':']) || value.contains(['\r', '\n']) {
            return Err(DownloadError::Url(
                "a request header contains CR, LF or ':'".into(),
            ));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");

    let mut stream = stream;
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;

    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(DownloadError::Protocol("response head over 64 KiB".into()));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(DownloadError::Protocol(
                "connection closed before the response head".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let response = parse_head(&buf[..head_end])?;
    let body_start = buf[head_end..].to_vec();

    match response.status {
        200 | 206 => {}
        304 => {
            let _ = tokio::fs::remove_file(&part).await;
            let _ = tokio::fs::remove_file(&part_etag).await;
            return Ok(Downloaded::NotModified);
        }
        412 => {
            let _ = tokio::fs::remove_file(&part).await;
            let _ = tokio::fs::remove_file(&part_etag).await;
            return Err(DownloadError::Changed);
        }
        416 if partial_size > 0 => {
            // The partial already holds every byte: complete it.
            tokio::fs::rename(&part, req.destination)
                .await
                .map_err(file_err(req.destination))?;
            let _ = tokio::fs::remove_file(&part_etag).await;
            return Ok(Downloaded::Complete {
                etag: partial_etag.unwrap_or_default(),
                bytes: 0,
            });
        }
        other => return Err(DownloadError::Status(other)),
    }
    if response.status == 206 {
        // The range must start where the partial ends, or appending would corrupt it.
        let start = response
            .content_range_start
            .ok_or_else(|| DownloadError::Protocol("206 without Content-Range".into()))?;
        if start != partial_size {
            let _ = tokio::fs::remove_file(&part).await;
            let _ = tokio::fs::remove_file(&part_etag).await;
            return Err(DownloadError::Protocol(format!(
                "206 starts at {start}, expected {partial_size}"
            )));
        }
    }
    // Plain blocking file writes (small, local): every byte received is in the file the moment
    // the write returns, so a timeout or kill between reads leaves an exact partial, and no
    // background write can land after the next attempt has measured the partial's size.
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true);
    if response.status == 206 {
        options.append(true);
    } else {
        // 200: the server sent the whole resource (it ignored or could not honour Range).
        options.truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&part).map_err(file_err(&part))?;
    tokio::fs::write(&part_etag, response.etag.as_bytes())
        .await
        .map_err(file_err(&part_etag))?;

    let bytes = copy_body(&mut stream, body_start, &response, &mut file).await?;
    file.sync_all().map_err(file_err(&part))?;
    drop(file);
    tokio::fs::rename(&part, req.destination)
        .await
        .map_err(file_err(req.destination))?;
    let _ = tokio::fs::remove_file(&part_etag).await;
    Ok(Downloaded::Complete {
        etag: response.etag,
        bytes,
    })
}

struct Head {
    status: u16,
    etag: String,
    content_length: Option<u64>,
    chunked: bool,
    content_range_start: Option<u64>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> Result<Head, DownloadError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| DownloadError::Protocol("response head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(DownloadError::Protocol(format!(
            "status line {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| DownloadError::Protocol(format!("status line {status_line:?}")))?;
    let mut h = Head {
        status,
        etag: String::new(),
        content_length: None,
        chunked: false,
        content_range_start: None,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(DownloadError::Protocol(format!("header line {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "etag" => value.clone_into(&mut h.etag),
            "content-length" => {
                h.content_length =
                    Some(value.parse().map_err(|_| {
                        DownloadError::Protocol(format!("Content-Length {value:?}"))
                    })?);
            }
            "transfer-encoding" => {
                h.chunked = value
                    .to_ascii_lowercase()
                    .split(',')
                    .any(|t| t.trim() == "chunked");
            }
            "content-range" => {
                // bytes START-END/TOTAL
                h.content_range_start = value
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse().ok());
            }
            _ => {}
        }
    }
    Ok(h)
}

async fn copy_body<S, W>(
    stream: &mut S,
    already: Vec<u8>,
    head: &Head,
    out: &mut W,
) -> Result<u64, DownloadError>
where
    S: AsyncRead + Unpin,
    W: std::io::Write,
{
    let mut reader = Prefixed {
        prefix: already,
        pos: 0,
    };
    if head.chunked {
        let mut total = 0u64;
        loop {
            let line = reader.line(stream).await?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| DownloadError::Protocol(format!("chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailers end with an empty line; a server that closes instead is fine too.
                while let Ok(l) = reader.line(stream).await {
                    if l.is_empty() {
                        break;
                    }
                }
                return Ok(total);
            }
            reader.copy_exact(stream, size, out).await?;
            total += size;
            if !reader.line(stream).await?.is_empty() {
                return Err(DownloadError::Protocol("chunk not followed by CRLF".into()));
            }
        }
    } else if let Some(len) = head.content_length {
        reader.copy_exact(stream, len, out).await?;
        Ok(len)
    } else {
        reader.copy_to_end(stream, out).await
    }
}

/// The bytes read past the head, then the stream.
struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
}

impl Prefixed {
    async fn fill<S: AsyncRead + Unpin>(&mut self, stream: &mut S) -> Result<bool, DownloadError> {
        if self.pos < self.prefix.len() {
            return Ok(true);
        }
        self.prefix.resize(64 * 1024, 0);
        let n = stream.read(&mut self.prefix).await?;
        self.prefix.truncate(n);
        self.pos = 0;
        Ok(n > 0)
    }

    async fn line<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<String, DownloadError> {
        let mut line = Vec::new();
        loop {
            if !self.fill(stream).await? {
                return Err(DownloadError::Protocol(
                    "connection closed inside a chunk header".into(),
                ));
            }
            let avail = &self.prefix[self.pos..];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&avail[..i]);
                self.pos += i + 1;
                break;
            }
            line.extend_from_slice(avail);
            self.pos = self.prefix.len();
            if line.len() > 4096 {
                return Err(DownloadError::Protocol("chunk header too long".into()));
            }
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8(line)
            .map_err(|_| DownloadError::Protocol("chunk header not UTF-8".into()))
    }

    async fn copy_exact<S, W>(
        &mut self,
        stream: &mut S,
        mut n: u64,
        out: &mut W,
    ) -> Result<(), DownloadError>
    where
        S: AsyncRead + Unpin,
        W: std::io::Write,
    {
        while n > 0 {
            if !self.fill(stream).await? {
                return Err(DownloadError::Protocol(format!(
                    "connection closed with {n} body bytes missing"
                )));
            }
            let avail = &self.prefix[self.pos..];
            let take = usize::try_from(n).unwrap_or(usize::MAX).min(avail.len());
            out.write_all(&avail[..take])?;
            self.pos += take;
            n -= u64::try_from(take).unwrap_or(0);
        }
        Ok(())
    }

    async fn copy_to_end<S, W>(&mut self, stream: &mut S, out: &mut W) -> Result<u64, DownloadError>
    where
        S: AsyncRead + Unpin,
        W: std::io::Write,
    {
        let mut total = 0u64;
        while self.fill(stream).await? {
            let avail = &self.prefix[self.pos..];
            out.write_all(avail)?;
            total += u64::try_from(avail.len()).unwrap_or(0);
            self.pos = self.prefix.len();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/lists/server_list_compressed?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/lists/server_list_compressed?x=1")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");
        let u = HttpUrl::parse("http://[::1]/a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.host_header()),
            ("::1", 80, "[::1]".to_owned())
        );
        assert_eq!(HttpUrl::parse("http://example.org").unwrap().path, "/");
        let u = HttpUrl::parse("https://example.org/l").unwrap();
        assert_eq!(
            (u.tls, u.port, u.host_header()),
            (true, 443, "example.org".to_owned())
        );
        assert_eq!(
            HttpUrl::parse("https://h:8443/").unwrap().host_header(),
            "h:8443"
        );
        for bad in ["ftp://x/", "http://:80/", "http://x:port/", "http://u:p@x/"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redact_url("http://h:1/secret/path"),
            "http://h:1/[redacted]"
        );
    }

    #[test]
    fn heads() {
        let h = parse_head(b"HTTP/1.1 206 Partial Content\r\nETag: \"5f-1\"\r\nContent-Range: bytes 100-199/200\r\nContent-Length: 100\r\n\r\n").unwrap();
        assert_eq!(
            (
                h.status,
                h.etag.as_str(),
                h.content_length,
                h.content_range_start
            ),
            (206, "\"5f-1\"", Some(100), Some(100))
        );
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
    }

    async fn serve(
        response: &'static [u8],
    ) -> (tokio::io::DuplexStream, tokio::task::JoinHandle<Vec<u8>>) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(async move {
            let mut req = vec![0u8; 4096];
            let n = server.read(&mut req).await.unwrap_or(0);
            req.truncate(n);
            let _ = server.write_all(response).await;
            let _ = server.shutdown().await;
            req
        });
        (client, task)
    }

    #[tokio::test]
    async fn chunked_body_and_headers_sent() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let url = HttpUrl::parse("http://h:81/p").unwrap();
        let (s, task) = serve(b"HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").await;
        let hdrs = vec![("X-Test".to_owned(), "1".to_owned())];
        let r = download(
            s,
            &Request {
                url: &url,
                destination: &dest,
                if_none_match: Some("\"e0\""),
                user_agent: "ua",
                headers: &hdrs,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            r,
            Downloaded::Complete {
                etag: "\"e1\"".into(),
                bytes: 11
            }
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
        let req = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(
            req.starts_with("GET /p HTTP/1.1\r\nHost: h:81\r\n"),
            "{req}"
        );
        assert!(
            req.contains("Range: bytes=0-\r\n")
                && req.contains("If-None-Match: \"e0\"\r\n")
                && req.contains("X-Test: 1\r\n"),
            "{req}"
        );
    }

    #[tokio::test]
    async fn truncated_body_keeps_the_partial_for_resuming() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let url = HttpUrl::parse("http://h/p").unwrap();
        let (s, _t) =
            serve(b"HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 10\r\n\r\n12345").await;
        let req = Request {
            url: &url,
            destination: &dest,
            if_none_match: None,
            user_agent: "ua",
            headers: &[],
        };
        assert!(download(s, &req).await.is_err());
        assert_eq!(std::fs::read(dir.path().join("f.part")).unwrap(), b"12345");
        assert_eq!(
            std::fs::read(dir.path().join("f.part.etag")).unwrap(),
            b"\"e1\""
        );
        assert!(!dest.exists());
        // Resumed: Range from 5 with If-Match; a 206 from elsewhere is refused.
        let (s, task) = serve(b"HTTP/1.1 206 Partial\r\nETag: \"e1\"\r\nContent-Range: bytes 5-9/10\r\nContent-Length: 5\r\n\r\n67890").await;
        let r = download(s, &req).await.unwrap();
        assert_eq!(
            r,
            Downloaded::Complete {
                etag: "\"e1\"".into(),
                bytes: 5
            }
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"1234567890");
        let sent = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(
            sent.contains("Range: bytes=5-\r\n") && sent.contains("If-Match: \"e1\"\r\n"),
            "{sent}"
        );
        assert!(!dir.path().join("f.part").exists() && !dir.path().join("f.part.etag").exists());
    }

    #[tokio::test]
    async fn status_412_drops_the_partial_and_304_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        std::fs::write(dir.path().join("f.part"), b"123").unwrap();
        std::fs::write(dir.path().join("f.part.etag"), b"\"old\"").unwrap();
        let url = HttpUrl::parse("http://h/p").unwrap();
        let req = Request {
            url: &url,
            destination: &dest,
            if_none_match: None,
            user_agent: "ua",
            headers: &[],
        };
        let (s, _t) = serve(b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n").await;
        assert!(matches!(
            download(s, &req).await,
            Err(DownloadError::Changed)
        ));
        assert!(!dir.path().join("f.part").exists());
        let (s, _t) = serve(b"HTTP/1.1 304 Not Modified\r\n\r\n").await;
        assert_eq!(download(s, &req).await.unwrap(), Downloaded::NotModified);
        let (s, _t) = serve(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n").await;
        assert!(matches!(
            download(s, &req).await,
            Err(DownloadError::Status(500))
        ));
    }
}
