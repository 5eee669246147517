//! HTTP/1.x for the local HTTP proxy, sans-IO: request and response heads, the proxy's
//! rewriting, and message framing (so that a kept-alive client connection can carry the next
//! request after a response).
//!
//! Bodies are relayed as the sender framed them (a chunked body stays chunked); only the heads
//! are rewritten: origin-form request line, `Host` from the absolute URI, hop-by-hop headers
//! (and those named in `Connection`) removed, `Connection: close` towards the origin.

use std::fmt::Write as _;

/// The largest request or response head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The longest chunk-size or trailer line accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// Headers that concern one connection only, never forwarded (besides those named in
/// `Connection`). `Transfer-Encoding` is not among them: bodies are relayed unchanged.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "upgrade",
];

/// A malformed or unsupported message; the proxy answers `400 Bad Request` (or `502` when it
/// came from the origin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The head is longer than [`MAX_HEAD_BYTES`].
    #[error("HTTP head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// Bytes that are not HTTP/1.x.
    #[error("malformed HTTP: {0}")]
    Malformed(&'static str),
    /// Valid HTTP the proxy does not handle.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

/// A header list in order, names as sent.
pub type Headers = Vec<(String, String)>;

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (absolute URI, authority or path).
    pub target: String,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The headers.
    pub headers: Headers,
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The minor version.
    pub minor: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers.
    pub headers: Headers,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Fixed(u64),
    /// `Transfer-Encoding: chunked`; see [`ChunkedScanner`].
    Chunked,
    /// Until the sender closes (responses only).
    UntilClose,
}

/// What the client asked the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyRequest {
    /// `CONNECT host:port`: answer `200`, then relay bytes.
    Connect {
        /// Host (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// An absolute-URI request to forward to `host:port`.
    Forward(Forward),
}

/// An absolute-URI request, rewritten for the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Host to dial (IPv6 without brackets).
    pub host: String,
    /// Port to dial.
    pub port: u16,
    /// The head to send to the origin.
    pub head: Vec<u8>,
    /// The request body's framing.
    pub body: Body,
    /// Whether the client connection may carry another request after the response.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` (stripped towards the origin): the proxy answers
    /// `100 Continue` itself.
    pub expect_continue: bool,
    /// A `HEAD` request (its response has no body).
    pub is_head: bool,
}

/// The offset just past the blank line that ends a head, if the head is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf
        .get(i..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Splits a complete head into its lines (CRLF or LF), without the final blank line.
fn head_lines(head: &[u8]) -> Result<Vec<&str>, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    Ok(text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .collect())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

fn parse_headers(lines: &[&str]) -> Result<Headers, HttpError> {
    lines
        .iter()
        .map(|line| {
            if line.starts_with([' ', '\t']) {
                return Err(HttpError::Malformed("folded header line"));
            }
            let (name, value) = line
                .split_once(':')
                .ok_or(HttpError::Malformed("header line without a colon"))?;
            if !is_token(name) {
                return Err(HttpError::Malformed("bad header name"));
            }
            if value.bytes().any(|c| c == b'\r' || c == 0) {
                return Err(HttpError::Malformed("bad header value"));
            }
            Ok((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()))
        })
        .collect()
}

fn parse_version(v: &str) -> Result<u8, HttpError> {
    match v {
        "HTTP/1.1" => Ok(1),
        "HTTP/1.0" => Ok(0),
        _ => Err(HttpError::Unsupported(
            "HTTP version other than 1.0 and 1.1",
        )),
    }
}

fn check_size(buf: &[u8]) -> Result<(), HttpError> {
    if buf.len() > MAX_HEAD_BYTES {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(())
    }
}

/// Parses a request head: `Ok(None)` if incomplete (read more), else the head and its length.
pub fn parse_request_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    // Empty lines before a request are ignored (RFC 9112 §2.2), e.g. a stray CRLF after a
    // previous request's body.
    let skip = buf
        .iter()
        .take_while(|&&c| c == b'\r' || c == b'\n')
        .count();
    if skip > MAX_HEAD_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    let buf = buf.get(skip..).unwrap_or_default();
    let Some(end) = head_end(buf) else {
        return check_size(buf).map(|()| None);
    };
    check_size(buf.get(..end).unwrap_or_default())?;
    let lines = head_lines(buf.get(..end).unwrap_or_default())?;
    let (first, rest) = lines
        .split_first()
        .ok_or(HttpError::Malformed("empty request"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed("bad request line"));
    };
    if !is_token(method) || target.is_empty() || target.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(HttpError::Malformed("bad request line"));
    }
    let minor = parse_version(version)?;
    Ok(Some((
        RequestHead {
            method: method.to_owned(),
            target: target.to_owned(),
            minor,
            headers: parse_headers(rest)?,
        },
        skip + end,
    )))
}

/// Parses a response head: `Ok(None)` if incomplete, else the head and its length.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let Some(end) = head_end(buf) else {
        return check_size(buf).map(|()| None);
    };
    check_size(buf.get(..end).unwrap_or_default())?;
    let lines = head_lines(buf.get(..end).unwrap_or_default())?;
    let (first, rest) = lines
        .split_first()
        .ok_or(HttpError::Malformed("empty response"))?;
    let mut parts = first.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed("bad status line"));
    };
    let minor = parse_version(version)?;
    if status.len() != 3 || !status.bytes().all(|c| c.is_ascii_digit()) {
        return Err(HttpError::Malformed("bad status code"));
    }
    let status: u16 = status
        .parse()
        .map_err(|_| HttpError::Malformed("bad status code"))?;
    Ok(Some((
        ResponseHead {
            minor,
            status,
            reason: parts.next().unwrap_or("").to_owned(),
            headers: parse_headers(rest)?,
        },
        end,
    )))
}

/// The comma-separated tokens of every `name` header, lowercased.
fn header_tokens(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Removes hop-by-hop headers and those named in `Connection`.
fn strip_hop_by_hop(headers: &Headers) -> Headers {
    let named = header_tokens(headers, "connection");
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            !HOP_BY_HOP.contains(&n.as_str()) && !named.contains(&n)
        })
        .cloned()
        .collect()
}

/// The framing of a message body from its headers (RFC 9112 §6.3); `is_response` allows
/// close-delimited bodies.
fn body_from_headers(headers: &Headers, is_response: bool) -> Result<Body, HttpError> {
    let te = header_tokens(headers, "transfer-encoding");
    if let Some(last) = te.last() {
        if last == "chunked" {
            return Ok(Body::Chunked);
        }
        return if is_response {
            Ok(Body::UntilClose)
        } else {
            Err(HttpError::Unsupported(
                "request transfer coding other than chunked",
            ))
        };
    }
    let mut length: Option<u64> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
                return Err(HttpError::Malformed("bad Content-Length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| HttpError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Body::None,
        Some(n) => Body::Fixed(n),
        None if is_response => Body::UntilClose,
        None => Body::None,
    })
}

/// Splits `host[:port]` (IPv6 in brackets) into a host to dial (no brackets) and a port.
pub fn split_authority(
    authority: &str,
    default_port: Option<u16>,
) -> Result<(String, u16), HttpError> {
    let bad = HttpError::Malformed("bad host:port");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: checked by parsing it.
        let (host, after) = rest.split_once(']').ok_or(bad.clone())?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad);
        }
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(bad.clone())?)),
        }
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        // A name or an IPv4 literal: no colon (IPv6 needs brackets), no delimiters.
        if host.is_empty()
            || host
                .bytes()
                .any(|c| c <= b' ' || b"/?#@[]\\:".contains(&c) || c == 0x7f)
        {
            return Err(bad);
        }
        (host, port)
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => {
            p.parse::<u16>().map_err(|_| bad.clone())?
        }
        Some(_) => return Err(bad),
        None => default_port.ok_or(bad)?,
    };
    Ok((host.to_owned(), port))
}

/// Decides what to do with a client's request and, for a forwarded one, builds the head to
/// send to the origin.
pub fn classify(head: &RequestHead) -> Result<ProxyRequest, HttpError> {
    if head.method == "CONNECT" {
        let (host, port) = split_authority(&head.target, None)?;
        return Ok(ProxyRequest::Connect { host, port });
    }
    let lower = head.target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() != Some("http://") {
        return Err(if head.target.starts_with('/') {
            HttpError::Unsupported("origin-form request to a proxy (URL proxy modes)")
        } else {
            HttpError::Unsupported("only http:// absolute URIs are proxied")
        });
    }
    let rest = head.target.get(7..).unwrap_or_default();
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    // Drop any userinfo.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = split_authority(authority, Some(80))?;
    let path = path.split('#').next().unwrap_or_default();
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };

    let body = body_from_headers(&head.headers, false)?;
    let conn = header_tokens(&head.headers, "connection");
    let proxy_conn = header_tokens(&head.headers, "proxy-connection");
    let wants_close = conn.iter().chain(&proxy_conn).any(|t| t == "close");
    let keep_alive = head.minor >= 1 && !wants_close;
    let expect_continue = header_tokens(&head.headers, "expect")
        .iter()
        .any(|t| t == "100-continue");

    let mut out = String::with_capacity(256);
    let _ = write!(out, "{} {} HTTP/1.{}\r\n", head.method, path, head.minor);
    let _ = write!(out, "Host: {authority}\r\n");
    for (n, v) in strip_hop_by_hop(&head.headers) {
        if n.eq_ignore_ascii_case("host") || (expect_continue && n.eq_ignore_ascii_case("expect")) {
            continue;
        }
        let _ = write!(out, "{n}: {v}\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok(ProxyRequest::Forward(Forward {
        host,
        port,
        head: out.into_bytes(),
        body,
        keep_alive,
        expect_continue,
        is_head: head.method == "HEAD",
    }))
}

/// The framing of a response's body (RFC 9112 §6.3).
pub fn response_body(head: &ResponseHead, request_was_head: bool) -> Result<Body, HttpError> {
    if request_was_head || head.status < 200 || head.status == 204 || head.status == 304 {
        return Ok(Body::None);
    }
    body_from_headers(&head.headers, true)
}

/// The response head to send to the client: hop-by-hop headers removed, and
/// `Connection: close` when the client connection will close after the body.
pub fn rewrite_response_head(head: &ResponseHead, close: bool) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        "HTTP/1.{} {} {}\r\n",
        head.minor, head.status, head.reason
    );
    for (n, v) in strip_hop_by_hop(&head.headers) {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A short plain-text error response that closes the connection.
pub fn error_response(status: u16, reason: &str, text: &str) -> Vec<u8> {
    let body = format!("{text}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line; `digits` seen, `size` so far, `in_ext` after `;`.
    Size {
        size: u64,
        digits: usize,
        in_ext: bool,
        len: usize,
    },
    /// In chunk data.
    Data(u64),
    /// After chunk data: expecting CRLF (`seen_cr`).
    DataEnd { seen_cr: bool },
    /// In a trailer line (`len` bytes so far); an empty one ends the body.
    Trailer { len: usize },
    /// Done.
    Done,
}

/// Finds the end of a chunked body as it streams past, without changing it.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: Chunk,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a chunked body.
    pub fn new() -> ChunkedScanner {
        ChunkedScanner {
            state: Chunk::Size {
                size: 0,
                digits: 0,
                in_ext: false,
                len: 0,
            },
        }
    }

    /// Whether the whole body has been seen.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Scans `data`; returns how many bytes belong to the body (all of `data` unless the
    /// body ends inside it).
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, HttpError> {
        let mut i = 0;
        while i < data.len() {
            let Some(&c) = data.get(i) else { break };
            self.state = match self.state {
                Chunk::Done => return Ok(i),
                Chunk::Data(left) => {
                    let avail = u64::try_from(data.len() - i).unwrap_or(u64::MAX);
                    let take = left.min(avail);
                    // `take <= avail`, which came from a usize.
                    i += usize::try_from(take).unwrap_or(0);
                    if left == take {
                        Chunk::DataEnd { seen_cr: false }
                    } else {
                        Chunk::Data(left - take)
                    }
                }
                Chunk::Size {
                    size,
                    digits,
                    in_ext,
                    len,
                } => {
                    if len > MAX_CHUNK_LINE {
                        return Err(HttpError::Malformed("chunk-size line too long"));
                    }
                    let next = if c == b'\n' {
                        if digits == 0 {
                            return Err(HttpError::Malformed("missing chunk size"));
                        }
                        if size == 0 {
                            Chunk::Trailer { len: 0 }
                        } else {
                            Chunk::Data(size)
                        }
                    } else if in_ext || c == b';' {
                        Chunk::Size {
                            size,
                            digits,
                            in_ext: true,
                            len: len + 1,
                        }
                    } else if c == b'\r' || c == b' ' || c == b'\t' {
                        Chunk::Size {
                            size,
                            digits,
                            in_ext,
                            len: len + 1,
                        }
                    } else {
                        let d = char::from(c)
                            .to_digit(16)
                            .ok_or(HttpError::Malformed("bad chunk size"))?;
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(HttpError::Malformed("chunk size overflow"))?;
                        Chunk::Size {
                            size,
                            digits: digits + 1,
                            in_ext,
                            len: len + 1,
                        }
                    };
                    i += 1;
                    next
                }
                Chunk::DataEnd { seen_cr } => {
                    i += 1;
                    match (c, seen_cr) {
                        (b'\r', false) => Chunk::DataEnd { seen_cr: true },
                        (b'\n', _) => Chunk::Size {
                            size: 0,
                            digits: 0,
                            in_ext: false,
                            len: 0,
                        },
                        _ => return Err(HttpError::Malformed("missing CRLF after chunk")),
                    }
                }
                Chunk::Trailer { len } => {
                    i += 1;
                    if c == b'\n' {
                        if len == 0 {
                            Chunk::Done
                        } else {
                            Chunk::Trailer { len: 0 }
                        }
                    } else if c == b'\r' && len == 0 {
                        Chunk::Trailer { len: 0 }
                    } else if len >= MAX_CHUNK_LINE {
                        return Err(HttpError::Malformed("trailer line too long"));
                    } else {
                        Chunk::Trailer { len: len + 1 }
                    }
                }
            };
            if self.state == Chunk::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    fn req(text: &str) -> RequestHead {
        let (h, n) = parse_request_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(n, text.len());
        h
    }

    #[test]
    fn connect_target() {
        let h = req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(
            classify(&h).unwrap(),
            ProxyRequest::Connect {
                host: "example.com".into(),
                port: 443
            }
        );
        let h = req("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n");
        assert_eq!(
            classify(&h).unwrap(),
            ProxyRequest::Connect {
                host: "2001:db8::1".into(),
                port: 8443
            }
        );
        for bad in [
            "CONNECT example.com HTTP/1.1\r\n\r\n",
            "CONNECT a:99999 HTTP/1.1\r\n\r\n",
            "CONNECT :80 HTTP/1.1\r\n\r\n",
        ] {
            assert!(classify(&req(bad)).is_err(), "{bad}");
        }
        assert_eq!(split_authority("h:8", None), Ok(("h".into(), 8)));
        assert_eq!(split_authority("h", Some(80)), Ok(("h".into(), 80)));
        assert_eq!(split_authority("[::1]", Some(80)), Ok(("::1".into(), 80)));
        for bad in [
            "a:/b:80",
            "::1:80",
            "[::1]x",
            "[nope]:1",
            "h:",
            "h:+1",
            "a\\b:1",
            "[::1]:65536",
        ] {
            assert!(split_authority(bad, Some(80)).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_uri_is_rewritten() {
        let h = req(concat!(
            "POST http://user@Example.com:8080/a/b?c=d#frag HTTP/1.1\r\n",
            "Host: wrong\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "Proxy-Authorization: Basic eA==\r\n",
            "Connection: X-Secret, keep-alive\r\n",
            "X-Secret: 1\r\n",
            "Keep-Alive: 300\r\n",
            "TE: trailers\r\n",
            "Upgrade: h2c\r\n",
            "Transfer-Encoding: chunked\r\n",
            "Expect: 100-continue\r\n",
            "Accept: */*\r\n",
            "\r\n"
        ));
        let ProxyRequest::Forward(f) = classify(&h).unwrap() else {
            panic!()
        };
        assert_eq!((f.host.as_str(), f.port), ("Example.com", 8080));
        assert_eq!(
            String::from_utf8(f.head).unwrap(),
            "POST /a/b?c=d HTTP/1.1\r\nHost: Example.com:8080\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(f.body, Body::Chunked);
        assert!(f.keep_alive && f.expect_continue && !f.is_head);

        let h = req("GET http://h HTTP/1.0\nContent-Length: 3\n\n");
        let ProxyRequest::Forward(f) = classify(&h).unwrap() else {
            panic!()
        };
        assert_eq!(
            (f.host.as_str(), f.port, f.body, f.keep_alive),
            ("h", 80, Body::Fixed(3), false)
        );
        assert!(f.head.starts_with(b"GET / HTTP/1.0\r\nHost: h\r\n"));
    }

    #[test]
    fn bad_requests() {
        assert_eq!(parse_request_head(b"GET http://x/ HTTP/1.1\r\n"), Ok(None));
        assert_eq!(parse_request_head(b"\r\n\r\n"), Ok(None));
        let (h, n) = parse_request_head(b"\r\nGET http://x/ HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.method.as_str(), n), ("GET", 28));
        assert!(parse_request_head(b"GET  http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_request_head(b"GET http://x/ HTTP/2.0\r\n\r\n").is_err());
        assert!(parse_request_head(b"GET http://x/ HTTP/1.1\r\n folded\r\n\r\n").is_err());
        assert!(
            parse_request_head(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").is_err()
        );
        assert_eq!(
            parse_request_head(&vec![b'a'; MAX_HEAD_BYTES + 1]),
            Err(HttpError::HeadTooLarge)
        );
        assert!(classify(&req("GET /relative HTTP/1.1\r\n\r\n")).is_err());
        assert!(classify(&req("GET https://x/ HTTP/1.1\r\n\r\n")).is_err());
        assert!(
            classify(&req(
                "POST http://x/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ))
            .is_err()
        );
        assert!(
            classify(&req(
                "POST http://x/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"
            ))
            .is_err()
        );
    }

    #[test]
    fn response_framing() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\nhello";
        let (h, n) = parse_response_head(text).unwrap().unwrap();
        assert_eq!(n, text.len() - 5);
        assert_eq!(response_body(&h, false), Ok(Body::Fixed(5)));
        assert_eq!(response_body(&h, true), Ok(Body::None));
        assert_eq!(
            rewrite_response_head(&h, true),
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let (h, _) = parse_response_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(response_body(&h, false), Ok(Body::None));
        let (h, _) = parse_response_head(b"HTTP/1.0 200 OK\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(response_body(&h, false), Ok(Body::UntilClose));
        let (h, _) =
            parse_response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(response_body(&h, false), Ok(Body::Chunked));
        assert!(parse_response_head(b"HTTP/1.1 20 OK\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_scanner_finds_the_end() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        let mut s = ChunkedScanner::new();
        assert_eq!(s.feed(body), Ok(body.len() - 4));
        assert!(s.is_done());
        // Byte by byte gives the same answer.
        let mut s = ChunkedScanner::new();
        let mut total = 0;
        for b in body.iter() {
            total += s.feed(std::slice::from_ref(b)).unwrap();
            if s.is_done() {
                break;
            }
        }
        assert_eq!(total, body.len() - 4);
        assert!(ChunkedScanner::new().feed(b"zz\r\n").is_err());
        assert!(
            ChunkedScanner::new()
                .feed(b"ffffffffffffffffff\r\n")
                .is_err()
        );
        assert!(ChunkedScanner::new().feed(b"1\r\nab").is_err());
    }

    fn chunked(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut v = Vec::new();
        for p in parts.iter().filter(|p| !p.is_empty()) {
            v.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            v.extend_from_slice(p);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
        v
    }

    proptest! {
        #[test]
        fn parsers_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some((h, n))) = parse_request_head(&input) {
                prop_assert!(n <= input.len());
                let _ = classify(&h);
            }
            if let Ok(Some((h, _))) = parse_response_head(&input) {
                let _ = response_body(&h, false);
                let _ = rewrite_response_head(&h, false);
            }
            let mut s = ChunkedScanner::new();
            if let Ok(n) = s.feed(&input) { prop_assert!(n <= input.len()); }
            let text = String::from_utf8_lossy(&input);
            let _ = split_authority(&text, Some(80));
        }

        #[test]
        fn request_round_trip(
            method in "[A-Z]{1,8}",
            host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,5})?",
            port in any::<u16>(),
            path in "(/[a-zA-Z0-9._~-]{0,10}){0,4}(\\?[a-z=&]{0,10})?",
            headers in proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,30}"), 0..8),
        ) {
            prop_assume!(method != "CONNECT");
            let mut text = format!("{method} http://{host}:{port}{path} HTTP/1.1\r\n");
            for (n, v) in &headers {
                text.push_str(&format!("{n}: {v}\r\n"));
            }
            text.push_str("\r\n");
            let (head, n) = parse_request_head(text.as_bytes()).unwrap().unwrap();
            prop_assert_eq!(n, text.len());
            prop_assert_eq!(head.headers.len(), headers.len());
            if let Ok(ProxyRequest::Forward(f)) = classify(&head) {
                prop_assert_eq!(&f.host, &host);
                prop_assert_eq!(f.port, port);
                // The rewritten head parses again, in origin form, with our Host.
                let (again, m) = parse_request_head(&f.head).unwrap().unwrap();
                prop_assert_eq!(m, f.head.len());
                let want_path = if path.starts_with('/') { path.clone() } else { format!("/{path}") };
                prop_assert_eq!(again.target, want_path);
                let host_header = format!("{host}:{port}");
                prop_assert!(again.headers.iter().any(|(n, v)| n == "Host" && *v == host_header));
                prop_assert!(!again.headers.iter().any(|(n, _)| HOP_BY_HOP.contains(&n.to_ascii_lowercase().as_str()) && !n.eq_ignore_ascii_case("connection")));
            }
        }

        #[test]
        fn chunked_round_trip(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6), split in any::<prop::sample::Index>()) {
            let body = chunked(&parts);
            let cut = split.index(body.len() + 1);
            let mut s = ChunkedScanner::new();
            let a = s.feed(&body[..cut]).unwrap();
            prop_assert_eq!(a, cut);
            let b = s.feed(&[&body[cut..], b"extra".as_slice()].concat()).unwrap();
            prop_assert_eq!(a + b, body.len());
            prop_assert!(s.is_done());
        }
    }
}
