//! Ed25519 server entry signatures and derived tags.
//!
//! The signed message is Go's canonical JSON of the entry without `signature`,
//! `localSource`, `localTimestamp`, `isLocalDerivedTag` and, when `isLocalDerivedTag` is
//! true, `tag`. The `signature` field is base64 of the first 8 bytes of SHA-256 of the
//! public key (the key ID) followed by the 64-byte signature. Keys are standard base64: the
//! 32-byte public key, and Go's 64-byte private key (seed followed by public key).

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use aws_lc_rs::{digest, hmac, rand};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use super::{
    FIELD_IS_LOCAL_DERIVED_TAG, FIELD_LOCAL_SOURCE, FIELD_LOCAL_TIMESTAMP, FIELD_SIGNATURE,
    FIELD_TAG, ServerEntry,
};
use crate::error::{Error, Result};
use crate::gojson;

/// Length of the key ID that prefixes the signature.
pub const SIGNATURE_KEY_ID_LEN: usize = 8;
const PUBLIC_KEY_LEN: usize = 32;
const PRIVATE_KEY_LEN: usize = 64;
const SIGNATURE_LEN: usize = 64;

/// Go's `base64.StdEncoding`: padded, but lenient about non-zero trailing bits.
const GO_STD_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Decodes standard base64 as Go does, reporting errors as Go's "illegal base64 data at
/// input byte N". Go skips `\r` and `\n` in the input; so do we.
pub(crate) fn go_base64_decode(which: &'static str, text: &str) -> Result<Vec<u8>> {
    let cleaned: String = text.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    GO_STD_BASE64.decode(cleaned.as_bytes()).map_err(|e| {
        let offset = match e {
            base64::DecodeError::InvalidByte(offset, _)
            | base64::DecodeError::InvalidLastSymbol(offset, _) => offset,
            // Go reports a truncated final quantum at the input's length (rounded down to
            // the last complete quantum, which is what our length reports closely enough).
            base64::DecodeError::InvalidLength(len) => len,
            base64::DecodeError::InvalidPadding => cleaned.find('=').unwrap_or(cleaned.len()),
        };
        Error::Base64 { which, offset }
    })
}

fn key_id(public_key: &[u8]) -> [u8; SIGNATURE_KEY_ID_LEN] {
    let digest = digest::digest(&digest::SHA256, public_key);
    let mut id = [0u8; SIGNATURE_KEY_ID_LEN];
    for (dst, src) in id.iter_mut().zip(digest.as_ref()) {
        *dst = *src;
    }
    id
}

/// An Ed25519 key for signing server entries.
pub struct ServerEntrySigningKey {
    seed: [u8; 32],
    public: [u8; PUBLIC_KEY_LEN],
    pair: Ed25519KeyPair,
}

impl Drop for ServerEntrySigningKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

impl std::fmt::Debug for ServerEntrySigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerEntrySigningKey")
            .field("public", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl ServerEntrySigningKey {
    /// A new random key.
    pub fn generate() -> Result<ServerEntrySigningKey> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::fill(seed.as_mut_slice()).map_err(|_| Error::Crypto("random generator failed"))?;
        ServerEntrySigningKey::from_seed(*seed)
    }

    /// The key whose 32-byte seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Result<ServerEntrySigningKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| Error::Crypto("Ed25519 seed rejected"))?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        let derived = pair.public_key().as_ref();
        if derived.len() != PUBLIC_KEY_LEN {
            return Err(Error::Crypto("unexpected Ed25519 public key size"));
        }
        public.copy_from_slice(derived);
        Ok(ServerEntrySigningKey { seed, public, pair })
    }

    /// Parses Go's base64 private key (64 bytes: seed then public key). The public half must
    /// be the seed's public key.
    pub fn from_base64(private_key: &str) -> Result<ServerEntrySigningKey> {
        let bytes = zeroize::Zeroizing::new(go_base64_decode("private key", private_key)?);
        if bytes.len() != PRIVATE_KEY_LEN {
            return Err(Error::InvalidPrivateKeyLength(bytes.len()));
        }
        let (seed_bytes, public_bytes) = bytes.split_at(32);
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(seed_bytes);
        let key = ServerEntrySigningKey::from_seed(*seed)?;
        Ed25519KeyPair::from_seed_and_public_key(seed_bytes, public_bytes)
            .map_err(|_| Error::KeyMismatch)?;
        if key.public.as_slice() != public_bytes {
            return Err(Error::KeyMismatch);
        }
        Ok(key)
    }

    /// Parses a key pair given as tunnel-core's signer takes it (base64 public and private
    /// keys), checking that they belong together.
    pub fn from_base64_pair(public_key: &str, private_key: &str) -> Result<ServerEntrySigningKey> {
        let public = go_base64_decode("public key", public_key)?;
        if public.len() != PUBLIC_KEY_LEN {
            return Err(Error::InvalidPublicKeyLength(public.len()));
        }
        let key = ServerEntrySigningKey::from_base64(private_key)?;
        if key.public.as_slice() != public.as_slice() {
            return Err(Error::KeyMismatch);
        }
        Ok(key)
    }

    /// The public key, standard base64 (the client's `ServerEntrySignaturePublicKey`).
    pub fn public_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.public)
    }

    /// Go's private key form, standard base64 of seed followed by public key. Secret: the
    /// caller owns (and should wipe) the returned string.
    pub fn private_key_base64(&self) -> String {
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(PRIVATE_KEY_LEN));
        bytes.extend_from_slice(&self.seed);
        bytes.extend_from_slice(&self.public);
        base64::engine::general_purpose::STANDARD.encode(bytes.as_slice())
    }

    /// The 8-byte key ID carried in signatures.
    pub fn key_id(&self) -> [u8; SIGNATURE_KEY_ID_LEN] {
        key_id(&self.public)
    }

    /// The `signature` field value for `message`.
    fn signature_field(&self, message: &[u8]) -> String {
        let signature = self.pair.sign(message);
        let mut bytes = Vec::with_capacity(SIGNATURE_KEY_ID_LEN + SIGNATURE_LEN);
        bytes.extend_from_slice(&self.key_id());
        bytes.extend_from_slice(signature.as_ref());
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

/// The derived tag of a server entry: base64(HMAC-SHA256(key = webServerSecret, ipAddress)).
pub fn generate_server_entry_tag(ip_address: &str, web_server_secret: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, web_server_secret.as_bytes());
    let tag = hmac::sign(&key, ip_address.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// The log-friendly prefix of a tag: its first 8 characters, or `<unknown>` if shorter.
pub fn diagnostic_id(tag: &str) -> String {
    tag.get(..8).unwrap_or("<unknown>").to_owned()
}

impl ServerEntry {
    /// The exact bytes that are signed: Go's canonical JSON of the entry without the
    /// unsigned fields (see the module notes).
    pub fn signed_message(&self) -> String {
        let mut fields = self.fields.clone();
        let derived_tag = fields
            .get(FIELD_IS_LOCAL_DERIVED_TAG)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for name in [
            FIELD_SIGNATURE,
            FIELD_LOCAL_SOURCE,
            FIELD_LOCAL_TIMESTAMP,
            FIELD_IS_LOCAL_DERIVED_TAG,
        ] {
            fields.remove(name);
        }
        if derived_tag {
            fields.remove(FIELD_TAG);
        }
        gojson::to_canonical_string(&Value::Object(fields))
    }

    /// Signs the entry, replacing any `signature` field (appended last, so that
    /// [`ServerEntry::encode`] keeps the other fields where they were).
    pub fn sign(&mut self, key: &ServerEntrySigningKey) {
        let field = key.signature_field(self.signed_message().as_bytes());
        self.fields.shift_remove(FIELD_SIGNATURE);
        self.fields
            .insert(FIELD_SIGNATURE.to_owned(), Value::String(field));
    }

    /// Verifies the `signature` field against `public_key` (standard base64 of the 32-byte
    /// Ed25519 public key). The checks and their errors follow tunnel-core's order.
    pub fn verify_signature(&self, public_key: &str) -> Result<()> {
        if public_key.is_empty() {
            return Err(Error::MissingPublicKey);
        }
        let field = self
            .fields
            .get(FIELD_SIGNATURE)
            .ok_or(Error::MissingSignature)?;
        let field = field.as_str().ok_or(Error::InvalidSignatureField)?;
        verify_signed_message(public_key, field, self.signed_message().as_bytes())
    }
}

/// Verifies a `signature` field value over an already built signed message (see
/// [`ServerEntry::signed_message`]), with tunnel-core's checks and errors.
pub fn verify_signed_message(
    public_key: &str,
    signature_field: &str,
    message: &[u8],
) -> Result<()> {
    if public_key.is_empty() {
        return Err(Error::MissingPublicKey);
    }
    let decoded = go_base64_decode("signature", signature_field)?;
    if decoded.len() < SIGNATURE_KEY_ID_LEN {
        return Err(Error::InvalidSignatureFieldLength);
    }
    let (id, signature) = decoded.split_at(SIGNATURE_KEY_ID_LEN);
    if signature.len() != SIGNATURE_LEN {
        return Err(Error::InvalidSignatureLength);
    }
    let public = go_base64_decode("public key", public_key)?;
    if key_id(&public).as_slice() != id {
        return Err(Error::UnexpectedPublicKeyId);
    }
    if public.len() != PUBLIC_KEY_LEN {
        return Err(Error::InvalidPublicKeyLength(public.len()));
    }
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(message, signature)
        .map_err(|_| Error::InvalidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sign_verify_and_keys() {
        let key = ServerEntrySigningKey::generate().unwrap();
        let again = ServerEntrySigningKey::from_base64(&key.private_key_base64()).unwrap();
        assert_eq!(again.public_key_base64(), key.public_key_base64());
        ServerEntrySigningKey::from_base64_pair(
            &key.public_key_base64(),
            &key.private_key_base64(),
        )
        .unwrap();
        let other = ServerEntrySigningKey::generate().unwrap();
        assert!(matches!(
            ServerEntrySigningKey::from_base64_pair(
                &other.public_key_base64(),
                &key.private_key_base64()
            ),
            Err(Error::KeyMismatch)
        ));

        let Value::Object(map) = json!({"ipAddress": "192.0.2.1", "localSource": "EMBEDDED"})
        else {
            unreachable!()
        };
        let mut entry = ServerEntry::from_fields(map).unwrap();
        assert!(matches!(
            entry.verify_signature(&key.public_key_base64()),
            Err(Error::MissingSignature)
        ));
        entry.sign(&key);
        entry.verify_signature(&key.public_key_base64()).unwrap();
        assert!(matches!(
            entry.verify_signature(""),
            Err(Error::MissingPublicKey)
        ));
        assert!(matches!(
            entry.verify_signature(&other.public_key_base64()),
            Err(Error::UnexpectedPublicKeyId)
        ));
        // Local fields are not signed.
        entry.set_local_timestamp("2026-01-01T00:00:00Z");
        entry.verify_signature(&key.public_key_base64()).unwrap();
        entry.set("region", json!("NL")).unwrap();
        assert!(matches!(
            entry.verify_signature(&key.public_key_base64()),
            Err(Error::InvalidSignature)
        ));
    }

    #[test]
    fn private_key_errors() {
        assert!(matches!(
            ServerEntrySigningKey::from_base64("AAAA"),
            Err(Error::InvalidPrivateKeyLength(3))
        ));
        assert!(matches!(
            ServerEntrySigningKey::from_base64("!"),
            Err(Error::Base64 {
                which: "private key",
                offset: 0
            })
        ));
        let key = ServerEntrySigningKey::generate().unwrap();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(key.private_key_base64())
            .unwrap();
        bytes[40] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(matches!(
            ServerEntrySigningKey::from_base64(&tampered),
            Err(Error::KeyMismatch)
        ));
    }

    #[test]
    fn diagnostic_ids() {
        assert_eq!(diagnostic_id("9Z8IPJUherZeV3JZ"), "9Z8IPJUh");
        assert_eq!(diagnostic_id("short"), "<unknown>");
    }
}
