//! API responses (JSON form) and the status request's `statusData`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::cbor::{self, Cbor};
use crate::error::{Error, Result};
use crate::gojson;

/// CBOR keys of the handshake response fields (tunnel-core's `keyasint` tags).
mod key {
    pub const HOMEPAGES: u64 = 1;
    pub const UPGRADE_CLIENT_VERSION: u64 = 2;
    pub const PAGE_VIEW_REGEXES: u64 = 3;
    pub const HTTPS_REQUEST_REGEXES: u64 = 4;
    pub const ENCODED_SERVER_LIST: u64 = 5;
    pub const CLIENT_REGION: u64 = 6;
    pub const CLIENT_ADDRESS: u64 = 7;
    pub const SERVER_TIMESTAMP: u64 = 8;
    pub const ACTIVE_AUTHORIZATION_IDS: u64 = 9;
    pub const TACTICS_PAYLOAD: u64 = 10;
    pub const TACTICS_PAYLOAD_COMPRESSION: u64 = 11;
    pub const UPSTREAM_BYTES_PER_SECOND: u64 = 12;
    pub const DOWNSTREAM_BYTES_PER_SECOND: u64 = 13;
    pub const STEERING_IP: u64 = 14;
    pub const PADDING: u64 = 15;
}

fn cbor_strings(values: &[String]) -> Cbor {
    Cbor::Array(values.iter().cloned().map(Cbor::Text).collect())
}

fn cbor_string_maps(values: &[BTreeMap<String, String>]) -> Cbor {
    Cbor::Array(
        values
            .iter()
            .map(|m| {
                Cbor::Map(
                    m.iter()
                        .map(|(k, v)| (Cbor::Text(k.clone()), Cbor::Text(v.clone())))
                        .collect(),
                )
            })
            .collect(),
    )
}

const CBOR_WHAT: &str = "CBOR handshake response";

/// tunnel-core's `tactics.Payload` keys.
const TACTICS_TAG: u64 = 1;
const TACTICS_TACTICS: u64 = 2;
const TACTICS_COMPRESSION: u64 = 3;

/// The JSON-form tactics payload (`{"Tag", "Tactics", "TacticsCompression"}`) as tunnel-core
/// CBOR-marshals `tactics.Payload`, `Tactics` as uncompressed JSON text.
fn tactics_payload_to_cbor(payload: &Value) -> Cbor {
    let mut m = Vec::new();
    if let Some(tag) = payload.get("Tag").and_then(Value::as_str)
        && !tag.is_empty()
    {
        m.push((Cbor::Unsigned(TACTICS_TAG), Cbor::Text(tag.to_owned())));
    }
    if let Some(tactics) = payload.get("Tactics").filter(|t| !t.is_null()) {
        m.push((
            Cbor::Unsigned(TACTICS_TACTICS),
            Cbor::Bytes(gojson::to_ordered_string(tactics).into_bytes()),
        ));
    }
    if let Some(c) = payload
        .get("TacticsCompression")
        .and_then(Value::as_i64)
        .filter(|c| *c != 0)
    {
        m.push((Cbor::Unsigned(TACTICS_COMPRESSION), Cbor::int(c)));
    }
    Cbor::Bytes(cbor::encode(&Cbor::Map(m)))
}

/// Reads a CBOR tactics payload back into the JSON form. Compressed `Tactics` are refused
/// (this crate has no tactics decompression).
fn tactics_payload_from_cbor(bytes: &[u8]) -> Result<Option<Value>> {
    let item = cbor::decode(bytes).map_err(|source| Error::Cbor {
        what: "CBOR tactics payload",
        source,
    })?;
    let pairs = match item {
        Cbor::Map(pairs) => pairs,
        Cbor::Null => return Ok(None),
        _ => return Err(cbor_shape("tactics_payload", "a map")),
    };
    let mut tag = String::new();
    let mut tactics = None;
    let mut compression = 0;
    for (k, v) in pairs {
        match k {
            Cbor::Unsigned(TACTICS_TAG) => tag = cbor_text("tactics_payload Tag", v)?,
            Cbor::Unsigned(TACTICS_TACTICS) => {
                tactics = match v {
                    Cbor::Bytes(b) => Some(b),
                    Cbor::Null => None,
                    _ => return Err(cbor_shape("tactics_payload Tactics", "a byte string")),
                }
            }
            Cbor::Unsigned(TACTICS_COMPRESSION) => {
                compression = cbor_int("tactics_payload TacticsCompression", v)?;
            }
            _ => {}
        }
    }
    if compression != 0 {
        return Err(cbor_shape("tactics_payload", "uncompressed tactics"));
    }
    let mut map = Map::new();
    map.insert("Tag".to_owned(), Value::String(tag));
    let tactics = match tactics {
        Some(b) if !b.is_empty() => {
            gojson::from_slice(&b).map_err(Error::json("tactics_payload Tactics"))?
        }
        _ => Value::Null,
    };
    map.insert("Tactics".to_owned(), tactics);
    map.insert("TacticsCompression".to_owned(), Value::from(0));
    Ok(Some(Value::Object(map)))
}

fn cbor_shape(name: &str, expected: &str) -> Error {
    Error::JsonShape {
        what: CBOR_WHAT,
        reason: format!("{name}: expected {expected}"),
    }
}

fn cbor_text(name: &str, v: Cbor) -> Result<String> {
    match v {
        Cbor::Text(s) => Ok(s),
        Cbor::Null => Ok(String::new()),
        _ => Err(cbor_shape(name, "text")),
    }
}

fn cbor_texts(name: &str, v: Cbor) -> Result<Vec<String>> {
    match v {
        Cbor::Array(items) => items.into_iter().map(|i| cbor_text(name, i)).collect(),
        Cbor::Null => Ok(Vec::new()),
        _ => Err(cbor_shape(name, "an array of text")),
    }
}

fn cbor_text_maps(name: &str, v: Cbor) -> Result<Vec<BTreeMap<String, String>>> {
    match v {
        Cbor::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Cbor::Map(pairs) => pairs
                    .into_iter()
                    .map(|(k, v)| Ok((cbor_text(name, k)?, cbor_text(name, v)?)))
                    .collect(),
                Cbor::Null => Ok(BTreeMap::new()),
                _ => Err(cbor_shape(name, "an array of maps")),
            })
            .collect(),
        Cbor::Null => Ok(Vec::new()),
        _ => Err(cbor_shape(name, "an array of maps")),
    }
}

fn cbor_int(name: &str, v: Cbor) -> Result<i64> {
    match v {
        Cbor::Unsigned(n) => i64::try_from(n).map_err(|_| cbor_shape(name, "a 64-bit integer")),
        Cbor::Negative(n) => i64::try_from(n)
            .map(|n| -1 - n)
            .map_err(|_| cbor_shape(name, "a 64-bit integer")),
        Cbor::Null => Ok(0),
        _ => Err(cbor_shape(name, "an integer")),
    }
}

/// Most padding psiphond adds to a response (`pad_response` is clamped to it).
pub const PADDING_MAX_BYTES: usize = 16 * 1024;

/// `n` spaces, at most [`PADDING_MAX_BYTES`].
pub fn make_padding(n: usize) -> String {
    " ".repeat(n.min(PADDING_MAX_BYTES))
}

/// Writes Go-struct-style JSON: fields in the given order, `omitempty` ones already left out.
fn write_struct(fields: Vec<(&'static str, Value)>) -> String {
    let map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    gojson::to_ordered_string(&Value::Object(map))
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

fn string_maps(values: &[BTreeMap<String, String>]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|m| {
                Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// Reads a response object, with Go's case-insensitive field matching.
struct Reader<'a> {
    what: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    fn parse(what: &'static str, body: &[u8]) -> Result<Map<String, Value>> {
        match gojson::from_slice(body).map_err(Error::json(what))? {
            Value::Object(map) => Ok(map),
            _ => Err(Error::JsonShape {
                what,
                reason: "not a JSON object".to_owned(),
            }),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        let value = self.map.get(name).or_else(|| {
            self.map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        });
        value.filter(|v| !v.is_null())
    }

    fn shape(&self, name: &str, expected: &str) -> Error {
        Error::JsonShape {
            what: self.what,
            reason: format!("{name}: expected {expected}"),
        }
    }

    fn string(&self, name: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.shape(name, "a string")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>> {
        let Some(value) = self.get(name) else {
            return Ok(Vec::new());
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.shape(name, "an array"))?;
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Null => Ok(String::new()),
                _ => Err(self.shape(name, "an array of strings")),
            })
            .collect()
    }

    fn string_maps(&self, name: &str) -> Result<Vec<BTreeMap<String, String>>> {
        let Some(value) = self.get(name) else {
            return Ok(Vec::new());
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.shape(name, "an array"))?;
        items
            .iter()
            .map(|item| {
                let object = item
                    .as_object()
                    .ok_or_else(|| self.shape(name, "an array of objects"))?;
                object
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        _ => Err(self.shape(name, "string values")),
                    })
                    .collect()
            })
            .collect()
    }

    fn int(&self, name: &str) -> Result<i64> {
        match self.get(name) {
            None => Ok(0),
            Some(v) => v.as_i64().ok_or_else(|| self.shape(name, "an integer")),
        }
    }
}

/// The `psiphon-handshake` response (tunnel-core's `HandshakeResponse`). Empty fields are
/// left out of the JSON, as Go's `omitempty` does; fields are written in this order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandshakeResponse {
    /// `homepages`: sponsor landing pages.
    pub homepages: Vec<String>,
    /// `upgrade_client_version`: a newer client version, if any.
    pub upgrade_client_version: String,
    /// `page_view_regexes`: obsolete.
    pub page_view_regexes: Vec<BTreeMap<String, String>>,
    /// `https_request_regexes`: `{"regex":..,"replace":..}` pairs for per-domain stats.
    pub https_request_regexes: Vec<BTreeMap<String, String>>,
    /// `encoded_server_list`: discovered server entries, each encoded.
    pub encoded_server_list: Vec<String>,
    /// `client_region`: the client's GeoIP country.
    pub client_region: String,
    /// `client_address`: `ip:port` as the server saw it.
    pub client_address: String,
    /// `server_timestamp`: RFC 3339 UTC.
    pub server_timestamp: String,
    /// `active_authorization_ids`.
    pub active_authorization_ids: Vec<String>,
    /// `tactics_payload`: a JSON object (Go's `json.RawMessage`), written in its stored key
    /// order.
    pub tactics_payload: Option<Value>,
    /// `tactics_payload_compression`.
    pub tactics_payload_compression: i32,
    /// `upstream_bytes_per_second`.
    pub upstream_bytes_per_second: i64,
    /// `downstream_bytes_per_second`.
    pub downstream_bytes_per_second: i64,
    /// `steering_ip`.
    pub steering_ip: String,
    /// `padding`: spaces, see [`make_padding`].
    pub padding: String,
}

impl HandshakeResponse {
    /// The JSON body, byte-identical to tunnel-core's.
    pub fn to_json(&self) -> String {
        let mut f: Vec<(&'static str, Value)> = Vec::new();
        let put_strings = |f: &mut Vec<_>, name, v: &[String]| {
            if !v.is_empty() {
                f.push((name, strings(v)));
            }
        };
        let put_string = |f: &mut Vec<(&'static str, Value)>, name, v: &str| {
            if !v.is_empty() {
                f.push((name, Value::String(v.to_owned())));
            }
        };
        let put_int = |f: &mut Vec<(&'static str, Value)>, name, v: i64| {
            if v != 0 {
                f.push((name, Value::from(v)));
            }
        };
        put_strings(&mut f, "homepages", &self.homepages);
        put_string(
            &mut f,
            "upgrade_client_version",
            &self.upgrade_client_version,
        );
        if !self.page_view_regexes.is_empty() {
            f.push(("page_view_regexes", string_maps(&self.page_view_regexes)));
        }
        if !self.https_request_regexes.is_empty() {
            f.push((
                "https_request_regexes",
                string_maps(&self.https_request_regexes),
            ));
        }
        put_strings(&mut f, "encoded_server_list", &self.encoded_server_list);
        put_string(&mut f, "client_region", &self.client_region);
        put_string(&mut f, "client_address", &self.client_address);
        put_string(&mut f, "server_timestamp", &self.server_timestamp);
        put_strings(
            &mut f,
            "active_authorization_ids",
            &self.active_authorization_ids,
        );
        if let Some(payload) = &self.tactics_payload {
            f.push(("tactics_payload", payload.clone()));
        }
        put_int(
            &mut f,
            "tactics_payload_compression",
            i64::from(self.tactics_payload_compression),
        );
        put_int(
            &mut f,
            "upstream_bytes_per_second",
            self.upstream_bytes_per_second,
        );
        put_int(
            &mut f,
            "downstream_bytes_per_second",
            self.downstream_bytes_per_second,
        );
        put_string(&mut f, "steering_ip", &self.steering_ip);
        put_string(&mut f, "padding", &self.padding);
        write_struct(f)
    }

    /// The CBOR body tunnel-core's server sends when the request carried
    /// `psiphon_api_response_version` = "1": a canonical CBOR map from the integer keys of
    /// tunnel-core's `HandshakeResponse` to the fields, empty ones left out as in
    /// [`HandshakeResponse::to_json`].
    ///
    /// In this form tunnel-core marshals the tactics payload with CBOR too: `tactics_payload`
    /// is a byte string holding the CBOR map `{1: Tag, 2: Tactics, 3: TacticsCompression}`,
    /// `Tactics` itself a byte string. This writes the `Tactics` of the JSON-form
    /// [`HandshakeResponse::tactics_payload`] (`{"Tag", "Tactics", "TacticsCompression"}`)
    /// as its JSON text, uncompressed.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut m: Vec<(Cbor, Cbor)> = Vec::new();
        let mut put = |k: u64, v: Cbor| m.push((Cbor::Unsigned(k), v));
        let text = |s: &str| (!s.is_empty()).then(|| Cbor::Text(s.to_owned()));
        let texts = |v: &[String]| (!v.is_empty()).then(|| cbor_strings(v));
        let maps = |v: &[BTreeMap<String, String>]| (!v.is_empty()).then(|| cbor_string_maps(v));
        let int = |i: i64| (i != 0).then(|| Cbor::int(i));
        let fields = [
            (key::HOMEPAGES, texts(&self.homepages)),
            (
                key::UPGRADE_CLIENT_VERSION,
                text(&self.upgrade_client_version),
            ),
            (key::PAGE_VIEW_REGEXES, maps(&self.page_view_regexes)),
            (
                key::HTTPS_REQUEST_REGEXES,
                maps(&self.https_request_regexes),
            ),
            (key::ENCODED_SERVER_LIST, texts(&self.encoded_server_list)),
            (key::CLIENT_REGION, text(&self.client_region)),
            (key::CLIENT_ADDRESS, text(&self.client_address)),
            (key::SERVER_TIMESTAMP, text(&self.server_timestamp)),
            (
                key::ACTIVE_AUTHORIZATION_IDS,
                texts(&self.active_authorization_ids),
            ),
            (
                key::TACTICS_PAYLOAD,
                self.tactics_payload.as_ref().map(tactics_payload_to_cbor),
            ),
            (
                key::TACTICS_PAYLOAD_COMPRESSION,
                int(i64::from(self.tactics_payload_compression)),
            ),
            (
                key::UPSTREAM_BYTES_PER_SECOND,
                int(self.upstream_bytes_per_second),
            ),
            (
                key::DOWNSTREAM_BYTES_PER_SECOND,
                int(self.downstream_bytes_per_second),
            ),
            (key::STEERING_IP, text(&self.steering_ip)),
            (key::PADDING, text(&self.padding)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                put(k, v);
            }
        }
        cbor::encode(&Cbor::Map(m))
    }

    /// Parses a CBOR response (unknown keys ignored, `null` as empty), as a client that
    /// asked with `psiphon_api_response_version` = "1" must.
    pub fn from_cbor(body: &[u8]) -> Result<HandshakeResponse> {
        let item = cbor::decode(body).map_err(|source| Error::Cbor {
            what: CBOR_WHAT,
            source,
        })?;
        let Cbor::Map(pairs) = item else {
            return Err(Error::JsonShape {
                what: CBOR_WHAT,
                reason: "not a CBOR map".to_owned(),
            });
        };
        let mut r = HandshakeResponse::default();
        for (k, v) in pairs {
            let Cbor::Unsigned(k) = k else { continue };
            match k {
                key::HOMEPAGES => r.homepages = cbor_texts("homepages", v)?,
                key::UPGRADE_CLIENT_VERSION => {
                    r.upgrade_client_version = cbor_text("upgrade_client_version", v)?;
                }
                key::PAGE_VIEW_REGEXES => {
                    r.page_view_regexes = cbor_text_maps("page_view_regexes", v)?;
                }
                key::HTTPS_REQUEST_REGEXES => {
                    r.https_request_regexes = cbor_text_maps("https_request_regexes", v)?;
                }
                key::ENCODED_SERVER_LIST => {
                    r.encoded_server_list = cbor_texts("encoded_server_list", v)?;
                }
                key::CLIENT_REGION => r.client_region = cbor_text("client_region", v)?,
                key::CLIENT_ADDRESS => r.client_address = cbor_text("client_address", v)?,
                key::SERVER_TIMESTAMP => r.server_timestamp = cbor_text("server_timestamp", v)?,
                key::ACTIVE_AUTHORIZATION_IDS => {
                    r.active_authorization_ids = cbor_texts("active_authorization_ids", v)?;
                }
                key::TACTICS_PAYLOAD => {
                    r.tactics_payload = match v {
                        Cbor::Bytes(b) if b.is_empty() => None,
                        Cbor::Bytes(b) => tactics_payload_from_cbor(&b)?,
                        Cbor::Null => None,
                        _ => return Err(cbor_shape("tactics_payload", "a byte string")),
                    };
                }
                key::TACTICS_PAYLOAD_COMPRESSION => {
                    r.tactics_payload_compression =
                        i32::try_from(cbor_int("tactics_payload_compression", v)?)
                            .map_err(|_| cbor_shape("tactics_payload_compression", "an int32"))?;
                }
                key::UPSTREAM_BYTES_PER_SECOND => {
                    r.upstream_bytes_per_second = cbor_int("upstream_bytes_per_second", v)?;
                }
                key::DOWNSTREAM_BYTES_PER_SECOND => {
                    r.downstream_bytes_per_second = cbor_int("downstream_bytes_per_second", v)?;
                }
                key::STEERING_IP => r.steering_ip = cbor_text("steering_ip", v)?,
                key::PADDING => r.padding = cbor_text("padding", v)?,
                _ => {}
            }
        }
        Ok(r)
    }

    /// Parses a JSON response (field names matched case-insensitively, unknown fields
    /// ignored, `null` as empty).
    pub fn from_json(body: &[u8]) -> Result<HandshakeResponse> {
        let map = Reader::parse("handshake response", body)?;
        let r = Reader {
            what: "handshake response",
            map: &map,
        };
        let compression = r.int("tactics_payload_compression")?;
        Ok(HandshakeResponse {
            homepages: r.strings("homepages")?,
            upgrade_client_version: r.string("upgrade_client_version")?,
            page_view_regexes: r.string_maps("page_view_regexes")?,
            https_request_regexes: r.string_maps("https_request_regexes")?,
            encoded_server_list: r.strings("encoded_server_list")?,
            client_region: r.string("client_region")?,
            client_address: r.string("client_address")?,
            server_timestamp: r.string("server_timestamp")?,
            active_authorization_ids: r.strings("active_authorization_ids")?,
            tactics_payload: r.get("tactics_payload").cloned(),
            tactics_payload_compression: i32::try_from(compression)
                .map_err(|_| r.shape("tactics_payload_compression", "a 32-bit integer"))?,
            upstream_bytes_per_second: r.int("upstream_bytes_per_second")?,
            downstream_bytes_per_second: r.int("downstream_bytes_per_second")?,
            steering_ip: r.string("steering_ip")?,
            padding: r.string("padding")?,
        })
    }
}

/// The `psiphon-connected` response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectedResponse {
    /// `connected_timestamp`: RFC 3339 UTC, truncated to the hour; the client sends it back
    /// as `last_connected`.
    pub connected_timestamp: String,
    /// `padding`.
    pub padding: String,
}

impl ConnectedResponse {
    /// The JSON body, byte-identical to tunnel-core's.
    pub fn to_json(&self) -> String {
        let mut f = Vec::new();
        if !self.connected_timestamp.is_empty() {
            f.push((
                "connected_timestamp",
                Value::String(self.connected_timestamp.clone()),
            ));
        }
        if !self.padding.is_empty() {
            f.push(("padding", Value::String(self.padding.clone())));
        }
        write_struct(f)
    }

    /// Parses a JSON response.
    pub fn from_json(body: &[u8]) -> Result<ConnectedResponse> {
        let map = Reader::parse("connected response", body)?;
        let r = Reader {
            what: "connected response",
            map: &map,
        };
        Ok(ConnectedResponse {
            connected_timestamp: r.string("connected_timestamp")?,
            padding: r.string("padding")?,
        })
    }
}

/// The `psiphon-status` response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusResponse {
    /// `invalid_server_entry_tags`: server entries the client should delete.
    pub invalid_server_entry_tags: Vec<String>,
    /// `padding`.
    pub padding: String,
}

impl StatusResponse {
    /// The JSON body, byte-identical to tunnel-core's.
    pub fn to_json(&self) -> String {
        let mut f = Vec::new();
        if !self.invalid_server_entry_tags.is_empty() {
            f.push((
                "invalid_server_entry_tags",
                strings(&self.invalid_server_entry_tags),
            ));
        }
        if !self.padding.is_empty() {
            f.push(("padding", Value::String(self.padding.clone())));
        }
        write_struct(f)
    }

    /// Parses a JSON response.
    pub fn from_json(body: &[u8]) -> Result<StatusResponse> {
        let map = Reader::parse("status response", body)?;
        let r = Reader {
            what: "status response",
            map: &map,
        };
        Ok(StatusResponse {
            invalid_server_entry_tags: r.strings("invalid_server_entry_tags")?,
            padding: r.string("padding")?,
        })
    }
}

/// The `statusData` object of a status request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusData {
    /// `host_bytes`: bytes per (regex-replaced) host name.
    pub host_bytes: BTreeMap<String, i64>,
    /// `remote_server_list_stats`: stored stat records, each a JSON object.
    pub remote_server_list_stats: Vec<Value>,
    /// `failed_tunnel_stats`: stored stat records, each a JSON object.
    pub failed_tunnel_stats: Vec<Value>,
    /// `check_server_entry_tags`: tags the server should check for pruning.
    pub check_server_entry_tags: Vec<String>,
}

impl StatusData {
    /// The object as tunnel-core builds it, with the legacy placeholders
    /// (`bytes_transferred: 0`, `page_views: []`, `https_requests: []`) old servers require.
    /// Stat lists are present only when non-empty; `check_server_entry_tags` is `null` when
    /// empty, as Go writes a nil slice.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        map.insert(
            "host_bytes".to_owned(),
            Value::Object(
                self.host_bytes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(*v)))
                    .collect(),
            ),
        );
        map.insert("bytes_transferred".to_owned(), Value::from(0));
        map.insert("page_views".to_owned(), Value::Array(Vec::new()));
        map.insert("https_requests".to_owned(), Value::Array(Vec::new()));
        if !self.remote_server_list_stats.is_empty() {
            map.insert(
                "remote_server_list_stats".to_owned(),
                Value::Array(self.remote_server_list_stats.clone()),
            );
        }
        if !self.failed_tunnel_stats.is_empty() {
            map.insert(
                "failed_tunnel_stats".to_owned(),
                Value::Array(self.failed_tunnel_stats.clone()),
            );
        }
        map.insert(
            "check_server_entry_tags".to_owned(),
            if self.check_server_entry_tags.is_empty() {
                Value::Null
            } else {
                strings(&self.check_server_entry_tags)
            },
        );
        Value::Object(map)
    }

    /// Reads the object on the server side. Host byte counts are JSON numbers (truncated to
    /// integers, as psiphond does); absent lists read as empty.
    pub fn from_value(value: &Value) -> Result<StatusData> {
        let map = value.as_object().ok_or_else(|| Error::ParamType {
            name: "statusData".to_owned(),
            expected: "object",
        })?;
        let r = Reader {
            what: "statusData",
            map,
        };
        let mut host_bytes = BTreeMap::new();
        if let Some(hosts) = r.get("host_bytes") {
            let hosts = hosts
                .as_object()
                .ok_or_else(|| r.shape("host_bytes", "an object"))?;
            for (host, bytes) in hosts {
                let n =
                    match (bytes.as_i64(), bytes.as_f64()) {
                        (Some(i), _) => i,
                        // Go truncates the float64 with int64(); we saturate out-of-range values
                        // (Go's result there is unspecified). `Display` of an integral float has
                        // no fraction or exponent, so it parses as an integer when in range.
                        (None, Some(f)) => f.trunc().to_string().parse::<i64>().unwrap_or(
                            if f.is_sign_negative() {
                                i64::MIN
                            } else {
                                i64::MAX
                            },
                        ),
                        _ => return Err(r.shape("host_bytes", "numbers")),
                    };
                host_bytes.insert(host.clone(), n);
            }
        }
        let objects = |name: &str| -> Result<Vec<Value>> {
            match r.get(name) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
                    Ok(items.clone())
                }
                Some(_) => Err(r.shape(name, "an array of objects")),
            }
        };
        Ok(StatusData {
            host_bytes,
            remote_server_list_stats: objects("remote_server_list_stats")?,
            failed_tunnel_stats: objects("failed_tunnel_stats")?,
            check_server_entry_tags: r.strings("check_server_entry_tags")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn omitempty() {
        assert_eq!(HandshakeResponse::default().to_json(), "{}");
        assert_eq!(ConnectedResponse::default().to_json(), "{}");
        let r = HandshakeResponse {
            tactics_payload: Some(json!({"Tag": "t", "Tactics": {"b": 1, "a": "<"}})),
            upstream_bytes_per_second: 5,
            ..HandshakeResponse::default()
        };
        let text = r.to_json();
        assert_eq!(
            text,
            r#"{"tactics_payload":{"Tag":"t","Tactics":{"b":1,"a":"\u003c"}},"upstream_bytes_per_second":5}"#
        );
        assert_eq!(HandshakeResponse::from_json(text.as_bytes()).unwrap(), r);
        assert!(HandshakeResponse::from_json(b"[]").is_err());
        assert!(HandshakeResponse::from_json(br#"{"homepages":"x"}"#).is_err());
    }

    #[test]
    fn cbor_tactics_payload_is_cbor() {
        let r = HandshakeResponse {
            tactics_payload: Some(
                json!({"Tag": "t", "Tactics": {"b": 1, "a": "<"}, "TacticsCompression": 0}),
            ),
            ..HandshakeResponse::default()
        };
        let body = r.to_cbor();
        // {10: h'{1: "t", 2: h'{"b":1,"a":"\u003c"}'}'}
        let inner = cbor::encode(&Cbor::Map(vec![
            (Cbor::Unsigned(1), Cbor::Text("t".to_owned())),
            (
                Cbor::Unsigned(2),
                Cbor::Bytes(br#"{"b":1,"a":"\u003c"}"#.to_vec()),
            ),
        ]));
        let want = cbor::encode(&Cbor::Map(vec![(Cbor::Unsigned(10), Cbor::Bytes(inner))]));
        assert_eq!(body, want);
        assert_eq!(HandshakeResponse::from_cbor(&body).unwrap(), r);
        let compressed = cbor::encode(&Cbor::Map(vec![(
            Cbor::Unsigned(10),
            Cbor::Bytes(cbor::encode(&Cbor::Map(vec![(
                Cbor::Unsigned(3),
                Cbor::Unsigned(1),
            )]))),
        )]));
        assert!(HandshakeResponse::from_cbor(&compressed).is_err());
    }

    #[test]
    fn status_data_round_trip() {
        let data = StatusData {
            host_bytes: [("example.com".to_owned(), 1234)].into_iter().collect(),
            failed_tunnel_stats: vec![json!({"server_entry_tag": "t"})],
            ..StatusData::default()
        };
        let value = data.to_value();
        assert_eq!(
            gojson::to_canonical_string(&value),
            r#"{"bytes_transferred":0,"check_server_entry_tags":null,"failed_tunnel_stats":[{"server_entry_tag":"t"}],"host_bytes":{"example.com":1234},"https_requests":[],"page_views":[]}"#
        );
        assert_eq!(StatusData::from_value(&value).unwrap(), data);
        assert!(StatusData::from_value(&json!({"host_bytes": {"a": "1"}})).is_err());
        let floats = json!({"host_bytes": {"a": 12.9, "b": -1e300, "c": 18446744073709551615u64}});
        let hosts = StatusData::from_value(&floats).unwrap().host_bytes;
        assert_eq!(
            (hosts["a"], hosts["b"], hosts["c"]),
            (12, i64::MIN, i64::MAX)
        );
        assert_eq!(make_padding(usize::MAX).len(), PADDING_MAX_BYTES);
    }
}
