//! `UpstreamProxyURL`: which proxy, where, with which credentials.
//!
//! Accepted as tunnel-core accepts it (Go's `url.Parse`, then `golang.org/x/net/proxy`'s
//! `FromURL` plus the `http` and `socks4a` schemes tunnel-core registers):
//! `scheme://[user[:password]@]host[:port][/anything]`, where scheme is `http`, `socks4a`,
//! `socks5` or `socks5h` (the two SOCKS5 spellings behave the same: names go to the proxy),
//! the user name and password are percent-decoded, and an IPv6 host is written in brackets.
//! `socks5` and `socks5h` default to port 1080. `http` and `socks4a` have no default in
//! tunnel-core (a dial to a port-less address fails every time), so here a missing port is a
//! configuration error. `socks4` (without the a) is not accepted by tunnel-core, nor here.

use std::fmt;
use std::net::Ipv6Addr;

use zeroize::Zeroizing;

use crate::ConfigError;

/// The SOCKS5 default port, as in `golang.org/x/net/proxy`.
const SOCKS5_DEFAULT_PORT: u16 = 1080;

/// The protocol spoken to the upstream proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyScheme {
    /// HTTP `CONNECT`, with Basic authentication when the URL has credentials.
    Http,
    /// SOCKS4a: the user name is the user ID, the destination name goes to the proxy.
    Socks4a,
    /// SOCKS5 (RFC 1928), with user/password authentication (RFC 1929) when the URL has
    /// credentials.
    Socks5,
    /// `socks5h`: the same protocol as [`ProxyScheme::Socks5`]; kept apart only so the scheme
    /// can be reported as written.
    Socks5h,
}

impl ProxyScheme {
    /// The URL scheme, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyScheme::Http => "http",
            ProxyScheme::Socks4a => "socks4a",
            ProxyScheme::Socks5 => "socks5",
            ProxyScheme::Socks5h => "socks5h",
        }
    }

    fn parse(s: &str) -> Result<ProxyScheme, ConfigError> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(ProxyScheme::Http),
            "socks4a" => Ok(ProxyScheme::Socks4a),
            "socks5" => Ok(ProxyScheme::Socks5),
            "socks5h" => Ok(ProxyScheme::Socks5h),
            // quote the scheme only when it looks like one: a mangled URL could put a
            // password before "://"
            _ if s.len() <= 16
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
            {
                Err(bad(format!(
                    "unsupported scheme \"{s}\" (expected http, socks4a, socks5 or socks5h)"
                )))
            }
            _ => Err(bad(
                "unsupported scheme (expected http, socks4a, socks5 or socks5h)",
            )),
        }
    }
}

impl fmt::Display for ProxyScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user name and password from the URL. Debug output hides both; the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: Zeroizing<String>,
    password: Zeroizing<String>,
}

impl Credentials {
    /// The percent-decoded user name (never empty).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The percent-decoded password (empty when the URL has none).
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// A parsed `UpstreamProxyURL`. `Display` and `Debug` replace the credentials with `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamProxyUrl {
    scheme: ProxyScheme,
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

impl UpstreamProxyUrl {
    /// Parses and checks an `UpstreamProxyURL`. Errors never quote the URL (it may hold a
    /// password).
    pub fn parse(url: &str) -> Result<UpstreamProxyUrl, ConfigError> {
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("contains whitespace or a control character"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://[user:password@]host:port"))?;
        let scheme = ProxyScheme::parse(scheme)?;
        // the authority ends where a path, query or fragment starts; those are ignored
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port)?;
        let port = match (port, scheme) {
            (Some(p), _) => p,
            (None, ProxyScheme::Socks5 | ProxyScheme::Socks5h) => SOCKS5_DEFAULT_PORT,
            (None, _) => {
                return Err(bad(format!("a {scheme} proxy needs a port (host:port)")));
            }
        };
        let credentials = match userinfo {
            Some(u) => parse_userinfo(u, scheme)?,
            None => None,
        };
        Ok(UpstreamProxyUrl {
            scheme,
            host,
            port,
            credentials,
        })
    }

    /// The protocol.
    pub fn scheme(&self) -> ProxyScheme {
        self.scheme
    }

    /// The proxy's host: a name, an IPv4 address, or an IPv6 address without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The credentials, if the URL has a user name.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// `<scheme> proxy <host>:<port>`: how errors and logs name this proxy.
    pub fn describe(&self) -> String {
        format!(
            "{} proxy {}",
            self.scheme,
            crate::target_string(&self.host, self.port)
        )
    }
}

impl fmt::Display for UpstreamProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.credentials.is_some() {
            "***@"
        } else {
            ""
        };
        write!(
            f,
            "{}://{auth}{}",
            self.scheme,
            crate::target_string(&self.host, self.port)
        )
    }
}

impl fmt::Debug for UpstreamProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamProxyUrl({self})")
    }
}

fn bad(reason: impl Into<String>) -> ConfigError {
    ConfigError::ProxyUrl(reason.into())
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), ConfigError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("unclosed '[' in the host"))?;
        if inside.contains('%') {
            return Err(bad("IPv6 zone identifiers are not supported"));
        }
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| bad("the host in brackets is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("expected ':port' after the IPv6 address"))?,
            ),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(bad(
                "an IPv6 address must be written in brackets: [addr]:port",
            ));
        }
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return Err(bad("invalid character in the host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("the port is not a number"));
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port must be 1 to 65535")),
                Ok(n) => Some(n),
            }
        }
    };
    Ok((host, port))
}

fn parse_userinfo(userinfo: &str, scheme: ProxyScheme) -> Result<Option<Credentials>, ConfigError> {
    let (user, pass) = match userinfo.split_once(':') {
        Some((u, p)) => (u, p),
        None => (userinfo, ""),
    };
    let username = Zeroizing::new(percent_decode(user)?);
    let password = Zeroizing::new(percent_decode(pass)?);
    if username.is_empty() {
        if password.is_empty() {
            return Ok(None);
        }
        return Err(bad("a password without a user name"));
    }
    match scheme {
        ProxyScheme::Socks5 | ProxyScheme::Socks5h => {
            // RFC 1929 carries each in a length byte
            if username.len() > 255 || password.len() > 255 {
                return Err(bad(
                    "a SOCKS5 user name and password are at most 255 bytes each",
                ));
            }
        }
        ProxyScheme::Socks4a => {
            if username.contains('\0') {
                return Err(bad("a SOCKS4a user ID cannot contain NUL"));
            }
        }
        ProxyScheme::Http => {}
    }
    Ok(Some(Credentials { username, password }))
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, ConfigError> {
    let invalid = || bad("invalid percent-encoding in the user name or password");
    let mut out = Zeroizing::new(Vec::with_capacity(s.len()));
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(hex_value).ok_or_else(invalid)?;
            let lo = bytes.next().and_then(hex_value).ok_or_else(invalid)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(std::mem::take(&mut *out)).map_err(|e| {
        // wipe the rejected bytes too
        drop(Zeroizing::new(e.into_bytes()));
        bad("the user name or password is not UTF-8 once percent-decoded")
    })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> UpstreamProxyUrl {
        UpstreamProxyUrl::parse(s).unwrap()
    }

    fn err(s: &str) -> String {
        UpstreamProxyUrl::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn every_scheme_tunnel_core_accepts() {
        let u = parse("http://proxy.example:8080");
        assert_eq!(
            (u.scheme(), u.host(), u.port()),
            (ProxyScheme::Http, "proxy.example", 8080)
        );
        assert!(u.credentials().is_none());
        assert_eq!(
            parse("socks4a://10.0.0.1:1080").scheme(),
            ProxyScheme::Socks4a
        );
        assert_eq!(parse("socks5://10.0.0.1:9050").port(), 9050);
        assert_eq!(
            parse("socks5h://10.0.0.1:9050").scheme(),
            ProxyScheme::Socks5h
        );
        assert_eq!(parse("SOCKS5://h:1").scheme(), ProxyScheme::Socks5);
    }

    #[test]
    fn socks5_defaults_to_1080_and_the_others_need_a_port() {
        assert_eq!(parse("socks5://h").port(), 1080);
        assert_eq!(parse("socks5h://u:p@h/").port(), 1080);
        assert!(
            err("http://h").contains("needs a port"),
            "{}",
            err("http://h")
        );
        assert!(err("socks4a://h").contains("needs a port"));
        assert!(err("http://h:").contains("needs a port"));
    }

    #[test]
    fn credentials_are_percent_decoded_and_split_at_the_first_colon_and_last_at() {
        let u = parse("http://us%40er:p%3Aa:ss@w@[::1]:3128");
        let c = u.credentials().unwrap();
        assert_eq!(c.username(), "us@er");
        assert_eq!(c.password(), "p:a:ss@w");
        assert_eq!((u.host(), u.port()), ("::1", 3128));

        let u = parse("socks5://user@h:1");
        assert_eq!(u.credentials().unwrap().password(), "");
        assert!(parse("http://@h:1").credentials().is_none());
        assert!(err("http://:secret@h:1").contains("without a user name"));
        assert!(err("http://u:%zz@h:1").contains("percent-encoding"));
        assert!(err("http://u:%ff@h:1").contains("UTF-8"));
    }

    #[test]
    fn ipv6_hosts_need_brackets() {
        let u = parse("socks5://[2001:db8::1]:1080");
        assert_eq!(u.host(), "2001:db8::1");
        assert_eq!(u.to_string(), "socks5://[2001:db8::1]:1080");
        assert_eq!(parse("socks5://[::1]").port(), 1080);
        assert!(err("socks5://2001:db8::1:1080").contains("brackets"));
        assert!(err("socks5://[::1:1080").contains("unclosed"));
        assert!(err("socks5://[fe80::1%25eth0]:1").contains("zone"));
        assert!(err("socks5://[nope]:1").contains("not an IPv6"));
        assert!(err("socks5://[::1]x").contains("':port'"));
    }

    #[test]
    fn paths_queries_and_fragments_are_ignored_as_by_tunnel_core() {
        let u = parse("http://h:8080/some/path?q=1#f");
        assert_eq!((u.host(), u.port()), ("h", 8080));
        // an '@' after the authority is not userinfo
        assert!(parse("http://h:8080/a@b").credentials().is_none());
    }

    #[test]
    fn bad_urls_give_clear_errors() {
        assert!(err("ftp://h:1").contains("unsupported scheme"));
        assert!(err("socks4://h:1").contains("unsupported scheme"));
        assert!(err("h:1").contains("expected scheme://"));
        assert!(err("http://:1").contains("no host"));
        assert!(err("http://h:x").contains("not a number"));
        assert!(err("http://h:0").contains("1 to 65535"));
        assert!(err("http://h:65536").contains("1 to 65535"));
        assert!(err("http://h h:1").contains("whitespace"));
        assert!(err("http://h!:1").contains("invalid character"));
        let long = "u".repeat(256);
        assert!(err(&format!("socks5://{long}:p@h:1")).contains("255"));
        assert!(err("socks4a://a%00b@h:1").contains("NUL"));
    }

    #[test]
    fn secrets_never_show() {
        let u = parse("http://alice:hunter2@h:8080");
        for shown in [
            u.to_string(),
            format!("{u:?}"),
            format!("{:?}", u.credentials()),
            u.describe(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
        }
        assert_eq!(u.to_string(), "http://***@h:8080");
        assert_eq!(u.describe(), "http proxy h:8080");
        // and errors do not quote the URL
        let e = err("http://alice:hunter2@h:notaport");
        assert!(!e.contains("hunter2") && !e.contains("alice"), "{e}");
        let e = err("http://alice:hun%zzter2@h:1");
        assert!(!e.contains("hunter2") && !e.contains("alice"), "{e}");
        let e = err("alice:hunter2://h:1");
        assert!(!e.contains("hunter2") && !e.contains("alice"), "{e}");
        assert!(err("ftp://h:1").contains("\"ftp\""));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = UpstreamProxyUrl::parse(&s);
        }

        #[test]
        fn any_credentials_round_trip_through_percent_encoding(
            user in "[^\\x00]{1,20}", pass in ".{0,20}", port in 1u16..,
        ) {
            let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
            let u = UpstreamProxyUrl::parse(
                &format!("http://{}:{}@proxy:{port}", enc(&user), enc(&pass)),
            ).unwrap();
            let c = u.credentials().unwrap();
            prop_assert_eq!(c.username(), user.as_str());
            prop_assert_eq!(c.password(), pass.as_str());
            prop_assert_eq!(u.port(), port);
        }
    }
}
