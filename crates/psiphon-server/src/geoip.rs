//! GeoIP: the client's country, city, ISP and AS, from MaxMind databases
//! (`GeoIPDatabaseFilenames`, City/Country and ISP types), as psiphond reports them.
//!
//! Privacy: a tunnel looks its peer address up once, when it is accepted, and keeps only these
//! fields; the address itself is not stored or logged.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

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

/// The configured databases; empty = every lookup is "None".
pub struct GeoIp {
    readers: Vec<maxminddb::Reader<Vec<u8>>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeoIp({} databases)", self.readers.len())
    }
}

fn clean(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        s.replace(' ', "_")
    }
}

impl GeoIp {
    /// Opens every file; a missing or unreadable one is an error naming it.
    pub fn open(paths: &[String]) -> Result<GeoIp> {
        let readers = paths
            .iter()
            .map(|p| {
                maxminddb::Reader::open_readfile(p).map_err(|e| Error::ConfigValue {
                    file: p.clone(),
                    key: "GeoIPDatabaseFilenames".to_owned(),
                    reason: format!("not a readable MaxMind database: {e}"),
                })
            })
            .collect::<Result<_>>()?;
        Ok(GeoIp { readers })
    }

    /// No databases: every lookup gives "None".
    pub fn empty() -> GeoIp {
        GeoIp {
            readers: Vec::new(),
        }
    }

    /// Looks `ip` up in every database; the first answer for each field wins.
    pub fn lookup(&self, ip: IpAddr) -> GeoFields {
        let mut g = GeoFields::none();
        for reader in &self.readers {
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
