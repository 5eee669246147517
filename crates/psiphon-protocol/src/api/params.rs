//! API request parameter maps (the JSON body of `psiphon-handshake`, `psiphon-connected`,
//! `psiphon-status`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::packed::{self, PackedError};
use crate::error::{Error, Result};
use crate::gojson;
use crate::tunnel_protocol::TunnelProtocol;

/// How a request body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestEncoding {
    /// A JSON object.
    Json,
    /// Packed CBOR (`00 01` then a CBOR map).
    Packed,
}

/// `last_connected` value of a client that has never connected.
pub const LAST_CONNECTED_NONE: &str = "None";

/// Parameters of one API request: a JSON object from names to values. Almost every value is
/// a string (`"0"`/`"1"` for booleans, decimal strings for integers); a few are arrays of
/// strings or JSON objects.
///
/// Serialised as Go serialises its `map[string]interface{}`: sorted keys, Go's escaping
/// (see [`gojson`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiParams(BTreeMap<String, Value>);

impl ApiParams {
    /// No parameters.
    pub fn new() -> ApiParams {
        ApiParams::default()
    }

    /// The parameters every request carries (`baseParams` in psiphond).
    pub fn base(
        propagation_channel_id: &str,
        sponsor_id: &str,
        client_version: &str,
        client_platform: &str,
    ) -> ApiParams {
        ApiParams::new()
            .with_str("propagation_channel_id", propagation_channel_id)
            .with_str("sponsor_id", sponsor_id)
            .with_str("client_version", client_version)
            .with_str("client_platform", client_platform)
    }

    /// Parses a request body in either encoding, as psiphond does: packed CBOR when it starts
    /// with [`packed::PACKED_API_PARAMETERS_PREFIX`], JSON otherwise.
    pub fn from_request_body(body: &[u8]) -> Result<(ApiParams, RequestEncoding)> {
        if packed::is_packed(body) {
            Ok((ApiParams::from_packed(body)?, RequestEncoding::Packed))
        } else {
            Ok((ApiParams::from_json(body)?, RequestEncoding::Json))
        }
    }

    /// Decodes a packed-CBOR request body (see [`packed`]).
    pub fn from_packed(body: &[u8]) -> Result<ApiParams, PackedError> {
        packed::decode_packed_params(body)
    }

    /// The packed-CBOR request body (see [`packed`]); fails on a parameter name with no
    /// packed key or a value its packing cannot represent. Unlike JSON bodies, packed ones
    /// carry no `server_secret` (it has no key).
    pub fn to_packed(&self) -> Result<Vec<u8>, PackedError> {
        packed::encode_packed_params(self)
    }

    /// Whether the request asks for a CBOR handshake response
    /// (`psiphon_api_response_version` = `"1"`), as tunnel-core's server reads it.
    pub fn wants_cbor_response(&self) -> bool {
        self.optional_str(super::API_RESPONSE_VERSION_PARAM) == Some(super::API_RESPONSE_V1)
    }

    /// Parses a JSON request body (Go's decoding rules, see [`gojson`]); it must be an object.
    /// A packed body is refused: use [`ApiParams::from_request_body`] to accept both.
    pub fn from_json(body: &[u8]) -> Result<ApiParams> {
        if packed::is_packed(body) {
            return Err(Error::JsonShape {
                what: "API request parameters",
                reason: "a packed CBOR body, not JSON".to_owned(),
            });
        }
        match gojson::from_slice(body).map_err(Error::json("API request parameters"))? {
            Value::Object(map) => Ok(ApiParams(map.into_iter().collect())),
            _ => Err(Error::JsonShape {
                what: "API request parameters",
                reason: "not a JSON object".to_owned(),
            }),
        }
    }

    /// The JSON request body.
    pub fn to_json(&self) -> String {
        let map: serde_json::Map<String, Value> =
            self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        gojson::to_canonical_string(&Value::Object(map))
    }

    /// Sets a parameter to any JSON value.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        self.0.insert(name.into(), value);
    }

    /// Removes a parameter.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.0.remove(name)
    }

    /// Sets a parameter to any JSON value (builder form).
    pub fn with(mut self, name: &str, value: Value) -> ApiParams {
        self.insert(name, value);
        self
    }

    /// Sets a string parameter.
    pub fn with_str(self, name: &str, value: &str) -> ApiParams {
        self.with(name, Value::String(value.to_owned()))
    }

    /// Sets an integer parameter, as its decimal string.
    pub fn with_int(self, name: &str, value: i64) -> ApiParams {
        self.with_str(name, &value.to_string())
    }

    /// Sets a boolean flag parameter, as `"1"` or `"0"`.
    pub fn with_flag(self, name: &str, value: bool) -> ApiParams {
        self.with_str(name, if value { "1" } else { "0" })
    }

    /// Sets an array-of-strings parameter.
    pub fn with_strings<'a>(
        self,
        name: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> ApiParams {
        let items = values
            .into_iter()
            .map(|v| Value::String(v.to_owned()))
            .collect();
        self.with(name, Value::Array(items))
    }

    /// `client_features`.
    pub fn with_client_features<'a>(
        self,
        features: impl IntoIterator<Item = &'a str>,
    ) -> ApiParams {
        self.with_strings("client_features", features)
    }

    /// `relay_protocol` (required for handshake).
    pub fn with_relay_protocol(self, protocol: TunnelProtocol) -> ApiParams {
        self.with_str("relay_protocol", protocol.name())
    }

    /// `dial_port_number`.
    pub fn with_dial_port_number(self, port: u16) -> ApiParams {
        self.with_int("dial_port_number", i64::from(port))
    }

    /// `server_entry_source`, `server_entry_region` and `server_entry_timestamp` (the entry's
    /// `localTimestamp`, which the caller truncates to the hour) of the dialled entry.
    pub fn with_server_entry_info(self, source: &str, region: &str, timestamp: &str) -> ApiParams {
        self.with_str("server_entry_source", source)
            .with_str("server_entry_region", region)
            .with_str("server_entry_timestamp", timestamp)
    }

    /// `missing_server_entry_signature`: the entry's tag, asking the server to send its own
    /// signed entry in the handshake response.
    pub fn with_missing_server_entry_signature(self, tag: &str) -> ApiParams {
        self.with_str("missing_server_entry_signature", tag)
    }

    /// `authorizations`: base64 signed access tokens.
    pub fn with_authorizations<'a>(
        self,
        authorizations: impl IntoIterator<Item = &'a str>,
    ) -> ApiParams {
        self.with_strings("authorizations", authorizations)
    }

    /// `server_secret`: the server entry's `webServerSecret`, sent with JSON-encoded requests.
    pub fn with_server_secret(self, web_server_secret: &str) -> ApiParams {
        self.with_str("server_secret", web_server_secret)
    }

    /// `padding` (that many spaces) and `pad_response` (how many spaces the server should pad
    /// its response with). Tunnel-core draws both from `[0, 1024]`.
    pub fn with_padding(self, padding_len: usize, pad_response: usize) -> ApiParams {
        let pad_response = i64::try_from(pad_response).unwrap_or(i64::MAX);
        self.with_str("padding", &" ".repeat(padding_len))
            .with_int("pad_response", pad_response)
    }

    /// `last_connected` for a connected request: the previous `connected_timestamp`, or
    /// `"None"` on first connection.
    pub fn with_last_connected(self, last_connected: Option<&str>) -> ApiParams {
        self.with_str(
            "last_connected",
            last_connected.unwrap_or(LAST_CONNECTED_NONE),
        )
    }

    /// `establishment_duration` in milliseconds (connected request).
    pub fn with_establishment_duration_ms(self, ms: i64) -> ApiParams {
        self.with_int("establishment_duration", ms)
    }

    /// `statusData` for a status request: a JSON object (see [`super::StatusData`]).
    pub fn with_status_data(self, data: Value) -> ApiParams {
        self.with("statusData", data)
    }

    /// A parameter's value; `null` reads as absent, as in psiphond.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A required string parameter.
    pub fn get_str(&self, name: &str) -> Result<&str> {
        match self.get(name) {
            None => Err(Error::MissingParam(name.to_owned())),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Error::ParamType {
                name: name.to_owned(),
                expected: "string",
            }),
        }
    }

    /// An optional string parameter (`None` when absent or not a string).
    pub fn optional_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A required array-of-strings parameter.
    pub fn get_strings(&self, name: &str) -> Result<Vec<&str>> {
        let type_error = || Error::ParamType {
            name: name.to_owned(),
            expected: "array",
        };
        let items = self
            .get(name)
            .ok_or_else(|| Error::MissingParam(name.to_owned()))?
            .as_array()
            .ok_or_else(type_error)?;
        items
            .iter()
            .map(|v| v.as_str().ok_or_else(type_error))
            .collect()
    }

    /// A required integer parameter sent as a decimal string.
    pub fn get_int(&self, name: &str) -> Result<i64> {
        let text = self.get_str(name)?;
        text.parse().map_err(|_| Error::InvalidParam {
            name: name.to_owned(),
            value: text.to_owned(),
        })
    }

    /// An optional boolean flag: `Some(true)` only for `"1"`, as psiphond reads it.
    pub fn optional_flag(&self, name: &str) -> Option<bool> {
        self.optional_str(name).map(|v| v == "1")
    }

    /// The `pad_response` size clamped to `[0, max]`, or 0 when absent or invalid.
    pub fn pad_response(&self, max: usize) -> usize {
        match self.get_int("pad_response") {
            Ok(n) => usize::try_from(n.max(0)).unwrap_or(max).min(max),
            Err(_) => 0,
        }
    }

    /// A required JSON object parameter (e.g. `statusData`).
    pub fn get_object(&self, name: &str) -> Result<&serde_json::Map<String, Value>> {
        self.get(name)
            .ok_or_else(|| Error::MissingParam(name.to_owned()))?
            .as_object()
            .ok_or_else(|| Error::ParamType {
                name: name.to_owned(),
                expected: "object",
            })
    }

    /// Iterates over the parameters in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Value)> for ApiParams {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> ApiParams {
        ApiParams(iter.into_iter().collect())
    }
}
