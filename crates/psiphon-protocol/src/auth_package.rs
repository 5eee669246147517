//! Authenticated data packages: the signed container of remote server lists (and of OSL files
//! and upgrades in tunnel-core).
//!
//! A package is the JSON object `{"data": <string>, "signingPublicKeyDigest": <base64>,
//! "signature": <base64>}`, in that order, written with Go's `encoding/json` escaping, and for
//! remote server lists compressed with zlib (RFC 1950).
//!
//! * The key is RSA. psi_ops makes 4096-bit keys with public exponent 3; the client is given
//!   base64 of the DER SubjectPublicKeyInfo (`RemoteServerListSignaturePublicKey`).
//! * `signingPublicKeyDigest` is SHA-256 of that **base64 text**, not of the DER bytes.
//! * `signature` is RSASSA-PKCS1-v1_5 with SHA-256 over the UTF-8 bytes of `data`.
//!
//! Two readers, as in tunnel-core. [`open_package`] reads a whole package in memory and
//! accepts every JSON escape. [`verify_stream`] and [`DataReader`] read a package of any size
//! in two passes with bounded memory; they understand only the `\n` escape inside `data`,
//! which is all a server list needs (see the `stream` module notes).
//!
//! Key generation uses the RustCrypto `rsa` crate, because aws-lc-rs only makes keys with
//! exponent 65537; aws-lc-rs signs and verifies, exponent 3 included.

mod stream;
mod zlib;

use std::io::{Read as _, Write as _};

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use serde_json::Value;
use zeroize::Zeroizing;

pub use stream::{DataReader, verify_stream};
pub use zlib::ZlibReader;

use crate::error::{Error, Result};
use crate::gojson;
use crate::server_entry::go_base64_decode;

pub(crate) const FIELD_DATA: &str = "data";
pub(crate) const FIELD_DIGEST: &str = "signingPublicKeyDigest";
pub(crate) const FIELD_SIGNATURE: &str = "signature";

/// The key size psi_ops uses for remote server list keys.
pub const DEFAULT_KEY_BITS: usize = 4096;
/// The public exponent psi_ops uses.
pub const PUBLIC_EXPONENT: u32 = 3;
/// The smallest and largest RSA keys accepted (aws-lc-rs' limits).
pub const KEY_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

const VERIFY: &signature::RsaParameters = &signature::RSA_PKCS1_2048_8192_SHA256;

/// SHA-256 of the base64 text of a public key: the package's `signingPublicKeyDigest`.
pub fn public_key_digest(public_key_b64: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, public_key_b64.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// An RSA private key that signs packages.
pub struct PackageSigningKey {
    pair: RsaKeyPair,
    pkcs1: Zeroizing<Vec<u8>>,
    public_b64: String,
}

impl std::fmt::Debug for PackageSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageSigningKey")
            .field("bits", &self.modulus_bits())
            .field("public", &self.public_b64)
            .finish_non_exhaustive()
    }
}

impl PackageSigningKey {
    /// A new key of `bits` bits (2048 to 8192) with public exponent 3, as psi_ops makes them
    /// ([`DEFAULT_KEY_BITS`]). A 4096-bit key takes a few seconds.
    ///
    /// # Errors
    /// [`Error::PackageSigningKey`] for a size out of range, [`Error::Crypto`] if generation
    /// fails.
    pub fn generate(bits: usize) -> Result<PackageSigningKey> {
        if !KEY_BITS.contains(&bits) {
            return Err(Error::PackageSigningKey(format!(
                "{bits}-bit keys are not supported; use {} to {} bits",
                KEY_BITS.start(),
                KEY_BITS.end()
            )));
        }
        let exponent = rsa::BigUint::from(PUBLIC_EXPONENT);
        let key = rsa::RsaPrivateKey::new_with_exp(&mut rsa::rand_core::OsRng, bits, &exponent)
            .map_err(|_| Error::Crypto("RSA key generation failed"))?;
        let der = key
            .to_pkcs1_der()
            .map_err(|_| Error::Crypto("RSA key encoding failed"))?;
        PackageSigningKey::from_pkcs1_der(der.as_bytes())
    }

    /// Parses a DER PKCS#1 `RSAPrivateKey` (what Go's `x509.MarshalPKCS1PrivateKey` writes).
    ///
    /// # Errors
    /// [`Error::PackageSigningKey`] if it is not an RSA private key of 2048 to 8192 bits.
    pub fn from_pkcs1_der(der: &[u8]) -> Result<PackageSigningKey> {
        let pair = RsaKeyPair::from_der(der).map_err(|e| {
            Error::PackageSigningKey(format!(
                "not a PKCS#1 RSA private key of 2048 to 8192 bits: {e}"
            ))
        })?;
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| Error::Crypto("RSA public key encoding failed"))?;
        Ok(PackageSigningKey {
            public_b64: STANDARD.encode(spki.as_ref()),
            pair,
            pkcs1: Zeroizing::new(der.to_vec()),
        })
    }

    /// Parses standard base64 of the PKCS#1 DER (tunnel-core's
    /// `GenerateAuthenticatedDataPackageKeys` private key form).
    ///
    /// # Errors
    /// [`Error::Base64`] or as [`PackageSigningKey::from_pkcs1_der`].
    pub fn from_base64(private_key_b64: &str) -> Result<PackageSigningKey> {
        let der = Zeroizing::new(go_base64_decode("private key", private_key_b64)?);
        PackageSigningKey::from_pkcs1_der(&der)
    }

    /// The DER PKCS#1 `RSAPrivateKey`.
    pub fn to_pkcs1_der(&self) -> Zeroizing<Vec<u8>> {
        self.pkcs1.clone()
    }

    /// Standard base64 of [`PackageSigningKey::to_pkcs1_der`].
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.pkcs1.as_slice()))
    }

    /// Base64 of the DER SubjectPublicKeyInfo: the client's
    /// `RemoteServerListSignaturePublicKey`.
    pub fn public_key_base64(&self) -> String {
        self.public_b64.clone()
    }

    /// The modulus size in bits.
    pub fn modulus_bits(&self) -> usize {
        self.pair.public_modulus_len() * 8
    }

    /// The public exponent (big-endian, without leading zeros).
    pub fn public_exponent(&self) -> Vec<u8> {
        self.pair
            .public_key()
            .exponent()
            .big_endian_without_leading_zero()
            .to_vec()
    }

    /// The package JSON, uncompressed: `{"data":..,"signingPublicKeyDigest":..,"signature":..}`
    /// with Go's escaping.
    ///
    /// # Errors
    /// [`Error::Crypto`] if signing fails.
    pub fn sign_package_uncompressed(&self, data: &str) -> Result<Vec<u8>> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                data.as_bytes(),
                &mut signature,
            )
            .map_err(|_| Error::Crypto("RSA signing failed"))?;
        let mut package = serde_json::Map::new();
        package.insert(FIELD_DATA.to_owned(), Value::String(data.to_owned()));
        package.insert(
            FIELD_DIGEST.to_owned(),
            Value::String(STANDARD.encode(public_key_digest(&self.public_b64))),
        );
        package.insert(
            FIELD_SIGNATURE.to_owned(),
            Value::String(STANDARD.encode(&signature)),
        );
        Ok(gojson::to_ordered_string(&Value::Object(package)).into_bytes())
    }

    /// The package as remote server lists are published: the JSON of
    /// [`PackageSigningKey::sign_package_uncompressed`], zlib-compressed.
    ///
    /// # Errors
    /// As [`PackageSigningKey::sign_package_uncompressed`].
    pub fn sign_package(&self, data: &str) -> Result<Vec<u8>> {
        let json = self.sign_package_uncompressed(data)?;
        let mut z = flate2::write::ZlibEncoder::new(
            Vec::with_capacity(json.len() / 2),
            flate2::Compression::default(),
        );
        z.write_all(&json)
            .and_then(|()| z.finish())
            .map_err(|_| Error::Crypto("zlib compression failed"))
    }
}

/// A verifying key: DER and the digest of its base64 text.
#[derive(Debug)]
pub(crate) struct PublicKey {
    der: Vec<u8>,
    digest: [u8; 32],
}

impl PublicKey {
    pub(crate) fn parse(public_key_b64: &str) -> Result<PublicKey> {
        if public_key_b64.is_empty() {
            return Err(Error::PackagePublicKey("no public key given".to_owned()));
        }
        let der = go_base64_decode("public key", public_key_b64)
            .map_err(|e| Error::PackagePublicKey(format!("not base64: {e}")))?;
        aws_lc_rs::rsa::PublicKey::from_der(&der).map_err(|e| {
            Error::PackagePublicKey(format!("not an RSA SubjectPublicKeyInfo: {e}"))
        })?;
        UnparsedPublicKey::new(VERIFY, &der)
            .parse()
            .map_err(|e| Error::PackagePublicKey(format!("unusable RSA key: {e}")))?;
        Ok(PublicKey {
            digest: public_key_digest(public_key_b64),
            der,
        })
    }

    pub(crate) fn verify_digest(&self, d: &digest::Digest, signature: &[u8]) -> Result<()> {
        UnparsedPublicKey::new(VERIFY, &self.der)
            .verify_digest(d, signature)
            .map_err(|_| Error::PackageSignature)
    }
}

pub(crate) fn decode_digest(text: &str) -> Result<Vec<u8>> {
    go_base64_decode("package key digest", text)
}

pub(crate) fn decode_signature(text: &str) -> Result<Vec<u8>> {
    go_base64_decode("package signature", text)
}

pub(crate) fn check_digest(key: &PublicKey, digest_field: &[u8]) -> Result<()> {
    if digest_field == key.digest.as_slice() {
        Ok(())
    } else {
        Err(Error::PackageKeyDigest)
    }
}

/// Opens a zlib-compressed package held in memory and returns its verified `data`.
///
/// # Errors
/// [`Error::PackageNotZlib`], [`Error::PackageTruncated`], [`Error::PackageCorrupt`] for bad
/// compression; otherwise as [`open_package_uncompressed`].
pub fn open_package(compressed: &[u8], public_key_b64: &str) -> Result<String> {
    let mut json = Vec::new();
    ZlibReader::new(compressed)
        .read_to_end(&mut json)
        .map_err(zlib::from_io)?;
    open_package_uncompressed(&json, public_key_b64)
}

fn field<'a>(map: &'a serde_json::Map<String, Value>, name: &'static str) -> Result<&'a Value> {
    // Go's struct decoding: the exact name, else a case-insensitive match.
    map.get(name)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
        .ok_or(Error::PackageMissingField(name))
}

fn string_field<'a>(
    map: &'a serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<&'a str> {
    field(map, name)?
        .as_str()
        .ok_or_else(|| Error::PackageJson {
            offset: 0,
            reason: format!("{name:?} is not a string"),
        })
}

/// Opens an uncompressed package JSON held in memory (every JSON escape accepted, fields
/// matched as Go's `encoding/json` matches them) and returns its verified `data`.
///
/// # Errors
/// [`Error::PackagePublicKey`], [`Error::PackageJson`], [`Error::PackageMissingField`],
/// [`Error::Base64`], [`Error::PackageKeyDigest`] (another key signed it),
/// [`Error::PackageSignature`] (the data was altered).
pub fn open_package_uncompressed(package_json: &[u8], public_key_b64: &str) -> Result<String> {
    let value = gojson::from_slice(package_json).map_err(|e| Error::PackageJson {
        offset: u64::try_from(e.offset).unwrap_or(u64::MAX),
        reason: e.reason.to_owned(),
    })?;
    let Value::Object(map) = value else {
        return Err(Error::PackageJson {
            offset: 0,
            reason: "not a JSON object".to_owned(),
        });
    };
    let data = string_field(&map, FIELD_DATA)?;
    let digest_field = decode_digest(string_field(&map, FIELD_DIGEST)?)?;
    let signature_field = decode_signature(string_field(&map, FIELD_SIGNATURE)?)?;
    let key = PublicKey::parse(public_key_b64)?;
    check_digest(&key, &digest_field)?;
    let d = digest::digest(&digest::SHA256, data.as_bytes());
    key.verify_digest(&d, &signature_field)?;
    Ok(data.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_exponent_3_and_sign_with_aws_lc() {
        let key = PackageSigningKey::generate(2048).unwrap();
        assert_eq!(key.public_exponent(), vec![3]);
        assert_eq!(key.modulus_bits(), 2048);
        let again = PackageSigningKey::from_pkcs1_der(&key.to_pkcs1_der()).unwrap();
        assert_eq!(again.public_key_base64(), key.public_key_base64());
        let again = PackageSigningKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(again.public_key_base64(), key.public_key_base64());
        let package = key.sign_package("a\nb").unwrap();
        assert_eq!(
            open_package(&package, &key.public_key_base64()).unwrap(),
            "a\nb"
        );
        // The RustCrypto verifier agrees that aws-lc-rs signed with the e=3 key.
        use rsa::pkcs8::DecodePublicKey as _;
        let public = rsa::RsaPublicKey::from_public_key_der(
            &STANDARD.decode(key.public_key_base64()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            rsa::traits::PublicKeyParts::e(&public),
            &rsa::BigUint::from(3u32)
        );
        let json = key.sign_package_uncompressed("hello").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let sig = STANDARD.decode(v["signature"].as_str().unwrap()).unwrap();
        let hashed = digest::digest(&digest::SHA256, b"hello");
        public
            .verify(
                rsa::Pkcs1v15Sign::new_unprefixed(),
                &sha256_digest_info(hashed.as_ref()),
                &sig,
            )
            .unwrap();
    }

    /// The DER DigestInfo prefix for SHA-256 followed by the hash.
    fn sha256_digest_info(hash: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ];
        v.extend_from_slice(hash);
        v
    }

    #[test]
    fn key_sizes_out_of_range_are_refused() {
        assert!(matches!(
            PackageSigningKey::generate(1024),
            Err(Error::PackageSigningKey(_))
        ));
        assert!(matches!(
            PackageSigningKey::from_pkcs1_der(b"not a key"),
            Err(Error::PackageSigningKey(_))
        ));
        assert!(matches!(
            PublicKey::parse("bm90IGEga2V5"),
            Err(Error::PackagePublicKey(_))
        ));
        assert!(matches!(
            PublicKey::parse(""),
            Err(Error::PackagePublicKey(_))
        ));
    }
}
