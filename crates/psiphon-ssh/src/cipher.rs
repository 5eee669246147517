//! Packet protection: the SSH binary packet protocol (RFC 4253 §6) under each cipher/MAC.
//!
//! A [`Sealer`] turns a payload into one wire packet appended to an output buffer; an
//! [`Opener`] finds, authenticates and decrypts one packet at the front of an input buffer, in
//! place. Neither allocates per packet beyond growing the output buffer.

use aws_lc_rs::aead::{self, chacha20_poly1305_openssh as chacha};
use aws_lc_rs::cipher::{
    AES_128, AES_192, AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext,
    UnboundCipherKey,
};
use aws_lc_rs::{constant_time, hmac, iv::FixedLength};

use crate::error::{Error, Result};

/// Largest packet we accept (`packet_length`), as psiphon-tunnel-core's OSSH layer does.
pub const MAX_PACKET_LEN: u32 = 256 * 1024;

/// An encryption algorithm we can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherAlg {
    /// `aes128-gcm@openssh.com` (RFC 5647 as OpenSSH does it).
    Aes128Gcm,
    /// `aes256-gcm@openssh.com`.
    Aes256Gcm,
    /// `chacha20-poly1305@openssh.com` (PROTOCOL.chacha20poly1305).
    ChaCha20Poly1305,
    /// `aes128-ctr` with a separate MAC.
    Aes128Ctr,
    /// `aes256-ctr` with a separate MAC.
    Aes256Ctr,
    /// `aes192-ctr` with a separate MAC (RFC 4344).
    Aes192Ctr,
}

impl CipherAlg {
    /// Every cipher we implement, fastest first on hardware with AES instructions.
    pub const ALL: [CipherAlg; 6] = [
        CipherAlg::Aes128Gcm,
        CipherAlg::Aes256Gcm,
        CipherAlg::ChaCha20Poly1305,
        CipherAlg::Aes128Ctr,
        CipherAlg::Aes256Ctr,
        CipherAlg::Aes192Ctr,
    ];

    /// The SSH name.
    pub fn name(self) -> &'static str {
        match self {
            CipherAlg::Aes128Gcm => "aes128-gcm@openssh.com",
            CipherAlg::Aes256Gcm => "aes256-gcm@openssh.com",
            CipherAlg::ChaCha20Poly1305 => "chacha20-poly1305@openssh.com",
            CipherAlg::Aes128Ctr => "aes128-ctr",
            CipherAlg::Aes256Ctr => "aes256-ctr",
            CipherAlg::Aes192Ctr => "aes192-ctr",
        }
    }

    /// Parses an SSH name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            CipherAlg::Aes128Gcm | CipherAlg::Aes128Ctr => 16,
            CipherAlg::Aes192Ctr => 24,
            CipherAlg::Aes256Gcm | CipherAlg::Aes256Ctr => 32,
            CipherAlg::ChaCha20Poly1305 => chacha::KEY_LEN,
        }
    }

    pub(crate) fn iv_len(self) -> usize {
        match self {
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => 12,
            CipherAlg::ChaCha20Poly1305 => 0,
            CipherAlg::Aes128Ctr | CipherAlg::Aes192Ctr | CipherAlg::Aes256Ctr => 16,
        }
    }

    /// Whether the cipher authenticates itself (no separate MAC is negotiated).
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm | CipherAlg::ChaCha20Poly1305
        )
    }
}

/// A MAC algorithm for the CTR ciphers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacAlg {
    /// `hmac-sha2-256` (MAC over the plaintext packet).
    HmacSha256,
    /// `hmac-sha2-512`.
    HmacSha512,
    /// `hmac-sha2-256-etm@openssh.com` (MAC over the ciphertext; length in clear).
    HmacSha256Etm,
    /// `hmac-sha2-512-etm@openssh.com`.
    HmacSha512Etm,
    /// `hmac-sha1` (RFC 4253 §6.4).
    HmacSha1,
    /// `hmac-sha1-96`: HMAC-SHA1 with the tag cut to its first 12 bytes (RFC 4253 §6.4).
    HmacSha1_96,
}

impl MacAlg {
    /// Every MAC we implement, in our order of preference.
    pub const ALL: [MacAlg; 6] = [
        MacAlg::HmacSha256Etm,
        MacAlg::HmacSha512Etm,
        MacAlg::HmacSha256,
        MacAlg::HmacSha512,
        MacAlg::HmacSha1,
        MacAlg::HmacSha1_96,
    ];

    /// The SSH name.
    pub fn name(self) -> &'static str {
        match self {
            MacAlg::HmacSha256 => "hmac-sha2-256",
            MacAlg::HmacSha512 => "hmac-sha2-512",
            MacAlg::HmacSha256Etm => "hmac-sha2-256-etm@openssh.com",
            MacAlg::HmacSha512Etm => "hmac-sha2-512-etm@openssh.com",
            MacAlg::HmacSha1 => "hmac-sha1",
            MacAlg::HmacSha1_96 => "hmac-sha1-96",
        }
    }

    /// Parses an SSH name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Encrypt-then-MAC variants send the packet length in clear.
    pub fn is_etm(self) -> bool {
        matches!(self, MacAlg::HmacSha256Etm | MacAlg::HmacSha512Etm)
    }

    /// The key is as long as the hash's output (RFC 4253 §6.4), also for `hmac-sha1-96`.
    pub(crate) fn key_len(self) -> usize {
        match self {
            MacAlg::HmacSha256 | MacAlg::HmacSha256Etm => 32,
            MacAlg::HmacSha512 | MacAlg::HmacSha512Etm => 64,
            MacAlg::HmacSha1 | MacAlg::HmacSha1_96 => 20,
        }
    }

    /// Bytes of the tag on the wire.
    fn tag_len(self) -> usize {
        match self {
            MacAlg::HmacSha1_96 => 12,
            other => other.key_len(),
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            MacAlg::HmacSha256 | MacAlg::HmacSha256Etm => hmac::HMAC_SHA256,
            MacAlg::HmacSha512 | MacAlg::HmacSha512Etm => hmac::HMAC_SHA512,
            MacAlg::HmacSha1 | MacAlg::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}

/// Key material for one direction, as derived by the key exchange.
pub(crate) struct DirectionKeys {
    pub cipher: CipherAlg,
    pub mac: Option<MacAlg>,
    pub key: Vec<u8>,
    pub iv: Vec<u8>,
    pub mac_key: Vec<u8>,
}

impl std::fmt::Debug for DirectionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectionKeys")
            .field("cipher", &self.cipher)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

impl DirectionKeys {
    fn chacha_key(&self) -> Result<&[u8; chacha::KEY_LEN]> {
        self.key
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("chacha key"))
    }

    /// The AES key for a CTR cipher, its starting counter, and the MAC.
    fn ctr_parts(&self) -> Result<(UnboundCipherKey, Counter, MacAlg, hmac::Key)> {
        let alg = match self.cipher {
            CipherAlg::Aes128Ctr => &AES_128,
            CipherAlg::Aes192Ctr => &AES_192,
            CipherAlg::Aes256Ctr => &AES_256,
            _ => return Err(Error::Internal("not a ctr cipher")),
        };
        let key = UnboundCipherKey::new(alg, &self.key).map_err(crypto("ctr key"))?;
        let mac = self.mac.ok_or(Error::Internal("ctr without mac"))?;
        Ok((
            key,
            Counter::from_iv(&self.iv)?,
            mac,
            hmac::Key::new(mac.hmac_alg(), &self.mac_key),
        ))
    }
}

fn crypto(what: &'static str) -> impl FnOnce(aws_lc_rs::error::Unspecified) -> Error {
    move |_| Error::Crypto(what)
}

/// A 128-bit big-endian counter block for CTR mode, advanced per 16-byte block.
#[derive(Clone, Copy)]
struct Counter(u128);

impl Counter {
    fn from_iv(iv: &[u8]) -> Result<Self> {
        let arr: [u8; 16] = iv
            .try_into()
            .map_err(|_| Error::Internal("ctr iv length"))?;
        Ok(Counter(u128::from_be_bytes(arr)))
    }
    fn context(self) -> EncryptionContext {
        EncryptionContext::Iv128(FixedLength::from(self.0.to_be_bytes()))
    }
    fn dcontext(self) -> DecryptionContext {
        DecryptionContext::Iv128(FixedLength::from(self.0.to_be_bytes()))
    }
    fn advance(&mut self, bytes: usize) {
        // CTR packets are whole blocks; the counter wraps modulo 2^128 as in OpenSSH.
        self.0 = self.0.wrapping_add((bytes / 16) as u128);
    }
}

struct Gcm {
    key: aead::LessSafeKey,
    fixed: [u8; 4],
    counter: u64,
}

impl Gcm {
    fn new(alg: CipherAlg, key: &[u8], iv: &[u8]) -> Result<Self> {
        let a = if alg == CipherAlg::Aes128Gcm {
            &aead::AES_128_GCM
        } else {
            &aead::AES_256_GCM
        };
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(a, key).map_err(crypto("gcm key"))?);
        let fixed = iv
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Internal("gcm iv"))?;
        let counter = iv
            .get(4..12)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or(Error::Internal("gcm iv"))?;
        Ok(Gcm {
            key,
            fixed,
            counter,
        })
    }
    fn nonce(&mut self) -> aead::Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.fixed);
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        // RFC 5647 §7.1: the invocation counter increments after each packet, wrapping.
        self.counter = self.counter.wrapping_add(1);
        aead::Nonce::assume_unique_for_key(n)
    }
}

enum SealKind {
    None,
    Gcm(Gcm),
    ChaCha(chacha::SealingKey),
    Ctr(Box<CtrSeal>),
}

struct CtrSeal {
    key: EncryptingKey,
    ctr: Counter,
    mac: MacAlg,
    mac_key: hmac::Key,
}

/// Protects outgoing packets for one direction.
pub(crate) struct Sealer {
    kind: SealKind,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    pub(crate) fn none() -> Self {
        Sealer {
            kind: SealKind::None,
        }
    }

    pub(crate) fn new(k: &DirectionKeys) -> Result<Self> {
        let kind = match k.cipher {
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => {
                SealKind::Gcm(Gcm::new(k.cipher, &k.key, &k.iv)?)
            }
            CipherAlg::ChaCha20Poly1305 => {
                SealKind::ChaCha(chacha::SealingKey::new(k.chacha_key()?))
            }
            CipherAlg::Aes128Ctr | CipherAlg::Aes192Ctr | CipherAlg::Aes256Ctr => {
                let (key, ctr, mac, mac_key) = k.ctr_parts()?;
                let key = EncryptingKey::ctr(key).map_err(crypto("ctr key"))?;
                SealKind::Ctr(Box::new(CtrSeal {
                    key,
                    ctr,
                    mac,
                    mac_key,
                }))
            }
        };
        Ok(Sealer { kind })
    }

    /// Block size for padding and whether the length field is outside the aligned part.
    fn alignment(&self) -> (usize, bool) {
        match &self.kind {
            SealKind::None => (8, false),
            SealKind::Gcm(_) => (16, true),
            SealKind::ChaCha(_) => (8, true),
            SealKind::Ctr(c) => (16, c.mac.is_etm()),
        }
    }

    /// Appends one packet to `out` whose payload is the concatenation of `parts` (so a channel
    /// data packet's header and data go straight into `out`, with no intermediate copy). `seq`
    /// is this direction's sequence number for the packet.
    pub(crate) fn seal_parts(
        &mut self,
        seq: u32,
        parts: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        let (block, len_excluded) = self.alignment();
        let base = 1 + payload_len + if len_excluded { 0 } else { 4 };
        let mut pad = block - base % block;
        if pad < 4 {
            pad += block;
        }
        let packet_len = 1 + payload_len + pad;
        let packet_len32 = u32::try_from(packet_len).map_err(|_| Error::Internal("packet size"))?;
        let pad8 = u8::try_from(pad).map_err(|_| Error::Internal("padding size"))?;
        let start = out.len();
        out.reserve(4 + packet_len + 64);
        out.extend_from_slice(&packet_len32.to_be_bytes());
        out.push(pad8);
        for part in parts {
            out.extend_from_slice(part);
        }
        let pad_start = out.len();
        out.resize(pad_start + pad, 0);
        if matches!(self.kind, SealKind::None) {
            // Random padding is only worth its cost in clear text; under encryption its content
            // is never visible.
            aws_lc_rs::rand::fill(&mut out[pad_start..]).map_err(crypto("rng"))?;
        }
        match &mut self.kind {
            SealKind::None => {}
            SealKind::Gcm(g) => {
                let nonce = g.nonce();
                let (len, body) = out[start..].split_at_mut(4);
                let aad = aead::Aad::from(
                    <[u8; 4]>::try_from(&*len).map_err(|_| Error::Internal("len"))?,
                );
                let tag = g
                    .key
                    .seal_in_place_separate_tag(nonce, aad, body)
                    .map_err(crypto("gcm seal"))?;
                out.extend_from_slice(tag.as_ref());
            }
            SealKind::ChaCha(key) => {
                let mut tag = [0u8; chacha::TAG_LEN];
                key.seal_in_place(seq, &mut out[start..], &mut tag);
                out.extend_from_slice(&tag);
            }
            SealKind::Ctr(c) => {
                let CtrSeal {
                    key,
                    ctr,
                    mac,
                    mac_key,
                } = &mut **c;
                if mac.is_etm() {
                    let body = &mut out[start + 4..];
                    key.less_safe_encrypt(body, ctr.context())
                        .map_err(crypto("ctr"))?;
                    ctr.advance(body.len());
                    let tag = packet_mac(mac_key, seq, &out[start..]);
                    out.extend_from_slice(truncated(&tag, *mac)?);
                } else {
                    let tag = packet_mac(mac_key, seq, &out[start..]);
                    let body = &mut out[start..];
                    key.less_safe_encrypt(body, ctr.context())
                        .map_err(crypto("ctr"))?;
                    ctr.advance(body.len());
                    out.extend_from_slice(truncated(&tag, *mac)?);
                }
            }
        }
        Ok(())
    }
}

enum OpenKind {
    None,
    Gcm(Gcm),
    ChaCha(chacha::OpeningKey),
    Ctr(Box<CtrOpen>),
}

struct CtrOpen {
    key: DecryptingKey,
    ctr: Counter,
    mac: MacAlg,
    mac_key: hmac::Key,
    /// Non-ETM: the first block is decrypted in place (to read the length) before the rest of
    /// the packet has arrived; remember that across calls.
    first_block_done: bool,
}

/// Recovers incoming packets for one direction.
pub(crate) struct Opener {
    kind: OpenKind,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener")
    }
}

/// RFC 4253 §6.4: MAC = HMAC(key, sequence number ‖ packet).
fn packet_mac(key: &hmac::Key, seq: u32, packet: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(&seq.to_be_bytes());
    ctx.update(packet);
    ctx.sign()
}

/// The part of a full HMAC tag that goes on the wire for `mac`.
fn truncated(tag: &hmac::Tag, mac: MacAlg) -> Result<&[u8]> {
    tag.as_ref()
        .get(..mac.tag_len())
        .ok_or(Error::Internal("mac tag length"))
}

/// Checks a packet's MAC in constant time.
fn verify_packet_mac(
    key: &hmac::Key,
    mac: MacAlg,
    seq: u32,
    packet: &[u8],
    tag: &[u8],
) -> Result<()> {
    let ours = packet_mac(key, seq, packet);
    constant_time::verify_slices_are_equal(truncated(&ours, mac)?, tag).map_err(|_| Error::Mac)
}

/// Where the payload of an opened packet lies in the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Opened {
    /// Bytes of input this packet used (to drain).
    pub consumed: usize,
    /// Payload start offset in the input buffer.
    pub start: usize,
    /// Payload end offset.
    pub end: usize,
}

fn be32(b: &[u8]) -> Result<u32> {
    let a: [u8; 4] = b
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Internal("be32"))?;
    Ok(u32::from_be_bytes(a))
}

fn check_len(len: u32, aligned_to: usize, extra: usize) -> Result<usize> {
    if !(5..=MAX_PACKET_LEN).contains(&len) {
        return Err(Error::PacketLength(len));
    }
    let len = usize::try_from(len).map_err(|_| Error::PacketLength(len))?;
    if aligned_to > 1 && !(len + extra).is_multiple_of(aligned_to) {
        return Err(Error::PacketLength(u32::try_from(len).unwrap_or(u32::MAX)));
    }
    Ok(len)
}

/// Splits a decrypted `[padding_length][payload][padding]` body into the payload range.
fn payload_range(buf: &[u8], body_start: usize, packet_len: usize) -> Result<(usize, usize)> {
    let pad = usize::from(*buf.get(body_start).ok_or(Error::Internal("body"))?);
    if pad + 1 > packet_len {
        return Err(Error::protocol("padding longer than packet"));
    }
    Ok((body_start + 1, body_start + packet_len - pad))
}

impl Opener {
    pub(crate) fn none() -> Self {
        Opener {
            kind: OpenKind::None,
        }
    }

    pub(crate) fn new(k: &DirectionKeys) -> Result<Self> {
        let kind = match k.cipher {
            CipherAlg::Aes128Gcm | CipherAlg::Aes256Gcm => {
                OpenKind::Gcm(Gcm::new(k.cipher, &k.key, &k.iv)?)
            }
            CipherAlg::ChaCha20Poly1305 => {
                OpenKind::ChaCha(chacha::OpeningKey::new(k.chacha_key()?))
            }
            CipherAlg::Aes128Ctr | CipherAlg::Aes192Ctr | CipherAlg::Aes256Ctr => {
                let (key, ctr, mac, mac_key) = k.ctr_parts()?;
                let key = DecryptingKey::ctr(key).map_err(crypto("ctr key"))?;
                OpenKind::Ctr(Box::new(CtrOpen {
                    key,
                    ctr,
                    mac,
                    mac_key,
                    first_block_done: false,
                }))
            }
        };
        Ok(Opener { kind })
    }

    /// Tries to open the packet at the front of `buf`. Returns `Ok(None)` when more input is
    /// needed. Decrypts in place.
    pub(crate) fn open(&mut self, seq: u32, buf: &mut [u8]) -> Result<Option<Opened>> {
        match &mut self.kind {
            OpenKind::None => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                // Before the first NEWKEYS, psiphon-tunnel-core's obfuscation layer adds random
                // padding that breaks block alignment, and Go's SSH accepts it: so do we.
                let len = check_len(be32(buf)?, 1, 0)?;
                if buf.len() < 4 + len {
                    return Ok(None);
                }
                let (start, end) = payload_range(buf, 4, len)?;
                Ok(Some(Opened {
                    consumed: 4 + len,
                    start,
                    end,
                }))
            }
            OpenKind::Gcm(g) => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let len = check_len(be32(buf)?, 16, 0)?;
                let total = 4 + len + 16;
                if buf.len() < total {
                    return Ok(None);
                }
                let nonce = g.nonce();
                let (lenb, body) = buf[..total].split_at_mut(4);
                let aad = aead::Aad::from(
                    <[u8; 4]>::try_from(&*lenb).map_err(|_| Error::Internal("len"))?,
                );
                g.key
                    .open_in_place(nonce, aad, body)
                    .map_err(|_| Error::Mac)?;
                let (start, end) = payload_range(buf, 4, len)?;
                Ok(Some(Opened {
                    consumed: total,
                    start,
                    end,
                }))
            }
            OpenKind::ChaCha(key) => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let enc_len: [u8; 4] = buf[..4].try_into().map_err(|_| Error::Internal("len"))?;
                let len = check_len(
                    u32::from_be_bytes(key.decrypt_packet_length(seq, enc_len)),
                    8,
                    0,
                )?;
                let total = 4 + len + chacha::TAG_LEN;
                if buf.len() < total {
                    return Ok(None);
                }
                let (packet, tag) = buf[..total].split_at_mut(4 + len);
                let tag: &[u8; chacha::TAG_LEN] =
                    (&*tag).try_into().map_err(|_| Error::Internal("tag"))?;
                key.open_in_place(seq, packet, tag)
                    .map_err(|_| Error::Mac)?;
                // open_in_place leaves the length field encrypted; the payload starts after it.
                let (start, end) = payload_range(buf, 4, len)?;
                Ok(Some(Opened {
                    consumed: total,
                    start,
                    end,
                }))
            }
            OpenKind::Ctr(c) => {
                let CtrOpen {
                    key,
                    ctr,
                    mac,
                    mac_key,
                    first_block_done,
                } = &mut **c;
                let tag_len = mac.tag_len();
                if mac.is_etm() {
                    if buf.len() < 4 {
                        return Ok(None);
                    }
                    let len = check_len(be32(buf)?, 16, 0)?;
                    let total = 4 + len + tag_len;
                    if buf.len() < total {
                        return Ok(None);
                    }
                    let (packet, tag) = buf[..total].split_at_mut(4 + len);
                    verify_packet_mac(mac_key, *mac, seq, packet, tag)?;
                    let body = &mut packet[4..];
                    key.decrypt(body, ctr.dcontext()).map_err(crypto("ctr"))?;
                    ctr.advance(body.len());
                    let (start, end) = payload_range(buf, 4, len)?;
                    Ok(Some(Opened {
                        consumed: total,
                        start,
                        end,
                    }))
                } else {
                    if buf.len() < 16 {
                        return Ok(None);
                    }
                    if !*first_block_done {
                        key.decrypt(&mut buf[..16], ctr.dcontext())
                            .map_err(crypto("ctr"))?;
                        ctr.advance(16);
                        *first_block_done = true;
                    }
                    let len = check_len(be32(buf)?, 16, 4)?;
                    let total = 4 + len + tag_len;
                    if buf.len() < total {
                        return Ok(None);
                    }
                    let (packet, tag) = buf[..total].split_at_mut(4 + len);
                    let rest = &mut packet[16..];
                    key.decrypt(rest, ctr.dcontext()).map_err(crypto("ctr"))?;
                    ctr.advance(rest.len());
                    *first_block_done = false;
                    verify_packet_mac(mac_key, *mac, seq, packet, tag)?;
                    let (start, end) = payload_range(buf, 4, len)?;
                    Ok(Some(Opened {
                        consumed: total,
                        start,
                        end,
                    }))
                }
            }
        }
    }
}
