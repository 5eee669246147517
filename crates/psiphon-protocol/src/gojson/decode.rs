//! A JSON parser that reads bytes the way Go's `encoding/json` reads them into `interface{}`.
//!
//! `serde_json` refuses invalid UTF-8 and lone surrogate escapes; Go accepts both and
//! substitutes U+FFFD. Signatures are computed over what Go decoded, so a verifier has to
//! decode the same way:
//!
//! * each byte that does not start a complete, valid UTF-8 sequence becomes one U+FFFD;
//! * a `\uXXXX` surrogate escape that is not a high surrogate immediately followed by a
//!   `\uXXXX` low surrogate becomes U+FFFD (the following escape is then read on its own);
//! * raw control characters (below U+0020) inside strings are errors;
//! * duplicate object keys: the last value wins;
//! * numbers: integer literals that fit `i64`/`u64` are kept as integers (Go would hold a
//!   `float64`; the canonical encoder converts them to `f64` before printing, so the output is
//!   the same), `-0` is kept as the float `-0.0`, everything else is parsed as `f64`
//!   (correctly rounded, like `strconv.ParseFloat`); numbers beyond `f64` range are errors, as
//!   in Go.
//!
//! Nesting is limited to [`MAX_DEPTH`] levels (Go allows 10000; no Psiphon message comes near
//! either, and a small limit keeps recursion safe on small thread stacks).

use serde_json::{Map, Number, Value};

/// Maximum nesting of arrays and objects.
pub const MAX_DEPTH: usize = 256;

/// Where and why JSON parsing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct JsonError {
    /// Byte offset into the input.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

/// Parses one JSON value from `input` (surrounding whitespace allowed) as Go's
/// `json.Unmarshal` into an `interface{}` would.
pub fn from_slice(input: &[u8]) -> Result<Value, JsonError> {
    let mut parser = Parser { input, pos: 0 };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos != input.len() {
        return Err(parser.error("unexpected data after the top-level value"));
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &'static [u8], value: Value) -> Result<Value, JsonError> {
        if self.input.get(self.pos..self.pos + literal.len()) == Some(literal) {
            self.pos += literal.len();
            Ok(value)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.expect_literal(b"true", Value::Bool(true)),
            Some(b'f') => self.expect_literal(b"false", Value::Bool(false)),
            Some(b'n') => self.expect_literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            map.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// Reads a string starting at the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1; // '"'
        let mut out = String::new();
        loop {
            // A run of plain bytes up to the next quote, backslash or control character.
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            push_lossy_like_go(
                &mut out,
                self.input.get(start..self.pos).unwrap_or_default(),
            );
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        self.pos += 1; // '\\'
        let Some(c) = self.peek() else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let c = if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate: combine with an immediately following low surrogate
                    // escape, otherwise U+FFFD (and leave what follows to be read normally).
                    match self.peek_low_surrogate() {
                        Some(low) => {
                            self.pos += 6;
                            let code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
                        }
                        None => char::REPLACEMENT_CHARACTER,
                    }
                } else {
                    // Lone low surrogates are not chars: from_u32 gives None.
                    char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER)
                };
                out.push(c);
                return Ok(());
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape"));
            }
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let value = self
            .input
            .get(self.pos..self.pos + 4)
            .and_then(parse_hex4)
            .ok_or_else(|| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(value)
    }

    fn peek_low_surrogate(&self) -> Option<u32> {
        let rest = self.input.get(self.pos..self.pos + 6)?;
        let (prefix, digits) = rest.split_at(2);
        if prefix != b"\\u" {
            return None;
        }
        let low = parse_hex4(digits)?;
        (0xDC00..0xE000).contains(&low).then_some(low)
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            integral = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        let text = self
            .input
            .get(start..self.pos)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| self.error("invalid number"))?;
        if integral && text != "-0" {
            if negative {
                if let Ok(i) = text.parse::<i64>() {
                    return Ok(Value::Number(i.into()));
                }
            } else if let Ok(u) = text.parse::<u64>() {
                return Ok(Value::Number(u.into()));
            }
        }
        let f: f64 = text.parse().map_err(|_| self.error("invalid number"))?;
        Number::from_f64(f).map(Value::Number).ok_or(JsonError {
            offset: start,
            reason: "number out of range",
        })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

fn parse_hex4(digits: &[u8]) -> Option<u32> {
    if digits.len() != 4 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        let d = char::from(b).to_digit(16)?;
        Some(acc * 16 + d)
    })
}

/// Appends `bytes` to `out`, replacing each byte that does not begin a complete valid UTF-8
/// sequence with U+FFFD, as Go's `utf8.DecodeRune` loop does.
///
/// `Utf8Chunks` reports an invalid piece as the longest prefix of a would-be sequence (a lead
/// byte and its continuation bytes); Go rejects the lead byte and then each continuation byte
/// separately, so one U+FFFD per byte of the invalid piece is Go's output.
fn push_lossy_like_go(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_invalid_utf8_per_byte() {
        let v = from_slice(b"\"a\xff\xfeb\xe2\x80x\xed\xa0\x80\"").unwrap();
        assert_eq!(
            v,
            json!("a\u{fffd}\u{fffd}b\u{fffd}\u{fffd}x\u{fffd}\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn surrogate_escapes() {
        assert_eq!(from_slice(br#""\ud83d\ude00""#).unwrap(), json!("😀"));
        assert_eq!(from_slice(br#""\ud800""#).unwrap(), json!("\u{fffd}"));
        assert_eq!(
            from_slice(br#""\udc00\u0041""#).unwrap(),
            json!("\u{fffd}A")
        );
        assert_eq!(
            from_slice(br#""\ud800\u0041""#).unwrap(),
            json!("\u{fffd}A")
        );
        assert_eq!(
            from_slice(br#""\ud800\ud800""#).unwrap(),
            json!("\u{fffd}\u{fffd}")
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(from_slice(b"22").unwrap(), json!(22));
        assert_eq!(from_slice(b"-42").unwrap(), json!(-42));
        assert_eq!(
            from_slice(b"12345678901234567890").unwrap(),
            json!(12345678901234567890u64)
        );
        assert_eq!(from_slice(b"1.5e3").unwrap(), json!(1500.0));
        let negzero = from_slice(b"-0").unwrap();
        assert!(negzero.as_f64().unwrap().is_sign_negative());
        assert!(from_slice(b"1e400").is_err());
        for bad in ["01", "-", "1.", ".5", "+1", "1e", "0x10", "NaN"] {
            assert!(from_slice(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn structure_errors() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "[1 2]",
            "\"\x01\"",
            "\"\\x\"",
            "tru",
            "{} {}",
            "{1:2}",
        ] {
            assert!(from_slice(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(from_slice(deep.as_bytes()).is_err());
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(from_slice(ok.as_bytes()).is_ok());
    }

    #[test]
    fn duplicate_keys_last_wins() {
        assert_eq!(from_slice(br#"{"a":1,"a":2}"#).unwrap(), json!({"a": 2}));
    }
}
