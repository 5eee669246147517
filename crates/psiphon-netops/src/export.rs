//! What leaves the database: the psinet JSON one psiphond reads, the embedded server list of a
//! client build, and the signed remote server list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::db::{Db, write_private};
use crate::error::{Error, Result, protocol};
use crate::servers::Server;
use crate::sponsors::HomePage;
use crate::time;

/// The file name psi_ops publishes remote server lists under (and clients download to).
pub const REMOTE_LIST_FILE: &str = "server_list_compressed";

/// A published remote server list.
#[derive(Debug, Clone)]
pub struct Published {
    /// The file written.
    pub path: PathBuf,
    /// The servers in it.
    pub servers: Vec<String>,
    /// Its size in bytes.
    pub bytes: usize,
}

fn home_pages_json(pages: &BTreeMap<String, Vec<HomePage>>) -> Value {
    let map: Map<String, Value> = pages
        .iter()
        .map(|(region, list)| {
            let list = list
                .iter()
                .map(|p| json!({"region": p.region, "url": p.url}))
                .collect();
            (region.clone(), Value::Array(list))
        })
        .collect();
    Value::Object(map)
}

impl Db {
    /// The psinet database (tunnel-core's `psinet.Database` JSON) for one server: every
    /// sponsor's id, home pages and regexes (names, branding and banners stay here), client
    /// versions, the default sponsor if one is set, the tags of all live servers, and the
    /// other live servers whose discovery range has not ended at `now`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`] for a retired server.
    pub fn export_psinet(&self, server_id: &str, now: i64) -> Result<Value> {
        let me = self.server(server_id)?;
        if me.retired.is_some() {
            return Err(Error::InvalidArgument {
                arg: "--server",
                value: server_id.to_owned(),
                reason: "the server is retired".to_owned(),
            });
        }
        let mut sponsors = Map::new();
        for s in self.sponsors()? {
            let regexes: Vec<Value> = s
                .https_request_regexes
                .iter()
                .map(|r| json!({"regex": r.regex, "replace": r.replace}))
                .collect();
            sponsors.insert(
                s.id.clone(),
                json!({
                    "id": s.id,
                    "home_pages": home_pages_json(&s.home_pages),
                    "mobile_home_pages": home_pages_json(&s.mobile_home_pages),
                    "alert_action_urls": {},
                    "https_request_regexes": regexes,
                }),
            );
        }
        let mut versions: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for v in self.client_versions()? {
            versions
                .entry(v.platform)
                .or_default()
                .push(json!({"version": v.version.to_string()}));
        }
        let live = self.servers(false)?;
        let tags: Map<String, Value> = live
            .iter()
            .map(|s| (s.tag.clone(), Value::Bool(true)))
            .collect();
        let discovery: Vec<Value> = live
            .iter()
            .filter(|s| s.id != me.id)
            .filter_map(|s| s.discovery.map(|d| (s, d)))
            .filter(|(_, (_, end))| *end > now)
            .map(|(s, (start, end))| {
                json!({
                    "discovery_date_range": [time::rfc3339(start), time::rfc3339(end)],
                    "encoded_server_entry": s.encoded_server_entry,
                })
            })
            .collect();
        let mut db = Map::new();
        db.insert("sponsors".to_owned(), Value::Object(sponsors));
        db.insert("client_versions".to_owned(), json!(versions));
        if let Some(id) = self.default_sponsor_id()? {
            db.insert("default_sponsor_id".to_owned(), json!(id));
        }
        db.insert("valid_server_entry_tags".to_owned(), Value::Object(tags));
        db.insert("discovery_servers".to_owned(), Value::Array(discovery));
        Ok(Value::Object(db))
    }

    /// The live servers in a channel's lists: its embedded servers and every permanent one.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown channel.
    pub fn list_servers(&self, channel: &str) -> Result<Vec<Server>> {
        let channel = self.channel(channel)?;
        self.query_servers(
            "WHERE s.retired IS NULL AND
                   ((s.propagation_channel_id = ?1 AND s.is_embedded) OR s.is_permanent)",
            [&channel.id],
        )
    }

    /// The embedded server list of a channel's client builds: signed encoded entries, one
    /// per line.
    ///
    /// # Errors
    /// As [`Db::list_servers`].
    pub fn embedded_list(&self, channel: &str) -> Result<String> {
        Ok(self
            .list_servers(channel)?
            .iter()
            .map(|s| format!("{}\n", s.encoded_server_entry))
            .collect())
    }

    /// Writes the channel's remote server list to `out_dir/server_list_compressed`: the
    /// entries joined by newlines, in a zlib authenticated package signed with the network's
    /// RSA key.
    ///
    /// # Errors
    /// As [`Db::list_servers`], [`Error::Io`], [`Error::Protocol`].
    pub fn publish_remote_list(&self, channel: &str, out_dir: &Path) -> Result<Published> {
        let servers = self.list_servers(channel)?;
        let data = servers
            .iter()
            .map(|s| s.encoded_server_entry.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let package = self
            .remote_list_signing_key()?
            .sign_package(&data)
            .map_err(protocol("signing the remote server list"))?;
        std::fs::create_dir_all(out_dir)
            .map_err(crate::error::io("creating directory", out_dir))?;
        let path = out_dir.join(REMOTE_LIST_FILE);
        write_private(&path, &package, true)?;
        Ok(Published {
            path,
            servers: servers.into_iter().map(|s| s.id).collect(),
            bytes: package.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servers::Placement;

    fn entry(ip: &str) -> String {
        psiphon_server::generate(&psiphon_server::GenerateOptions {
            ip_address: ip.to_owned(),
            protocols: vec![("OSSH".to_owned(), 443)],
            ..psiphon_server::GenerateOptions::default()
        })
        .unwrap()
        .encoded_server_entry
    }

    /// Which servers go where: embedded servers in their channel's lists, permanent ones in
    /// every channel's, discovery by range, retired nowhere.
    #[test]
    fn lists_and_exports_select_by_role() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::init(&dir.path().join("t.db"), 2048).unwrap();
        db.add_channel("a", None, &[]).unwrap();
        db.add_channel("b", None, &[]).unwrap();
        let now = time::parse("2026-11-21T12:00:00Z").unwrap();
        let day = time::days(1);
        let mut add = |id: &str, ip: &str, channel: &str, embedded, permanent, discovery| {
            let placement = Placement {
                id: Some(id.to_owned()),
                channel: channel.to_owned(),
                embedded,
                permanent,
                discovery,
                ..Placement::default()
            };
            db.import_server(&entry(ip), &placement).unwrap();
        };
        add("me", "192.0.2.1", "a", true, false, None);
        add("embedded-b", "192.0.2.2", "b", true, false, None);
        add("permanent-b", "192.0.2.3", "b", false, true, None);
        add(
            "discovery-now",
            "192.0.2.4",
            "a",
            false,
            false,
            Some((now - day, now + day)),
        );
        add(
            "discovery-soon",
            "192.0.2.5",
            "a",
            false,
            false,
            Some((now + day, now + 8 * day)),
        );
        add(
            "discovery-over",
            "192.0.2.6",
            "a",
            false,
            false,
            Some((now - 8 * day, now)),
        );
        add(
            "retired",
            "192.0.2.7",
            "a",
            true,
            true,
            Some((now - day, now + day)),
        );
        db.retire_server("retired").unwrap();

        let ids = |servers: Vec<Server>| servers.into_iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(db.list_servers("a").unwrap()), ["me", "permanent-b"]);
        assert_eq!(
            ids(db.list_servers("b").unwrap()),
            ["embedded-b", "permanent-b"]
        );
        assert_eq!(db.embedded_list("a").unwrap().lines().count(), 2);

        let psinet = db.export_psinet("me", now).unwrap();
        let discovery: Vec<String> = psinet["discovery_servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let e = psiphon_protocol::ServerEntry::decode(
                    d["encoded_server_entry"].as_str().unwrap(),
                )
                .unwrap();
                e.ip_address_str().to_owned()
            })
            .collect();
        // Ended ranges and retired servers are left out; future ranges are kept (psiphond
        // starts handing them out when their range begins).
        assert_eq!(discovery, ["192.0.2.4", "192.0.2.5"]);
        assert_eq!(
            psinet["discovery_servers"][1]["discovery_date_range"],
            json!(["2026-11-22T12:00:00Z", "2026-11-29T12:00:00Z"])
        );
        let tags = psinet["valid_server_entry_tags"].as_object().unwrap();
        assert_eq!(
            tags.len(),
            6,
            "every live server's tag, not the retired one's"
        );
        assert!(psinet.get("default_sponsor_id").is_none());
        assert!(matches!(
            db.export_psinet("retired", now),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(db.list_servers("c"), Err(Error::NotFound { .. })));

        // The published package opens with the network key and lists channel a's servers.
        let published = db
            .publish_remote_list("a", &dir.path().join("pub"))
            .unwrap();
        let package = std::fs::read(&published.path).unwrap();
        let key = db
            .public_keys()
            .unwrap()
            .remote_server_list_signature_public_key;
        let data = psiphon_protocol::auth_package::open_package(&package, &key).unwrap();
        assert_eq!(data, db.embedded_list("a").unwrap().trim_end());
        assert_eq!(published.servers, ["me", "permanent-b"]);
    }
}
