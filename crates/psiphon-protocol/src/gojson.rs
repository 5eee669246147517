//! Go-compatible JSON: a parser that reads bytes as Go's `encoding/json` does (invalid UTF-8
//! and lone surrogates become U+FFFD) and encoders whose output is byte-identical to Go's
//! `json.Marshal`. Server entry signatures are computed over that output, so this is part of
//! the wire protocol, not a matter of style.
//!
//! The rules, as pinned by the known-answer vectors:
//!
//! * compact: no whitespace between tokens;
//! * map keys sorted bytewise ([`to_canonical_string`]); structs keep field order
//!   ([`to_ordered_string`]);
//! * strings: `"` and `\` as `\"` `\\`; `\b` `\f` `\n` `\r` `\t` short escapes; other
//!   control characters as `\u00XX` (lowercase hex); `<` `>` `&` as `\u003c` `\u003e`
//!   `\u0026`; U+2028 U+2029 as `\u2028` `\u2029`; `/`, DEL and all other non-ASCII raw;
//! * numbers are `float64`: the shortest decimal that round-trips, no fraction for integral
//!   values, exponent form (`1e+21`, `1e-7`) only below `1e-6` or from `1e21`.

mod decode;
mod encode;

pub use decode::{JsonError, MAX_DEPTH, from_slice};
pub(crate) use encode::{KeyOrder, write_value};
pub use encode::{compact, to_canonical_string, to_ordered_string};
