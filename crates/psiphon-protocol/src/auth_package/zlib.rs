//! A zlib (RFC 1950) reader that tells a stream that is not zlib, one that is cut short and one
//! that is damaged apart. `flate2::read::ZlibDecoder` reports a truncated stream as a clean end
//! of file, which would let a cut download pass as complete.

use std::io::{self, Read};

use flate2::{Decompress, FlushDecompress, Status};

use crate::error::Error;

const INPUT_BUFFER: usize = 16 * 1024;

/// Decompresses a zlib stream read from `R`.
///
/// Errors come out of [`Read::read`] as [`io::Error`]s of kind `InvalidData` that wrap this
/// crate's [`Error`]: [`Error::PackageNotZlib`], [`Error::PackageTruncated`] or
/// [`Error::PackageCorrupt`] (bad deflate data or Adler-32 checksum). [`super::verify_stream`]
/// and [`super::DataReader`] unwrap them again. Bytes after the end of the zlib stream are
/// ignored, as Go's reader ignores them.
#[derive(Debug)]
pub struct ZlibReader<R> {
    inner: R,
    input: Vec<u8>,
    pos: usize,
    len: usize,
    input_eof: bool,
    header_checked: bool,
    decompress: Decompress,
    done: bool,
}

fn invalid(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<R: Read> ZlibReader<R> {
    /// Reads compressed bytes from `inner`.
    pub fn new(inner: R) -> ZlibReader<R> {
        ZlibReader {
            inner,
            input: vec![0u8; INPUT_BUFFER],
            pos: 0,
            len: 0,
            input_eof: false,
            header_checked: false,
            decompress: Decompress::new(true),
            done: false,
        }
    }

    /// The reader it decompresses from.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads more input after the unconsumed bytes; sets `input_eof` at the end.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.input.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
        }
        let Some(space) = self.input.get_mut(self.len..) else {
            return Err(invalid(Error::Crypto("zlib input buffer overrun")));
        };
        if space.is_empty() {
            return Ok(());
        }
        loop {
            match self.inner.read(space) {
                Ok(0) => {
                    self.input_eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.len += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// RFC 1950 section 2.2: compression method 8 (deflate), window at most 32 KiB, the check
    /// bits, and no preset dictionary.
    fn check_header(&mut self) -> io::Result<()> {
        while self.len - self.pos < 2 && !self.input_eof {
            self.fill()?;
        }
        let header = self.input.get(self.pos..self.len).and_then(|b| b.get(..2));
        let Some(&[cmf, flg]) = header else {
            return Err(invalid(if self.len == self.pos {
                Error::PackageNotZlib("the input is empty".to_owned())
            } else {
                Error::PackageTruncated
            }));
        };
        if cmf & 0x0f != 8 || cmf >> 4 > 7 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
            return Err(invalid(Error::PackageNotZlib(format!(
                "bad zlib header {cmf:02x} {flg:02x} (was it gzip or uncompressed?)"
            ))));
        }
        if flg & 0x20 != 0 {
            return Err(invalid(Error::PackageNotZlib(
                "the zlib stream needs a preset dictionary".to_owned(),
            )));
        }
        self.header_checked = true;
        Ok(())
    }
}

impl<R: Read> Read for ZlibReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done || out.is_empty() {
            return Ok(0);
        }
        if !self.header_checked {
            self.check_header()?;
        }
        loop {
            if self.pos == self.len && !self.input_eof {
                self.fill()?;
            }
            let input = self.input.get(self.pos..self.len).unwrap_or_default();
            let (in_before, out_before) = (self.decompress.total_in(), self.decompress.total_out());
            let status = self
                .decompress
                .decompress(input, out, FlushDecompress::None)
                .map_err(|e| invalid(Error::PackageCorrupt(format!("zlib: {e}"))))?;
            let consumed = usize::try_from(self.decompress.total_in() - in_before)
                .map_err(|_| invalid(Error::Crypto("zlib consumed more than it was given")))?;
            let produced = usize::try_from(self.decompress.total_out() - out_before)
                .map_err(|_| invalid(Error::Crypto("zlib produced more than it was given")))?;
            self.pos += consumed;
            if status == Status::StreamEnd {
                self.done = true;
                return Ok(produced);
            }
            if produced > 0 {
                return Ok(produced);
            }
            if self.pos == self.len && self.input_eof {
                return Err(invalid(Error::PackageTruncated));
            }
            if consumed == 0 {
                // Nothing moved: the decoder wants more input than is buffered.
                if self.input_eof {
                    return Err(invalid(Error::PackageTruncated));
                }
                let pending = self.len - self.pos;
                self.fill()?;
                if self.len - self.pos == pending && !self.input_eof {
                    return Err(invalid(Error::PackageCorrupt(
                        "zlib: the decoder made no progress".to_owned(),
                    )));
                }
            }
        }
    }
}

/// Turns an error from a reader back into this crate's [`Error`]: the ones [`ZlibReader`]
/// wrapped come out as themselves, any other as [`Error::PackageRead`].
pub(crate) fn from_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => Error::PackageRead(io::Error::new(kind, other)),
            None => Error::PackageRead(io::Error::from(kind)),
        }
    } else {
        Error::PackageRead(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        ZlibReader::new(bytes)
            .read_to_end(&mut out)
            .map_err(from_io)?;
        Ok(out)
    }

    /// A reader that hands out one byte per call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn round_trip_and_every_cut_is_truncated() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = zlib(&data);
        assert_eq!(read_all(&z).unwrap(), data);
        let mut trickled = Vec::new();
        ZlibReader::new(Trickle(&z))
            .read_to_end(&mut trickled)
            .unwrap();
        assert_eq!(trickled, data);
        // Trailing bytes after the stream are ignored.
        let mut padded = z.clone();
        padded.extend_from_slice(b"trailing");
        assert_eq!(read_all(&padded).unwrap(), data);
        for cut in [1, 2, 3, z.len() / 2, z.len() - 4, z.len() - 1] {
            let r = read_all(&z[..cut]);
            assert!(
                matches!(r, Err(Error::PackageTruncated)),
                "cut {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn not_zlib_and_corrupt() {
        assert!(matches!(read_all(b""), Err(Error::PackageNotZlib(_))));
        assert!(matches!(
            read_all(b"{\"data\":\"\"}"),
            Err(Error::PackageNotZlib(_))
        ));
        // gzip magic
        assert!(matches!(
            read_all(&[0x1f, 0x8b, 8, 0]),
            Err(Error::PackageNotZlib(_))
        ));
        let mut z = zlib(b"hello hello hello hello");
        let n = z.len();
        z[n - 1] ^= 0xff; // Adler-32
        assert!(
            matches!(read_all(&z), Err(Error::PackageCorrupt(_))),
            "{:?}",
            read_all(&z)
        );
        let mut z = zlib(b"hello");
        z[2] = 0xff; // block type 3 (reserved)
        assert!(matches!(read_all(&z), Err(Error::PackageCorrupt(_))));
    }
}
