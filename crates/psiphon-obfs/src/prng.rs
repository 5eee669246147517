//! tunnel-core's seeded PRNG, reproduced bit for bit so that padding can be replayed and checked
//! against the known-answer vectors.
//!
//! The byte stream is ChaCha20 (RFC 8439 layout) keyed by a 32-byte seed, 12-byte nonce made of
//! a big-endian rekey counter and four zero bytes, block counter from 0; the stream is rekeyed
//! (counter + 1) before 2^38 - 64 bytes. The integer helpers are Go `math/rand` (v1) `Rand`
//! methods driven by this stream as a 63-bit source: `Int63` is the next 8 stream bytes,
//! big-endian, top bit cleared. This PRNG is for traffic shaping, never for keys.

use std::fmt;

use aws_lc_rs::hkdf;
use chacha20::ChaCha20;
use chacha20::KeyIvInit;
use chacha20::cipher::StreamCipher;

use crate::error::{Error, Result};

/// Length of a PRNG seed.
pub const PRNG_SEED_LEN: usize = 32;

/// Bytes a stream may produce before it is rekeyed (tunnel-core's limit).
const REKEY_LIMIT: u64 = (1 << 38) - 64;

/// Keystream is produced in chunks of at most this size, so one rekey check per chunk keeps every
/// chunk inside ChaCha20's 2^38-byte counter range.
const CHUNK: usize = 1 << 16;

/// A 32-byte seed for [`Prng`].
#[derive(Clone, PartialEq, Eq)]
pub struct PrngSeed([u8; PRNG_SEED_LEN]);

impl PrngSeed {
    /// Wraps seed bytes (for example a replayed `ObfuscatorPaddingSeed`).
    #[must_use]
    pub const fn new(bytes: [u8; PRNG_SEED_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh seed from the system CSPRNG.
    ///
    /// # Errors
    /// [`Error::Internal`] if the system random source fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; PRNG_SEED_LEN];
        fill_random(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The seed bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; PRNG_SEED_LEN] {
        &self.0
    }

    /// An independent seed for one usage context: HKDF-SHA256 with this seed as secret, `salt`
    /// as salt and empty info (tunnel-core's `NewSaltedSeed`).
    ///
    /// # Errors
    /// [`Error::Internal`] if HKDF fails, which it does not for 32 output bytes.
    pub fn salted(&self, salt: &str) -> Result<Self> {
        let mut out = [0u8; PRNG_SEED_LEN];
        hkdf_sha256(&self.0, salt.as_bytes(), b"", &mut out)?;
        Ok(Self(out))
    }
}

impl fmt::Debug for PrngSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrngSeed(..)")
    }
}

/// Fills `buf` from the system CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    aws_lc_rs::rand::fill(buf).map_err(|_| Error::Internal {
        what: "system random source failed",
    })
}

/// Output length for aws-lc-rs HKDF.
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (extract and expand) into `out`.
pub(crate) fn hkdf_sha256(secret: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    let failed = |_| Error::Internal {
        what: "HKDF-SHA256 failed",
    };
    let info = [info];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(secret)
        .expand(&info, OutLen(out.len()))
        .map_err(failed)?
        .fill(out)
        .map_err(failed)
}

/// The seeded PRNG. Each call consumes stream bytes, so a sequence of calls replays exactly.
pub struct Prng {
    seed: PrngSeed,
    stream: ChaCha20,
    used: u64,
    rekeys: u64,
}

impl fmt::Debug for Prng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prng")
            .field("used", &self.used)
            .field("rekeys", &self.rekeys)
            .finish_non_exhaustive()
    }
}

impl Prng {
    /// A PRNG whose stream is fully determined by `seed`.
    #[must_use]
    pub fn new(seed: &PrngSeed) -> Self {
        let stream = Self::keyed(seed, 0);
        Self {
            seed: seed.clone(),
            stream,
            used: 0,
            rekeys: 1,
        }
    }

    /// A PRNG seeded with `seed.salted(salt)` (tunnel-core's `NewPRNGWithSaltedSeed`).
    ///
    /// # Errors
    /// See [`PrngSeed::salted`].
    pub fn with_salt(seed: &PrngSeed, salt: &str) -> Result<Self> {
        Ok(Self::new(&seed.salted(salt)?))
    }

    fn keyed(seed: &PrngSeed, counter: u64) -> ChaCha20 {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&counter.to_be_bytes());
        ChaCha20::new(&seed.0.into(), &nonce.into())
    }

    fn rekey(&mut self) {
        self.stream = Self::keyed(&self.seed, self.rekeys);
        self.rekeys = self.rekeys.wrapping_add(1);
        self.used = 0;
    }

    /// Fills `buf` with the next stream bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(CHUNK) {
            // `chunk.len()` is at most CHUNK, far below u64::MAX.
            let len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            if self.used.saturating_add(len) >= REKEY_LIMIT {
                self.rekey();
            }
            if self.stream.try_write_keystream(chunk).is_err() {
                // Unreachable given the rekey above; rekeying again keeps the stream usable.
                self.rekey();
                if self.stream.try_write_keystream(chunk).is_err() {
                    chunk.fill(0);
                }
            }
            self.used = self.used.saturating_add(len);
        }
    }

    /// The next `len` stream bytes.
    #[must_use]
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.fill(&mut out);
        out
    }

    /// Go `Uint64`: the next 8 stream bytes, big-endian.
    pub fn uint64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_be_bytes(b)
    }

    /// Go `Int63`: `uint64` with the top bit cleared.
    pub fn int63(&mut self) -> u64 {
        self.uint64() & (u64::MAX >> 1)
    }

    /// Go `Int31`: the top 31 bits of `int63`.
    pub fn int31(&mut self) -> u32 {
        let [b0, b1, b2, b3, ..] = self.int63().to_be_bytes();
        u32::from_be_bytes([b0, b1, b2, b3])
    }

    /// Go `Int31n` for `0 < n < 2^31`, by rejection sampling; 0 when `n == 0`.
    pub fn int31n(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if n & (n - 1) == 0 {
            return self.int31() & (n - 1);
        }
        let limit = (1u32 << 31) - 1 - (1u32 << 31) % n;
        let mut v = self.int31();
        while v > limit {
            v = self.int31();
        }
        v % n
    }

    /// Go `Int63n` for `0 < n < 2^63`, by rejection sampling; 0 when `n == 0`.
    pub fn int63n(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        if n & (n - 1) == 0 {
            return self.int63() & (n - 1);
        }
        let limit = (1u64 << 63) - 1 - (1u64 << 63) % n;
        let mut v = self.int63();
        while v > limit {
            v = self.int63();
        }
        v % n
    }

    /// Go `Intn`: uniform in `[0, n)`, 0 when `n == 0`; uses `Int31n` below 2^31 as Go does.
    pub fn intn(&mut self, n: usize) -> usize {
        let result = match u32::try_from(n) {
            Ok(small) if small < (1u32 << 31) => u64::from(self.int31n(small)),
            _ => {
                let n = u64::try_from(n).unwrap_or(u64::MAX).min(u64::MAX >> 1);
                self.int63n(n)
            }
        };
        // The result is below `n`, which is a usize.
        usize::try_from(result).unwrap_or(0)
    }

    /// Uniform in `[min, max]`; `min` when `max < min` (tunnel-core's `Range`).
    pub fn range(&mut self, min: usize, max: usize) -> usize {
        if max < min {
            return min;
        }
        let span = (max - min).saturating_add(1);
        min.saturating_add(self.intn(span))
    }

    /// `bytes(range(min, max))` (tunnel-core's `Padding`).
    #[must_use]
    pub fn padding(&mut self, min: usize, max: usize) -> Vec<u8> {
        let len = self.range(min, max);
        self.bytes(len)
    }

    /// Go math/rand `Perm`: a permutation of `0..n`.
    #[must_use]
    pub fn perm(&mut self, n: usize) -> Vec<usize> {
        let mut m = vec![0usize; n];
        for i in 0..n {
            let j = self.intn(i + 1);
            if let Some(&mj) = m.get(j)
                && let Some(slot) = m.get_mut(i)
            {
                *slot = mj;
            }
            if let Some(slot) = m.get_mut(j) {
                *slot = i;
            }
        }
        m
    }

    /// tunnel-core's `FlipWeightedCoin`: true with probability `weight` (clamped to 1).
    #[allow(clippy::cast_precision_loss)] // the float ratio is the definition being reproduced
    pub fn flip_weighted_coin(&mut self, weight: f64) -> bool {
        let weight = weight.min(1.0);
        let f = self.int63() as f64 / i64::MAX as f64;
        f > 1.0 - weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chacha20_layout_matches_rfc8439_block_counter_zero() {
        // RFC 8439 2.4.2 uses counter 1; with our all-zero key and nonce the first block is the
        // well-known ChaCha20 zero-key keystream.
        let mut p = Prng::new(&PrngSeed::new([0; 32]));
        let first = p.bytes(16);
        assert_eq!(
            first,
            [
                0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
                0xbd, 0x28
            ]
        );
    }

    #[test]
    fn split_reads_equal_one_read() {
        let seed = PrngSeed::new([9; 32]);
        let mut a = Prng::new(&seed);
        let mut b = Prng::new(&seed);
        let whole = a.bytes(200_000);
        let mut parts = b.bytes(3);
        parts.extend(b.bytes(70_000));
        parts.extend(b.bytes(129_997));
        assert_eq!(whole, parts);
    }

    #[test]
    fn rekey_switches_to_the_next_nonce() {
        let seed = PrngSeed::new([1; 32]);
        let mut p = Prng::new(&seed);
        p.used = REKEY_LIMIT - 8;
        let after = p.bytes(16);
        let mut fresh = Prng::keyed(&seed, 1);
        let mut expected = [0u8; 16];
        fresh.try_write_keystream(&mut expected).unwrap();
        assert_eq!(after, expected);
    }

    #[test]
    fn intn_stays_in_range() {
        let mut p = Prng::new(&PrngSeed::new([3; 32]));
        for n in [1usize, 2, 3, 7, 255, 256, 8191] {
            for _ in 0..200 {
                assert!(p.intn(n) < n);
            }
        }
        assert_eq!(p.intn(0), 0);
        assert_eq!(p.range(5, 4), 5);
        assert_eq!(p.range(7, 7), 7);
    }
}
