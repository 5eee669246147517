//! JSON output byte-identical to Go's `encoding/json` `Marshal`.

use serde_json::Value;

use super::decode::{JsonError, from_slice};

/// Object key order for [`write_value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrder {
    /// Sorted bytewise, as Go marshals a map.
    Sorted,
    /// As stored in the `serde_json::Map` (insertion order), as Go marshals a struct.
    AsStored,
}

/// Go's canonical JSON of `value`, as `json.Marshal` of the corresponding
/// `map[string]interface{}` / `[]interface{}` / `float64` / ... tree: keys sorted bytewise,
/// compact, HTML-safe string escaping, numbers printed as `float64`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, KeyOrder::Sorted);
    out
}

/// Like [`to_canonical_string`] but objects keep their stored key order and integers are
/// printed exactly, as Go marshals a struct (fields in declaration order, `int` fields as
/// integers). Non-integral numbers are printed as `float64`.
pub fn to_ordered_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, KeyOrder::AsStored);
    out
}

pub(crate) fn write_value(out: &mut String, value: &Value, order: KeyOrder) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // Go's map values are float64: every number is printed as one (integers with
        // float64 rounding). Go's struct fields keep integers as integers.
        Value::Number(n) => match (order, n.as_i64(), n.as_u64()) {
            (KeyOrder::AsStored, Some(i), _) => out.push_str(&i.to_string()),
            (KeyOrder::AsStored, None, Some(u)) => out.push_str(&u.to_string()),
            _ => write_float(out, n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, order);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if order == KeyOrder::Sorted {
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            }
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item, order);
            }
            out.push('}');
        }
    }
}

/// Writes `f` as Go's encoder writes a `float64`: the shortest decimal that round-trips,
/// plain notation when `1e-6 <= |f| < 1e21` (or zero), otherwise exponent notation with an
/// explicit sign and no zero padding (`1e+21`, `1e-7`).
pub(crate) fn write_float(out: &mut String, f: f64) {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` gives the shortest round-trip digits as `d.ddde[-]x`.
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exponent)) => {
                out.push_str(mantissa);
                out.push('e');
                if !exponent.starts_with('-') {
                    out.push('+');
                }
                out.push_str(exponent);
            }
            None => out.push_str(&s),
        }
    } else {
        // Rust's `Display` for f64 is the shortest round-trip digits, never an exponent, and
        // no ".0" for integral values: Go's 'f' format with precision -1.
        out.push_str(&f.to_string());
    }
}

/// Writes a quoted string with Go's escaping (HTML-safe, as `json.Marshal` does).
pub(crate) fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if c < ' ' || c == '<' || c == '>' || c == '&' => {
                let b = u32::from(c);
                out.push_str("\\u00");
                for shift in [4u32, 0] {
                    let nibble = (b >> shift) & 0xf;
                    let digit = usize::try_from(nibble)
                        .ok()
                        .and_then(|i| HEX.get(i))
                        .copied()
                        .unwrap_or(b'0');
                    out.push(char::from(digit));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Compacts raw JSON text as Go does when marshalling a `json.RawMessage`: whitespace
/// between tokens removed, `<` `>` `&` U+2028 U+2029 inside strings escaped, everything else
/// (including number spellings and key order) kept byte for byte. The input must be valid
/// JSON (invalid UTF-8 is first replaced as Go's decoder would, which Go's compactor does
/// not do; Psiphon's raw payloads are produced by Go and always valid UTF-8).
pub fn compact(raw: &[u8]) -> Result<String, JsonError> {
    // Validate first, so the scan below may assume well-formed input.
    from_slice(raw)?;
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
                out.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                c => out.push(c),
            }
        } else {
            match c {
                ' ' | '\t' | '\n' | '\r' => {}
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn float(f: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, f);
        s
    }

    #[test]
    fn floats_like_go() {
        assert_eq!(float(0.0), "0");
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(22.0), "22");
        assert_eq!(float(1500.0), "1500");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e-7), "1e-7");
        assert_eq!(float(0.000001), "0.000001");
        assert_eq!(float(1e21), "1e+21");
        assert_eq!(float(1e20), "100000000000000000000");
        assert_eq!(float(1.5e-10), "1.5e-10");
        assert_eq!(float(-2.5e300), "-2.5e+300");
        assert_eq!(float(12345678901234567890.0), "12345678901234567000");
        assert_eq!(float(5e-324), "5e-324");
    }

    #[test]
    fn strings_like_go() {
        let v = json!("<a>&\u{2028}\u{2029}\u{1}\u{7f}\u{8}\u{c}\n\r\t\"\\/é");
        assert_eq!(
            to_canonical_string(&v),
            "\"\\u003ca\\u003e\\u0026\\u2028\\u2029\\u0001\u{7f}\\b\\f\\n\\r\\t\\\"\\\\/é\""
        );
        assert_eq!(to_canonical_string(&json!("\u{1f}")), r#""\u001f""#);
    }

    #[test]
    fn sorted_and_ordered() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":[true,null,{"d":1,"c":2}],"B":0}"#).unwrap();
        assert_eq!(
            to_canonical_string(&v),
            r#"{"B":0,"a":[true,null,{"c":2,"d":1}],"b":1}"#
        );
        assert_eq!(
            to_ordered_string(&v),
            r#"{"b":1,"a":[true,null,{"d":1,"c":2}],"B":0}"#
        );
    }

    #[test]
    fn compact_keeps_spelling() {
        let raw = br#" { "b" : 1.0 , "a" : [ "x<y" , 1e2 ] , "s":"\"q\\" } "#;
        assert_eq!(
            compact(raw).unwrap(),
            r#"{"b":1.0,"a":["x\u003cy",1e2],"s":"\"q\\"}"#
        );
        assert!(compact(b"{").is_err());
    }
}
