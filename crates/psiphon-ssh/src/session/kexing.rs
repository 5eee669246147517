//! The key exchange as run by a [`Session`]: first exchange and rekeys, either side starting.

use std::time::Instant;

use super::{Event, Phase, Role, Session};
use crate::cipher::{DirectionKeys, Opener, Sealer};
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::kex::{self, Ephemeral, HashInput, KexInit, Negotiated, Offer};
use crate::keys::PublicKey;
use crate::msg;
use crate::wire::{Reader, WriteExt};

/// Where a key exchange stands.
pub(crate) enum KexState {
    /// No exchange running.
    Idle,
    /// We sent our KEXINIT (payload kept for the hash); the peer's may have arrived.
    Running {
        ours: Vec<u8>,
        theirs: Option<Vec<u8>>,
        negotiated: Option<Negotiated>,
        /// The client's ephemeral key, after it sent KEX_ECDH_INIT.
        ephemeral: Option<Ephemeral>,
        /// The next packet is a wrong guess by the peer and must be dropped.
        drop_guess: bool,
    },
    /// We sent NEWKEYS; waiting for the peer's to switch our incoming keys.
    AwaitNewKeys { incoming: DirectionKeys },
}

impl KexState {
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self, KexState::Idle)
    }

    /// While our KEXINIT is out and our NEWKEYS is not, only KEX messages may be sent.
    pub(crate) fn sending_blocked(&self) -> bool {
        matches!(self, KexState::Running { .. })
    }

    /// Consumes the "ignore the peer's wrong guess" flag, saying whether to drop this packet.
    pub(crate) fn swallow_guess(&mut self) -> bool {
        if let KexState::Running { drop_guess, .. } = self
            && *drop_guess
        {
            *drop_guess = false;
            return true;
        }
        false
    }
}

impl Session {
    fn offer(&self) -> Offer {
        let host_key = match &self.role {
            Role::Client { config, .. } => config
                .host_key_algorithms
                .iter()
                .copied()
                .filter(|a| ClientConfig::HOST_KEY_ALGORITHMS.contains(a))
                .collect(),
            Role::Server { config, .. } => {
                let mut v: Vec<&'static str> = Vec::new();
                for k in &config.host_keys {
                    for a in k.signing_algorithms() {
                        if !v.contains(a) {
                            v.push(a);
                        }
                    }
                }
                v
            }
        };
        Offer {
            kex: self.config.kex.clone(),
            host_key,
            ciphers: self.config.ciphers.clone(),
            macs: self.config.macs.clone(),
        }
    }

    /// Sends our KEXINIT and enters the running state.
    pub(super) fn start_kex(&mut self, _now: Instant) -> Result<()> {
        let first = self.session_id.is_none();
        let ours = kex::build_kexinit(&self.offer(), self.role.is_client(), first)?;
        self.seal(&ours)?;
        self.kex = KexState::Running {
            ours,
            theirs: None,
            negotiated: None,
            ephemeral: None,
            drop_guess: false,
        };
        Ok(())
    }

    pub(super) fn maybe_rekey(&mut self, now: Instant) -> Result<()> {
        if self.session_id.is_none() || !self.kex.is_idle() || self.phase == Phase::Closed {
            return Ok(());
        }
        let due = self.bytes_since_kex >= self.config.rekey_bytes
            || self.packets_since_kex >= 1 << 31
            || now.saturating_duration_since(self.last_kex_at) >= self.config.rekey_interval;
        if due { self.start_kex(now) } else { Ok(()) }
    }

    pub(super) fn on_kexinit(&mut self, payload: &[u8], now: Instant) -> Result<()> {
        if self.session_id.is_none() && self.recv_count != 1 && self.peer_offers_strict(payload) {
            // Strict KEX: the peer's KEXINIT must be the very first packet.
            return Err(Error::protocol(
                "strict key exchange: KEXINIT was not first",
            ));
        }
        if self.kex.is_idle() {
            self.start_kex(now)?;
        }
        let is_client = self.role.is_client();
        let host_key_algs = self.offer().host_key;
        let KexState::Running {
            ours,
            theirs,
            negotiated,
            drop_guess,
            ..
        } = &mut self.kex
        else {
            return Err(Error::protocol("KEXINIT during key exchange"));
        };
        if theirs.is_some() {
            return Err(Error::protocol("second KEXINIT"));
        }
        let ours_parsed = KexInit::parse(ours)?;
        let theirs_parsed = KexInit::parse(payload)?;
        let (c, s) = if is_client {
            (&ours_parsed, &theirs_parsed)
        } else {
            (&theirs_parsed, &ours_parsed)
        };
        let n = kex::negotiate(c, s, is_client, &host_key_algs)?;
        *drop_guess = n.ignore_guessed_packet;
        *theirs = Some(payload.to_vec());
        if self.session_id.is_none() {
            self.strict = n.strict;
        }
        let method = n.kex;
        *negotiated = Some(n);
        if is_client {
            let eph = Ephemeral::generate(method)?;
            let mut p = Vec::new();
            p.put_u8(msg::KEX_ECDH_INIT);
            p.put_string(&eph.public);
            if let KexState::Running { ephemeral, .. } = &mut self.kex {
                *ephemeral = Some(eph);
            }
            self.seal(&p)?;
        }
        Ok(())
    }

    fn peer_offers_strict(&self, payload: &[u8]) -> bool {
        let marker = if self.role.is_client() {
            kex::STRICT_S
        } else {
            kex::STRICT_C
        };
        KexInit::parse(payload)
            .map(|k| k.kex.iter().any(|a| a == marker))
            .unwrap_or(false)
    }

    pub(super) fn on_kex_message(&mut self, payload: &[u8], now: Instant) -> Result<()> {
        let kind = payload.first().copied().unwrap_or(0);
        match (self.role.is_client(), kind) {
            (false, msg::KEX_ECDH_INIT) => self.server_ecdh(payload, now),
            (true, msg::KEX_ECDH_REPLY) => self.client_ecdh_reply(payload, now),
            _ => Err(Error::protocol(format!(
                "unexpected key exchange message {kind}"
            ))),
        }
    }

    fn server_ecdh(&mut self, payload: &[u8], now: Instant) -> Result<()> {
        let KexState::Running {
            ours,
            theirs: Some(theirs),
            negotiated: Some(n),
            ..
        } = &self.kex
        else {
            return Err(Error::protocol("KEX_ECDH_INIT out of order"));
        };
        let Role::Server { config, .. } = &self.role else {
            return Err(Error::Internal("server_ecdh on client"));
        };
        let n = n.clone();
        let mut r = Reader::new(&payload[1..]);
        let q_c = r.string()?.to_vec();
        let key = config
            .host_keys
            .iter()
            .find(|k| k.signing_algorithms().contains(&n.host_key))
            .cloned()
            .ok_or(Error::Internal("negotiated host key missing"))?;
        let eph = Ephemeral::generate(n.kex)?;
        let q_s = eph.public.clone();
        let k = eph.agree(&q_c)?;
        let peer_version = self
            .peer_version
            .clone()
            .ok_or(Error::Internal("no peer version"))?;
        let h = kex::exchange_hash(
            n.kex,
            &HashInput {
                v_c: &peer_version,
                v_s: &self.our_version,
                i_c: theirs,
                i_s: ours,
                k_s: key.public_key().blob(),
                q_c: &q_c,
                q_s: &q_s,
                k: &k,
            },
        );
        let sig = key.sign(n.host_key, &h)?;
        let mut p = Vec::new();
        p.put_u8(msg::KEX_ECDH_REPLY);
        p.put_string(key.public_key().blob());
        p.put_string(&q_s);
        p.put_string(&sig);
        self.seal(&p)?;
        if self.host_key.is_none() {
            self.host_key = Some(key.public_key().clone());
        }
        self.finish_exchange(&n, &k, &h, now)
    }

    fn client_ecdh_reply(&mut self, payload: &[u8], now: Instant) -> Result<()> {
        let KexState::Running {
            ours,
            theirs: Some(theirs),
            negotiated: Some(n),
            ephemeral,
            ..
        } = &mut self.kex
        else {
            return Err(Error::protocol("KEX_ECDH_REPLY out of order"));
        };
        let eph = ephemeral
            .take()
            .ok_or_else(|| Error::protocol("KEX_ECDH_REPLY out of order"))?;
        let n = n.clone();
        let (i_c, i_s) = (ours.clone(), theirs.clone());
        let mut r = Reader::new(&payload[1..]);
        let k_s = r.string()?;
        let q_s = r.string()?;
        let sig = r.string()?;
        let host_key = PublicKey::from_blob(k_s)?;
        if !host_key.signature_algorithms().contains(&n.host_key) {
            return Err(Error::protocol(
                "host key type does not match negotiated algorithm",
            ));
        }
        let q_c = eph.public.clone();
        let k = eph.agree(q_s)?;
        let peer_version = self
            .peer_version
            .clone()
            .ok_or(Error::Internal("no peer version"))?;
        let h = kex::exchange_hash(
            n.kex,
            &HashInput {
                v_c: &self.our_version,
                v_s: &peer_version,
                i_c: &i_c,
                i_s: &i_s,
                k_s,
                q_c: &q_c,
                q_s,
                k: &k,
            },
        );
        host_key.verify(n.host_key, &h, sig)?;
        match &self.host_key {
            None => {
                let Role::Client { config, .. } = &self.role else {
                    return Err(Error::Internal("client_ecdh_reply on server"));
                };
                if !(config.host_key_check)(&host_key) {
                    return Err(Error::HostKeyRejected);
                }
                self.host_key = Some(host_key);
            }
            // A rekey must not change the server's identity.
            Some(first) if *first != host_key => return Err(Error::HostKeyRejected),
            Some(_) => {}
        }
        self.finish_exchange(&n, &k, &h, now)
    }

    /// Derives keys, sends NEWKEYS and switches our outgoing direction.
    fn finish_exchange(&mut self, n: &Negotiated, k: &[u8], h: &[u8], _now: Instant) -> Result<()> {
        let first = self.session_id.is_none();
        if first {
            self.session_id = Some(h.to_vec());
        }
        let sid = self
            .session_id
            .clone()
            .ok_or(Error::Internal("session id"))?;
        let (c2s, s2c) = kex::derive_keys(n, k, h, &sid);
        let (outgoing, incoming) = if self.role.is_client() {
            (c2s, s2c)
        } else {
            (s2c, c2s)
        };
        tracing::debug!(
            kex = n.kex.name(),
            host_key = n.host_key,
            cipher_out = outgoing.cipher.name(),
            cipher_in = incoming.cipher.name(),
            strict = self.strict,
            first,
            "key exchange complete"
        );
        self.seal(&[msg::NEWKEYS])?;
        self.sealer = Sealer::new(&outgoing)?;
        if self.strict {
            self.send_seq = 0;
        }
        if first && !self.role.is_client() && n.client_ext_info {
            let mut p = Vec::new();
            p.put_u8(msg::EXT_INFO);
            p.put_u32(1);
            p.put_string(b"server-sig-algs");
            p.put_string(b"ssh-ed25519,rsa-sha2-256,rsa-sha2-512,ssh-rsa");
            self.seal(&p)?;
        }
        self.kex = KexState::AwaitNewKeys { incoming };
        // What the application produced during the exchange can go now, under the new keys.
        while let Some(p) = self.queued.pop_front() {
            self.seal(&p)?;
        }
        self.wake_blocked_writers();
        Ok(())
    }

    pub(super) fn on_newkeys(&mut self, now: Instant) -> Result<()> {
        let KexState::AwaitNewKeys { incoming } = std::mem::replace(&mut self.kex, KexState::Idle)
        else {
            return Err(Error::protocol("NEWKEYS out of order"));
        };
        self.opener = Opener::new(&incoming)?;
        if self.strict {
            self.recv_seq = 0;
        }
        self.bytes_since_kex = 0;
        self.packets_since_kex = 0;
        self.last_kex_at = now;
        if self.phase == Phase::Handshake {
            self.phase = Phase::Auth;
            let host_key = self
                .host_key
                .clone()
                .ok_or(Error::Internal("no host key"))?;
            self.events.push_back(Event::HandshakeDone { host_key });
            self.client_start_auth()?;
        } else {
            self.events.push_back(Event::Rekeyed);
        }
        self.wake_blocked_writers();
        Ok(())
    }
}
