//! The OSSH layer against tunnel-core's known-answer vectors (`ossh.json`).

// Test helpers outside #[test] functions stop the test on bad vector data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{array, bytes, list, load, num, opt_usize, spec_literal, text};
use psiphon_obfs::prng::{Prng, PrngSeed};
use psiphon_obfs::{
    AcceptStep, Acceptor, ClientConfig, ClientPrefix, Direction, Error, Keyword, ProbeReason,
    Rc4Stream, SeedHistory, ServerConfig, Session, derive_key, prefix_terminator,
};
use serde_json::Value;

fn keyword(v: &Value, key: &str) -> Keyword {
    Keyword::new(text(v, key)).unwrap()
}

fn client_config(v: &Value) -> ClientConfig {
    ClientConfig::new(keyword(v, "keyword"))
        .with_padding_range(
            opt_usize(v, "min_padding_config"),
            opt_usize(v, "max_padding_config"),
        )
        .with_padding_seed(PrngSeed::new(array(v, "padding_prng_seed")))
}

fn server_config(keyword: Keyword) -> ServerConfig {
    ServerConfig::new(keyword, Arc::new(SeedHistory::default()))
}

/// Feeds `wire` to a fresh acceptor in `chunk`-sized pieces.
fn accept(config: &ServerConfig, wire: &[u8], chunk: usize) -> (Session, Vec<u8>) {
    let mut acceptor = Acceptor::new(config, None);
    let mut pieces = wire.chunks(chunk);
    loop {
        let piece = pieces
            .next()
            .expect("preamble ended before the acceptor finished");
        match acceptor.feed(piece, Instant::now()) {
            AcceptStep::NeedMore => {}
            AcceptStep::Accepted {
                session,
                mut leftover,
            } => {
                for rest in pieces {
                    leftover.extend_from_slice(rest);
                }
                return (session, leftover);
            }
            AcceptStep::Rejected(err) => panic!("rejected: {err}"),
        }
    }
}

fn keystream(key: &[u8; 16], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Rc4Stream::new(key).apply(&mut out);
    out
}

#[test]
fn key_derivation() {
    let doc = load("ossh.json");
    let cases = list(&doc, "key_derivation");
    assert_eq!(cases.len(), 7);
    for case in cases {
        let kw = text(case, "keyword").as_bytes();
        let seed = array(case, "seed");
        let c2s = derive_key(&seed, kw, Direction::ClientToServer).unwrap();
        let s2c = derive_key(&seed, kw, Direction::ServerToClient).unwrap();
        assert_eq!(c2s, array(case, "client_to_server_key"));
        assert_eq!(s2c, array(case, "server_to_client_key"));
        assert_eq!(
            keystream(&c2s, 32),
            bytes(case, "client_to_server_rc4_keystream_first_32")
        );
        assert_eq!(
            keystream(&s2c, 32),
            bytes(case, "server_to_client_rc4_keystream_first_32")
        );
    }
}

#[test]
fn client_preambles() {
    let doc = load("ossh.json");
    let cases = list(&doc, "client_preamble");
    assert_eq!(cases.len(), 6);
    let mut with_next = 0;
    for case in cases {
        let config = client_config(case);
        let range = list(case, "effective_padding_range");
        assert_eq!(
            config.padding_range(),
            (
                usize::try_from(range[0].as_u64().unwrap()).unwrap(),
                usize::try_from(range[1].as_u64().unwrap()).unwrap()
            )
        );
        let mut client = Session::client_with_seed(&config, array(case, "seed")).unwrap();
        let mut wire = Vec::new();
        client.start(&mut wire);
        assert_eq!(hex::encode(&wire), text(case, "wire"));
        assert_eq!(&wire[..24], bytes(case, "wire_first_24").as_slice());
        assert_eq!(
            client.metrics().upstream_padding,
            Some(num(case, "padding_length"))
        );

        // The encrypted part decrypts to the listed plaintext with the listed key.
        let mut plain = wire[16..].to_vec();
        Rc4Stream::new(&array(case, "client_to_server_key")).apply(&mut plain);
        assert_eq!(plain, bytes(case, "plaintext_after_seed"));

        // The client-side derived padding seed.
        let padding_seed = PrngSeed::new(array(case, "padding_prng_seed"));
        assert_eq!(
            padding_seed
                .salted("obfuscated-ssh-padding")
                .unwrap()
                .as_bytes(),
            &array(case, "client_derived_seed_obfuscated_ssh_padding")
        );

        // The RC4 stream continues into the SSH version line.
        if let Some(next) = case["next_plaintext"].as_str() {
            let mut next_wire = Vec::new();
            client.encode(next.as_bytes(), &mut next_wire).unwrap();
            assert_eq!(next_wire, bytes(case, "next_wire"));
            with_next += 1;
        }

        // A server accepts it and seeds its PRNG with the first 32 padding bytes.
        let server = server_config(keyword(case, "keyword"));
        let (mut session, leftover) = accept(&server, &wire, wire.len());
        assert!(leftover.is_empty());
        let replay_seed = PrngSeed::new(array(case, "server_replay_seed"));
        assert_eq!(
            replay_seed
                .salted("obfuscated-ssh-padding")
                .unwrap()
                .as_bytes(),
            &array(case, "server_derived_seed_obfuscated_ssh_padding")
        );
        assert_eq!(session.padding_seed(), &replay_seed);
        let mut ours = session.derived_prng("any-salt").unwrap();
        let mut theirs = Prng::with_salt(&replay_seed, "any-salt").unwrap();
        assert_eq!(ours.bytes(32), theirs.bytes(32));

        // Its first bytes are its identification padding (zero bytes and CRLFs) under the
        // listed server-to-client keystream.
        let mut greeting = Vec::new();
        session.start(&mut greeting);
        let ks = bytes(case, "server_to_client_keystream_first_64");
        for (wire_byte, key_byte) in greeting.iter().zip(&ks) {
            assert!(matches!(wire_byte ^ key_byte, 0 | b'\r' | b'\n'));
        }
        assert!(greeting.len() >= 2);
    }
    assert_eq!(with_next, 3);
}

#[test]
fn prefix_terminators() {
    let doc = load("ossh.json");
    let cases = list(&doc, "prefix_terminators");
    assert_eq!(cases.len(), 6);
    for case in cases {
        let direction = Direction::from_label(text(case, "direction")).unwrap();
        let t =
            prefix_terminator(&keyword(case, "keyword"), &bytes(case, "input"), direction).unwrap();
        assert_eq!(t, array(case, "terminator"));
    }
    let errors = list(&doc, "prefix_terminator_errors");
    assert_eq!(errors.len(), 2);
    for case in errors {
        let message = text(&case["error"], "message");
        let input = bytes(case, "input");
        match message {
            "bytes too short" => {
                let direction = Direction::from_label(text(case, "direction")).unwrap();
                let err =
                    prefix_terminator(&keyword(case, "keyword"), &input, direction).unwrap_err();
                assert!(matches!(err, Error::Config { .. }), "{err}");
            }
            "invalid direction" => {
                assert_eq!(Direction::from_label(text(case, "direction")), None);
            }
            other => panic!("unexpected vector error {other}"),
        }
    }
}

#[test]
fn prefixed_first_flights_and_server_replies() {
    let doc = load("ossh.json");
    let cases = list(&doc, "prefixed_client_first_flight");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = text(case, "prefix_spec_name");
        let prefix = bytes(case, "prefix_bytes");
        let config =
            client_config(case).with_prefix(ClientPrefix::new(name, prefix.clone()).unwrap());
        let mut client = Session::client_with_seed(&config, array(case, "seed")).unwrap();
        assert!(client.is_prefixed());
        let mut wire = Vec::new();
        client.start(&mut wire);
        assert_eq!(hex::encode(&wire), text(case, "wire"));
        assert_eq!(
            &wire[prefix.len()..prefix.len() + 16],
            bytes(case, "terminator").as_slice()
        );
        assert_eq!(
            client.metrics().upstream_padding,
            Some(num(case, "padding_length"))
        );
        if let Some(next) = case["next_plaintext"].as_str() {
            let mut next_wire = Vec::new();
            client.encode(next.as_bytes(), &mut next_wire).unwrap();
            assert_eq!(next_wire, bytes(case, "next_wire"));
        }

        // The server's reply: P' then T' = HKDF(keyword, first 24 bytes of P', server_to_client).
        let reply = bytes(case, "server_response_prefix_and_terminator");
        let (reply_prefix, reply_terminator) = reply.split_at(reply.len() - 16);
        assert_eq!(
            reply_terminator,
            bytes(case, "server_response_terminator").as_slice()
        );
        let t = prefix_terminator(
            &keyword(case, "keyword"),
            reply_prefix,
            Direction::ServerToClient,
        )
        .unwrap();
        assert_eq!(t.as_slice(), reply_terminator);

        let kw = keyword(case, "keyword");
        if case["server_prefix_spec_for_name"].is_null() {
            // Unknown name: 24 random bytes and their terminator.
            let server = server_config(kw.clone());
            let (mut session, leftover) = accept(&server, &wire, 5);
            assert!(leftover.is_empty() && session.is_prefixed());
            let mut greeting = Vec::new();
            session.start(&mut greeting);
            let t = prefix_terminator(&kw, &greeting[..24], Direction::ServerToClient).unwrap();
            assert_eq!(&greeting[24..40], t.as_slice());
            assert_ne!(
                &greeting[..24],
                reply_prefix,
                "random prefix repeated the vector's"
            );
        } else {
            assert_eq!(
                spec_literal(&case["server_prefix_spec_for_name"]),
                reply_prefix
            );
        }
        // With P' configured for the name, the reply is byte-exact.
        let server = server_config(kw)
            .with_prefix_reply(name, reply_prefix.to_vec())
            .unwrap();
        let (mut session, _) = accept(&server, &wire, 11);
        let mut greeting = Vec::new();
        session.start(&mut greeting);
        assert_eq!(&greeting[..reply.len()], reply.as_slice());
    }
}

fn expected_reason(message: &str) -> ProbeReason {
    [
        ProbeReason::NoTerminator,
        ProbeReason::PaddingLength,
        ProbeReason::Truncated,
        ProbeReason::InvalidMagicAfterPrefix,
    ]
    .into_iter()
    .find(|r| r.to_string() == message)
    .unwrap_or_else(|| panic!("no ProbeReason for tunnel-core's {message:?}"))
}

#[test]
fn server_preamble_checks() {
    let doc = load("ossh.json");
    let cases = list(&doc, "server_preamble_checks");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let label = text(case, "name");
        let config = server_config(keyword(case, "server_keyword"));
        let mut acceptor = Acceptor::new(&config, None);
        let outcome = match acceptor.feed(&bytes(case, "wire"), Instant::now()) {
            AcceptStep::Accepted { .. } => Ok(()),
            AcceptStep::Rejected(err) => Err(err),
            // The vector's connection ends after the wire bytes.
            AcceptStep::NeedMore => Err(acceptor.eof()),
        };
        match text(case, "result") {
            "accepted" => assert!(outcome.is_ok(), "{label}: {outcome:?}"),
            "rejected" => {
                let err = outcome.expect_err(label);
                let want = expected_reason(text(&case["error"], "message"));
                assert!(
                    matches!(err, Error::Probe { reason } if reason == want),
                    "{label}: got {err}, want {want}"
                );
                assert_eq!(err.kind(), psiphon_obfs::ErrorKind::Remote);
            }
            other => panic!("unknown result {other}"),
        }
    }
}

#[test]
fn a_replayed_preamble_is_rejected() {
    let doc = load("ossh.json");
    let case = &list(&doc, "client_preamble")[0];
    let wire = bytes(case, "wire");
    let config = server_config(keyword(case, "keyword"));
    let _first = accept(&config, &wire, 1000);
    let mut again = Acceptor::new(&config, None);
    match again.feed(&wire, Instant::now()) {
        AcceptStep::Rejected(err @ Error::ReplayedSeed { .. }) => {
            assert_eq!(err.kind(), psiphon_obfs::ErrorKind::Remote);
        }
        other => panic!("replay not rejected: {other:?}"),
    }
    // Another server history does not know the seed.
    let fresh = server_config(keyword(case, "keyword"));
    let _ = accept(&fresh, &wire, wire.len());
}

fn concat(writes: &[Value]) -> Vec<u8> {
    writes.iter().flat_map(|w| bytes(w, "wire")).collect()
}

/// Feeds each listed write through `session.encode` and checks its wire bytes.
fn check_writes(session: &mut Session, writes: &[Value], flow: &str, side: &str) {
    for write in writes {
        let mut wire = Vec::new();
        session
            .encode(&bytes(write, "plaintext"), &mut wire)
            .unwrap();
        assert_eq!(
            hex::encode(&wire),
            text(write, "wire"),
            "{flow}: {side} write {}",
            text(write, "label")
        );
    }
}

#[test]
fn ossh_connection_flows() {
    let doc = load("ossh.json");
    let flows = list(&doc, "ossh_conn_flows");
    assert_eq!(flows.len(), 3);
    for flow in flows {
        let name = text(flow, "name");
        let kw = keyword(flow, "keyword");
        let mut config = client_config(flow);
        if let Some(prefix) = flow["client_prefix"].as_object() {
            let generated = spec_literal(&prefix["spec"]);
            let prefix_name = prefix["name"].as_str().unwrap();
            config = config.with_prefix(ClientPrefix::new(prefix_name, generated).unwrap());
        }
        let mut server_config = server_config(kw);
        if let Some(server_prefix) = flow["server_prefix"].as_object() {
            for (spec_name, spec) in server_prefix["specs"].as_object().unwrap() {
                server_config = server_config
                    .with_prefix_reply(spec_name.clone(), spec_literal(spec))
                    .unwrap();
            }
        }

        // Client to server.
        let mut client = Session::client_with_seed(&config, array(flow, "seed")).unwrap();
        let client_writes = list(flow, "client_writes");
        check_writes(&mut client, client_writes, name, "client");
        assert!(client.write_is_raw());
        let client_wire = bytes(flow, "client_wire");
        assert_eq!(concat(client_writes), client_wire);
        assert_eq!(
            client.metrics().upstream_padding,
            opt_usize(&flow["client_metrics"], "upstream_ossh_padding")
        );

        for chunk in [client_wire.len(), 1, 7, 500] {
            let fresh_history =
                ServerConfig::new(keyword(flow, "keyword"), Arc::new(SeedHistory::default()));
            let server_config = if chunk == client_wire.len() {
                &server_config
            } else {
                &fresh_history
            };
            let (mut server, leftover) = accept(server_config, &client_wire, chunk);
            let mut delivered = Vec::new();
            for piece in leftover.chunks(chunk) {
                server.decode(piece, &mut delivered).unwrap();
            }
            assert_eq!(
                hex::encode(&delivered),
                text(flow, "server_delivers_to_ssh"),
                "{name}: server delivery, chunk {chunk}"
            );
            assert!(server.read_is_raw());
            if chunk != client_wire.len() {
                continue;
            }

            // Server to client.
            let server_writes = list(flow, "server_writes");
            check_writes(&mut server, server_writes, name, "server");
            let server_wire = bytes(flow, "server_wire");
            assert_eq!(concat(server_writes), server_wire);
            assert_eq!(
                server.metrics().downstream_padding,
                opt_usize(&flow["server_metrics"], "downstream_ossh_padding")
            );
            for client_chunk in [server_wire.len(), 1, 13] {
                let mut reader = Session::client_with_seed(&config, array(flow, "seed")).unwrap();
                let mut delivered = Vec::new();
                for piece in server_wire.chunks(client_chunk) {
                    reader.decode(piece, &mut delivered).unwrap();
                }
                assert_eq!(
                    hex::encode(&delivered),
                    text(flow, "client_delivers_to_ssh"),
                    "{name}: client delivery, chunk {client_chunk}"
                );
                assert!(reader.read_is_raw());
            }
        }
    }
}
