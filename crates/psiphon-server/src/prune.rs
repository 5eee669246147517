//! Server entry pruning in `psiphon-status`: which of the tags a client reports the network
//! no longer has (`invalid_server_entry_tags`, `shared/reference/psiphon-wire.md` 3.6).
//!
//! As tunnel-core: a tag from `check_server_entry_tags` or from a `failed_tunnel_stats`
//! record is invalid when psinet's `valid_server_entry_tags` does not hold it (never while that
//! map is empty or the file is older than 48 hours, see
//! [`Database::is_valid_server_entry_tag`]); a failed tunnel that reports
//! `dial_port_number` `"0"` marks its tag invalid too (an entry missing that protocol's port).
//! Tags, not addresses, so a client cannot probe which addresses are servers.

use std::collections::HashSet;
use std::time::SystemTime;

use psiphon_protocol::ApiParams;
use psiphon_protocol::api::{
    is_float_string, is_int_string, is_iso8601_date, is_last_connected, validate_base_params,
};
use serde_json::{Map, Value};

use crate::psinet::Database;

/// Optional integer-string fields of a failed tunnel record.
const INT_FIELDS: &[&str] = &[
    "liveness_test_upstream_bytes",
    "liveness_test_sent_upstream_bytes",
    "liveness_test_downstream_bytes",
    "liveness_test_received_downstream_bytes",
    "bytes_up",
    "bytes_down",
    "dial_port_number",
];

fn str_field<'a>(record: &'a Map<String, Value>, key: &str) -> Option<Option<&'a str>> {
    match record.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// Whether a failed tunnel record is well formed. tunnel-core drops a malformed record (it
/// does not fail the request, or clients would resend it forever). Checked here: the base
/// parameters, `session_id`, `last_connected`, `client_failed_timestamp`, `tunnel_error`, the
/// optional tag, counters and `record_probability`; the many dial parameters are not.
fn well_formed(record: &Map<String, Value>) -> bool {
    let required = |key: &str, check: fn(&str) -> bool| matches!(str_field(record, key), Some(Some(v)) if check(v));
    let optional = |key: &str, check: fn(&str) -> bool| match str_field(record, key) {
        Some(None) => true,
        Some(Some(v)) => check(v),
        None => false,
    };
    let params = ApiParams::from_json(Value::Object(record.clone()).to_string().as_bytes());
    params.is_ok_and(|p| validate_base_params(&p).is_ok())
        && required("session_id", |v| v.bytes().all(|b| b.is_ascii_hexdigit()))
        && required("last_connected", is_last_connected)
        && required("client_failed_timestamp", is_iso8601_date)
        && required("tunnel_error", |_| true)
        && optional("server_entry_tag", |_| true)
        && optional("record_probability", is_float_string)
        && INT_FIELDS.iter().all(|key| optional(key, is_int_string))
}

/// The invalid tags of a `statusData` object, each once, in the order first reported.
/// `None` (the request fails, as in tunnel-core) when `failed_tunnel_stats` is not a list of
/// objects or `check_server_entry_tags` not a list of strings.
pub(crate) fn invalid_server_entry_tags(
    status_data: &Map<String, Value>,
    psinet: &Database,
    now: SystemTime,
) -> Option<Vec<String>> {
    let mut invalid = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |tag: &str| {
        if seen.insert(tag.to_owned()) {
            invalid.push(tag.to_owned());
        }
    };
    match status_data.get("failed_tunnel_stats") {
        None | Some(Value::Null) => {}
        Some(Value::Array(records)) => {
            for record in records {
                let Value::Object(record) = record else {
                    return None;
                };
                if !well_formed(record) {
                    continue;
                }
                let Some(Some(tag)) = str_field(record, "server_entry_tag") else {
                    continue;
                };
                let port_zero = matches!(
                    str_field(record, "dial_port_number"),
                    Some(Some(p)) if p.parse::<i64>() == Ok(0)
                );
                if !psinet.is_valid_server_entry_tag(tag, now) || port_zero {
                    add(tag);
                }
            }
        }
        Some(_) => return None,
    }
    match status_data.get("check_server_entry_tags") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) => {
            let tags: Vec<&str> = tags.iter().map(Value::as_str).collect::<Option<_>>()?;
            for tag in tags {
                if !psinet.is_valid_server_entry_tag(tag, now) {
                    add(tag);
                }
            }
        }
        Some(_) => return None,
    }
    Some(invalid)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn failed(tag: &str, port: &str) -> Value {
        json!({
            "server_entry_tag": tag,
            "session_id": "00112233445566778899aabbccddeeff",
            "propagation_channel_id": "ABCDEF",
            "sponsor_id": "0123456789ABCDEF",
            "client_version": "5",
            "client_platform": "Android_13",
            "last_connected": "None",
            "client_failed_timestamp": "2026-11-21T10:00:00Z",
            "tunnel_error": "timeout",
            "dial_port_number": port
        })
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tags_not_in_a_fresh_psinet_are_invalid() {
        let now = SystemTime::now();
        let mut db = Database::parse(
            r#"{"valid_server_entry_tags": {"known": true, "other": true}}"#,
            "psinet.json",
        )
        .unwrap();
        db.file_mod_time = Some(now);
        let status = data(json!({
            "failed_tunnel_stats": [
                failed("gone", "443"),
                failed("known", "443"),
                failed("other", "0"),
                // malformed (no session_id): ignored
                {"server_entry_tag": "bad-record"}
            ],
            "check_server_entry_tags": ["known", "missing", "gone"]
        }));
        assert_eq!(
            invalid_server_entry_tags(&status, &db, now).unwrap(),
            ["gone", "other", "missing"]
        );
        // Stale psinet: only the port rule.
        let later = now + crate::psinet::MAX_DATABASE_AGE_FOR_SERVER_ENTRY_VALIDITY * 2;
        assert_eq!(
            invalid_server_entry_tags(&status, &db, later).unwrap(),
            ["other"]
        );
        // Empty map: the same.
        let empty = Database {
            file_mod_time: Some(now),
            ..Database::default()
        };
        assert_eq!(
            invalid_server_entry_tags(&status, &empty, now).unwrap(),
            ["other"]
        );
        // Nothing reported: nothing invalid.
        assert!(
            invalid_server_entry_tags(&Map::new(), &db, now)
                .unwrap()
                .is_empty()
        );
        // Wrong shapes fail the request.
        for bad in [
            json!({"check_server_entry_tags": "known"}),
            json!({"check_server_entry_tags": [1]}),
            json!({"failed_tunnel_stats": ["x"]}),
            json!({"failed_tunnel_stats": {}}),
        ] {
            assert_eq!(invalid_server_entry_tags(&data(bad), &db, now), None);
        }
    }
}
