//! The Psiphon API over SSH: request names, request parameters, server-side parameter
//! checks, and responses.
//!
//! Requests are SSH global requests named `psiphon-handshake` and so on. Their payload is
//! the parameter map, either as JSON ([`ApiParams::to_json`]) or packed CBOR
//! ([`ApiParams::to_packed`], see [`packed`]); tunnel-core clients send packed CBOR to any
//! server whose entry has the `ssh-api-requests` capability, and JSON only when configured
//! with `TargetAPIEncoding: "json"`. [`ApiParams::from_request_body`] reads either.
//!
//! The reply's payload is the response JSON, except for a handshake that asked with
//! `psiphon_api_response_version` = "1" ([`ApiParams::wants_cbor_response`]): that one is
//! answered with [`HandshakeResponse::to_cbor`].

pub mod cbor;
pub mod packed;
mod params;
mod response;
mod validate;

pub use packed::{
    MAX_PACKED_PARAMS_BYTES, PACKED_API_PARAMETERS_PREFIX, PackedError, decode_packed_params,
    encode_packed_params, is_packed,
};
pub use params::{ApiParams, LAST_CONNECTED_NONE, RequestEncoding};
pub use response::{
    ConnectedResponse, HandshakeResponse, PADDING_MAX_BYTES, StatusData, StatusResponse,
    make_padding,
};
pub use validate::{
    ClientPlatform, is_base64, is_boolean_flag, is_client_platform, is_dial_address, is_domain,
    is_float_string, is_geohash, is_host_header, is_int_string, is_ip_address, is_iso8601_date,
    is_last_connected, is_region_code, is_server_entry_source, is_upstream_proxy_type,
    normalize_client_platform, validate_base_params, validate_connected_params,
    validate_handshake_params, validate_status_params,
};

/// Client to server: the first request on every tunnel.
pub const HANDSHAKE_REQUEST_NAME: &str = "psiphon-handshake";
/// Client to server: once per day per client.
pub const CONNECTED_REQUEST_NAME: &str = "psiphon-connected";
/// Client to server: periodic stats.
pub const STATUS_REQUEST_NAME: &str = "psiphon-status";
/// Client to server: opaque DSL relay.
pub const DSL_REQUEST_NAME: &str = "psiphon-dsl";
/// Client to server: legacy stub, answered with an empty response.
pub const CLIENT_VERIFICATION_REQUEST_NAME: &str = "psiphon-client-verification";
/// Server to client: SLOKs for obfuscated server lists.
pub const OSL_REQUEST_NAME: &str = "psiphon-osl";
/// Server to client: an alert (`disallowed-traffic`, `unsafe-traffic`).
pub const ALERT_REQUEST_NAME: &str = "psiphon-alert";
/// Server to client (both ways): in-proxy broker relay.
pub const INPROXY_RELAY_REQUEST_NAME: &str = "psiphon-inproxy-relay";

/// Parameter asking for a CBOR handshake response (with compressed tactics).
pub const API_RESPONSE_VERSION_PARAM: &str = "psiphon_api_response_version";
/// The [`API_RESPONSE_VERSION_PARAM`] value that asks for a CBOR handshake response.
pub const API_RESPONSE_V1: &str = "1";
/// `psiphon-alert` reason: traffic the server disallows.
pub const ALERT_DISALLOWED_TRAFFIC: &str = "disallowed-traffic";
/// `psiphon-alert` reason: traffic to a known unsafe destination.
pub const ALERT_UNSAFE_TRAFFIC: &str = "unsafe-traffic";
