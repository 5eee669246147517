//! The Psiphon API over SSH global requests: `psiphon-handshake`, `psiphon-connected`,
//! `psiphon-status`. One [`ApiState`] per tunnel; the clock is passed in.
//!
//! Request bodies are read as tunnel-core's psiphond reads them: packed CBOR when they start
//! with `00 01` (what tunnel-core clients send to any entry with `ssh-api-requests`), JSON
//! otherwise. Replies are JSON, except the handshake response of a request carrying
//! `psiphon_api_response_version` = "1", which is CBOR. A refused request is logged as an
//! `api_request_rejected` event holding only the request name and a reason category.

use std::collections::BTreeMap;
use std::time::SystemTime;

use psiphon_protocol::api::{
    self, ApiParams, LAST_CONNECTED_NONE, PADDING_MAX_BYTES, RequestEncoding,
    normalize_client_platform, validate_connected_params, validate_handshake_params,
    validate_status_params,
};
use psiphon_protocol::{ConnectedResponse, HandshakeResponse, StatusResponse};
use serde_json::{Map, Value};

use crate::discovery::{ClientKey, Discovery};
use crate::domain_bytes::{MAX_DOMAINS_PER_STATUS, acceptable_domain};
use crate::log::EventLog;
use crate::psinet::Database;
use crate::time::{rfc3339, rfc3339_hour, utc_date};
use crate::traffic_rules::{Client, TrafficRules, TrafficRulesSet};

/// The region reported while there is no GeoIP lookup.
pub const REGION_NONE: &str = "None";

/// How a logged parameter is written (tunnel-core's `requestParamLog*` flags).
#[derive(Clone, Copy)]
enum LogAs {
    /// As sent.
    Value,
    /// A decimal string as a JSON integer.
    Int,
    /// `"1"`/`"0"` as a JSON boolean; omitted means `false`.
    Flag,
}

/// Handshake parameters copied into `server_tunnel` and `unique_user` events, as tunnel-core
/// logs them: client-reported metadata only, never addresses, host names or URLs.
const LOGGED_PARAMS: &[(&str, LogAs)] = &[
    ("propagation_channel_id", LogAs::Value),
    ("sponsor_id", LogAs::Value),
    ("client_version", LogAs::Int),
    ("client_platform", LogAs::Value),
    ("client_features", LogAs::Value),
    ("client_build_rev", LogAs::Value),
    ("device_region", LogAs::Value),
    ("egress_region", LogAs::Value),
    ("network_type", LogAs::Value),
    ("applied_tactics_tag", LogAs::Value),
    ("ssh_client_version", LogAs::Value),
    ("upstream_proxy_type", LogAs::Value),
    ("tls_profile", LogAs::Value),
    ("tls_version", LogAs::Value),
    ("server_entry_region", LogAs::Value),
    ("server_entry_source", LogAs::Value),
    ("server_entry_timestamp", LogAs::Value),
    ("dial_port_number", LogAs::Int),
    ("is_replay", LogAs::Flag),
    ("dial_duration", LogAs::Int),
    ("candidate_number", LogAs::Int),
    ("established_tunnels_count", LogAs::Int),
    ("upstream_ossh_padding", LogAs::Int),
    ("last_connected", LogAs::Value),
    ("establishment_duration", LogAs::Int),
];

/// Copies `keys` of `params` into `fields`, converted as tunnel-core logs them.
fn copy_log_fields(params: &ApiParams, keys: &[&str], fields: &mut Map<String, Value>) {
    for &(key, how) in LOGGED_PARAMS {
        if !keys.contains(&key) {
            continue;
        }
        let value = params.get(key);
        let logged = match (how, value) {
            (LogAs::Flag, None) => Some(Value::Bool(false)),
            (_, None) => None,
            (LogAs::Value, Some(v)) => Some(v.clone()),
            (LogAs::Int, Some(v)) => Some(
                v.as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .map_or_else(|| v.clone(), Value::from),
            ),
            (LogAs::Flag, Some(v)) => Some(Value::Bool(v.as_str() == Some("1"))),
        };
        if let Some(v) = logged {
            fields.insert(key.to_owned(), v);
        }
    }
}

/// What a completed handshake told us about the client.
#[derive(Debug, Clone)]
pub struct HandshakeInfo {
    /// `sponsor_id`.
    pub sponsor_id: String,
    /// Normalised `client_platform`.
    pub client_platform: String,
    /// `client_version`.
    pub client_version: String,
    /// `device_region` (empty when not sent).
    pub device_region: String,
    /// The sponsor's `https_request_regexes` returned in the handshake; `host_bytes` are
    /// accepted only while psinet still has exactly these (tunnel-core's checksum rule).
    pub https_request_regexes: Vec<BTreeMap<String, String>>,
    /// Fields for the `server_tunnel` event.
    pub log_fields: Map<String, Value>,
    /// The traffic rules selected with the handshake's parameters, when the context had a
    /// rules set.
    pub rules: Option<TrafficRules>,
    /// The handshake's parameters, to select rules again when the rules file is reloaded.
    pub params: ApiParams,
}

/// The API state of one tunnel.
#[derive(Debug, Default)]
pub struct ApiState {
    handshake: Option<HandshakeInfo>,
    /// (UTC date, timestamp) of the last connected response.
    connected: Option<(String, String)>,
    status_requests: u64,
    rejected: u64,
    /// `host_bytes` accepted from status requests, not yet taken by the tunnel.
    host_bytes: Vec<(String, u64)>,
}

/// What a request needs from the server.
#[derive(Debug)]
pub struct ApiContext<'a> {
    /// psinet data.
    pub psinet: &'a Database,
    /// The event log.
    pub log: &'a EventLog,
    /// The tunnel's session id (from the SSH password).
    pub session_id: &'a str,
    /// `OwnEncodedServerEntries`: returned to a client that reports its copy of this
    /// server's entry unsigned (`missing_server_entry_signature`/`_provider_id` = tag).
    pub own_encoded_server_entries: &'a BTreeMap<String, String>,
    /// The client's GeoIP fields (looked up at accept; the address is not kept).
    pub geo: &'a crate::geoip::GeoFields,
    /// Discovery over the current psinet; `None` when the traffic rules disable it.
    pub discovery: Option<&'a Discovery>,
    /// What discovery needs of the client address (computed at accept; the address is not
    /// kept); `None` when unknown.
    pub client_key: Option<ClientKey>,
    /// The traffic rules and what selects them besides the handshake's parameters; the
    /// handshake selects the client's rules (reporting its rates, applying
    /// `DisableDiscovery`). `None`: no rules, no limits.
    pub traffic_rules: Option<(&'a TrafficRulesSet, Client<'a>)>,
}

/// Shuffles in place (tunnel-core returns home pages in random order).
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let mut b = [0u8; 8];
        if aws_lc_rs::rand::fill(&mut b).is_err() {
            return;
        }
        let r = u64::from_le_bytes(b);
        let j = usize::try_from(r % u64::try_from(i + 1).unwrap_or(u64::MAX)).unwrap_or(0);
        items.swap(i, j);
    }
}

/// Why a request was refused: a fixed category, safe to log (no client data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A packed-CBOR body that does not decode.
    MalformedPacked,
    /// A JSON body that does not parse (or is not an object).
    MalformedJson,
    /// Parameters that fail psiphond's checks (missing, wrong type or invalid value).
    InvalidParams,
    /// A request other than the handshake before the handshake.
    HandshakeRequired,
    /// A second handshake on the tunnel.
    RepeatedHandshake,
    /// A status request whose `statusData` is not usable.
    InvalidStatusData,
    /// A request name psiphond does not answer.
    UnknownRequest,
}

impl Rejection {
    /// The logged category.
    pub const fn name(self) -> &'static str {
        match self {
            Rejection::MalformedPacked => "malformed_packed_body",
            Rejection::MalformedJson => "malformed_json_body",
            Rejection::InvalidParams => "invalid_params",
            Rejection::HandshakeRequired => "handshake_required",
            Rejection::RepeatedHandshake => "repeated_handshake",
            Rejection::InvalidStatusData => "invalid_status_data",
            Rejection::UnknownRequest => "unknown_request",
        }
    }
}

/// At most this many `api_request_rejected` events per tunnel; later rejections are only
/// counted ([`ApiState::rejected_requests`]), so a client cannot flood the log.
const MAX_REJECTION_EVENTS: u64 = 8;

/// Reads a request body in either encoding.
fn params_of(body: &[u8]) -> Result<(ApiParams, RequestEncoding), Rejection> {
    if api::is_packed(body) {
        ApiParams::from_packed(body)
            .map(|p| (p, RequestEncoding::Packed))
            .map_err(|_| Rejection::MalformedPacked)
    } else {
        ApiParams::from_json(body)
            .map(|p| (p, RequestEncoding::Json))
            .map_err(|_| Rejection::MalformedJson)
    }
}

const fn encoding_name(encoding: RequestEncoding) -> &'static str {
    match encoding {
        RequestEncoding::Json => "json",
        RequestEncoding::Packed => "packed",
    }
}

fn padding(params: &ApiParams) -> String {
    api::make_padding(params.pad_response(PADDING_MAX_BYTES))
}

impl ApiState {
    /// The handshake, once completed.
    pub fn handshake(&self) -> Option<&HandshakeInfo> {
        self.handshake.as_ref()
    }

    /// How many status requests were accepted.
    pub fn status_requests(&self) -> u64 {
        self.status_requests
    }

    /// How many requests were refused.
    pub fn rejected_requests(&self) -> u64 {
        self.rejected
    }

    /// Takes the `host_bytes` (domain, bytes) accepted since the last call, for the tunnel to
    /// add to the server's [`crate::domain_bytes::DomainBytes`].
    pub fn take_host_bytes(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.host_bytes)
    }

    /// Handles one request; `Some(body)` is a success reply, `None` a failure reply. A
    /// failure is logged as `api_request_rejected` (request name and reason category only).
    pub fn handle(
        &mut self,
        name: &str,
        body: &[u8],
        ctx: &ApiContext<'_>,
        now: SystemTime,
    ) -> Option<Vec<u8>> {
        let mut encoding = None;
        let result = self.dispatch(name, body, ctx, now, &mut encoding);
        if let Err(reason) = result {
            self.rejected += 1;
            if self.rejected <= MAX_REJECTION_EVENTS {
                // The name only when it is one of ours: never echo client-chosen text.
                let known = [
                    api::HANDSHAKE_REQUEST_NAME,
                    api::CONNECTED_REQUEST_NAME,
                    api::STATUS_REQUEST_NAME,
                    api::CLIENT_VERIFICATION_REQUEST_NAME,
                    api::DSL_REQUEST_NAME,
                ];
                let request = known.into_iter().find(|k| *k == name).unwrap_or("other");
                let mut fields = Map::new();
                fields.insert("request_name".to_owned(), Value::from(request));
                fields.insert("reason".to_owned(), Value::from(reason.name()));
                if let Some(encoding) = encoding {
                    fields.insert("encoding".to_owned(), Value::from(encoding_name(encoding)));
                }
                ctx.log.event("api_request_rejected", fields);
            }
        }
        result.ok()
    }

    fn dispatch(
        &mut self,
        name: &str,
        body: &[u8],
        ctx: &ApiContext<'_>,
        now: SystemTime,
        encoding: &mut Option<RequestEncoding>,
    ) -> Result<Vec<u8>, Rejection> {
        let known = matches!(
            name,
            api::HANDSHAKE_REQUEST_NAME
                | api::CONNECTED_REQUEST_NAME
                | api::STATUS_REQUEST_NAME
                | api::CLIENT_VERIFICATION_REQUEST_NAME
        );
        if !known {
            return Err(Rejection::UnknownRequest);
        }
        // As tunnel-core: the handshake first, checked before the body is read.
        if name == api::HANDSHAKE_REQUEST_NAME {
            if self.handshake.is_some() {
                return Err(Rejection::RepeatedHandshake);
            }
        } else if self.handshake.is_none() {
            return Err(Rejection::HandshakeRequired);
        }
        let (params, enc) = params_of(body)?;
        *encoding = Some(enc);
        match name {
            api::HANDSHAKE_REQUEST_NAME => self.handshake_request(&params, ctx, now),
            api::CONNECTED_REQUEST_NAME => self.connected_request(&params, ctx, now),
            api::STATUS_REQUEST_NAME => self.status_request(&params, ctx, now),
            // A stub in tunnel-core too: an empty success once the handshake is done.
            _ => Ok(Vec::new()),
        }
    }

    fn handshake_request(
        &mut self,
        params: &ApiParams,
        ctx: &ApiContext<'_>,
        now: SystemTime,
    ) -> Result<Vec<u8>, Rejection> {
        let invalid = |_| Rejection::InvalidParams;
        validate_handshake_params(params).map_err(invalid)?;
        let sponsor_id = params.get_str("sponsor_id").map_err(invalid)?.to_owned();
        let client_version = params
            .get_str("client_version")
            .map_err(invalid)?
            .to_owned();
        let platform =
            normalize_client_platform(params.get_str("client_platform").map_err(invalid)?);
        let device_region = params
            .optional_str("device_region")
            .unwrap_or_default()
            .to_owned();
        let mut homepages = ctx.psinet.homepages(
            &sponsor_id,
            &ctx.geo.region,
            &ctx.geo.asn,
            &device_region,
            platform.is_mobile(),
        );
        shuffle(&mut homepages);
        let rules = ctx.traffic_rules.map(|(set, client)| {
            set.select(&Client {
                handshake: Some(params),
                ..client
            })
        });
        let rate = |per_second: fn(&TrafficRules) -> u64| {
            rules
                .as_ref()
                .map_or(0, |r| i64::try_from(per_second(r)).unwrap_or(i64::MAX))
        };
        let discovery = ctx
            .discovery
            .filter(|_| !rules.as_ref().is_some_and(|r| r.disable_discovery));
        // One discovered server (or none), chosen from the client address. As tunnel-core,
        // this server may be handed its own entry when it is in the discovery list.
        let mut encoded_server_list: Vec<String> = discovery
            .zip(ctx.client_key)
            .and_then(|(discovery, key)| discovery.select_key(key, now))
            .map(|server| server.encoded_server_entry.clone())
            .into_iter()
            .collect();
        // The tag, not an IP, names the entry, so clients cannot probe for servers.
        if let Some(entry) = params
            .optional_str("missing_server_entry_signature")
            .or_else(|| params.optional_str("missing_server_entry_provider_id"))
            .and_then(|tag| ctx.own_encoded_server_entries.get(tag))
        {
            encoded_server_list.push(entry.clone());
        }
        let https_request_regexes = ctx.psinet.https_request_regexes(&sponsor_id);
        let response = HandshakeResponse {
            homepages,
            encoded_server_list,
            upgrade_client_version: ctx
                .psinet
                .upgrade_client_version(&client_version, platform.name())
                .unwrap_or_default(),
            https_request_regexes: https_request_regexes.clone(),
            client_region: ctx.geo.region.clone(),
            server_timestamp: rfc3339(now),
            padding: padding(params),
            upstream_bytes_per_second: rate(|r| r.rate_limits.read_bytes_per_second),
            downstream_bytes_per_second: rate(|r| r.rate_limits.write_bytes_per_second),
            ..HandshakeResponse::default()
        };
        let mut log_fields = Map::new();
        let handshake_keys: Vec<&str> = LOGGED_PARAMS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !matches!(*k, "last_connected" | "establishment_duration"))
            .collect();
        copy_log_fields(params, &handshake_keys, &mut log_fields);
        self.handshake = Some(HandshakeInfo {
            sponsor_id,
            client_platform: platform.name().to_owned(),
            client_version,
            device_region,
            https_request_regexes,
            log_fields,
            rules,
            params: params.clone(),
        });
        // tunnel-core answers in CBOR exactly when the client asked for the v1 response.
        Ok(if params.wants_cbor_response() {
            response.to_cbor()
        } else {
            response.to_json().into_bytes()
        })
    }

    fn connected_request(
        &mut self,
        params: &ApiParams,
        ctx: &ApiContext<'_>,
        now: SystemTime,
    ) -> Result<Vec<u8>, Rejection> {
        validate_connected_params(params).map_err(|_| Rejection::InvalidParams)?;
        let handshake = self
            .handshake
            .as_mut()
            .ok_or(Rejection::HandshakeRequired)?;
        let today = utc_date(now);
        if let Some((date, timestamp)) = &self.connected
            && *date == today
        {
            return Ok(ConnectedResponse {
                connected_timestamp: timestamp.clone(),
                padding: padding(params),
            }
            .to_json()
            .into_bytes());
        }
        let last = params
            .get_str("last_connected")
            .map_err(|_| Rejection::InvalidParams)?;
        // server_tunnel logs these from the connected request, as tunnel-core does.
        copy_log_fields(
            params,
            &["last_connected", "establishment_duration"],
            &mut handshake.log_fields,
        );
        // RFC 3339 dates sort as text; a date before today (or "None") is a new daily user.
        let unique = last == LAST_CONNECTED_NONE || last.get(..10).is_some_and(|d| *d < *today);
        if unique {
            let mut fields = handshake.log_fields.clone();
            ctx.geo.log_into(&mut fields);
            fields.insert("session_id".to_owned(), Value::from(ctx.session_id));
            ctx.log.event("unique_user", fields);
        }
        let timestamp = rfc3339_hour(now);
        self.connected = Some((today, timestamp.clone()));
        Ok(ConnectedResponse {
            connected_timestamp: timestamp,
            padding: padding(params),
        }
        .to_json()
        .into_bytes())
    }

    /// The `host_bytes` of a status request, when this tunnel may report them: its handshake
    /// returned regexes and psinet still has the same ones for the sponsor (otherwise they are
    /// dropped, as tunnel-core does). A `host_bytes` that is not an object of numbers refuses
    /// the request; negative counts, names that are not domains (URLs, paths, addresses) and
    /// entries past [`MAX_DOMAINS_PER_STATUS`] are dropped.
    fn accepted_host_bytes(
        &self,
        status_data: &Map<String, Value>,
        ctx: &ApiContext<'_>,
    ) -> Result<Vec<(String, u64)>, Rejection> {
        let Some(hosts) = status_data.get("host_bytes") else {
            return Ok(Vec::new());
        };
        let hosts = match hosts {
            Value::Null => return Ok(Vec::new()),
            Value::Object(hosts) => hosts,
            _ => return Err(Rejection::InvalidStatusData),
        };
        if hosts.values().any(|v| !v.is_number()) {
            return Err(Rejection::InvalidStatusData);
        }
        let Some(handshake) = &self.handshake else {
            return Ok(Vec::new());
        };
        if handshake.https_request_regexes.is_empty()
            || handshake.https_request_regexes
                != ctx.psinet.https_request_regexes(&handshake.sponsor_id)
        {
            return Ok(Vec::new());
        }
        Ok(hosts
            .iter()
            .take(MAX_DOMAINS_PER_STATUS)
            .filter(|(domain, _)| acceptable_domain(domain))
            .filter_map(|(domain, bytes)| {
                // Integral counts; a float is truncated as Go's int64() does.
                let n = bytes.as_u64().or_else(|| {
                    bytes
                        .as_f64()
                        .filter(|f| *f >= 0.0)
                        .map(|f| f.trunc())
                        .and_then(|f| f.to_string().parse::<u64>().ok())
                })?;
                Some((domain.clone(), n))
            })
            .collect())
    }

    fn status_request(
        &mut self,
        params: &ApiParams,
        ctx: &ApiContext<'_>,
        now: SystemTime,
    ) -> Result<Vec<u8>, Rejection> {
        validate_status_params(params).map_err(|_| Rejection::InvalidParams)?;
        let status_data = params
            .get_object("statusData")
            .map_err(|_| Rejection::InvalidParams)?;
        let invalid_server_entry_tags =
            crate::prune::invalid_server_entry_tags(status_data, ctx.psinet, now)
                .ok_or(Rejection::InvalidStatusData)?;
        let host_bytes = self.accepted_host_bytes(status_data, ctx)?;
        self.host_bytes.extend(host_bytes);
        self.status_requests += 1;
        Ok(StatusResponse {
            invalid_server_entry_tags,
            padding: padding(params),
        }
        .to_json()
        .into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::log::Level;

    fn base() -> ApiParams {
        ApiParams::base("ABCDEF", "0123456789ABCDEF", "5", "Android_13")
    }

    /// What an [`ApiContext`] borrows: a log in a temporary directory, an empty psinet, no
    /// GeoIP answer, no own entries.
    struct Env {
        _dir: tempfile::TempDir,
        log_path: std::path::PathBuf,
        log: EventLog,
        psinet: Database,
        geo: crate::geoip::GeoFields,
        own: BTreeMap<String, String>,
    }

    impl Env {
        fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let log_path = dir.path().join("log");
            let log = EventLog::open(Some(&log_path), "h", Level::Info).unwrap();
            Env {
                _dir: dir,
                log_path,
                log,
                psinet: Database::default(),
                geo: crate::geoip::GeoFields::none(),
                own: BTreeMap::new(),
            }
        }

        fn ctx(&self) -> ApiContext<'_> {
            self.ctx_with(&self.psinet)
        }

        fn ctx_with<'a>(&'a self, psinet: &'a Database) -> ApiContext<'a> {
            ApiContext {
                psinet,
                log: &self.log,
                session_id: "00112233445566778899aabbccddeeff",
                own_encoded_server_entries: &self.own,
                geo: &self.geo,
                discovery: None,
                client_key: None,
                traffic_rules: None,
            }
        }
    }

    #[test]
    fn connected_once_per_day_and_unique_users() {
        let env = Env::new();
        let log_path = &env.log_path;
        let ctx = env.ctx();
        let mut api = ApiState::default();
        let day1 = UNIX_EPOCH + Duration::from_secs(1_763_745_903); // 2025-11-21T17:25:03Z
        let connected = |last: Option<&str>| base().with_last_connected(last).to_json();
        // Nothing before the handshake.
        assert!(
            api.handle("psiphon-connected", connected(None).as_bytes(), &ctx, day1)
                .is_none()
        );
        let hs = base().with_str("relay_protocol", "OSSH").to_json();
        let body = api
            .handle("psiphon-handshake", hs.as_bytes(), &ctx, day1)
            .unwrap();
        let hs = HandshakeResponse::from_json(&body).unwrap();
        assert_eq!(hs.server_timestamp, "2025-11-21T17:25:03Z");
        assert_eq!(api.handshake().unwrap().client_platform, "Android");

        let r = api
            .handle(
                "psiphon-connected",
                connected(Some("2025-11-20T10:00:00Z")).as_bytes(),
                &ctx,
                day1,
            )
            .unwrap();
        let ts = ConnectedResponse::from_json(&r)
            .unwrap()
            .connected_timestamp;
        assert_eq!(ts, "2025-11-21T17:00:00Z");
        // Later the same day: the same answer, no new unique user.
        let later = day1 + Duration::from_secs(3 * 3600);
        let r = api
            .handle("psiphon-connected", connected(None).as_bytes(), &ctx, later)
            .unwrap();
        assert!(
            String::from_utf8(r)
                .unwrap()
                .contains("2025-11-21T17:00:00Z")
        );
        // Next day: accepted again; last_connected from today is not a new unique user.
        let day2 = day1 + Duration::from_secs(24 * 3600);
        let r = api
            .handle(
                "psiphon-connected",
                connected(Some("2025-11-22T01:00:00Z")).as_bytes(),
                &ctx,
                day2,
            )
            .unwrap();
        assert!(
            String::from_utf8(r)
                .unwrap()
                .contains("2025-11-22T17:00:00Z")
        );
        let text = std::fs::read_to_string(log_path).unwrap();
        assert_eq!(text.matches("\"unique_user\"").count(), 1, "{text}");
        assert_eq!(
            api.handshake().unwrap().log_fields.get("last_connected"),
            Some(&Value::from("2025-11-22T01:00:00Z"))
        );
        // Status needs statusData.
        assert!(
            api.handle("psiphon-status", base().to_json().as_bytes(), &ctx, day2)
                .is_none()
        );
        assert_eq!(api.status_requests(), 0);
    }

    #[test]
    fn handshake_lists_the_discovered_server_then_the_own_entry() {
        use crate::discovery::{Discovery, DiscoveryServer, Strategy};

        let env = Env::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_763_745_903);
        let servers = vec![DiscoveryServer {
            ip_address: "192.0.2.1".to_owned(),
            encoded_server_entry: "discovered".to_owned(),
            date_range: Some((UNIX_EPOCH, now + Duration::from_secs(1))),
        }];
        let discovery = Discovery::new(servers, Strategy::Consistent, "k", now);
        let own = BTreeMap::from([("b3duLXRhZw==".to_owned(), "own".to_owned())]);
        let client: std::net::IpAddr = "203.0.113.5".parse().unwrap();
        let ctx = |discovery, client_key| ApiContext {
            own_encoded_server_entries: &own,
            discovery,
            client_key,
            ..env.ctx()
        };
        let hs = base()
            .with_str("relay_protocol", "OSSH")
            .with_missing_server_entry_signature("b3duLXRhZw==")
            .to_json();
        let list = |ctx: &ApiContext<'_>, at| {
            let body = ApiState::default()
                .handle("psiphon-handshake", hs.as_bytes(), ctx, at)
                .unwrap();
            HandshakeResponse::from_json(&body)
                .unwrap()
                .encoded_server_list
        };
        let key = Some(discovery.client_key(client));
        assert_eq!(
            list(&ctx(Some(&discovery), key), now),
            ["discovered", "own"]
        );
        // Out of its date range: none discovered.
        let later = now + Duration::from_secs(1);
        assert_eq!(list(&ctx(Some(&discovery), key), later), ["own"]);
        // Disabled, or no key: none.
        assert_eq!(list(&ctx(None, key), now), ["own"]);
        assert_eq!(list(&ctx(Some(&discovery), None), now), ["own"]);
    }

    #[test]
    fn packed_requests_and_cbor_handshake_response() {
        let env = Env::new();
        let log_path = &env.log_path;
        let ctx = env.ctx();
        let now = UNIX_EPOCH + Duration::from_secs(1_763_745_903);
        let mut api = ApiState::default();

        // Malformed packed bodies are refused without touching the state.
        for bad in [
            &[0x00, 0x01][..],
            &[0x00, 0x01, 0xa1, 0x08],
            &[0x00, 0x01, 0x80],
        ] {
            assert!(api.handle("psiphon-handshake", bad, &ctx, now).is_none());
        }
        assert!(api.handshake().is_none());

        // A packed handshake asking for the v1 (CBOR) response.
        let hs = base()
            .with_str("relay_protocol", "OSSH")
            .with_padding(3, 5)
            .with_str("psiphon_api_response_version", "1")
            .to_packed()
            .unwrap();
        let body = api.handle("psiphon-handshake", &hs, &ctx, now).unwrap();
        let response = HandshakeResponse::from_cbor(&body).unwrap();
        assert_eq!(response.server_timestamp, "2025-11-21T17:25:03Z");
        assert_eq!(response.padding, "     ");
        assert_eq!(api.handshake().unwrap().sponsor_id, "0123456789ABCDEF");

        // Packed connected and status requests: JSON answers, as tunnel-core's.
        let connected = base().with_last_connected(None).to_packed().unwrap();
        let body = api
            .handle("psiphon-connected", &connected, &ctx, now)
            .unwrap();
        let r = ConnectedResponse::from_json(&body).unwrap();
        assert_eq!(r.connected_timestamp, "2025-11-21T17:00:00Z");
        let status = base()
            .with_status_data(api::StatusData::default().to_value())
            .to_packed()
            .unwrap();
        let body = api.handle("psiphon-status", &status, &ctx, now).unwrap();
        assert!(StatusResponse::from_json(&body).is_ok());
        assert_eq!(api.status_requests(), 1);

        // A JSON handshake without the version gets JSON.
        let mut json_api = ApiState::default();
        let hs = base().with_str("relay_protocol", "OSSH").to_json();
        let body = json_api
            .handle("psiphon-handshake", hs.as_bytes(), &ctx, now)
            .unwrap();
        assert!(HandshakeResponse::from_json(&body).is_ok());
        // A packed handshake with invalid parameters (no relay_protocol).
        let mut invalid = ApiState::default();
        let hs = base().to_packed().unwrap();
        assert!(
            invalid
                .handle("psiphon-handshake", &hs, &ctx, now)
                .is_none()
        );
        assert!(
            invalid
                .handle("psiphon-status", &status, &ctx, now)
                .is_none()
        );
        assert!(
            invalid
                .handle("no-such-request", &status, &ctx, now)
                .is_none()
        );
        assert_eq!(invalid.rejected_requests(), 3);

        // Each refusal is one privacy-safe event: name and category, nothing else sent.
        let text = std::fs::read_to_string(log_path).unwrap();
        let rejected: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["event_name"] == "api_request_rejected")
            .collect();
        let summary: Vec<(String, String)> = rejected
            .iter()
            .map(|v| {
                (
                    v["request_name"].as_str().unwrap().to_owned(),
                    v["reason"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let pairs = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            summary,
            [
                pairs("psiphon-handshake", "malformed_packed_body"),
                pairs("psiphon-handshake", "malformed_packed_body"),
                pairs("psiphon-handshake", "malformed_packed_body"),
                pairs("psiphon-handshake", "invalid_params"),
                pairs("psiphon-status", "handshake_required"),
                pairs("other", "unknown_request"),
            ]
        );
        for v in &rejected {
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            for k in keys {
                assert!(
                    [
                        "event_name",
                        "request_name",
                        "reason",
                        "encoding",
                        "host_id",
                        "timestamp"
                    ]
                    .contains(&k),
                    "{k}"
                );
            }
        }
    }

    #[test]
    fn host_bytes_accepted_only_with_the_handshake_regexes() {
        let env = Env::new();
        let db = |regex: &str| {
            Database::parse(
                &format!(
                    r#"{{"sponsors": {{"0123456789ABCDEF": {{"id": "0123456789ABCDEF",
                    "https_request_regexes": [{{"regex": "{regex}", "replace": "$1"}}]}}}}}}"#
                ),
                "db",
            )
            .unwrap()
        };
        let with_regexes = db("^(.*)$");
        let ctx = |psinet| env.ctx_with(psinet);
        let status = |hosts: Value| {
            base()
                .with_status_data(serde_json::json!({ "host_bytes": hosts }))
                .to_json()
        };
        let hs = base()
            .with_str("relay_protocol", "OSSH")
            .with_str("device_region", "CA")
            .to_json();
        let mut api = ApiState::default();
        api.handle(
            "psiphon-handshake",
            hs.as_bytes(),
            &ctx(&with_regexes),
            UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(api.handshake().unwrap().device_region, "CA");
        let hosts = serde_json::json!({
            "example.test": 100,
            "(OTHER)": 7.9,
            "negative.test": -5,
            "https://example.test/path": 1,
            "example.test/path?q=1": 1,
            "192.0.2.1": 1,
        });
        api.handle(
            "psiphon-status",
            status(hosts).as_bytes(),
            &ctx(&with_regexes),
            UNIX_EPOCH,
        )
        .unwrap();
        let mut got = api.take_host_bytes();
        got.sort();
        assert_eq!(
            got,
            [("(OTHER)".to_owned(), 7), ("example.test".to_owned(), 100)]
        );
        assert!(api.take_host_bytes().is_empty());
        // Not numbers: the request is refused.
        let bad = status(serde_json::json!({"a.test": "1"}));
        assert!(
            api.handle(
                "psiphon-status",
                bad.as_bytes(),
                &ctx(&with_regexes),
                UNIX_EPOCH
            )
            .is_none()
        );
        // psinet's regexes changed since the handshake: dropped (tunnel-core's checksum rule).
        let changed = db("^www[.](.*)$");
        let ok = status(serde_json::json!({"example.test": 1}));
        api.handle("psiphon-status", ok.as_bytes(), &ctx(&changed), UNIX_EPOCH)
            .unwrap();
        assert!(api.take_host_bytes().is_empty());
        // A sponsor without regexes: dropped.
        let none = Database::default();
        let mut plain = ApiState::default();
        plain
            .handle("psiphon-handshake", hs.as_bytes(), &ctx(&none), UNIX_EPOCH)
            .unwrap();
        plain
            .handle("psiphon-status", ok.as_bytes(), &ctx(&none), UNIX_EPOCH)
            .unwrap();
        assert!(plain.take_host_bytes().is_empty());
    }

    #[test]
    fn rejection_events_are_capped() {
        let env = Env::new();
        let log_path = &env.log_path;
        let ctx = env.ctx();
        let mut api = ApiState::default();
        for _ in 0..100 {
            assert!(
                api.handle("psiphon-status", b"{}", &ctx, UNIX_EPOCH)
                    .is_none()
            );
        }
        assert_eq!(api.rejected_requests(), 100);
        let text = std::fs::read_to_string(log_path).unwrap();
        assert_eq!(
            text.matches("api_request_rejected").count(),
            usize::try_from(MAX_REJECTION_EVENTS).unwrap()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_request_body_is_answered_without_panicking(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            packed in proptest::prelude::any::<bool>(),
            name in proptest::sample::select(vec![
                "psiphon-handshake",
                "psiphon-connected",
                "psiphon-status",
                "psiphon-client-verification",
            ]),
        ) {
            let env = Env::new();
            let ctx = env.ctx();
            let body = if packed {
                [vec![0x00, 0x01], payload].concat()
            } else {
                payload
            };
            let mut api = ApiState::default();
            let hs = base().with_str("relay_protocol", "OSSH").to_packed().unwrap();
            if name != "psiphon-handshake" {
                api.handle("psiphon-handshake", &hs, &ctx, UNIX_EPOCH).unwrap();
            }
            let _ = api.handle(name, &body, &ctx, UNIX_EPOCH);
        }
    }
}
