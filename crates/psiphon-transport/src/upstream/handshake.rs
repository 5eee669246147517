//! What the sans-IO proxy handshakes share: the step they ask for next and their errors.

/// What a handshake core wants after it has been fed the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Read more: at least one byte and at most `max`. A core that cannot tolerate reading past
    /// its message asks for exactly what is missing.
    NeedMore {
        /// The most bytes the driver may read.
        max: usize,
    },
    /// The first `consumed` input bytes are used up; write `bytes` and go on.
    Send {
        /// How many input bytes this step used.
        consumed: usize,
        /// What to write to the proxy.
        bytes: Vec<u8>,
    },
    /// The tunnel is open. The first `consumed` input bytes were the proxy's; any after them
    /// already belong to the destination.
    Done {
        /// How many input bytes the handshake used.
        consumed: usize,
    },
}

/// How a handshake failed, before the driver adds which proxy and which destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The proxy's reply does not parse.
    #[error("{0}")]
    Malformed(String),
    /// The proxy wants credentials we lack or refused ours.
    #[error("{0}")]
    Auth(String),
    /// The proxy refused the request itself.
    #[error("{0}")]
    ProxyRefused(String),
    /// The proxy could not, or may not, reach the destination.
    #[error("{0}")]
    TargetFailed(String),
    /// The destination cannot be written in this protocol.
    #[error("{0}")]
    InvalidTarget(&'static str),
}

/// One proxy protocol's client side.
pub(crate) trait Handshake: Send {
    /// The first bytes to write.
    fn start(&mut self) -> Vec<u8>;
    /// Called with everything received since the last consumed byte.
    fn receive(&mut self, input: &[u8]) -> Result<Progress, HandshakeError>;
    /// What the core is waiting for, for error messages ("waiting for the CONNECT reply").
    fn step(&self) -> &'static str;
    /// True once the request naming the destination has been sent: silence from here on is
    /// most likely the destination's, not the proxy's.
    fn target_requested(&self) -> bool;
}

/// Bytes from a proxy, printable, cut to a few dozen characters, for error messages.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = bytes.get(..MAX).unwrap_or(bytes);
    let mut s: String = shown.escape_ascii().to_string();
    if bytes.len() > MAX {
        s.push_str("...");
    }
    s
}

/// A fed-in-pieces test helper: runs `core` against the `reply` bytes, delivered in chunks of
/// `chunk`, and returns everything the core wrote plus how the handshake ended.
#[cfg(test)]
pub(crate) fn drive(
    core: &mut dyn Handshake,
    reply: &[u8],
    chunk: usize,
) -> (Vec<u8>, Result<usize, HandshakeError>) {
    let mut written = core.start();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut total_consumed = 0;
    loop {
        match core.receive(&buf) {
            Err(e) => return (written, Err(e)),
            Ok(Progress::Done { consumed }) => return (written, Ok(total_consumed + consumed)),
            Ok(Progress::Send { consumed, bytes }) => {
                buf.drain(..consumed);
                total_consumed += consumed;
                written.extend_from_slice(&bytes);
            }
            Ok(Progress::NeedMore { max }) => {
                assert!(max > 0, "asked for zero bytes");
                let n = chunk.min(max).min(reply.len() - fed);
                if n == 0 {
                    return (
                        written,
                        Err(HandshakeError::Malformed("test reply ran out".into())),
                    );
                }
                buf.extend_from_slice(&reply[fed..fed + n]);
                fed += n;
            }
        }
    }
}
