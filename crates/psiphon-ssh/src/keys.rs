//! Host and user keys: Ed25519 and RSA, their SSH wire blobs, signing and verification.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, RsaKeyPair, UnparsedPublicKey};
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::wire::{Reader, WriteExt};

/// A public key in SSH wire form (`string type || key fields`), as servers present it and as
/// Psiphon server entries carry it (base64 in `sshHostKey`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    blob: Vec<u8>,
    kind: KeyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyKind {
    Ed25519,
    Rsa,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_type())
    }
}

impl PublicKey {
    /// Parses an SSH public key blob. Certificates and other types are refused.
    pub fn from_blob(blob: &[u8]) -> Result<Self> {
        let mut r = Reader::new(blob);
        let kind = match r.string()? {
            b"ssh-ed25519" => {
                if r.string()?.len() != 32 {
                    return Err(Error::protocol("ed25519 key length"));
                }
                KeyKind::Ed25519
            }
            b"ssh-rsa" => {
                let e = r.mpint_positive()?;
                let n = r.mpint_positive()?;
                if e.is_empty() || n.len() < 128 {
                    return Err(Error::protocol("rsa key too small"));
                }
                KeyKind::Rsa
            }
            other => {
                return Err(Error::protocol(format!(
                    "unsupported key type {}",
                    crate::error::sanitize(other)
                )));
            }
        };
        if !r.is_empty() {
            return Err(Error::protocol("trailing bytes in key blob"));
        }
        Ok(PublicKey {
            blob: blob.to_vec(),
            kind,
        })
    }

    /// Parses the base64 blob of an `authorized_keys` line or a server entry's `sshHostKey`.
    pub fn from_base64(b64: &str) -> Result<Self> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| Error::Config("public key is not base64".into()))?;
        Self::from_blob(&blob)
    }

    /// Parses an OpenSSH public key line: `ssh-ed25519 AAAA... comment`.
    pub fn from_openssh(line: &str) -> Result<Self> {
        let mut parts = line.split_whitespace();
        let _type = parts.next();
        let b64 = parts
            .next()
            .ok_or_else(|| Error::Config("public key line has no key".into()))?;
        Self::from_base64(b64)
    }

    /// The wire blob.
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// `ssh-ed25519` or `ssh-rsa`.
    pub fn key_type(&self) -> &'static str {
        match self.kind {
            KeyKind::Ed25519 => "ssh-ed25519",
            KeyKind::Rsa => "ssh-rsa",
        }
    }

    /// The blob in standard base64.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.blob)
    }

    /// `type base64` as in `authorized_keys` / `known_hosts`.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.key_type(), self.to_base64())
    }

    /// The signature algorithms this key can verify.
    pub(crate) fn signature_algorithms(&self) -> &'static [&'static str] {
        match self.kind {
            KeyKind::Ed25519 => &["ssh-ed25519"],
            KeyKind::Rsa => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        }
    }

    /// Verifies an SSH signature blob (`string alg || string sig`) over `msg`, requiring the
    /// signature algorithm to be `expected_alg`.
    pub(crate) fn verify(&self, expected_alg: &str, msg: &[u8], sig_blob: &[u8]) -> Result<()> {
        let mut r = Reader::new(sig_blob);
        let alg = r.utf8()?;
        let sig = r.string()?;
        if alg != expected_alg || !self.signature_algorithms().contains(&alg) {
            return Err(Error::HostKeySignature);
        }
        let mut k = Reader::new(&self.blob);
        let _ = k.string()?;
        let ok = match self.kind {
            KeyKind::Ed25519 => {
                let pk = k.string()?;
                UnparsedPublicKey::new(&signature::ED25519, pk)
                    .verify(msg, sig)
                    .is_ok()
            }
            KeyKind::Rsa => {
                let e = k.mpint_positive()?;
                let n = k.mpint_positive()?;
                let params = match alg {
                    "rsa-sha2-512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "rsa-sha2-256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, msg, sig)
                    .is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::HostKeySignature)
        }
    }
}

enum PrivateKind {
    Ed25519(Ed25519KeyPair),
    /// aws-lc-rs signs the SHA-2 algorithms; the same key as an `rsa` crate key signs only
    /// `ssh-rsa` (PKCS#1 v1.5 with SHA-1), which aws-lc-rs will not produce. `None` when the
    /// `rsa` crate refuses a key aws-lc-rs took (over its size limits, say): the key then
    /// signs only `rsa-sha2-*`.
    Rsa(RsaKeyPair, Option<Box<rsa::RsaPrivateKey>>),
}

/// The DER `DigestInfo` prefix for SHA-1 in a PKCS#1 v1.5 signature (RFC 8017 §9.2 note 1).
const SHA1_DIGEST_INFO: [u8; 15] = [
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];

/// `ssh-rsa` (RFC 4253 §6.6): RSASSA-PKCS1-v1_5 over SHA-1, by the `rsa` crate with blinding.
fn sign_ssh_rsa(key: &rsa::RsaPrivateKey, msg: &[u8]) -> Result<Vec<u8>> {
    let hashed = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, msg);
    let scheme = rsa::Pkcs1v15Sign {
        hash_len: Some(hashed.as_ref().len()),
        prefix: Box::new(SHA1_DIGEST_INFO),
    };
    key.sign_with_rng(&mut rsa::rand_core::OsRng, scheme, hashed.as_ref())
        .map_err(|_| Error::Crypto("rsa sha1 sign"))
}

/// A private key: a server's host key or a client's user key.
pub struct PrivateKey {
    kind: PrivateKind,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public.key_type())
    }
}

fn rsa_blob(kp: &RsaKeyPair) -> Vec<u8> {
    let pk = kp.public_key();
    let mut blob = Vec::new();
    blob.put_string(b"ssh-rsa");
    blob.put_mpint(pk.exponent().big_endian_without_leading_zero());
    blob.put_mpint(pk.modulus().big_endian_without_leading_zero());
    blob
}

impl PrivateKey {
    /// A new random Ed25519 key.
    pub fn generate_ed25519() -> Result<Self> {
        let kp = Ed25519KeyPair::generate().map_err(|_| Error::Crypto("ed25519 keygen"))?;
        Self::from_ed25519(kp)
    }

    /// A new random RSA key of 2048, 3072 or 4096 bits (Psiphon servers use 2048).
    pub fn generate_rsa(bits: u32) -> Result<Self> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            _ => return Err(Error::Config(format!("unsupported RSA size {bits}"))),
        };
        let kp = RsaKeyPair::generate(size).map_err(|_| Error::Crypto("rsa keygen"))?;
        Self::from_rsa(kp)
    }

    /// An Ed25519 key from its 32-byte seed.
    pub fn ed25519_from_seed(seed: &[u8]) -> Result<Self> {
        let kp = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| Error::Config("bad ed25519 seed".into()))?;
        Self::from_ed25519(kp)
    }

    /// A key from PKCS#8 DER (RSA or Ed25519).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        if let Ok(kp) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Self::from_ed25519(kp);
        }
        let kp = RsaKeyPair::from_pkcs8(der)
            .map_err(|e| Error::Config(format!("private key not PKCS#8 RSA/Ed25519: {e}")))?;
        Self::from_rsa(kp)
    }

    /// An RSA key from PKCS#1 `RSAPrivateKey` DER (the body of a `BEGIN RSA PRIVATE KEY` PEM,
    /// which is what psiphond's `SSHPrivateKey` holds).
    pub fn rsa_from_pkcs1_der(der: &[u8]) -> Result<Self> {
        let kp = RsaKeyPair::from_der(der)
            .map_err(|e| Error::Config(format!("private key not PKCS#1 RSA: {e}")))?;
        Self::from_rsa(kp)
    }

    /// PKCS#8 DER of this key.
    pub fn to_pkcs8(&self) -> Result<Vec<u8>> {
        match &self.kind {
            PrivateKind::Ed25519(kp) => kp
                .to_pkcs8v1()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| Error::Crypto("ed25519 pkcs8")),
            PrivateKind::Rsa(kp, _) => kp
                .as_der()
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| Error::Crypto("rsa pkcs8")),
        }
    }

    fn from_ed25519(kp: Ed25519KeyPair) -> Result<Self> {
        let mut blob = Vec::new();
        blob.put_string(b"ssh-ed25519");
        blob.put_string(kp.public_key().as_ref());
        let public = PublicKey {
            blob,
            kind: KeyKind::Ed25519,
        };
        Ok(PrivateKey {
            kind: PrivateKind::Ed25519(kp),
            public,
        })
    }

    fn from_rsa(kp: RsaKeyPair) -> Result<Self> {
        use rsa::pkcs8::DecodePrivateKey as _;
        let public = PublicKey {
            blob: rsa_blob(&kp),
            kind: KeyKind::Rsa,
        };
        let der = kp.as_der().map_err(|_| Error::Crypto("rsa pkcs8"))?;
        let legacy = match rsa::RsaPrivateKey::from_pkcs8_der(der.as_ref()) {
            Ok(k) => Some(Box::new(k)),
            Err(e) => {
                tracing::warn!(error = %e, "RSA key unusable for ssh-rsa; offering rsa-sha2 only");
                None
            }
        };
        Ok(PrivateKey {
            kind: PrivateKind::Rsa(kp, legacy),
            public,
        })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signature algorithms we can produce with this key, best first. RSA keys sign
    /// `rsa-sha2-*` with aws-lc-rs and, last, the SHA-1 `ssh-rsa` with the `rsa` crate: some
    /// psiphon-tunnel-core clients' randomised host key lists offer only `ssh-rsa`.
    pub(crate) fn signing_algorithms(&self) -> &'static [&'static str] {
        match &self.kind {
            PrivateKind::Ed25519(_) => &["ssh-ed25519"],
            PrivateKind::Rsa(_, Some(_)) => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            PrivateKind::Rsa(_, None) => &["rsa-sha2-512", "rsa-sha2-256"],
        }
    }

    /// Signs `msg` with `alg`, returning the SSH signature blob.
    pub(crate) fn sign(&self, alg: &str, msg: &[u8]) -> Result<Vec<u8>> {
        let sig = match &self.kind {
            PrivateKind::Ed25519(kp) => kp.sign(msg).as_ref().to_vec(),
            PrivateKind::Rsa(_, Some(legacy)) if alg == "ssh-rsa" => sign_ssh_rsa(legacy, msg)?,
            PrivateKind::Rsa(kp, _) => {
                let enc = match alg {
                    "rsa-sha2-512" => &signature::RSA_PKCS1_SHA512,
                    "rsa-sha2-256" => &signature::RSA_PKCS1_SHA256,
                    _ => return Err(Error::Internal("unsupported rsa signature algorithm")),
                };
                let mut sig = vec![0u8; kp.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                kp.sign(enc, &rng, msg, &mut sig)
                    .map_err(|_| Error::Crypto("rsa sign"))?;
                sig
            }
        };
        let mut blob = Vec::new();
        blob.put_string(alg.as_bytes());
        blob.put_string(&sig);
        Ok(blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_sign_verify_and_tamper() {
        let k = PrivateKey::generate_ed25519().unwrap();
        let sig = k.sign("ssh-ed25519", b"hello").unwrap();
        let pk = PublicKey::from_blob(k.public_key().blob()).unwrap();
        pk.verify("ssh-ed25519", b"hello", &sig).unwrap();
        assert!(pk.verify("ssh-ed25519", b"hellp", &sig).is_err());
        assert!(pk.verify("ssh-rsa", b"hello", &sig).is_err());
        let again = PublicKey::from_openssh(&pk.to_openssh()).unwrap();
        assert_eq!(again, pk);
    }

    #[test]
    fn rsa_sign_verify_both_hashes() {
        let k = PrivateKey::generate_rsa(2048).unwrap();
        let pk = k.public_key().clone();
        for alg in ["rsa-sha2-256", "rsa-sha2-512"] {
            let sig = k.sign(alg, b"exchange hash").unwrap();
            pk.verify(alg, b"exchange hash", &sig).unwrap();
        }
        let sig = k.sign("rsa-sha2-256", b"x").unwrap();
        assert!(pk.verify("rsa-sha2-512", b"x", &sig).is_err());
        // ssh-rsa: signed by the rsa crate, verified by aws-lc-rs.
        let sig = k.sign("ssh-rsa", b"exchange hash").unwrap();
        pk.verify("ssh-rsa", b"exchange hash", &sig).unwrap();
        assert!(pk.verify("ssh-rsa", b"exchange hasi", &sig).is_err());
        assert!(pk.verify("rsa-sha2-256", b"exchange hash", &sig).is_err());
        let der = k.to_pkcs8().unwrap();
        assert_eq!(PrivateKey::from_pkcs8(&der).unwrap().public_key(), &pk);
    }

    #[test]
    fn junk_blobs_are_refused() {
        assert!(PublicKey::from_blob(b"").is_err());
        assert!(PublicKey::from_blob(&[0, 0, 0, 7]).is_err());
        let mut b = Vec::new();
        b.put_string(b"ssh-dss");
        assert!(PublicKey::from_blob(&b).is_err());
    }
}
