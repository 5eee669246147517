//! Server-side validation of the client's first flight (wire spec 1.5), sans-IO.
//!
//! Feed the bytes read from a new connection to [`Acceptor::feed`]. It answers
//! [`AcceptStep::NeedMore`] until the preamble is complete and valid ([`AcceptStep::Accepted`])
//! or not ([`AcceptStep::Rejected`]). On a rejection the caller must not write anything: it
//! reads and discards until its deadline, then closes (what [`crate::ObfuscatedStream::accept`]
//! does).

use std::net::IpAddr;
use std::time::Instant;

use tracing::debug;

use crate::config::ServerConfig;
use crate::error::{Error, ProbeReason, Result, Step};
use crate::history::{Admission, HistoryMode};
use crate::keys::{CipherPair, Direction, MAGIC, MAX_PADDING, PREAMBLE_HEADER_LEN, SEED_LEN};
use crate::prefix::{
    PREFIX_HEADER_FIXED_LEN, PREFIX_HEADER_VERSION, PREFIX_MAX_NAME_LEN, Scan, TerminatorScan,
    prefix_terminator, terminated_prefix,
};
use crate::prng::{PRNG_SEED_LEN, PrngSeed};
use crate::session::Session;

/// What [`Acceptor::feed`] concluded.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // returned once per connection
pub enum AcceptStep {
    /// The preamble is not complete yet; all input was consumed.
    NeedMore,
    /// The preamble is valid. `leftover` holds the input bytes after it (the start of the
    /// client's obfuscated SSH stream), to pass to [`Session::decode`].
    Accepted {
        /// The server session.
        session: Session,
        /// Bytes after the preamble.
        leftover: Vec<u8>,
    },
    /// The preamble is invalid: stay silent, discard, close at the deadline.
    Rejected(Error),
}

/// A preamble whose magic value checked out, with the keys derived from its seed.
#[derive(Debug)]
struct Valid {
    ciphers: CipherPair,
    prefixed: bool,
    /// First padding bytes (decrypted), up to 32: the server's PRNG seed.
    replay_seed: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// Collecting the 24-byte header; `prefixed` once a prefix terminator was skipped.
    Header { prefixed: bool },
    /// Scanning for the prefix terminator after a header with a wrong magic value.
    Terminator(TerminatorScan),
    /// Reading the padding.
    Padding { valid: Valid, remaining: usize },
    /// Reading the prefix header's version and name length.
    PrefixFixed { valid: Valid },
    /// Reading the prefix spec name.
    PrefixName { valid: Valid, len: usize },
    /// Accepted or rejected.
    Finished,
}

/// Validates one client's first flight.
#[derive(Debug)]
pub struct Acceptor<'a> {
    config: &'a ServerConfig,
    peer: Option<IpAddr>,
    state: State,
    buf: Vec<u8>,
}

impl<'a> Acceptor<'a> {
    /// A fresh acceptor. `peer` is only used by the seed history (never logged by this crate).
    #[must_use]
    pub fn new(config: &'a ServerConfig, peer: Option<IpAddr>) -> Self {
        Self {
            config,
            peer,
            state: State::Header { prefixed: false },
            buf: Vec::with_capacity(PREAMBLE_HEADER_LEN),
        }
    }

    /// Where the handshake is, for timeout errors.
    #[must_use]
    pub fn step(&self) -> Step {
        match self.state {
            State::Header { .. } | State::Padding { .. } | State::Finished => Step::ClientPreamble,
            State::Terminator(_) => Step::PrefixTerminator,
            State::PrefixFixed { .. } | State::PrefixName { .. } => Step::PrefixHeader,
        }
    }

    /// The rejection for a client that closed the connection now.
    #[must_use]
    pub fn eof(&self) -> Error {
        let reason = match self.state {
            State::Terminator(_) => ProbeReason::NoTerminator,
            _ => ProbeReason::Truncated,
        };
        Error::Probe { reason }
    }

    /// Consumes `input`, read from the client. `now` dates the seed in the replay history.
    pub fn feed(&mut self, input: &[u8], now: Instant) -> AcceptStep {
        match self.advance(input, now) {
            Ok(step) => step,
            Err(err) => {
                self.state = State::Finished;
                self.buf = Vec::new();
                debug!(error = %err, "OSSH preamble rejected");
                AcceptStep::Rejected(err)
            }
        }
    }

    /// Moves up to `want - buf.len()` bytes of `rest` into `buf`; true once `buf` holds `want`.
    fn collect(&mut self, rest: &mut &[u8], want: usize) -> bool {
        let take = rest.len().min(want.saturating_sub(self.buf.len()));
        let (now, later) = rest.split_at(take);
        self.buf.extend_from_slice(now);
        *rest = later;
        self.buf.len() >= want
    }

    fn advance(&mut self, input: &[u8], now: Instant) -> Result<AcceptStep> {
        let mut rest = input;
        loop {
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Header { prefixed } => {
                    if !self.collect(&mut rest, PREAMBLE_HEADER_LEN) {
                        self.state = State::Header { prefixed };
                        return Ok(AcceptStep::NeedMore);
                    }
                    let header = std::mem::take(&mut self.buf);
                    self.state = self.check_header(&header, prefixed, now)?;
                }
                State::Terminator(mut scan) => match scan.feed(rest) {
                    Scan::Found(used) => {
                        rest = rest.get(used..).unwrap_or_default();
                        self.state = State::Header { prefixed: true };
                    }
                    Scan::NeedMore => {
                        self.state = State::Terminator(scan);
                        return Ok(AcceptStep::NeedMore);
                    }
                    Scan::LimitExceeded => {
                        return Err(Error::Probe {
                            reason: ProbeReason::NoTerminator,
                        });
                    }
                },
                State::Padding {
                    mut valid,
                    remaining,
                } => {
                    let take = rest.len().min(remaining);
                    let (now_bytes, later) = rest.split_at(take);
                    rest = later;
                    let mut chunk = now_bytes.to_vec();
                    valid.ciphers.client_to_server.apply(&mut chunk);
                    let room = PRNG_SEED_LEN.saturating_sub(valid.replay_seed.len());
                    valid
                        .replay_seed
                        .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                    let remaining = remaining - take;
                    if remaining > 0 {
                        self.state = State::Padding { valid, remaining };
                        return Ok(AcceptStep::NeedMore);
                    }
                    if !valid.prefixed {
                        return self.finish(valid, None, rest);
                    }
                    self.state = State::PrefixFixed { valid };
                }
                State::PrefixFixed { mut valid } => {
                    let before = self.buf.len();
                    let complete = self.collect(&mut rest, PREFIX_HEADER_FIXED_LEN);
                    if let Some(fresh) = self.buf.get_mut(before..) {
                        valid.ciphers.client_to_server.apply(fresh);
                    }
                    if !complete {
                        self.state = State::PrefixFixed { valid };
                        return Ok(AcceptStep::NeedMore);
                    }
                    let fixed = std::mem::take(&mut self.buf);
                    let [v0, v1, l0, l1, ..] = *fixed.as_slice() else {
                        return Err(Error::Internal {
                            what: "prefix header buffer",
                        });
                    };
                    if u16::from_be_bytes([v0, v1]) != PREFIX_HEADER_VERSION {
                        return Err(Error::Probe {
                            reason: ProbeReason::PrefixHeaderVersion,
                        });
                    }
                    let len = usize::from(u16::from_be_bytes([l0, l1]));
                    if len > PREFIX_MAX_NAME_LEN {
                        return Err(Error::Probe {
                            reason: ProbeReason::PrefixHeaderLength,
                        });
                    }
                    self.state = State::PrefixName { valid, len };
                }
                State::PrefixName { mut valid, len } => {
                    let before = self.buf.len();
                    let complete = self.collect(&mut rest, len);
                    if let Some(fresh) = self.buf.get_mut(before..) {
                        valid.ciphers.client_to_server.apply(fresh);
                    }
                    if !complete {
                        self.state = State::PrefixName { valid, len };
                        return Ok(AcceptStep::NeedMore);
                    }
                    let name = std::mem::take(&mut self.buf);
                    return self.finish(valid, Some(&name), rest);
                }
                State::Finished => {
                    return Err(Error::Internal {
                        what: "acceptor fed after it finished",
                    });
                }
            }
        }
    }

    /// Checks the magic value, then the replay history, then the padding length, in that order:
    /// the length is only looked at once the magic proved the keyword, so probing the length
    /// field with chosen ciphertext teaches nothing.
    fn check_header(&self, header: &[u8], prefixed: bool, now: Instant) -> Result<State> {
        let internal = || Error::Internal {
            what: "preamble header buffer",
        };
        let (seed, fixed) = header.split_at_checked(SEED_LEN).ok_or_else(internal)?;
        let seed: [u8; SEED_LEN] = seed.try_into().map_err(|_| internal())?;
        let mut fixed: [u8; 8] = fixed.try_into().map_err(|_| internal())?;
        let mut ciphers = CipherPair::derive(&seed, &self.config.keyword)?;
        ciphers.client_to_server.apply(&mut fixed);
        let [m0, m1, m2, m3, p0, p1, p2, p3] = fixed;
        let magic = u32::from_be_bytes([m0, m1, m2, m3]);
        let padding_len = u32::from_be_bytes([p0, p1, p2, p3]);

        if magic != MAGIC {
            if prefixed {
                return Err(Error::Probe {
                    reason: ProbeReason::InvalidMagicAfterPrefix,
                });
            }
            // Perhaps a prefix: these 24 bytes are its start, and its terminator follows it.
            let token = prefix_terminator(&self.config.keyword, header, Direction::ClientToServer)?;
            return Ok(State::Terminator(TerminatorScan::new(token)));
        }

        // Only seeds behind a valid magic value are recorded, so garbage cannot fill the history.
        match self
            .config
            .history
            .add_new(&seed, self.peer, HistoryMode::Strict, now)
        {
            Admission::New => {}
            Admission::AllowedDuplicate(dup) | Admission::Rejected(dup) => {
                return Err(Error::ReplayedSeed {
                    elapsed: dup.elapsed,
                    peer: dup.peer,
                });
            }
        }

        let remaining = usize::try_from(padding_len)
            .ok()
            .filter(|len| *len <= MAX_PADDING)
            .ok_or(Error::Probe {
                reason: ProbeReason::PaddingLength,
            })?;
        let valid = Valid {
            ciphers,
            prefixed,
            replay_seed: Vec::with_capacity(PRNG_SEED_LEN),
        };
        Ok(State::Padding { valid, remaining })
    }

    fn finish(&mut self, valid: Valid, name: Option<&[u8]>, rest: &[u8]) -> Result<AcceptStep> {
        let padding_seed = match <[u8; PRNG_SEED_LEN]>::try_from(valid.replay_seed.as_slice()) {
            Ok(bytes) => PrngSeed::new(bytes),
            // Legacy clients send less than 32 bytes of padding: pick our own seed.
            Err(_) => PrngSeed::generate()?,
        };
        let reply = match name {
            None => Vec::new(),
            Some(name) => {
                let configured = std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| self.config.prefix_replies.get(name));
                let prefix = configured.map(Vec::as_slice).unwrap_or_default();
                terminated_prefix(&self.config.keyword, prefix, Direction::ServerToClient)?
            }
        };
        let session = Session::server(
            self.config.keyword.clone(),
            valid.ciphers,
            padding_seed,
            reply,
        )?;
        Ok(AcceptStep::Accepted {
            session,
            leftover: rest.to_vec(),
        })
    }
}
