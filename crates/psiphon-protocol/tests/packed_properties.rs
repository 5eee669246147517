//! Property tests of the packed-CBOR API parameter codec: decoding never panics on any input,
//! and encoding then decoding gives back the parameters.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine;
use proptest::prelude::*;
use psiphon_protocol::api::{self, ApiParams, HandshakeResponse, decode_packed_params};
use serde_json::{Map, Value};

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,12}", any::<String>(), Just(String::new())]
}

fn small_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z_]{1,8}",
        prop_oneof![
            text().prop_map(Value::String),
            // statusData goes through JSON text, where Go reads numbers as float64: keep
            // integers exact in a double.
            (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
        ],
        0..5,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// One parameter with a value in the form decoding gives back, for each kind of packing.
fn param() -> impl Strategy<Value = (String, Value)> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        // No conversion: strings and arrays of strings.
        (
            prop::sample::select(vec![
                "client_platform",
                "relay_protocol",
                "device_region",
                "padding",
                "last_connected",
                "network_type",
            ]),
            text()
        )
            .prop_map(|(n, v)| (n.to_owned(), Value::String(v))),
        (
            prop::sample::select(vec!["client_features", "split_tunnel_regions"]),
            prop::collection::vec(text(), 0..4)
        )
            .prop_map(|(n, v)| (
                n.to_owned(),
                Value::Array(v.into_iter().map(Value::String).collect())
            )),
        // Integers.
        (
            prop::sample::select(vec![
                "client_version",
                "dial_port_number",
                "pad_response",
                "is_replay",
                "dial_duration",
                "establishment_duration",
                "psiphon_api_response_version",
            ]),
            any::<i64>()
        )
            .prop_map(|(n, v)| (n.to_owned(), Value::String(v.to_string()))),
        // Floats, as Go's %f writes them.
        (
            prop::sample::select(vec!["network_latency_multiplier", "record_probability"]),
            -1e30f64..1e30
        )
            .prop_map(|(n, v)| (n.to_owned(), Value::String(format!("{v:.6}")))),
        // Hex, in the case each key unpacks to.
        (
            prop::sample::select(vec![
                "session_id",
                "client_session_id",
                "applied_tactics_tag"
            ]),
            bytes()
        )
            .prop_map(|(n, v)| (n.to_owned(), Value::String(hex::encode(v)))),
        (
            prop::sample::select(vec![
                "propagation_channel_id",
                "sponsor_id",
                "fronting_provider_id"
            ]),
            bytes()
        )
            .prop_map(|(n, v)| (n.to_owned(), Value::String(hex::encode_upper(v)))),
        // Base64, padded and not.
        (
            prop::sample::select(vec!["missing_server_entry_signature", "server_entry_tag"]),
            bytes()
        )
            .prop_map(|(n, v)| (
                n.to_owned(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(v))
            )),
        (
            prop::sample::select(vec!["inproxy_connection_id", "light_proxy_id"]),
            bytes()
        )
            .prop_map(|(n, v)| (
                n.to_owned(),
                Value::String(base64::engine::general_purpose::STANDARD_NO_PAD.encode(v))
            )),
        // statusData and speed_test_samples.
        small_object().prop_map(|v| ("statusData".to_owned(), v)),
        prop::collection::vec(small_object(), 0..3)
            .prop_map(|v| ("speed_test_samples".to_owned(), Value::Array(v))),
    ]
}

fn vector_packed_body() -> Vec<u8> {
    let v = common::load("api.json");
    let case = v["handshake"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["encoding"] == "packed-cbor")
        .unwrap();
    hex::decode(case["handshake_body_hex"].as_str().unwrap()).unwrap()
}

proptest! {
    #[test]
    fn packed_round_trip(params in prop::collection::vec(param(), 0..12)) {
        let params: ApiParams = params.into_iter().collect();
        let body = params.to_packed().unwrap();
        prop_assert!(api::is_packed(&body));
        let decoded = decode_packed_params(&body).unwrap();
        prop_assert_eq!(&decoded, &params);
        // Canonical: re-encoding is byte-identical.
        prop_assert_eq!(decoded.to_packed().unwrap(), body);
    }

    #[test]
    fn decode_never_panics(payload in prop::collection::vec(any::<u8>(), 0..256)) {
        let body = [api::PACKED_API_PARAMETERS_PREFIX.to_vec(), payload].concat();
        let _ = decode_packed_params(&body);
        let _ = ApiParams::from_request_body(&body);
        let _ = HandshakeResponse::from_cbor(&body[2..]);
    }

    #[test]
    fn decode_never_panics_on_damaged_bodies(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = vector_packed_body();
        for (index, byte) in edits {
            let i = index.index(body.len());
            body[i] = byte;
        }
        let _ = decode_packed_params(&body);
        let cut = cut.index(body.len());
        let _ = decode_packed_params(&body[..cut]);
    }

    #[test]
    fn handshake_response_cbor_round_trip(
        homepages in prop::collection::vec(text(), 0..3),
        region in text(),
        padding in " {0,40}",
        up in any::<i64>(),
        compression in any::<i32>(),
    ) {
        let response = HandshakeResponse {
            homepages,
            client_region: region,
            padding,
            upstream_bytes_per_second: up,
            tactics_payload_compression: compression,
            ..HandshakeResponse::default()
        };
        prop_assert_eq!(HandshakeResponse::from_cbor(&response.to_cbor()).unwrap(), response);
    }
}
