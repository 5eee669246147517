//! The psinet database (`PsinetDatabaseFilename`), tunnel-core's `psinet.Database` JSON:
//! sponsors with their home pages and host-bytes regexes, and client versions per platform.
//! Read at start; hot reload is not done yet.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::error::{Error, Result};

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
    /// Discovery servers (not used yet).
    #[serde(default, deserialize_with = "nullable")]
    pub discovery_servers: Vec<Value>,
}

impl Database {
    /// Parses the JSON; `file` names it in errors.
    ///
    /// # Errors
    /// [`Error::ConfigFile`].
    pub fn parse(text: &str, file: &str) -> Result<Database> {
        serde_json::from_str(text).map_err(|e| Error::ConfigFile {
            file: file.to_owned(),
            reason: format!("invalid psinet database: {e}"),
        })
    }

    /// Reads the file.
    ///
    /// # Errors
    /// [`Error::Read`] or as [`Database::parse`].
    pub fn read(path: &Path) -> Result<Database> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Database::parse(&text, &path.display().to_string())
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
}
