//! HTTP `CONNECT` (RFC 9110 §9.3.6) client side, sans-IO.
//!
//! The request carries `Host`, the configured custom headers and, when the URL has
//! credentials, `Proxy-Authorization: Basic` right away. tunnel-core instead waits for a 407
//! and then answers its challenge (Basic, Digest or NTLM); sending Basic up front saves a round
//! trip and a reconnect, and a proxy that wants Digest or NTLM still answers 407, which is
//! reported as such.
//!
//! The reply is read up to the blank line after its headers; any bytes after it already came
//! from the destination and are handed back to the caller.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::handshake::{Handshake, HandshakeError, Progress, snippet};
use super::url::Credentials;
use crate::ConfigError;

/// The longest reply head we wait for before calling the proxy broken.
pub(crate) const MAX_REPLY_HEAD: usize = 16 * 1024;

/// Header names Go's request writer never takes from the header map, so neither do we: a
/// CONNECT has no body.
const IGNORED_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "trailer"];

/// Checks one `CustomHeaders` entry: a token name, a value without line breaks.
pub(crate) fn validate_header(name: &str, value: &str) -> Result<(), ConfigError> {
    let header_err = |reason| ConfigError::Header {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(header_err("empty header name"));
    }
    if !name.bytes().all(is_token_byte) {
        return Err(header_err("the name is not an HTTP token"));
    }
    if value
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(header_err(
            "the value contains a line break or control byte",
        ));
    }
    Ok(())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The CONNECT request for `host:port`. `headers` must have passed [`validate_header`].
pub(crate) fn build_request(
    host: &str,
    port: u16,
    headers: &[(String, String)],
    credentials: Option<&Credentials>,
) -> Result<Zeroizing<Vec<u8>>, HandshakeError> {
    if host.is_empty() {
        return Err(HandshakeError::InvalidTarget("empty host"));
    }
    if host
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'/' || b == b'@')
    {
        return Err(HandshakeError::InvalidTarget(
            "the host contains a space, '/', '@' or a control character",
        ));
    }
    let target = crate::target_string(host, port);
    let custom_host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.as_str());
    let mut req = Zeroizing::new(Vec::with_capacity(256));
    push_line(&mut req, &["CONNECT ", &target, " HTTP/1.1"]);
    push_line(&mut req, &["Host: ", custom_host.unwrap_or(&target)]);
    let mut user_agent_written = false;
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower == "host" || IGNORED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        if lower == "proxy-authorization" && credentials.is_some() {
            continue;
        }
        if lower == "user-agent" {
            if user_agent_written {
                continue;
            }
            user_agent_written = true;
        }
        push_line(&mut req, &[name, ": ", value]);
    }
    if let Some(c) = credentials {
        let mut plain = Zeroizing::new(String::with_capacity(
            c.username().len() + c.password().len() + 1,
        ));
        plain.push_str(c.username());
        plain.push(':');
        plain.push_str(c.password());
        let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*plain));
        push_line(&mut req, &["Proxy-Authorization: Basic ", &encoded]);
    }
    req.extend_from_slice(b"\r\n");
    Ok(req)
}

fn push_line(out: &mut Vec<u8>, parts: &[&str]) {
    for p in parts {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The client side of one CONNECT exchange.
pub(crate) struct HttpConnect {
    request: Option<Zeroizing<Vec<u8>>>,
    sent_credentials: bool,
}

impl HttpConnect {
    /// A CONNECT to `host:port`; the request is built now, so a bad host fails before dialing.
    pub(crate) fn new(
        host: &str,
        port: u16,
        headers: &[(String, String)],
        credentials: Option<&Credentials>,
    ) -> Result<HttpConnect, HandshakeError> {
        Ok(HttpConnect {
            request: Some(build_request(host, port, headers, credentials)?),
            sent_credentials: credentials.is_some(),
        })
    }
}

impl std::fmt::Debug for HttpConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnect").finish_non_exhaustive()
    }
}

impl Handshake for HttpConnect {
    fn start(&mut self) -> Vec<u8> {
        self.request
            .take()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }

    fn receive(&mut self, input: &[u8]) -> Result<Progress, HandshakeError> {
        const PREFIX: &[u8] = b"HTTP/";
        let n = input.len().min(PREFIX.len());
        if input.get(..n) != PREFIX.get(..n) {
            return Err(HandshakeError::Malformed(format!(
                "not an HTTP response: \"{}\"",
                snippet(input)
            )));
        }
        let Some(end) = head_end(input) else {
            if input.len() >= MAX_REPLY_HEAD {
                return Err(HandshakeError::Malformed(format!(
                    "no end of the reply headers in {MAX_REPLY_HEAD} bytes"
                )));
            }
            return Ok(Progress::NeedMore {
                max: MAX_REPLY_HEAD.saturating_sub(input.len()),
            });
        };
        let head = input.get(..end).unwrap_or_default();
        let reply = parse_head(head)?;
        classify(&reply, self.sent_credentials)?;
        Ok(Progress::Done { consumed: end })
    }

    fn step(&self) -> &'static str {
        "waiting for the CONNECT reply"
    }

    fn target_requested(&self) -> bool {
        true
    }
}

/// The index just past the blank line ending the head (`\r\n\r\n`, or bare `\n\n` as lenient
/// parsers such as Go's accept).
fn head_end(input: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = input.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match input.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// The parts of a reply head we use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ReplyHead {
    pub(crate) code: u16,
    /// The reason phrase, escaped for display.
    pub(crate) reason: String,
    /// The schemes named in `Proxy-Authenticate`, in order.
    pub(crate) auth_schemes: Vec<String>,
}

pub(crate) fn parse_head(head: &[u8]) -> Result<ReplyHead, HandshakeError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HandshakeError::Malformed("the reply head is not UTF-8".to_owned()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status = lines.next().unwrap_or_default();
    let malformed = || {
        HandshakeError::Malformed(format!(
            "bad status line \"{}\"",
            snippet(status.as_bytes())
        ))
    };
    let (version, rest) = status.split_once(' ').ok_or_else(malformed)?;
    let minor = version.strip_prefix("HTTP/1.").ok_or_else(malformed)?;
    if minor.len() != 1 || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let code: u16 = code.parse().map_err(|_| malformed())?;
    if !(100..=599).contains(&code) {
        return Err(malformed());
    }
    let mut auth_schemes = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HandshakeError::Malformed(format!(
                "bad header line \"{}\"",
                snippet(line.as_bytes())
            )));
        };
        if name.eq_ignore_ascii_case("proxy-authenticate")
            && let Some(scheme) = value.split_whitespace().next()
        {
            let scheme = scheme.trim_end_matches(',');
            auth_schemes.push(snippet(scheme.as_bytes()));
        }
    }
    Ok(ReplyHead {
        code,
        reason: snippet(reason.as_bytes()),
        auth_schemes,
    })
}

/// Success for 2xx; otherwise who failed, from the status code.
pub(crate) fn classify(reply: &ReplyHead, sent_credentials: bool) -> Result<(), HandshakeError> {
    let status = format!("{} {}", reply.code, reply.reason)
        .trim_end()
        .to_owned();
    let offers_basic = reply
        .auth_schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case("basic"));
    match reply.code {
        200..=299 => Ok(()),
        407 if !reply.auth_schemes.is_empty() && !offers_basic => {
            Err(HandshakeError::Auth(format!(
                "the proxy wants {} authentication; only Basic is supported ({status})",
                reply.auth_schemes.join(", ")
            )))
        }
        407 if sent_credentials => Err(HandshakeError::Auth(format!(
            "the proxy refused the user name and password ({status})"
        ))),
        407 => Err(HandshakeError::Auth(format!(
            "the proxy requires a user name and password and UpstreamProxyURL has none ({status})"
        ))),
        // tinyproxy answers a CONNECT with wrong Basic credentials with 401
        401 => Err(HandshakeError::Auth(format!(
            "the proxy refused the credentials ({status})"
        ))),
        // a proxy whose rules forbid this destination (for instance its port)
        403 => Err(HandshakeError::TargetFailed(status)),
        // the proxy cannot do CONNECT at all
        501 | 505 => Err(HandshakeError::ProxyRefused(status)),
        500..=599 => Err(HandshakeError::TargetFailed(status)),
        _ => Err(HandshakeError::ProxyRefused(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::handshake::drive;
    use super::*;
    use crate::UpstreamProxyUrl;
    use proptest::prelude::*;

    fn creds(url: &str) -> Credentials {
        UpstreamProxyUrl::parse(url)
            .unwrap()
            .credentials()
            .unwrap()
            .clone()
    }

    fn req(host: &str, port: u16, headers: &[(&str, &str)], c: Option<&Credentials>) -> String {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        String::from_utf8(build_request(host, port, &headers, c).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            req("example.com", 443, &[], None),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            req("2001:db8::1", 22, &[], None),
            "CONNECT [2001:db8::1]:22 HTTP/1.1\r\nHost: [2001:db8::1]:22\r\n\r\n"
        );
        // "Aladdin:open sesame" is RFC 7617's example
        let c = creds("http://Aladdin:open%20sesame@p:1");
        assert_eq!(
            req("10.0.0.1", 22, &[("X-A", "1"), ("X-A", "2")], Some(&c)),
            "CONNECT 10.0.0.1:22 HTTP/1.1\r\nHost: 10.0.0.1:22\r\nX-A: 1\r\nX-A: 2\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn custom_headers_follow_go_request_writing() {
        let c = creds("http://u:p@p:1");
        assert_eq!(
            req(
                "h",
                1,
                &[
                    ("host", "front.example"),
                    ("User-Agent", "UA1"),
                    ("User-Agent", "UA2"),
                    ("Content-Length", "5"),
                    ("Proxy-Authorization", "Bearer other"),
                ],
                Some(&c),
            ),
            "CONNECT h:1 HTTP/1.1\r\nHost: front.example\r\nUser-Agent: UA1\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
        // without URL credentials a configured Proxy-Authorization is sent as is
        assert_eq!(
            req("h", 1, &[("Proxy-Authorization", "Bearer t")], None),
            "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\nProxy-Authorization: Bearer t\r\n\r\n"
        );
    }

    #[test]
    fn bad_targets_and_headers_are_refused() {
        for host in ["", "a b", "a\r\nX: y", "a/b", "u@h"] {
            assert!(matches!(
                build_request(host, 1, &[], None),
                Err(HandshakeError::InvalidTarget(_))
            ));
        }
        assert!(validate_header("X-Ok", "v\tw").is_ok());
        for (n, v) in [
            ("", "v"),
            ("X Bad", "v"),
            ("X:", "v"),
            ("X", "a\r\nY: b"),
            ("X", "\0"),
        ] {
            let e = validate_header(n, v).unwrap_err().to_string();
            assert!(e.starts_with("CustomHeaders: header"), "{e}");
        }
    }

    fn run(reply: &[u8], with_creds: bool) -> Result<usize, HandshakeError> {
        let c = creds("http://u:p@p:1");
        let mut core = HttpConnect::new("h", 1, &[], with_creds.then_some(&c)).unwrap();
        for chunk in [1, 7, reply.len().max(1)] {
            let mut again = HttpConnect::new("h", 1, &[], with_creds.then_some(&c)).unwrap();
            let (written, result) = drive(&mut again, reply, chunk);
            assert!(written.starts_with(b"CONNECT h:1 HTTP/1.1\r\n"));
            assert_eq!(result, drive(&mut core, reply, reply.len().max(1)).1);
            core = HttpConnect::new("h", 1, &[], with_creds.then_some(&c)).unwrap();
        }
        drive(&mut core, reply, 3).1
    }

    #[test]
    fn success_replies_and_what_follows_them() {
        let head = b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n";
        assert_eq!(run(head, false), Ok(head.len()));
        let mut with_data = head.to_vec();
        with_data.extend_from_slice(b"SSH-2.0-banner\r\n");
        // the handshake stops at the blank line; the banner is the destination's
        assert_eq!(run(&with_data, false), Ok(head.len()));
        assert_eq!(run(b"HTTP/1.0 200 OK\n\n", false), Ok(17));
        assert_eq!(run(b"HTTP/1.1 204\r\n\r\n", false), Ok(16));
    }

    #[test]
    fn status_codes_say_who_failed() {
        let r = |s: &str, c| run(format!("{s}\r\nX: y\r\n\r\n").as_bytes(), c);
        assert!(
            matches!(r("HTTP/1.1 502 Bad Gateway", false), Err(HandshakeError::TargetFailed(m)) if m == "502 Bad Gateway")
        );
        assert!(matches!(
            r("HTTP/1.1 500 Unable to connect", true),
            Err(HandshakeError::TargetFailed(_))
        ));
        assert!(matches!(
            r("HTTP/1.1 504 Gateway Timeout", true),
            Err(HandshakeError::TargetFailed(_))
        ));
        assert!(matches!(
            r("HTTP/1.1 403 Forbidden", true),
            Err(HandshakeError::TargetFailed(_))
        ));
        assert!(
            matches!(r("HTTP/1.1 405 Method Not Allowed", true), Err(HandshakeError::ProxyRefused(m)) if m == "405 Method Not Allowed")
        );
        assert!(matches!(
            r("HTTP/1.1 501 Not Implemented", true),
            Err(HandshakeError::ProxyRefused(_))
        ));
        assert!(matches!(
            r("HTTP/1.1 301 Moved", true),
            Err(HandshakeError::ProxyRefused(_))
        ));
        assert!(matches!(
            r("HTTP/1.0 401 Unauthorized", true),
            Err(HandshakeError::Auth(_))
        ));
    }

    #[test]
    fn proxy_authentication_required() {
        let basic = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n";
        let Err(HandshakeError::Auth(m)) = run(basic, false) else {
            panic!()
        };
        assert!(m.contains("UpstreamProxyURL has none"), "{m}");
        let Err(HandshakeError::Auth(m)) = run(basic, true) else {
            panic!()
        };
        assert!(m.contains("refused the user name and password"), "{m}");
        let digest = b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                       Proxy-Authenticate: Digest realm=\"x\", nonce=\"n\"\r\n\
                       proxy-authenticate: NTLM\r\n\r\n";
        let Err(HandshakeError::Auth(m)) = run(digest, true) else {
            panic!()
        };
        assert!(m.contains("wants Digest, NTLM authentication"), "{m}");
    }

    #[test]
    fn malformed_replies() {
        let bad = |reply: &[u8], expect: &str| {
            let mut core = HttpConnect::new("h", 1, &[], None).unwrap();
            let Err(HandshakeError::Malformed(m)) = drive(&mut core, reply, reply.len()).1 else {
                panic!("{reply:?} accepted")
            };
            assert!(m.contains(expect), "{m}");
            // byte by byte it fails too (sooner, with less to quote, for a wrong first byte)
            let mut core = HttpConnect::new("h", 1, &[], None).unwrap();
            assert!(matches!(
                drive(&mut core, reply, 1).1,
                Err(HandshakeError::Malformed(_))
            ));
        };
        // a SOCKS5 proxy answering, found on the first byte without waiting for more
        bad(b"\x05\xff", "not an HTTP response: \"\\x05\\xff\"");
        bad(b"SSH-2.0-x\r\n\r\n", "not an HTTP response");
        bad(b"HTTP/2 200\r\n\r\n", "bad status line");
        bad(b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line");
        bad(b"HTTP/1.1 abc OK\r\n\r\n", "bad status line");
        bad(b"HTTP/1.1\r\n\r\n", "bad status line");
        bad(b"HTTP/1.1 099 x\r\n\r\n", "bad status line");
        bad(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "bad header line");
        bad(b"HTTP/1.1 200 \xff\r\n\r\n", "not UTF-8");
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.resize(MAX_REPLY_HEAD + 10, b'a');
        bad(&huge, "no end of the reply headers");
    }

    proptest! {
        #[test]
        fn any_reply_is_handled_without_panicking(reply in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut core = HttpConnect::new("h", 1, &[], None).unwrap();
            let _ = drive(&mut core, &reply, 5);
        }

        #[test]
        fn any_status_round_trips(code in 100u16..600, reason in "[A-Za-z ]{0,20}") {
            let head = format!("HTTP/1.1 {code} {reason}\r\n\r\n");
            let parsed = parse_head(head.as_bytes()).unwrap();
            prop_assert_eq!(parsed.code, code);
            prop_assert_eq!(parsed.reason, reason);
        }
    }
}
