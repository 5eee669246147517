//! Key exchange (RFC 4253 §7–8, RFC 8731): KEXINIT, algorithm negotiation, curve25519-sha256,
//! the exchange hash and key derivation; strict KEX and ext-info markers.

use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::digest;

use crate::cipher::{CipherAlg, DirectionKeys, MacAlg};
use crate::error::{Error, Result};
use crate::msg;
use crate::wire::{Reader, WriteExt};

pub(crate) const KEX_CURVE25519: &str = "curve25519-sha256";
pub(crate) const KEX_CURVE25519_LIBSSH: &str = "curve25519-sha256@libssh.org";
pub(crate) const EXT_INFO_C: &str = "ext-info-c";
pub(crate) const STRICT_C: &str = "kex-strict-c-v00@openssh.com";
pub(crate) const STRICT_S: &str = "kex-strict-s-v00@openssh.com";

/// The algorithm lists one side offers.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub kex: Vec<&'static str>,
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
    let mut kex: Vec<&str> = offer.kex.clone();
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
    pub kex: &'static str,
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
    let kex = pick(
        &client.kex,
        &server.kex,
        &[KEX_CURVE25519, KEX_CURVE25519_LIBSSH],
    )
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

/// Our ephemeral X25519 key for one exchange.
pub(crate) struct Ephemeral {
    key: EphemeralPrivateKey,
    pub public: Vec<u8>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ephemeral")
    }
}

impl Ephemeral {
    pub(crate) fn generate() -> Result<Self> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key =
            EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| Error::Crypto("x25519"))?;
        let public = key
            .compute_public_key()
            .map_err(|_| Error::Crypto("x25519"))?
            .as_ref()
            .to_vec();
        Ok(Ephemeral { key, public })
    }

    /// Computes the shared secret with the peer's public value, as an mpint-encoded `K`.
    pub(crate) fn agree(self, peer: &[u8]) -> Result<Vec<u8>> {
        if peer.len() != 32 {
            return Err(Error::protocol("x25519 public value length"));
        }
        let peer = UnparsedPublicKey::new(&X25519, peer);
        let shared =
            agreement::agree_ephemeral(self.key, peer, Error::protocol("x25519 agreement"), |s| {
                // RFC 8731 §3: an all-zero shared secret must be refused.
                if s.iter().all(|&b| b == 0) {
                    return Err(Error::protocol("x25519 shared secret is zero"));
                }
                Ok(s.to_vec())
            })?;
        let mut k = Vec::with_capacity(37);
        k.put_mpint(&shared);
        Ok(k)
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

pub(crate) fn exchange_hash(h: &HashInput<'_>) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for s in [h.v_c, h.v_s, h.i_c, h.i_s, h.k_s, h.q_c, h.q_s] {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        ctx.update(&len.to_be_bytes());
        ctx.update(s);
    }
    ctx.update(h.k);
    ctx.finish().as_ref().to_vec()
}

/// RFC 4253 §7.2 key derivation for one letter, extended to `len` bytes.
fn derive(k: &[u8], h: &[u8], letter: u8, session_id: &[u8], len: usize) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(k);
    ctx.update(h);
    ctx.update(&[letter]);
    ctx.update(session_id);
    let mut out = ctx.finish().as_ref().to_vec();
    while out.len() < len {
        let mut ctx = digest::Context::new(&digest::SHA256);
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
    let dir = |cipher: CipherAlg, mac: Option<MacAlg>, iv: u8, key: u8, mk: u8| DirectionKeys {
        cipher,
        mac,
        iv: derive(k, h, iv, session_id, cipher.iv_len()),
        key: derive(k, h, key, session_id, cipher.key_len()),
        mac_key: mac
            .map(|m| derive(k, h, mk, session_id, m.key_len()))
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
            kex: vec![KEX_CURVE25519, KEX_CURVE25519_LIBSSH],
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
        assert_eq!(n.kex, KEX_CURVE25519);
        assert_eq!(n.cipher_c2s, CipherAlg::Aes128Gcm);
        assert!(n.mac_c2s.is_none());
        assert!(n.strict && n.client_ext_info && !n.ignore_guessed_packet);
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
    fn derivation_extends_beyond_one_hash() {
        let k = derive(b"k", b"h", b'C', b"sid", 64);
        assert_eq!(k.len(), 64);
        assert_eq!(&k[..32], &derive(b"k", b"h", b'C', b"sid", 32)[..]);
    }
}
