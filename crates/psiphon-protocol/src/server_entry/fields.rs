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
            FieldType::Port => match value.as_u64() {
                Some(p) if u16::try_from(p).is_ok() => None,
                Some(_) => Some("port out of range"),
                None if value.is_i64() => Some("port out of range"),
                None => Some("expected an integer port"),
            },
            FieldType::Int => (!value.is_i64() && !value.is_u64()).then_some("expected an integer"),
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

/// The value of field `name`: the exact key if present, otherwise the first key equal to it
/// ignoring ASCII case. `null` reads as absent.
pub(crate) fn lookup<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let value = match map.get(name) {
        Some(v) => Some(v),
        None => map
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
    };
    value.filter(|v| !v.is_null())
}
