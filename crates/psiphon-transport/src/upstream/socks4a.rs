//! SOCKS4a client side, sans-IO: one request, one 8-byte reply.
//!
//! An IPv4 destination goes in the address field; a name goes after the user ID, with the
//! address set to 0.0.0.1 as SOCKS4a prescribes. IPv6 cannot be expressed.

use std::net::IpAddr;

use super::handshake::{Handshake, HandshakeError, Progress};

const VERSION: u8 = 4;
const CMD_CONNECT: u8 = 1;
const REPLY_LEN: usize = 8;
const GRANTED: u8 = 0x5a;
const REJECTED: u8 = 0x5b;
const IDENTD_UNREACHABLE: u8 = 0x5c;
const IDENTD_MISMATCH: u8 = 0x5d;
/// The longest name we send; servers commonly stop reading there.
const MAX_NAME: usize = 255;

/// The request for `host:port` with `user_id` (empty when the URL has no user name).
pub(crate) fn build_request(
    host: &str,
    port: u16,
    user_id: &str,
) -> Result<Vec<u8>, HandshakeError> {
    if user_id.contains('\0') {
        return Err(HandshakeError::InvalidTarget("the user ID contains NUL"));
    }
    let mut req = vec![VERSION, CMD_CONNECT];
    req.extend_from_slice(&port.to_be_bytes());
    let name = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            req.extend_from_slice(&ip.octets());
            None
        }
        Ok(IpAddr::V6(_)) => {
            return Err(HandshakeError::InvalidTarget(
                "SOCKS4a cannot carry an IPv6 address",
            ));
        }
        Err(_) => {
            if host.is_empty() || host.len() > MAX_NAME || host.contains('\0') {
                return Err(HandshakeError::InvalidTarget(
                    "the name must be 1 to 255 bytes without NUL",
                ));
            }
            req.extend_from_slice(&[0, 0, 0, 1]);
            Some(host)
        }
    };
    req.extend_from_slice(user_id.as_bytes());
    req.push(0);
    if let Some(name) = name {
        req.extend_from_slice(name.as_bytes());
        req.push(0);
    }
    Ok(req)
}

/// The client side of one SOCKS4a CONNECT.
#[derive(Debug)]
pub(crate) struct Socks4a {
    request: Vec<u8>,
}

impl Socks4a {
    pub(crate) fn new(host: &str, port: u16, user_id: &str) -> Result<Socks4a, HandshakeError> {
        Ok(Socks4a {
            request: build_request(host, port, user_id)?,
        })
    }
}

impl Handshake for Socks4a {
    fn start(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.request)
    }

    fn receive(&mut self, input: &[u8]) -> Result<Progress, HandshakeError> {
        let Some(reply) = input.get(..REPLY_LEN) else {
            return Ok(Progress::NeedMore {
                max: REPLY_LEN.saturating_sub(input.len()),
            });
        };
        // The reply version is 0; some servers echo 4, which we accept too.
        let (version, code) = (reply.first().copied(), reply.get(1).copied());
        if !matches!(version, Some(0 | VERSION)) {
            return Err(HandshakeError::Malformed(format!(
                "reply version {:#04x}, expected 0",
                version.unwrap_or_default()
            )));
        }
        match code.unwrap_or_default() {
            GRANTED => Ok(Progress::Done {
                consumed: REPLY_LEN,
            }),
            REJECTED => Err(HandshakeError::TargetFailed(
                "request rejected or failed (0x5b)".to_owned(),
            )),
            IDENTD_UNREACHABLE => Err(HandshakeError::Auth(
                "the proxy could not reach our identd (0x5c)".to_owned(),
            )),
            IDENTD_MISMATCH => Err(HandshakeError::Auth(
                "the proxy's identd check does not match the user ID (0x5d)".to_owned(),
            )),
            other => Err(HandshakeError::Malformed(format!(
                "unknown reply code {other:#04x}"
            ))),
        }
    }

    fn step(&self) -> &'static str {
        "waiting for the SOCKS4a reply"
    }

    fn target_requested(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::handshake::drive;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_bytes() {
        assert_eq!(
            build_request("10.1.2.3", 443, "").unwrap(),
            [4, 1, 0x01, 0xbb, 10, 1, 2, 3, 0]
        );
        assert_eq!(
            build_request("10.1.2.3", 22, "bob").unwrap(),
            [4, 1, 0, 22, 10, 1, 2, 3, b'b', b'o', b'b', 0]
        );
        assert_eq!(
            build_request("ex.org", 80, "u").unwrap(),
            [
                4, 1, 0, 80, 0, 0, 0, 1, b'u', 0, b'e', b'x', b'.', b'o', b'r', b'g', 0
            ]
        );
    }

    #[test]
    fn unexpressible_targets() {
        for (host, user) in [("::1", ""), ("", ""), ("a\0b", ""), ("h", "a\0")] {
            assert!(matches!(
                build_request(host, 1, user),
                Err(HandshakeError::InvalidTarget(_))
            ));
        }
        assert!(build_request(&"a".repeat(256), 1, "").is_err());
        assert!(build_request(&"a".repeat(255), 1, "").is_ok());
    }

    fn run(reply: &[u8]) -> Result<usize, HandshakeError> {
        let mut results = Vec::new();
        for chunk in [1, 3, 8] {
            let mut core = Socks4a::new("h", 1, "").unwrap();
            let (written, result) = drive(&mut core, reply, chunk);
            assert_eq!(written, build_request("h", 1, "").unwrap());
            results.push(result);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        results.remove(0)
    }

    #[test]
    fn replies() {
        assert_eq!(run(&[0, 0x5a, 0, 0, 0, 0, 0, 0]), Ok(8));
        // bytes after the reply are the destination's and are not consumed
        assert_eq!(run(&[0, 0x5a, 0, 0, 0, 0, 0, 0, b'S', b'S', b'H']), Ok(8));
        assert_eq!(run(&[4, 0x5a, 0, 0, 0, 0, 0, 0]), Ok(8));
        assert!(matches!(
            run(&[0, 0x5b, 0, 0, 0, 0, 0, 0]),
            Err(HandshakeError::TargetFailed(_))
        ));
        assert!(matches!(
            run(&[0, 0x5c, 0, 0, 0, 0, 0, 0]),
            Err(HandshakeError::Auth(_))
        ));
        assert!(matches!(
            run(&[0, 0x5d, 0, 0, 0, 0, 0, 0]),
            Err(HandshakeError::Auth(_))
        ));
        let Err(HandshakeError::Malformed(m)) = run(&[5, 0, 0, 0, 0, 0, 0, 0]) else {
            panic!()
        };
        assert_eq!(m, "reply version 0x05, expected 0");
        let Err(HandshakeError::Malformed(m)) = run(&[0, 0x42, 0, 0, 0, 0, 0, 0]) else {
            panic!()
        };
        assert_eq!(m, "unknown reply code 0x42");
        // short replies wait for more (here the test reply runs out)
        assert!(
            matches!(run(&[0, 0x5a, 0]), Err(HandshakeError::Malformed(m)) if m == "test reply ran out")
        );
    }

    proptest! {
        #[test]
        fn any_reply_is_handled_without_panicking(reply in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut core = Socks4a::new("h", 1, "u").unwrap();
            let _ = drive(&mut core, &reply, 3);
        }
    }
}
