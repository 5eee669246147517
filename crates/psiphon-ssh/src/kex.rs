//! Key exchange (RFC 4253 §7–8): KEXINIT, algorithm negotiation, the exchange methods
//! (curve25519-sha256 of RFC 8731, the NIST-curve ECDH of RFC 5656, the MODP Diffie-Hellman of
//! RFC 4253/8268), the exchange hash and key derivation; strict KEX and ext-info markers.

use aws_lc_rs::agreement::{
    self, ECDH_P256, ECDH_P384, ECDH_P521, EphemeralPrivateKey, UnparsedPublicKey, X25519,
};
use aws_lc_rs::digest;

use crate::cipher::{CipherAlg, DirectionKeys, MacAlg};
use crate::dh::{DhKey, Group};
use crate::error::{Error, Result};
use crate::msg;
use crate::wire::{Reader, WriteExt};

/// A key exchange method we can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexAlg {
    /// `curve25519-sha256` (RFC 8731).
    Curve25519,
    /// `curve25519-sha256@libssh.org`, the same method under its older name.
    Curve25519Libssh,
    /// `ecdh-sha2-nistp256` (RFC 5656).
    EcdhP256,
    /// `ecdh-sha2-nistp384`.
    EcdhP384,
    /// `ecdh-sha2-nistp521`.
    EcdhP521,
    /// `diffie-hellman-group14-sha256` (RFC 8268).
    Dh14Sha256,
    /// `diffie-hellman-group16-sha512` (RFC 8268).
    Dh16Sha512,
    /// `diffie-hellman-group14-sha1` (RFC 4253 §8.2); SHA-1 exchange hash, kept because
    /// psiphon-tunnel-core's randomised lists sometimes offer little else.
    Dh14Sha1,
}

impl KexAlg {
    /// Every method we implement, in our order of preference: curve25519 first, then the
    /// constant-time NIST curves, then the variable-time finite-field groups.
    pub const ALL: [KexAlg; 8] = [
        KexAlg::Curve25519,
        KexAlg::Curve25519Libssh,
        KexAlg::EcdhP256,
        KexAlg::EcdhP384,
        KexAlg::EcdhP521,
        KexAlg::Dh14Sha256,
        KexAlg::Dh16Sha512,
        KexAlg::Dh14Sha1,
    ];

    /// The SSH name.
    pub fn name(self) -> &'static str {
        match self {
            KexAlg::Curve25519 => "curve25519-sha256",
            KexAlg::Curve25519Libssh => "curve25519-sha256@libssh.org",
            KexAlg::EcdhP256 => "ecdh-sha2-nistp256",
            KexAlg::EcdhP384 => "ecdh-sha2-nistp384",
            KexAlg::EcdhP521 => "ecdh-sha2-nistp521",
            KexAlg::Dh14Sha256 => "diffie-hellman-group14-sha256",
            KexAlg::Dh16Sha512 => "diffie-hellman-group16-sha512",
            KexAlg::Dh14Sha1 => "diffie-hellman-group14-sha1",
        }
    }

    /// Parses an SSH name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The hash of the exchange hash and of key derivation.
    fn hash(self) -> &'static digest::Algorithm {
        match self {
            KexAlg::Curve25519 | KexAlg::Curve25519Libssh | KexAlg::EcdhP256 => &digest::SHA256,
            KexAlg::Dh14Sha256 => &digest::SHA256,
            KexAlg::EcdhP384 => &digest::SHA384,
            KexAlg::EcdhP521 | KexAlg::Dh16Sha512 => &digest::SHA512,
            KexAlg::Dh14Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        }
    }
}
pub(crate) const EXT_INFO_C: &str = "ext-info-c";
pub(crate) const STRICT_C: &str = "kex-strict-c-v00@openssh.com";
pub(crate) const STRICT_S: &str = "kex-strict-s-v00@openssh.com";

/// The algorithm lists one side offers.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub kex: Vec<KexAlg>,
    pub host_key: Vec<&'static str>,
    pub ciphers: Vec<CipherAlg>,
    pub macs: Vec<MacAlg>,
}

/// A parsed KEXINIT.
#[derive(Debug, Clone)]
pub(crate) struct KexInit {
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub enc_c2s: Vec<String>,
    pub enc_s2c: Vec<String>,
    pub mac_c2s: Vec<String>,
    pub mac_s2c: Vec<String>,
    pub comp_c2s: Vec<String>,
    pub comp_s2c: Vec<String>,
    pub first_kex_follows: bool,
}

fn owned(v: Vec<&str>) -> Vec<String> {
    v.into_iter().map(str::to_owned).collect()
}

impl KexInit {
    pub(crate) fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload);
        if r.u8()? != msg::KEXINIT {
            return Err(Error::protocol("not a KEXINIT"));
        }
        let mut cookie = [0u8; 16];
        for b in &mut cookie {
            *b = r.u8()?;
        }
        let k = KexInit {
            kex: owned(r.name_list()?),
            host_key: owned(r.name_list()?),
            enc_c2s: owned(r.name_list()?),
            enc_s2c: owned(r.name_list()?),
            mac_c2s: owned(r.name_list()?),
            mac_s2c: owned(r.name_list()?),
            comp_c2s: owned(r.name_list()?),
            comp_s2c: owned(r.name_list()?),
            first_kex_follows: {
                let _lang_c2s = r.name_list()?;
                let _lang_s2c = r.name_list()?;
                r.bool()?
            },
        };
        let _reserved = r.u32()?;
        Ok(k)
    }
}

/// Builds our KEXINIT payload. `first` adds the one-time markers (ext-info, strict KEX).
pub(crate) fn build_kexinit(offer: &Offer, is_client: bool, first: bool) -> Result<Vec<u8>> {
    let mut cookie = [0u8; 16];
    aws_lc_rs::rand::fill(&mut cookie).map_err(|_| Error::Crypto("rng"))?;
    let mut kex: Vec<&str> = offer.kex.iter().map(|k| k.name()).collect();
    if first {
        if is_client {
            kex.push(EXT_INFO_C);
            kex.push(STRICT_C);
        } else {
            kex.push(STRICT_S);
        }
    }
    let ciphers: Vec<&str> = offer.ciphers.iter().map(|c| c.name()).collect();
    let macs: Vec<&str> = offer.macs.iter().map(|m| m.name()).collect();
    let mut p = Vec::with_capacity(512);
    p.put_u8(msg::KEXINIT);
    p.extend_from_slice(&cookie);
    p.put_name_list(&kex);
    p.put_name_list(&offer.host_key);
    p.put_name_list(&ciphers);
    p.put_name_list(&ciphers);
    p.put_name_list(&macs);
    p.put_name_list(&macs);
    p.put_name_list(&["none"]);
    p.put_name_list(&["none"]);
    p.put_name_list(&[]);
    p.put_name_list(&[]);
    p.put_bool(false);
    p.put_u32(0);
    Ok(p)
}

/// The outcome of negotiation.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub kex: KexAlg,
    pub host_key: &'static str,
    pub cipher_c2s: CipherAlg,
    pub cipher_s2c: CipherAlg,
    pub mac_c2s: Option<MacAlg>,
    pub mac_s2c: Option<MacAlg>,
    /// Both sides offered strict KEX (only meaningful on the first exchange).
    pub strict: bool,
    /// The client offered ext-info (the server then sends EXT_INFO).
    pub client_ext_info: bool,
    /// The peer guessed and sent a first KEX packet that we must ignore.
    pub ignore_guessed_packet: bool,
}

fn pick<'a>(client: &[String], server: &[String], candidates: &[&'a str]) -> Option<&'a str> {
    client
        .iter()
        .find(|c| server.iter().any(|s| s == *c))
        .and_then(|c| candidates.iter().find(|k| **k == c.as_str()).copied())
}

fn no_common(what: &'static str, ours: &[String], theirs: &[String]) -> Error {
    Error::NoCommonAlgorithm {
        what,
        ours: ours.join(","),
        theirs: theirs.join(","),
    }
}

/// Runs RFC 4253 §7.1 negotiation: the client's first choice the server also supports.
pub(crate) fn negotiate(
    client: &KexInit,
    server: &KexInit,
    we_are_client: bool,
    supported_host_keys: &[&'static str],
) -> Result<Negotiated> {
    let (ours, theirs) = if we_are_client {
        (client, server)
    } else {
        (server, client)
    };
    let kex_names: Vec<&'static str> = KexAlg::ALL.iter().map(|k| k.name()).collect();
    let kex = pick(&client.kex, &server.kex, &kex_names)
        .and_then(KexAlg::from_name)
        .ok_or_else(|| no_common("key exchange", &ours.kex, &theirs.kex))?;
    let host_key = pick(&client.host_key, &server.host_key, supported_host_keys)
        .ok_or_else(|| no_common("host key", &ours.host_key, &theirs.host_key))?;
    let cipher_names: Vec<&'static str> = CipherAlg::ALL.iter().map(|c| c.name()).collect();
    let mac_names: Vec<&'static str> = MacAlg::ALL.iter().map(|m| m.name()).collect();
    let cipher = |c: &[String], s: &[String], ours: &[String], theirs: &[String]| {
        pick(c, s, &cipher_names)
            .and_then(CipherAlg::from_name)
            .ok_or_else(|| no_common("cipher", ours, theirs))
    };
    let cipher_c2s = cipher(
        &client.enc_c2s,
        &server.enc_c2s,
        &ours.enc_c2s,
        &theirs.enc_c2s,
    )?;
    let cipher_s2c = cipher(
        &client.enc_s2c,
        &server.enc_s2c,
        &ours.enc_s2c,
        &theirs.enc_s2c,
    )?;
    let mac =
        |cipher: CipherAlg, c: &[String], s: &[String], ours: &[String], theirs: &[String]| {
            if cipher.is_aead() {
                return Ok(None);
            }
            pick(c, s, &mac_names)
                .and_then(MacAlg::from_name)
                .map(Some)
                .ok_or_else(|| no_common("mac", ours, theirs))
        };
    let mac_c2s = mac(
        cipher_c2s,
        &client.mac_c2s,
        &server.mac_c2s,
        &ours.mac_c2s,
        &theirs.mac_c2s,
    )?;
    let mac_s2c = mac(
        cipher_s2c,
        &client.mac_s2c,
        &server.mac_s2c,
        &ours.mac_s2c,
        &theirs.mac_s2c,
    )?;
    for (c, s) in [
        (&client.comp_c2s, &server.comp_c2s),
        (&client.comp_s2c, &server.comp_s2c),
    ] {
        if !c.iter().any(|x| x == "none") || !s.iter().any(|x| x == "none") {
            return Err(no_common("compression", &ours.comp_c2s, &theirs.comp_c2s));
        }
    }
    let strict =
        client.kex.iter().any(|k| k == STRICT_C) && server.kex.iter().any(|k| k == STRICT_S);
    let client_ext_info = client.kex.iter().any(|k| k == EXT_INFO_C);
    // RFC 4253 §7: a guessed packet is wrong when the first KEX or host key algorithms differ.
    let guesser = theirs;
    let ignore_guessed_packet = guesser.first_kex_follows
        && (client.kex.first() != server.kex.first()
            || client.host_key.first() != server.host_key.first());
    Ok(Negotiated {
        kex,
        host_key,
        cipher_c2s,
        cipher_s2c,
        mac_c2s,
        mac_s2c,
        strict,
        client_ext_info,
        ignore_guessed_packet,
    })
}

enum EphemeralKind {
    /// X25519 or a NIST curve (aws-lc-rs); the algorithm is kept to parse the peer's point.
    Ecdh {
        key: EphemeralPrivateKey,
        alg: &'static agreement::Algorithm,
    },
    /// A MODP group.
    Dh(DhKey),
}

/// Our ephemeral key for one exchange.
pub(crate) struct Ephemeral {
    kind: EphemeralKind,
    /// Our public value as it goes on the wire inside a `string`: Q (RFC 5656, RFC 8731) or
    /// the body of the mpint e or f (RFC 4253 §8). Either way the exchange hash takes it as a
    /// length-prefixed string.
    pub public: Vec<u8>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ephemeral")
    }
}

impl Ephemeral {
    pub(crate) fn generate(method: KexAlg) -> Result<Self> {
        let alg: &'static agreement::Algorithm = match method {
            KexAlg::Curve25519 | KexAlg::Curve25519Libssh => &X25519,
            KexAlg::EcdhP256 => &ECDH_P256,
            KexAlg::EcdhP384 => &ECDH_P384,
            KexAlg::EcdhP521 => &ECDH_P521,
            KexAlg::Dh14Sha256 | KexAlg::Dh14Sha1 => {
                return Ok(Self::dh(DhKey::generate(Group::Modp2048)?));
            }
            KexAlg::Dh16Sha512 => return Ok(Self::dh(DhKey::generate(Group::Modp4096)?)),
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = EphemeralPrivateKey::generate(alg, &rng).map_err(|_| Error::Crypto("ecdh"))?;
        // X25519: the 32-byte u-coordinate; NIST curves: the uncompressed SEC1 point, as RFC
        // 5656 §4 requires.
        let public = key
            .compute_public_key()
            .map_err(|_| Error::Crypto("ecdh"))?
            .as_ref()
            .to_vec();
        Ok(Ephemeral {
            kind: EphemeralKind::Ecdh { key, alg },
            public,
        })
    }

    fn dh(key: DhKey) -> Self {
        let public = key.public.clone();
        Ephemeral {
            kind: EphemeralKind::Dh(key),
            public,
        }
    }

    /// Computes the shared secret with the peer's public value, as an mpint-encoded `K`.
    pub(crate) fn agree(self, peer: &[u8]) -> Result<Vec<u8>> {
        let (key, alg) = match self.kind {
            EphemeralKind::Dh(key) => return key.agree(peer),
            EphemeralKind::Ecdh { key, alg } => (key, alg),
        };
        let x25519 = alg == &X25519;
        if x25519 && peer.len() != 32 {
            return Err(Error::protocol("x25519 public value length"));
        }
        // aws-lc-rs checks that a NIST point is well formed and on the curve.
        let peer = UnparsedPublicKey::new(alg, peer);
        let shared =
            agreement::agree_ephemeral(key, peer, Error::protocol("ecdh agreement"), |s| {
                // RFC 8731 §3: an all-zero shared secret must be refused.
                if x25519 && s.iter().all(|&b| b == 0) {
                    return Err(Error::protocol("x25519 shared secret is zero"));
                }
                // RFC 5656 §4: K is the x coordinate (X25519: the output) as an mpint.
                let mut k = Vec::with_capacity(s.len() + 5);
                k.put_mpint(s);
                Ok(k)
            })?;
        Ok(shared)
    }
}

/// The inputs of the exchange hash H (RFC 5656 §4 / RFC 8731).
pub(crate) struct HashInput<'a> {
    pub v_c: &'a [u8],
    pub v_s: &'a [u8],
    pub i_c: &'a [u8],
    pub i_s: &'a [u8],
    pub k_s: &'a [u8],
    pub q_c: &'a [u8],
    pub q_s: &'a [u8],
    /// The mpint-encoded shared secret.
    pub k: &'a [u8],
}

pub(crate) fn exchange_hash(method: KexAlg, h: &HashInput<'_>) -> Vec<u8> {
    let mut ctx = digest::Context::new(method.hash());
    for s in [h.v_c, h.v_s, h.i_c, h.i_s, h.k_s, h.q_c, h.q_s] {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(s);
    }
    ctx.update(h.k);
    ctx.finish().as_ref().to_vec()
}

/// RFC 4253 §7.2 key derivation for one letter, extended to `len` bytes.
fn derive(
    hash: &'static digest::Algorithm,
    k: &[u8],
    h: &[u8],
    letter: u8,
    session_id: &[u8],
    len: usize,
) -> Vec<u8> {
    let mut ctx = digest::Context::new(hash);
    ctx.update(k);
    ctx.update(h);
    ctx.update(&[letter]);
    ctx.update(session_id);
    let mut out = ctx.finish().as_ref().to_vec();
    while out.len() < len {
        let mut ctx = digest::Context::new(hash);
        ctx.update(k);
        ctx.update(h);
        ctx.update(&out);
        out.extend_from_slice(ctx.finish().as_ref());
    }
    out.truncate(len);
    out
}

/// Derives both directions' keys. Returns (client-to-server, server-to-client).
pub(crate) fn derive_keys(
    n: &Negotiated,
    k: &[u8],
    h: &[u8],
    session_id: &[u8],
) -> (DirectionKeys, DirectionKeys) {
    let hash = n.kex.hash();
    let dir = |cipher: CipherAlg, mac: Option<MacAlg>, iv: u8, key: u8, mk: u8| DirectionKeys {
        cipher,
        mac,
        iv: derive(hash, k, h, iv, session_id, cipher.iv_len()),
        key: derive(hash, k, h, key, session_id, cipher.key_len()),
        mac_key: mac
            .map(|m| derive(hash, k, h, mk, session_id, m.key_len()))
            .unwrap_or_default(),
    };
    (
        dir(n.cipher_c2s, n.mac_c2s, b'A', b'C', b'E'),
        dir(n.cipher_s2c, n.mac_s2c, b'B', b'D', b'F'),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            kex: KexAlg::ALL.to_vec(),
            host_key: vec!["ssh-ed25519", "rsa-sha2-256"],
            ciphers: CipherAlg::ALL.to_vec(),
            macs: MacAlg::ALL.to_vec(),
        }
    }

    #[test]
    fn kexinit_roundtrip_and_negotiation() {
        let c = KexInit::parse(&build_kexinit(&offer(), true, true).unwrap()).unwrap();
        let s = KexInit::parse(&build_kexinit(&offer(), false, true).unwrap()).unwrap();
        let n = negotiate(&c, &s, true, &["ssh-ed25519", "rsa-sha2-256"]).unwrap();
        assert_eq!(n.kex, KexAlg::Curve25519);
        assert_eq!(n.cipher_c2s, CipherAlg::Aes128Gcm);
        assert!(n.mac_c2s.is_none());
        assert!(n.strict && n.client_ext_info && !n.ignore_guessed_packet);
    }

    /// Our default offer keeps the modern algorithms first and the ones added for
    /// psiphon-tunnel-core's truncated lists (NIST ECDH, MODP DH, aes192-ctr, SHA-1) after them.
    #[test]
    fn default_offer_order() {
        let cfg = crate::config::Config::default();
        let o = Offer {
            kex: cfg.kex,
            host_key: vec!["ssh-ed25519"],
            ciphers: cfg.ciphers,
            macs: cfg.macs,
        };
        let c = KexInit::parse(&build_kexinit(&o, true, true).unwrap()).unwrap();
        assert_eq!(
            c.kex.join(","),
            "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
             ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group14-sha256,\
             diffie-hellman-group16-sha512,diffie-hellman-group14-sha1,ext-info-c,\
             kex-strict-c-v00@openssh.com"
        );
        assert_eq!(
            c.enc_c2s.join(","),
            "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,\
             aes128-ctr,aes256-ctr,aes192-ctr"
        );
        assert_eq!(
            c.mac_s2c.join(","),
            "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,\
             hmac-sha2-512,hmac-sha1,hmac-sha1-96"
        );
    }

    /// A psiphon-tunnel-core server list seen in the field without curve25519, and one with
    /// only SHA-1 choices left: both negotiate now.
    #[test]
    fn truncated_tunnel_core_lists_negotiate() {
        let server = |kex: &[&str], cipher: &str, mac: &str| {
            let mut p = vec![msg::KEXINIT];
            p.extend_from_slice(&[0u8; 16]);
            p.put_name_list(kex);
            p.put_name_list(&["rsa-sha2-512", "ssh-rsa"]);
            p.put_name_list(&[cipher]);
            p.put_name_list(&[cipher]);
            p.put_name_list(&[mac]);
            p.put_name_list(&[mac]);
            p.put_name_list(&["none"]);
            p.put_name_list(&["none"]);
            p.put_name_list(&[]);
            p.put_name_list(&[]);
            p.put_bool(false);
            p.put_u32(0);
            KexInit::parse(&p).unwrap()
        };
        let hk = ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"];
        let mut o = offer();
        o.host_key = hk.to_vec();
        let c = KexInit::parse(&build_kexinit(&o, true, true).unwrap()).unwrap();
        let s = server(
            &[
                "diffie-hellman-group16-sha512",
                "ecdh-sha2-nistp521",
                "diffie-hellman-group14-sha256",
                "ecdh-sha2-nistp256",
                "ecdh-sha2-nistp384",
                "diffie-hellman-group14-sha1",
            ],
            "aes192-ctr",
            "hmac-sha1",
        );
        let n = negotiate(&c, &s, true, &hk).unwrap();
        assert_eq!(n.kex, KexAlg::EcdhP256);
        assert_eq!(n.cipher_c2s, CipherAlg::Aes192Ctr);
        assert_eq!(n.mac_s2c, Some(MacAlg::HmacSha1));
        assert_eq!(n.host_key, "rsa-sha2-512");
        let s = server(
            &["diffie-hellman-group14-sha1"],
            "aes128-ctr",
            "hmac-sha1-96",
        );
        let n = negotiate(&c, &s, true, &hk).unwrap();
        assert_eq!(n.kex, KexAlg::Dh14Sha1);
        assert_eq!(n.mac_c2s, Some(MacAlg::HmacSha1_96));
    }

    #[test]
    fn no_common_cipher_is_named() {
        let mut o = offer();
        o.ciphers = vec![CipherAlg::Aes256Ctr];
        let c = KexInit::parse(&build_kexinit(&o, true, true).unwrap()).unwrap();
        let mut o2 = offer();
        o2.ciphers = vec![CipherAlg::Aes128Gcm];
        let s = KexInit::parse(&build_kexinit(&o2, false, true).unwrap()).unwrap();
        let e = negotiate(&c, &s, true, &["ssh-ed25519"]).unwrap_err();
        assert!(
            matches!(e, Error::NoCommonAlgorithm { what: "cipher", .. }),
            "{e}"
        );
    }

    #[test]
    fn every_method_agrees_and_names_roundtrip() {
        for m in KexAlg::ALL {
            assert_eq!(KexAlg::from_name(m.name()), Some(m));
            let a = Ephemeral::generate(m).unwrap();
            let b = Ephemeral::generate(m).unwrap();
            let (pa, pb) = (a.public.clone(), b.public.clone());
            let (ka, kb) = (a.agree(&pb).unwrap(), b.agree(&pa).unwrap());
            assert_eq!(ka, kb, "{}", m.name());
            if !matches!(
                m,
                KexAlg::Dh14Sha256 | KexAlg::Dh14Sha1 | KexAlg::Dh16Sha512
            ) {
                let other = Ephemeral::generate(m).unwrap();
                assert!(other.agree(&pa[..pa.len() - 1]).is_err(), "{}", m.name());
            }
        }
    }

    #[test]
    fn nist_points_off_the_curve_are_refused() {
        for m in [KexAlg::EcdhP256, KexAlg::EcdhP384, KexAlg::EcdhP521] {
            let a = Ephemeral::generate(m).unwrap();
            let mut q = Ephemeral::generate(m).unwrap().public;
            assert_eq!(q[0], 4, "uncompressed point");
            let last = q.len() - 1;
            q[last] ^= 1;
            assert!(a.agree(&q).is_err(), "{}", m.name());
        }
    }

    /// Exchange hash and key derivation use the method's hash (RFC 5656 §6.2.1, RFC 8268).
    #[test]
    fn hash_follows_the_method() {
        let input = HashInput {
            v_c: b"c",
            v_s: b"s",
            i_c: b"ic",
            i_s: b"is",
            k_s: b"ks",
            q_c: b"qc",
            q_s: b"qs",
            k: &[0, 0, 0, 1, 5],
        };
        let lens: Vec<usize> = KexAlg::ALL
            .iter()
            .map(|m| exchange_hash(*m, &input).len())
            .collect();
        assert_eq!(lens, [32, 32, 32, 48, 64, 32, 64, 20]);
    }

    #[test]
    fn derivation_extends_beyond_one_hash() {
        let k = derive(&digest::SHA256, b"k", b"h", b'C', b"sid", 64);
        assert_eq!(k.len(), 64);
        assert_eq!(
            &k[..32],
            &derive(&digest::SHA256, b"k", b"h", b'C', b"sid", 32)[..]
        );
        // SHA-1 (20 bytes) needs two extensions for a 48-byte key.
        let k = derive(
            &digest::SHA1_FOR_LEGACY_USE_ONLY,
            b"k",
            b"h",
            b'C',
            b"sid",
            48,
        );
        assert_eq!(k.len(), 48);
    }
}
