//! Sponsors: who a client build is made for. Each has a 16-hex id, a name, home pages per
//! client region (`None` for any region) and for mobile clients, regexes that group visited
//! hosts in statistics, and branding (text and a banner image) for its client builds.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::db::{Db, parse_id, random_hex_upper, unix_now};
use crate::error::{Error, Result};

/// A home page URL for a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HomePage {
    /// Two-letter region code, or `None`.
    pub region: String,
    /// The URL (`client_region=XX` style placeholders are filled in by psiphond).
    pub url: String,
}

/// A statistics regex and its replacement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpsRequestRegex {
    /// Go `regexp` syntax.
    pub regex: String,
    /// The replacement.
    pub replace: String,
}

/// A sponsor as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Sponsor {
    /// 16 upper-case hex digits.
    pub id: String,
    /// The operator's name for it (never sent to servers).
    pub name: String,
    /// Whether clients with an unknown sponsor id get this sponsor's pages.
    pub is_default: bool,
    /// Region to home pages.
    pub home_pages: BTreeMap<String, Vec<HomePage>>,
    /// Region to home pages for Android and iOS clients.
    pub mobile_home_pages: BTreeMap<String, Vec<HomePage>>,
    /// Statistics regexes, in order.
    pub https_request_regexes: Vec<HttpsRequestRegex>,
    /// Text shown in the sponsor's client builds.
    pub branding_text: String,
    /// Size of the banner image in bytes (0: none).
    pub banner_bytes: usize,
}

/// What `sponsor add` takes.
#[derive(Debug, Clone, Default)]
pub struct NewSponsor {
    /// The name, unique.
    pub name: String,
    /// The id; random when `None`.
    pub id: Option<String>,
    /// Make it the default sponsor.
    pub default: bool,
    /// Branding text.
    pub branding_text: String,
    /// A PNG banner.
    pub banner_png: Option<Vec<u8>>,
}

const META_DEFAULT_SPONSOR: &str = "default_sponsor_id";
const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

impl Db {
    /// Adds a sponsor.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed id, an empty name or a banner that is not a
    /// PNG; [`Error::Duplicate`] for a used id or name.
    pub fn add_sponsor(&self, new: &NewSponsor) -> Result<Sponsor> {
        let id = match &new.id {
            Some(id) => parse_id("--id", id)?,
            None => random_hex_upper(8)?,
        };
        let name = new.name.trim();
        if name.is_empty() {
            return Err(Error::InvalidArgument {
                arg: "--name",
                value: new.name.clone(),
                reason: "a sponsor needs a name".to_owned(),
            });
        }
        if let Some(png) = &new.banner_png
            && !png.starts_with(PNG_MAGIC)
        {
            return Err(Error::InvalidArgument {
                arg: "--banner",
                value: format!("{} bytes", png.len()),
                reason: "the banner must be a PNG image".to_owned(),
            });
        }
        if self.find_sponsor_row(&id)?.is_some() {
            return Err(Error::Duplicate {
                what: "sponsor id",
                value: id,
                detail: String::new(),
            });
        }
        if self.find_sponsor_row(name)?.is_some() {
            return Err(Error::Duplicate {
                what: "sponsor name",
                value: name.to_owned(),
                detail: String::new(),
            });
        }
        self.conn
            .execute(
                "INSERT INTO sponsors (id, name, branding_text, banner_png, created)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, name, new.branding_text, new.banner_png, unix_now()],
            )
            .map_err(self.sql("adding a sponsor"))?;
        if new.default {
            self.set_meta(META_DEFAULT_SPONSOR, &id)?;
        }
        self.sponsor(&id)
    }

    /// The id of the default sponsor, if one was chosen.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn default_sponsor_id(&self) -> Result<Option<String>> {
        self.meta(META_DEFAULT_SPONSOR)
    }

    /// (id, name) of the sponsor whose id (any case) or name is `key`.
    fn find_sponsor_row(&self, key: &str) -> Result<Option<(String, String)>> {
        self.conn
            .query_row(
                "SELECT id, name FROM sponsors WHERE id = upper(?1) OR name = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql("looking up a sponsor"))
    }

    /// The id of the sponsor named by id or name.
    ///
    /// # Errors
    /// [`Error::NotFound`].
    pub fn sponsor_id(&self, key: &str) -> Result<String> {
        self.find_sponsor_row(key)?
            .map(|(id, _)| id)
            .ok_or_else(|| Error::NotFound {
                what: "sponsor",
                name: key.to_owned(),
                hint: " (see `psinet sponsor list`)",
            })
    }

    /// One sponsor, by id or name.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Sqlite`].
    pub fn sponsor(&self, key: &str) -> Result<Sponsor> {
        let id = self.sponsor_id(key)?;
        let (name, branding_text, banner_bytes): (String, String, i64) = self
            .conn
            .query_row(
                "SELECT name, branding_text, coalesce(length(banner_png), 0)
                 FROM sponsors WHERE id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.sql("reading a sponsor"))?;
        let mut home_pages = BTreeMap::new();
        let mut mobile_home_pages = BTreeMap::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT mobile, region, url FROM sponsor_home_pages WHERE sponsor_id = ?1
                 ORDER BY mobile, region, position",
            )
            .map_err(self.sql("reading home pages"))?;
        let rows = stmt
            .query_map([&id], |r| {
                Ok((r.get::<_, bool>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })
            .map_err(self.sql("reading home pages"))?;
        for row in rows {
            let (mobile, region, url) = row.map_err(self.sql("reading home pages"))?;
            let map: &mut BTreeMap<String, Vec<HomePage>> = if mobile {
                &mut mobile_home_pages
            } else {
                &mut home_pages
            };
            map.entry(region.clone())
                .or_default()
                .push(HomePage { region, url });
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT regex, replace FROM sponsor_https_request_regexes WHERE sponsor_id = ?1
                 ORDER BY position",
            )
            .map_err(self.sql("reading regexes"))?;
        let https_request_regexes = stmt
            .query_map([&id], |r| {
                Ok(HttpsRequestRegex {
                    regex: r.get(0)?,
                    replace: r.get(1)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(self.sql("reading regexes"))?;
        Ok(Sponsor {
            is_default: self.default_sponsor_id()?.as_deref() == Some(id.as_str()),
            id,
            name,
            home_pages,
            mobile_home_pages,
            https_request_regexes,
            branding_text,
            banner_bytes: usize::try_from(banner_bytes).unwrap_or(0),
        })
    }

    /// Every sponsor, by name.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn sponsors(&self) -> Result<Vec<Sponsor>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM sponsors ORDER BY name")
            .map_err(self.sql("listing sponsors"))?;
        let ids: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(self.sql("listing sponsors"))?;
        ids.iter().map(|id| self.sponsor(id)).collect()
    }

    /// Replaces the sponsor's home pages for `region` (`None` = any region) with `urls`
    /// (none: removes them); `mobile` for the Android/iOS list.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`] for a bad region or URL.
    pub fn set_home_pages(
        &mut self,
        sponsor: &str,
        region: &str,
        mobile: bool,
        urls: &[String],
    ) -> Result<Sponsor> {
        let id = self.sponsor_id(sponsor)?;
        if !(region == "None"
            || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())))
        {
            return Err(Error::InvalidArgument {
                arg: "--region",
                value: region.to_owned(),
                reason: "a region is a two-letter upper-case country code (e.g. CA) or None"
                    .to_owned(),
            });
        }
        for url in urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::InvalidArgument {
                    arg: "URL",
                    value: url.clone(),
                    reason: "home pages are http:// or https:// URLs".to_owned(),
                });
            }
        }
        let path = self.path.clone();
        let sql = |source| Error::Sqlite {
            path: path.clone(),
            what: "setting home pages",
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "DELETE FROM sponsor_home_pages WHERE sponsor_id = ?1 AND mobile = ?2 AND region = ?3",
            params![id, mobile, region],
        )
        .map_err(sql)?;
        for (position, url) in (0i64..).zip(urls) {
            tx.execute(
                "INSERT INTO sponsor_home_pages (sponsor_id, mobile, region, position, url)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, mobile, region, position, url],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.sponsor(&id)
    }

    /// Replaces the sponsor's statistics regexes.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`] for an empty regex.
    pub fn set_regexes(&mut self, sponsor: &str, regexes: &[HttpsRequestRegex]) -> Result<Sponsor> {
        let id = self.sponsor_id(sponsor)?;
        if let Some(r) = regexes.iter().find(|r| r.regex.is_empty()) {
            return Err(Error::InvalidArgument {
                arg: "--regex",
                value: r.regex.clone(),
                reason: "a regex may not be empty".to_owned(),
            });
        }
        let path = self.path.clone();
        let sql = |source| Error::Sqlite {
            path: path.clone(),
            what: "setting regexes",
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute(
            "DELETE FROM sponsor_https_request_regexes WHERE sponsor_id = ?1",
            [&id],
        )
        .map_err(sql)?;
        for (position, r) in (0i64..).zip(regexes) {
            tx.execute(
                "INSERT INTO sponsor_https_request_regexes (sponsor_id, position, regex, replace)
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, position, r.regex, r.replace],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)?;
        self.sponsor(&id)
    }
}
