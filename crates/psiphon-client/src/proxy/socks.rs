//! SOCKS4, SOCKS4a and SOCKS5 (RFC 1928, RFC 1929) server side, sans-IO.
//!
//! Feed the bytes received so far to [`SocksHandshake::advance`]; it says how many it used and
//! what to do next: wait for more, write a reply and go on, connect, or refuse. CONNECT is the
//! only command; username/password credentials are accepted and ignored, as tunnel-core does.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most bytes a SOCKS4 user ID or SOCKS4a host name may take before we give up.
const MAX_SOCKS4_FIELD: usize = 255;

/// SOCKS5 reply codes (RFC 1928 §6).
pub mod reply5 {
    /// Succeeded.
    pub const SUCCEEDED: u8 = 0x00;
    /// General SOCKS server failure.
    pub const GENERAL_FAILURE: u8 = 0x01;
    /// Connection refused.
    pub const CONNECTION_REFUSED: u8 = 0x05;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// SOCKS4 reply codes.
pub mod reply4 {
    /// Request granted.
    pub const GRANTED: u8 = 0x5a;
    /// Request rejected or failed.
    pub const REJECTED: u8 = 0x5b;
}

/// The host part of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A literal address.
    Ip(IpAddr),
    /// A domain name, resolved by the server.
    Domain(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Domain(d) => f.write_str(d),
        }
    }
}

/// Which SOCKS dialect a request came in; replies use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// SOCKS4 (IPv4 address).
    V4,
    /// SOCKS4a (domain name after the user ID).
    V4a,
    /// SOCKS5.
    V5,
}

/// A parsed CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The dialect.
    pub version: Version,
    /// Where to connect.
    pub host: Host,
    /// The port.
    pub port: u16,
}

/// Why a client's SOCKS bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocksError {
    /// The first byte is not 4 or 5.
    #[error("unsupported SOCKS version {0}")]
    Version(u8),
    /// A command other than CONNECT.
    #[error("unsupported SOCKS command {0}")]
    Command(u8),
    /// A SOCKS5 address type other than IPv4, domain, IPv6.
    #[error("unsupported SOCKS5 address type {0}")]
    AddressType(u8),
    /// The client offered neither "no authentication" nor username/password.
    #[error("no acceptable SOCKS5 authentication method")]
    NoAcceptableMethod,
    /// Malformed bytes.
    #[error("malformed SOCKS request: {0}")]
    Malformed(&'static str),
}

/// What the server should do after [`SocksHandshake::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read more bytes, then call `advance` again with all unconsumed bytes.
    NeedMore,
    /// Write these bytes, then go on calling `advance`.
    Write(Vec<u8>),
    /// The handshake is done: dial, then write [`reply`] for the outcome.
    Connect(Request),
    /// Write these bytes (possibly empty) and close: the request was refused.
    Refuse(Vec<u8>, SocksError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Auth,
    Request5,
    Done,
}

/// The server side of one SOCKS handshake.
#[derive(Debug, Clone)]
pub struct SocksHandshake {
    state: State,
}

impl Default for SocksHandshake {
    fn default() -> Self {
        SocksHandshake::new()
    }
}

impl SocksHandshake {
    /// A handshake waiting for the client's first bytes.
    pub fn new() -> SocksHandshake {
        SocksHandshake {
            state: State::Start,
        }
    }

    /// Consumes a prefix of `buf` (the bytes received and not yet consumed) and returns how
    /// many bytes were used and what to do. Never panics, whatever the input.
    pub fn advance(&mut self, buf: &[u8]) -> (usize, Action) {
        match self.state {
            State::Start => match buf.first() {
                None => (0, Action::NeedMore),
                Some(4) => match parse_socks4(buf) {
                    Ok(None) => (0, Action::NeedMore),
                    Ok(Some((req, n))) => {
                        self.state = State::Done;
                        (n, Action::Connect(req))
                    }
                    Err(e) => {
                        self.state = State::Done;
                        (0, Action::Refuse(reply4_bytes(reply4::REJECTED), e))
                    }
                },
                Some(5) => match parse_greeting(buf) {
                    Ok(None) => (0, Action::NeedMore),
                    Ok(Some((methods, n))) => {
                        if methods.contains(&0x00) {
                            self.state = State::Request5;
                            (n, Action::Write(vec![5, 0x00]))
                        } else if methods.contains(&0x02) {
                            self.state = State::Auth;
                            (n, Action::Write(vec![5, 0x02]))
                        } else {
                            self.state = State::Done;
                            (
                                n,
                                Action::Refuse(vec![5, 0xff], SocksError::NoAcceptableMethod),
                            )
                        }
                    }
                    Err(e) => {
                        self.state = State::Done;
                        (0, Action::Refuse(Vec::new(), e))
                    }
                },
                Some(&v) => {
                    self.state = State::Done;
                    (0, Action::Refuse(Vec::new(), SocksError::Version(v)))
                }
            },
            State::Auth => match parse_user_pass(buf) {
                Ok(None) => (0, Action::NeedMore),
                Ok(Some(n)) => {
                    self.state = State::Request5;
                    (n, Action::Write(vec![1, 0]))
                }
                Err(e) => {
                    self.state = State::Done;
                    (0, Action::Refuse(vec![1, 1], e))
                }
            },
            State::Request5 => match parse_socks5_request(buf) {
                Ok(None) => (0, Action::NeedMore),
                Ok(Some((req, n))) => {
                    self.state = State::Done;
                    (n, Action::Connect(req))
                }
                Err(e) => {
                    self.state = State::Done;
                    let code = match e {
                        SocksError::Command(_) => reply5::COMMAND_NOT_SUPPORTED,
                        SocksError::AddressType(_) => reply5::ADDRESS_TYPE_NOT_SUPPORTED,
                        _ => reply5::GENERAL_FAILURE,
                    };
                    (0, Action::Refuse(reply5_bytes(code), e))
                }
            },
            State::Done => (
                0,
                Action::Refuse(
                    Vec::new(),
                    SocksError::Malformed("handshake already finished"),
                ),
            ),
        }
    }
}

/// The reply to a CONNECT request: success, or failure (with `refused` when the server or
/// channel refused the connection). The bound address is always `0.0.0.0:0`.
pub fn reply(version: Version, success: bool, refused: bool) -> Vec<u8> {
    match version {
        Version::V4 | Version::V4a => reply4_bytes(if success {
            reply4::GRANTED
        } else {
            reply4::REJECTED
        }),
        Version::V5 => reply5_bytes(if success {
            reply5::SUCCEEDED
        } else if refused {
            reply5::CONNECTION_REFUSED
        } else {
            reply5::GENERAL_FAILURE
        }),
    }
}

fn reply4_bytes(code: u8) -> Vec<u8> {
    vec![0, code, 0, 0, 0, 0, 0, 0]
}

fn reply5_bytes(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// Finds a NUL-terminated field at `buf[start..]`; `Ok(None)` if not yet complete.
fn nul_field(buf: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, SocksError> {
    let rest = buf.get(start..).unwrap_or_default();
    match rest.iter().position(|&b| b == 0) {
        Some(i) if i <= MAX_SOCKS4_FIELD => {
            Ok(Some((rest.get(..i).unwrap_or_default(), start + i + 1)))
        }
        Some(_) => Err(SocksError::Malformed("SOCKS4 field too long")),
        None if rest.len() > MAX_SOCKS4_FIELD => {
            Err(SocksError::Malformed("SOCKS4 field too long"))
        }
        None => Ok(None),
    }
}

/// Parses a SOCKS4 or SOCKS4a request: `Ok(None)` if incomplete.
pub fn parse_socks4(buf: &[u8]) -> Result<Option<(Request, usize)>, SocksError> {
    let Some(head) = buf.get(..8) else {
        return Ok(None);
    };
    let [ver, cmd, p0, p1, a, b, c, d] =
        <[u8; 8]>::try_from(head).map_err(|_| SocksError::Malformed("short SOCKS4 header"))?;
    if ver != 4 {
        return Err(SocksError::Version(ver));
    }
    if cmd != 1 {
        return Err(SocksError::Command(cmd));
    }
    let port = u16::from_be_bytes([p0, p1]);
    let Some((_user, after_user)) = nul_field(buf, 8)? else {
        return Ok(None);
    };
    if a == 0 && b == 0 && c == 0 && d != 0 {
        let Some((name, end)) = nul_field(buf, after_user)? else {
            return Ok(None);
        };
        let name = std::str::from_utf8(name)
            .map_err(|_| SocksError::Malformed("SOCKS4a host name is not UTF-8"))?;
        if name.is_empty() {
            return Err(SocksError::Malformed("empty SOCKS4a host name"));
        }
        let host = match name.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Domain(name.to_owned()),
        };
        return Ok(Some((
            Request {
                version: Version::V4a,
                host,
                port,
            },
            end,
        )));
    }
    Ok(Some((
        Request {
            version: Version::V4,
            host: Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d))),
            port,
        },
        after_user,
    )))
}

/// Parses a SOCKS5 greeting (version, methods): `Ok(None)` if incomplete.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, SocksError> {
    let (Some(&ver), Some(&n)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if ver != 5 {
        return Err(SocksError::Version(ver));
    }
    let end = 2 + usize::from(n);
    match buf.get(2..end) {
        Some(methods) => Ok(Some((methods.to_vec(), end))),
        None => Ok(None),
    }
}

/// Parses an RFC 1929 username/password request (the credentials are ignored).
fn parse_user_pass(buf: &[u8]) -> Result<Option<usize>, SocksError> {
    let (Some(&ver), Some(&ulen)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if ver != 1 {
        return Err(SocksError::Malformed("bad username/password version"));
    }
    let plen_at = 2 + usize::from(ulen);
    let Some(&plen) = buf.get(plen_at) else {
        return Ok(None);
    };
    let end = plen_at + 1 + usize::from(plen);
    Ok((buf.len() >= end).then_some(end))
}

/// Parses a SOCKS5 request (after the method negotiation): `Ok(None)` if incomplete.
pub fn parse_socks5_request(buf: &[u8]) -> Result<Option<(Request, usize)>, SocksError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let [ver, cmd, _rsv, atyp] =
        <[u8; 4]>::try_from(head).map_err(|_| SocksError::Malformed("short SOCKS5 header"))?;
    if ver != 5 {
        return Err(SocksError::Version(ver));
    }
    if cmd != 1 {
        return Err(SocksError::Command(cmd));
    }
    let (host, addr_end) = match atyp {
        1 => {
            let Some(a) = buf.get(4..8) else {
                return Ok(None);
            };
            let a = <[u8; 4]>::try_from(a).map_err(|_| SocksError::Malformed("short IPv4"))?;
            (Host::Ip(IpAddr::V4(Ipv4Addr::from(a))), 8)
        }
        3 => {
            let Some(&len) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + usize::from(len);
            let Some(name) = buf.get(5..end) else {
                return Ok(None);
            };
            let name = std::str::from_utf8(name)
                .map_err(|_| SocksError::Malformed("SOCKS5 host name is not UTF-8"))?;
            if name.is_empty() {
                return Err(SocksError::Malformed("empty SOCKS5 host name"));
            }
            (Host::Domain(name.to_owned()), end)
        }
        4 => {
            let Some(a) = buf.get(4..20) else {
                return Ok(None);
            };
            let a = <[u8; 16]>::try_from(a).map_err(|_| SocksError::Malformed("short IPv6"))?;
            (Host::Ip(IpAddr::V6(Ipv6Addr::from(a))), 20)
        }
        other => return Err(SocksError::AddressType(other)),
    };
    let Some(p) = buf.get(addr_end..addr_end + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes(
        <[u8; 2]>::try_from(p).map_err(|_| SocksError::Malformed("short port"))?,
    );
    Ok(Some((
        Request {
            version: Version::V5,
            host,
            port,
        },
        addr_end + 2,
    )))
}

/// Encodes `req` as a client would send it (after negotiation, for SOCKS5); `None` if it
/// cannot be expressed in its dialect (a domain in SOCKS4, a name too long). Used by tests and
/// by clients of this crate.
pub fn encode_request(req: &Request) -> Option<Vec<u8>> {
    let port = req.port.to_be_bytes();
    match (req.version, &req.host) {
        (Version::V4, Host::Ip(IpAddr::V4(ip))) => {
            // 0.0.0.x (x != 0) means SOCKS4a.
            if matches!(ip.octets(), [0, 0, 0, d] if d != 0) {
                return None;
            }
            let mut v = vec![4, 1, port[0], port[1]];
            v.extend_from_slice(&ip.octets());
            v.push(0);
            Some(v)
        }
        (Version::V4a, host) => {
            let name = host.to_string();
            if name.is_empty() || name.len() > MAX_SOCKS4_FIELD || name.contains('\0') {
                return None;
            }
            let mut v = vec![4, 1, port[0], port[1], 0, 0, 0, 1, 0];
            v.extend_from_slice(name.as_bytes());
            v.push(0);
            Some(v)
        }
        (Version::V5, host) => {
            let mut v = vec![5, 1, 0];
            match host {
                Host::Ip(IpAddr::V4(ip)) => {
                    v.push(1);
                    v.extend_from_slice(&ip.octets());
                }
                Host::Ip(IpAddr::V6(ip)) => {
                    v.push(4);
                    v.extend_from_slice(&ip.octets());
                }
                Host::Domain(d) => {
                    let len = u8::try_from(d.len()).ok().filter(|&l| l > 0)?;
                    v.push(3);
                    v.push(len);
                    v.extend_from_slice(d.as_bytes());
                }
            }
            v.extend_from_slice(&port);
            Some(v)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    fn run(input: &[u8]) -> Vec<Action> {
        let mut hs = SocksHandshake::new();
        let mut buf = input.to_vec();
        let mut out = Vec::new();
        loop {
            let (n, a) = hs.advance(&buf);
            buf.drain(..n);
            let stop = !matches!(a, Action::Write(_));
            out.push(a);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn socks5_no_auth_domain() {
        let mut input = vec![5, 2, 0, 2];
        input.extend_from_slice(&[5, 1, 0, 3, 11]);
        input.extend_from_slice(b"example.com");
        input.extend_from_slice(&[0x01, 0xbb]);
        let actions = run(&input);
        assert_eq!(
            actions,
            vec![
                Action::Write(vec![5, 0]),
                Action::Connect(Request {
                    version: Version::V5,
                    host: Host::Domain("example.com".into()),
                    port: 443
                })
            ]
        );
        assert_eq!(
            reply(Version::V5, true, false),
            [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(reply(Version::V5, false, true)[1], 5);
        assert_eq!(reply(Version::V5, false, false)[1], 1);
    }

    #[test]
    fn socks5_user_pass_is_accepted_and_ignored() {
        let mut input = vec![5, 1, 2, 1, 1, b'u', 2, b'p', b'w'];
        input.extend_from_slice(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
        let actions = run(&input);
        assert_eq!(actions[0], Action::Write(vec![5, 2]));
        assert_eq!(actions[1], Action::Write(vec![1, 0]));
        assert!(matches!(&actions[2], Action::Connect(r) if r.port == 80));
    }

    #[test]
    fn socks5_bind_and_udp_are_not_supported() {
        for cmd in [2, 3] {
            let actions = run(&[5, 1, 0, 5, cmd, 0, 1, 1, 2, 3, 4, 0, 80]);
            assert_eq!(
                actions[1],
                Action::Refuse(vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0], SocksError::Command(cmd))
            );
        }
        let actions = run(&[5, 1, 0, 5, 1, 0, 9]);
        assert!(matches!(&actions[1], Action::Refuse(r, SocksError::AddressType(9)) if r[1] == 8));
        let actions = run(&[5, 1, 0x80]);
        assert_eq!(
            actions[0],
            Action::Refuse(vec![5, 0xff], SocksError::NoAcceptableMethod)
        );
    }

    #[test]
    fn socks4_and_4a() {
        let actions = run(&[4, 1, 0, 80, 10, 1, 2, 3, b'u', 0]);
        assert_eq!(
            actions,
            vec![Action::Connect(Request {
                version: Version::V4,
                host: Host::Ip("10.1.2.3".parse().unwrap()),
                port: 80
            })]
        );
        let mut input = vec![4, 1, 1, 0, 0, 0, 0, 9, 0];
        input.extend_from_slice(b"host.test\0");
        assert_eq!(
            run(&input),
            vec![Action::Connect(Request {
                version: Version::V4a,
                host: Host::Domain("host.test".into()),
                port: 256
            })]
        );
        assert_eq!(
            reply(Version::V4a, true, false),
            [0, 0x5a, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(reply(Version::V4, false, true), [0, 0x5b, 0, 0, 0, 0, 0, 0]);
        // Unterminated user ID that grows too long.
        assert!(matches!(
            run(&[vec![4, 1, 0, 80, 1, 2, 3, 4], vec![b'x'; 300]].concat())[0],
            Action::Refuse(..)
        ));
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        let mut input = vec![5, 1, 0];
        input.extend_from_slice(&[5, 1, 0, 4]);
        input.extend_from_slice(&[0; 16]);
        input.extend_from_slice(&[0, 22]);
        // Every strict prefix of the request part needs more bytes.
        let mut hs = SocksHandshake::new();
        assert_eq!(hs.advance(&input[..2]), (0, Action::NeedMore));
        assert_eq!(hs.advance(&input[..3]).0, 3);
        let rest = &input[3..];
        for cut in 0..rest.len() {
            assert_eq!(hs.clone().advance(&rest[..cut]), (0, Action::NeedMore));
        }
        assert!(matches!(hs.advance(rest), (22, Action::Connect(_))));
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let host = prop_oneof![
            any::<[u8; 4]>().prop_map(|a| Host::Ip(IpAddr::V4(a.into()))),
            any::<[u8; 16]>().prop_map(|a| Host::Ip(IpAddr::V6(a.into()))),
            "[a-z0-9.-]{1,60}".prop_map(Host::Domain),
        ];
        (
            prop_oneof![Just(Version::V4), Just(Version::V4a), Just(Version::V5)],
            host,
            any::<u16>(),
        )
            .prop_map(|(version, host, port)| Request {
                version,
                host,
                port,
            })
    }

    proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut hs = SocksHandshake::new();
            let mut buf = input;
            for _ in 0..4 {
                let (n, a) = hs.advance(&buf);
                prop_assert!(n <= buf.len());
                buf.drain(..n);
                if !matches!(a, Action::Write(_)) { break; }
            }
        }

        #[test]
        fn round_trip(req in arb_request()) {
            let Some(bytes) = encode_request(&req) else { return Ok(()) };
            let parsed = match req.version {
                Version::V5 => parse_socks5_request(&bytes),
                _ => parse_socks4(&bytes),
            };
            let (got, n) = parsed.unwrap().unwrap();
            prop_assert_eq!(n, bytes.len());
            // A SOCKS4a name that is an IP literal comes back as an address.
            let want = match (&req.version, &req.host) {
                (Version::V4a, Host::Domain(d)) => match d.parse::<IpAddr>() {
                    Ok(ip) => Request { host: Host::Ip(ip), ..req.clone() },
                    Err(_) => req.clone(),
                },
                (Version::V4a, Host::Ip(ip)) => Request { host: Host::Ip(*ip), ..req.clone() },
                _ => req.clone(),
            };
            prop_assert_eq!(got, want);
        }
    }
}
