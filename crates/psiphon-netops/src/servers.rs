//! Hosts and servers: `server new` (psiphond's files made with psiphond's own generator, the
//! entry signed with the network's Ed25519 key), `server import`, listing and retiring.
//!
//! Roles, as in psi_ops: an *embedded* server is in its channel's embedded list and remote
//! server list; a *permanent* server is in every channel's lists; a server with a discovery
//! range is handed out by psiphond's discovery while `start <= now < end`. New servers get a
//! discovery range of 7 days from the start of tomorrow (UTC) unless told otherwise. Retired
//! servers drop out of every list, export and set of valid tags.

use std::collections::BTreeMap;

use psiphon_protocol::ServerEntry;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde_json::json;

use crate::db::{Db, unix_now};
use crate::error::{Error, Result, protocol};
use crate::time;

mod files;

pub(crate) use files::pretty;
pub use files::{NewServer, ServerFiles};

/// A server as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Its id (also its host's id and psiphond's `HostID`).
    pub id: String,
    /// The address in its server entry.
    pub ip_address: String,
    /// Propagation channel id.
    pub propagation_channel_id: String,
    /// Tunnel protocol to port.
    pub ports: BTreeMap<String, u16>,
    /// The entry's capabilities.
    pub capabilities: Vec<String>,
    /// The entry's tag.
    pub tag: String,
    /// The host's region (two letters, or empty).
    pub region: String,
    /// The host's provider.
    pub provider: String,
    /// The host's datacenter.
    pub datacenter: String,
    /// In its channel's embedded and remote lists.
    pub is_embedded: bool,
    /// In every channel's lists.
    pub is_permanent: bool,
    /// Discovery range `[start, end)`, RFC 3339.
    pub discovery_date_range: Option<[String; 2]>,
    /// The entry's `configurationVersion`.
    pub configuration_version: i64,
    /// When it was recorded, RFC 3339.
    pub created: String,
    /// When it was retired, RFC 3339.
    pub retired: Option<String>,
    /// The signed, encoded server entry.
    pub encoded_server_entry: String,
    #[serde(skip)]
    pub(crate) discovery: Option<(i64, i64)>,
}

/// Where a server's host is and what it is for.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The server id; random when `None`.
    pub id: Option<String>,
    /// Propagation channel id or name.
    pub channel: String,
    /// The host's two-letter region (written into the entry), or empty.
    pub region: String,
    /// The host's provider.
    pub provider: String,
    /// The host's datacenter.
    pub datacenter: String,
    /// Embedded in its channel's lists.
    pub embedded: bool,
    /// Permanent: in every channel's lists.
    pub permanent: bool,
    /// Discovery range `[start, end)` in Unix seconds; `None`: not a discovery server.
    pub discovery: Option<(i64, i64)>,
}

/// The default discovery range for a server made at `now`: 7 days from tomorrow.
pub fn default_discovery(now: i64) -> (i64, i64) {
    let start = time::start_of_tomorrow(now);
    (start, start + time::days(7))
}

/// A random server id: 8 lower-case hex digits.
///
/// # Errors
/// [`Error::Random`].
pub fn new_server_id() -> Result<String> {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Random)?;
    Ok(hex::encode(b))
}

fn check_region(region: &str) -> Result<()> {
    if region.is_empty() || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())) {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            arg: "--region",
            value: region.to_owned(),
            reason: "a region is a two-letter upper-case country code, e.g. NL".to_owned(),
        })
    }
}

fn check_server_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            arg: "--id",
            value: id.to_owned(),
            reason: "a server id is 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
        })
    }
}

/// Parses `PROTOCOL:PORT` as psiphond's `-protocol` does, refusing port 0.
///
/// # Errors
/// [`Error::InvalidArgument`].
pub fn parse_protocol(value: &str) -> Result<(String, u16)> {
    let invalid = |reason: String| Error::InvalidArgument {
        arg: "--protocol",
        value: value.to_owned(),
        reason,
    };
    let (name, port) =
        psiphon_server::generate::parse_protocol_flag(value).map_err(|e| invalid(e.to_string()))?;
    if port == 0 {
        return Err(invalid(
            "a server entry needs a real port, not 0".to_owned(),
        ));
    }
    Ok((name, port))
}

impl Db {
    fn live_server_with_ip(&self, ip: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT id FROM servers WHERE ip_address = ?1 AND retired IS NULL",
                [ip],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("looking up a server address"))
    }

    /// Checks a placement and returns (server id, channel id).
    pub(crate) fn check_placement(
        &self,
        placement: &Placement,
        ip: &str,
    ) -> Result<(String, String)> {
        check_region(&placement.region)?;
        let channel = self.channel(&placement.channel)?;
        if let Some((start, end)) = placement.discovery
            && end <= start
        {
            return Err(Error::InvalidArgument {
                arg: "--discovery-days",
                value: "0".to_owned(),
                reason: "the discovery range must not be empty".to_owned(),
            });
        }
        if let Some(other) = self.live_server_with_ip(ip)? {
            return Err(Error::Duplicate {
                what: "server IP address",
                value: ip.to_owned(),
                detail: format!(
                    " (server {other}; retire it first with `psinet server retire {other}`)"
                ),
            });
        }
        let id = match &placement.id {
            Some(id) => {
                check_server_id(id)?;
                id.clone()
            }
            None => new_server_id()?,
        };
        let exists: bool = self
            .conn
            .query_row("SELECT count(*) FROM servers WHERE id = ?1", [&id], |r| {
                r.get::<_, i64>(0).map(|n| n > 0)
            })
            .map_err(self.sql("looking up a server id"))?;
        if exists {
            return Err(Error::Duplicate {
                what: "server id",
                value: id,
                detail: String::new(),
            });
        }
        Ok((id, channel.id))
    }

    /// Records a host and its server with a signed entry (in one transaction).
    pub(crate) fn insert_server(
        &mut self,
        id: &str,
        channel_id: &str,
        placement: &Placement,
        entry: &ServerEntry,
        psiphond_config: Option<&str>,
    ) -> Result<Server> {
        let now = unix_now();
        let mut ports = BTreeMap::new();
        for (protocol, field) in [("SSH", "sshPort"), ("OSSH", "sshObfuscatedPort")] {
            if let Some(p) = entry.get_port(field) {
                ports.insert(protocol.to_owned(), p);
            }
        }
        let tag = entry
            .tag()
            .map(str::to_owned)
            .unwrap_or_else(|| entry.effective_tag());
        let capabilities: Vec<&str> = entry.capabilities();
        let ports_json = json!(ports).to_string();
        let caps_json = json!(capabilities).to_string();
        let path = self.path.clone();
        let sql = |source| Error::Sqlite {
            path: path.clone(),
            what: "recording the server",
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "INSERT INTO hosts (id, provider, region, datacenter, created) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, placement.provider, placement.region, placement.datacenter, now],
        )
        .map_err(sql)?;
        tx.execute(
            "INSERT INTO servers (id, host_id, ip_address, propagation_channel_id, ports,
                 capabilities, tag, encoded_server_entry, is_embedded, is_permanent,
                 discovery_start, discovery_end, configuration_version, created, psiphond_config)
             VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                id,
                entry.ip_address_str(),
                channel_id,
                ports_json,
                caps_json,
                tag,
                entry.encode(),
                placement.embedded,
                placement.permanent,
                placement.discovery.map(|d| d.0),
                placement.discovery.map(|d| d.1),
                i64::try_from(entry.configuration_version()).unwrap_or(i64::MAX),
                now,
                psiphond_config,
            ],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.server(id)
    }

    /// Records a server from an existing encoded entry (psiphond's `server-entry.dat`). The
    /// entry is given the host's region (when one is given) and signed with the network key.
    ///
    /// # Errors
    /// [`Error::Protocol`] for an entry that does not decode; as [`Db::new_server`] otherwise.
    pub fn import_server(&mut self, encoded: &str, placement: &Placement) -> Result<Server> {
        let mut entry =
            ServerEntry::decode(encoded.trim()).map_err(protocol("decoding the server entry"))?;
        let ip = entry.ip_address_str().to_owned();
        let (id, channel_id) = self.check_placement(placement, &ip)?;
        if !placement.region.is_empty() {
            entry
                .set("region", json!(placement.region))
                .map_err(protocol("setting the entry's region"))?;
        }
        let mut placement = placement.clone();
        if placement.region.is_empty() {
            placement.region = entry.region().unwrap_or_default().to_owned();
        }
        entry.sign(&self.server_entry_signing_key()?);
        self.insert_server(&id, &channel_id, &placement, &entry, None)
    }

    /// One server by id.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn server(&self, id: &str) -> Result<Server> {
        self.query_servers("WHERE s.id = ?1", [id])?
            .pop()
            .ok_or_else(|| Error::NotFound {
                what: "server",
                name: id.to_owned(),
                hint: " (see `psinet server list --all`)",
            })
    }

    /// Live servers (and retired ones if `include_retired`), oldest first.
    ///
    /// # Errors
    /// [`Error::Sqlite`], [`Error::Corrupt`].
    pub fn servers(&self, include_retired: bool) -> Result<Vec<Server>> {
        if include_retired {
            self.query_servers("", [])
        } else {
            self.query_servers("WHERE s.retired IS NULL", [])
        }
    }

    pub(crate) fn query_servers<P: rusqlite::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<Vec<Server>> {
        let sql = format!(
            "SELECT s.id, s.ip_address, s.propagation_channel_id, s.ports, s.capabilities, s.tag,
                    h.region, h.provider, h.datacenter, s.is_embedded, s.is_permanent,
                    s.discovery_start, s.discovery_end, s.configuration_version, s.created,
                    s.retired, s.encoded_server_entry
             FROM servers s JOIN hosts h ON h.id = s.host_id {filter}
             ORDER BY s.created, s.id"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(self.sql("reading servers"))?;
        type Row = (
            (String, String, String, String, String, String),
            (String, String, String, bool, bool),
            (Option<i64>, Option<i64>, i64, i64, Option<i64>, String),
        );
        let rows: Vec<Row> = stmt
            .query_map(params, |r| {
                Ok((
                    (
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ),
                    (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
                    (
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                        r.get(14)?,
                        r.get(15)?,
                        r.get(16)?,
                    ),
                ))
            })
            .and_then(Iterator::collect)
            .map_err(self.sql("reading servers"))?;
        rows.into_iter()
            .map(|(a, b, c)| {
                let (id, ip_address, propagation_channel_id, ports, capabilities, tag) = a;
                let (region, provider, datacenter, is_embedded, is_permanent) = b;
                let (start, end, configuration_version, created, retired, encoded_server_entry) = c;
                let ports = serde_json::from_str(&ports)
                    .map_err(|e| self.corrupt(format!("server {id} ports"), e.to_string()))?;
                let capabilities = serde_json::from_str(&capabilities).map_err(|e| {
                    self.corrupt(format!("server {id} capabilities"), e.to_string())
                })?;
                let discovery = start.zip(end);
                Ok(Server {
                    id,
                    ip_address,
                    propagation_channel_id,
                    ports,
                    capabilities,
                    tag,
                    region,
                    provider,
                    datacenter,
                    is_embedded,
                    is_permanent,
                    discovery_date_range: discovery
                        .map(|(s, e)| [time::rfc3339(s), time::rfc3339(e)]),
                    configuration_version,
                    created: time::rfc3339(created),
                    retired: retired.map(time::rfc3339),
                    encoded_server_entry,
                    discovery,
                })
            })
            .collect()
    }

    /// Retires a server: it leaves every list, export and set of valid tags. Its IP address
    /// may then be used again.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`] if it is already retired.
    pub fn retire_server(&self, id: &str) -> Result<Server> {
        let server = self.server(id)?;
        if server.retired.is_some() {
            return Err(Error::InvalidArgument {
                arg: "SERVER",
                value: id.to_owned(),
                reason: "already retired".to_owned(),
            });
        }
        self.conn
            .execute(
                "UPDATE servers SET retired = ?2 WHERE id = ?1",
                params![id, unix_now()],
            )
            .map_err(self.sql("retiring a server"))?;
        self.server(id)
    }
}
