//! The crate's error type and the kind that says who is at fault.

use crate::gojson::JsonError;

/// Who is at fault for an [`Error`], and where. The controller's fallback logic reads it.
///
/// In this crate (formats only, no I/O) most errors are either:
///
/// * [`ErrorKind::Remote`]: bytes that came from elsewhere (a server entry in a list, a
///   handshake response, a client's API request or SSH password) are malformed or fail
///   verification. Skip that item or reject that peer; retrying the same bytes won't help.
/// * [`ErrorKind::Config`]: something the operator or the caller configured is unusable: a
///   signing key that isn't valid base64 or has the wrong length, an unknown tunnel protocol
///   name, asking a server entry for a protocol it doesn't offer.
///
/// [`ErrorKind::Internal`] is used when the system random number generator or the crypto
/// library fails, which should never happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something on this machine failed (network down, disk full).
    Local,
    /// The network between us and the peer looks censored.
    Blocked,
    /// The server understood us and said no.
    ServerRejected,
    /// The peer (or the data it sent) is malformed or misbehaving.
    Remote,
    /// Our configuration or the caller's input is invalid.
    Config,
    /// A bug or an impossible state in this program.
    Internal,
}

/// Errors of `psiphon-protocol`.
///
/// The messages of the signature errors are exactly tunnel-core's (without its trace
/// prefixes), so that they can be compared with the known-answer vectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JSON document could not be parsed.
    #[error("{what}: {source}")]
    Json {
        /// What was being parsed ("server entry", "handshake response", ...).
        what: &'static str,
        /// Where and why parsing failed.
        #[source]
        source: JsonError,
    },
    /// A JSON document parsed but has the wrong shape (e.g. not an object).
    #[error("{what}: {reason}")]
    JsonShape {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An encoded server entry is not valid hex.
    #[error("server entry is not valid hex: {source}")]
    EntryHex {
        /// The hex decoder's complaint.
        #[source]
        source: hex::FromHexError,
    },
    /// An encoded server entry has fewer than the five space-separated fields.
    #[error("invalid encoded server entry")]
    EntryPrefix,
    /// A server entry's `ipAddress` is missing or does not parse.
    #[error("server entry has invalid ipAddress: {0}")]
    InvalidIpAddress(String),
    /// A known server entry field has the wrong JSON type or value.
    #[error("server entry field {field}: {reason}")]
    InvalidEntryField {
        /// The field's name as it appears in the entry.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// One line of a server entry list is longer than [`crate::MAX_LIST_LINE_BYTES`].
    #[error("server entry list line {line} is {len} bytes, more than the maximum")]
    ListLineTooLong {
        /// 1-based line number.
        line: usize,
        /// Its length in bytes.
        len: usize,
    },

    /// An unknown tunnel protocol name.
    #[error("unknown tunnel protocol: {0}")]
    UnknownTunnelProtocol(String),
    /// A server entry does not offer the requested tunnel protocol.
    #[error("protocol not supported: {0}")]
    ProtocolNotSupported(&'static str),
    /// A server entry offers the protocol but has no port for it.
    #[error("server entry has no dial port for {0}")]
    MissingDialPort(&'static str),

    /// `VerifySignature` was given no public key.
    #[error("missing public key")]
    MissingPublicKey,
    /// The server entry has no `signature` field.
    #[error("missing signature field")]
    MissingSignature,
    /// The `signature` field is not a string.
    #[error("invalid signature field")]
    InvalidSignatureField,
    /// The `signature` field (or a key) is not standard base64.
    #[error("illegal base64 data at input byte {offset}")]
    Base64 {
        /// Which value: "signature", "public key", "private key".
        which: &'static str,
        /// Offset of the first offending byte, as tunnel-core reports it.
        offset: usize,
    },
    /// The decoded `signature` field is shorter than the 8-byte key ID.
    #[error("invalid signature field length")]
    InvalidSignatureFieldLength,
    /// The Ed25519 signature after the key ID is not 64 bytes.
    #[error("invalid signature length")]
    InvalidSignatureLength,
    /// The signature's key ID is not that of the given public key.
    #[error("unexpected public key ID")]
    UnexpectedPublicKeyId,
    /// The public key does not decode to 32 bytes.
    #[error("invalid public key length: {0}")]
    InvalidPublicKeyLength(usize),
    /// The private key does not decode to 64 bytes (seed followed by public key).
    #[error("invalid private key length: {0}")]
    InvalidPrivateKeyLength(usize),
    /// The private key's public half is not the public key of its seed (or of the given
    /// public key).
    #[error("private key does not match its public key")]
    KeyMismatch,
    /// The Ed25519 signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,

    /// An SSH password is neither the JSON payload nor the legacy session-ID-plus-password form.
    #[error("invalid password payload")]
    InvalidPasswordPayload,
    /// A session ID is not 32 hex digits.
    #[error("invalid session ID")]
    InvalidSessionId,
    /// A sponsor ID is not 16 hex digits.
    #[error("invalid sponsor ID")]
    InvalidSponsorId,

    /// A required API request parameter is absent (or null).
    #[error("missing param: {0}")]
    MissingParam(String),
    /// An API request parameter has the wrong JSON type.
    #[error("unexpected {expected} param type: {name}")]
    ParamType {
        /// The parameter's name.
        name: String,
        /// "string", "array", "object".
        expected: &'static str,
    },
    /// An API request parameter's value is invalid.
    #[error("invalid param: {name}: {value}")]
    InvalidParam {
        /// The parameter's name.
        name: String,
        /// The offending value (for arrays, the offending element).
        value: String,
    },

    /// A packed-CBOR API request body is malformed (or, encoding, has a parameter with no
    /// packed key).
    #[error(transparent)]
    PackedParams(#[from] crate::api::PackedError),
    /// A CBOR API response is malformed.
    #[error("{what}: {source}")]
    Cbor {
        /// What was being parsed.
        what: &'static str,
        /// Why.
        #[source]
        source: crate::api::cbor::CborError,
    },

    /// An authenticated data package's compressed bytes do not start a zlib stream.
    #[error("authenticated package is not zlib data: {0}")]
    PackageNotZlib(String),
    /// An authenticated data package's zlib stream ends before its end marker and checksum.
    #[error("authenticated package is truncated: the zlib stream ends early")]
    PackageTruncated,
    /// An authenticated data package's zlib stream is damaged (bad deflate data or checksum).
    #[error("authenticated package is corrupt: {0}")]
    PackageCorrupt(String),
    /// An authenticated data package is not the JSON object it should be.
    #[error("authenticated package JSON at byte {offset}: {reason}")]
    PackageJson {
        /// Offset in the decompressed JSON where parsing stopped.
        offset: u64,
        /// What is wrong (tunnel-core's text where it has one, e.g. "unsupported escaped
        /// character").
        reason: String,
    },
    /// An authenticated data package lacks one of its three fields.
    #[error("authenticated package: missing expected field {0:?}")]
    PackageMissingField(&'static str),
    /// The package's `signingPublicKeyDigest` is not the digest of the configured public key:
    /// it was signed with another key.
    #[error(
        "authenticated package: unexpected signing public key digest (the package was signed \
         with a different key than the configured public key)"
    )]
    PackageKeyDigest,
    /// The package's RSA signature does not verify: its data was altered.
    #[error(
        "authenticated package: crypto/rsa: verification error (the data does not match \
         its signature: altered or corrupted)"
    )]
    PackageSignature,
    /// The configured package public key is unusable (not base64 of an RSA
    /// SubjectPublicKeyInfo of 2048 to 8192 bits).
    #[error("authenticated package public key: {0}")]
    PackagePublicKey(String),
    /// A package signing (RSA private) key is unusable.
    #[error("authenticated package signing key: {0}")]
    PackageSigningKey(String),
    /// Reading the package failed.
    #[error("reading authenticated package: {0}")]
    PackageRead(#[source] std::io::Error),

    /// The crypto library or the system random number generator failed.
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
}

impl Error {
    /// Who is at fault; see [`ErrorKind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Json { .. }
            | Error::JsonShape { .. }
            | Error::EntryHex { .. }
            | Error::EntryPrefix
            | Error::InvalidIpAddress(_)
            | Error::InvalidEntryField { .. }
            | Error::ListLineTooLong { .. }
            | Error::MissingSignature
            | Error::InvalidSignatureField
            | Error::InvalidSignatureFieldLength
            | Error::InvalidSignatureLength
            | Error::UnexpectedPublicKeyId
            | Error::InvalidSignature
            | Error::InvalidPasswordPayload
            | Error::InvalidSessionId
            | Error::InvalidSponsorId
            | Error::MissingParam(_)
            | Error::ParamType { .. }
            | Error::InvalidParam { .. }
            | Error::PackedParams(_)
            | Error::Cbor { .. }
            | Error::PackageNotZlib(_)
            | Error::PackageTruncated
            | Error::PackageCorrupt(_)
            | Error::PackageJson { .. }
            | Error::PackageMissingField(_)
            | Error::PackageKeyDigest
            | Error::PackageSignature => ErrorKind::Remote,
            Error::PackageRead(_) => ErrorKind::Local,
            // A bad signature field is the entry's fault; a bad key is the configuration's.
            Error::Base64 { which, .. } => {
                if matches!(
                    *which,
                    "signature" | "package signature" | "package key digest"
                ) {
                    ErrorKind::Remote
                } else {
                    ErrorKind::Config
                }
            }
            // The entry claims the capability but lacks the port: the entry is malformed.
            Error::MissingDialPort(_) => ErrorKind::Remote,
            Error::UnknownTunnelProtocol(_)
            | Error::ProtocolNotSupported(_)
            | Error::MissingPublicKey
            | Error::InvalidPublicKeyLength(_)
            | Error::InvalidPrivateKeyLength(_)
            | Error::KeyMismatch
            | Error::PackagePublicKey(_)
            | Error::PackageSigningKey(_) => ErrorKind::Config,
            Error::Crypto(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn json(what: &'static str) -> impl FnOnce(JsonError) -> Error {
        move |source| Error::Json { what, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
