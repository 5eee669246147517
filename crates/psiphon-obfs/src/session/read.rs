//! Read side of the SSH-aware layer: wire bytes from the peer turned into what the local SSH
//! stack expects.

use crate::error::{Error, Result, Step};
use crate::keys::{Direction, Keyword, PREAMBLE_HEADER_LEN, Rc4Stream};
use crate::prefix::{Scan, TerminatorScan, prefix_terminator};

use super::packet::{PacketHeader, SSH_MSG_NEWKEYS};

/// Longest identification line (CRLF included) accepted from the peer.
const MAX_LINE: usize = 1024;

#[derive(Debug)]
pub(super) enum ReadState {
    /// Client that sent a prefix: skip the server's prefix reply up to its terminator.
    ServerPrefix {
        header: Vec<u8>,
        scan: Option<TerminatorScan>,
    },
    /// Dropping lines until the `SSH-` version line.
    IdentificationLines,
    /// Delivering whole packets until the first NEWKEYS.
    Packets,
    /// Obfuscation over: bytes pass unchanged.
    Raw,
}

#[derive(Debug)]
pub(super) struct ReadSide {
    pub(super) state: ReadState,
    cipher: Rc4Stream,
    keyword: Keyword,
    line: Vec<u8>,
    packet: Vec<u8>,
    header: Option<PacketHeader>,
}

impl ReadSide {
    pub(super) fn new(state: ReadState, cipher: Rc4Stream, keyword: Keyword) -> Self {
        Self {
            state,
            cipher,
            keyword,
            line: Vec::new(),
            packet: Vec::new(),
            header: None,
        }
    }

    pub(super) fn is_raw(&self) -> bool {
        matches!(self.state, ReadState::Raw)
    }

    /// The error for an end of stream now, or `None` if the stream may end here (obfuscation
    /// over, or between two whole packets).
    pub(super) fn eof_error(&self) -> Option<Error> {
        let step = match self.state {
            ReadState::Raw => return None,
            ReadState::Packets if self.packet.is_empty() => return None,
            ReadState::Packets => Step::KexPacket,
            ReadState::ServerPrefix { .. } => Step::ServerPrefix,
            ReadState::IdentificationLines => Step::IdentificationLine,
        };
        Some(Error::UnexpectedEof { step })
    }

    /// Decodes `input`; returns whether the peer's version line mentions Ganymed (legacy
    /// padding), once, when that line is complete.
    pub(super) fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let mut legacy = false;
        let mut rest = input;
        while !rest.is_empty() {
            match &mut self.state {
                ReadState::ServerPrefix { header, scan } => match scan {
                    None => {
                        let take = rest.len().min(PREAMBLE_HEADER_LEN - header.len());
                        let (now, later) = rest.split_at(take);
                        header.extend_from_slice(now);
                        rest = later;
                        if header.len() == PREAMBLE_HEADER_LEN {
                            let token = prefix_terminator(
                                &self.keyword,
                                header,
                                Direction::ServerToClient,
                            )?;
                            *scan = Some(TerminatorScan::new(token));
                        }
                    }
                    Some(scanner) => match scanner.feed(rest) {
                        Scan::Found(used) => {
                            rest = rest.get(used..).unwrap_or_default();
                            self.state = ReadState::IdentificationLines;
                        }
                        Scan::NeedMore => rest = &[],
                        Scan::LimitExceeded => {
                            return Err(Error::Malformed {
                                step: Step::ServerPrefix,
                                what: "no prefix terminator within 64 KiB",
                            });
                        }
                    },
                },
                ReadState::IdentificationLines => {
                    // Byte by byte: the keystream must not run past the end of the line, since
                    // how many bytes are obfuscated is only known once they are parsed.
                    let Some((&first, later)) = rest.split_first() else {
                        break;
                    };
                    rest = later;
                    let mut byte = [first];
                    self.cipher.apply(&mut byte);
                    let [plain] = byte;
                    self.line.push(plain);
                    if self.line.ends_with(b"\r\n") {
                        if self.line.starts_with(b"SSH-") {
                            legacy = contains(&self.line, b"Ganymed");
                            out.append(&mut self.line);
                            self.state = ReadState::Packets;
                        } else {
                            self.line.clear();
                        }
                    } else if self.line.len() >= MAX_LINE {
                        return Err(Error::Malformed {
                            step: Step::IdentificationLine,
                            what: "line without CRLF within 1024 bytes",
                        });
                    }
                }
                ReadState::Packets => {
                    let want = match self.header {
                        None => PacketHeader::LEN,
                        Some(header) => header.wire_len(),
                    };
                    let take = rest.len().min(want.saturating_sub(self.packet.len()));
                    let (now, later) = rest.split_at(take);
                    rest = later;
                    let start = self.packet.len();
                    self.packet.extend_from_slice(now);
                    if let Some(fresh) = self.packet.get_mut(start..) {
                        self.cipher.apply(fresh);
                    }
                    if self.packet.len() < want {
                        continue;
                    }
                    let header = match self.header {
                        Some(header) => header,
                        None => {
                            let header = PacketHeader::parse(&self.packet).map_err(|what| {
                                Error::Malformed {
                                    step: Step::KexPacket,
                                    what,
                                }
                            })?;
                            self.header = Some(header);
                            if self.packet.len() < header.wire_len() {
                                continue;
                            }
                            header
                        }
                    };
                    let newkeys = header.message_type(&self.packet) == Some(SSH_MSG_NEWKEYS);
                    out.append(&mut self.packet);
                    self.header = None;
                    if newkeys {
                        self.state = ReadState::Raw;
                        self.packet = Vec::new();
                    }
                }
                ReadState::Raw => {
                    out.extend_from_slice(rest);
                    rest = &[];
                }
            }
        }
        Ok(legacy)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
