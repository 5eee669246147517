//! The small part of CBOR (RFC 8949) the Psiphon API uses: a value tree, a bounded decoder
//! for untrusted input, and a canonical encoder.
//!
//! Decoding is as lenient as tunnel-core's (fxamacker/cbor with default options): integer
//! and length heads need not be shortest, indefinite-length strings, arrays and maps are
//! accepted, half/single/double floats all read as `f64`. It is bounded: at most
//! [`MAX_DEPTH`] levels of nesting and [`MAX_ITEMS`] elements per array or map (fxamacker's
//! defaults), at most [`MAX_TOTAL_ITEMS`] items in all, and no length is believed beyond the
//! bytes actually present, so a hostile length cannot make it allocate. Text must be valid UTF-8, as fxamacker requires.
//!
//! Encoding is CTAP2-canonical, as tunnel-core's `CBOREncoding`: shortest integer and length
//! heads, definite lengths, map keys sorted by their encoded bytes (length first, then
//! byte-wise), floats always as 8-byte doubles.

/// Deepest nesting of arrays, maps and tags the decoder accepts.
pub const MAX_DEPTH: usize = 32;
/// Most elements (or key/value pairs) in one array or map the decoder accepts.
pub const MAX_ITEMS: u64 = 131_072;
/// Most data items in one document the decoder accepts, which bounds the memory a small
/// hostile input can make it use (each item costs a few dozen bytes decoded). Psiphon API
/// requests hold a few hundred.
pub const MAX_TOTAL_ITEMS: usize = 65_536;

/// A CBOR data item.
#[derive(Debug, Clone, PartialEq)]
pub enum Cbor {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3.
    Text(String),
    /// Major type 4.
    Array(Vec<Cbor>),
    /// Major type 5, in the order read (or to be sorted when encoded).
    Map(Vec<(Cbor, Cbor)>),
    /// Major type 6: a tag and its content.
    Tag(u64, Box<Cbor>),
    /// `false` / `true`.
    Bool(bool),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// Another simple value.
    Simple(u8),
    /// A half, single or double float.
    Float(f64),
}

impl Cbor {
    /// A signed integer.
    pub fn int(i: i64) -> Cbor {
        if i >= 0 {
            Cbor::Unsigned(i.unsigned_abs())
        } else {
            // -1 - n = i  =>  n = -1 - i = |i| - 1
            Cbor::Negative(i.unsigned_abs() - 1)
        }
    }

    /// A short description of the item's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Cbor::Unsigned(_) | Cbor::Negative(_) => "integer",
            Cbor::Bytes(_) => "byte string",
            Cbor::Text(_) => "text string",
            Cbor::Array(_) => "array",
            Cbor::Map(_) => "map",
            Cbor::Tag(..) => "tag",
            Cbor::Bool(_) => "boolean",
            Cbor::Null => "null",
            Cbor::Undefined => "undefined",
            Cbor::Simple(_) => "simple value",
            Cbor::Float(_) => "float",
        }
    }
}

/// Why CBOR bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ends inside an item.
    #[error("CBOR data is truncated at byte {0}")]
    Truncated(usize),
    /// Bytes follow the single top-level item.
    #[error("CBOR data has {0} trailing bytes")]
    TrailingBytes(usize),
    /// A reserved or malformed initial byte.
    #[error("malformed CBOR item at byte {0}")]
    Malformed(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("CBOR nesting exceeds {MAX_DEPTH} levels")]
    TooDeep,
    /// An array or map with more than [`MAX_ITEMS`] elements, or a document with more than
    /// [`MAX_TOTAL_ITEMS`] items.
    #[error("CBOR data has too many items")]
    TooManyItems,
    /// A text string that is not UTF-8.
    #[error("CBOR text string at byte {0} is not valid UTF-8")]
    InvalidUtf8(usize),
}

/// Decodes exactly one item filling `input`.
pub fn decode(input: &[u8]) -> Result<Cbor, CborError> {
    let mut d = Decoder {
        input,
        pos: 0,
        items: 0,
    };
    let item = d.item(0)?;
    if d.pos != input.len() {
        return Err(CborError::TrailingBytes(input.len() - d.pos));
    }
    Ok(item)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
}

/// An initial byte's argument: a value, or "indefinite length".
enum Arg {
    Value(u64),
    Indefinite,
}

const BREAK: u8 = 0xff;

impl Decoder<'_> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or(CborError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], CborError> {
        let start = self.pos;
        let n = usize::try_from(n).map_err(|_| CborError::Truncated(start))?;
        let end = start
            .checked_add(n)
            .filter(|end| *end <= self.input.len())
            .ok_or(CborError::Truncated(self.input.len()))?;
        self.pos = end;
        Ok(&self.input[start..end])
    }

    fn be(&mut self, n: u64) -> Result<u64, CborError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads the argument of an initial byte whose low five bits are `info`.
    fn arg(&mut self, info: u8, at: usize) -> Result<Arg, CborError> {
        match info {
            0..=23 => Ok(Arg::Value(u64::from(info))),
            24 => self.be(1).map(Arg::Value),
            25 => self.be(2).map(Arg::Value),
            26 => self.be(4).map(Arg::Value),
            27 => self.be(8).map(Arg::Value),
            31 => Ok(Arg::Indefinite),
            _ => Err(CborError::Malformed(at)),
        }
    }

    fn at_break(&mut self) -> Result<bool, CborError> {
        match self.input.get(self.pos) {
            Some(&BREAK) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(CborError::Truncated(self.pos)),
        }
    }

    /// A definite-length byte or text string's bytes, or the concatenated chunks of an
    /// indefinite one (each chunk a definite string of the same major type).
    fn string_bytes(&mut self, major: u8, arg: Arg) -> Result<Vec<u8>, CborError> {
        match arg {
            Arg::Value(n) => Ok(self.take(n)?.to_vec()),
            Arg::Indefinite => {
                let mut out = Vec::new();
                while !self.at_break()? {
                    let at = self.pos;
                    let b = self.byte()?;
                    if b >> 5 != major {
                        return Err(CborError::Malformed(at));
                    }
                    match self.arg(b & 0x1f, at)? {
                        Arg::Value(n) => out.extend_from_slice(self.take(n)?),
                        Arg::Indefinite => return Err(CborError::Malformed(at)),
                    }
                }
                Ok(out)
            }
        }
    }

    fn text(&mut self, arg: Arg, at: usize) -> Result<String, CborError> {
        String::from_utf8(self.string_bytes(3, arg)?).map_err(|_| CborError::InvalidUtf8(at))
    }

    fn count(n: u64) -> Result<u64, CborError> {
        if n > MAX_ITEMS {
            Err(CborError::TooManyItems)
        } else {
            Ok(n)
        }
    }

    fn item(&mut self, depth: usize) -> Result<Cbor, CborError> {
        if depth > MAX_DEPTH {
            return Err(CborError::TooDeep);
        }
        self.items += 1;
        if self.items > MAX_TOTAL_ITEMS {
            return Err(CborError::TooManyItems);
        }
        let at = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        if major == 7 {
            return self.simple(info, at);
        }
        let arg = self.arg(info, at)?;
        match (major, arg) {
            (0, Arg::Value(n)) => Ok(Cbor::Unsigned(n)),
            (1, Arg::Value(n)) => Ok(Cbor::Negative(n)),
            (2, arg) => Ok(Cbor::Bytes(self.string_bytes(2, arg)?)),
            (3, arg) => Ok(Cbor::Text(self.text(arg, at)?)),
            (4, Arg::Value(n)) => {
                // Every element takes at least one byte: no allocation beyond the input.
                let n = Self::count(n)?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Cbor::Array(items))
            }
            (4, Arg::Indefinite) => {
                let mut items = Vec::new();
                while !self.at_break()? {
                    items.push(self.item(depth + 1)?);
                    Self::count(u64::try_from(items.len()).unwrap_or(u64::MAX))?;
                }
                Ok(Cbor::Array(items))
            }
            (5, Arg::Value(n)) => {
                let n = Self::count(n)?;
                let mut pairs = Vec::new();
                for _ in 0..n {
                    let key = self.item(depth + 1)?;
                    let value = self.item(depth + 1)?;
                    pairs.push((key, value));
                }
                Ok(Cbor::Map(pairs))
            }
            (5, Arg::Indefinite) => {
                let mut pairs = Vec::new();
                while !self.at_break()? {
                    let key = self.item(depth + 1)?;
                    let value = self.item(depth + 1)?;
                    pairs.push((key, value));
                    Self::count(u64::try_from(pairs.len()).unwrap_or(u64::MAX))?;
                }
                Ok(Cbor::Map(pairs))
            }
            (6, Arg::Value(tag)) => Ok(Cbor::Tag(tag, Box::new(self.item(depth + 1)?))),
            _ => Err(CborError::Malformed(at)),
        }
    }

    fn simple(&mut self, info: u8, at: usize) -> Result<Cbor, CborError> {
        match info {
            20 => Ok(Cbor::Bool(false)),
            21 => Ok(Cbor::Bool(true)),
            22 => Ok(Cbor::Null),
            23 => Ok(Cbor::Undefined),
            0..=19 => Ok(Cbor::Simple(info)),
            24 => {
                let v = self.byte()?;
                // Simple values below 32 must use the one-byte form.
                if v < 32 {
                    Err(CborError::Malformed(at))
                } else {
                    Ok(Cbor::Simple(v))
                }
            }
            25 => {
                let bits = u16::try_from(self.be(2)?).map_err(|_| CborError::Malformed(at))?;
                Ok(Cbor::Float(f16_to_f64(bits)))
            }
            26 => {
                let bits = u32::try_from(self.be(4)?).map_err(|_| CborError::Malformed(at))?;
                Ok(Cbor::Float(f64::from(f32::from_bits(bits))))
            }
            27 => Ok(Cbor::Float(f64::from_bits(self.be(8)?))),
            // 28..=30 reserved; 31 (break) outside an indefinite item.
            _ => Err(CborError::Malformed(at)),
        }
    }
}

/// IEEE 754 half precision to double.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * 2f64.powi(exponent - 15),
    };
    sign * magnitude
}

/// Encodes `item` canonically (see the module documentation).
pub fn encode(item: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, item);
    out
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    // Each arm checked the range, so the narrowing casts are exact.
    if n < 24 {
        out.push(m | u8::try_from(n).unwrap_or(0));
    } else if let Ok(b) = u8::try_from(n) {
        out.extend_from_slice(&[m | 24, b]);
    } else if let Ok(s) = u16::try_from(n) {
        out.push(m | 25);
        out.extend_from_slice(&s.to_be_bytes());
    } else if let Ok(w) = u32::try_from(n) {
        out.push(m | 26);
        out.extend_from_slice(&w.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn len(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn encode_into(out: &mut Vec<u8>, item: &Cbor) {
    match item {
        Cbor::Unsigned(n) => head(out, 0, *n),
        Cbor::Negative(n) => head(out, 1, *n),
        Cbor::Bytes(b) => {
            head(out, 2, len(b.len()));
            out.extend_from_slice(b);
        }
        Cbor::Text(s) => {
            head(out, 3, len(s.len()));
            out.extend_from_slice(s.as_bytes());
        }
        Cbor::Array(items) => {
            head(out, 4, len(items.len()));
            for i in items {
                encode_into(out, i);
            }
        }
        Cbor::Map(pairs) => {
            let mut encoded: Vec<(Vec<u8>, Vec<u8>)> =
                pairs.iter().map(|(k, v)| (encode(k), encode(v))).collect();
            encoded.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            head(out, 5, len(encoded.len()));
            for (k, v) in encoded {
                out.extend_from_slice(&k);
                out.extend_from_slice(&v);
            }
        }
        Cbor::Tag(tag, content) => {
            head(out, 6, *tag);
            encode_into(out, content);
        }
        Cbor::Bool(false) => out.push(0xf4),
        Cbor::Bool(true) => out.push(0xf5),
        Cbor::Null => out.push(0xf6),
        Cbor::Undefined => out.push(0xf7),
        Cbor::Simple(v) => {
            if *v < 24 {
                out.push(0xe0 | v);
            } else {
                out.extend_from_slice(&[0xf8, *v]);
            }
        }
        Cbor::Float(f) => {
            out.push(0xfb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn rfc8949_examples_decode() {
        let cases: &[(&str, Cbor)] = &[
            ("00", Cbor::Unsigned(0)),
            ("1903e8", Cbor::Unsigned(1000)),
            ("1bffffffffffffffff", Cbor::Unsigned(u64::MAX)),
            ("3903e7", Cbor::int(-1000)),
            ("f90001", Cbor::Float(5.960464477539063e-8)),
            ("f97bff", Cbor::Float(65504.0)),
            ("fa47c35000", Cbor::Float(100000.0)),
            ("fb3ff199999999999a", Cbor::Float(1.1)),
            ("f4", Cbor::Bool(false)),
            ("f7", Cbor::Undefined),
            ("f0", Cbor::Simple(16)),
            ("f8ff", Cbor::Simple(255)),
            ("5f42010243030405ff", Cbor::Bytes(vec![1, 2, 3, 4, 5])),
            (
                "7f657374726561646d696e67ff",
                Cbor::Text("streaming".to_owned()),
            ),
            (
                "9f018202039f0405ffff",
                Cbor::Array(vec![
                    Cbor::Unsigned(1),
                    Cbor::Array(vec![Cbor::Unsigned(2), Cbor::Unsigned(3)]),
                    Cbor::Array(vec![Cbor::Unsigned(4), Cbor::Unsigned(5)]),
                ]),
            ),
            (
                "bf61610161629f0203ffff",
                Cbor::Map(vec![
                    (Cbor::Text("a".to_owned()), Cbor::Unsigned(1)),
                    (
                        Cbor::Text("b".to_owned()),
                        Cbor::Array(vec![Cbor::Unsigned(2), Cbor::Unsigned(3)]),
                    ),
                ]),
            ),
            (
                "c074323031332d30332d32315432303a30343a30305a",
                Cbor::Tag(0, Box::new(Cbor::Text("2013-03-21T20:04:00Z".to_owned()))),
            ),
        ];
        for (h, want) in cases {
            assert_eq!(&decode(&hex(h)).unwrap(), want, "{h}");
        }
        assert!(decode(&hex("f97c00")).unwrap() == Cbor::Float(f64::INFINITY));
        assert!(matches!(decode(&hex("f97e00")).unwrap(), Cbor::Float(f) if f.is_nan()));
    }

    #[test]
    fn canonical_encoding() {
        let map = Cbor::Map(vec![
            (Cbor::Unsigned(100), Cbor::Null),
            (Cbor::Text("aa".to_owned()), Cbor::Null),
            (Cbor::Text("b".to_owned()), Cbor::Null),
            (Cbor::Unsigned(10), Cbor::Null),
            (Cbor::int(-1), Cbor::Null),
        ]);
        // Length first, then bytes: 10 (0a), -1 (20), 100 (1864), "b" (6162), "aa" (626161).
        assert_eq!(hex::encode(encode(&map)), "a50af620f61864f66162f6626161f6");
        assert_eq!(hex::encode(encode(&Cbor::Unsigned(23))), "17");
        assert_eq!(hex::encode(encode(&Cbor::Unsigned(24))), "1818");
        assert_eq!(hex::encode(encode(&Cbor::Unsigned(65536))), "1a00010000");
        assert_eq!(
            hex::encode(encode(&Cbor::int(i64::MIN))),
            "3b7fffffffffffffff"
        );
        assert_eq!(hex::encode(encode(&Cbor::Float(1.5))), "fb3ff8000000000000");
    }

    #[test]
    fn hostile_input() {
        // Truncated heads and bodies.
        for h in [
            "",
            "18",
            "19ff",
            "5a0000ffff",
            "62ff",
            "8201",
            "a101",
            "9f01",
            "5f41",
        ] {
            assert!(decode(&hex(h)).is_err(), "{h}");
        }
        // A huge declared length is not believed.
        assert_eq!(
            decode(&hex("5bffffffffffffffff")),
            Err(CborError::Truncated(9))
        );
        assert_eq!(
            decode(&hex("9bffffffffffffffff")),
            Err(CborError::TooManyItems)
        );
        // Reserved, stray break, bad chunk, nested indefinite chunk, short simple value.
        for h in ["1c", "ff", "5f61ff", "5f5fffff", "f818", "3f", "df"] {
            assert!(decode(&hex(h)).is_err(), "{h}");
        }
        assert_eq!(decode(&hex("0000")), Err(CborError::TrailingBytes(1)));
        assert_eq!(decode(&hex("62c328")), Err(CborError::InvalidUtf8(0)));
        let deep = [vec![0x81; 100], vec![0x00]].concat();
        assert_eq!(decode(&deep), Err(CborError::TooDeep));
        let ok = [vec![0x81; MAX_DEPTH], vec![0x00]].concat();
        assert!(decode(&ok).is_ok());
        let tags = [vec![0xc6; 100], vec![0x00]].concat();
        assert_eq!(decode(&tags), Err(CborError::TooDeep));
        // 100 000 one-byte items in one array: within MAX_ITEMS, beyond MAX_TOTAL_ITEMS.
        let many = [vec![0x9a, 0x00, 0x01, 0x86, 0xa0], vec![0x00; 100_000]].concat();
        assert_eq!(decode(&many), Err(CborError::TooManyItems));
        let fine = [vec![0x99, 0x10, 0x00], vec![0x00; 4096]].concat();
        assert!(decode(&fine).is_ok());
    }
}
