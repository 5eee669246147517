//! SSH wire encoding (RFC 4251 §5): a bounds-checked reader and a writer.

use crate::error::{Error, Result};

/// Reads SSH data types from a byte slice; every read is bounds-checked.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::protocol(format!("truncated {what}")));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1, "byte")?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool> {
        Ok(self.u8()? != 0)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4, "uint32")?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn string(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| Error::protocol("string length"))?;
        self.take(len, "string")
    }

    pub(crate) fn utf8(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.string()?).map_err(|_| Error::protocol("string is not UTF-8"))
    }

    /// An mpint that must be non-negative; returns its magnitude without leading zeros.
    pub(crate) fn mpint_positive(&mut self) -> Result<&'a [u8]> {
        let raw = self.string()?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(Error::protocol("negative mpint"));
        }
        let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
        Ok(&raw[start..])
    }

    pub(crate) fn name_list(&mut self) -> Result<Vec<&'a str>> {
        let s = self.utf8()?;
        if s.is_empty() {
            return Ok(Vec::new());
        }
        Ok(s.split(',').collect())
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Appends SSH data types to a buffer.
pub(crate) trait WriteExt {
    fn put_u8(&mut self, v: u8);
    fn put_bool(&mut self, v: bool);
    fn put_u32(&mut self, v: u32);
    fn put_string(&mut self, v: &[u8]);
    fn put_mpint(&mut self, magnitude: &[u8]);
    fn put_name_list(&mut self, names: &[&str]);
}

fn len32(n: usize) -> u32 {
    // Everything we encode is far below 4 GiB (packets are capped at 256 KiB).
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl WriteExt for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_bool(&mut self, v: bool) {
        self.push(u8::from(v));
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_string(&mut self, v: &[u8]) {
        self.put_u32(len32(v.len()));
        self.extend_from_slice(v);
    }
    fn put_mpint(&mut self, magnitude: &[u8]) {
        let start = magnitude
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude.len());
        let m = &magnitude[start..];
        let pad = m.first().is_some_and(|b| b & 0x80 != 0);
        self.put_u32(len32(m.len() + usize::from(pad)));
        if pad {
            self.push(0);
        }
        self.extend_from_slice(m);
    }
    fn put_name_list(&mut self, names: &[&str]) {
        let joined = names.join(",");
        self.put_string(joined.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_examples_from_rfc4251() {
        let mut v = Vec::new();
        v.put_mpint(&[]);
        assert_eq!(v, [0, 0, 0, 0]);
        let mut v = Vec::new();
        v.put_mpint(&[0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]);
        assert_eq!(
            v,
            [0, 0, 0, 8, 0x09, 0xa3, 0x78, 0xf9, 0xb2, 0xe3, 0x32, 0xa7]
        );
        let mut v = Vec::new();
        v.put_mpint(&[0x00, 0x80]);
        assert_eq!(v, [0, 0, 0, 2, 0x00, 0x80]);
        assert_eq!(Reader::new(&v).mpint_positive().unwrap(), &[0x80]);
    }

    #[test]
    fn truncated_reads_fail_cleanly() {
        let mut r = Reader::new(&[0, 0, 0, 9, 1, 2]);
        assert!(r.string().is_err());
        let mut r = Reader::new(&[0, 0]);
        assert!(r.u32().is_err());
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(r.string().is_err());
    }
}
