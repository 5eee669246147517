//! The SSH password: a JSON payload carrying the session ID, the server's SSH password, the
//! client's capabilities and its sponsor ID.

use aws_lc_rs::rand;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::gojson;
use crate::tunnel_protocol::CLIENT_CAPABILITY_SERVER_REQUESTS;

/// Length in bytes of a session ID (it travels as 32 hex digits).
pub const SESSION_ID_BYTES: usize = 16;
/// Length in hex digits of a sponsor ID.
pub const SPONSOR_ID_HEX_LEN: usize = 16;
/// Length in bytes of a server's SSH password (it travels as 64 hex digits).
pub const SSH_PASSWORD_BYTES: usize = 32;

/// A new session ID: lowercase hex of 16 random bytes. A client makes one per process and
/// reuses it across reconnects.
pub fn make_session_id() -> Result<String> {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    rand::fill(&mut bytes).map_err(|_| Error::Crypto("random generator failed"))?;
    Ok(hex::encode(bytes))
}

/// Whether `value` is all ASCII hex digits (either case; the empty string passes, as in
/// psiphond).
pub fn is_hex_digits(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `value` is a session ID: exactly 32 hex digits.
pub fn is_session_id(value: &str) -> bool {
    value.len() == 2 * SESSION_ID_BYTES && is_hex_digits(value)
}

/// Whether `value` is a sponsor ID: exactly 16 hex digits.
pub fn is_sponsor_id(value: &str) -> bool {
    value.len() == SPONSOR_ID_HEX_LEN && is_hex_digits(value)
}

/// The SSH password the client sends (tunnel-core's `SSHPasswordPayload`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshPasswordPayload {
    /// 32 hex digits, see [`make_session_id`].
    pub session_id: String,
    /// The server entry's `sshPassword`.
    pub ssh_password: String,
    /// E.g. [`CLIENT_CAPABILITY_SERVER_REQUESTS`].
    pub client_capabilities: Vec<String>,
    /// 16 hex digits, or empty.
    pub sponsor_id: String,
}

impl SshPasswordPayload {
    /// The password string: compact JSON with fields `SessionId`, `SshPassword`,
    /// `ClientCapabilities`, `SponsorId` in that order, empty ones left out.
    pub fn to_json(&self) -> String {
        let mut map = Map::new();
        let mut put = |name: &str, value: &str| {
            if !value.is_empty() {
                map.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        };
        put("SessionId", &self.session_id);
        put("SshPassword", &self.ssh_password);
        if !self.client_capabilities.is_empty() {
            map.insert(
                "ClientCapabilities".to_owned(),
                Value::Array(
                    self.client_capabilities
                        .iter()
                        .cloned()
                        .map(Value::String)
                        .collect(),
                ),
            );
        }
        if !self.sponsor_id.is_empty() {
            map.insert(
                "SponsorId".to_owned(),
                Value::String(self.sponsor_id.clone()),
            );
        }
        gojson::to_ordered_string(&Value::Object(map))
    }

    /// Reads a password on the server side, as psiphond does: the JSON payload (field names
    /// matched case-insensitively, unknown fields ignored), or else the legacy form of
    /// exactly 32 hex session-ID digits followed by the 64-digit SSH password. Then checks
    /// that the session ID is 32 hex digits and the sponsor ID, if any, 16 hex digits.
    ///
    /// The SSH password itself is not checked here; compare it in constant time.
    pub fn parse(password: &[u8]) -> Result<SshPasswordPayload> {
        let payload = match parse_json(password) {
            Some(payload) => payload,
            None if password.len() == 2 * SESSION_ID_BYTES + 2 * SSH_PASSWORD_BYTES => {
                let (session_id, ssh_password) = password.split_at(2 * SESSION_ID_BYTES);
                SshPasswordPayload {
                    session_id: String::from_utf8_lossy(session_id).into_owned(),
                    ssh_password: String::from_utf8_lossy(ssh_password).into_owned(),
                    ..SshPasswordPayload::default()
                }
            }
            None => return Err(Error::InvalidPasswordPayload),
        };
        if !is_session_id(&payload.session_id) {
            return Err(Error::InvalidSessionId);
        }
        if !payload.sponsor_id.is_empty() && !is_sponsor_id(&payload.sponsor_id) {
            return Err(Error::InvalidSponsorId);
        }
        Ok(payload)
    }

    /// Whether the client accepts server-to-client requests (`psiphon-osl`, `psiphon-alert`).
    pub fn supports_server_requests(&self) -> bool {
        self.client_capabilities
            .iter()
            .any(|c| c == CLIENT_CAPABILITY_SERVER_REQUESTS)
    }
}

/// The JSON form, or `None` where Go's `json.Unmarshal` into the struct would fail.
fn parse_json(password: &[u8]) -> Option<SshPasswordPayload> {
    let Value::Object(map) = gojson::from_slice(password).ok()? else {
        return None;
    };
    let mut payload = SshPasswordPayload::default();
    for (key, value) in &map {
        let field = [
            "SessionId",
            "SshPassword",
            "ClientCapabilities",
            "SponsorId",
        ]
        .into_iter()
        .find(|name| name.eq_ignore_ascii_case(key));
        let Some(field) = field else { continue };
        if value.is_null() {
            continue;
        }
        if field == "ClientCapabilities" {
            let items = value.as_array()?;
            payload.client_capabilities = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => Some(String::new()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            continue;
        }
        let text = value.as_str()?.to_owned();
        match field {
            "SessionId" => payload.session_id = text,
            "SshPassword" => payload.ssh_password = text,
            _ => payload.sponsor_id = text,
        }
    }
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: &str = "0123456789abcdef0123456789abcdef";
    const PASSWORD: &str = "07ee4c9076e66b78fcd715316cdf0985c673699cebc3c097fabff94d7723a21e";

    #[test]
    fn session_ids() {
        let id = make_session_id().unwrap();
        assert!(is_session_id(&id));
        assert_ne!(id, make_session_id().unwrap());
        assert!(!is_session_id("0123"));
        assert!(!is_session_id(&"g".repeat(32)));
    }

    #[test]
    fn parse_forms() {
        let legacy = format!("{SESSION}{PASSWORD}");
        let p = SshPasswordPayload::parse(legacy.as_bytes()).unwrap();
        assert_eq!(
            (p.session_id.as_str(), p.ssh_password.as_str()),
            (SESSION, PASSWORD)
        );
        assert!(!p.supports_server_requests());

        let json = format!(
            r#"{{"sessionid":"{SESSION}","SSHPASSWORD":"{PASSWORD}","ClientCapabilities":["server-requests"],"x":1}}"#
        );
        let p = SshPasswordPayload::parse(json.as_bytes()).unwrap();
        assert_eq!(p.ssh_password, PASSWORD);
        assert!(p.supports_server_requests());

        assert!(matches!(
            SshPasswordPayload::parse(b"nope"),
            Err(Error::InvalidPasswordPayload)
        ));
        let bad_session = format!(r#"{{"SessionId":"xyz","SshPassword":"{PASSWORD}"}}"#);
        assert!(matches!(
            SshPasswordPayload::parse(bad_session.as_bytes()),
            Err(Error::InvalidSessionId)
        ));
        let bad_sponsor = format!(r#"{{"SessionId":"{SESSION}","SponsorId":"0123"}}"#);
        assert!(matches!(
            SshPasswordPayload::parse(bad_sponsor.as_bytes()),
            Err(Error::InvalidSponsorId)
        ));
        // A type error in the JSON falls back to the legacy form, which this isn't.
        let wrong_type = format!(r#"{{"SessionId":123,"SshPassword":"{PASSWORD}"}}"#);
        assert!(matches!(
            SshPasswordPayload::parse(wrong_type.as_bytes()),
            Err(Error::InvalidPasswordPayload)
        ));
    }
}
