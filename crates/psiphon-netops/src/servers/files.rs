//! A server's psiphond files: made by `server new` (psiphond's own generator, then the host's
//! region, the network's signature, the server id as `HostID`), and written again from the
//! database by `server files`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use psiphon_protocol::ServerEntry;
use psiphon_server::GenerateOptions;
use serde_json::{Value, json};

use super::{Placement, Server};
use crate::db::{Db, unix_now, write_private};
use crate::error::{Error, Result, protocol};

/// What `server new` takes besides the [`Placement`].
#[derive(Debug, Clone)]
pub struct NewServer {
    /// The address in the entry and the one psiphond listens on.
    pub ip: IpAddr,
    /// Tunnel protocols and ports (`OSSH`, `SSH`).
    pub protocols: Vec<(String, u16)>,
    /// Where to write the psiphond files.
    pub out_dir: PathBuf,
    /// Where those files will be on the server (written into the config); `out_dir` if
    /// `None`.
    pub server_dir: Option<PathBuf>,
    /// psiphond's `LogFilename`; stdout if `None`.
    pub log_file: Option<PathBuf>,
    /// psiphond's `GeoIPDatabaseFilenames`: MaxMind City/Country and ISP/ASN databases, as
    /// paths on the server (none: every client region is "None").
    pub geoip_files: Vec<PathBuf>,
    /// Overwrite existing files in `out_dir`.
    pub force: bool,
}

/// The files `server new` wrote.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// `psiphond.config`.
    pub config: PathBuf,
    /// `psiphond-traffic-rules.config`.
    pub traffic_rules: PathBuf,
    /// `psinet.json` (this server's export).
    pub psinet: PathBuf,
    /// `server-entry.dat` (the signed entry).
    pub server_entry: PathBuf,
}

const CONFIG_FILE: &str = "psiphond.config";
const TRAFFIC_RULES_FILE: &str = "psiphond-traffic-rules.config";
const PSINET_FILE: &str = "psinet.json";
const SERVER_ENTRY_FILE: &str = "server-entry.dat";

/// Pretty JSON with a final newline, as psiphond's own generator writes its files.
pub(crate) fn pretty(v: &Value) -> Result<Vec<u8>> {
    let mut text = serde_json::to_vec_pretty(v).map_err(|e| Error::InvalidArgument {
        arg: "JSON",
        value: String::new(),
        reason: e.to_string(),
    })?;
    text.push(b'\n');
    Ok(text)
}

impl Db {
    /// Makes a new server: psiphond's files in `new.out_dir` (mode 0600), its entry with the
    /// host's region, signed with the network key, and its record.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], [`Error::NotFound`] (channel), [`Error::Duplicate`] (IP
    /// address or id), [`Error::FileExists`], [`Error::Generate`], [`Error::Io`].
    pub fn new_server(
        &mut self,
        new: &NewServer,
        placement: &Placement,
    ) -> Result<(Server, ServerFiles)> {
        let ip = new.ip.to_string();
        if new.ip.is_unspecified() || new.ip.is_multicast() {
            return Err(Error::InvalidArgument {
                arg: "--ip",
                value: ip,
                reason: "clients must be able to dial it".to_owned(),
            });
        }
        if new.protocols.is_empty() {
            return Err(Error::InvalidArgument {
                arg: "--protocol",
                value: String::new(),
                reason: "give at least one, e.g. --protocol OSSH:443".to_owned(),
            });
        }
        let (id, channel_id) = self.check_placement(placement, &ip)?;
        let signing = self.server_entry_signing_key()?;

        let out = &new.out_dir;
        std::fs::create_dir_all(out).map_err(crate::error::io("creating directory", out))?;
        let files = ServerFiles {
            config: out.join(CONFIG_FILE),
            traffic_rules: out.join(TRAFFIC_RULES_FILE),
            psinet: out.join(PSINET_FILE),
            server_entry: out.join(SERVER_ENTRY_FILE),
        };
        if !new.force {
            for f in [
                &files.config,
                &files.traffic_rules,
                &files.psinet,
                &files.server_entry,
            ] {
                if f.exists() {
                    return Err(Error::FileExists { path: f.clone() });
                }
            }
        }
        let there = new.server_dir.as_deref().unwrap_or(out.as_path());
        let there = if there.is_relative() {
            std::env::current_dir()
                .map_err(crate::error::io("reading the current directory", "."))?
                .join(there)
        } else {
            there.to_owned()
        };
        let opts = GenerateOptions {
            ip_address: ip.clone(),
            protocols: new.protocols.clone(),
            log_filename: new.log_file.as_ref().map(|p| p.display().to_string()),
            config_path: there.join(CONFIG_FILE),
            traffic_rules_path: there.join(TRAFFIC_RULES_FILE),
            psinet_path: there.join(PSINET_FILE),
            server_entry_path: there.join(SERVER_ENTRY_FILE),
        };
        let generated = psiphon_server::generate(&opts).map_err(Error::Generate)?;
        let mut entry = ServerEntry::decode(generated.encoded_server_entry.trim())
            .map_err(protocol("decoding the generated server entry"))?;
        entry
            .set("region", json!(placement.region))
            .map_err(protocol("setting the entry's region"))?;
        entry.sign(&signing);
        let encoded = entry.encode();
        let tag = entry.tag().unwrap_or_default().to_owned();

        let mut config = generated.config;
        if let Value::Object(m) = &mut config {
            m.insert("HostID".to_owned(), json!(id));
            if !new.geoip_files.is_empty() {
                let files: Vec<String> = new
                    .geoip_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                m.insert("GeoIPDatabaseFilenames".to_owned(), json!(files));
            }
            m.insert(
                "OwnEncodedServerEntries".to_owned(),
                json!({ tag: encoded }),
            );
        }
        let config_text = pretty(&config)?;
        let rules_text = pretty(&generated.traffic_rules)?;
        write_private(&files.config, &config_text, new.force)?;
        write_private(&files.traffic_rules, &rules_text, new.force)?;
        write_private(&files.server_entry, encoded.as_bytes(), new.force)?;
        let stored_config = String::from_utf8_lossy(&config_text);
        let server =
            match self.insert_server(&id, &channel_id, placement, &entry, Some(&stored_config)) {
                Ok(s) => s,
                Err(e) => {
                    for f in [&files.config, &files.traffic_rules, &files.server_entry] {
                        let _ = std::fs::remove_file(f);
                    }
                    return Err(e);
                }
            };
        let psinet = self.export_psinet(&server.id, unix_now())?;
        write_private(&files.psinet, &pretty(&psinet)?, true)?;
        Ok((server, files))
    }

    /// Writes a server's psiphond files again from the database into `out_dir`: its stored
    /// config, the default traffic rules, a fresh psinet export and its signed entry.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidArgument`] for a retired or imported server (the
    /// database holds no psiphond config for those); [`Error::FileExists`], [`Error::Io`].
    pub fn write_server_files(&self, id: &str, out_dir: &Path, force: bool) -> Result<ServerFiles> {
        let server = self.server(id)?;
        let config: Option<String> = self
            .conn
            .query_row(
                "SELECT psiphond_config FROM servers WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(self.sql("reading a server's config"))?;
        let Some(config) = config else {
            return Err(Error::InvalidArgument {
                arg: "SERVER",
                value: id.to_owned(),
                reason: "it was imported: psinet holds no psiphond config for it".to_owned(),
            });
        };
        let psinet = self.export_psinet(id, unix_now())?;
        std::fs::create_dir_all(out_dir)
            .map_err(crate::error::io("creating directory", out_dir))?;
        let files = ServerFiles {
            config: out_dir.join(CONFIG_FILE),
            traffic_rules: out_dir.join(TRAFFIC_RULES_FILE),
            psinet: out_dir.join(PSINET_FILE),
            server_entry: out_dir.join(SERVER_ENTRY_FILE),
        };
        if !force {
            for f in [
                &files.config,
                &files.traffic_rules,
                &files.psinet,
                &files.server_entry,
            ] {
                if f.exists() {
                    return Err(Error::FileExists { path: f.clone() });
                }
            }
        }
        write_private(&files.config, config.as_bytes(), true)?;
        write_private(
            &files.traffic_rules,
            &pretty(&psiphon_server::traffic_rules::generated_rules_json())?,
            true,
        )?;
        write_private(&files.psinet, &pretty(&psinet)?, true)?;
        write_private(
            &files.server_entry,
            server.encoded_server_entry.as_bytes(),
            true,
        )?;
        Ok(files)
    }
}
