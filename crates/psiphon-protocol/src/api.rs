//! The Psiphon API over SSH: request names, request parameters (JSON form), server-side
//! parameter checks, and responses.
//!
//! Requests are SSH global requests named `psiphon-handshake` and so on, whose payload is
//! the parameter map as JSON ([`ApiParams::to_json`]); the reply's payload is the response
//! JSON. Packed CBOR parameters and CBOR responses (`psiphon_api_response_version` = "1")
//! are not implemented yet: a client using this crate must not send
//! `psiphon_api_response_version`, and [`ApiParams::from_json`] rejects packed bodies.

mod params;
mod response;
mod validate;

pub use params::{ApiParams, LAST_CONNECTED_NONE, PACKED_API_PARAMETERS_PREFIX};
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

/// Parameter asking for a CBOR response (not supported yet; don't send it).
pub const API_RESPONSE_VERSION_PARAM: &str = "psiphon_api_response_version";
/// `psiphon-alert` reason: traffic the server disallows.
pub const ALERT_DISALLOWED_TRAFFIC: &str = "disallowed-traffic";
/// `psiphon-alert` reason: traffic to a known unsafe destination.
pub const ALERT_UNSAFE_TRAFFIC: &str = "unsafe-traffic";
