//! The psinet database (`PsinetDatabaseFilename`), tunnel-core's `psinet.Database` JSON:
//! sponsors with their home pages and host-bytes regexes, client versions per platform, the
//! server entry tags known to the network and the servers to hand out by discovery.
//! psiphond reloads it when the file changes (see [`crate::reload`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

use psiphon_protocol::ServerEntry;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::discovery::DiscoveryServer;
use crate::error::{Error, Result};
use crate::time::parse_rfc3339;

/// tunnel-core's `MAX_DATABASE_AGE_FOR_SERVER_ENTRY_VALIDITY`: past this age the file's
/// `valid_server_entry_tags` is not trusted to prune clients' server entries.
pub const MAX_DATABASE_AGE_FOR_SERVER_ENTRY_VALIDITY: Duration = Duration::from_secs(48 * 3600);

/// Go's JSON decodes `null` as the zero value; serde's `default` does not cover `null`.
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A home page for a region.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HomePage {
    /// The region code, or `None`.
    #[serde(default, deserialize_with = "nullable")]
    pub region: String,
    /// The URL, with `XX` placeholders.
    #[serde(default, deserialize_with = "nullable")]
    pub url: String,
}

/// A host-bytes regex pair.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HttpsRequestRegex {
    /// Go `regexp` syntax.
    #[serde(default, deserialize_with = "nullable")]
    pub regex: String,
    /// The replacement.
    #[serde(default, deserialize_with = "nullable")]
    pub replace: String,
}

/// A sponsor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Sponsor {
    /// 16 hex digits.
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// Region (or `None`) to home pages.
    #[serde(default, deserialize_with = "nullable")]
    pub home_pages: HashMap<String, Vec<HomePage>>,
    /// Home pages for Android and iOS, when non-empty.
    #[serde(default, deserialize_with = "nullable")]
    pub mobile_home_pages: HashMap<String, Vec<HomePage>>,
    /// Alert reason to action URLs.
    #[serde(default, deserialize_with = "nullable")]
    pub alert_action_urls: HashMap<String, Vec<String>>,
    /// Regexes for host-bytes statistics.
    #[serde(default, deserialize_with = "nullable")]
    pub https_request_regexes: Vec<HttpsRequestRegex>,
}

/// A client version.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientVersion {
    /// Decimal integer string.
    #[serde(default, deserialize_with = "nullable")]
    pub version: String,
}

/// The database.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Database {
    /// Sponsor id to sponsor.
    #[serde(default, deserialize_with = "nullable")]
    pub sponsors: HashMap<String, Sponsor>,
    /// Normalised platform (`Android`, `Windows`, ...) to versions, ascending.
    #[serde(default, deserialize_with = "nullable")]
    pub client_versions: HashMap<String, Vec<ClientVersion>>,
    /// The sponsor used when the client's is unknown.
    #[serde(default, deserialize_with = "nullable")]
    pub default_sponsor_id: String,
    /// Alert reason to action URLs when the sponsor has none.
    #[serde(default, deserialize_with = "nullable")]
    pub default_alert_action_urls: HashMap<String, Vec<String>>,
    /// Server entry tags known to the network.
    #[serde(default, deserialize_with = "nullable")]
    pub valid_server_entry_tags: HashMap<String, bool>,
    /// `discovery_servers`: servers discovery may hand out, in list order.
    #[serde(default, deserialize_with = "nullable")]
    pub discovery_servers: Vec<DiscoveryServer>,
    /// When the file was last modified (`None`: not read from a file, which counts as stale
    /// for [`Database::is_valid_server_entry_tag`], as tunnel-core's zero time does).
    #[serde(skip)]
    pub file_mod_time: Option<SystemTime>,
}

/// `{"discovery_date_range": [t0, t1], "encoded_server_entry": "..."}`.
#[derive(Deserialize)]
struct RawDiscoveryServer {
    #[serde(default, deserialize_with = "nullable")]
    discovery_date_range: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    encoded_server_entry: String,
}

impl TryFrom<RawDiscoveryServer> for DiscoveryServer {
    type Error = String;

    fn try_from(raw: RawDiscoveryServer) -> std::result::Result<Self, String> {
        let times = raw
            .discovery_date_range
            .iter()
            .map(|t| {
                parse_rfc3339(t)
                    .ok_or_else(|| format!("discovery_date_range: {t:?} is not an RFC 3339 time"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let entry = ServerEntry::decode(&raw.encoded_server_entry)
            .map_err(|e| format!("encoded_server_entry: {e}"))?;
        let ip_address = entry.ip_address_str().to_owned();
        if ip_address.is_empty() {
            return Err(format!(
                "encoded_server_entry: server entry {} has no ipAddress",
                entry.diagnostic_id()
            ));
        }
        Ok(DiscoveryServer {
            ip_address,
            encoded_server_entry: raw.encoded_server_entry,
            date_range: match times.as_slice() {
                [start, end] => Some((*start, *end)),
                _ => None,
            },
        })
    }
}

impl<'de> Deserialize<'de> for DiscoveryServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawDiscoveryServer::deserialize(d)?;
        DiscoveryServer::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl Database {
    /// Parses the JSON; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::ConfigFile`] if the JSON does not match (bad time, undecodable entry);
    /// [`Error::ConfigValue`] naming `discovery_servers` when two discovery servers share an
    /// IP address (consistent hashing needs distinct ones).
    pub fn parse(text: &str, file: &str) -> Result<Database> {
        let db: Database = serde_json::from_str(text).map_err(|e| Error::ConfigFile {
            file: file.to_owned(),
            reason: format!("invalid psinet database: {e}"),
        })?;
        let mut seen = HashMap::new();
        for (i, server) in db.discovery_servers.iter().enumerate() {
            if let Some(first) = seen.insert(server.ip_address.as_str(), i) {
                return Err(Error::value(
                    file,
                    "discovery_servers",
                    format!("entries {first} and {i} share the same IP address"),
                ));
            }
        }
        Ok(db)
    }

    /// Reads the file; its modification time becomes [`Database::file_mod_time`].
    ///
    /// # Errors
    /// [`Error::Read`] or as [`Database::parse`].
    pub fn read(path: &Path) -> Result<Database> {
        let read_error = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(read_error)?;
        let mut db = Database::parse(&text, &path.display().to_string())?;
        db.file_mod_time = Some(modified);
        Ok(db)
    }

    /// Whether a server entry tag is valid, as tunnel-core decides: valid when
    /// `valid_server_entry_tags` is empty or the file is older than 48 hours at `now` (so a
    /// stale or broken psinet cannot make clients prune their server lists), else only when
    /// the map holds the tag with the value `true`.
    pub fn is_valid_server_entry_tag(&self, tag: &str, now: SystemTime) -> bool {
        let fresh = self
            .file_mod_time
            .is_some_and(|t| t + MAX_DATABASE_AGE_FOR_SERVER_ENTRY_VALIDITY >= now);
        if self.valid_server_entry_tags.is_empty() || !fresh {
            return true;
        }
        self.valid_server_entry_tags.get(tag) == Some(&true)
    }

    fn sponsor(&self, sponsor_id: &str) -> Option<&Sponsor> {
        self.sponsors
            .get(sponsor_id)
            .or_else(|| self.sponsors.get(&self.default_sponsor_id))
    }

    /// The sponsor's home pages for the client's region (else the `None` list), mobile pages
    /// for mobile platforms when the sponsor has any, with the `XX` placeholders filled in.
    pub fn homepages(
        &self,
        sponsor_id: &str,
        client_region: &str,
        client_asn: &str,
        device_region: &str,
        is_mobile: bool,
    ) -> Vec<String> {
        let Some(sponsor) = self.sponsor(sponsor_id) else {
            return Vec::new();
        };
        let pages = if is_mobile && !sponsor.mobile_home_pages.is_empty() {
            &sponsor.mobile_home_pages
        } else {
            &sponsor.home_pages
        };
        let list = pages
            .get(client_region)
            .or_else(|| pages.get("None"))
            .map(Vec::as_slice)
            .unwrap_or_default();
        list.iter()
            .map(|p| {
                p.url
                    .replace(
                        "client_region=XX",
                        &format!("client_region={client_region}"),
                    )
                    .replace("client_asn=XX", &format!("client_asn={client_asn}"))
                    .replace(
                        "device_region=XX",
                        &format!("device_region={device_region}"),
                    )
            })
            .collect()
    }

    /// The newest version for the (normalised) platform when it is newer than the client's.
    pub fn upgrade_client_version(&self, client_version: &str, platform: &str) -> Option<String> {
        let current: i64 = client_version.parse().ok()?;
        let newest = self.client_versions.get(platform)?.last()?;
        let newest_n: i64 = newest.version.parse().ok()?;
        (newest_n > current).then(|| newest.version.clone())
    }

    /// The sponsor's host-bytes regexes as `{"regex":..,"replace":..}` maps.
    pub fn https_request_regexes(&self, sponsor_id: &str) -> Vec<BTreeMap<String, String>> {
        self.sponsor(sponsor_id)
            .map(|s| {
                s.https_request_regexes
                    .iter()
                    .map(|r| {
                        BTreeMap::from([
                            ("regex".to_owned(), r.regex.clone()),
                            ("replace".to_owned(), r.replace.clone()),
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The empty database `psiphond generate` writes.
pub fn generated_database_json() -> Value {
    json!({
        "sponsors": {},
        "client_versions": {},
        "default_sponsor_id": "",
        "default_alert_action_urls": {},
        "valid_server_entry_tags": {},
        "discovery_servers": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = r#"{
      "sponsors": {
        "0123456789ABCDEF": {
          "id": "0123456789ABCDEF",
          "home_pages": {
            "None": [{"region": "None", "url": "https://example.org/?client_region=XX&device_region=XX"}],
            "CA": [{"region": "CA", "url": "https://example.ca/"}]
          },
          "mobile_home_pages": null,
          "https_request_regexes": [{"regex": "^(.*)$", "replace": "$1"}]
        }
      },
      "client_versions": {"Windows": [{"version": "100"}, {"version": "200"}]},
      "default_sponsor_id": "0123456789ABCDEF",
      "valid_server_entry_tags": null
    }"#;

    #[test]
    fn homepages_and_upgrades() {
        let db = Database::parse(DB, "db").unwrap();
        assert_eq!(
            db.homepages("0123456789ABCDEF", "None", "None", "DE", false),
            ["https://example.org/?client_region=None&device_region=DE"]
        );
        assert_eq!(
            db.homepages("0123456789ABCDEF", "CA", "None", "", false),
            ["https://example.ca/"]
        );
        // unknown sponsor: the default one
        assert_eq!(
            db.homepages("FFFFFFFFFFFFFFFF", "CA", "None", "", true)
                .len(),
            1
        );
        assert_eq!(
            db.upgrade_client_version("150", "Windows"),
            Some("200".to_owned())
        );
        assert_eq!(db.upgrade_client_version("200", "Windows"), None);
        assert_eq!(db.upgrade_client_version("1", "Android"), None);
        assert_eq!(db.https_request_regexes("0123456789ABCDEF").len(), 1);
        let empty = Database::parse(&generated_database_json().to_string(), "g").unwrap();
        assert!(
            empty
                .homepages("0123456789ABCDEF", "None", "None", "", false)
                .is_empty()
        );
    }

    fn entry(ip: &str) -> String {
        ServerEntry::from_json(format!(r#"{{"ipAddress":"{ip}","tag":"t-{ip}"}}"#).as_bytes())
            .unwrap()
            .encode()
    }

    #[test]
    fn discovery_servers_and_tags() {
        let text = json!({
            "valid_server_entry_tags": {"good": true, "off": false},
            "discovery_servers": [
                {"discovery_date_range": ["2026-01-01T00:00:00Z", "2036-01-01T00:00:00+01:00"],
                 "encoded_server_entry": entry("192.0.2.1")},
                {"discovery_date_range": ["2026-01-01T00:00:00Z"],
                 "encoded_server_entry": entry("192.0.2.2")}
            ]
        })
        .to_string();
        let mut db = Database::parse(&text, "psinet.json").unwrap();
        let servers = &db.discovery_servers;
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].ip_address, "192.0.2.1");
        assert_eq!(servers[0].encoded_server_entry, entry("192.0.2.1"));
        let (start, end) = servers[0].date_range.unwrap();
        assert_eq!(crate::time::rfc3339(start), "2026-01-01T00:00:00Z");
        assert_eq!(crate::time::rfc3339(end), "2035-12-31T23:00:00Z");
        // Not two times: never discoverable.
        assert_eq!(servers[1].date_range, None);

        // Tags: read from a file just now, the map decides.
        let now = SystemTime::now();
        db.file_mod_time = Some(now);
        assert!(db.is_valid_server_entry_tag("good", now));
        assert!(!db.is_valid_server_entry_tag("off", now));
        assert!(!db.is_valid_server_entry_tag("unknown", now));
        // Older than 48 h, or never read from a file: every tag is valid.
        let later = now + MAX_DATABASE_AGE_FOR_SERVER_ENTRY_VALIDITY + Duration::from_secs(1);
        assert!(db.is_valid_server_entry_tag("unknown", later));
        assert!(!db.is_valid_server_entry_tag(
            "unknown",
            now + MAX_DATABASE_AGE_FOR_SERVER_ENTRY_VALIDITY
        ));
        db.file_mod_time = None;
        assert!(db.is_valid_server_entry_tag("unknown", now));
        // An empty map: every tag is valid.
        let mut empty = Database::parse("{}", "x").unwrap();
        empty.file_mod_time = Some(now);
        assert!(empty.is_valid_server_entry_tag("unknown", now));
    }

    #[test]
    fn bad_discovery_servers_are_errors_naming_the_file() {
        let dup = json!({"discovery_servers": [
            {"discovery_date_range": [], "encoded_server_entry": entry("192.0.2.1")},
            {"discovery_date_range": [], "encoded_server_entry": entry("192.0.2.1")}
        ]})
        .to_string();
        let e = Database::parse(&dup, "/etc/psinet.json").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        let text = e.to_string();
        assert!(
            text.starts_with("/etc/psinet.json: discovery_servers:"),
            "{text}"
        );
        assert!(text.contains("same IP address"), "{text}");
        assert!(!text.contains("192.0.2.1"), "{text}");
        for bad in [
            json!({"discovery_servers": [{"discovery_date_range": ["yesterday", "2036-01-01T00:00:00Z"], "encoded_server_entry": entry("192.0.2.1")}]}),
            json!({"discovery_servers": [{"discovery_date_range": [], "encoded_server_entry": "zz"}]}),
            json!({"discovery_servers": {}}),
        ] {
            let e = Database::parse(&bad.to_string(), "/etc/psinet.json").unwrap_err();
            assert!(e.to_string().starts_with("/etc/psinet.json: "), "{e}");
        }
    }
}
