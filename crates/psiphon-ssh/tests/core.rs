//! The sans-IO core driven by hand: two `Session`s exchanging bytes in memory, with hostile
//! input in between.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;
use psiphon_ssh::{
    ChannelId, ChannelRead, ClientAuth, ClientConfig, Error, ErrorKind, Event, PrivateKey,
    ServerConfig, Session,
};

fn host_key() -> Arc<PrivateKey> {
    Arc::new(PrivateKey::ed25519_from_seed(&[7u8; 32]).unwrap())
}

fn sessions() -> (Session, Session) {
    let key = host_key();
    let now = Instant::now();
    let c = ClientConfig::new(
        "user",
        ClientAuth::Password("pw".into()),
        key.public_key().clone(),
    );
    let client = Session::client(c, now).unwrap();
    let server = Session::server(
        ServerConfig::new(key),
        Box::new(|u: &str, p: &[u8]| u == "user" && p == b"pw"),
        now,
    )
    .unwrap();
    (client, server)
}

/// Moves bytes both ways until neither side has anything to send; `chunk` bytes per feed.
fn pump(a: &mut Session, b: &mut Session, chunk: usize) -> (Vec<Event>, Vec<Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    for _ in 0..1000 {
        let mut moved = false;
        a.take_transmit(&mut buf);
        for piece in buf.chunks(chunk.max(1)) {
            b.feed(piece, Instant::now()).unwrap();
            moved = true;
        }
        b.take_transmit(&mut buf);
        for piece in buf.chunks(chunk.max(1)) {
            a.feed(piece, Instant::now()).unwrap();
            moved = true;
        }
        while let Some(e) = a.poll_event() {
            ea.push(e);
        }
        while let Some(e) = b.poll_event() {
            eb.push(e);
        }
        if !moved {
            return (ea, eb);
        }
    }
    panic!("pump did not settle");
}

/// Opens a channel from the client and accepts it on the server: (client id, server id).
fn open_accepted(c: &mut Session, s: &mut Session) -> (ChannelId, ChannelId) {
    let id = c.open_channel("x", &[]).unwrap();
    let (_, se) = pump(c, s, usize::MAX);
    let sid = se
        .iter()
        .find_map(|e| {
            if let Event::ChannelOpenRequest { id, .. } = e {
                Some(*id)
            } else {
                None
            }
        })
        .expect("the server saw the open");
    s.accept_channel(sid).unwrap();
    pump(c, s, usize::MAX);
    (id, sid)
}

fn connected() -> (Session, Session) {
    let (mut c, mut s) = sessions();
    let (ce, se) = pump(&mut c, &mut s, usize::MAX);
    assert!(
        ce.iter().any(|e| matches!(e, Event::Authenticated { .. })),
        "{ce:?}"
    );
    assert!(
        se.iter().any(|e| matches!(e, Event::Authenticated { .. })),
        "{se:?}"
    );
    (c, s)
}

#[test]
fn handshake_one_byte_at_a_time() {
    let (mut c, mut s) = sessions();
    let (ce, _) = pump(&mut c, &mut s, 1);
    assert!(ce.iter().any(|e| matches!(e, Event::HandshakeDone { .. })));
    assert!(c.is_authenticated() && s.is_authenticated());
}

#[test]
fn channel_data_eof_and_close_in_the_core() {
    let (mut c, mut s) = connected();
    let id = c
        .open_channel("direct-tcpip", &psiphon_ssh::direct_tcpip_extra("h", 1))
        .unwrap();
    let (_, se) = pump(&mut c, &mut s, usize::MAX);
    let Some(Event::ChannelOpenRequest { id: sid, kind, .. }) = se
        .into_iter()
        .find(|e| matches!(e, Event::ChannelOpenRequest { .. }))
    else {
        panic!("no open request")
    };
    assert_eq!(kind, "direct-tcpip");
    s.accept_channel(sid).unwrap();
    let (ce, _) = pump(&mut c, &mut s, usize::MAX);
    assert!(ce.iter().any(|e| matches!(e, Event::ChannelOpened { .. })));
    assert_eq!(c.channel_write(id, b"hello").unwrap(), 5);
    c.channel_eof(id).unwrap();
    pump(&mut c, &mut s, 3);
    let mut buf = [0u8; 16];
    assert_eq!(s.channel_read(sid, &mut buf).unwrap(), ChannelRead::Data(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(s.channel_read(sid, &mut buf).unwrap(), ChannelRead::Eof);
    // Writing after EOF is refused locally, without touching the wire.
    assert!(c.channel_write(id, b"x").is_err());
    s.channel_close(sid).unwrap();
    let (ce, se) = pump(&mut c, &mut s, usize::MAX);
    assert!(
        se.iter().any(|e| matches!(e, Event::ChannelClosed(_))),
        "{se:?}"
    );
    assert_eq!(c.channel_read(id, &mut buf).unwrap(), ChannelRead::Eof);
    let _ = ce;
}

#[test]
fn window_is_granted_only_as_the_reader_consumes() {
    let (mut c, mut s) = connected();
    let (id, sid) = open_accepted(&mut c, &mut s);
    let window = psiphon_ssh::Config::default().channel_window as usize;
    let data = vec![0u8; window + 100];
    let sent = c.channel_write(id, &data).unwrap();
    assert_eq!(sent, window, "sender stops at the receiver's window");
    pump(&mut c, &mut s, usize::MAX);
    assert_eq!(
        c.channel_write(id, b"more").unwrap(),
        0,
        "no window until the reader reads"
    );
    assert_eq!(s.channel_buffered(sid), window);
    let mut sink = vec![0u8; window];
    s.channel_read(sid, &mut sink).unwrap();
    let (ce, _) = pump(&mut c, &mut s, usize::MAX);
    assert!(ce.iter().any(|e| matches!(e, Event::ChannelWritable(_))));
    assert!(c.channel_write(id, b"more").unwrap() > 0);
}

#[test]
fn a_flipped_ciphertext_byte_is_a_mac_error() {
    let (mut c, mut s) = connected();
    c.global_request("psiphon-status", b"{}", true).unwrap();
    let mut buf = Vec::new();
    c.take_transmit(&mut buf);
    let last = buf.len() - 20;
    buf[last] ^= 0x01;
    let err = s.feed(&buf, Instant::now()).unwrap_err();
    assert!(matches!(err, Error::Mac), "{err}");
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert!(s.is_closed());
    // The server says why before it goes (a DISCONNECT is queued), then refuses more input.
    s.take_transmit(&mut buf);
    assert!(!buf.is_empty());
    assert!(s.feed(b"more", Instant::now()).is_err());
}

#[test]
fn oversized_and_undersized_packet_lengths_are_refused() {
    for len in [0u32, 3, 300 * 1024, u32::MAX] {
        let (_, mut s) = sessions();
        let mut input = b"SSH-2.0-test\r\n".to_vec();
        input.extend_from_slice(&len.to_be_bytes());
        input.extend_from_slice(&[4, 20, 0, 0, 0, 0]);
        let err = s.feed(&input, Instant::now()).unwrap_err();
        assert!(matches!(err, Error::PacketLength(_)), "len {len}: {err}");
    }
}

#[test]
fn bad_identification_lines_are_refused() {
    let (_, mut s) = sessions();
    assert!(matches!(
        s.feed(b"SSH-1.5-old\r\n", Instant::now()),
        Err(Error::Version(_))
    ));
    let (_, mut s) = sessions();
    assert!(matches!(
        s.feed(&[b'A'; 300], Instant::now()),
        Err(Error::Version(_))
    ));
    let (_, mut s) = sessions();
    assert!(matches!(
        s.feed(b"hello\r\nSSH-2.0-x\r\n", Instant::now()),
        Err(Error::Version(_))
    ));
    // A client skips a server's banner lines, but not without bound.
    let (mut c, _) = sessions();
    let mut banner = Vec::new();
    for _ in 0..200 {
        banner.extend_from_slice(&[b'x'; 200]);
        banner.extend_from_slice(b"\r\n");
    }
    assert!(matches!(
        c.feed(&banner, Instant::now()),
        Err(Error::Version(_))
    ));
    let (mut c, _) = sessions();
    c.feed(b"Welcome\r\nSSH-2.0-ok\r\n", Instant::now())
        .unwrap();
    assert_eq!(c.peer_version(), Some(&b"SSH-2.0-ok"[..]));
}

#[test]
fn strict_kex_refuses_a_message_before_kexinit() {
    let (mut c, mut s) = sessions();
    let mut from_client = Vec::new();
    c.take_transmit(&mut from_client);
    let version_end = from_client.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    // An SSH_MSG_IGNORE in clear, slipped in before the client's KEXINIT.
    let mut ignore = vec![0, 0, 0, 12, 10, 2];
    ignore.extend_from_slice(&[0u8; 10]);
    let mut input = from_client[..version_end].to_vec();
    input.extend_from_slice(&ignore);
    input.extend_from_slice(&from_client[version_end..]);
    let err = s.feed(&input, Instant::now()).unwrap_err();
    assert!(err.to_string().contains("strict"), "{err}");
}

#[test]
fn truncated_input_waits_and_never_panics() {
    let (mut c, mut s) = sessions();
    let mut buf = Vec::new();
    c.take_transmit(&mut buf);
    s.feed(&buf[..buf.len() - 7], Instant::now()).unwrap();
    assert!(!s.is_closed());
    let mut out = Vec::new();
    s.take_transmit(&mut out);
    assert!(
        out.starts_with(b"SSH-2.0-"),
        "server still only sent its greeting and KEXINIT"
    );
}

#[test]
fn rekey_by_time_and_by_the_server() {
    let (mut c, mut s) = connected();
    // The client's timer fires an hour on: it starts a key exchange by itself.
    let due = c.poll_timeout().expect("a rekey deadline");
    c.handle_timeout(due + std::time::Duration::from_secs(1))
        .unwrap();
    let (ce, se) = pump(&mut c, &mut s, usize::MAX);
    assert!(ce.iter().any(|e| matches!(e, Event::Rekeyed)), "{ce:?}");
    assert!(se.iter().any(|e| matches!(e, Event::Rekeyed)), "{se:?}");
    // The server asks for one on demand.
    s.rekey(Instant::now()).unwrap();
    let (ce, se) = pump(&mut c, &mut s, 5);
    assert!(ce.iter().any(|e| matches!(e, Event::Rekeyed)), "{ce:?}");
    assert!(se.iter().any(|e| matches!(e, Event::Rekeyed)), "{se:?}");
    // Traffic still flows under the new keys.
    let id = c
        .global_request("psiphon-status", b"{}", true)
        .unwrap()
        .unwrap();
    let (_, se) = pump(&mut c, &mut s, usize::MAX);
    let rid = se
        .iter()
        .find_map(|e| {
            if let Event::GlobalRequest { id, .. } = e {
                Some(*id)
            } else {
                None
            }
        })
        .unwrap();
    s.reply_global_request(rid, true, b"ok").unwrap();
    let (ce, _) = pump(&mut c, &mut s, usize::MAX);
    assert!(ce.iter().any(|e| matches!(e, Event::GlobalReply { id: got, success: true, data } if *got == id && data == b"ok")));
}

#[test]
fn data_written_during_a_rekey_waits_and_then_flows() {
    let (mut c, mut s) = connected();
    let (id, sid) = open_accepted(&mut c, &mut s);
    c.rekey(Instant::now()).unwrap();
    // While our KEXINIT is out, the core takes no channel data (RFC 4253 §7.1)...
    assert_eq!(c.channel_write(id, b"during").unwrap(), 0);
    let (ce, _) = pump(&mut c, &mut s, usize::MAX);
    // ...and says when it can again.
    assert!(
        ce.iter().any(|e| matches!(e, Event::ChannelWritable(_))),
        "{ce:?}"
    );
    assert_eq!(c.channel_write(id, b"after").unwrap(), 5);
    pump(&mut c, &mut s, usize::MAX);
    let mut buf = [0u8; 8];
    assert_eq!(s.channel_read(sid, &mut buf).unwrap(), ChannelRead::Data(5));
}

#[test]
fn requests_before_authentication_are_refused() {
    let (mut c, _) = sessions();
    assert!(c.open_channel("direct-tcpip", &[]).is_err());
    assert!(c.global_request("psiphon-handshake", b"", true).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a probe sends, the server returns an error or waits; it never panics.
    #[test]
    fn random_input_never_panics(prefix in any::<bool>(), junk in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let (_, mut s) = sessions();
        let mut input = if prefix { b"SSH-2.0-fuzz\r\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&junk);
        let _ = s.feed(&input, Instant::now());
    }

    /// Any split of the byte stream gives the same result.
    #[test]
    fn any_chunking_completes_the_handshake(chunk in 1usize..2000) {
        let (mut c, mut s) = sessions();
        pump(&mut c, &mut s, chunk);
        prop_assert!(c.is_authenticated() && s.is_authenticated());
    }
}

/// Arbitrary SSH messages after authentication, past the MAC: the connection-protocol parsers
/// (channels, windows, global requests) return errors or carry on; they never panic.
#[cfg(feature = "fuzzing")]
mod injected {
    use super::*;

    /// A connection-protocol message type, often addressed to the open channel (id 0), then
    /// arbitrary bytes.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        (
            80u8..=100,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(kind, to_channel_zero, rest)| {
                let mut m = vec![kind];
                if to_channel_zero {
                    m.extend_from_slice(&[0, 0, 0, 0]);
                }
                m.extend_from_slice(&rest);
                m
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn injected_messages_never_panic(msgs in proptest::collection::vec(message(), 1..12)) {
            let (mut c, mut s) = connected();
            let _ = open_accepted(&mut c, &mut s);
            for m in &msgs {
                let _ = s.inject_payload_for_fuzzing(m, Instant::now());
                let _ = c.inject_payload_for_fuzzing(m, Instant::now());
                while s.poll_event().is_some() {}
                while c.poll_event().is_some() {}
            }
        }
    }
}
