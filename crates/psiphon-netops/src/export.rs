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
