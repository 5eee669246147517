//! Write side of the SSH-aware layer: what the local SSH stack writes, turned into wire bytes.

use crate::error::{Error, Result};
use crate::keys::{MAX_PADDING, Rc4Stream};
use crate::prng::Prng;

use super::packet::{PacketHeader, SSH_MSG_NEWKEYS};

/// Longest identification line we buffer from our own SSH layer before calling it broken
/// (RFC 4253 allows 255 bytes).
const MAX_LOCAL_LINE: usize = 8192;
/// Longest identification padding line, CRLF included.
const MAX_PADDING_LINE: usize = 512;
/// Shortest identification padding line: a bare CRLF.
const MIN_PADDING_LINE: usize = 2;
/// Largest SSH padding length.
const SSH_MAX_PADDING: usize = 255;
/// Cipher block size used by the legacy (Ganymed) padding.
const LEGACY_PADDING_MULTIPLE: usize = 16;

#[derive(Debug)]
pub(super) enum WriteState {
    /// Client: the preamble goes out before the first SSH byte.
    ClientPreamble(Vec<u8>),
    /// Server: the prefix reply (possibly empty) and identification-line padding go out first.
    ServerGreeting(Vec<u8>),
    /// Waiting for the end of our SSH version line.
    IdentificationLine,
    /// Re-padding binary packets until the first NEWKEYS.
    Packets,
    /// Obfuscation over: bytes pass unchanged.
    Raw,
}

#[derive(Debug)]
pub(super) struct WriteSide {
    pub(super) state: WriteState,
    cipher: Rc4Stream,
    prng: Prng,
    pending: Vec<u8>,
    /// Length of the identification-line padding this side sent (server only).
    pub(super) greeting_padding: Option<usize>,
}

impl WriteSide {
    pub(super) fn new(state: WriteState, cipher: Rc4Stream, prng: Prng) -> Self {
        Self {
            state,
            cipher,
            prng,
            pending: Vec::new(),
            greeting_padding: None,
        }
    }

    pub(super) fn is_raw(&self) -> bool {
        matches!(self.state, WriteState::Raw)
    }

    /// Emits the preamble or greeting if it has not gone out yet.
    pub(super) fn start(&mut self, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, WriteState::IdentificationLine) {
            WriteState::ClientPreamble(preamble) => out.extend_from_slice(&preamble),
            WriteState::ServerGreeting(reply) => {
                out.extend_from_slice(&reply);
                let mut padding = identification_padding(&mut self.prng);
                self.greeting_padding = Some(padding.len());
                self.cipher.apply(&mut padding);
                out.extend_from_slice(&padding);
            }
            other => self.state = other,
        }
    }

    pub(super) fn encode(&mut self, input: &[u8], legacy: bool, out: &mut Vec<u8>) -> Result<()> {
        self.start(out);
        if self.is_raw() && self.pending.is_empty() {
            out.extend_from_slice(input);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        loop {
            match self.state {
                WriteState::IdentificationLine => {
                    let Some(end) = find_crlf(&self.pending) else {
                        if self.pending.len() > MAX_LOCAL_LINE {
                            return Err(Error::LocalProtocol {
                                what: "identification line (no CRLF within 8192 bytes)",
                            });
                        }
                        return Ok(());
                    };
                    let mut line: Vec<u8> = self.pending.drain(..end).collect();
                    self.cipher.apply(&mut line);
                    out.extend_from_slice(&line);
                    self.state = WriteState::Packets;
                }
                WriteState::Packets => {
                    let Some(header) = self.pending.get(..PacketHeader::LEN) else {
                        return Ok(());
                    };
                    let header = PacketHeader::parse(header)
                        .map_err(|what| Error::LocalProtocol { what })?;
                    let total = header.wire_len();
                    if self.pending.len() < total {
                        return Ok(());
                    }
                    let mut packet: Vec<u8> = self.pending.drain(..total).collect();
                    let newkeys = header.message_type(&packet) == Some(SSH_MSG_NEWKEYS);
                    self.add_padding(&header, &mut packet, legacy)?;
                    self.cipher.apply(&mut packet);
                    out.extend_from_slice(&packet);
                    if newkeys {
                        self.state = WriteState::Raw;
                    }
                }
                WriteState::Raw => {
                    out.append(&mut self.pending);
                    self.pending = Vec::new();
                    return Ok(());
                }
                WriteState::ClientPreamble(_) | WriteState::ServerGreeting(_) => {
                    return Err(Error::Internal {
                        what: "write side not started",
                    });
                }
            }
        }
    }

    /// Appends random extra padding to `packet` and patches both length fields.
    fn add_padding(
        &mut self,
        header: &PacketHeader,
        packet: &mut Vec<u8>,
        legacy: bool,
    ) -> Result<()> {
        let room = SSH_MAX_PADDING.saturating_sub(usize::from(header.padding_len));
        let extra = if legacy {
            let steps = room / LEGACY_PADDING_MULTIPLE;
            if steps > 0 {
                self.prng
                    .intn(steps)
                    .saturating_mul(LEGACY_PADDING_MULTIPLE)
            } else {
                0
            }
        } else if room > 0 {
            self.prng.intn(room + 1)
        } else {
            0
        };
        let overflow = || Error::Internal {
            what: "padded packet length overflow",
        };
        let extra_u8 = u8::try_from(extra).map_err(|_| overflow())?;
        let padding_len = header
            .padding_len
            .checked_add(extra_u8)
            .ok_or_else(overflow)?;
        let packet_len = header
            .packet_len
            .checked_add(u32::from(extra_u8))
            .ok_or_else(overflow)?;
        let extra_bytes = self.prng.bytes(extra);
        PacketHeader::patch(packet, packet_len, padding_len).ok_or_else(overflow)?;
        packet.extend_from_slice(&extra_bytes);
        Ok(())
    }
}

/// Index just past the first CRLF.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

/// The server's identification-line padding: `2 + intn(8191)` bytes of zero-filled lines.
pub(super) fn identification_padding(prng: &mut Prng) -> Vec<u8> {
    padding_lines(MIN_PADDING_LINE + prng.intn(MAX_PADDING - MIN_PADDING_LINE + 1))
}

/// `total` bytes of zero-filled lines, each ending in CRLF, at most 512 bytes long and never
/// shorter than a bare CRLF (the line before a short last one gives up the difference).
fn padding_lines(total: usize) -> Vec<u8> {
    let mut remaining = total;
    let mut out = Vec::with_capacity(total);
    while remaining >= MIN_PADDING_LINE {
        let mut line = remaining.min(MAX_PADDING_LINE);
        let after = remaining - line;
        if after > 0 && after < MIN_PADDING_LINE {
            line -= MIN_PADDING_LINE - after;
        }
        out.resize(out.len() + line - MIN_PADDING_LINE, 0);
        out.extend_from_slice(b"\r\n");
        remaining -= line;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::PrngSeed;

    #[test]
    fn identification_padding_lines_are_well_formed() {
        for s in 0..64u8 {
            let mut prng = Prng::new(&PrngSeed::new([s; 32]));
            let pad = identification_padding(&mut prng);
            assert!((2..=MAX_PADDING).contains(&pad.len()));
            assert!(pad.ends_with(b"\r\n"));
            for line in pad.split_inclusive(|b| *b == b'\n') {
                assert!(
                    line.len() >= 2 && line.len() <= 512,
                    "line of {}",
                    line.len()
                );
                assert!(line.ends_with(b"\r\n"));
                assert!(line[..line.len() - 2].iter().all(|b| *b == 0));
            }
        }
    }

    #[test]
    fn every_total_splits_into_valid_lines() {
        for total in MIN_PADDING_LINE..=MAX_PADDING {
            let pad = padding_lines(total);
            assert_eq!(pad.len(), total);
            for line in pad.split_inclusive(|b| *b == b'\n') {
                assert!(
                    (2..=512).contains(&line.len()),
                    "total {total}: line {}",
                    line.len()
                );
                assert!(line.ends_with(b"\r\n"));
            }
        }
    }
}
