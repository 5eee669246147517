//! SOCKS5 client side (RFC 1928), with user/password authentication (RFC 1929), sans-IO.
//!
//! We offer "no authentication", plus "user/password" when the URL has credentials, as
//! `golang.org/x/net/proxy` does. Names go to the proxy as names (address type 3), addresses
//! as IPv4 (1) or IPv6 (4). Every read asks for exactly the bytes still missing, so nothing
//! the destination sends is ever read by the handshake.

use std::net::IpAddr;

use zeroize::Zeroizing;

use super::handshake::{Handshake, HandshakeError, Progress};
use super::url::Credentials;

const VERSION: u8 = 5;
const METHOD_NONE: u8 = 0x00;
const METHOD_USER_PASS: u8 = 0x02;
const METHOD_NO_ACCEPTABLE: u8 = 0xff;
const USER_PASS_VERSION: u8 = 1;
const CMD_CONNECT: u8 = 1;
const ATYP_IPV4: u8 = 1;
const ATYP_NAME: u8 = 3;
const ATYP_IPV6: u8 = 4;

/// The greeting: the methods we offer.
pub(crate) fn greeting(with_credentials: bool) -> Vec<u8> {
    if with_credentials {
        vec![VERSION, 2, METHOD_NONE, METHOD_USER_PASS]
    } else {
        vec![VERSION, 1, METHOD_NONE]
    }
}

/// The RFC 1929 request. URL parsing already limited both fields to 255 bytes.
pub(crate) fn auth_request(c: &Credentials) -> Result<Zeroizing<Vec<u8>>, HandshakeError> {
    let too_long = || HandshakeError::Auth("user name or password longer than 255 bytes".into());
    let user_len = u8::try_from(c.username().len()).map_err(|_| too_long())?;
    let pass_len = u8::try_from(c.password().len()).map_err(|_| too_long())?;
    let mut req = Zeroizing::new(Vec::with_capacity(
        3 + c.username().len() + c.password().len(),
    ));
    req.push(USER_PASS_VERSION);
    req.push(user_len);
    req.extend_from_slice(c.username().as_bytes());
    req.push(pass_len);
    req.extend_from_slice(c.password().as_bytes());
    Ok(req)
}

/// The CONNECT request for `host:port`.
pub(crate) fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, HandshakeError> {
    let mut req = vec![VERSION, CMD_CONNECT, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            req.push(ATYP_IPV4);
            req.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            req.push(ATYP_IPV6);
            req.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).ok().filter(|&l| l > 0).ok_or(
                HandshakeError::InvalidTarget("the name must be 1 to 255 bytes"),
            )?;
            req.push(ATYP_NAME);
            req.push(len);
            req.extend_from_slice(host.as_bytes());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    Ok(req)
}

/// What the reply code of a CONNECT means for us.
fn reply_error(code: u8) -> HandshakeError {
    let text = |s: &str| format!("{s} ({code})");
    match code {
        1 => HandshakeError::TargetFailed(text("general SOCKS server failure")),
        2 => HandshakeError::TargetFailed(text("connection not allowed by ruleset")),
        3 => HandshakeError::TargetFailed(text("network unreachable")),
        4 => HandshakeError::TargetFailed(text("host unreachable")),
        5 => HandshakeError::TargetFailed(text("connection refused")),
        6 => HandshakeError::TargetFailed(text("TTL expired")),
        7 => HandshakeError::ProxyRefused(text("command not supported")),
        8 => HandshakeError::ProxyRefused(text("address type not supported")),
        _ => HandshakeError::Malformed(format!("unknown reply code {code:#04x}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Method,
    Auth,
    Reply,
}

/// The client side of one SOCKS5 CONNECT.
pub(crate) struct Socks5 {
    state: State,
    credentials: Option<Credentials>,
    connect: Vec<u8>,
}

impl std::fmt::Debug for Socks5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Socks5 {
    /// A CONNECT to `host:port`; the request is built now, so a bad host fails before dialing.
    pub(crate) fn new(
        host: &str,
        port: u16,
        credentials: Option<&Credentials>,
    ) -> Result<Socks5, HandshakeError> {
        Ok(Socks5 {
            state: State::Method,
            credentials: credentials.cloned(),
            connect: connect_request(host, port)?,
        })
    }

    fn send_connect(&mut self, consumed: usize) -> Progress {
        self.state = State::Reply;
        Progress::Send {
            consumed,
            bytes: std::mem::take(&mut self.connect),
        }
    }
}

/// `Some(bytes)` when `input` holds at least `n` bytes, else how many more to read.
fn need(input: &[u8], n: usize) -> Result<&[u8], Progress> {
    input.get(..n).ok_or_else(|| Progress::NeedMore {
        max: n.saturating_sub(input.len()),
    })
}

impl Handshake for Socks5 {
    fn start(&mut self) -> Vec<u8> {
        greeting(self.credentials.is_some())
    }

    fn receive(&mut self, input: &[u8]) -> Result<Progress, HandshakeError> {
        match self.state {
            State::Method => {
                let [version, method] = match need(input, 2) {
                    Ok(&[v, m]) => [v, m],
                    Ok(_) => return Err(HandshakeError::Malformed("short method reply".into())),
                    Err(more) => return Ok(more),
                };
                if version != VERSION {
                    return Err(HandshakeError::Malformed(format!(
                        "version {version:#04x} in the method selection, expected 5"
                    )));
                }
                match (method, &self.credentials) {
                    (METHOD_NONE, _) => Ok(self.send_connect(2)),
                    (METHOD_USER_PASS, Some(c)) => {
                        let mut req = auth_request(c)?;
                        self.state = State::Auth;
                        Ok(Progress::Send {
                            consumed: 2,
                            bytes: std::mem::take(&mut *req),
                        })
                    }
                    (METHOD_NO_ACCEPTABLE, Some(_)) => Err(HandshakeError::Auth(
                        "the proxy accepts neither no authentication nor user/password".into(),
                    )),
                    (METHOD_NO_ACCEPTABLE, None) => Err(HandshakeError::Auth(
                        "the proxy requires authentication and UpstreamProxyURL has no user name"
                            .into(),
                    )),
                    (other, _) => Err(HandshakeError::Malformed(format!(
                        "the proxy chose method {other:#04x}, which we did not offer"
                    ))),
                }
            }
            State::Auth => {
                let [version, status] = match need(input, 2) {
                    Ok(&[v, s]) => [v, s],
                    Ok(_) => return Err(HandshakeError::Malformed("short auth reply".into())),
                    Err(more) => return Ok(more),
                };
                // RFC 1929 says version 1; some servers answer 5, which we accept too
                if version != USER_PASS_VERSION && version != VERSION {
                    return Err(HandshakeError::Malformed(format!(
                        "version {version:#04x} in the authentication reply, expected 1"
                    )));
                }
                if status != 0 {
                    return Err(HandshakeError::Auth(format!(
                        "the proxy refused the user name and password (status {status})"
                    )));
                }
                Ok(self.send_connect(2))
            }
            State::Reply => {
                let head = match need(input, 4) {
                    Ok(h) => h,
                    Err(more) => return Ok(more),
                };
                let (version, code, atyp) = match head {
                    &[v, c, _reserved, a] => (v, c, a),
                    _ => return Err(HandshakeError::Malformed("short reply".into())),
                };
                if version != VERSION {
                    return Err(HandshakeError::Malformed(format!(
                        "version {version:#04x} in the CONNECT reply, expected 5"
                    )));
                }
                if code != 0 {
                    return Err(reply_error(code));
                }
                // the bound address is read and ignored: we have no use for it
                let total = match atyp {
                    ATYP_IPV4 => 4 + 4 + 2,
                    ATYP_IPV6 => 4 + 16 + 2,
                    ATYP_NAME => match need(input, 5) {
                        Ok(&[.., len]) => 5 + usize::from(len) + 2,
                        Ok(_) => return Err(HandshakeError::Malformed("short reply".into())),
                        Err(more) => return Ok(more),
                    },
                    other => {
                        return Err(HandshakeError::Malformed(format!(
                            "unknown address type {other:#04x} in the CONNECT reply"
                        )));
                    }
                };
                match need(input, total) {
                    Ok(_) => Ok(Progress::Done { consumed: total }),
                    Err(more) => Ok(more),
                }
            }
        }
    }

    fn step(&self) -> &'static str {
        match self.state {
            State::Method => "waiting for the SOCKS5 method selection",
            State::Auth => "waiting for the SOCKS5 authentication reply",
            State::Reply => "waiting for the SOCKS5 CONNECT reply",
        }
    }

    fn target_requested(&self) -> bool {
        self.state == State::Reply
    }
}

#[cfg(test)]
mod tests {
    use super::super::handshake::drive;
    use super::*;
    use crate::UpstreamProxyUrl;
    use proptest::prelude::*;

    fn creds() -> Credentials {
        UpstreamProxyUrl::parse("socks5://alice:s3cret@p")
            .unwrap()
            .credentials()
            .unwrap()
            .clone()
    }

    #[test]
    fn request_bytes() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
        assert_eq!(
            &auth_request(&creds()).unwrap()[..],
            b"\x01\x05alice\x06s3cret"
        );
        assert_eq!(
            connect_request("10.0.0.1", 443).unwrap(),
            [5, 1, 0, 1, 10, 0, 0, 1, 1, 0xbb]
        );
        assert_eq!(
            connect_request("::1", 22).unwrap(),
            [
                5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22
            ]
        );
        assert_eq!(
            connect_request("ex.org", 80).unwrap(),
            [5, 1, 0, 3, 6, b'e', b'x', b'.', b'o', b'r', b'g', 0, 80]
        );
        assert!(connect_request("", 1).is_err());
        assert!(connect_request(&"a".repeat(256), 1).is_err());
        assert!(connect_request(&"a".repeat(255), 1).is_ok());
    }

    const OK_V4: [u8; 10] = [5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];

    fn run(with_creds: bool, reply: &[u8]) -> (Vec<u8>, Result<usize, HandshakeError>) {
        let c = creds();
        let mut outcomes = Vec::new();
        for chunk in [1, 2, 5, 64] {
            let mut core = Socks5::new("ex.org", 80, with_creds.then_some(&c)).unwrap();
            outcomes.push(drive(&mut core, reply, chunk));
        }
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
        outcomes.remove(0)
    }

    #[test]
    fn no_auth_exchange() {
        let mut reply = vec![5, 0];
        reply.extend_from_slice(&OK_V4);
        reply.extend_from_slice(b"SSH-2.0-x"); // the destination's first bytes
        let (written, result) = run(false, &reply);
        let mut expect = vec![5, 1, 0];
        expect.extend_from_slice(&connect_request("ex.org", 80).unwrap());
        assert_eq!(written, expect);
        // the method reply and the CONNECT reply, not the destination's bytes
        assert_eq!(result, Ok(2 + 10));
    }

    #[test]
    fn user_pass_exchange_and_every_bound_address_type() {
        for bound in [
            OK_V4.to_vec(),
            [&[5u8, 0, 0, 4][..], &[0; 16], &[0, 1]].concat(),
            [&[5u8, 0, 0, 3, 3][..], b"abc", &[0, 1]].concat(),
            vec![5, 0, 0, 3, 0, 0, 1],
        ] {
            let reply = [&[5u8, 2, 1, 0][..], &bound].concat();
            let (written, result) = run(true, &reply);
            let expect = [
                &[5u8, 2, 0, 2][..],
                b"\x01\x05alice\x06s3cret",
                &connect_request("ex.org", 80).unwrap(),
            ]
            .concat();
            assert_eq!(written, expect);
            assert_eq!(result, Ok(4 + bound.len()));
        }
        // the proxy may also waive authentication
        let reply = [&[5u8, 0][..], &OK_V4].concat();
        assert_eq!(run(true, &reply).1, Ok(2 + 10));
    }

    fn failure(with_creds: bool, reply: &[u8]) -> HandshakeError {
        run(with_creds, reply).1.unwrap_err()
    }

    #[test]
    fn authentication_failures() {
        assert!(
            matches!(failure(true, &[5, 2, 1, 1]), HandshakeError::Auth(m) if m.contains("refused the user name and password (status 1)"))
        );
        assert!(
            matches!(failure(false, &[5, 0xff]), HandshakeError::Auth(m) if m.contains("has no user name"))
        );
        assert!(
            matches!(failure(true, &[5, 0xff]), HandshakeError::Auth(m) if m.contains("accepts neither"))
        );
        // user/pass chosen although we offered only "none"
        assert!(
            matches!(failure(false, &[5, 2]), HandshakeError::Malformed(m) if m.contains("method 0x02, which we did not offer"))
        );
        assert!(
            matches!(failure(true, &[5, 1]), HandshakeError::Malformed(m) if m.contains("method 0x01"))
        );
        assert!(
            matches!(failure(true, &[5, 2, 9, 0]), HandshakeError::Malformed(m) if m.contains("authentication reply, expected 1"))
        );
    }

    #[test]
    fn connect_reply_codes() {
        let code = |c: u8| failure(false, &[5, 0, 5, c, 0, 1, 0, 0, 0, 0, 0, 0]);
        for c in 1..=6 {
            assert!(matches!(code(c), HandshakeError::TargetFailed(_)), "{c}");
        }
        assert!(
            matches!(code(5), HandshakeError::TargetFailed(m) if m == "connection refused (5)")
        );
        assert!(matches!(code(7), HandshakeError::ProxyRefused(_)));
        assert!(matches!(code(8), HandshakeError::ProxyRefused(_)));
        assert!(matches!(code(9), HandshakeError::Malformed(m) if m == "unknown reply code 0x09"));
    }

    #[test]
    fn malformed_replies() {
        assert!(
            matches!(failure(false, b"HTTP/1.1 400 Bad Request\r\n\r\n"), HandshakeError::Malformed(m) if m == "version 0x48 in the method selection, expected 5")
        );
        assert!(
            matches!(failure(false, &[5, 0, 4, 0, 0, 1]), HandshakeError::Malformed(m) if m.contains("in the CONNECT reply, expected 5"))
        );
        assert!(
            matches!(failure(false, &[5, 0, 5, 0, 0, 9, 0]), HandshakeError::Malformed(m) if m.contains("unknown address type 0x09"))
        );
        // a reply cut short waits for more; here the test reply runs out
        assert!(
            matches!(failure(false, &[5, 0, 5, 0, 0, 1, 1, 2]), HandshakeError::Malformed(m) if m == "test reply ran out")
        );
    }

    proptest! {
        #[test]
        fn any_reply_is_handled_without_panicking(
            reply in proptest::collection::vec(any::<u8>(), 0..40), creds_on in any::<bool>(),
        ) {
            let c = creds();
            let mut core = Socks5::new("h", 1, creds_on.then_some(&c)).unwrap();
            let _ = drive(&mut core, &reply, 3);
        }
    }
}
