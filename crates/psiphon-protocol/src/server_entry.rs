//! Server entries: the hex-encoded JSON records that describe a Psiphon server.

mod fields;
mod list;
mod protocols;
mod signature;

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::gojson;

pub use list::{ListLineError, MAX_LIST_LINE_BYTES, ServerEntryList, decode_server_entry_list};
pub(crate) use signature::go_base64_decode;
pub use signature::{
    SIGNATURE_KEY_ID_LEN, ServerEntrySigningKey, diagnostic_id, generate_server_entry_tag,
    verify_signed_message,
};

/// Local field: where the client got the entry (`EMBEDDED`, `REMOTE`, `DISCOVERY`, ...).
pub const FIELD_LOCAL_SOURCE: &str = "localSource";
/// Local field: when the client got the entry (RFC 3339).
pub const FIELD_LOCAL_TIMESTAMP: &str = "localTimestamp";
/// Local field: `tag` was derived by the client, not set by the network.
pub const FIELD_IS_LOCAL_DERIVED_TAG: &str = "isLocalDerivedTag";
/// The signature field.
pub const FIELD_SIGNATURE: &str = "signature";
/// The tag field.
pub const FIELD_TAG: &str = "tag";

/// Dial port of `FRONTED-MEEK-OSSH` and `FRONTED-MEEK-QUIC-OSSH` (the CDN's HTTPS port).
pub const FRONTED_MEEK_HTTPS_PORT: u16 = 443;
/// Dial port of `FRONTED-MEEK-HTTP-OSSH`.
pub const FRONTED_MEEK_HTTP_PORT: u16 = 80;

/// One server entry.
///
/// It keeps the whole JSON object as decoded, unknown fields and their order included, so
/// that re-encoding and signature verification see exactly what the network sent. Known
/// fields (section 4.2) are type-checked when the entry is built and read through typed
/// accessors that match key names case-insensitively, as Go does (see [`ServerEntry::get`]).
/// The fields that tunnel-core reads by exact key (`ipAddress`, `tag`, `signature`, the
/// local fields) are read here by exact key too.
/// Empty strings, zero ports and `null` read as absent, as with Go's zero values.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    fields: Map<String, Value>,
    ip: IpAddr,
}

impl ServerEntry {
    /// Builds an entry from a JSON object, checking that `ipAddress` (exactly so spelt, as
    /// tunnel-core checks it) parses and that known fields have the right JSON types.
    pub fn from_fields(fields: Map<String, Value>) -> Result<ServerEntry> {
        fields::check_types(&fields)?;
        // Exact key, as tunnel-core's validation reads it (the datastore key).
        let ip_text = fields
            .get("ipAddress")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ip = ip_text
            .parse::<IpAddr>()
            .map_err(|_| Error::InvalidIpAddress(ip_text.to_owned()))?;
        Ok(ServerEntry { fields, ip })
    }

    /// Parses the JSON part of an entry, with Go's decoding rules (see [`gojson`]).
    pub fn from_json(json: &[u8]) -> Result<ServerEntry> {
        match gojson::from_slice(json).map_err(Error::json("server entry"))? {
            Value::Object(fields) => ServerEntry::from_fields(fields),
            _ => Err(Error::JsonShape {
                what: "server entry",
                reason: "not a JSON object".to_owned(),
            }),
        }
    }

    /// Decodes an encoded entry: hex (either case) of
    /// `"<ip> <webServerPort> <webServerSecret> <webServerCertificate> <JSON>"`. The four
    /// legacy prefix fields are skipped, only the JSON is read.
    pub fn decode(encoded: &str) -> Result<ServerEntry> {
        let bytes = hex::decode(encoded.trim_end_matches('\r'))
            .map_err(|source| Error::EntryHex { source })?;
        let mut parts = bytes.splitn(5, |&b| b == b' ');
        let json = parts.nth(4).ok_or(Error::EntryPrefix)?;
        ServerEntry::from_json(json)
    }

    /// Encodes the entry with its fields in their stored order (as decoded, or as inserted),
    /// the way Go encodes its `ServerEntry` struct (`psiphond generate`).
    pub fn encode(&self) -> String {
        self.encode_with(gojson::KeyOrder::AsStored)
    }

    /// Encodes the entry with its fields sorted, the way Go encodes a `ServerEntryFields` map
    /// (what clients store and exchange).
    pub fn encode_sorted(&self) -> String {
        self.encode_with(gojson::KeyOrder::Sorted)
    }

    fn encode_with(&self, order: gojson::KeyOrder) -> String {
        let mut text = String::new();
        match self.web_server_certificate() {
            Some(certificate) => {
                for part in [
                    self.ip_address_str(),
                    self.web_server_port().unwrap_or_default(),
                    self.web_server_secret().unwrap_or_default(),
                    certificate,
                ] {
                    text.push_str(part);
                    text.push(' ');
                }
            }
            None => text.push_str("0 0 0 0 "),
        }
        gojson::write_value(&mut text, &Value::Object(self.fields.clone()), order);
        hex::encode(text)
    }

    /// The JSON object, as decoded.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Gives the JSON object back.
    pub fn into_fields(self) -> Map<String, Value> {
        self.fields
    }

    /// Any field by name, matched case-insensitively as Go matches struct fields (when
    /// several spellings are present, the last non-null one in sorted key order wins);
    /// `null` reads as absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        fields::lookup(&self.fields, name)
    }

    /// A string field; `None` when absent, not a string, or empty.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A string field read by its exact name, as tunnel-core reads `tag`, `signature` and
    /// the local fields; `None` when absent, not a string, or empty.
    fn exact_str(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A port field; `None` when absent or zero.
    pub fn get_port(&self, name: &str) -> Option<u16> {
        self.get(name)
            .and_then(fields::as_integer)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
    }

    /// A boolean field; absent reads as `false`.
    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    /// A string-array field; absent reads as empty (non-string items are skipped).
    pub fn get_str_array(&self, name: &str) -> Vec<&str> {
        self.get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Sets a field, replacing any field whose name differs only in case, and re-validates.
    /// On error the entry is unchanged.
    pub fn set(&mut self, name: &str, value: Value) -> Result<()> {
        let mut fields = self.fields.clone();
        let existing: Vec<String> = fields
            .keys()
            .filter(|k| k.eq_ignore_ascii_case(name) && k.as_str() != name)
            .cloned()
            .collect();
        for key in existing {
            fields.remove(&key);
        }
        fields.insert(name.to_owned(), value);
        *self = ServerEntry::from_fields(fields)?;
        Ok(())
    }

    /// Removes a field by exact name, returning its value. `ipAddress` cannot be removed.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        if name == "ipAddress" {
            return None;
        }
        self.fields.shift_remove(name)
    }

    /// The server's IP address (validated).
    pub fn ip_address(&self) -> IpAddr {
        self.ip
    }

    /// The `ipAddress` field exactly as written.
    pub fn ip_address_str(&self) -> &str {
        self.fields
            .get("ipAddress")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `sshPort`.
    pub fn ssh_port(&self) -> Option<u16> {
        self.get_port("sshPort")
    }
    /// `sshUsername`.
    pub fn ssh_username(&self) -> Option<&str> {
        self.get_str("sshUsername")
    }
    /// `sshPassword`.
    pub fn ssh_password(&self) -> Option<&str> {
        self.get_str("sshPassword")
    }
    /// `sshHostKey`: base64 of the SSH wire-format host public key.
    pub fn ssh_host_key(&self) -> Option<&str> {
        self.get_str("sshHostKey")
    }
    /// `sshObfuscatedPort` (OSSH).
    pub fn ssh_obfuscated_port(&self) -> Option<u16> {
        self.get_port("sshObfuscatedPort")
    }
    /// `sshObfuscatedQUICPort` (QUIC-OSSH).
    pub fn ssh_obfuscated_quic_port(&self) -> Option<u16> {
        self.get_port("sshObfuscatedQUICPort")
    }
    /// `sshObfuscatedKey`: the OSSH keyword.
    pub fn ssh_obfuscated_key(&self) -> Option<&str> {
        self.get_str("sshObfuscatedKey")
    }
    /// `sshShadowsocksPort`.
    pub fn ssh_shadowsocks_port(&self) -> Option<u16> {
        self.get_port("sshShadowsocksPort")
    }
    /// `tlsOSSHPort`.
    pub fn tls_ossh_port(&self) -> Option<u16> {
        self.get_port("tlsOSSHPort")
    }
    /// `meekServerPort` (unfronted meek, and TLS-OSSH when `tlsOSSHPort` is absent).
    pub fn meek_server_port(&self) -> Option<u16> {
        self.get_port("meekServerPort")
    }
    /// `meekObfuscatedKey`.
    pub fn meek_obfuscated_key(&self) -> Option<&str> {
        self.get_str("meekObfuscatedKey")
    }
    /// `meekCookieEncryptionPublicKey`.
    pub fn meek_cookie_encryption_public_key(&self) -> Option<&str> {
        self.get_str("meekCookieEncryptionPublicKey")
    }
    /// `meekFrontingHosts` (or the single legacy `meekFrontingHost` when the list is empty).
    pub fn meek_fronting_hosts(&self) -> Vec<&str> {
        let hosts = self.get_str_array("meekFrontingHosts");
        if hosts.is_empty() {
            self.get_str("meekFrontingHost").into_iter().collect()
        } else {
            hosts
        }
    }
    /// `meekFrontingAddresses`.
    pub fn meek_fronting_addresses(&self) -> Vec<&str> {
        self.get_str_array("meekFrontingAddresses")
    }
    /// `capabilities`.
    pub fn capabilities(&self) -> Vec<&str> {
        self.get_str_array("capabilities")
    }
    /// `region` (ISO country code).
    pub fn region(&self) -> Option<&str> {
        self.get_str("region")
    }
    /// `configurationVersion`; absent or negative reads as 0, as in tunnel-core.
    pub fn configuration_version(&self) -> u64 {
        self.get("configurationVersion")
            .and_then(fields::as_integer)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    }
    /// `tag` as stored (explicit or locally derived).
    pub fn tag(&self) -> Option<&str> {
        self.exact_str(FIELD_TAG)
    }
    /// The explicit tag if present, otherwise the one derived from `ipAddress` and
    /// `webServerSecret` (see [`generate_server_entry_tag`]).
    pub fn effective_tag(&self) -> String {
        match self.tag() {
            Some(tag) => tag.to_owned(),
            None => generate_server_entry_tag(
                self.ip_address_str(),
                self.web_server_secret().unwrap_or_default(),
            ),
        }
    }
    /// The short, IP-free identifier for logs: the first 8 characters of the tag.
    pub fn diagnostic_id(&self) -> String {
        diagnostic_id(&self.effective_tag())
    }
    /// `webServerPort` (a string, legacy web API).
    pub fn web_server_port(&self) -> Option<&str> {
        self.get_str("webServerPort")
    }
    /// `webServerSecret` (legacy web API; still the tag derivation key).
    pub fn web_server_secret(&self) -> Option<&str> {
        self.get_str("webServerSecret")
    }
    /// `webServerCertificate` (legacy web API).
    pub fn web_server_certificate(&self) -> Option<&str> {
        self.get_str("webServerCertificate")
    }
    /// `providerID`.
    pub fn provider_id(&self) -> Option<&str> {
        self.get_str("providerID")
    }
    /// `frontingProviderID`.
    pub fn fronting_provider_id(&self) -> Option<&str> {
        self.get_str("frontingProviderID")
    }
    /// `signature`.
    pub fn signature(&self) -> Option<&str> {
        self.exact_str(FIELD_SIGNATURE)
    }
    /// `localSource` (client-local).
    pub fn local_source(&self) -> Option<&str> {
        self.exact_str(FIELD_LOCAL_SOURCE)
    }
    /// `localTimestamp` (client-local).
    pub fn local_timestamp(&self) -> Option<&str> {
        self.exact_str(FIELD_LOCAL_TIMESTAMP)
    }
    /// `isLocalDerivedTag` (client-local).
    pub fn is_local_derived_tag(&self) -> bool {
        self.fields
            .get(FIELD_IS_LOCAL_DERIVED_TAG)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Records where the entry came from (overwrites, as tunnel-core does).
    pub fn set_local_source(&mut self, source: &str) {
        self.fields.insert(
            FIELD_LOCAL_SOURCE.to_owned(),
            Value::String(source.to_owned()),
        );
    }

    /// Records when the entry was obtained (RFC 3339; overwrites).
    pub fn set_local_timestamp(&mut self, timestamp: &str) {
        self.fields.insert(
            FIELD_LOCAL_TIMESTAMP.to_owned(),
            Value::String(timestamp.to_owned()),
        );
    }

    /// Sets a locally derived tag (and `isLocalDerivedTag`) unless the entry already has an
    /// explicit tag, as tunnel-core's `SetTag`. Returns whether the tag was set.
    pub fn set_derived_tag(&mut self, tag: &str) -> bool {
        let explicit = self
            .fields
            .get(FIELD_TAG)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty());
        if explicit {
            let derived = self.fields.get(FIELD_IS_LOCAL_DERIVED_TAG);
            // Only a tag marked as derived (true) may be replaced.
            if derived.and_then(Value::as_bool) != Some(true) {
                return false;
            }
        }
        self.fields
            .insert(FIELD_TAG.to_owned(), Value::String(tag.to_owned()));
        self.fields
            .insert(FIELD_IS_LOCAL_DERIVED_TAG.to_owned(), Value::Bool(true));
        true
    }

    /// Sets the derived tag computed from this entry's `ipAddress` and `webServerSecret`
    /// (when there is no explicit tag). Returns whether the tag was set.
    pub fn set_derived_tag_from_secret(&mut self) -> bool {
        let tag = generate_server_entry_tag(
            self.ip_address_str(),
            self.web_server_secret().unwrap_or_default(),
        );
        self.set_derived_tag(&tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> ServerEntry {
        match v {
            Value::Object(m) => ServerEntry::from_fields(m).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn validation() {
        let bad = |v: Value| match v {
            Value::Object(m) => ServerEntry::from_fields(m).unwrap_err(),
            _ => unreachable!(),
        };
        assert!(matches!(bad(json!({})), Error::InvalidIpAddress(_)));
        assert!(matches!(
            bad(json!({"ipAddress": "1.2.3"})),
            Error::InvalidIpAddress(_)
        ));
        assert!(matches!(
            bad(json!({"ipAddress": 1})),
            Error::InvalidEntryField { .. }
        ));
        assert!(matches!(
            bad(json!({"IPADDRESS": "1.2.3.4"})),
            Error::InvalidIpAddress(_)
        ));
        let e = bad(json!({"ipAddress": "1.2.3.4", "SSHPORT": "22"}));
        assert!(matches!(e, Error::InvalidEntryField { ref field, .. } if field == "SSHPORT"));
        assert!(matches!(
            bad(json!({"ipAddress": "1.2.3.4", "sshPort": 70000})),
            Error::InvalidEntryField { .. }
        ));
        assert!(matches!(
            bad(json!({"ipAddress": "1.2.3.4", "capabilities": "OSSH"})),
            Error::InvalidEntryField { .. }
        ));
        assert!(matches!(
            bad(json!({"ipAddress": "1.2.3.4", "configurationVersion": 1.5})),
            Error::InvalidEntryField { .. }
        ));
        assert!(matches!(
            bad(json!({"ipAddress": "1.2.3.4", "sshPort": 1e21})),
            Error::InvalidEntryField { .. }
        ));
        let e =
            entry(json!({"ipAddress": "1.2.3.4", "configurationVersion": 3.0, "sshPort": 2.2e1}));
        assert_eq!((e.configuration_version(), e.ssh_port()), (3, Some(22)));
        assert_eq!(
            entry(json!({"ipAddress": "2001:db8::1", "sshPort": null})).ssh_port(),
            None
        );
    }

    #[test]
    fn case_insensitive_accessors() {
        let e = entry(json!({
            "ipAddress": "192.0.2.1", "SshShadowsocksPort": 8388, "TlsOSSHPort": 443,
            "sshport": 2, "sshPort": 22, "SSHOBFUSCATEDPORT": 1, "SshObfuscatedPort": 2,
            "sshObfuscatedPort": null, "meekServerPort": 8080.0, "x": 1
        }));
        assert_eq!(e.ssh_shadowsocks_port(), Some(8388));
        assert_eq!(e.tls_ossh_port(), Some(443));
        // Go: keys assigned in sorted order ("sshPort" < "sshport"), nulls assign nothing.
        assert_eq!(e.ssh_port(), Some(2));
        assert_eq!(e.ssh_obfuscated_port(), Some(2));
        assert_eq!(e.meek_server_port(), Some(8080));
        assert_eq!(e.get("X"), Some(&json!(1)));
    }

    #[test]
    fn derived_tag_rules() {
        let mut e = entry(json!({"ipAddress": "192.0.2.1", "tag": "explicit"}));
        assert!(!e.set_derived_tag("derived"));
        assert_eq!(e.tag(), Some("explicit"));
        let mut e = entry(json!({"ipAddress": "192.0.2.1"}));
        assert!(e.set_derived_tag("one"));
        assert!(e.set_derived_tag("two"));
        assert_eq!(e.tag(), Some("two"));
        assert!(e.is_local_derived_tag());
    }

    #[test]
    fn decode_errors() {
        assert!(matches!(
            ServerEntry::decode("zz"),
            Err(Error::EntryHex { .. })
        ));
        assert!(matches!(
            ServerEntry::decode(&hex::encode("0 0 0 {}")),
            Err(Error::EntryPrefix)
        ));
        assert!(matches!(
            ServerEntry::decode(&hex::encode("0 0 0 0 [1]")),
            Err(Error::JsonShape { .. })
        ));
        assert!(matches!(
            ServerEntry::decode(&hex::encode("0 0 0 0 {")),
            Err(Error::Json { .. })
        ));
        let upper = hex::encode_upper("0 0 0 0 {\"ipAddress\":\"10.0.0.1\"}");
        assert_eq!(
            ServerEntry::decode(&upper).unwrap().ip_address_str(),
            "10.0.0.1"
        );
    }
}
