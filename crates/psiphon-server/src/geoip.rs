//! GeoIP: the client's country, city, ISP and AS, from MaxMind databases
//! (`GeoIPDatabaseFilenames`, City/Country and ISP types), as psiphond reports them.
//!
//! Privacy: a tunnel looks its peer address up once, when it is accepted, and keeps only these
//! fields; the address itself is not stored or logged. All tunnels of one client session
//! share the session's first lookup for an hour (the cache is keyed by session id, never by
//! address), and the database files are reopened when they change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::log::EventLog;
use crate::reload::{ReloadOutcome, Stamp, reload_file};

/// The value psiphond uses for anything unknown.
pub const NONE: &str = "None";

/// What GeoIP says about a client, with tunnel-core's "None" for unknown and spaces replaced by
/// `_` (as psiphond logs them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoFields {
    /// ISO 3166-1 alpha-2 country code (`client_region`).
    pub region: String,
    /// City name in English (`client_city`).
    pub city: String,
    /// ISP name (`client_isp`).
    pub isp: String,
    /// Autonomous system number, as text (`client_asn`).
    pub asn: String,
    /// Autonomous system organisation (`client_aso`).
    pub aso: String,
}

impl GeoFields {
    /// Everything unknown.
    pub fn none() -> GeoFields {
        GeoFields {
            region: NONE.to_owned(),
            city: NONE.to_owned(),
            isp: NONE.to_owned(),
            asn: NONE.to_owned(),
            aso: NONE.to_owned(),
        }
    }

    /// Adds `client_region`, `client_city`, `client_isp`, `client_asn`, `client_aso`.
    pub fn log_into(&self, fields: &mut Map<String, Value>) {
        for (k, v) in [
            ("client_region", &self.region),
            ("client_city", &self.city),
            ("client_isp", &self.isp),
            ("client_asn", &self.asn),
            ("client_aso", &self.aso),
        ] {
            fields.insert(k.to_owned(), Value::from(v.as_str()));
        }
    }
}

/// The parts of a City/Country or ISP record psiphond uses.
#[derive(Debug, Default, Deserialize)]
struct Record {
    #[serde(default)]
    country: Option<CountryRecord>,
    #[serde(default)]
    city: Option<CityRecord>,
    #[serde(default)]
    isp: Option<String>,
    /// uint32 in MaxMind's databases (the decoder does not widen integer types).
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(default)]
    autonomous_system_organization: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CountryRecord {
    #[serde(default)]
    iso_code: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct CityRecord {
    #[serde(default)]
    names: BTreeMap<String, String>,
}

/// How long a session's first lookup is shared by its later tunnels (tunnel-core's
/// `GEOIP_SESSION_CACHE_TTL`).
pub const SESSION_CACHE_TTL: Duration = Duration::from_secs(60 * 60);

/// Session id to (fields, time of the first lookup). Expired entries are dropped whenever the
/// map has doubled since the last sweep.
#[derive(Debug, Default)]
struct SessionCache {
    entries: HashMap<String, (GeoFields, Instant)>,
    sweep_at: usize,
}

/// One configured database file and what is loaded from it.
struct Database {
    path: String,
    reader: RwLock<Arc<maxminddb::Reader<Vec<u8>>>>,
    seen: RwLock<Option<Stamp>>,
}

/// The configured databases (empty = every lookup is "None"), reloaded when their files
/// change, and the session cache.
pub struct GeoIp {
    databases: Vec<Database>,
    sessions: Mutex<SessionCache>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeoIp({} databases)", self.databases.len())
    }
}

fn clean(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        s.replace(' ', "_")
    }
}

fn open_reader(path: &str) -> Result<maxminddb::Reader<Vec<u8>>> {
    maxminddb::Reader::open_readfile(path).map_err(|e| Error::ConfigValue {
        file: path.to_owned(),
        key: "GeoIPDatabaseFilenames".to_owned(),
        reason: format!("not a readable MaxMind database: {e}"),
    })
}

impl GeoIp {
    /// Opens every file; a missing or unreadable one is an error naming it.
    pub fn open(paths: &[String]) -> Result<GeoIp> {
        let databases = paths
            .iter()
            .map(|p| {
                let seen = Stamp::of(Path::new(p)).ok();
                Ok(Database {
                    path: p.clone(),
                    reader: RwLock::new(Arc::new(open_reader(p)?)),
                    seen: RwLock::new(seen),
                })
            })
            .collect::<Result<_>>()?;
        Ok(GeoIp {
            databases,
            sessions: Mutex::default(),
        })
    }

    /// No databases: every lookup gives "None".
    pub fn empty() -> GeoIp {
        GeoIp {
            databases: Vec::new(),
            sessions: Mutex::default(),
        }
    }

    /// Reopens each database whose file changed; one that does not open keeps the old data
    /// and logs an error naming the file. Blocking.
    pub fn reload_if_changed(&self, log: &EventLog) -> ReloadOutcome {
        let mut outcome = ReloadOutcome::Unchanged;
        for db in &self.databases {
            let one = reload_file(
                Path::new(&db.path),
                &db.seen,
                log,
                ("GeoIP", "GeoIP database"),
                || {
                    let reader = open_reader(&db.path)?;
                    let kind = reader.metadata().database_type.clone();
                    *db.reader.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(reader);
                    Ok(kind)
                },
            );
            if outcome != ReloadOutcome::Failed && one != ReloadOutcome::Unchanged {
                outcome = one;
            }
        }
        outcome
    }

    /// The fields for a tunnel of `session_id`: the first lookup of the session within
    /// [`SESSION_CACHE_TTL`], else `looked_up`, which is then cached. The flag says whether
    /// this was the session's first tunnel.
    pub fn session(
        &self,
        session_id: &str,
        looked_up: GeoFields,
        now: Instant,
    ) -> (GeoFields, bool) {
        let mut cache = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((fields, at)) = cache.entries.get(session_id)
            && now.saturating_duration_since(*at) < SESSION_CACHE_TTL
        {
            return (fields.clone(), false);
        }
        if cache.entries.len() >= cache.sweep_at {
            cache
                .entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < SESSION_CACHE_TTL);
            cache.sweep_at = (cache.entries.len() * 2).max(1024);
        }
        cache
            .entries
            .insert(session_id.to_owned(), (looked_up.clone(), now));
        (looked_up, true)
    }

    /// Looks `ip` up in every database; the first answer for each field wins.
    pub fn lookup(&self, ip: IpAddr) -> GeoFields {
        let mut g = GeoFields::none();
        for db in &self.databases {
            let reader = Arc::clone(&db.reader.read().unwrap_or_else(PoisonError::into_inner));
            let Ok(found) = reader.lookup(ip) else {
                continue;
            };
            let Ok(Some(rec)) = found.decode::<Record>() else {
                continue;
            };
            if g.region == NONE
                && let Some(code) = rec.country.and_then(|c| c.iso_code)
            {
                g.region = clean(&code);
            }
            if g.city == NONE
                && let Some(name) = rec.city.and_then(|c| c.names.get("en").cloned())
            {
                g.city = clean(&name);
            }
            if g.isp == NONE
                && let Some(isp) = rec.isp
            {
                g.isp = clean(&isp);
            }
            if g.asn == NONE
                && let Some(asn) = rec.autonomous_system_number
            {
                g.asn = asn.to_string();
            }
            if g.aso == NONE
                && let Some(aso) = rec.autonomous_system_organization
            {
                g.aso = clean(&aso);
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_keeps_its_first_lookup_for_an_hour() {
        let geo = GeoIp::empty();
        let region = |r: &str| GeoFields {
            region: r.to_owned(),
            ..GeoFields::none()
        };
        let t0 = Instant::now();
        assert_eq!(geo.session("s", region("CA"), t0), (region("CA"), true));
        let later = t0 + Duration::from_secs(59 * 60);
        assert_eq!(geo.session("s", region("FR"), later), (region("CA"), false));
        assert_eq!(geo.session("t", region("FR"), later), (region("FR"), true));
        let expired = t0 + SESSION_CACHE_TTL;
        assert_eq!(
            geo.session("s", region("FR"), expired),
            (region("FR"), true)
        );
        // Expired sessions are swept as the cache grows.
        let much_later = expired + SESSION_CACHE_TTL;
        for i in 0..3000 {
            geo.session(&i.to_string(), GeoFields::none(), much_later);
        }
        let cache = geo.sessions.lock().unwrap();
        assert!(!cache.entries.contains_key("t"));
        assert!(cache.entries.len() <= 3000);
    }
}
