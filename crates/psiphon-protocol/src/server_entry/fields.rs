//! The known server entry fields, their JSON types, and type checking.
//!
//! Go reads an entry into its `ServerEntry` struct, matching keys case-insensitively; a value
//! of the wrong JSON type fails that whole read. We check the same when an entry is decoded,
//! so the typed accessors never have to report a type error.

use serde_json::{Map, Value};

use crate::error::Error;

/// The JSON type of a known field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    Str,
    /// A TCP/UDP port: an integer in 0..=65535.
    Port,
    /// A non-fractional integer (fits i64).
    Int,
    Bool,
    StrArray,
}

/// Every field of tunnel-core's `ServerEntry` (section 4.2 of the notes), with its type.
pub(crate) const KNOWN_FIELDS: &[(&str, FieldType)] = &[
    ("tag", FieldType::Str),
    ("ipAddress", FieldType::Str),
    ("webServerPort", FieldType::Str),
    ("webServerSecret", FieldType::Str),
    ("webServerCertificate", FieldType::Str),
    ("sshPort", FieldType::Port),
    ("sshUsername", FieldType::Str),
    ("sshPassword", FieldType::Str),
    ("sshHostKey", FieldType::Str),
    ("sshObfuscatedPort", FieldType::Port),
    ("sshObfuscatedQUICPort", FieldType::Port),
    ("limitQUICVersions", FieldType::StrArray),
    ("sshObfuscatedTapdancePort", FieldType::Port),
    ("sshObfuscatedConjurePort", FieldType::Port),
    ("sshObfuscatedKey", FieldType::Str),
    ("sshShadowsocksPort", FieldType::Port),
    ("sshShadowsocksKey", FieldType::Str),
    ("capabilities", FieldType::StrArray),
    ("region", FieldType::Str),
    ("providerID", FieldType::Str),
    ("frontingProviderID", FieldType::Str),
    ("tlsOSSHPort", FieldType::Port),
    ("meekServerPort", FieldType::Port),
    ("meekCookieEncryptionPublicKey", FieldType::Str),
    ("meekObfuscatedKey", FieldType::Str),
    ("meekFrontingHost", FieldType::Str),
    ("meekFrontingHosts", FieldType::StrArray),
    ("meekFrontingDomain", FieldType::Str),
    ("meekFrontingAddresses", FieldType::StrArray),
    ("meekFrontingAddressesRegex", FieldType::Str),
    ("meekFrontingDisableSNI", FieldType::Bool),
    ("tacticsRequestPublicKey", FieldType::Str),
    ("tacticsRequestObfuscatedKey", FieldType::Str),
    ("configurationVersion", FieldType::Int),
    ("signature", FieldType::Str),
    ("disableHTTPTransforms", FieldType::Bool),
    ("disableObfuscatedQUICTransforms", FieldType::Bool),
    ("disableOSSHTransforms", FieldType::Bool),
    ("disableOSSHPrefix", FieldType::Bool),
    ("disableShadowsocksPrefix", FieldType::Bool),
    ("inproxySessionPublicKey", FieldType::Str),
    ("inproxySessionRootObfuscationSecret", FieldType::Str),
    ("inproxySSHPort", FieldType::Port),
    ("inproxyOSSHPort", FieldType::Port),
    ("inproxyQUICPort", FieldType::Port),
    ("inproxyMeekPort", FieldType::Port),
    ("inproxyTlsOSSHPort", FieldType::Port),
    ("inproxyShadowsocksPort", FieldType::Port),
    ("allowUpstreamProxy", FieldType::Bool),
    ("localSource", FieldType::Str),
    ("localTimestamp", FieldType::Str),
    ("isLocalDerivedTag", FieldType::Bool),
];

/// An integral JSON number as Go's struct decoding would accept it for an `int` field.
///
/// Go reads entries into a map (numbers become `float64`), re-marshals the map and decodes
/// that into its struct: so `22.0` or `2.2e1` is accepted as 22, while `22.5` and values
/// written in exponent form (beyond 1e21) are not.
pub(crate) fn as_integer(value: &Value) -> Option<i64> {
    if let Some(i) = value.as_i64() {
        return Some(i);
    }
    if value.is_u64() {
        return None; // beyond i64
    }
    let f = value.as_f64()?;
    // Display prints integral floats without a fraction or exponent; anything else fails.
    f.to_string().parse::<i64>().ok()
}

/// Checks the type of every key that names a known field (case-insensitively).
/// `null` is accepted everywhere and reads as absent, as in Go.
pub(crate) fn check_types(map: &Map<String, Value>) -> Result<(), Error> {
    for (key, value) in map {
        let Some((_, ty)) = KNOWN_FIELDS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
        else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        let problem = match ty {
            FieldType::Str => (!value.is_string()).then_some("expected a string"),
            FieldType::Port => match as_integer(value) {
                Some(p) if u16::try_from(p).is_ok() => None,
                Some(_) => Some("port out of range"),
                None => Some("expected an integer port"),
            },
            FieldType::Int => as_integer(value).is_none().then_some("expected an integer"),
            FieldType::Bool => (!value.is_boolean()).then_some("expected a boolean"),
            FieldType::StrArray => match value.as_array() {
                Some(items) if items.iter().all(|v| v.is_string() || v.is_null()) => None,
                _ => Some("expected an array of strings"),
            },
        };
        if let Some(reason) = problem {
            return Err(Error::InvalidEntryField {
                field: key.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// The value of field `name` as Go's struct decoding sees it: every key equal to `name`
/// ignoring ASCII case is assigned in turn, in sorted key order (Go re-marshals the map
/// before decoding), and `null` assigns nothing; so the last non-null value in sorted key
/// order wins. When only the exact spelling is present (the usual case) that is its value.
pub(crate) fn lookup<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .filter(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_null())
        .max_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()))
        .map(|(_, v)| v)
}
