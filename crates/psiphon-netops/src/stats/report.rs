//! `psinet report`: aggregates of the statistics store, with small cells suppressed.
//!
//! A cell is one combination of the `--by` dimensions. It is shown only if both its unique
//! users and its sessions reach `min_count`; otherwise it is left out and counted as
//! suppressed. No total is printed, because a total minus the shown cells would give the
//! suppressed ones back. Inside a shown cell, the protocol mix names only protocols with at
//! least `min_count` sessions; the others are one "other" share. A domain's bytes are shown
//! only when the cell they belong to (the same dimensions, without the domain) is shown.

use std::collections::BTreeMap;

use rusqlite::params;

use super::{StatsDb, day_text};
use crate::error::{Error, Result};

mod format;

pub use format::human_bytes;

/// The default minimum count.
pub const DEFAULT_MIN_COUNT: u64 = 10;

/// A dimension a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Dim {
    /// The UTC day.
    Date,
    /// The sponsor id.
    Sponsor,
    /// The client's region (GeoIP country).
    Region,
    /// The client's ASN.
    Asn,
    /// The client's ISP (not in domain reports: `domain_dest_bytes` has none).
    Isp,
}

impl Dim {
    /// Its column name.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Date => "date",
            Dim::Sponsor => "sponsor",
            Dim::Region => "region",
            Dim::Asn => "asn",
            Dim::Isp => "isp",
        }
    }
}

/// What a report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Kind {
    /// Unique users, sessions, duration, bytes, protocol mix.
    #[default]
    Sessions,
    /// Bytes per (regex-mapped) domain.
    Domains,
}

/// Which rows a report reads, and how it groups and suppresses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Sessions or domains.
    pub kind: Kind,
    /// The dimensions, in column order (no repeats).
    pub by: Vec<Dim>,
    /// Only this sponsor id.
    pub sponsor: Option<String>,
    /// First day (inclusive), days since 1970-01-01.
    pub from: Option<i64>,
    /// Last day (inclusive).
    pub to: Option<i64>,
    /// Cells with fewer unique users or sessions are suppressed.
    pub min_count: u64,
}

/// One shown cell of a sessions report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The dimension values, in `by` order.
    pub key: Vec<String>,
    /// Unique users (`unique_user` events: one per client per UTC day, so summed over days
    /// when `date` is not a dimension).
    pub users: u64,
    /// Sessions (`server_tunnel` events).
    pub sessions: u64,
    /// Total session duration, ms.
    pub duration_ms: u64,
    /// Bytes from clients.
    pub bytes_up: u64,
    /// Bytes to clients.
    pub bytes_down: u64,
    /// Protocols with at least `min_count` sessions, then "other", as whole percentages of
    /// the sessions, largest first.
    pub protocol_mix: Vec<(String, u64)>,
}

/// One shown row of a domains report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRow {
    /// The dimension values, in `by` order.
    pub key: Vec<String>,
    /// The domain as psiphond logged it (mapped by the sponsor's regexes, or `(OTHER)`).
    pub domain: String,
    /// Bytes.
    pub bytes: u64,
}

/// A report: only cells that passed the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What was asked.
    pub query: Query,
    /// Sessions rows (a sessions report).
    pub sessions: Vec<SessionRow>,
    /// Domain rows (a domains report).
    pub domains: Vec<DomainRow>,
    /// Cells (or domain rows) left out because they were under the threshold.
    pub suppressed: u64,
}

#[derive(Debug, Default)]
struct Cell {
    users: u64,
    sessions: u64,
    duration_ms: u64,
    bytes_up: u64,
    bytes_down: u64,
    protocols: BTreeMap<String, u64>,
}

impl Cell {
    fn shown(&self, min: u64) -> bool {
        self.users >= min && self.sessions >= min
    }
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The text of a stored value for display: empty is `(unknown)`.
fn shown_text(s: String) -> String {
    if s.is_empty() {
        "(unknown)".to_owned()
    } else {
        s
    }
}

struct Dims {
    day: i64,
    sponsor: String,
    region: String,
    asn: String,
    isp: String,
}

impl Dims {
    fn key(&self, by: &[Dim]) -> Vec<String> {
        by.iter()
            .map(|d| match d {
                Dim::Date => day_text(self.day),
                Dim::Sponsor => shown_text(self.sponsor.clone()),
                Dim::Region => shown_text(self.region.clone()),
                Dim::Asn => shown_text(self.asn.clone()),
                Dim::Isp => shown_text(self.isp.clone()),
            })
            .collect()
    }
}

const FILTER: &str = "(?1 IS NULL OR sponsor_id = ?1) AND day >= ?2 AND day <= ?3";

impl StatsDb {
    /// Every cell of `by` with its counts, before suppression.
    fn cells(&self, q: &Query, by: &[Dim]) -> Result<BTreeMap<Vec<String>, Cell>> {
        let mut cells: BTreeMap<Vec<String>, Cell> = BTreeMap::new();
        let from = q.from.unwrap_or(i64::MIN);
        let to = q.to.unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT day, sponsor_id, region, asn, isp, protocol, sessions, duration_ms,
                        bytes_up, bytes_down
                 FROM sessions WHERE {FILTER}"
            ))
            .map_err(self.sql("reading sessions"))?;
        let mut rows = stmt
            .query(params![q.sponsor, from, to])
            .map_err(self.sql("reading sessions"))?;
        while let Some(r) = rows.next().map_err(self.sql("reading sessions"))? {
            let read = || -> rusqlite::Result<(Dims, String, [i64; 4])> {
                Ok((
                    Dims {
                        day: r.get(0)?,
                        sponsor: r.get(1)?,
                        region: r.get(2)?,
                        asn: r.get(3)?,
                        isp: r.get(4)?,
                    },
                    r.get(5)?,
                    [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?],
                ))
            };
            let (dims, protocol, [sessions, duration, up, down]) =
                read().map_err(self.sql("reading sessions"))?;
            let cell = cells.entry(dims.key(by)).or_default();
            cell.sessions = cell.sessions.saturating_add(unsigned(sessions));
            cell.duration_ms = cell.duration_ms.saturating_add(unsigned(duration));
            cell.bytes_up = cell.bytes_up.saturating_add(unsigned(up));
            cell.bytes_down = cell.bytes_down.saturating_add(unsigned(down));
            let p = cell.protocols.entry(shown_text(protocol)).or_default();
            *p = p.saturating_add(unsigned(sessions));
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT day, sponsor_id, region, asn, isp, users FROM unique_users WHERE {FILTER}"
            ))
            .map_err(self.sql("reading unique users"))?;
        let mut rows = stmt
            .query(params![q.sponsor, from, to])
            .map_err(self.sql("reading unique users"))?;
        while let Some(r) = rows.next().map_err(self.sql("reading unique users"))? {
            let read = || -> rusqlite::Result<(Dims, i64)> {
                Ok((
                    Dims {
                        day: r.get(0)?,
                        sponsor: r.get(1)?,
                        region: r.get(2)?,
                        asn: r.get(3)?,
                        isp: r.get(4)?,
                    },
                    r.get(5)?,
                ))
            };
            let (dims, users) = read().map_err(self.sql("reading unique users"))?;
            let cell = cells.entry(dims.key(by)).or_default();
            cell.users = cell.users.saturating_add(unsigned(users));
        }
        Ok(cells)
    }

    /// Runs a report.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a dimension the kind lacks or a repeated one,
    /// [`Error::Sqlite`].
    pub fn report(&self, q: &Query) -> Result<Report> {
        let mut seen = Vec::new();
        for d in &q.by {
            if seen.contains(d) {
                return Err(Error::InvalidArgument {
                    arg: "--by",
                    value: d.name().to_owned(),
                    reason: "a dimension can be named once".to_owned(),
                });
            }
            if q.kind == Kind::Domains && *d == Dim::Isp {
                return Err(Error::InvalidArgument {
                    arg: "--by",
                    value: d.name().to_owned(),
                    reason: "domain_dest_bytes events carry no ISP; use date, sponsor, region \
                             or asn"
                        .to_owned(),
                });
            }
            seen.push(*d);
        }
        if let (Some(from), Some(to)) = (q.from, q.to)
            && from > to
        {
            return Err(Error::InvalidArgument {
                arg: "--from/--to",
                value: format!("{}..{}", day_text(from), day_text(to)),
                reason: "--from is after --to".to_owned(),
            });
        }
        let cells = self.cells(q, &q.by)?;
        let mut report = Report {
            query: q.clone(),
            sessions: Vec::new(),
            domains: Vec::new(),
            suppressed: 0,
        };
        match q.kind {
            Kind::Sessions => {
                for (key, cell) in cells {
                    if !cell.shown(q.min_count) {
                        report.suppressed += 1;
                        continue;
                    }
                    report.sessions.push(SessionRow {
                        protocol_mix: protocol_mix(&cell, q.min_count),
                        key,
                        users: cell.users,
                        sessions: cell.sessions,
                        duration_ms: cell.duration_ms,
                        bytes_up: cell.bytes_up,
                        bytes_down: cell.bytes_down,
                    });
                }
            }
            Kind::Domains => {
                let domains = self.domain_bytes(q)?;
                for ((key, domain), bytes) in domains {
                    if cells.get(&key).is_some_and(|c| c.shown(q.min_count)) {
                        report.domains.push(DomainRow { key, domain, bytes });
                    } else {
                        report.suppressed += 1;
                    }
                }
                // Within a cell, the biggest domains first.
                report.domains.sort_by(|a, b| {
                    a.key
                        .cmp(&b.key)
                        .then(b.bytes.cmp(&a.bytes))
                        .then(a.domain.cmp(&b.domain))
                });
            }
        }
        Ok(report)
    }

    fn domain_bytes(&self, q: &Query) -> Result<BTreeMap<(Vec<String>, String), u64>> {
        let mut out: BTreeMap<(Vec<String>, String), u64> = BTreeMap::new();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT day, sponsor_id, region, asn, domain, bytes FROM domain_bytes
                 WHERE {FILTER}"
            ))
            .map_err(self.sql("reading domain bytes"))?;
        let mut rows = stmt
            .query(params![
                q.sponsor,
                q.from.unwrap_or(i64::MIN),
                q.to.unwrap_or(i64::MAX)
            ])
            .map_err(self.sql("reading domain bytes"))?;
        while let Some(r) = rows.next().map_err(self.sql("reading domain bytes"))? {
            let read = || -> rusqlite::Result<(Dims, String, i64)> {
                Ok((
                    Dims {
                        day: r.get(0)?,
                        sponsor: r.get(1)?,
                        region: r.get(2)?,
                        asn: r.get(3)?,
                        isp: String::new(),
                    },
                    r.get(4)?,
                    r.get(5)?,
                ))
            };
            let (dims, domain, bytes) = read().map_err(self.sql("reading domain bytes"))?;
            let b = out
                .entry((dims.key(&q.by), shown_text(domain)))
                .or_default();
            *b = b.saturating_add(unsigned(bytes));
        }
        Ok(out)
    }
}

fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let p = (u128::from(part) * 100 + u128::from(whole) / 2) / u128::from(whole);
    u64::try_from(p).unwrap_or(100)
}

fn protocol_mix(cell: &Cell, min: u64) -> Vec<(String, u64)> {
    let mut named: Vec<(String, u64)> = Vec::new();
    let mut other = 0u64;
    for (protocol, &n) in &cell.protocols {
        if n >= min.max(1) {
            named.push((protocol.clone(), n));
        } else {
            other = other.saturating_add(n);
        }
    }
    named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if other > 0 {
        named.push(("other".to_owned(), other));
    }
    named
        .into_iter()
        .map(|(p, n)| (p, percent(n, cell.sessions)))
        .collect()
}

impl SessionRow {
    /// Mean session duration, ms.
    pub fn mean_duration_ms(&self) -> u64 {
        self.duration_ms.checked_div(self.sessions).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
