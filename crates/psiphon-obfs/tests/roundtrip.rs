//! Property tests: SSH-shaped flights survive obfuscation in both directions whatever the write
//! and read boundaries, through the sans-IO session and through the tokio adaptor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{SshFlight, split_at_points, ssh_flight};
use proptest::prelude::*;
use psiphon_obfs::prng::PrngSeed;
use psiphon_obfs::{
    AcceptStep, Acceptor, ClientConfig, ClientPrefix, Keyword, ObfuscatedStream, SeedHistory,
    ServerConfig, Session,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEYWORD: &str = "0d4f2b1e8c5a7f3d6e9b0a1c2d3e4f5a0d4f2b1e8c5a7f3d6e9b0a1c2d3e4f5a";

fn client_config(prefixed: bool) -> ClientConfig {
    let config = ClientConfig::new(Keyword::new(KEYWORD).unwrap())
        .with_padding_seed(PrngSeed::new([0x42; 32]));
    if prefixed {
        config
            .with_prefix(ClientPrefix::new("http-get", b"GET / HTTP/1.1\r\n\r\n".to_vec()).unwrap())
    } else {
        config
    }
}

fn server_config() -> ServerConfig {
    ServerConfig::new(
        Keyword::new(KEYWORD).unwrap(),
        Arc::new(SeedHistory::default()),
    )
    .with_prefix_reply("http-get", b"HTTP/1.1 200 OK\r\n\r\n".to_vec())
    .unwrap()
}

/// Encodes `pieces` one call each; returns the concatenated wire bytes.
fn encode_all(session: &mut Session, pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = Vec::new();
    for piece in pieces {
        session.encode(piece, &mut wire).unwrap();
    }
    wire
}

fn decode_all(session: &mut Session, pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        session.decode(piece, &mut out).unwrap();
    }
    out
}

/// Runs both directions through sans-IO sessions with the given cut points.
fn sans_io_round(
    prefixed: bool,
    up: &SshFlight,
    down: &SshFlight,
    cuts: [&[u16]; 4],
) -> (Vec<u8>, Vec<u8>) {
    let config = client_config(prefixed);
    let mut client = Session::client_with_seed(&config, [7; 16]).unwrap();
    let up_wire = encode_all(&mut client, &split_at_points(&up.bytes(), cuts[0]));
    assert!(client.write_is_raw());

    let server_config = server_config();
    let mut acceptor = Acceptor::new(&server_config, None);
    let mut server = None;
    let mut server_got = Vec::new();
    for piece in split_at_points(&up_wire, cuts[1]) {
        match &mut server {
            Some(session) => Session::decode(session, &piece, &mut server_got).unwrap(),
            None => match acceptor.feed(&piece, Instant::now()) {
                AcceptStep::NeedMore => {}
                AcceptStep::Accepted {
                    mut session,
                    leftover,
                } => {
                    session.decode(&leftover, &mut server_got).unwrap();
                    server = Some(session);
                }
                AcceptStep::Rejected(err) => panic!("rejected: {err}"),
            },
        }
    }
    let mut server = server.expect("preamble never completed");
    assert!(server.read_is_raw());

    let down_wire = encode_all(&mut server, &split_at_points(&down.bytes(), cuts[2]));
    let client_got = decode_all(&mut client, &split_at_points(&down_wire, cuts[3]));
    assert!(client.read_is_raw());
    (server_got, client_got)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sans_io_round_trip_ignores_boundaries(
        prefixed in any::<bool>(),
        up in ssh_flight(),
        down in ssh_flight(),
        cuts in proptest::collection::vec(proptest::collection::vec(0u16..1000, 0..12), 4),
    ) {
        let (server_got, client_got) =
            sans_io_round(prefixed, &up, &down, [&cuts[0], &cuts[1], &cuts[2], &cuts[3]]);
        up.assert_delivered(&server_got);
        down.assert_delivered(&client_got);
        // Same seeds, no cuts: the same bytes, so boundaries changed nothing at all.
        let (server_whole, client_whole) = sans_io_round(prefixed, &up, &down, [&[], &[], &[], &[]]);
        prop_assert_eq!(server_got, server_whole);
        prop_assert_eq!(client_got, client_whole);
    }
}

/// Writes `pieces` one `write_all` each, flushing after each.
async fn write_pieces<W: tokio::io::AsyncWrite + Unpin>(w: &mut W, pieces: &[Vec<u8>]) {
    for piece in pieces {
        w.write_all(piece).await.unwrap();
        w.flush().await.unwrap();
    }
}

/// Reads exactly `len` bytes using reads of the given sizes (cycled).
async fn read_in_sizes<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    sizes: &[usize],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < len {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(4096)
            .max(1);
        let mut buf = vec![0u8; size.min(len - out.len())];
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "unexpected EOF after {} of {len} bytes", out.len());
        out.extend_from_slice(&buf[..n]);
        i += 1;
    }
    out
}

/// Length of what the receiver gets for `flight`, found by a sans-IO run with the same seeds.
fn delivered_len(prefixed: bool, up: &SshFlight, down: &SshFlight) -> (usize, usize) {
    let (a, b) = sans_io_round(prefixed, up, down, [&[], &[], &[], &[]]);
    (a.len(), b.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn adaptor_round_trip(
        prefixed in any::<bool>(),
        up in ssh_flight(),
        down in ssh_flight(),
        write_cuts in proptest::collection::vec(0u16..1000, 0..8),
        read_sizes in proptest::collection::vec(1usize..700, 1..6),
        pipe in 1usize..4096,
    ) {
        let (up_len, down_len) = delivered_len(prefixed, &up, &down);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (server_got, client_got) = rt.block_on(async {
            let (client_io, server_io) = tokio::io::duplex(pipe);
            let config = client_config(prefixed);
            let session = Session::client_with_seed(&config, [7; 16]).unwrap();
            let mut client = ObfuscatedStream::from_session(client_io, session);
            let up_pieces = split_at_points(&up.bytes(), &write_cuts);
            let down_pieces = split_at_points(&down.bytes(), &write_cuts);
            let sizes = read_sizes.clone();
            let server_task = tokio::spawn(async move {
                let config = server_config();
                let mut server = ObfuscatedStream::accept(server_io, &config).await.unwrap();
                let got = read_in_sizes(&mut server, up_len, &sizes).await;
                write_pieces(&mut server, &down_pieces).await;
                got
            });
            write_pieces(&mut client, &up_pieces).await;
            let client_got = read_in_sizes(&mut client, down_len, &read_sizes).await;
            (server_task.await.unwrap(), client_got)
        });
        up.assert_delivered(&server_got);
        down.assert_delivered(&client_got);
    }
}

/// Sends `version` from the client, then lets the server write a few packets whose padding is
/// 4; returns the extra padding the client saw on each.
fn server_extra_padding(version: &str) -> Vec<usize> {
    let config = client_config(false);
    let mut client = Session::client_with_seed(&config, [3; 16]).unwrap();
    let mut up = Vec::new();
    client.encode(version.as_bytes(), &mut up).unwrap();
    let server_config = server_config();
    let mut acceptor = Acceptor::new(&server_config, None);
    let AcceptStep::Accepted {
        session: mut server,
        leftover,
    } = acceptor.feed(&up, Instant::now())
    else {
        panic!("not accepted");
    };
    server.decode(&leftover, &mut Vec::new()).unwrap();

    let mut flight = b"SSH-2.0-Server\r\n".to_vec();
    for i in 0..24u8 {
        flight.extend(common::ssh_packet(&[30 + i, 1, 2, 3], 4));
    }
    let mut down = Vec::new();
    server.encode(&flight, &mut down).unwrap();
    let mut got = Vec::new();
    client.decode(&down, &mut got).unwrap();
    let mut rest = &got[b"SSH-2.0-Server\r\n".len()..];
    let mut extras = Vec::new();
    while !rest.is_empty() {
        let len = usize::try_from(u32::from_be_bytes(rest[..4].try_into().unwrap())).unwrap();
        extras.push(usize::from(rest[4]) - 4);
        rest = &rest[4 + len..];
    }
    assert_eq!(extras.len(), 24);
    extras
}

#[test]
fn ganymed_peers_get_block_aligned_padding() {
    let legacy = server_extra_padding("SSH-2.0-Ganymed_262\r\n");
    assert!(legacy.iter().all(|e| e % 16 == 0), "{legacy:?}");
    assert!(legacy.iter().any(|e| *e > 0));
    let modern = server_extra_padding("SSH-2.0-OpenSSH_9.6\r\n");
    assert!(modern.iter().any(|e| e % 16 != 0), "{modern:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes at a server's door: never a panic, and the acceptor ends or waits.
    #[test]
    fn acceptor_survives_arbitrary_input(
        input in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(0u16..1000, 0..6),
    ) {
        let config = server_config();
        let mut acceptor = Acceptor::new(&config, None);
        for piece in split_at_points(&input, &cuts) {
            match acceptor.feed(&piece, Instant::now()) {
                AcceptStep::NeedMore => {}
                AcceptStep::Accepted { .. } | AcceptStep::Rejected(_) => break,
            }
        }
    }

    /// Arbitrary bytes from a "server": never a panic, only errors.
    #[test]
    fn client_read_side_survives_arbitrary_input(
        prefixed in any::<bool>(),
        input in proptest::collection::vec(any::<u8>(), 0..5000),
        cuts in proptest::collection::vec(0u16..1000, 0..6),
    ) {
        let mut client = Session::client_with_seed(&client_config(prefixed), [5; 16]).unwrap();
        let mut out = Vec::new();
        for piece in split_at_points(&input, &cuts) {
            if client.decode(&piece, &mut out).is_err() {
                break;
            }
        }
        let _ = client.eof_error();
    }

    /// Arbitrary plaintext after a valid version line, as a server's read side sees it.
    #[test]
    fn server_read_side_survives_arbitrary_packets(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        // After a real preamble and version line the server's keystream is in step, and the
        // arbitrary bytes decrypt to arbitrary packet headers and bodies.
        let mut client = Session::client_with_seed(&client_config(false), [6; 16]).unwrap();
        let mut wire = Vec::new();
        client.encode(b"SSH-2.0-x\r\n", &mut wire).unwrap();
        let config = server_config();
        let mut acceptor = Acceptor::new(&config, None);
        let AcceptStep::Accepted { session: mut server, leftover } =
            acceptor.feed(&wire, Instant::now())
        else {
            panic!("not accepted");
        };
        let mut out = Vec::new();
        server.decode(&leftover, &mut out).unwrap();
        let _ = server.decode(&body, &mut out);
    }
}
