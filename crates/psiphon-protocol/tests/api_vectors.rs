//! SSH password payloads, API request bodies and responses against tunnel-core's vectors:
//! JSON and packed-CBOR request bodies, JSON and CBOR handshake responses.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{load, s};
use psiphon_protocol::api::{
    self, ApiParams, ConnectedResponse, HandshakeResponse, RequestEncoding, StatusResponse,
    validate_connected_params, validate_handshake_params,
};
use psiphon_protocol::{ServerEntry, SshPasswordPayload, TunnelProtocol};
use serde_json::Value;

fn params_from_vector(v: &Value) -> ApiParams {
    v.as_object()
        .expect("params object")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn ssh_password_payloads() {
    let v = load("api.json");
    let cases = v["ssh_password_payload"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let payload = SshPasswordPayload {
            session_id: s(case, "session_id").to_owned(),
            ssh_password: s(case, "ssh_password").to_owned(),
            client_capabilities: case["client_capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect(),
            sponsor_id: s(case, "sponsor_id").to_owned(),
        };
        let json = payload.to_json();
        assert_eq!(json, s(case, "password_json"));
        assert_eq!(hex::encode(&json), s(case, "password_hex"));
        assert_eq!(SshPasswordPayload::parse(json.as_bytes()).unwrap(), payload);
        assert!(payload.supports_server_requests());
    }
}

#[test]
fn json_handshake_and_connected_bodies() {
    let v = load("api.json");
    let mut json_cases = 0;
    for case in v["handshake"].as_array().unwrap() {
        let handshake = params_from_vector(&case["handshake_params"]);
        let connected = params_from_vector(&case["connected_params"]);
        if s(case, "encoding") != "json" {
            assert_eq!(s(case, "encoding"), "packed-cbor");
            continue;
        }
        json_cases += 1;

        let body = handshake.to_json();
        assert_eq!(body, s(case, "handshake_body_text"));
        assert_eq!(hex::encode(&body), s(case, "handshake_body_hex"));
        let parsed = ApiParams::from_json(body.as_bytes()).unwrap();
        assert_eq!(parsed, handshake);
        validate_handshake_params(&parsed).unwrap();
        assert_eq!(
            parsed
                .get_str("relay_protocol")
                .unwrap()
                .parse::<TunnelProtocol>()
                .unwrap(),
            TunnelProtocol::Ossh
        );
        assert_eq!(parsed.pad_response(api::PADDING_MAX_BYTES), 221);

        let body = connected.to_json();
        assert_eq!(body, s(case, "connected_body_text"));
        assert_eq!(hex::encode(&body), s(case, "connected_body_hex"));
        let parsed = ApiParams::from_json(body.as_bytes()).unwrap();
        validate_connected_params(&parsed).unwrap();

        // The same connected parameters, from the builders.
        let config = &v["client_config"];
        let padding_len = s_param(&connected, "padding").len();
        let built = ApiParams::base(
            s(config, "PropagationChannelId"),
            s(config, "SponsorId"),
            s(config, "ClientVersion"),
            s(config, "ClientPlatform"),
        )
        .with_client_features(["VPN"])
        .with_str("client_build_rev", s(config, "client_build_rev"))
        .with_str("device_region", s(config, "DeviceRegion"))
        .with_str("network_type", "WIFI")
        .with_str("applied_tactics_tag", "")
        .with_padding(padding_len, 172)
        .with_last_connected(None)
        .with_establishment_duration_ms(2500)
        .with_server_secret(s_param(&handshake, "server_secret"));
        assert_eq!(built.to_json(), s(case, "connected_body_text"));
    }
    assert_eq!(json_cases, 1);
}

fn s_param<'a>(p: &'a ApiParams, name: &str) -> &'a str {
    p.get_str(name).unwrap()
}

#[test]
fn handshake_response_json() {
    let v = load("api.json");
    let r = &v["handshake_response"];
    let json = s(r, "json");
    assert_eq!(hex::encode(json), s(r, "json_hex"));
    let response = HandshakeResponse::from_json(json.as_bytes()).unwrap();
    assert_eq!(response.to_json(), json);
    assert_eq!(response.client_region, "US");
    assert_eq!(response.client_address, "192.0.2.10:50000");
    assert_eq!(response.padding, "    ");
    assert_eq!(response.https_request_regexes.len(), 1);
    assert_eq!(response.encoded_server_list.len(), 1);
    let entry = ServerEntry::decode(&response.encoded_server_list[0]).unwrap();
    assert_eq!(entry.ip_address_str(), "192.0.2.45");
}

#[test]
fn handshake_response_cbor() {
    let v = load("api.json");
    let r = &v["handshake_response"];
    let from_json = HandshakeResponse::from_json(s(r, "json").as_bytes()).unwrap();
    let cbor = hex::decode(s(r, "cbor_hex")).unwrap();
    assert_eq!(hex::encode(from_json.to_cbor()), s(r, "cbor_hex"));
    let from_cbor = HandshakeResponse::from_cbor(&cbor).unwrap();
    assert_eq!(from_cbor, from_json);
    assert!(HandshakeResponse::from_cbor(&cbor[..cbor.len() - 1]).is_err());
    assert!(HandshakeResponse::from_cbor(b"{}").is_err());
}

#[test]
fn packed_handshake_and_connected_bodies() {
    let v = load("api.json");
    let mut packed_cases = 0;
    for case in v["handshake"].as_array().unwrap() {
        if s(case, "encoding") != "packed-cbor" {
            continue;
        }
        packed_cases += 1;
        let handshake = params_from_vector(&case["handshake_params"]);
        let decoded = params_from_vector(&case["server_decoded_params"]);
        let body = hex::decode(s(case, "handshake_body_hex")).unwrap();

        // Encoding: byte for byte what tunnel-core's client sends.
        assert_eq!(
            hex::encode(handshake.to_packed().unwrap()),
            s(case, "handshake_body_hex")
        );
        // Decoding: exactly what psiphond recovers, and it passes the handshake checks.
        let parsed = ApiParams::from_packed(&body).unwrap();
        assert_eq!(parsed, decoded);
        let (either, encoding) = ApiParams::from_request_body(&body).unwrap();
        assert_eq!(
            (either, encoding),
            (decoded.clone(), RequestEncoding::Packed)
        );
        validate_handshake_params(&parsed).unwrap();
        assert!(parsed.wants_cbor_response());
        assert_eq!(parsed.pad_response(api::PADDING_MAX_BYTES), 221);
        // Authorizations survive the packing byte for byte.
        assert_eq!(
            parsed.get("authorizations"),
            handshake.get("authorizations")
        );
        // Re-encoding the decoded parameters gives the same body.
        assert_eq!(parsed.to_packed().unwrap(), body);

        let connected = params_from_vector(&case["connected_params"]);
        let body = hex::decode(s(case, "connected_body_hex")).unwrap();
        assert_eq!(
            hex::encode(connected.to_packed().unwrap()),
            s(case, "connected_body_hex")
        );
        let parsed = ApiParams::from_packed(&body).unwrap();
        assert_eq!(parsed, connected);
        validate_connected_params(&parsed).unwrap();
        assert!(!parsed.wants_cbor_response());

        // JSON-only `server_secret` has no packed key: tunnel-core's packing error.
        let err = connected
            .clone()
            .with_server_secret("00")
            .to_packed()
            .unwrap_err();
        assert_eq!(err.to_string(), "unknown parameter name: server_secret");
    }
    assert_eq!(packed_cases, 1);
}

#[test]
fn packed_parameter_examples() {
    let v = load("api.json");
    let examples = v["packed_parameter_examples"].as_array().unwrap();
    assert_eq!(examples.len(), 8);
    for example in examples {
        let params = params_from_vector(&example["params"]);
        let body = s(example, "body_hex");
        assert_eq!(hex::encode(params.to_packed().unwrap()), body, "{example}");
        let decoded = ApiParams::from_packed(&hex::decode(body).unwrap()).unwrap();
        assert_eq!(
            decoded,
            params_from_vector(&example["server_decoded"]),
            "{example}"
        );
    }
}

#[test]
fn packed_unknown_parameter_error() {
    let v = load("api.json");
    let err = ApiParams::new()
        .with_str("not_a_known_parameter", "x")
        .to_packed()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        s(&v["packed_unknown_parameter_error"], "message")
    );
    assert_eq!(
        err,
        api::PackedError::UnknownParameter("not_a_known_parameter".to_owned())
    );
}

#[test]
fn connected_and_status_responses_json() {
    let v = load("api.json");
    let json = s(&v, "connected_response_json");
    let connected = ConnectedResponse::from_json(json.as_bytes()).unwrap();
    assert_eq!(connected.connected_timestamp, "2026-08-01T12:00:00Z");
    assert_eq!(connected.to_json(), json);

    let json = s(&v, "status_response_json");
    let status = StatusResponse::from_json(json.as_bytes()).unwrap();
    assert_eq!(status.invalid_server_entry_tags.len(), 1);
    assert_eq!(status.to_json(), json);
}
