//! The streaming reader: the package JSON is read twice with bounded memory, once to check the
//! signature over the `data` string as it goes by, once to hand the `data` string out.
//!
//! It accepts what tunnel-core's streaming reader accepts, and rejects what it rejects:
//! one JSON object whose values are all strings; whitespace anywhere between tokens; keys with
//! no escapes (`unsupported escaped character`); only the keys `data`,
//! `signingPublicKeyDigest` and `signature` (`unexpected key 'x'`); inside values only the `\n`
//! escape (any other: `unsupported escaped character`). Bytes inside strings are taken as they
//! are. Unlike tunnel-core, a key given twice is rejected: tunnel-core would hash both `data`
//! strings and then hand out only the first, so a package could be verified over more than is
//! read.

use std::io::{self, BufRead, BufReader, Read};

use aws_lc_rs::digest;

use super::zlib::from_io;
use super::{
    FIELD_DATA, FIELD_DIGEST, FIELD_SIGNATURE, PublicKey, check_digest, decode_digest,
    decode_signature,
};
use crate::error::{Error, Result};

/// The longest key we read: longer than any of the three, short enough to bound memory.
const MAX_KEY_LEN: usize = 64;
/// The longest base64 value we collect (a signature by an 8192-bit key is 1368 characters).
const MAX_BASE64_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Data,
    Digest,
    Signature,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Data => FIELD_DATA,
            Key::Digest => FIELD_DIGEST,
            Key::Signature => FIELD_SIGNATURE,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Before the `{`.
    Start,
    /// After a value, before `,` or `}`.
    AfterValue,
    /// Inside a string value, after its opening quote.
    InValue,
    /// After the closing `}`.
    End,
}

/// The tokenizer both passes share.
#[derive(Debug)]
struct Lexer<R> {
    input: BufReader<R>,
    offset: u64,
    position: Position,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Go's `%#U` of a byte, as its error messages show it.
fn show(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("U+{b:04X} '{}'", char::from(b))
    } else {
        format!("U+{b:04X}")
    }
}

impl<R: Read> Lexer<R> {
    fn new(reader: R) -> Lexer<R> {
        Lexer {
            input: BufReader::with_capacity(64 * 1024, reader),
            offset: 0,
            position: Position::Start,
        }
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::PackageJson {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    fn next_byte(&mut self) -> Result<Option<u8>> {
        let b = loop {
            match self.input.fill_buf() {
                Ok(buf) => break buf.first().copied(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(from_io(e)),
            }
        };
        if b.is_some() {
            self.input.consume(1);
            self.offset += 1;
        }
        Ok(b)
    }

    /// The next byte that is not whitespace; `seeking` names the state in errors.
    fn next_token(&mut self) -> Result<u8> {
        loop {
            match self.next_byte()? {
                Some(b) if is_space(b) => {}
                Some(b) => return Ok(b),
                None => return Err(self.error("unexpected EOF before object end")),
            }
        }
    }

    fn expect(&mut self, want: u8, seeking: &str) -> Result<()> {
        let b = self.next_token()?;
        if b == want {
            Ok(())
        } else {
            Err(self.error(format!(
                "unexpected character {} while seeking {seeking}",
                show(b)
            )))
        }
    }

    /// Moves to the next key and past the opening quote of its value; `None` after the
    /// closing `}` (and only whitespace after it).
    fn next_key(&mut self) -> Result<Option<Key>> {
        match self.position {
            Position::Start => self.expect(b'{', "object start")?,
            Position::AfterValue => match self.next_token()? {
                b',' => {}
                b'}' => {
                    self.position = Position::End;
                    while let Some(b) = self.next_byte()? {
                        if !is_space(b) {
                            return Err(self.error(format!(
                                "unexpected character {} after object end",
                                show(b)
                            )));
                        }
                    }
                    return Ok(None);
                }
                b => {
                    return Err(self.error(format!(
                        "unexpected character {} while seeking next name/value pair",
                        show(b)
                    )));
                }
            },
            Position::InValue | Position::End => {
                return Err(Error::Crypto("package lexer misused: not between values"));
            }
        }
        self.expect(b'"', "key start")?;
        let mut name = Vec::new();
        loop {
            match self.next_byte()? {
                None => return Err(self.error("unexpected EOF before object end")),
                Some(b'\\') => return Err(self.error("unsupported escaped character")),
                Some(b'"') => break,
                Some(b) if name.len() < MAX_KEY_LEN => name.push(b),
                Some(_) => return Err(self.error("key too long")),
            }
        }
        self.expect(b':', "colon")?;
        self.expect(b'"', "value start")?;
        let key = match name.as_slice() {
            b"data" => Key::Data,
            b"signingPublicKeyDigest" => Key::Digest,
            b"signature" => Key::Signature,
            other => {
                return Err(self.error(format!(
                    "unexpected key '{}'",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        self.position = Position::InValue;
        Ok(Some(key))
    }

    /// Copies the next unescaped bytes of the current string value into `out`; 0 once the
    /// closing quote has been read (and for an empty `out`).
    fn value_chunk(&mut self, out: &mut [u8]) -> Result<usize> {
        if self.position != Position::InValue || out.is_empty() {
            return Ok(0);
        }
        let mut written = 0;
        while written < out.len() {
            let available = loop {
                match self.input.fill_buf() {
                    Ok(buf) => break buf,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(from_io(e)),
                }
            };
            if available.is_empty() {
                return Err(self.error("unexpected EOF before object end"));
            }
            let room = out.len() - written;
            let span = available.len().min(room);
            let plain = available
                .iter()
                .take(span)
                .position(|b| *b == b'"' || *b == b'\\')
                .unwrap_or(span);
            if let (Some(dst), Some(src)) = (
                out.get_mut(written..written + plain),
                available.get(..plain),
            ) {
                dst.copy_from_slice(src);
            }
            let special = available.get(plain).copied().filter(|_| plain < span);
            self.input.consume(plain);
            self.offset += plain as u64;
            written += plain;
            match special {
                None => {}
                Some(b'"') => {
                    self.input.consume(1);
                    self.offset += 1;
                    self.position = Position::AfterValue;
                    return Ok(written);
                }
                Some(_) => {
                    // A backslash: only `\n` is understood.
                    self.input.consume(1);
                    self.offset += 1;
                    match self.next_byte()? {
                        Some(b'n') => {
                            if let Some(slot) = out.get_mut(written) {
                                *slot = b'\n';
                            }
                            written += 1;
                        }
                        _ => return Err(self.error("unsupported escaped character")),
                    }
                }
            }
            if written > 0 && self.input.buffer().is_empty() {
                // Hand out what we have rather than block for more.
                break;
            }
        }
        Ok(written)
    }

    /// Reads a whole (short) string value, e.g. a base64 field.
    fn short_value(&mut self, key: Key) -> Result<String> {
        let mut value = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let n = self.value_chunk(&mut chunk)?;
            if n == 0 {
                break;
            }
            value.extend_from_slice(chunk.get(..n).unwrap_or_default());
            if value.len() > MAX_BASE64_LEN {
                return Err(self.error(format!("value of {:?} is too long", key.name())));
            }
        }
        String::from_utf8(value).map_err(|_| self.error(format!("{:?} is not base64", key.name())))
    }
}

/// First pass: reads the whole decompressed package JSON from `reader`, hashing the `data`
/// string as it goes, and checks the key digest and the signature against `public_key_b64`
/// (base64 of the RSA SubjectPublicKeyInfo, the client's `RemoteServerListSignaturePublicKey`).
/// Memory stays bounded whatever the size of `data`.
///
/// # Errors
/// [`Error::PackagePublicKey`] for an unusable key; [`Error::PackageJson`] (with tunnel-core's
/// texts) or [`Error::PackageMissingField`] for a malformed package;
/// [`Error::PackageKeyDigest`] when it was signed with another key; [`Error::PackageSignature`]
/// when the data was altered; the zlib errors of [`super::ZlibReader`] when reading through it;
/// [`Error::PackageRead`] when `reader` fails.
pub fn verify_stream<R: Read>(reader: R, public_key_b64: &str) -> Result<()> {
    let key = PublicKey::parse(public_key_b64)?;
    let mut lexer = Lexer::new(reader);
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut seen_data = false;
    let mut digest_field = None;
    let mut signature_field = None;
    let mut chunk = vec![0u8; 16 * 1024];
    while let Some(k) = lexer.next_key()? {
        let duplicate = match k {
            Key::Data => seen_data,
            Key::Digest => digest_field.is_some(),
            Key::Signature => signature_field.is_some(),
        };
        if duplicate {
            return Err(lexer.error(format!("duplicate key '{}'", k.name())));
        }
        match k {
            Key::Data => {
                seen_data = true;
                loop {
                    let n = lexer.value_chunk(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    hash.update(chunk.get(..n).unwrap_or_default());
                }
            }
            Key::Digest => digest_field = Some(lexer.short_value(k)?),
            Key::Signature => signature_field = Some(lexer.short_value(k)?),
        }
    }
    let (Some(digest_field), Some(signature_field)) = (digest_field, signature_field) else {
        return Err(Error::PackageMissingField(if seen_data {
            FIELD_SIGNATURE
        } else {
            FIELD_DATA
        }));
    };
    if !seen_data {
        return Err(Error::PackageMissingField(FIELD_DATA));
    }
    check_digest(&key, &decode_digest(&digest_field)?)?;
    key.verify_digest(&hash.finish(), &decode_signature(&signature_field)?)
}

/// Second pass: a [`Read`] of the unescaped `data` string of the package JSON read from `R`,
/// with bounded memory. Call [`verify_stream`] on the same bytes first: this reader checks
/// nothing but the JSON syntax up to the end of `data`.
///
/// ```
/// use std::io::{BufRead, BufReader};
/// use psiphon_protocol::auth_package::{DataReader, PackageSigningKey, ZlibReader, verify_stream};
///
/// let key = PackageSigningKey::generate(2048)?;
/// let public = key.public_key_base64();
/// let package = key.sign_package("entry-1\nentry-2")?;
/// verify_stream(ZlibReader::new(package.as_slice()), &public)?;
/// let data = DataReader::new(ZlibReader::new(package.as_slice()))?;
/// let lines: Vec<String> = BufReader::new(data).lines().collect::<Result<_, _>>()?;
/// assert_eq!(lines, ["entry-1", "entry-2"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct DataReader<R> {
    lexer: Lexer<R>,
}

impl<R: Read> DataReader<R> {
    /// Parses the package JSON up to the start of `data`.
    ///
    /// # Errors
    /// As [`verify_stream`] for malformed JSON, [`Error::PackageMissingField`] when there is no
    /// `data`.
    pub fn new(reader: R) -> Result<DataReader<R>> {
        let mut lexer = Lexer::new(reader);
        loop {
            match lexer.next_key()? {
                Some(Key::Data) => return Ok(DataReader { lexer }),
                Some(k) => {
                    lexer.short_value(k)?;
                }
                None => return Err(Error::PackageMissingField(FIELD_DATA)),
            }
        }
    }
}

impl<R: Read> Read for DataReader<R> {
    /// Errors are [`io::Error`]s of kind `InvalidData` wrapping this crate's [`Error`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lexer
            .value_chunk(buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}
