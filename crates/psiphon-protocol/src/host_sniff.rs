//! Which host a port forward talks to, from its first upstream bytes: the `Host` header of an
//! HTTP/1.x request, or the SNI of a TLS ClientHello (also when the hello is split across
//! records or writes). Sans-IO: feed the bytes the application writes, read a [`Sniff`].
//!
//! Used for the per-domain byte stats of `psiphon-status` `host_bytes` (wire notes 10.4).
//! Privacy: only a host name ever comes out, never a path, query, URL or port, and never an IP
//! literal (those are [`Sniff::NotFound`]), so nothing else can reach the stats.
//!
//! The cost is bounded: at most [`MAX_SNIFF_BYTES`] are buffered, after which the forward is
//! [`Sniff::NotFound`] and the caller relays without looking again.

/// The most bytes buffered while looking for the host.
pub const MAX_SNIFF_BYTES: usize = 4096;

/// The longest host name accepted (DNS: 253 characters).
pub const MAX_HOST_LEN: usize = 253;

/// What the sniffer knows so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniff {
    /// The bytes so far could still be an HTTP request or a ClientHello: feed more.
    NeedMore,
    /// A host name (lower case, no port), from `Host:` or SNI.
    Found(String),
    /// Not HTTP, not TLS, no host, or not within [`MAX_SNIFF_BYTES`]: stop looking.
    NotFound,
}

/// Buffers a forward's first upstream bytes until the host is known (or cannot be).
#[derive(Debug, Default)]
pub struct HostSniffer {
    buf: Vec<u8>,
    result: Option<Sniff>,
}

impl HostSniffer {
    /// A sniffer that has seen nothing.
    pub fn new() -> HostSniffer {
        HostSniffer::default()
    }

    /// Whether a verdict ([`Sniff::Found`] or [`Sniff::NotFound`]) has been reached.
    pub fn is_done(&self) -> bool {
        self.result.is_some()
    }

    /// Feeds the next upstream bytes; once the answer is not [`Sniff::NeedMore`] it stays the
    /// same and further bytes are ignored (and the buffer is freed).
    pub fn feed(&mut self, data: &[u8]) -> Sniff {
        if let Some(r) = &self.result {
            return r.clone();
        }
        let room = MAX_SNIFF_BYTES.saturating_sub(self.buf.len());
        let take = data.len().min(room);
        self.buf
            .extend_from_slice(data.get(..take).unwrap_or_default());
        let mut verdict = sniff(&self.buf);
        if verdict == Sniff::NeedMore && self.buf.len() >= MAX_SNIFF_BYTES {
            verdict = Sniff::NotFound;
        }
        if verdict != Sniff::NeedMore {
            self.buf = Vec::new();
            self.result = Some(verdict.clone());
        }
        verdict
    }
}

/// Looks at the complete first bytes of a forward (what [`HostSniffer`] buffers).
pub fn sniff(data: &[u8]) -> Sniff {
    match data.first() {
        None => Sniff::NeedMore,
        Some(&TLS_HANDSHAKE) => tls_sni(data),
        Some(&b) if is_token(b) => http_host(data),
        Some(_) => Sniff::NotFound,
    }
}

/// Normalises a host as found on the wire: lower case, port and brackets removed. `None` for
/// anything that is not a DNS name (IP literals, paths, odd characters).
pub fn normalize_host(raw: &[u8]) -> Option<String> {
    let raw = raw.trim_ascii();
    // `[v6]` or `[v6]:port` is an IP literal: never reported.
    if raw.first() == Some(&b'[') {
        return None;
    }
    let host = match raw.iter().position(|&b| b == b':') {
        Some(i) => {
            let (host, port) = raw.split_at(i);
            let port = port.get(1..).unwrap_or_default();
            if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
                return None;
            }
            host
        }
        None => raw,
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return None;
    }
    let ok = host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok || host.split(|&b| b == b'.').any(<[u8]>::is_empty) {
        return None;
    }
    let text = String::from_utf8(host.to_ascii_lowercase()).ok()?;
    if text.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    Some(text)
}

// ---- HTTP/1.x ----

/// RFC 9110 token characters (methods are tokens).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The longest method we wait for before deciding this is not HTTP.
const MAX_METHOD_LEN: usize = 24;

fn http_host(data: &[u8]) -> Sniff {
    // Request line: METHOD SP target SP HTTP/1.x CRLF
    let method_len = data.iter().take_while(|&&b| is_token(b)).count();
    if method_len > MAX_METHOD_LEN {
        return Sniff::NotFound;
    }
    match data.get(method_len) {
        None => return Sniff::NeedMore,
        Some(b' ') => {}
        Some(_) => return Sniff::NotFound,
    }
    let Some(line_end) = find(data, b"\n") else {
        // No control characters in a request line; otherwise wait for its end.
        let rest = data.get(method_len..).unwrap_or_default();
        return if rest.iter().any(|&b| b < 0x20 && b != b'\r') {
            Sniff::NotFound
        } else {
            Sniff::NeedMore
        };
    };
    let line = trim_cr(data.get(..line_end).unwrap_or_default());
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (_method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(target), Some(version)) = (target, version) else {
        return Sniff::NotFound;
    };
    if !version.starts_with(b"HTTP/1.") || target.is_empty() {
        return Sniff::NotFound;
    }
    // Headers: a Host line decides; so does the end of the header block.
    let mut pos = line_end + 1;
    loop {
        let rest = data.get(pos..).unwrap_or_default();
        let Some(end) = find(rest, b"\n") else {
            return Sniff::NeedMore;
        };
        let header = trim_cr(rest.get(..end).unwrap_or_default());
        if header.is_empty() {
            // End of headers without Host: an absolute-form target names the host.
            return absolute_form_host(target);
        }
        if let Some(colon) = header.iter().position(|&b| b == b':') {
            let (name, value) = header.split_at(colon);
            if name.eq_ignore_ascii_case(b"host") {
                return found(value.get(1..).unwrap_or_default());
            }
        }
        pos += end + 1;
    }
}

/// `http://host[:port]/...` → host (the authority only; the path is never looked at).
fn absolute_form_host(target: &[u8]) -> Sniff {
    let Some(i) = find(target, b"://") else {
        return Sniff::NotFound;
    };
    let rest = target.get(i + 3..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    // Userinfo is never part of the host.
    let host = match authority.iter().rposition(|&b| b == b'@') {
        Some(at) => authority.get(at + 1..).unwrap_or_default(),
        None => authority,
    };
    found(host)
}

fn found(raw: &[u8]) -> Sniff {
    normalize_host(raw).map_or(Sniff::NotFound, Sniff::Found)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- TLS ----

const TLS_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const SNI_HOST_NAME: u8 = 0;
/// RFC 8446: a record's plaintext is at most 2^14 bytes.
const MAX_RECORD_LEN: usize = 1 << 14;

/// Why a ClientHello parse stopped.
enum Stop {
    /// The bytes end before the SNI (or the hello's end): need more.
    Truncated,
    /// Not a ClientHello, or malformed, or no SNI.
    Invalid,
}

fn tls_sni(data: &[u8]) -> Sniff {
    // Join the handshake bytes of consecutive handshake records.
    let mut hs = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let header = data.get(pos..pos + 5);
        let Some(header) = header else {
            // A partial record header: check what is there.
            let partial = data.get(pos..).unwrap_or_default();
            if partial.first().is_some_and(|&t| t != TLS_HANDSHAKE)
                || partial.get(1).is_some_and(|&v| v != 3)
            {
                return Sniff::NotFound;
            }
            break;
        };
        let (kind, major, len) = match header {
            [kind, major, _minor, hi, lo] => {
                (*kind, *major, (usize::from(*hi) << 8) | usize::from(*lo))
            }
            _ => return Sniff::NotFound,
        };
        if kind != TLS_HANDSHAKE || major != 3 || len == 0 || len > MAX_RECORD_LEN {
            return Sniff::NotFound;
        }
        let body_start = pos + 5;
        let available = data.len().saturating_sub(body_start).min(len);
        hs.extend_from_slice(
            data.get(body_start..body_start + available)
                .unwrap_or_default(),
        );
        if available < len {
            break;
        }
        pos = body_start + len;
    }
    match client_hello_sni(&hs) {
        Ok(host) => found(host),
        Err(Stop::Truncated) => Sniff::NeedMore,
        Err(Stop::Invalid) => Sniff::NotFound,
    }
}

/// A bounds-checked reader; running off the end is [`Stop::Truncated`].
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop::Invalid)?;
        let out = self.data.get(self.pos..end).ok_or(Stop::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        self.bytes(1)?.first().copied().ok_or(Stop::Truncated)
    }

    fn u16(&mut self) -> Result<usize, Stop> {
        match self.bytes(2)? {
            [hi, lo] => Ok((usize::from(*hi) << 8) | usize::from(*lo)),
            _ => Err(Stop::Truncated),
        }
    }

    fn u24(&mut self) -> Result<usize, Stop> {
        match self.bytes(3)? {
            [a, b, c] => Ok((usize::from(*a) << 16) | (usize::from(*b) << 8) | usize::from(*c)),
            _ => Err(Stop::Truncated),
        }
    }
}

/// The SNI host name of a ClientHello handshake message (possibly truncated).
fn client_hello_sni(hs: &[u8]) -> Result<&[u8], Stop> {
    let mut r = Reader { data: hs, pos: 0 };
    if r.u8()? != CLIENT_HELLO {
        return Err(Stop::Invalid);
    }
    let hello_len = r.u24()?;
    let hello_end = r.pos.checked_add(hello_len).ok_or(Stop::Invalid)?;
    let version = r.bytes(2)?;
    if version.first() != Some(&3) {
        return Err(Stop::Invalid);
    }
    r.bytes(32)?; // random
    let session_id = r.u8()?;
    if session_id > 32 {
        return Err(Stop::Invalid);
    }
    r.bytes(usize::from(session_id))?;
    let suites = r.u16()?;
    if suites == 0 || suites % 2 != 0 {
        return Err(Stop::Invalid);
    }
    r.bytes(suites)?;
    let compression = r.u8()?;
    if compression == 0 {
        return Err(Stop::Invalid);
    }
    r.bytes(usize::from(compression))?;
    if r.pos >= hello_end {
        // No extensions at all: no SNI.
        return Err(Stop::Invalid);
    }
    let extensions_len = r.u16()?;
    let extensions_end = r.pos.checked_add(extensions_len).ok_or(Stop::Invalid)?;
    if extensions_end > hello_end {
        return Err(Stop::Invalid);
    }
    while r.pos < extensions_end {
        let kind = r.u16()?;
        let len = r.u16()?;
        let ext_end = r.pos.checked_add(len).ok_or(Stop::Invalid)?;
        if ext_end > extensions_end {
            return Err(Stop::Invalid);
        }
        if kind != usize::from(EXT_SERVER_NAME) {
            r.bytes(len)?;
            continue;
        }
        let list_len = r.u16()?;
        let list_end = r.pos.checked_add(list_len).ok_or(Stop::Invalid)?;
        if list_end > ext_end {
            return Err(Stop::Invalid);
        }
        while r.pos < list_end {
            let name_type = r.u8()?;
            let name_len = r.u16()?;
            if r.pos.checked_add(name_len).is_none_or(|e| e > list_end) {
                return Err(Stop::Invalid);
            }
            let name = r.bytes(name_len)?;
            if name_type == SNI_HOST_NAME {
                return Ok(name);
            }
        }
        return Err(Stop::Invalid);
    }
    Err(Stop::Invalid)
}

#[cfg(test)]
mod tests;
