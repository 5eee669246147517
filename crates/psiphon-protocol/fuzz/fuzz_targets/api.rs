//! API request and response parsing and the server-side checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psiphon_protocol::api::{
    ApiParams, ConnectedResponse, HandshakeResponse, StatusData, StatusResponse,
    validate_connected_params, validate_handshake_params, validate_status_params,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = ApiParams::from_json(data) {
        let _ = validate_handshake_params(&params);
        let _ = validate_connected_params(&params);
        let _ = validate_status_params(&params);
        let _ = params.pad_response(16 * 1024);
        if let Some(status) = params.get("statusData") {
            let _ = StatusData::from_value(status);
        }
        // Numbers are re-read as Go would hold them, so compare the bytes, not the values.
        let json = params.to_json();
        let again = ApiParams::from_json(json.as_bytes()).expect("own output parses");
        assert_eq!(again.to_json(), json);
    }
    if let Ok(response) = HandshakeResponse::from_json(data) {
        let json = response.to_json();
        let again = HandshakeResponse::from_json(json.as_bytes()).expect("own output parses");
        assert_eq!(again.to_json(), json);
    }
    let _ = ConnectedResponse::from_json(data);
    let _ = StatusResponse::from_json(data);
});
