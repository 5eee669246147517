//! Finite-field Diffie-Hellman over the MODP groups of RFC 3526 (group 14, 2048 bits, and
//! group 16, 4096 bits), for `diffie-hellman-group14-sha256`, `diffie-hellman-group14-sha1`
//! (RFC 4253 §8, RFC 8268) and `diffie-hellman-group16-sha512` (RFC 8268).
//!
//! aws-lc-rs has no finite-field DH, so the arithmetic is `num-bigint-dig`'s (the bignum the
//! `rsa` crate already brings in). Its modular exponentiation is **not constant-time**: its
//! running time depends on the bits of the exponent. Our exponent is a fresh random value used
//! for exactly one exchange and then zeroized, so an observer gets at most one timing sample
//! per secret, with network jitter on top; that is the same exposure as any one-shot DH in a
//! variable-time library, and the reason these methods come after the curve25519 and NIST ECDH
//! ones (which are aws-lc-rs's, constant-time) in our preference order.
//!
//! The private exponent has 512 random bits: at least twice the security strength of either
//! group and of every hash and cipher negotiated with them (as OpenSSH sizes its exponents),
//! and far cheaper than a full-size exponent.

use rsa::BigUint;
use zeroize::Zeroize;

use crate::error::{Error, Result};

/// RFC 3526 §3: the 2048-bit MODP group (generator 2).
const GROUP14_P: [&str; 8] = [
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
];

/// RFC 3526 §5: the 4096-bit MODP group (generator 2).
const GROUP16_P: [&str; 16] = [
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
];

/// Bits of the private exponent.
const EXPONENT_BITS: usize = 512;

/// A MODP group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// RFC 3526 group 14.
    Modp2048,
    /// RFC 3526 group 16.
    Modp4096,
}

impl Group {
    fn prime(self) -> Result<BigUint> {
        let parts: &[&str] = match self {
            Group::Modp2048 => &GROUP14_P,
            Group::Modp4096 => &GROUP16_P,
        };
        let hex: String = parts.concat();
        BigUint::parse_bytes(hex.as_bytes(), 16).ok_or(Error::Internal("modp prime"))
    }
}

/// Our side of one exchange: the private exponent and the public value `g^x mod p`.
pub(crate) struct DhKey {
    x: BigUint,
    p: BigUint,
    /// The public value as the body of an SSH mpint (what goes on the wire after the length).
    pub public: Vec<u8>,
}

impl Drop for DhKey {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

/// The body of an SSH mpint (RFC 4251 §5) for a non-negative magnitude.
pub(crate) fn mpint_body(magnitude: &[u8]) -> Vec<u8> {
    let trimmed = match magnitude.iter().position(|&b| b != 0) {
        Some(i) => &magnitude[i..],
        None => &[],
    };
    let mut v = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(trimmed);
    v
}

/// Parses the body of a positive, minimally encoded mpint into its magnitude.
fn parse_positive(body: &[u8]) -> Result<BigUint> {
    match body {
        [] => Err(Error::protocol("dh public value is zero")),
        [b, ..] if b & 0x80 != 0 => Err(Error::protocol("dh public value is negative")),
        [0, b, ..] if b & 0x80 == 0 => Err(Error::protocol("dh public value not minimal")),
        [0] => Err(Error::protocol("dh public value not minimal")),
        _ => Ok(BigUint::from_bytes_be(body)),
    }
}

impl DhKey {
    pub(crate) fn generate(group: Group) -> Result<Self> {
        let p = group.prime()?;
        let mut bytes = [0u8; EXPONENT_BITS / 8];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| Error::Crypto("rng"))?;
        // The top bit set keeps the exponent at full length (and so never 0 or 1).
        bytes[0] |= 0x80;
        let x = BigUint::from_bytes_be(&bytes);
        bytes.zeroize();
        let e = BigUint::from(2u8).modpow(&x, &p);
        Ok(DhKey {
            x,
            p,
            public: mpint_body(&e.to_bytes_be()),
        })
    }

    /// Checks the peer's public value (the body of its mpint) and returns the shared secret as
    /// an mpint-encoded `K`.
    pub(crate) fn agree(self, peer: &[u8]) -> Result<Vec<u8>> {
        let f = parse_positive(peer)?;
        let one = BigUint::from(1u8);
        // RFC 4253 §8: values outside [1, p-1] must not be accepted; 1 and p-1 give a trivial
        // shared secret, so refuse them too.
        if f <= one || f >= &self.p - &one {
            return Err(Error::protocol("dh public value out of range"));
        }
        let mut k = f.modpow(&self.x, &self.p);
        let mut mag = k.to_bytes_be();
        k.zeroize();
        let mut out = Vec::with_capacity(mag.len() + 5);
        crate::wire::WriteExt::put_mpint(&mut out, &mag);
        mag.zeroize();
        Ok(out)
    }
}

impl std::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhKey")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::digest;

    fn with_exponent(group: Group, x: u64) -> DhKey {
        let p = group.prime().unwrap();
        let x = BigUint::from(x);
        let e = BigUint::from(2u8).modpow(&x, &p);
        DhKey {
            x,
            p,
            public: mpint_body(&e.to_bytes_be()),
        }
    }

    fn padded_sha256(body: &[u8], len: usize) -> String {
        let body = body.strip_prefix(&[0]).unwrap_or(body);
        let mut v = vec![0u8; len - body.len()];
        v.extend_from_slice(body);
        digest::digest(&digest::SHA256, &v)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Known answers from an independent bignum (Python's `pow`) with fixed exponents.
    #[test]
    fn known_answers_for_both_groups() {
        let cases = [
            (
                Group::Modp2048,
                256,
                "a25c02924c44092b8d78408c10bcacef3fccb5a59d7adc9fc5ea4d86b16dd082",
                "5b3fe43690df826a85a5531f85307d1b1211ecb160c489aa34360161af4dfacf",
            ),
            (
                Group::Modp4096,
                512,
                "84e043520f006ae20abba0ecedb5ac306cc9992424bb8ce0e08b7db0f756f866",
                "a808085aeeacfa6a7111848abecc23104190919dfc3e35e2d97dc4052ef93912",
            ),
        ];
        for (group, len, e_hash, k_hash) in cases {
            let a = with_exponent(group, 0x1234_5678_90ab_cdef);
            let b = with_exponent(group, 0xfedc_ba09_8765_4321);
            assert_eq!(padded_sha256(&a.public, len), e_hash);
            let f = b.public.clone();
            let k = a.agree(&f).unwrap();
            let mut r = crate::wire::Reader::new(&k);
            assert_eq!(padded_sha256(r.mpint_positive().unwrap(), len), k_hash);
        }
    }

    #[test]
    fn random_keys_agree() {
        for group in [Group::Modp2048, Group::Modp4096] {
            let a = DhKey::generate(group).unwrap();
            let b = DhKey::generate(group).unwrap();
            let (pa, pb) = (a.public.clone(), b.public.clone());
            assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap());
        }
    }

    #[test]
    fn out_of_range_and_malformed_values_are_refused() {
        let p = Group::Modp2048.prime().unwrap();
        let pm1 = &p - BigUint::from(1u8);
        let bad: Vec<Vec<u8>> = vec![
            vec![],
            vec![1],
            mpint_body(&pm1.to_bytes_be()),
            mpint_body(&p.to_bytes_be()),
            mpint_body(&(&p + BigUint::from(5u8)).to_bytes_be()),
            vec![0x80, 1],
            vec![0, 2],
            vec![0],
        ];
        for v in bad {
            let k = DhKey::generate(Group::Modp2048).unwrap();
            assert!(k.agree(&v).is_err(), "{v:?}");
        }
        let k = DhKey::generate(Group::Modp2048).unwrap();
        assert!(k.agree(&[2]).is_ok());
        assert_eq!(mpint_body(&[0, 0, 0x80]), vec![0, 0x80]);
        assert_eq!(mpint_body(&[0, 0x7f]), vec![0x7f]);
    }
}
