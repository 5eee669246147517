//! Propagation channels (how a client build reaches people: a 16-hex id, a name and its
//! mechanisms) and the client versions offered as upgrades per platform.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::{Db, parse_id, random_hex_upper, unix_now};
use crate::error::{Error, Result};

/// A propagation channel.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    /// 16 upper-case hex digits (the client's `PropagationChannelId`).
    pub id: String,
    /// The operator's name for it.
    pub name: String,
    /// Propagation mechanisms, e.g. `email-autoresponder`, `static-download`.
    pub mechanisms: Vec<String>,
}

/// A client version offered for a platform.
#[derive(Debug, Clone, Serialize)]
pub struct ClientVersion {
    /// psiphond's normalised platform: `Windows`, `Android`, `iOS`, ...
    pub platform: String,
    /// The version number.
    pub version: u32,
}

/// Platforms psiphond's handshake normalises `client_platform` to.
pub const PLATFORMS: &[&str] = &["Windows", "Android", "iOS", "Other"];

impl Db {
    /// Adds a propagation channel.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed id or an empty name, [`Error::Duplicate`].
    pub fn add_channel(
        &self,
        name: &str,
        id: Option<&str>,
        mechanisms: &[String],
    ) -> Result<Channel> {
        let id = match id {
            Some(id) => parse_id("--id", id)?,
            None => random_hex_upper(8)?,
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidArgument {
                arg: "--name",
                value: name.to_owned(),
                reason: "a channel needs a name".to_owned(),
            });
        }
        for (what, value) in [
            ("propagation channel id", &id),
            ("propagation channel name", &name.to_owned()),
        ] {
            if self.find_channel(value)?.is_some() {
                return Err(Error::Duplicate {
                    what,
                    value: value.clone(),
                    detail: String::new(),
                });
            }
        }
        let mechanisms_json = serde_json::to_string(mechanisms)
            .map_err(|e| self.corrupt("mechanisms", e.to_string()))?;
        self.conn
            .execute(
                "INSERT INTO propagation_channels (id, name, mechanisms, created)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, name, mechanisms_json, unix_now()],
            )
            .map_err(self.sql("adding a propagation channel"))?;
        self.channel(&id)
    }

    fn find_channel(&self, key: &str) -> Result<Option<Channel>> {
        let row: Option<(String, String, String)> = self
            .conn
            .query_row(
                "SELECT id, name, mechanisms FROM propagation_channels
                 WHERE id = upper(?1) OR name = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sql("looking up a propagation channel"))?;
        row.map(|(id, name, mechanisms)| {
            let mechanisms = serde_json::from_str(&mechanisms)
                .map_err(|e| self.corrupt(format!("channel {id} mechanisms"), e.to_string()))?;
            Ok(Channel {
                id,
                name,
                mechanisms,
            })
        })
        .transpose()
    }

    /// One channel, by id or name.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn channel(&self, key: &str) -> Result<Channel> {
        self.find_channel(key)?.ok_or_else(|| Error::NotFound {
            what: "propagation channel",
            name: key.to_owned(),
            hint: " (see `psinet channel list`)",
        })
    }

    /// Every channel, by name.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn channels(&self) -> Result<Vec<Channel>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM propagation_channels ORDER BY name")
            .map_err(self.sql("listing channels"))?;
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(self.sql("listing channels"))?;
        ids.iter().map(|id| self.channel(id)).collect()
    }

    /// Offers client `version` for `platform`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown platform, [`Error::Duplicate`].
    pub fn add_client_version(&self, platform: &str, version: u32) -> Result<ClientVersion> {
        let Some(platform) = PLATFORMS.iter().find(|p| p.eq_ignore_ascii_case(platform)) else {
            return Err(Error::InvalidArgument {
                arg: "--platform",
                value: platform.to_owned(),
                reason: format!("one of {}", PLATFORMS.join(", ")),
            });
        };
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO client_versions (platform, version, created)
                 VALUES (?1, ?2, ?3)",
                params![platform, version, unix_now()],
            )
            .map_err(self.sql("adding a client version"))?;
        if inserted == 0 {
            return Err(Error::Duplicate {
                what: "client version",
                value: format!("{platform} {version}"),
                detail: String::new(),
            });
        }
        Ok(ClientVersion {
            platform: (*platform).to_owned(),
            version,
        })
    }

    /// Every client version, by platform then version.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn client_versions(&self) -> Result<Vec<ClientVersion>> {
        let mut stmt = self
            .conn
            .prepare("SELECT platform, version FROM client_versions ORDER BY platform, version")
            .map_err(self.sql("listing client versions"))?;
        stmt.query_map([], |r| {
            Ok(ClientVersion {
                platform: r.get(0)?,
                version: r.get(1)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(self.sql("listing client versions"))
    }
}
