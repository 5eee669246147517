//! The optional OSSH prefix (wire spec 1.4): terminators, the prefix header, and the bounded scan
//! for a terminator that both sides use.

use crate::error::{Error, Result};
use crate::keys::{Direction, Keyword, PREAMBLE_HEADER_LEN};
use crate::prng::{fill_random, hkdf_sha256};

/// Length of a prefix terminator.
pub const TERMINATOR_LEN: usize = 16;
/// A terminator must lie within this many bytes after the first 24 bytes of a prefix.
pub const PREFIX_MAX_LEN: usize = 65536;
/// Longest spec name a prefix header may carry.
pub const PREFIX_MAX_NAME_LEN: usize = 4096;
/// The only prefix header version.
pub const PREFIX_HEADER_VERSION: u16 = 1;
/// Fixed part of the prefix header: version and name length.
pub(crate) const PREFIX_HEADER_FIXED_LEN: usize = 4;

/// The terminator that ends a prefix: HKDF-SHA256(secret = keyword, salt = first 24 bytes of the
/// prefix, info = direction label), 16 bytes.
///
/// # Errors
/// [`Error::Config`] if `prefix_start` is shorter than 24 bytes.
pub fn prefix_terminator(
    keyword: &Keyword,
    prefix_start: &[u8],
    direction: Direction,
) -> Result<[u8; TERMINATOR_LEN]> {
    let salt = prefix_start
        .get(..PREAMBLE_HEADER_LEN)
        .ok_or(Error::Config {
            what: "prefix shorter than 24 bytes",
        })?;
    let mut out = [0u8; TERMINATOR_LEN];
    hkdf_sha256(
        keyword.as_bytes(),
        salt,
        direction.label().as_bytes(),
        &mut out,
    )?;
    Ok(out)
}

/// `prefix`, padded with random bytes to at least 24 bytes, followed by its terminator.
pub(crate) fn terminated_prefix(
    keyword: &Keyword,
    prefix: &[u8],
    direction: Direction,
) -> Result<Vec<u8>> {
    let mut out = prefix.to_vec();
    if out.len() < PREAMBLE_HEADER_LEN {
        let start = out.len();
        out.resize(PREAMBLE_HEADER_LEN, 0);
        fill_random(out.get_mut(start..).unwrap_or_default())?;
    }
    let terminator = prefix_terminator(keyword, &out, direction)?;
    out.extend_from_slice(&terminator);
    Ok(out)
}

/// Appends the prefix header: u16 BE version 1, u16 BE name length, name.
pub(crate) fn encode_prefix_header(name: &str, out: &mut Vec<u8>) -> Result<()> {
    let len = u16::try_from(name.len())
        .ok()
        .filter(|len| usize::from(*len) <= PREFIX_MAX_NAME_LEN)
        .ok_or(Error::Config {
            what: "prefix spec name longer than 4096 bytes",
        })?;
    out.extend_from_slice(&PREFIX_HEADER_VERSION.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Outcome of feeding bytes to a [`TerminatorScan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The terminator ends after this many bytes of the input just fed.
    Found(usize),
    /// Not yet; all input was consumed.
    NeedMore,
    /// More than [`PREFIX_MAX_LEN`] bytes were searched without finding it.
    LimitExceeded,
}

/// Searches a byte stream for a terminator, keeping only the last 15 bytes seen between calls.
#[derive(Debug)]
pub(crate) struct TerminatorScan {
    token: [u8; TERMINATOR_LEN],
    tail: Vec<u8>,
    searched: usize,
}

impl TerminatorScan {
    pub(crate) fn new(token: [u8; TERMINATOR_LEN]) -> Self {
        Self {
            token,
            tail: Vec::with_capacity(TERMINATOR_LEN),
            searched: 0,
        }
    }

    pub(crate) fn feed(&mut self, input: &[u8]) -> Scan {
        let budget = PREFIX_MAX_LEN.saturating_sub(self.searched);
        let take = input.len().min(budget);
        let mut hay = std::mem::take(&mut self.tail);
        let carried = hay.len();
        hay.extend_from_slice(input.get(..take).unwrap_or_default());
        if let Some(pos) = hay.windows(TERMINATOR_LEN).position(|w| w == self.token) {
            // The tail never holds the whole token, so the end lies inside `input`.
            return Scan::Found((pos + TERMINATOR_LEN).saturating_sub(carried));
        }
        self.searched = self.searched.saturating_add(take);
        if self.searched >= PREFIX_MAX_LEN {
            return Scan::LimitExceeded;
        }
        let keep = hay.len().min(TERMINATOR_LEN - 1);
        self.tail = hay.split_off(hay.len() - keep);
        Scan::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyword() -> Keyword {
        Keyword::new("k").unwrap()
    }

    #[test]
    fn short_prefix_start_is_an_error() {
        let err = prefix_terminator(&keyword(), &[0; 23], Direction::ClientToServer).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn terminators_differ_by_direction_and_only_use_24_bytes() {
        let k = keyword();
        let a = prefix_terminator(&k, &[1; 24], Direction::ClientToServer).unwrap();
        let b = prefix_terminator(&k, &[1; 24], Direction::ServerToClient).unwrap();
        let c = prefix_terminator(&k, &[1; 40], Direction::ClientToServer).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn short_prefixes_are_padded_to_24() {
        let k = keyword();
        let out = terminated_prefix(&k, b"GET", Direction::ServerToClient).unwrap();
        assert_eq!(out.len(), 24 + TERMINATOR_LEN);
        assert_eq!(&out[..3], b"GET");
        let t = prefix_terminator(&k, &out[..24], Direction::ServerToClient).unwrap();
        assert_eq!(&out[24..], &t);
    }

    #[test]
    fn header_layout_and_name_limit() {
        let mut out = Vec::new();
        encode_prefix_header("http-get", &mut out).unwrap();
        assert_eq!(out, b"\x00\x01\x00\x08http-get");
        let long = "x".repeat(PREFIX_MAX_NAME_LEN + 1);
        assert!(encode_prefix_header(&long, &mut Vec::new()).is_err());
    }

    #[test]
    fn scan_finds_a_token_split_across_feeds() {
        let token = [0xAB; TERMINATOR_LEN];
        let mut stream = vec![0u8; 1000];
        stream.extend_from_slice(&token);
        stream.extend_from_slice(b"after");
        for split in [1usize, 7, 999, 1000, 1005, 1015] {
            let mut scan = TerminatorScan::new(token);
            assert_eq!(scan.feed(&stream[..split]), Scan::NeedMore, "split {split}");
            let rest = &stream[split..];
            let Scan::Found(used) = scan.feed(rest) else {
                panic!("not found at split {split}");
            };
            assert_eq!(&rest[used..], b"after");
        }
    }

    #[test]
    fn scan_gives_up_after_the_limit() {
        let mut scan = TerminatorScan::new([0xAB; TERMINATOR_LEN]);
        assert_eq!(scan.feed(&vec![0; PREFIX_MAX_LEN - 1]), Scan::NeedMore);
        assert_eq!(scan.feed(&[0; 2]), Scan::LimitExceeded);
    }
}
